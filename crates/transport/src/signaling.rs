//! The signaling transport: how a driver talks to the signaling server.

use async_trait::async_trait;
use serde_json::Value;

use crate::{ClientMessage, ErrorCode, PeerId};

/// Which Kademlia RPC direction a relayed `kademlia_rpc_*` message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    /// `kademlia_rpc_request`.
    Request,
    /// `kademlia_rpc_response`.
    Response,
}

/// What a signaling transport reports to its driver (the seed's events, and reconnection).
#[derive(Debug, Clone, PartialEq)]
pub enum TransportEvent {
    /// The first successful join: the id is held and introductions follow.
    Open {
        /// The id this connection holds.
        peer_id: PeerId,
        /// The room joined.
        room: String,
    },
    /// The connection was lost; `reconnecting` says whether the transport will try again.
    Close {
        /// Why, for people.
        reason: String,
        /// Whether a reconnection with backoff follows.
        reconnecting: bool,
    },
    /// Joined again after a loss (the server may have restarted; earlier introductions are void).
    Reconnected {
        /// The id held again.
        peer_id: PeerId,
        /// How many connection attempts this reconnection took.
        attempts: u32,
    },
    /// The server refused one input (or, with `code` `None`, an old server reported an error).
    Error {
        /// Machine-readable reason.
        code: Option<ErrorCode>,
        /// For people.
        message: String,
        /// The peer concerned, if any (e.g. the unknown recipient).
        peer_id: Option<PeerId>,
    },
    /// A WebRTC signal from another peer (a `batched_signals` arrives as several of these).
    Signal {
        /// The sender, as set by the server.
        from: PeerId,
        /// The signal object.
        signal: Value,
    },
    /// A peer was introduced to us (`peer_joined`): we may connect to it.
    ConnectRequest {
        /// The newcomer.
        peer: PeerId,
    },
    /// Our introductions after a join: XOR-closest peers and a few random ones.
    BootstrapPeers {
        /// The introduced peers.
        peers: Vec<PeerId>,
    },
    /// A peer we were introduced to (or by) has left.
    PeerLeft {
        /// The peer that left.
        peer: PeerId,
    },
    /// A peer refused our connection request.
    ConnectionRejected {
        /// The refuser.
        from: PeerId,
        /// Why.
        reason: String,
        /// Peers to try instead.
        alternative_peers: Vec<PeerId>,
    },
    /// A peer refused our signal.
    SignalRejected {
        /// The refuser.
        from: PeerId,
        /// Why.
        reason: String,
        /// Which side should initiate.
        correct_initiator: Option<PeerId>,
    },
    /// A Kademlia RPC relayed by the server (the seed's `kademlia_rpc_message`).
    KademliaRpc {
        /// The sender, as set by the server.
        from: PeerId,
        /// Request or response.
        kind: RpcKind,
        /// The RPC.
        message: Value,
    },
}

/// Why a send through a signaling transport failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Not connected right now (a reconnection may be under way); the message was not sent.
    #[error("not connected to the signaling server")]
    NotConnected,
    /// The transport was closed and will not reconnect.
    #[error("signaling transport closed")]
    Closed,
}

/// A connection to a signaling server, as a driver uses it.
///
/// One task owns the transport and drives it in a loop, `select!`ing `next_event()` with its
/// other inputs. Both methods take `&mut self`, so the transport needs no locks; both are
/// cancel-safe (a `next_event` dropped before it completes loses no event).
///
/// ```
/// # async fn demo(mut t: impl transport::SignalingTransport) {
/// use transport::{ClientMessage, TransportEvent};
/// while let Some(event) = t.next_event().await {
///     if let TransportEvent::ConnectRequest { peer } = event {
///         let offer = serde_json::json!({"type": "offer", "sdp": "..."});
///         let _ = t.send(ClientMessage::Signal { to: peer, from: None, signal: offer }).await;
///     }
/// }
/// # }
/// ```
#[async_trait]
pub trait SignalingTransport: Send {
    /// The id this transport joins with.
    fn local_id(&self) -> &PeerId;

    /// Send a message to the server. Waits while the (bounded) outgoing queue is full;
    /// fails at once when not connected. `join` and `leave` are the transport's own business
    /// and need not be sent by the driver.
    async fn send(&mut self, message: ClientMessage) -> Result<(), TransportError>;

    /// The next event; `None` once the transport is closed for good.
    async fn next_event(&mut self) -> Option<TransportEvent>;

    /// Leave, close the connection and stop reconnecting.
    async fn close(&mut self);

    /// Send a WebRTC signal to `to` (the server sets `from`).
    async fn send_signal(&mut self, to: PeerId, signal: Value) -> Result<(), TransportError> {
        self.send(ClientMessage::Signal {
            to,
            from: None,
            signal,
        })
        .await
    }
}
