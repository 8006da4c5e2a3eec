//! RTSP camera pulls: one actor per camera URL, publishing the camera into a stream.

mod pull;

pub use pull::RtspPull;
