//! p2pmesh's transport layer: the traits the drivers use and the signaling protocol's types.
//!
//! - [`SignalingTransport`]: a connection to the signaling server, as a driver sees it
//!   (`send` a [`ClientMessage`], await the next [`TransportEvent`]). The WebSocket
//!   implementation is the `transport-ws` crate.
//! - [`LinkConnector`] / [`PeerLink`] / [`LinkSender`]: data links to peers set up through signaling (a draft;
//!   the WebRTC adapter implements it).
//! - [`ClientMessage`] / [`ServerMessage`]: the signaling protocol's JSON messages, a superset
//!   of the JavaScript p2pmesh server's (docs/protocol.md shows each with an example).
//! - [`memory`]: in-memory implementations of both traits, for tests.

#![deny(missing_docs)]

mod link;
pub mod memory;
mod message;
mod peer_id;
mod signaling;

pub use link::{LinkConnector, LinkError, LinkEvent, LinkSender, PeerLink, Role};
pub use message::{
    ClientMessage, DEFAULT_ROOM, ErrorCode, JOIN_PROOF_DOMAIN, Join, MAX_HOST_LEN, MAX_ROOM_LEN,
    NONCE_LEN, PROTOCOL_VERSION, PeerInfo, ServerMessage, is_valid_room, join_proof_message,
    normalize_host,
};
pub use peer_id::{
    CompatId, HEX_PEER_ID_LEN, MAX_PEER_ID_LEN, PeerId, VerifiedId, distance_key, is_compat_id,
    is_hex_id,
};
pub use signaling::{RpcKind, SignalingTransport, TransportError, TransportEvent};
