pub mod align;
pub mod info;
pub mod summary;
pub mod train;
