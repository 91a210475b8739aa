//! What the engine needs from a node: the [`Core`] trait each user implements for its core through a
//! thin adapter, and the inputs and outputs it speaks.

use core::fmt::Debug;
use core::hash::Hash;
use core::ops::{Add, Sub};
use core::time::Duration;

use p2pmesh_base::introduce::Key;

/// The virtual time a core reads: any copyable, ordered instant that a [`Duration`] moves.
pub trait Time:
    Copy + Ord + Debug + Add<Duration, Output = Self> + Sub<Self, Output = Duration>
{
}

impl<T> Time for T where
    T: Copy + Ord + Debug + Add<Duration, Output = T> + Sub<T, Output = Duration>
{
}

/// A message from the signaling server to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInput<Id> {
    /// The answer to a join: peers to start from.
    BootstrapPeers(Vec<Id>),
    /// A peer joined near this node (targeted introduction, never a broadcast to all).
    PeerJoined(Id),
    /// A peer left.
    PeerLeft(Id),
    /// A frame relayed by the server from `from`.
    Relayed {
        /// The sender, as the server authenticated it.
        from: Id,
        /// The relayed bytes.
        payload: Vec<u8>,
    },
}

/// What a node asks the engine to do.
#[derive(Debug)]
pub enum Output<Id, E> {
    /// Send bytes on the link to `link`.
    Transmit {
        /// The peer at the far end.
        link: Id,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Open a link to `peer`; the initiator makes the offer and hands it back through
    /// [`Core::send_signal`].
    Connect {
        /// The peer.
        peer: Id,
        /// Whether this side makes the offer.
        initiator: bool,
    },
    /// Close the link to `peer`.
    Disconnect {
        /// The peer.
        peer: Id,
    },
    /// Send bytes to `to` through the signaling server.
    Signal {
        /// The addressee.
        to: Id,
        /// The bytes.
        payload: Vec<u8>,
    },
    /// Signaling data (offer or answer) from `from` for the local link engine (WebRTC's part).
    LinkSignal {
        /// Who sent it.
        from: Id,
        /// The bytes.
        payload: Vec<u8>,
    },
    /// Anything else: handed to the engine's user ([`crate::Engine::drain_events`]).
    Event(E),
}

/// A node the engine drives. After every input the engine drains [`Core::poll_output`] until `None`,
/// then wakes the node at [`Core::poll_timeout`].
pub trait Core {
    /// How nodes name each other.
    type Id: Copy + Ord + Hash + Debug;
    /// The virtual time the node reads.
    type Time: Time;
    /// The events the engine hands to its user.
    type Event;

    /// The node's id.
    fn local_id(&self) -> Self::Id;
    /// The 20-byte key of an id, for the introduction rule's XOR distance.
    fn key(id: &Self::Id) -> Key;
    /// A frame arrived on the link to `from`.
    fn handle_message(&mut self, now: Self::Time, from: Self::Id, bytes: &[u8]);
    /// The deadline from [`Core::poll_timeout`] passed.
    fn handle_timeout(&mut self, now: Self::Time);
    /// The link to `peer` opened (DTLS done, with these certificate fingerprints).
    fn handle_peer_up(
        &mut self,
        now: Self::Time,
        peer: Self::Id,
        local_fingerprint: Vec<u8>,
        remote_fingerprint: Vec<u8>,
    );
    /// The link to `peer` closed or failed.
    fn handle_peer_down(&mut self, now: Self::Time, peer: Self::Id);
    /// The node starts ([`crate::Engine::join`]). Default: nothing.
    fn handle_join(&mut self, _now: Self::Time) {}
    /// A message from the signaling server. Default: ignored.
    fn handle_server(&mut self, _now: Self::Time, _input: ServerInput<Self::Id>) {}
    /// The local link engine produced signaling data for `to`. Default: ignored.
    fn send_signal(&mut self, _now: Self::Time, _to: Self::Id, _payload: Vec<u8>) {}
    /// The next output.
    fn poll_output(&mut self) -> Option<Output<Self::Id, Self::Event>>;
    /// When to call [`Core::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<Self::Time>;
    /// Whether the node stopped itself (a test's crash on a condition): the engine then crashes it
    /// once its outputs are drained. Default: never.
    fn halted(&self) -> bool {
        false
    }
    /// A frame's kind, below [`crate::FRAME_KINDS`], for [`crate::NetStats::frames_by_kind`].
    /// Default: 0.
    fn frame_kind(_bytes: &[u8]) -> usize {
        0
    }
    /// Named counters of the node, summed by [`crate::Engine::counters`]. Default: none.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The peers whose links are up as the node sees them, for [`crate::Engine::components`] and
    /// [`crate::Engine::topology`]. Default: none.
    fn links(&self) -> Vec<Self::Id> {
        Vec::new()
    }
}
