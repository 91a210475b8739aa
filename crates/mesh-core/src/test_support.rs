//! Fixtures shared by the unit tests: identities, a joined node, hand-made hellos and routed
//! envelopes, and readers of a node's outputs.

use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};
use p2pmesh_base::Identity;

use crate::event::{DisconnectReason, Event, Output, ServerInput};
use crate::frame::{Frame, Hello, Payload, Routed};
use crate::{Config, Node};

/// When the hand-made envelopes say they were sent (µs since the epoch): 1 ms, within the
/// freshness window of the tests' clocks (a few ms).
pub(crate) const SENT_AT: u64 = 1_000;

/// The id of [`envelope`]'s messages (not that of [`relayed`]'s, which a test may have used to set
/// up the link: one sender never uses an id twice).
pub(crate) const ENVELOPE_ID: u64 = 2;

pub(crate) fn identity(n: u64) -> Identity {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    s[31] = 0x5a;
    Identity::from_secret_bytes(&s)
}

pub(crate) fn node() -> Node {
    let mut n = Node::new([9; 32], Config::default(), 7);
    n.join(Instant::from_millis(1));
    drain(&mut n);
    n
}

pub(crate) fn drain(n: &mut Node) -> Vec<Output> {
    core::iter::from_fn(|| n.poll_output()).collect()
}

/// A routed frame from `from` to `dst` as the server would relay it.
pub(crate) fn relayed(from: &Identity, dst: NodeId, payload: &Payload) -> ServerInput {
    let body = postcard::to_allocvec(payload).unwrap_or_default();
    let signature = from.sign(&Routed::signed_bytes(
        &from.id(),
        &dst,
        1,
        SENT_AT,
        None,
        &body,
    ));
    let r = Routed {
        src: from.id(),
        dst,
        id: 1,
        sent_at: SENT_AT,
        lookup: None,
        hops_left: 8,
        path: alloc::vec![from.id()],
        route: Vec::new(),
        key: from.public_key(),
        signature: signature.to_vec(),
        body,
    };
    ServerInput::Relayed {
        from: from.id(),
        payload: Frame::Routed(r).encode(),
    }
}

pub(crate) fn hello(from: &Identity, sender_fp: &[u8], receiver_fp: &[u8]) -> Vec<u8> {
    let pk = from.public_key();
    let signature = from.sign(&Hello::signed_bytes(&pk, sender_fp, receiver_fp));
    Frame::Hello(Hello {
        public_key: pk,
        sender_fingerprint: sender_fp.to_vec(),
        receiver_fingerprint: receiver_fp.to_vec(),
        signature: signature.to_vec(),
    })
    .encode()
}

/// `peer` asks `n` for a link through the server, the way its id allows (an offer from a lower id,
/// a link request from a higher one); `n`'s outputs.
pub(crate) fn inbound_attempt(n: &mut Node, peer: &Identity, now: Instant) -> Vec<Output> {
    let payload = if peer.id() < n.local_id() {
        Payload::Signal(b"offer".to_vec())
    } else {
        Payload::LinkRequest
    };
    n.handle_server(now, relayed(peer, n.local_id(), &payload));
    drain(n)
}

/// Brings a link from `peer` up at `n` through the inbound path (offer or link request).
pub(crate) fn connect(n: &mut Node, peer: &Identity, now: Instant) -> Vec<Output> {
    let mut out = inbound_attempt(n, peer, now);
    if !out.iter().any(|o| matches!(o, Output::Connect { .. })) {
        return out;
    }
    n.handle_link_open(now, peer.id(), b"me".to_vec(), b"it".to_vec());
    n.handle_message(now, peer.id(), &hello(peer, b"it", b"me"));
    out.extend(drain(n));
    out
}

/// A fresh node with one link up to `identity(1)`, at 2 ms: the set-up most tests start from.
pub(crate) fn linked_to_one() -> (Node, Identity, Instant) {
    let mut n = node();
    let now = Instant::from_millis(2);
    let p = identity(1);
    connect(&mut n, &p, now);
    (n, p, now)
}

pub(crate) fn disconnect_reason(out: &[Output], peer: NodeId) -> Option<DisconnectReason> {
    out.iter().find_map(|o| match o {
        Output::Disconnect { peer: p, reason } if *p == peer => Some(*reason),
        _ => None,
    })
}

/// A routed envelope from `from` to `dst` with this `path`, signed or not.
pub(crate) fn envelope(
    from: &Identity,
    dst: NodeId,
    payload: &Payload,
    path: Vec<NodeId>,
    signed: bool,
) -> Routed {
    let body = postcard::to_allocvec(payload).unwrap_or_default();
    let signature = if signed {
        from.sign(&Routed::signed_bytes(
            &from.id(),
            &dst,
            ENVELOPE_ID,
            SENT_AT,
            None,
            &body,
        ))
        .to_vec()
    } else {
        Vec::new()
    };
    Routed {
        src: from.id(),
        dst,
        id: ENVELOPE_ID,
        sent_at: SENT_AT,
        lookup: None,
        hops_left: 8,
        path,
        route: Vec::new(),
        key: from.public_key(),
        signature,
        body,
    }
}

pub(crate) fn messages(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Event(Event::Message { .. })))
        .count()
}

/// The frames transmitted on the link to `peer` (unchunked frames only).
pub(crate) fn frames_to(out: &[Output], peer: NodeId) -> Vec<Frame> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { link, bytes } if *link == peer => Frame::decode(bytes).ok(),
            _ => None,
        })
        .collect()
}

/// The routed envelopes transmitted on the link to `peer` (unchunked frames only).
pub(crate) fn transmitted(out: &[Output], peer: NodeId) -> Vec<Routed> {
    frames_to(out, peer)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Routed(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The routed frames (through the server) in `out`: (addressee, envelope).
pub(crate) fn relayed_out(out: &[Output]) -> Vec<(NodeId, Routed)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Signal { to, payload } => match Frame::decode(payload) {
                Ok(Frame::Routed(r)) => Some((*to, r)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A node id whose 20 bytes are all `n`.
pub(crate) fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 20])
}

/// An unsigned routed envelope from `src` to `dst` with an empty body.
pub(crate) fn bare_routed(src: NodeId, dst: NodeId) -> Routed {
    Routed {
        src,
        dst,
        id: 1,
        sent_at: SENT_AT,
        lookup: None,
        hops_left: 8,
        path: alloc::vec![src],
        route: Vec::new(),
        key: [0; 32],
        signature: Vec::new(),
        body: Vec::new(),
    }
}
