//! What the fuzz targets check, kept in a library so that the seed generator and the
//! regression tests share it with the targets.

pub mod app_line;
pub mod control;
pub mod frames;
pub mod handlers;
pub mod qram;
pub mod seeds;
pub mod world;
