//! WebRTC without the sockets: the JSON signalling protocol spoken on `/ws`
//! (`web/sdk/PROTOCOL.md`) and the choice of codecs for an answer from what a browser offered
//! and what a stream carries.

pub mod offer;
pub mod signalling;
