pub mod detect;
pub mod info;
pub mod summary;
pub mod train;
