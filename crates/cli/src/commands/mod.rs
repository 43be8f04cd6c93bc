pub mod align;
pub mod bench;
pub mod convert;
pub mod embed;
pub mod eval;
pub mod info;
pub mod summary;
pub mod train;
