//! The structured target: a mesh-core [`Node`] driven as a driver would, while up to four linked
//! peers (whose keys the target holds, so their hellos, envelopes and broadcasts verify) and the
//! signaling server send it what they like.
//!
//! The input is read with [`arbitrary`] as a sequence of [`Action`]s. Frames are built from
//! structured values and encoded with the crates' own encoders, signed where the protocol signs, and
//! may echo the ids the node itself sent (its Kademlia request ids, its routed message ids and probe
//! ids, its broadcast ids), so that they get past the decoders and the checks and reach deep states:
//! links up, answered lookups, acknowledged direct messages, chunked frames, tree adverts.

use arbitrary::{Arbitrary, Unstructured};
use core::time::Duration;
use gossip_core::{Identity, MessageId};
use kademlia_core::wire::{Message as KadMessage, Request as KadRequest, Response as KadResponse};
use mesh_core::frame::{self, Frame, Hello, Neighbors, Payload, Routed};
use mesh_core::{Config, Event, Instant, Node, NodeId, Output, ServerInput};

use crate::MAX_OUTPUTS_PER_INPUT;

/// Peers whose keys the target holds.
const ATTACKERS: usize = 4;

/// Most actions one input runs.
const MAX_ACTIONS: usize = 128;

/// Ids the node sent that frames may echo (most recent kept).
const MAX_ECHOES: usize = 32;

/// A node id: an attacker's (0-3), the node's own (4), one near the node's (5-8, differing from it
/// in one bit of its last, third, first byte...) or a made-up one (9 and above).
#[derive(Debug, Clone, Copy, Arbitrary)]
struct IdRef(u8);

/// An id the node sent, or a fresh one.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Echo {
    /// The `n`th (modulo) of the ids the node sent lately.
    Sent(u8),
    /// Any id.
    Fresh(u64),
}

#[derive(Debug, Arbitrary)]
enum Action {
    /// The peer asks for a link through the server, the link opens and its hello verifies.
    Connect(IdRef),
    /// The driver reports a data channel to the peer open.
    Open(IdRef),
    /// The peer sends a hello (its own key or another's; this link's fingerprints or others).
    Hello {
        peer: IdRef,
        key: IdRef,
        right_fingerprints: bool,
        good_signature: bool,
    },
    /// The peer sends a frame.
    Send { peer: IdRef, frame: FrameSpec },
    /// The peer sends a frame as chunks (split at the node's frame limit), in this order (all in
    /// order when empty).
    Chunked {
        peer: IdRef,
        frame: FrameSpec,
        order: Vec<u8>,
    },
    /// The peer sends raw bytes.
    Raw { peer: IdRef, bytes: Vec<u8> },
    /// The signaling server says something.
    Server(ServerSpec),
    /// Time passes (milliseconds), then the node's timers run if due.
    Wait(u16),
    /// Much time passes (minutes), then the node's timers run.
    LongWait(u8),
    /// The driver calls `handle_timeout` now, due or not.
    Timeout,
    /// The link to the peer closes.
    Closed(IdRef),
    /// The application does something.
    App(AppSpec),
}

#[derive(Debug, Arbitrary)]
enum FrameSpec {
    Kad(KadSpec),
    Gossip(GossipSpec),
    Routed(RoutedSpec),
    Neighbors {
        links: Vec<IdRef>,
        second: Vec<IdRef>,
        third: Vec<IdRef>,
        fourth: Vec<IdRef>,
    },
    Ping(u64),
    Pong(u64),
    Evict(Vec<IdRef>),
    Bye,
}

#[derive(Debug, Arbitrary)]
enum KadSpec {
    Request { id: u64, body: KadRequestSpec },
    Response { id: Echo, body: KadResponseSpec },
}

#[derive(Debug, Arbitrary)]
enum KadRequestSpec {
    Ping,
    FindNode(IdRef),
    FindValue(IdRef),
    Store(RecordSpec),
}

#[derive(Debug, Arbitrary)]
enum KadResponseSpec {
    Pong,
    Nodes(Vec<IdRef>),
    Value(RecordSpec),
    Stored(bool),
}

#[derive(Debug, Arbitrary)]
struct RecordSpec {
    /// The attacker that signs it (index modulo the attackers).
    publisher: u8,
    salt: Vec<u8>,
    seq: u64,
    value: Vec<u8>,
    ttl_s: u16,
    /// Flip one bit of the signature.
    forged: bool,
    /// Name this key instead of the one the publisher's key and salt derive.
    key: Option<IdRef>,
}

#[derive(Debug, Arbitrary)]
enum GossipSpec {
    /// The sending peer (attacker 0 if the sender is not one) publishes a signed message dated
    /// `skew_s` seconds from now, relayed with these hops and tree.
    Publish {
        skew_s: i16,
        payload: Vec<u8>,
        hops: u8,
        tree: u8,
        other_topic: bool,
    },
    Ack(Echo),
    IHave(Vec<(Echo, u8)>),
    Graft(Vec<Echo>),
    Prune,
    /// Entries (root, distance, child, cost) with root proofs as in `Roots`.
    Tree {
        proofs: Vec<(u8, i16, bool)>,
        adverts: Vec<(IdRef, u8, bool, u32)>,
    },
    CatchUp(u64),
    /// Root proofs signed by these attackers (modulo), dated `skew_s` seconds from now; `forged`
    /// flips a bit of the signature.
    Roots(Vec<(u8, i16, bool)>),
}

#[derive(Debug, Arbitrary)]
enum Signature {
    /// By `src`'s key when the target holds it.
    Valid,
    /// Empty (accepted only straight from the origin over its link).
    Unsigned,
    /// 64 bytes of this value.
    Garbage(u8),
}

#[derive(Debug, Arbitrary)]
struct RoutedSpec {
    /// The origin (the sender when `None`).
    src: Option<IdRef>,
    /// The addressee (the node when `None`).
    dst: Option<IdRef>,
    id: Echo,
    lookup: Option<IdRef>,
    hops_left: u8,
    /// Nodes between the origin and the sender; `path` is `[src] + via + [sender]` unless
    /// `raw_path`, when it is `via` alone.
    via: Vec<IdRef>,
    raw_path: bool,
    route: Vec<IdRef>,
    /// Seconds after (positive) or before the harness's clock the origin dates it.
    sent_at_offset_s: i16,
    signature: Signature,
    payload: PayloadSpec,
}

#[derive(Debug, Arbitrary)]
enum PayloadSpec {
    Data(Vec<u8>),
    /// `len` bytes of `byte` (large messages, chunked on the way).
    Big {
        byte: u8,
        len: u16,
    },
    Ack,
    Kad(KadSpec),
    Signal(Vec<u8>),
    LinkRequest,
    Rejected(Vec<IdRef>),
    FindNode,
    Nodes {
        probe_hops: u32,
        nodes: Vec<IdRef>,
    },
    /// A body that is not necessarily a payload.
    Raw(Vec<u8>),
    DhtGet(DhtKey),
    DhtPut(RecordSpec),
    DhtStore(RecordSpec),
    DhtValue {
        record: Option<RecordSpec>,
        closest: Vec<IdRef>,
        request_hops: u32,
    },
    DhtStored {
        /// `None`: stored; else a refusal (modulo the kinds).
        refused: Option<u8>,
        closest: Vec<IdRef>,
        request_hops: u32,
    },
}

/// A DHT record name: one of eight short ones (`name-0`..`name-7`, which the node's own puts use
/// too) or `n` bytes of `n` (from 8; over `MAX_SALT_BYTES` from 65).
#[derive(Debug, Clone, Copy, Arbitrary)]
struct Name(u8);

impl Name {
    fn bytes(self) -> Vec<u8> {
        if self.0 < 8 {
            format!("name-{}", self.0).into_bytes()
        } else {
            vec![self.0; usize::from(self.0)]
        }
    }
}

/// The key of a DHT request: a name's ([`kademlia_core::Record::key_for`]) or any id.
#[derive(Debug, Arbitrary)]
enum DhtKey {
    Name(Name),
    Id(IdRef),
}

#[derive(Debug, Arbitrary)]
enum ServerSpec {
    Bootstrap(Vec<IdRef>),
    Joined(IdRef),
    Left(IdRef),
    Relayed { from: IdRef, routed: RoutedSpec },
    RelayedRaw { from: IdRef, bytes: Vec<u8> },
}

#[derive(Debug, Arbitrary)]
enum AppSpec {
    Broadcast(Vec<u8>),
    Send { to: IdRef, data: Vec<u8> },
    FindNode(IdRef),
    DhtFindNode(IdRef),
    Get(Name),
    Put { name: Name, value: Vec<u8> },
    Remove(Name),
    Signal { to: IdRef, payload: Vec<u8> },
    Leave,
    Join,
}

/// The node under test, the attackers, and what the node sent that they may echo.
struct Harness {
    node: Node,
    config: Config,
    now: Instant,
    local: NodeId,
    attackers: Vec<Identity>,
    /// Each attacker's gossip node (it publishes the signed broadcasts the attacker sends).
    publishers: Vec<gossip_core::Node>,
    /// Ids of routed messages the node sent (direct messages, probes), with their addressee.
    routed_ids: Vec<u64>,
    /// Ids of the node's Kademlia requests.
    kad_ids: Vec<u64>,
    /// Broadcast ids the node sent or announced, and those the attackers published.
    message_ids: Vec<MessageId>,
    /// The chunked-message counter of the attackers' links.
    chunk_msg: u32,
}

fn store_error(n: u8) -> kademlia_core::StoreError {
    use kademlia_core::StoreError as E;
    [
        E::OtherPublisher,
        E::Stale,
        E::PublisherQuota,
        E::Full,
        E::Invalid,
        E::Expired,
        E::TooLarge,
    ][usize::from(n) % 7]
}

fn remember<T>(list: &mut Vec<T>, item: T) {
    if list.len() == MAX_ECHOES {
        list.remove(0);
    }
    list.push(item);
}

fn pick<T: Copy>(list: &[T], n: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[usize::from(n) % list.len()])
}

fn attacker(i: usize) -> Identity {
    let mut secret = [0x30 + i as u8; 32];
    secret[31] = 0xa5;
    Identity::from_secret_bytes(&secret)
}

fn fingerprints(peer: NodeId) -> (Vec<u8>, Vec<u8>) {
    // (the node's, the peer's), as each side's DTLS stack reports them.
    let mut mine = b"local-".to_vec();
    mine.extend_from_slice(&peer.as_bytes()[..4]);
    let mut theirs = b"remote-".to_vec();
    theirs.extend_from_slice(&peer.as_bytes()[..4]);
    (mine, theirs)
}

/// The node's configuration: the defaults with a small frame limit, so that chunking is reached
/// with small inputs.
fn config() -> Config {
    let config = Config {
        max_frame_bytes: 2048,
        ..Config::default()
    };
    match config.validate() {
        Ok(()) => config,
        Err(_) => Config::default(),
    }
}

impl Harness {
    fn new() -> Self {
        let config = config();
        let mut node = Node::new([9; 32], config.clone(), 7);
        let local = node.local_id();
        let now = Instant::from_millis(1_700_000_000_000);
        let _ = node.subscribe("chat");
        node.join(now);
        let attackers: Vec<Identity> = (0..ATTACKERS).map(attacker).collect();
        let publishers = attackers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut p = gossip_core::Node::new(a.clone(), config.gossip.clone(), i as u64);
                p.handle_peer_up(now, local);
                let _ = p.subscribe("chat");
                while p.poll_output().is_some() {}
                p
            })
            .collect();
        let mut h = Harness {
            node,
            config,
            now,
            local,
            attackers,
            publishers,
            routed_ids: Vec::new(),
            kad_ids: Vec::new(),
            message_ids: Vec::new(),
            chunk_msg: 0,
        };
        h.drain();
        h
    }

    /// The harness's clock moved by `seconds` (negative: into the past).
    fn skewed(&self, seconds: i16) -> Instant {
        let by = Duration::from_secs(u64::from(seconds.unsigned_abs()));
        if seconds >= 0 {
            self.now + by
        } else {
            self.now.saturating_sub(by)
        }
    }

    fn id(&self, r: IdRef) -> NodeId {
        match r.0 {
            n @ 0..=3 => self.attackers[usize::from(n)].id(),
            4 => self.local,
            n @ 5..=8 => {
                // Close to the node: these fill its nearest buckets.
                let mut bytes = *self.local.as_bytes();
                let at = [19, 17, 10, 0][usize::from(n - 5)];
                bytes[at] ^= 1 << (n % 8);
                NodeId::from_bytes(bytes)
            }
            n => NodeId::from_bytes([n; 20]),
        }
    }

    fn identity_of(&self, id: NodeId) -> Option<&Identity> {
        self.attackers.iter().find(|a| a.id() == id)
    }

    fn ids(&self, refs: &[IdRef]) -> Vec<NodeId> {
        refs.iter().map(|r| self.id(*r)).collect()
    }

    fn message_id(&self, e: Echo) -> MessageId {
        match e {
            Echo::Sent(n) => pick(&self.message_ids, n)
                .unwrap_or_else(|| MessageId::from_bytes([n; gossip_core::MESSAGE_ID_LEN])),
            Echo::Fresh(x) => {
                let mut bytes = [0; gossip_core::MESSAGE_ID_LEN];
                bytes[..8].copy_from_slice(&x.to_le_bytes());
                MessageId::from_bytes(bytes)
            }
        }
    }

    fn record(&self, r: &RecordSpec) -> kademlia_core::Record {
        let signer = &self.attackers[usize::from(r.publisher) % ATTACKERS];
        let mut salt = r.salt.clone();
        salt.truncate(kademlia_core::MAX_SALT_BYTES);
        let mut record = kademlia_core::Record::sign(
            signer,
            salt,
            r.seq,
            r.value.clone(),
            self.now + Duration::from_secs(u64::from(r.ttl_s)),
        );
        if r.forged {
            record.signature[0] ^= 1;
        }
        if let Some(key) = r.key {
            record.key = self.id(key);
        }
        record
    }

    fn kad(&self, spec: &KadSpec) -> Vec<u8> {
        let message = match spec {
            KadSpec::Request { id, body } => KadMessage::Request {
                id: *id,
                body: match body {
                    KadRequestSpec::Ping => KadRequest::Ping,
                    KadRequestSpec::FindNode(t) => KadRequest::FindNode {
                        target: self.id(*t),
                    },
                    KadRequestSpec::FindValue(k) => KadRequest::FindValue { key: self.id(*k) },
                    KadRequestSpec::Store(r) => KadRequest::Store {
                        record: self.record(r),
                    },
                },
            },
            KadSpec::Response { id, body } => KadMessage::Response {
                id: match id {
                    Echo::Sent(n) => pick(&self.kad_ids, *n).unwrap_or(u64::from(*n)),
                    Echo::Fresh(x) => *x,
                },
                body: match body {
                    KadResponseSpec::Pong => KadResponse::Pong,
                    KadResponseSpec::Nodes(ids) => KadResponse::Nodes {
                        closer: self.ids(ids),
                    },
                    KadResponseSpec::Value(r) => KadResponse::Value {
                        record: self.record(r),
                    },
                    KadResponseSpec::Stored(ok) => KadResponse::Stored { ok: *ok },
                },
            },
        };
        message.encode()
    }

    /// The gossip frames for `spec`, as the attacker `sender` (or attacker 0) sends them.
    fn gossip(&mut self, sender: NodeId, spec: &GossipSpec) -> Vec<u8> {
        use gossip_core::wire::{Announce, Frame as G, TreeAdvert};
        let frame = match spec {
            GossipSpec::Publish {
                skew_s,
                payload,
                hops,
                tree,
                other_topic,
            } => {
                let i = self
                    .attackers
                    .iter()
                    .position(|a| a.id() == sender)
                    .unwrap_or(0);
                let at = self.skewed(*skew_s);
                let topic = if *other_topic { "other" } else { "chat" };
                let publisher = &mut self.publishers[i];
                let _ = publisher.publish(at, topic, payload.clone());
                let mut published = None;
                while let Some(o) = publisher.poll_output() {
                    if let gossip_core::Output::Transmit { bytes, .. } = o {
                        published.get_or_insert(bytes);
                    }
                }
                match published.map(|b| gossip_core::wire::decode(&b)) {
                    Some(Ok(G::Gossip(mut m))) => {
                        remember(&mut self.message_ids, m.id);
                        m.hops = *hops;
                        m.tree = *tree;
                        G::Gossip(m)
                    }
                    _ => G::Prune,
                }
            }
            GossipSpec::Ack(e) => G::Ack(self.message_id(*e)),
            GossipSpec::IHave(list) => G::IHave(
                list.iter()
                    .map(|(e, hops)| Announce {
                        id: self.message_id(*e),
                        hops: *hops,
                    })
                    .collect(),
            ),
            GossipSpec::Graft(list) => G::Graft(list.iter().map(|e| self.message_id(*e)).collect()),
            GossipSpec::Prune => G::Prune,
            GossipSpec::Tree { proofs, adverts } => G::Tree {
                proofs: self.root_proofs(proofs),
                adverts: adverts
                    .iter()
                    .map(|(root, distance, child, cost)| TreeAdvert {
                        root: self.id(*root),
                        distance: *distance,
                        child: *child,
                        cost: *cost,
                    })
                    .collect(),
            },
            GossipSpec::CatchUp(micros) => G::CatchUp(*micros),
            GossipSpec::Roots(proofs) => G::Roots(self.root_proofs(proofs)),
        };
        gossip_core::wire::encode(&frame)
    }

    /// Root proofs signed by these attackers (modulo), dated `skew_s` seconds from now; `forged`
    /// flips a bit of the signature.
    fn root_proofs(&self, specs: &[(u8, i16, bool)]) -> Vec<gossip_core::wire::RootProof> {
        specs
            .iter()
            .map(|(signer, skew_s, forged)| {
                let signer = &self.attackers[usize::from(*signer) % ATTACKERS];
                let mut proof = gossip_core::wire::RootProof::sign(signer, self.skewed(*skew_s));
                if *forged {
                    proof.signature[0] ^= 1;
                }
                proof
            })
            .collect()
    }

    fn routed(&self, sender: NodeId, spec: &RoutedSpec) -> Routed {
        let src = spec.src.map_or(sender, |r| self.id(r));
        let dst = spec.dst.map_or(self.local, |r| self.id(r));
        let id = match spec.id {
            Echo::Sent(n) => pick(&self.routed_ids, n).unwrap_or(u64::from(n)),
            Echo::Fresh(x) => x,
        };
        let lookup = spec.lookup.map(|r| self.id(r));
        let payload = match &spec.payload {
            PayloadSpec::Data(d) => Some(Payload::Data(d.clone())),
            PayloadSpec::Big { byte, len } => Some(Payload::Data(vec![*byte; usize::from(*len)])),
            PayloadSpec::Ack => Some(Payload::Ack),
            PayloadSpec::Kad(k) => Some(Payload::Kad(self.kad(k))),
            PayloadSpec::Signal(s) => Some(Payload::Signal(s.clone())),
            PayloadSpec::LinkRequest => Some(Payload::LinkRequest),
            PayloadSpec::Rejected(ids) => Some(Payload::Rejected(self.ids(ids))),
            PayloadSpec::FindNode => Some(Payload::FindNode),
            PayloadSpec::Nodes { probe_hops, nodes } => Some(Payload::Nodes {
                probe_hops: *probe_hops,
                nodes: self.ids(nodes),
            }),
            PayloadSpec::Raw(_) => None,
            PayloadSpec::DhtGet(key) => Some(Payload::DhtGet {
                key: match key {
                    DhtKey::Name(name) => kademlia_core::Record::key_for(&name.bytes()),
                    DhtKey::Id(id) => self.id(*id),
                },
            }),
            PayloadSpec::DhtPut(r) => Some(Payload::DhtPut {
                record: self.record(r),
            }),
            PayloadSpec::DhtStore(r) => Some(Payload::DhtStore {
                record: self.record(r),
            }),
            PayloadSpec::DhtValue {
                record,
                closest,
                request_hops,
            } => Some(Payload::DhtValue {
                record: record.as_ref().map(|r| self.record(r)),
                closest: self.ids(closest),
                request_hops: *request_hops,
            }),
            PayloadSpec::DhtStored {
                refused,
                closest,
                request_hops,
            } => Some(Payload::DhtStored {
                result: refused.map_or(Ok(()), |r| Err(store_error(r))),
                closest: self.ids(closest),
                request_hops: *request_hops,
            }),
        };
        let body = match (&payload, &spec.payload) {
            (Some(p), _) => postcard::to_allocvec(p).unwrap_or_default(),
            (None, PayloadSpec::Raw(raw)) => raw.clone(),
            (None, _) => Vec::new(),
        };
        let signer = self.identity_of(src).unwrap_or(&self.attackers[0]);
        let sent_at = self.skewed(spec.sent_at_offset_s).as_micros();
        let signature = match spec.signature {
            Signature::Valid => signer
                .sign(&Routed::signed_bytes(
                    &src,
                    &dst,
                    id,
                    sent_at,
                    lookup.as_ref(),
                    &body,
                ))
                .to_vec(),
            Signature::Unsigned => Vec::new(),
            Signature::Garbage(b) => vec![b; 64],
        };
        let path = if spec.raw_path {
            self.ids(&spec.via)
        } else {
            let mut path = vec![src];
            path.extend(self.ids(&spec.via));
            if path.last() != Some(&sender) {
                path.push(sender);
            }
            path
        };
        Routed {
            src,
            dst,
            id,
            sent_at,
            lookup,
            hops_left: spec.hops_left,
            path,
            route: self.ids(&spec.route),
            key: signer.public_key(),
            signature,
            body,
        }
    }

    fn frame(&mut self, sender: NodeId, spec: &FrameSpec) -> Vec<u8> {
        let frame = match spec {
            FrameSpec::Kad(k) => Frame::Kad(self.kad(k)),
            FrameSpec::Gossip(g) => Frame::Gossip(self.gossip(sender, g)),
            FrameSpec::Routed(r) => Frame::Routed(self.routed(sender, r)),
            FrameSpec::Neighbors {
                links,
                second,
                third,
                fourth,
            } => Frame::Neighbors(Neighbors {
                links: self.ids(links),
                second: self.ids(second),
                third: self.ids(third),
                fourth: self.ids(fourth),
            }),
            FrameSpec::Ping(n) => Frame::Ping(*n),
            FrameSpec::Pong(n) => Frame::Pong(*n),
            FrameSpec::Evict(ids) => Frame::Evict(self.ids(ids)),
            FrameSpec::Bye => Frame::Bye,
        };
        frame.encode()
    }

    fn hello(&self, peer: NodeId, key: NodeId, right: bool, good: bool) -> Vec<u8> {
        let signer = self.identity_of(key).unwrap_or(&self.attackers[0]);
        let (mine, theirs) = if right {
            fingerprints(peer)
        } else {
            (b"other".to_vec(), b"fingerprints".to_vec())
        };
        let public_key = signer.public_key();
        let mut signature = signer
            .sign(&Hello::signed_bytes(&public_key, &theirs, &mine))
            .to_vec();
        if !good {
            signature[0] ^= 1;
        }
        Frame::Hello(Hello {
            public_key,
            sender_fingerprint: theirs,
            receiver_fingerprint: mine,
            signature,
        })
        .encode()
    }

    fn message(&mut self, peer: NodeId, bytes: &[u8]) {
        self.node.handle_message(self.now, peer, bytes);
        self.drain();
    }

    fn run(&mut self, action: &Action) {
        match action {
            Action::Connect(p) => {
                let peer = self.id(*p);
                let payload = if peer < self.local {
                    PayloadSpec::Signal(b"offer".to_vec())
                } else {
                    PayloadSpec::LinkRequest
                };
                let spec = RoutedSpec {
                    src: None,
                    dst: None,
                    id: Echo::Fresh(self.now.as_micros()),
                    lookup: None,
                    hops_left: 8,
                    via: Vec::new(),
                    raw_path: false,
                    route: Vec::new(),
                    sent_at_offset_s: 0,
                    signature: Signature::Valid,
                    payload,
                };
                let routed = self.routed(peer, &spec);
                self.server(ServerInput::Relayed {
                    from: peer,
                    payload: Frame::Routed(routed).encode(),
                });
                self.open(peer);
                let hello = self.hello(peer, peer, true, true);
                self.message(peer, &hello);
            }
            Action::Open(p) => self.open(self.id(*p)),
            Action::Hello {
                peer,
                key,
                right_fingerprints,
                good_signature,
            } => {
                let peer = self.id(*peer);
                let hello = self.hello(peer, self.id(*key), *right_fingerprints, *good_signature);
                self.message(peer, &hello);
            }
            Action::Send { peer, frame } => {
                let peer = self.id(*peer);
                let bytes = self.frame(peer, frame);
                for part in frame::split(bytes, self.config.max_frame_bytes, self.chunk_msg) {
                    self.message(peer, &part);
                }
                self.chunk_msg = self.chunk_msg.wrapping_add(1);
            }
            Action::Chunked { peer, frame, order } => {
                let peer = self.id(*peer);
                let bytes = self.frame(peer, frame);
                // Split below the limit so that even small frames come as chunks.
                let limit = (bytes.len() / 3).max(32);
                let parts = frame::split(bytes, limit, self.chunk_msg);
                self.chunk_msg = self.chunk_msg.wrapping_add(1);
                if order.is_empty() {
                    for part in &parts {
                        self.message(peer, part);
                    }
                } else {
                    for i in order {
                        let part = parts[usize::from(*i) % parts.len()].clone();
                        self.message(peer, &part);
                    }
                }
            }
            Action::Raw { peer, bytes } => self.message(self.id(*peer), bytes),
            Action::Server(spec) => {
                let input = match spec {
                    ServerSpec::Bootstrap(ids) => ServerInput::BootstrapPeers(self.ids(ids)),
                    ServerSpec::Joined(p) => ServerInput::PeerJoined(self.id(*p)),
                    ServerSpec::Left(p) => ServerInput::PeerLeft(self.id(*p)),
                    ServerSpec::Relayed { from, routed } => {
                        let from = self.id(*from);
                        ServerInput::Relayed {
                            from,
                            payload: Frame::Routed(self.routed(from, routed)).encode(),
                        }
                    }
                    ServerSpec::RelayedRaw { from, bytes } => ServerInput::Relayed {
                        from: self.id(*from),
                        payload: bytes.clone(),
                    },
                };
                self.server(input);
            }
            Action::Wait(ms) => {
                self.now += Duration::from_millis(u64::from(*ms));
                if self.node.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.timeout();
                }
            }
            Action::LongWait(minutes) => {
                self.now += Duration::from_secs(60 * u64::from(*minutes));
                self.timeout();
            }
            Action::Timeout => self.timeout(),
            Action::Closed(p) => {
                self.node.handle_link_closed(self.now, self.id(*p));
                self.drain();
            }
            Action::App(spec) => self.app(spec),
        }
    }

    fn app(&mut self, spec: &AppSpec) {
        let now = self.now;
        match spec {
            AppSpec::Broadcast(data) => {
                if let Ok(id) = self.node.broadcast(now, "chat", data.clone()) {
                    let _ = id;
                }
            }
            AppSpec::Send { to, data } => {
                let _ = self.node.send(now, self.id(*to), data.clone());
            }
            AppSpec::FindNode(t) => {
                let _ = self.node.find_node(now, self.id(*t));
            }
            AppSpec::DhtFindNode(t) => {
                let _ = self.node.dht_find_node(now, self.id(*t));
            }
            AppSpec::Get(name) => {
                let _ = self.node.get(now, &name.bytes());
            }
            AppSpec::Put { name, value } => {
                let _ = self.node.put(now, &name.bytes(), value.clone());
            }
            AppSpec::Remove(name) => {
                let _ = self.node.remove(now, &name.bytes());
            }
            AppSpec::Signal { to, payload } => {
                self.node.send_signal(now, self.id(*to), payload.clone());
            }
            AppSpec::Leave => self.node.leave(now),
            AppSpec::Join => self.node.join(now),
        }
        self.drain();
    }

    fn open(&mut self, peer: NodeId) {
        let (mine, theirs) = fingerprints(peer);
        self.node.handle_link_open(self.now, peer, mine, theirs);
        self.drain();
    }

    fn server(&mut self, input: ServerInput) {
        self.node.handle_server(self.now, input);
        self.drain();
    }

    fn timeout(&mut self) {
        self.node.handle_timeout(self.now);
        self.drain();
        // A deadline still due after `handle_timeout` would spin a driver that sleeps until it.
        assert!(
            self.node.poll_timeout().is_none_or(|t| t > self.now),
            "handle_timeout left a deadline due: {:?} at {:?}",
            self.node.poll_timeout(),
            self.now
        );
    }

    /// Drains the node's outputs as a driver does (its WebRTC engine offers and answers at once),
    /// keeps the ids it sent, and checks the bounds.
    fn drain(&mut self) {
        let mut count = 0;
        while let Some(output) = self.node.poll_output() {
            count += 1;
            assert!(count <= MAX_OUTPUTS_PER_INPUT, "unbounded outputs");
            match output {
                Output::Transmit { link, bytes } => {
                    assert!(
                        bytes.len() <= self.config.max_frame_bytes,
                        "a {}-byte frame to {link:?} over the frame limit",
                        bytes.len()
                    );
                    self.observe(&bytes);
                }
                Output::Signal { payload, .. } => {
                    assert!(
                        Frame::decode(&payload).is_ok(),
                        "a relayed signal is not a frame"
                    );
                    // Never what the server would refuse (and close the node's connection for).
                    assert!(
                        payload.len() <= self.config.max_signal_bytes,
                        "a {}-byte signal over max_signal_bytes {}",
                        payload.len(),
                        self.config.max_signal_bytes
                    );
                    self.observe(&payload);
                }
                Output::Connect {
                    peer,
                    initiator: true,
                } => self.node.send_signal(self.now, peer, b"offer".to_vec()),
                Output::Event(Event::Signal { from, payload }) if payload == b"offer" => {
                    self.node.send_signal(self.now, from, b"answer".to_vec());
                }
                _ => {}
            }
        }
        self.check_bounds();
    }

    fn observe(&mut self, bytes: &[u8]) {
        match Frame::decode(bytes) {
            Ok(Frame::Routed(r)) => {
                remember(&mut self.routed_ids, r.id);
                if let Ok(Payload::Kad(k)) = postcard::from_bytes::<Payload>(&r.body) {
                    self.observe_kad(&k);
                }
            }
            Ok(Frame::Kad(k)) => self.observe_kad(&k),
            Ok(Frame::Gossip(g)) => match gossip_core::wire::decode(&g) {
                Ok(gossip_core::wire::Frame::Gossip(m)) => remember(&mut self.message_ids, m.id),
                Ok(gossip_core::wire::Frame::IHave(list)) => {
                    for a in list.into_iter().take(4) {
                        remember(&mut self.message_ids, a.id);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn observe_kad(&mut self, bytes: &[u8]) {
        let limits = kademlia_core::wire::Limits::from_config(&self.config.kademlia);
        if let Ok(KadMessage::Request { id, .. }) = KadMessage::decode(bytes, &limits) {
            remember(&mut self.kad_ids, id);
        }
    }

    fn check_bounds(&self) {
        let node = &self.node;
        // Up links stay within `max_peers`; attempts may pass it for a while: a node that is full
        // admits a peer that fills a role it lacks (one per close class or long link) and evicts
        // the redundant link once the newcomer is up (fuzz/regressions/mesh_node/
        // links-over-max-peers: five dials pending, then an offer, makes six).
        assert!(
            node.links().len() <= self.config.max_peers,
            "{} up links over max_peers",
            node.links().len()
        );
        assert!(
            node.link_attempts().len() <= 2 * self.config.max_peers,
            "{} links over twice max_peers",
            node.link_attempts().len()
        );
        assert!(node.known_peers() <= 160 * self.config.peer_book_bucket);
        assert!(node.gossip().seen_len() <= self.config.gossip.max_seen);
        assert!(node.kademlia().records().count() <= self.config.kademlia.max_records);
        assert!(node.published().count() <= self.config.kademlia.max_published);
    }
}

/// A mesh-core node driven by an arbitrary sequence of actions of its links, the signaling server,
/// the clock and its application (see the module docs): never a panic; at most
/// `MAX_OUTPUTS_PER_INPUT` outputs per input; no frame over `max_frame_bytes`; relayed signals are
/// frames; up links within `max_peers` and attempts within twice that, the peer book, seen-cache and record store within their
/// bounds; and no deadline still due after `handle_timeout`.
pub fn mesh_node(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut h = Harness::new();
    for _ in 0..MAX_ACTIONS {
        if u.is_empty() {
            break;
        }
        let Ok(action) = Action::arbitrary(&mut u) else {
            break;
        };
        h.run(&action);
    }
}
