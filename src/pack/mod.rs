//! Packs: the format (pure), and the staging writer that appends records,
//! fsyncs them in groups and rolls over to a new pack at the target size.

pub mod format;
pub mod verify;
mod writer;

pub use writer::{OpenPack, Packer, list_staged, staging_file_id};
