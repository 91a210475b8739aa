//! The wire codec: one version byte, then a postcard-encoded [`Frame`].
//!
//! ```text
//! frame    = version:u8 (= 5) body
//! body     = postcard(Frame)          variant index as a varint, then the fields in order
//! Gossip   = 0 Message
//! Ack      = 1 id:[u8;20]
//! IHave    = 2 len:varint (id:[u8;20] hops:u8)*
//! Graft    = 3 len:varint id:[u8;20]*
//! Prune    = 4
//! Tree     = 5 len:varint proof* len:varint (root:[u8;20] distance:u8 child:bool cost:varint)*
//!                                     the proofs the receiver lacks, then one entry per rooted tree
//! CatchUp  = 6 span:varint(µs)
//! Roots    = 7 len:varint proof*
//! proof    = public_key:[u8;32] timestamp:varint(µs) signature:[u8;64]
//! Message  = id origin:[u8;20] seq:varint timestamp:varint(µs since the epoch) topic:string
//!            payload:bytes hops:u8 tree:u8 auth:option(public_key:[u8;32] signature:[u8;64])
//! ```
//!
//! Decoding never panics; anything that is not exactly one well-formed frame is an error. Bounds (topic,
//! payload, ids per frame) are checked by the [`Node`](crate::Node), which knows its [`Config`](crate::Config).

use p2pmesh_base::{Instant, NodeId};
use serde::{Deserialize, Serialize};

use crate::message::MessageId;
use p2pmesh_base::{PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// The version byte this crate writes and accepts.
pub const VERSION: u8 = 5;

/// One unit of the gossip protocol on a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// A message, pushed eagerly or sent in answer to a GRAFT. The receiver acknowledges it.
    Gossip(Message),
    /// The sender received (or already had) this message: stop retransmitting it.
    Ack(MessageId),
    /// The sender has these messages (a lazy link's batched announcements).
    IHave(Vec<Announce>),
    /// Send me these messages, and push to me eagerly from now on. May be empty (only the second part).
    Graft(Vec<MessageId>),
    /// Stop pushing to me eagerly; announce instead.
    Prune,
    /// The sender's place in each rooted tree ([`Config::rooted_tree`](crate::Config::rooted_tree)),
    /// one entry per tree in tree order, at most [`MAX_TREES`], with the proofs of their roots the
    /// receiver has not had from the sender, checked as those of a [`Frame::Roots`]: a new root's
    /// entry and its proof arrive together, and the receiver recomputes its places once.
    Tree {
        /// Proofs of roots the entries name, at most [`Config::trees`](crate::Config::trees): a new
        /// root and its proof travel in one frame.
        proofs: Vec<RootProof>,
        /// One entry per tree, in tree order.
        adverts: Vec<TreeAdvert>,
    },
    /// "I heard nothing for a while: announce to me what you accepted in the last this many
    /// microseconds" (at most the message cache's TTL is honoured). Sent on a new link by a node
    /// that heard no frame from any link for longer than
    /// [`Config::catch_up_window`](crate::Config::catch_up_window). Appended last, so nodes
    /// without it drop it as malformed and nothing else changes.
    CatchUp(u64),
    /// Proofs that the roots the sender follows exist: for each, the root's own signature over its id
    /// and a recent time. A `Tree` entry naming a root other than its sender counts only once the
    /// sender has given a valid, fresh proof of that root, so nobody can claim a root it cannot
    /// prove. Carried by the `Tree` frame that needs them; sent alone when no entry changed, for
    /// example when a root signs a newer one. At most [`Config::trees`](crate::Config::trees) proofs.
    Roots(Vec<RootProof>),
}

/// A root's proof of itself: its key (the root's id is its SHA-1) and its signature over
/// `"p2pmesh/gossip/root/v1" || id || u64be(timestamp µs)`. Valid while the timestamp is
/// within [`Config::tree_proof_max_age`](crate::Config::tree_proof_max_age) (and not beyond the clock
/// skew ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootProof {
    /// The root's ed25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// When the root signed it (its clock).
    pub timestamp: Instant,
    /// The root's signature.
    #[serde(with = "signature_serde")]
    pub signature: [u8; SIGNATURE_LEN],
}

impl RootProof {
    /// `signer`'s proof that it exists at `timestamp` (its clock), which makes it a root others may
    /// name: a signature over `"p2pmesh/gossip/root/v1" || id || u64be(timestamp µs)`.
    pub fn sign(signer: &impl p2pmesh_base::Signer, timestamp: Instant) -> RootProof {
        RootProof {
            public_key: signer.public_key(),
            timestamp,
            signature: signer.sign(&crate::message::root_signed_bytes(&signer.id(), timestamp)),
        }
    }

    /// The root this proves.
    pub fn root(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key)
    }
}

/// Most trees a TREE frame may describe (and [`Config::trees`](crate::Config::trees) may ask for).
pub const MAX_TREES: usize = 64;

/// A node's place in one rooted tree, as told to one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeAdvert {
    /// The root the sender follows (the lowest it knows a path to, in the tree's order).
    pub root: NodeId,
    /// The sender's hops to that root.
    pub distance: u8,
    /// Whether the receiver is the sender's parent (so the sender is its child).
    pub child: bool,
    /// The sender's latency to that root along its path, in milliseconds: the sum of its links'
    /// one-way latencies (half their measured round trips). Parents are chosen by it, so each tree is
    /// a fastest-path tree from its root, not only a fewest-hops one.
    pub cost: u32,
}

/// A broadcast message as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// [`MessageId::compute`] of origin, seq, topic and payload; receivers recompute it.
    pub id: MessageId,
    /// The node that published it.
    pub origin: NodeId,
    /// The origin's sequence number, increasing over its messages.
    pub seq: u64,
    /// When the origin published it (its clock).
    pub timestamp: Instant,
    /// Topic.
    pub topic: String,
    /// Application bytes.
    pub payload: Vec<u8>,
    /// Hops travelled before this send: 0 when the origin sends it. Not signed (relays change it).
    pub hops: u8,
    /// The rooted tree the message travels on, chosen by its origin (0 without rooted trees). Not
    /// signed: a relay that changes it changes only which links carry the message eagerly.
    pub tree: u8,
    /// The origin's key and signature; `None` only for unsigned compatibility messages.
    pub auth: Option<Auth>,
}

/// The origin's public key and its signature over the message's content and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// ed25519 public key; its SHA-1 must be the message's origin.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// ed25519 signature.
    #[serde(with = "signature_serde")]
    pub signature: [u8; SIGNATURE_LEN],
}

/// One entry of an IHAVE: a message id and the hops after which the announcer received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The message.
    pub id: MessageId,
    /// Hops the message had travelled when it reached the announcer.
    pub hops: u8,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty frame")]
    Empty,
    /// A version this crate does not speak.
    #[error("unsupported gossip wire version {0}")]
    Version(u8),
    /// Not a well-formed frame, or bytes left over after it.
    #[error("malformed gossip frame")]
    Malformed,
}

/// The bytes of `frame`.
pub fn encode(frame: &Frame) -> Vec<u8> {
    // Serializing these types into a Vec has no failure mode (no maps of unknown length, no I/O).
    postcard::to_extend(frame, vec![VERSION]).unwrap_or_else(|_| vec![VERSION])
}

/// The frame in `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    match postcard::take_from_bytes::<Frame>(body) {
        Ok((frame, [])) => Ok(frame),
        _ => Err(DecodeError::Malformed),
    }
}

// serde implements arrays only up to 32 elements; a signature is two halves on the wire, which postcard
// encodes as exactly 64 bytes.
mod signature_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::SIGNATURE_LEN;

    pub(super) fn serialize<S: Serializer>(
        signature: &[u8; SIGNATURE_LEN],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&signature[..32]);
        s.copy_from_slice(&signature[32..]);
        (r, s).serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; SIGNATURE_LEN], D::Error> {
        let (r, s) = <([u8; 32], [u8; 32])>::deserialize(deserializer)?;
        let mut out = [0u8; SIGNATURE_LEN];
        out[..32].copy_from_slice(&r);
        out[32..].copy_from_slice(&s);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let origin = NodeId::hash(b"origin");
        Message {
            id: MessageId::compute(&origin, 3, "chat", b"hi"),
            origin,
            seq: 3,
            timestamp: Instant::from_millis(1_700_000_000_000),
            topic: "chat".into(),
            payload: b"hi".to_vec(),
            hops: 2,
            tree: 1,
            auth: Some(Auth {
                public_key: [1; 32],
                signature: core::array::from_fn(|i| i as u8),
            }),
        }
    }

    fn proof() -> RootProof {
        RootProof {
            public_key: [7; 32],
            timestamp: Instant::from_millis(1_700_000_000_000),
            signature: core::array::from_fn(|i| i as u8),
        }
    }

    #[test]
    fn every_frame_round_trips() {
        let id = sample().id;
        for frame in [
            Frame::Gossip(sample()),
            Frame::Ack(id),
            Frame::IHave(vec![Announce { id, hops: 4 }]),
            Frame::Graft(vec![id, id]),
            Frame::Graft(vec![]),
            Frame::Prune,
            Frame::CatchUp(30_000_000),
            Frame::Roots(vec![proof()]),
            Frame::Tree {
                proofs: vec![proof()],
                adverts: vec![
                    TreeAdvert {
                        root: NodeId::hash(b"root"),
                        distance: 3,
                        child: true,
                        cost: 120,
                    },
                    TreeAdvert {
                        root: NodeId::hash(b"other"),
                        distance: 0,
                        child: false,
                        cost: 0,
                    },
                ],
            },
            Frame::Tree {
                proofs: vec![],
                adverts: vec![],
            },
        ] {
            let bytes = encode(&frame);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes), Ok(frame));
        }
    }

    #[test]
    fn gossip_overhead_is_within_the_configured_frame_bound() {
        let config = crate::Config::default();
        let mut message = sample();
        message.seq = u64::MAX;
        message.timestamp = Instant::from_micros(u64::MAX);
        message.topic = "t".repeat(config.max_topic_len);
        message.payload = vec![0; config.max_payload_len];
        message.hops = u8::MAX;
        assert!(encode(&Frame::Gossip(message)).len() <= config.max_frame_len());
        let ihave = Frame::IHave(vec![
            Announce {
                id: sample().id,
                hops: u8::MAX
            };
            config.max_ids_per_frame
        ]);
        assert!(encode(&ihave).len() <= config.max_frame_len());
        // The largest `Tree` frame: a proof and an entry for each of the most trees, within the
        // bound even when payloads and announcements are small.
        let config = crate::Config {
            trees: MAX_TREES,
            max_topic_len: 0,
            max_payload_len: 0,
            max_ids_per_frame: 1,
            ..crate::Config::default()
        };
        let advert = TreeAdvert {
            root: NodeId::hash(b"root"),
            distance: u8::MAX,
            child: true,
            cost: u32::MAX,
        };
        let mut widest = proof();
        widest.timestamp = Instant::from_micros(u64::MAX);
        let tree = Frame::Tree {
            proofs: vec![widest; MAX_TREES],
            adverts: vec![advert; MAX_TREES],
        };
        assert!(encode(&tree).len() <= config.max_frame_len());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[9, 4]), Err(DecodeError::Version(9)));
        assert_eq!(decode(&[VERSION]), Err(DecodeError::Malformed));
        assert_eq!(decode(&[VERSION, 4, 0]), Err(DecodeError::Malformed));
        assert_eq!(decode(&[VERSION, 77]), Err(DecodeError::Malformed));
        // A length prefix far beyond the input must not allocate or panic.
        assert_eq!(
            decode(&[VERSION, 2, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(DecodeError::Malformed)
        );
        let bytes = encode(&Frame::Gossip(sample()));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
