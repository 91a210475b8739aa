//! The peer-link connector: how a driver opens a data link to another peer (a draft; the
//! WebRTC adapter implements it).
//!
//! A link is set up by exchanging signals through the signaling transport: the link emits
//! [`LinkEvent::Signal`]s that the driver sends to the peer, and the driver feeds the peer's
//! signals to [`PeerLink::handle_signal`]. Once the link is open it reports both DTLS
//! fingerprints, which the peers' signed hello covers, so that a signaling server in the
//! middle cannot impersonate either side.

use async_trait::async_trait;
use serde_json::Value;

use crate::PeerId;

/// Which side of a link starts the exchange of signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Makes the offer.
    Initiator,
    /// Answers.
    Responder,
}

/// What a link reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// A signal to send to the peer through the signaling transport.
    Signal(Value),
    /// The link is open; data may flow.
    Open {
        /// Our certificate's fingerprint (e.g. `sha-256 AB:CD:..`).
        local_fingerprint: String,
        /// The peer's certificate fingerprint.
        remote_fingerprint: String,
    },
    /// One message from the peer.
    Message(Vec<u8>),
    /// The link is closed; no event follows.
    Closed(String),
}

/// Why a link operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The link is not open yet.
    #[error("link not open")]
    NotOpen,
    /// The link is closed.
    #[error("link closed")]
    Closed,
    /// The link could not be set up.
    #[error("link setup failed: {0}")]
    Setup(String),
}

/// The sending half of a link: cheap to clone, and usable from any task.
///
/// Sending is split from [`PeerLink`] on purpose. A send waits while the peer's incoming queue is
/// full, and that queue drains only while the peer reads its link. If one task both sent and read
/// (one `&mut` owner for both), two peers that send to each other at once could each wait for the
/// other to read, and neither would ever read again. With the halves apart, a driver reads
/// [`PeerLink::next_event`] in one place and sends through a [`LinkSender`] in another, so a
/// waiting send never stops its own side from reading.
#[async_trait]
pub trait LinkSender: Clone + Send + Sync + 'static {
    /// Send one message (after [`LinkEvent::Open`]); waits while the outgoing queue is full.
    async fn send(&self, bytes: Vec<u8>) -> Result<(), LinkError>;
}

/// One link to one peer: its events, its signals and its lifetime. Send through
/// [`sender`](Self::sender). Its queues are bounded.
#[async_trait]
pub trait PeerLink: Send {
    /// The sending half.
    type Sender: LinkSender;
    /// The remote peer.
    fn peer(&self) -> &PeerId;
    /// A sending half of this link (see [`LinkSender`] for why sending is apart).
    fn sender(&self) -> Self::Sender;
    /// Feed a signal received from the peer through the signaling transport.
    async fn handle_signal(&mut self, signal: Value) -> Result<(), LinkError>;
    /// The next event; `None` after [`LinkEvent::Closed`].
    async fn next_event(&mut self) -> Option<LinkEvent>;
    /// Close the link.
    async fn close(&mut self);
}

/// Opens links to peers.
#[async_trait]
pub trait LinkConnector: Send + Sync {
    /// The link type.
    type Link: PeerLink;
    /// Start a link to `peer` in `role`; it opens once the signals have been exchanged.
    async fn connect(&self, peer: PeerId, role: Role) -> Result<Self::Link, LinkError>;
}
