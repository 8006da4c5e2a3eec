//! mediarouter core: everything that can be tested with bytes and a timestamp.
//!
//! No actix, no sockets, no clocks of its own: callers pass time in. The `mediarouter` crate
//! (in `actors/`) owns the mailboxes, sockets and timers and drives these state machines.
//!
//! - [`media`]: stream names, codecs, the shared [`media::Frame`], GOP cache, player timeline and
//!   lag policy.
//! - [`codec`]: FLV tag bodies, H.264 decoder configuration, AAC AudioSpecificConfig, AMF metadata,
//!   AAC to Opus transcoding.
//! - [`rtmp`]: RTMP chunk decoding/encoding (zero-copy for media) and the server session.
//! - [`access`]: applications, backend hook bodies and answers, signed tokens.
//! - [`camera`]: camera URLs: normalised keys, credentials apart, masked for logs.
//! - [`settings`]: typed settings loaded from the embedded defaults, a file and the environment.
//! - [`webrtc`]: the WebSocket signalling protocol and the codec choice for WebRTC answers.

pub mod access;
pub mod camera;
pub mod codec;
pub mod media;
pub mod rtmp;
pub mod settings;
pub mod vod;
pub mod webrtc;
