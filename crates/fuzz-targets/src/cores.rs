//! The two composed cores: their wire codecs, and a node of each fed frames from its links.

use core::time::Duration;
use gossip_core::Identity;
use kademlia_core::wire::{Limits, Message};
use kademlia_core::{Instant, NodeId};

use crate::MAX_OUTPUTS_PER_INPUT;

/// kademlia-core's codec: decoding never panics, and what decodes encodes to bytes that decode to
/// the same message.
pub fn kademlia_wire(data: &[u8]) {
    let limits = Limits::from_config(&kademlia_core::Config::default());
    if let Ok(message) = Message::decode(data, &limits) {
        let bytes = message.encode();
        assert_eq!(Message::decode(&bytes, &limits), Ok(message));
    }
}

/// gossip-core's codec: decoding never panics, and what decodes encodes to bytes that decode to the
/// same frame.
pub fn gossip_wire(data: &[u8]) {
    if let Ok(frame) = gossip_core::wire::decode(data) {
        let bytes = gossip_core::wire::encode(&frame);
        assert_eq!(gossip_core::wire::decode(&bytes), Ok(frame));
    }
}

/// The peers that talk to the nodes of [`kademlia_node`] and [`gossip_node`].
const PEERS: u8 = 4;

/// One input to a core from one of its peers.
#[derive(Debug)]
struct Step {
    /// Which peer sends (modulo [`PEERS`]).
    peer: u8,
    /// Milliseconds that pass before it arrives.
    wait_ms: u16,
    /// The message.
    bytes: Vec<u8>,
}

fn peer(i: u8) -> Identity {
    let mut secret = [0x77; 32];
    secret[0] = i % PEERS;
    Identity::from_secret_bytes(&secret)
}

/// The steps in `data`: each is `peer:u8 wait_ms:u16le len:u16le bytes[len]` (the last one takes
/// what is left if shorter), a format simple enough for [`step_bytes`] to write seeds in.
fn steps(data: &[u8]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = data;
    while let [peer, w0, w1, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        steps.push(Step {
            peer: *peer,
            wait_ms: u16::from_le_bytes([*w0, *w1]),
            bytes: bytes.to_vec(),
        });
        rest = next;
        if steps.len() == 256 {
            break;
        }
    }
    steps
}

/// The input of [`kademlia_node`] or [`gossip_node`] that delivers `bytes` from peer `peer` after
/// `wait_ms`: concatenate several for a sequence.
pub fn step_bytes(peer: u8, wait_ms: u16, bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = vec![peer];
    out.extend_from_slice(&wait_ms.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
    out
}

/// A kademlia-core node that knows four peers and is looking up a key, fed messages from them:
/// never a panic, its outputs and stores stay within their bounds, and each timeout moves its
/// deadline past `now`.
pub fn kademlia_node(data: &[u8]) {
    let config = kademlia_core::Config::default();
    let victim = Identity::from_secret_bytes(&[7; 32]);
    let mut node = kademlia_core::Node::new(victim.id(), config.clone(), 1);
    let mut now = Instant::from_millis(1_700_000_000_000);
    let peers: Vec<NodeId> = (0..PEERS).map(|i| peer(i).id()).collect();
    let _ = node.bootstrap(now, &peers);
    let _ = node.get_value(now, NodeId::hash(b"key"));
    let mine = kademlia_core::Record::sign(
        &victim,
        b"mine".to_vec(),
        1,
        b"value".to_vec(),
        now + Duration::from_secs(3600),
    );
    let _ = node.put_value(now, mine);
    drain_kad(&mut node);
    for step in steps(data) {
        now += Duration::from_millis(u64::from(step.wait_ms));
        let from = peers[usize::from(step.peer % PEERS)];
        node.handle_message(now, from, &step.bytes);
        drain_kad(&mut node);
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
            drain_kad(&mut node);
            assert!(
                node.poll_timeout().is_none_or(|t| t > now),
                "handle_timeout left a deadline due"
            );
        }
        assert!(node.records().count() <= config.max_records);
    }
}

fn drain_kad(node: &mut kademlia_core::Node) {
    let outputs = core::iter::from_fn(|| node.poll_output()).count();
    assert!(outputs <= MAX_OUTPUTS_PER_INPUT, "{outputs} outputs");
}

/// A gossip-core node with four links, subscribed to the topic `chat`, fed frames from them: never
/// a panic, its outputs and seen-cache stay within their bounds, and each timeout moves its deadline
/// past `now`. Frames are raw bytes; a structured step (first byte of `bytes` even, length < 3)
/// instead has the sending peer publish a signed message, so signed messages get past the codec.
pub fn gossip_node(data: &[u8]) {
    let config = gossip_core::Config::default();
    let me = peer(PEERS + 1); // any secret not a peer's
    let mut secret = me.to_secret_bytes();
    secret[1] ^= 0x55;
    let mut node = gossip_core::Node::new(Identity::from_secret_bytes(&secret), config.clone(), 1);
    let _ = node.subscribe("chat");
    let mut now = Instant::from_millis(1_700_000_000_000);
    let mut senders: Vec<gossip_core::Node> = (0..PEERS)
        .map(|i| gossip_core::Node::new(peer(i), config.clone(), u64::from(i)))
        .collect();
    for s in &mut senders {
        node.handle_peer_up(now, s.local_id());
        s.handle_peer_up(now, node.local_id());
        let _ = s.subscribe("chat");
        drain_gossip(s);
    }
    drain_gossip(&mut node);
    for step in steps(data) {
        now += Duration::from_millis(u64::from(step.wait_ms));
        let i = usize::from(step.peer % PEERS);
        let from = senders[i].local_id();
        let frames = match step.bytes.as_slice() {
            [kind, skew] if kind % 2 == 0 => {
                // A signed message, dated up to ±127 s from now.
                let offset = Duration::from_secs(u64::from(skew % 128));
                let at = if *skew < 128 {
                    now + offset
                } else {
                    now.saturating_sub(offset)
                };
                let _ = senders[i].publish(at, "chat", vec![*kind; usize::from(*skew)]);
                core::iter::from_fn(|| senders[i].poll_output())
                    .filter_map(|o| match o {
                        gossip_core::Output::Transmit { bytes, .. } => Some(bytes),
                        _ => None,
                    })
                    .collect()
            }
            _ => vec![step.bytes],
        };
        for bytes in frames {
            node.handle_message(now, from, &bytes);
            drain_gossip(&mut node);
        }
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
            drain_gossip(&mut node);
            assert!(
                node.poll_timeout().is_none_or(|t| t > now),
                "handle_timeout left a deadline due"
            );
        }
        assert!(node.seen_len() <= config.max_seen);
    }
}

fn drain_gossip(node: &mut gossip_core::Node) {
    let outputs = core::iter::from_fn(|| node.poll_output()).count();
    assert!(outputs <= MAX_OUTPUTS_PER_INPUT, "{outputs} outputs");
}
