//! Video on demand: media files from `vod.root`, each RTMP viewer of `vod/NAME` with a reader of
//! its own ([`reader`]), and files played as looping live streams for players of every kind
//! ([`live`]).
//!
//! Invariants: a name is resolved inside the root only (no `..`, no absolute path, no symlink
//! out of it); files are read frame by frame, never whole; opening (which parses the index) runs
//! on a blocking thread, not on a connection's.

pub mod live;
pub mod reader;

pub use live::FileLoop;
pub use reader::{open, Recorded, VodPlayback, VodSeeked};
