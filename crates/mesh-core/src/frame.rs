//! The data-channel wire format: a version byte, a kind byte, a body; chunking and reassembly.
//!
//! Every frame on a link is `[VERSION][kind][body]`. The body of `Kad` and `Gossip` frames is the
//! composed core's own message, verbatim (both are postcard); every other body is postcard of the type
//! named below. A message longer than `max_frame_bytes` travels as `Chunk` frames, each carrying a slice
//! of the whole encoded frame, reassembled in bounded buffers (see [`Reassembly`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};
use serde::{Deserialize, Serialize};

use crate::Config;

/// Version byte of every frame.
pub const VERSION: u8 = 3;

/// Bytes a chunk frame adds to its slice of data (version, kind, message id, index, count and the slice
/// length, with postcard's worst-case varints), rounded up.
pub(crate) const CHUNK_OVERHEAD: usize = 24;

/// Largest DTLS fingerprint accepted in a hello, in bytes (a SHA-512 fingerprint is 64 bytes; its text
/// form about 200).
pub(crate) const MAX_FINGERPRINT: usize = 256;

/// Most ids a neighbor list or an alternatives list carries.
pub(crate) const MAX_ID_LIST: usize = 64;

/// Most ids the third level of a neighbor list carries (links' links' links: up to 4 × 4 × 4 = 64 with
/// five links each, more around nodes with more links).
pub(crate) const MAX_THIRD: usize = 256;

/// Most ids the sampled fourth level of a neighbor list carries: one per value of an id's first byte.
pub(crate) const MAX_FOURTH: usize = 256;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`Hello`]: the signed link handshake.
    Hello = 0,
    /// A kademlia-core message, verbatim.
    Kad = 1,
    /// A gossip-core message, verbatim.
    Gossip = 2,
    /// [`Routed`] carrying application data, an acknowledgement, a Kademlia RPC or a lookup probe.
    Direct = 3,
    /// [`Routed`] carrying signaling (offer, answer, candidate, link request or refusal).
    Signal = 4,
    /// [`Chunk`]: a slice of a frame longer than the frame limit.
    Chunk = 5,
    /// [`Neighbors`]: the sender's links and their links, sent after the hello and whenever they change.
    Neighbors = 6,
    /// Keepalive (a `u64` nonce).
    Ping = 7,
    /// Answer to a ping (the same nonce).
    Pong = 8,
    /// The sender evicts this link; the body lists alternative peers (the seed's `reconnection_data`).
    Evict = 9,
    /// The sender leaves the mesh (graceful close).
    Bye = 10,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Hello,
            1 => Kind::Kad,
            2 => Kind::Gossip,
            3 => Kind::Direct,
            4 => Kind::Signal,
            5 => Kind::Chunk,
            6 => Kind::Neighbors,
            7 => Kind::Ping,
            8 => Kind::Pong,
            9 => Kind::Evict,
            10 => Kind::Bye,
            _ => return None,
        })
    }
}

/// The signed hello each side sends first on a new link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's ed25519 public key; its SHA-1 must be the peer id the link was opened for.
    pub public_key: [u8; 32],
    /// The sender's own DTLS fingerprint.
    pub sender_fingerprint: Vec<u8>,
    /// The DTLS fingerprint the sender sees for the receiver.
    pub receiver_fingerprint: Vec<u8>,
    /// ed25519 signature over [`Hello::signed_bytes`].
    pub signature: Vec<u8>,
}

impl Hello {
    /// Domain separation for hello signatures.
    pub const DOMAIN: &'static [u8] = b"p2pmesh-hello-v1";

    /// What the signature covers: domain, key, both fingerprints (length-prefixed).
    pub fn signed_bytes(public_key: &[u8; 32], sender_fp: &[u8], receiver_fp: &[u8]) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(Self::DOMAIN.len() + 32 + 8 + sender_fp.len() + receiver_fp.len());
        out.extend_from_slice(Self::DOMAIN);
        out.extend_from_slice(public_key);
        out.extend_from_slice(&(sender_fp.len() as u32).to_le_bytes());
        out.extend_from_slice(sender_fp);
        out.extend_from_slice(&(receiver_fp.len() as u32).to_le_bytes());
        out.extend_from_slice(receiver_fp);
        out
    }
}

/// A message addressed to any node id, forwarded hop by hop and signed end to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    /// The origin.
    pub src: NodeId,
    /// The addressee.
    pub dst: NodeId,
    /// Origin-chosen id (direct message id, lookup probe id, ...).
    pub id: u64,
    /// When the origin first sent it, microseconds since the Unix epoch on the origin's clock (signed):
    /// the same on every retry of one direct message, and an `Ack` carries the one of the message it
    /// acknowledges. The receiver refuses direct messages and link signaling dated outside its
    /// freshness window (`Config::max_message_age`, `Config::max_clock_skew`), and remembers the fresh
    /// ones until they age out, so a replay is refused and a restarted sender's ids never collide.
    pub sent_at: u64,
    /// When set, any node on the way that knows this id answers the lookup probe itself.
    pub lookup: Option<NodeId>,
    /// Link traversals left; a node receiving 0 may not forward.
    pub hops_left: u8,
    /// Nodes visited so far, the origin first (forwarding state, not signed).
    pub path: Vec<NodeId>,
    /// Explicit next hops (a reply retracing its request's path), starting at the receiver; followed
    /// while they are links. A forwarder refuses a route that does not name it first, revisits a
    /// node, does not end at `dst` or is longer than the hops left.
    pub route: Vec<NodeId>,
    /// The origin's ed25519 public key; its SHA-1 must be `src`.
    pub key: [u8; 32],
    /// ed25519 signature over [`Routed::signed_bytes`], or empty: a `Data` or `Ack` the origin sends
    /// straight over the verified link to `dst` (the link authenticates it; never forwarded, never
    /// through the server). The receiver accepts an empty one only from that link's peer with path
    /// `[src]`; see `Node::deliver`.
    pub signature: Vec<u8>,
    /// Postcard of a [`Payload`].
    pub body: Vec<u8>,
}

impl Routed {
    /// Domain separation for routed-message signatures.
    pub const DOMAIN: &'static [u8] = b"p2pmesh-routed-v1";

    /// What the signature covers: domain, src, dst, id, sent_at, lookup target, body.
    pub fn signed_bytes(
        src: &NodeId,
        dst: &NodeId,
        id: u64,
        sent_at: u64,
        lookup: Option<&NodeId>,
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::DOMAIN.len() + 78 + body.len());
        out.extend_from_slice(Self::DOMAIN);
        out.extend_from_slice(src.as_bytes());
        out.extend_from_slice(dst.as_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&sent_at.to_le_bytes());
        match lookup {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(t.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(body);
        out
    }

    /// Link traversals made so far.
    pub fn hops(&self) -> u32 {
        u32::try_from(self.path.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }
}

/// What a [`Routed`] message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Application data (`Node::send`).
    Data(Vec<u8>),
    /// End-to-end acknowledgement of the direct message with the envelope's `id`.
    Ack,
    /// A kademlia-core message for a contact without a link.
    Kad(Vec<u8>),
    /// WebRTC signaling (offer, answer, candidate) for the driver.
    Signal(Vec<u8>),
    /// "Please initiate a link to me": sent by the higher id, which may not make the offer.
    LinkRequest,
    /// A link request or offer refused (the seed's `connection_rejected`), with alternative peers.
    Rejected(Vec<NodeId>),
    /// Lookup probe: "send me the contacts you know closest to the envelope's `lookup` target".
    FindNode,
    /// Answer to the probe with the envelope's `id`: the closest contacts known to the answerer.
    Nodes {
        /// Link traversals the probe made to reach the answerer (a server relay counts as one), so
        /// that the origin can report a lookup's link traversals, not only its rounds.
        probe_hops: u32,
        /// The closest contacts known to the answerer, at most `lookup_k`.
        nodes: Vec<NodeId>,
    },
    /// DHT get: "the record under `key`". Sent toward the key (`dst == key`, `lookup == Some(key)`):
    /// the first node on the way that holds the record answers, otherwise the node where no link
    /// leads closer to the key; or to one node (`dst` its id), which answers.
    DhtGet {
        /// The record's key.
        key: NodeId,
    },
    /// DHT put: sent toward the record's key (`dst == lookup == key`); the node where no link leads
    /// closer stores it and answers with the nodes it knows closest to the key, to which the origin
    /// then sends [`Payload::DhtStore`].
    DhtPut {
        /// The record, signed by its publisher.
        record: kademlia_core::Record,
    },
    /// DHT store at the addressee (a replica, or a node that should hold the record).
    DhtStore {
        /// The record, signed by its publisher.
        record: kademlia_core::Record,
    },
    /// Answer to a `DhtGet` (same envelope id).
    DhtValue {
        /// The record, or `None` when the answerer has none.
        record: Option<kademlia_core::Record>,
        /// When `record` is `None`: the nodes closest to the key the answerer knows, at most
        /// `lookup_k`.
        closest: Vec<NodeId>,
        /// Link traversals the request made to reach the answerer.
        request_hops: u32,
    },
    /// Answer to a `DhtPut` or `DhtStore` (same envelope id).
    DhtStored {
        /// Whether the answerer stores the record, or why not.
        result: Result<(), kademlia_core::StoreError>,
        /// From the node where a put arrived: the nodes closest to the key it knows, at most
        /// `lookup_k` (empty in an answer to a store).
        closest: Vec<NodeId>,
        /// Link traversals the request made to reach the answerer.
        request_hops: u32,
    },
}

impl Payload {
    /// Whether the payload travels in a `Signal` frame rather than a `Direct` one.
    pub fn is_signaling(&self) -> bool {
        matches!(
            self,
            Payload::Signal(_) | Payload::LinkRequest | Payload::Rejected(_)
        )
    }
}

/// What a node tells its links about its surroundings, so that they route with a three-hop horizon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbors {
    /// The sender's up links (the receiver excluded).
    pub links: Vec<NodeId>,
    /// The union of those links' own links (the sender, the receiver and `links` excluded).
    pub second: Vec<NodeId>,
    /// The union of those links' second levels (ids of the levels above excluded): with it, the
    /// receiver's routing sees four hops through the sender.
    pub third: Vec<NodeId>,
    /// A sample of those links' third levels (ids of the levels above excluded): the lowest id of each
    /// value of the first byte, sorted. It lets the receiver's routing see, five hops through the
    /// sender, a node in almost every 1/256 of the id space.
    pub fourth: Vec<NodeId>,
}

/// A slice of a frame longer than the frame limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Sender-chosen id of the whole message, per link.
    pub msg: u32,
    /// Index of this slice.
    pub index: u16,
    /// Number of slices.
    pub count: u16,
    /// The slice.
    pub data: Vec<u8>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See [`Kind::Hello`].
    Hello(Hello),
    /// See [`Kind::Kad`].
    Kad(Vec<u8>),
    /// See [`Kind::Gossip`].
    Gossip(Vec<u8>),
    /// See [`Kind::Direct`] and [`Kind::Signal`].
    Routed(Routed),
    /// See [`Kind::Chunk`].
    Chunk(Chunk),
    /// See [`Kind::Neighbors`].
    Neighbors(Neighbors),
    /// See [`Kind::Ping`].
    Ping(u64),
    /// See [`Kind::Pong`].
    Pong(u64),
    /// See [`Kind::Evict`].
    Evict(Vec<NodeId>),
    /// See [`Kind::Bye`].
    Bye,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the two header bytes.
    #[error("frame too short")]
    Short,
    /// An unknown version byte.
    #[error("unknown frame version {0}")]
    Version(u8),
    /// An unknown kind byte.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// The body does not decode, has trailing bytes, or breaks a bound.
    #[error("malformed frame body")]
    Body,
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        _ => Err(DecodeError::Body),
    }
}

impl Frame {
    /// The kind byte this frame is written with.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello(_) => Kind::Hello,
            Frame::Kad(_) => Kind::Kad,
            Frame::Gossip(_) => Kind::Gossip,
            Frame::Routed(r) => {
                // The payload's variant index is its first byte (postcard varint, < 128).
                match r.body.first() {
                    Some(3..=5) => Kind::Signal,
                    _ => Kind::Direct,
                }
            }
            Frame::Chunk(_) => Kind::Chunk,
            Frame::Neighbors(_) => Kind::Neighbors,
            Frame::Ping(_) => Kind::Ping,
            Frame::Pong(_) => Kind::Pong,
            Frame::Evict(_) => Kind::Evict,
            Frame::Bye => Kind::Bye,
        }
    }

    /// The frame's bytes (before chunking), serialized straight after the two header bytes.
    pub fn encode(&self) -> Vec<u8> {
        let header = [VERSION, self.kind() as u8];
        let mut out = Vec::with_capacity(header.len() + self.body_len_hint());
        out.extend_from_slice(&header);
        // postcard into a Vec cannot fail for these types (no maps with non-string keys, no
        // unsupported serde features); an empty body would be dropped by the receiver anyway.
        let encoded = match self {
            Frame::Hello(h) => postcard::to_extend(h, out),
            Frame::Kad(b) | Frame::Gossip(b) => {
                out.extend_from_slice(b);
                return out;
            }
            Frame::Routed(r) => postcard::to_extend(r, out),
            Frame::Chunk(c) => postcard::to_extend(c, out),
            Frame::Neighbors(n) => postcard::to_extend(n, out),
            Frame::Evict(ids) => postcard::to_extend(ids, out),
            Frame::Ping(n) | Frame::Pong(n) => postcard::to_extend(n, out),
            Frame::Bye => return out,
        };
        encoded.unwrap_or_else(|_| header.to_vec())
    }

    /// A close upper bound of the body's encoded length where it is cheap to know (the id lists,
    /// the cores' bytes), so that encoding allocates once; small otherwise.
    fn body_len_hint(&self) -> usize {
        // An id is 20 bytes; a list's length prefix at most 5.
        let ids = |n: usize| n * 20 + 5;
        match self {
            Frame::Kad(b) | Frame::Gossip(b) => b.len(),
            Frame::Neighbors(n) => {
                ids(n.links.len()) + ids(n.second.len()) + ids(n.third.len()) + ids(n.fourth.len())
            }
            Frame::Evict(list) => ids(list.len()),
            Frame::Routed(r) => 200 + 20 * (r.path.len() + r.route.len()) + r.body.len(),
            Frame::Chunk(c) => 16 + c.data.len(),
            Frame::Hello(_) | Frame::Ping(_) | Frame::Pong(_) | Frame::Bye => 128,
        }
    }

    /// The body of a kademlia-core or gossip-core frame, as [`Frame::decode`] would give it, without
    /// copying it; `None` for every other frame (and for a malformed one, which `decode` reports).
    pub fn core_body(bytes: &[u8]) -> Option<(Kind, &[u8])> {
        match bytes {
            [VERSION, kind, rest @ ..] => match Kind::from_byte(*kind)? {
                kind @ (Kind::Kad | Kind::Gossip) => Some((kind, rest)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Decodes one frame; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        let [version, kind, rest @ ..] = bytes else {
            return Err(DecodeError::Short);
        };
        if *version != VERSION {
            return Err(DecodeError::Version(*version));
        }
        let kind = Kind::from_byte(*kind).ok_or(DecodeError::Kind(*kind))?;
        let frame = match kind {
            Kind::Hello => {
                let h: Hello = body(rest)?;
                if h.sender_fingerprint.len() > MAX_FINGERPRINT
                    || h.receiver_fingerprint.len() > MAX_FINGERPRINT
                    || h.signature.len() != 64
                {
                    return Err(DecodeError::Body);
                }
                Frame::Hello(h)
            }
            Kind::Kad => Frame::Kad(rest.to_vec()),
            Kind::Gossip => Frame::Gossip(rest.to_vec()),
            Kind::Direct | Kind::Signal => {
                let r: Routed = body(rest)?;
                // Empty: unsigned, accepted by the node only straight over the verified link from
                // its origin (see `Routed::signature`).
                if !(r.signature.is_empty() || r.signature.len() == 64)
                    || r.path.len() > usize::from(u8::MAX) + 1
                    || r.route.len() > usize::from(u8::MAX) + 1
                {
                    return Err(DecodeError::Body);
                }
                Frame::Routed(r)
            }
            Kind::Chunk => {
                let c: Chunk = body(rest)?;
                if c.count < 2 || c.index >= c.count || c.data.is_empty() {
                    return Err(DecodeError::Body);
                }
                Frame::Chunk(c)
            }
            Kind::Neighbors => {
                let n: Neighbors = body(rest)?;
                if n.links.len() > MAX_ID_LIST
                    || n.second.len() > MAX_ID_LIST
                    || n.third.len() > MAX_THIRD
                    || n.fourth.len() > MAX_FOURTH
                {
                    return Err(DecodeError::Body);
                }
                Frame::Neighbors(n)
            }
            Kind::Evict => {
                let ids: Vec<NodeId> = body(rest)?;
                if ids.len() > MAX_ID_LIST {
                    return Err(DecodeError::Body);
                }
                Frame::Evict(ids)
            }
            Kind::Ping => Frame::Ping(body(rest)?),
            Kind::Pong => Frame::Pong(body(rest)?),
            Kind::Bye => {
                if !rest.is_empty() {
                    return Err(DecodeError::Body);
                }
                Frame::Bye
            }
        };
        Ok(frame)
    }
}

/// Splits an encoded frame into data-channel messages of at most `max_frame_bytes`: the frame itself
/// when it fits, else `Chunk` frames. `msg` is the per-link chunked-message counter.
pub fn split(frame: Vec<u8>, max_frame_bytes: usize, msg: u32) -> Vec<Vec<u8>> {
    if frame.len() <= max_frame_bytes {
        return alloc::vec![frame];
    }
    let slice = max_frame_bytes.saturating_sub(CHUNK_OVERHEAD).max(1);
    let count = frame.len().div_ceil(slice);
    let Ok(count16) = u16::try_from(count) else {
        // Callers bound messages by max_message_bytes, which Config::check keeps under 65535 chunks.
        return Vec::new();
    };
    frame
        .chunks(slice)
        .enumerate()
        .map(|(i, data)| {
            Frame::Chunk(Chunk {
                msg,
                index: u16::try_from(i).unwrap_or(u16::MAX),
                count: count16,
                data: data.to_vec(),
            })
            .encode()
        })
        .collect()
}

#[derive(Debug)]
struct Partial {
    started: Instant,
    count: u16,
    received: u16,
    bytes: usize,
    slices: Vec<Option<Vec<u8>>>,
}

/// Reassembly buffers of one link, bounded in count, bytes and age (see [`Config`]).
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: BTreeMap<u32, Partial>,
    bytes: usize,
}

/// What a chunk did to the reassembly buffers.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkResult {
    /// A whole frame is back.
    Complete(Vec<u8>),
    /// Stored; more slices are missing.
    Pending,
    /// Dropped: inconsistent with earlier slices, duplicate, or past `max_message_bytes`.
    Invalid,
}

impl Reassembly {
    /// Bytes currently buffered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages currently being reassembled.
    pub fn len(&self) -> usize {
        self.partial.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// Drops partial messages older than `reassembly_timeout`; returns how many.
    pub fn expire(&mut self, now: Instant, config: &Config) -> usize {
        let before = self.partial.len();
        let timeout = config.reassembly_timeout;
        let mut freed = 0;
        self.partial.retain(|_, p| {
            let keep = now.saturating_duration_since(p.started) < timeout;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.bytes -= freed;
        before - self.partial.len()
    }

    /// The earliest time a partial message expires.
    pub fn next_expiry(&self, config: &Config) -> Option<Instant> {
        self.partial
            .values()
            .map(|p| p.started + config.reassembly_timeout)
            .min()
    }

    fn remove(&mut self, msg: u32) -> Option<Partial> {
        let p = self.partial.remove(&msg)?;
        self.bytes -= p.bytes;
        Some(p)
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .partial
            .iter()
            .min_by_key(|(id, p)| (p.started, **id))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.remove(id);
        }
    }

    /// Adds a chunk; returns the whole frame when it is complete.
    pub fn push(&mut self, now: Instant, chunk: Chunk, config: &Config) -> ChunkResult {
        let max_count = config
            .max_message_bytes
            .div_ceil(config.max_frame_bytes.saturating_sub(CHUNK_OVERHEAD).max(1));
        if usize::from(chunk.count) > max_count.max(2)
            || chunk.data.len() > config.max_message_bytes
        {
            return ChunkResult::Invalid;
        }
        if !self.partial.contains_key(&chunk.msg) {
            while self.partial.len() >= config.max_reassembly_messages.max(1) {
                self.drop_oldest();
            }
            self.partial.insert(
                chunk.msg,
                Partial {
                    started: now,
                    count: chunk.count,
                    received: 0,
                    bytes: 0,
                    slices: alloc::vec![None; usize::from(chunk.count)],
                },
            );
        }
        let len = chunk.data.len();
        let Some(p) = self.partial.get_mut(&chunk.msg) else {
            return ChunkResult::Invalid;
        };
        let index = usize::from(chunk.index);
        if p.count != chunk.count || p.slices.get(index).is_none_or(Option::is_some) {
            self.remove(chunk.msg);
            return ChunkResult::Invalid;
        }
        if p.bytes + len > config.max_message_bytes {
            self.remove(chunk.msg);
            return ChunkResult::Invalid;
        }
        p.slices[index] = Some(chunk.data);
        p.bytes += len;
        p.received += 1;
        self.bytes += len;
        let complete = p.received == p.count;
        if complete {
            let Some(p) = self.remove(chunk.msg) else {
                return ChunkResult::Invalid;
            };
            let mut out = Vec::with_capacity(p.bytes);
            for s in p.slices.into_iter().flatten() {
                out.extend_from_slice(&s);
            }
            return ChunkResult::Complete(out);
        }
        // Over the per-link byte budget: drop the oldest other messages, then this one if needed.
        while self.bytes > config.max_reassembly_bytes {
            let oldest = self
                .partial
                .iter()
                .filter(|(id, _)| **id != chunk.msg)
                .min_by_key(|(id, p)| (p.started, **id))
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.remove(id);
                }
                None => {
                    self.remove(chunk.msg);
                    return ChunkResult::Invalid;
                }
            }
        }
        ChunkResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 20])
    }

    /// Slice `index` of `count` of message `msg`: `len` zero bytes.
    fn chunk(msg: u32, index: u16, count: u16, len: usize) -> Chunk {
        Chunk {
            msg,
            index,
            count,
            data: alloc::vec![0; len],
        }
    }

    fn small_config() -> Config {
        Config {
            max_frame_bytes: 1024,
            max_message_bytes: 8 * 1024,
            max_reassembly_bytes: 10 * 1024,
            max_reassembly_messages: 2,
            ..Config::default()
        }
    }

    fn samples() -> Vec<Frame> {
        alloc::vec![
            Frame::Hello(Hello {
                public_key: [7; 32],
                sender_fingerprint: alloc::vec![1, 2, 3],
                receiver_fingerprint: alloc::vec![4, 5],
                signature: alloc::vec![9; 64],
            }),
            Frame::Kad(alloc::vec![1, 2, 3]),
            Frame::Gossip(alloc::vec![]),
            Frame::Routed(Routed {
                src: id(1),
                dst: id(2),
                id: 77,
                sent_at: 1_234_567,
                lookup: Some(id(3)),
                hops_left: 5,
                path: alloc::vec![id(1), id(4)],
                route: alloc::vec![],
                key: [3; 32],
                signature: alloc::vec![0; 64],
                body: postcard::to_allocvec(&Payload::Signal(alloc::vec![1])).unwrap_or_default(),
            }),
            Frame::Neighbors(Neighbors {
                links: alloc::vec![id(1), id(2)],
                second: alloc::vec![id(5)],
                third: alloc::vec![id(6), id(7)],
                fourth: alloc::vec![id(8)],
            }),
            Frame::Ping(5),
            Frame::Pong(u64::MAX),
            Frame::Evict(alloc::vec![id(9)]),
            Frame::Bye,
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for f in samples() {
            let bytes = f.encode();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(Frame::decode(&bytes), Ok(f));
        }
    }

    #[test]
    fn signaling_payloads_use_the_signal_kind() {
        let f = &samples()[3];
        assert_eq!(f.kind(), Kind::Signal);
        assert_eq!(f.encode()[1], Kind::Signal as u8);
    }

    #[test]
    fn bad_headers_and_bodies_are_errors() {
        assert_eq!(Frame::decode(&[]), Err(DecodeError::Short));
        assert_eq!(
            Frame::decode(&[VERSION + 1, 0]),
            Err(DecodeError::Version(VERSION + 1))
        );
        // The previous version (before signed `Routed.sent_at`) is refused, not misread.
        assert_eq!(
            Frame::decode(&[VERSION - 1, 0]),
            Err(DecodeError::Version(VERSION - 1))
        );
        assert_eq!(Frame::decode(&[VERSION, 200]), Err(DecodeError::Kind(200)));
        assert_eq!(Frame::decode(&[VERSION, 0, 1, 2]), Err(DecodeError::Body));
        assert_eq!(Frame::decode(&[VERSION, 10, 0]), Err(DecodeError::Body));
        // trailing bytes after a ping body
        assert_eq!(Frame::decode(&[VERSION, 7, 5, 5]), Err(DecodeError::Body));
    }

    #[test]
    fn chunking_round_trips() {
        let config = small_config();
        let big = Frame::Gossip((0..5000u32).map(|i| i as u8).collect()).encode();
        let parts = split(big.clone(), config.max_frame_bytes, 9);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() <= config.max_frame_bytes));
        let mut r = Reassembly::default();
        let now = Instant::from_millis(1);
        let mut out = None;
        for p in parts {
            let Ok(Frame::Chunk(c)) = Frame::decode(&p) else {
                panic!("not a chunk");
            };
            match r.push(now, c, &config) {
                ChunkResult::Complete(b) => out = Some(b),
                ChunkResult::Pending => {}
                ChunkResult::Invalid => panic!("invalid"),
            }
        }
        assert_eq!(out, Some(big));
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn reassembly_is_bounded_in_count_bytes_and_age() {
        let config = small_config();
        let now = Instant::from_millis(1);
        let mut r = Reassembly::default();
        for msg in 0..5 {
            assert_eq!(
                r.push(now, chunk(msg, 0, 4, 900), &config),
                ChunkResult::Pending
            );
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.bytes(), 1800);
        // a message whose slices exceed max_message_bytes is dropped
        assert_eq!(
            r.push(now, chunk(99, 0, 3, 9000), &config),
            ChunkResult::Invalid
        );
        // too many chunks announced
        assert_eq!(
            r.push(now, chunk(98, 0, 60000, 1), &config),
            ChunkResult::Invalid
        );
        // duplicates and inconsistent counts drop the message
        assert_eq!(
            r.push(now, chunk(4, 0, 4, 1), &config),
            ChunkResult::Invalid
        );
        assert_eq!(r.len(), 1);
        let later = now + config.reassembly_timeout;
        assert_eq!(r.expire(later, &config), 1);
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Frame::decode(&bytes);
            let mut with_header = alloc::vec![VERSION];
            with_header.extend_from_slice(&bytes);
            let _ = Frame::decode(&with_header);
        }

        /// The cores' frames passed on without a copy are the bodies `decode` gives, and every
        /// other input goes through `decode`.
        #[test]
        fn core_bodies_are_what_decode_gives(
            version in prop_oneof![Just(VERSION), any::<u8>()],
            kind in 0u8..12,
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = alloc::vec![version, kind];
            bytes.extend_from_slice(&body);
            let decoded = match Frame::decode(&bytes) {
                Ok(Frame::Kad(b)) => Some((Kind::Kad, b)),
                Ok(Frame::Gossip(b)) => Some((Kind::Gossip, b)),
                _ => None,
            };
            let passed = Frame::core_body(&bytes).map(|(k, b)| (k, b.to_vec()));
            prop_assert_eq!(passed, decoded);
            prop_assert_eq!(Frame::core_body(&bytes[..1]), None);
        }

        #[test]
        fn chunks_round_trip_any_size(len in 1usize..6000, limit in 1024usize..2048) {
            let config = Config { max_frame_bytes: limit, max_message_bytes: 8192, max_reassembly_bytes: 8192, ..Config::default() };
            let frame = Frame::Kad(alloc::vec![0xab; len]).encode();
            let parts = split(frame.clone(), limit, 1);
            let mut r = Reassembly::default();
            let mut got = None;
            for p in &parts {
                prop_assert!(p.len() <= limit);
                match Frame::decode(p) {
                    Ok(Frame::Chunk(c)) => {
                        if let ChunkResult::Complete(b) = r.push(Instant::ZERO, c, &config) { got = Some(b); }
                    }
                    Ok(_) => got = Some(p.clone()),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            prop_assert_eq!(got, Some(frame));
        }
    }
}
