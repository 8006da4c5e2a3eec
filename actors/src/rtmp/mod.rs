//! RTMP: the listener that accepts TCP connections and spreads them over worker threads, the
//! connection actor (one per TCP connection) and its socket writer.

mod connection;
mod listener;
mod writer;

pub use connection::ConnectionSettings;
pub use listener::serve;
