//! The WebSocket itself, the one part that differs between platforms: natively a
//! tokio-tungstenite stream, in the browser a `web_sys::WebSocket`.
//!
//! Both give a [`Socket`] that is a `Stream` of [`Incoming`] frames and a `Sink` of text
//! messages (closing the sink closes the connection), so the protocol above it (join,
//! session, keepalive, reconnection) is written once.

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{Socket, connect};
#[cfg(target_arch = "wasm32")]
pub(crate) use web::{Socket, connect};

/// What the socket received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text message (the protocol's JSON).
    Text(String),
    /// Any other frame (binary, a WebSocket ping or pong): only proof that the server lives.
    Other,
    /// The connection ended, for this reason; the stream ends after it.
    Closed(String),
}
