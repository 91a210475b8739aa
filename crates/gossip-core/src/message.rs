//! Message ids and the bytes an origin signs.

use core::fmt;

use p2pmesh_base::{Instant, NodeId};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Length of a [`MessageId`] in bytes.
pub const MESSAGE_ID_LEN: usize = 20;

// Domain separation: these hashes and signatures can never be mistaken for another protocol's (mesh-core
// signs its hello with the same key).
const ID_DOMAIN: &[u8] = b"p2pmesh/gossip/id/v1";
const SIGNATURE_DOMAIN: &[u8] = b"p2pmesh/gossip/signature/v1";
const ROOT_DOMAIN: &[u8] = b"p2pmesh/gossip/root/v1";

/// A broadcast message's id: SHA-1 of (origin, the origin's sequence number, topic, payload).
///
/// Never random: every receiver recomputes it from the content and drops a message whose id does not
/// match, so a duplicate is recognised by id alone, before any signature check.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageId([u8; MESSAGE_ID_LEN]);

impl Ord for MessageId {
    #[inline]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        p2pmesh_base::cmp_20(&self.0, &other.0)
    }
}

impl PartialOrd for MessageId {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl MessageId {
    /// The id made of these raw bytes.
    pub const fn from_bytes(bytes: [u8; MESSAGE_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; MESSAGE_ID_LEN] {
        &self.0
    }

    /// The id of the message with this content.
    pub fn compute(origin: &NodeId, seq: u64, topic: &str, payload: &[u8]) -> Self {
        let mut hasher = Sha1::new();
        hasher.update(ID_DOMAIN);
        hash_content(&mut hasher, origin, seq, None, topic, payload);
        let mut out = [0u8; MESSAGE_ID_LEN];
        out.copy_from_slice(&hasher.finalize());
        Self(out)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex characters tell messages apart in logs.
        write!(f, "{}…", hex::encode(&self.0[..4]))
    }
}

/// The bytes an origin signs: the id's content plus the publish timestamp, so that neither the content
/// nor the time (which the replay window relies on) can be changed by a relay.
pub fn signed_bytes(
    origin: &NodeId,
    seq: u64,
    timestamp: Instant,
    topic: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 48 + topic.len() + payload.len());
    out.extend_from_slice(SIGNATURE_DOMAIN);
    hash_content(&mut out, origin, seq, Some(timestamp), topic, payload);
    out
}

/// The bytes a rooted tree's root signs to prove itself ([`RootProof`](crate::wire::RootProof)): its
/// id and the time, so that a proof cannot be reused for another root or, once old, at all.
pub fn root_signed_bytes(root: &NodeId, timestamp: Instant) -> Vec<u8> {
    let mut out = Vec::with_capacity(ROOT_DOMAIN.len() + 28);
    out.extend_from_slice(ROOT_DOMAIN);
    out.extend_from_slice(root.as_bytes());
    out.extend_from_slice(&timestamp.as_micros().to_be_bytes());
    out
}

/// Where content is written: a hasher (for the id) or a buffer (for the signature).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha1 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

// Fixed-width fields and a length prefix on the topic make the encoding unambiguous: no two different
// (topic, payload) pairs produce the same bytes.
fn hash_content(
    sink: &mut impl Sink,
    origin: &NodeId,
    seq: u64,
    timestamp: Option<Instant>,
    topic: &str,
    payload: &[u8],
) {
    sink.put(origin.as_bytes());
    sink.put(&seq.to_be_bytes());
    if let Some(timestamp) = timestamp {
        sink.put(&timestamp.as_micros().to_be_bytes());
    }
    sink.put(&(topic.len() as u64).to_be_bytes());
    sink.put(topic.as_bytes());
    sink.put(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_depends_on_every_field_and_is_unambiguous() {
        let a = NodeId::hash(b"a");
        let b = NodeId::hash(b"b");
        let base = MessageId::compute(&a, 1, "t", b"xy");
        assert_eq!(base, MessageId::compute(&a, 1, "t", b"xy"));
        assert_ne!(base, MessageId::compute(&b, 1, "t", b"xy"));
        assert_ne!(base, MessageId::compute(&a, 2, "t", b"xy"));
        assert_ne!(base, MessageId::compute(&a, 1, "u", b"xy"));
        assert_ne!(base, MessageId::compute(&a, 1, "t", b"xz"));
        // Moving a byte between topic and payload changes the id.
        assert_ne!(base, MessageId::compute(&a, 1, "tx", b"y"));
    }

    #[test]
    fn signed_bytes_cover_the_timestamp() {
        let a = NodeId::hash(b"a");
        let one = signed_bytes(&a, 1, Instant::from_millis(1), "t", b"p");
        let two = signed_bytes(&a, 1, Instant::from_millis(2), "t", b"p");
        assert_ne!(one, two);
    }
}
