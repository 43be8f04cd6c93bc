pub mod align;
pub mod bench;
pub mod eval;
pub mod info;
pub mod launch;
pub mod summary;
pub mod train;
