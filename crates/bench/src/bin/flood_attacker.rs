//! `flood_attacker`: the attacking peer of `cargo xtask bench-flood` (started by `bench_flood`).
//!
//! It is a real p2pmesh node (a [`Mesh`] on real WebRTC links, joined through the signaling
//! server, behaving honestly towards everyone), whose link connector keeps a copy of each link's
//! sending half. Once its link to `--victim` is up and a `start` line arrives on stdin, it writes
//! crafted frames on that link, as fast as the link takes them, for `--seconds`: one task per
//! kind of `--kinds`, all at once (so the large chunk frames do not slow the small ones):
//!
//! - `unique`: a validly signed broadcast with a new id (made by a `gossip_core::Node` holding the
//!   attacker's key, so it is what an honest origin would send);
//! - `duplicate`: one of the last [`DUPLICATE_RING`] unique broadcasts again;
//! - `chunk`: full-size `Chunk` slices of messages whose last slice never comes;
//! - `bad_signature`: a unique broadcast, or a direct message to the victim, whose signature has
//!   one bit flipped (so each costs a signature check);
//! - `lookup`: a Kademlia `FindNode` for a random target, or a signed lookup probe (`Routed`
//!   `FindNode`) towards a random id;
//! - `unsolicited`: answers nobody asked for: a Kademlia `Nodes` response with random contacts, a
//!   signed probe answer (`Routed` `Nodes`), a direct-message `Ack`, a gossip `Ack`, a `Pong`;
//! - `ihave`: announcements of made-up message ids.
//!
//! Every frame is built with the cores' public types and encoders (`mesh_core::frame`,
//! `gossip_core::wire`, `kademlia_core::wire`), so the attack follows the wire format.
//!
//! Reports are JSON lines on stdout: `{"event":"joined","id":..}`, `{"event":"linked"}`,
//! `{"event":"progress","sent":{kind:frames},"bytes":..,"send_errors":..,"link_drops":..}` every
//! second of the flood, `{"event":"unlinked"}` when the victim's link closes (the flood goes on
//! when the node links to the victim again), and `{"event":"done", ..}` (the same counters) when
//! the flood ends. The node then stays in the mesh until stdin closes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt as _;
use p2pmesh::gossip_core::{self, Identity, MessageId};
use p2pmesh::kademlia_core;
use p2pmesh::mesh_core::frame::{Chunk, Frame, Payload, Routed};
use p2pmesh::{Event, Mesh, NodeId};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use transport::{LinkConnector, LinkError, LinkSender as _, PeerId, PeerLink, Role};
use webrtc_adapter::{Config, Connector};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Unique broadcasts kept for the `duplicate` kind.
const DUPLICATE_RING: usize = 32;

/// Unique broadcasts minted by one `gossip_core::Node` before it is replaced (its retransmission
/// state only grows, since it never hears an acknowledgement).
const MINTER_LIFETIME: u64 = 1_000;

/// Made-up ids per `ihave` frame.
const IHAVE_IDS: usize = 32;

/// What the attacker sends; see the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Kind {
    Unique,
    Duplicate,
    Chunk,
    BadSignature,
    Lookup,
    Unsolicited,
    Ihave,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Unique => "unique",
            Kind::Duplicate => "duplicate",
            Kind::Chunk => "chunk",
            Kind::BadSignature => "bad_signature",
            Kind::Lookup => "lookup",
            Kind::Unsolicited => "unsolicited",
            Kind::Ihave => "ihave",
        }
    }
}

/// The flags of `flood_attacker`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "flood_attacker",
    about = "The flooding peer of bench-flood (started by bench_flood)"
)]
struct Opts {
    /// The signaling server.
    #[arg(long)]
    server: String,
    /// The room.
    #[arg(long)]
    room: String,
    /// The node flooded (hex id).
    #[arg(long)]
    victim: NodeId,
    /// Seconds of flooding after `start`.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// The kinds of frame sent, in turn (repeatable; default all).
    #[arg(long, value_enum)]
    kinds: Vec<Kind>,
    /// The topic of the broadcasts.
    #[arg(long, default_value = "honest")]
    topic: String,
    /// Payload bytes of each unique broadcast.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Frames per second of each kind (0: as fast as the link takes them). A rate under the victim's
    /// per-link budget is the flood an attacker can keep up without being disconnected.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Most links of the attacker's own node.
    #[arg(long, default_value_t = 8)]
    max_peers: usize,
    /// Seed of the random ids and targets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A link's sending half.
type Sender = <webrtc_adapter::Link as PeerLink>::Sender;

/// The sending halves of the links, by peer, with a generation that tells a new link from an old.
#[derive(Clone, Default)]
struct Senders(Arc<Mutex<HashMap<String, (u64, Sender)>>>);

impl Senders {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Sender)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A WebRTC connector that keeps each link's sender in [`Senders`].
struct Capturing {
    inner: Connector,
    senders: Senders,
    generation: Mutex<u64>,
}

#[async_trait]
impl LinkConnector for Capturing {
    type Link = webrtc_adapter::Link;

    async fn connect(&self, peer: PeerId, role: Role) -> Result<Self::Link, LinkError> {
        let link = self.inner.connect(peer.clone(), role).await?;
        let generation = {
            let mut g = self
                .generation
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *g += 1;
            *g
        };
        self.senders
            .lock()
            .insert(peer.to_string(), (generation, link.sender()));
        Ok(link)
    }
}

/// Microseconds since the Unix epoch, as the cores' time.
fn wall_now() -> gossip_core::Instant {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    gossip_core::Instant::from_micros(us)
}

fn say(value: &serde_json::Value) {
    println!("{value}");
}

/// Makes the frames.
struct Forge {
    identity: Identity,
    local: NodeId,
    victim: NodeId,
    topic: String,
    payload_bytes: usize,
    rng: ChaCha8Rng,
    minter: gossip_core::Node<Identity>,
    minted: u64,
    task: u64,
    recent: VecDeque<Vec<u8>>,
    chunk_msg: u32,
    chunk_index: u16,
    chunk_count: u16,
    chunk_slice: usize,
    turn: u64,
    hop_limit: u8,
    kad_k: usize,
}

impl Forge {
    /// The forge of one flooding task (`task` keeps the tasks' payloads and random ids apart).
    fn new(identity: Identity, victim: NodeId, opts: &Opts, task: u64) -> Self {
        let mesh = p2pmesh::mesh_core::Config::default();
        let slice = mesh.max_frame_bytes.saturating_sub(64).max(1);
        // The most slices a message the victim takes (1 MiB of application bytes) can have: all
        // but the last are sent.
        let count = p2pmesh::MAX_MESSAGE_BYTES.div_ceil(slice).max(2);
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ task.rotate_left(32));
        let minter = Self::minter(&identity, victim, rng.next_u64());
        Self {
            local: identity.id(),
            identity,
            victim,
            topic: opts.topic.clone(),
            payload_bytes: opts.payload_bytes,
            chunk_msg: rng.next_u32() | 0x8000_0000,
            task,
            rng,
            minter,
            minted: 0,
            recent: VecDeque::new(),
            chunk_index: 0,
            chunk_count: u16::try_from(count).unwrap_or(u16::MAX),
            chunk_slice: slice,
            turn: 0,
            hop_limit: mesh.hop_limit,
            kad_k: kademlia_core::Config::default().k,
        }
    }

    /// A gossip node with the attacker's key and one link, the victim, pushing every message.
    fn minter(identity: &Identity, victim: NodeId, seed: u64) -> gossip_core::Node<Identity> {
        let config = gossip_core::Config {
            strategy: gossip_core::Strategy::Flood,
            max_payload_len: p2pmesh::MAX_MESSAGE_BYTES,
            ..gossip_core::Config::default()
        };
        let mut node = gossip_core::Node::new(identity.clone(), config, seed);
        node.handle_peer_up(wall_now(), victim);
        while node.poll_output().is_some() {}
        node
    }

    fn random_id(&mut self) -> NodeId {
        let mut bytes = [0u8; 20];
        self.rng.fill_bytes(&mut bytes);
        NodeId::from_bytes(bytes)
    }

    /// The gossip-core bytes of a new, validly signed broadcast.
    fn mint(&mut self) -> Option<Vec<u8>> {
        if self.minted.is_multiple_of(MINTER_LIFETIME) && self.minted > 0 {
            let seed = self.rng.next_u64();
            self.minter = Self::minter(&self.identity, self.victim, seed);
        }
        self.minted += 1;
        let mut payload = format!("F:{}:{}:", self.task, self.minted).into_bytes();
        payload.resize(self.payload_bytes.max(payload.len()), b'f');
        self.minter.publish(wall_now(), &self.topic, payload).ok()?;
        let mut message = None;
        while let Some(output) = self.minter.poll_output() {
            if let gossip_core::Output::Transmit { bytes, .. } = output
                && matches!(
                    gossip_core::wire::decode(&bytes),
                    Ok(gossip_core::wire::Frame::Gossip(_))
                )
            {
                message = Some(bytes);
            }
        }
        message
    }

    fn routed(&mut self, dst: NodeId, lookup: Option<NodeId>, payload: &Payload) -> Routed {
        let body = postcard::to_allocvec(payload).unwrap_or_default();
        let id = self.rng.next_u64();
        let sent_at = wall_now().as_micros();
        let signature = self
            .identity
            .sign(&Routed::signed_bytes(
                &self.local,
                &dst,
                id,
                sent_at,
                lookup.as_ref(),
                &body,
            ))
            .to_vec();
        Routed {
            src: self.local,
            dst,
            id,
            sent_at,
            lookup,
            hops_left: self.hop_limit,
            path: vec![self.local],
            route: Vec::new(),
            key: self.identity.public_key(),
            signature,
            body,
        }
    }

    /// The next frame of `kind`, as the link carries it.
    fn frame(&mut self, kind: Kind) -> Option<Vec<u8>> {
        self.turn += 1;
        let odd = self.turn % 2 == 1;
        let frame = match kind {
            Kind::Unique => {
                let bytes = self.mint()?;
                if self.recent.len() == DUPLICATE_RING {
                    self.recent.pop_front();
                }
                self.recent.push_back(bytes.clone());
                Frame::Gossip(bytes)
            }
            Kind::Duplicate => {
                if self.recent.is_empty() {
                    let bytes = self.mint()?;
                    self.recent.push_back(bytes);
                }
                let pick = (self.turn as usize) % self.recent.len();
                Frame::Gossip(self.recent.get(pick)?.clone())
            }
            Kind::Chunk => {
                if self.chunk_index + 1 >= self.chunk_count {
                    self.chunk_index = 0;
                    self.chunk_msg = self.chunk_msg.wrapping_add(1) | 0x8000_0000;
                }
                let index = self.chunk_index;
                self.chunk_index += 1;
                Frame::Chunk(Chunk {
                    msg: self.chunk_msg,
                    index,
                    count: self.chunk_count,
                    data: vec![0xc5; self.chunk_slice],
                })
            }
            Kind::BadSignature if odd => {
                let bytes = self.mint()?;
                let gossip_core::wire::Frame::Gossip(mut message) =
                    gossip_core::wire::decode(&bytes).ok()?
                else {
                    return None;
                };
                message.auth.as_mut()?.signature[0] ^= 1;
                Frame::Gossip(gossip_core::wire::encode(
                    &gossip_core::wire::Frame::Gossip(message),
                ))
            }
            Kind::BadSignature => {
                let data = format!("B:{}:{}", self.task, self.turn).into_bytes();
                let mut routed = self.routed(self.victim, None, &Payload::Data(data));
                if let Some(byte) = routed.signature.first_mut() {
                    *byte ^= 1;
                }
                Frame::Routed(routed)
            }
            Kind::Lookup if odd => {
                let target = self.random_id();
                Frame::Kad(
                    kademlia_core::wire::Message::Request {
                        id: self.rng.next_u64(),
                        body: kademlia_core::wire::Request::FindNode { target },
                    }
                    .encode(),
                )
            }
            Kind::Lookup => {
                let target = self.random_id();
                Frame::Routed(self.routed(target, Some(target), &Payload::FindNode))
            }
            Kind::Unsolicited => match self.turn % 5 {
                0 => {
                    let closer = (0..self.kad_k).map(|_| self.random_id()).collect();
                    Frame::Kad(
                        kademlia_core::wire::Message::Response {
                            id: self.rng.next_u64(),
                            body: kademlia_core::wire::Response::Nodes { closer },
                        }
                        .encode(),
                    )
                }
                1 => {
                    let nodes = (0..8).map(|_| self.random_id()).collect();
                    let answer = Payload::Nodes {
                        probe_hops: 1,
                        nodes,
                    };
                    Frame::Routed(self.routed(self.victim, None, &answer))
                }
                2 => {
                    // An acknowledgement straight over the link needs no signature.
                    let mut ack = self.routed(self.victim, None, &Payload::Ack);
                    ack.signature.clear();
                    Frame::Routed(ack)
                }
                3 => {
                    let mut id = [0u8; 20];
                    self.rng.fill_bytes(&mut id);
                    Frame::Gossip(gossip_core::wire::encode(&gossip_core::wire::Frame::Ack(
                        MessageId::from_bytes(id),
                    )))
                }
                _ => Frame::Pong(self.rng.next_u64()),
            },
            Kind::Ihave => {
                let announces = (0..IHAVE_IDS)
                    .map(|_| {
                        let mut id = [0u8; 20];
                        self.rng.fill_bytes(&mut id);
                        gossip_core::wire::Announce {
                            id: MessageId::from_bytes(id),
                            hops: 1,
                        }
                    })
                    .collect();
                Frame::Gossip(gossip_core::wire::encode(&gossip_core::wire::Frame::IHave(
                    announces,
                )))
            }
        };
        Some(frame.encode())
    }
}

/// Every kind, in the order of the reports.
const ALL_KINDS: [Kind; 7] = [
    Kind::Unique,
    Kind::Duplicate,
    Kind::Chunk,
    Kind::BadSignature,
    Kind::Lookup,
    Kind::Unsolicited,
    Kind::Ihave,
];

/// What the flooding tasks share: the links' senders and the counters.
struct Shared {
    senders: Senders,
    victim: String,
    /// The newest link generation seen closed (generations only grow).
    dead: Mutex<u64>,
    frames: [AtomicU64; ALL_KINDS.len()],
    bytes: [AtomicU64; ALL_KINDS.len()],
    send_errors: AtomicU64,
    link_drops: AtomicU64,
    /// When the flood began, and the microseconds after it of the last frame the link took.
    started: Instant,
    last_send_us: AtomicU64,
}

impl Shared {
    /// The victim's current sender and its generation, if its link is up.
    fn victim_sender(&self) -> Option<(u64, Sender)> {
        let dead = *self.dead.lock().unwrap_or_else(PoisonError::into_inner);
        self.senders
            .lock()
            .get(&self.victim)
            .filter(|(generation, _)| *generation > dead)
            .cloned()
    }

    /// The link of `generation` failed: counted once, by the first task to see it.
    fn closed(&self, generation: u64) {
        let mut dead = self.dead.lock().unwrap_or_else(PoisonError::into_inner);
        if generation > *dead {
            *dead = generation;
            self.link_drops.fetch_add(1, Ordering::Relaxed);
            say(&json!({"event": "unlinked"}));
        }
    }

    fn report(&self, event: &str, elapsed: Duration) -> serde_json::Value {
        let per_kind = |counters: &[AtomicU64; ALL_KINDS.len()]| {
            ALL_KINDS
                .iter()
                .zip(counters)
                .map(|(kind, n)| (kind.name(), n.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect::<BTreeMap<_, _>>()
        };
        json!({
            "event": event,
            "elapsed_s": elapsed.as_secs_f64(),
            "sent": per_kind(&self.frames),
            "bytes": per_kind(&self.bytes),
            "send_errors": self.send_errors.load(Ordering::Relaxed),
            "link_drops": self.link_drops.load(Ordering::Relaxed),
            "last_send_s": self.last_send_us.load(Ordering::Relaxed) as f64 / 1e6,
        })
    }
}

/// One kind's flood: its frames, one after the other, each sent when the link takes it.
async fn flood_kind(shared: Arc<Shared>, kind: Kind, mut forge: Forge, end: Instant, rate: f64) {
    let slot = ALL_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
    let mut linked = shared.victim_sender();
    let mut pace = (rate > 0.0).then(|| {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pace
    });
    while Instant::now() < end {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        let Some((generation, sender)) = linked.clone() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            linked = shared.victim_sender();
            continue;
        };
        let Some(bytes) = forge.frame(kind) else {
            tokio::task::yield_now().await;
            continue;
        };
        let len = bytes.len() as u64;
        // A link that stops taking frames (its transport stalled) ends the task at `end`.
        let Ok(sent) = tokio::time::timeout_at(end.into(), sender.send(bytes)).await else {
            break;
        };
        match sent {
            Ok(()) => {
                shared.frames[slot].fetch_add(1, Ordering::Relaxed);
                shared.bytes[slot].fetch_add(len, Ordering::Relaxed);
                let at = u64::try_from(shared.started.elapsed().as_micros()).unwrap_or(u64::MAX);
                shared.last_send_us.fetch_max(at, Ordering::Relaxed);
            }
            Err(LinkError::NotOpen) => {
                shared.send_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                shared.send_errors.fetch_add(1, Ordering::Relaxed);
                shared.closed(generation);
                linked = None;
            }
        }
    }
}

/// Floods the victim with every kind at once (one task each, so a kind of large frames does not
/// slow the kinds of small ones) for `--seconds`; reports progress every second.
async fn flood(opts: &Opts, senders: &Senders, identity: &Identity) -> Value {
    let kinds: Vec<Kind> = if opts.kinds.is_empty() {
        ALL_KINDS.to_vec()
    } else {
        let mut kinds = opts.kinds.clone();
        kinds.sort();
        kinds.dedup();
        kinds
    };
    let started = Instant::now();
    let shared = Arc::new(Shared {
        senders: senders.clone(),
        victim: opts.victim.to_string(),
        dead: Mutex::new(0),
        frames: Default::default(),
        bytes: Default::default(),
        send_errors: AtomicU64::new(0),
        link_drops: AtomicU64::new(0),
        started,
        last_send_us: AtomicU64::new(0),
    });
    let end = started + Duration::from_secs_f64(opts.seconds);
    let tasks: Vec<_> = kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| {
            let forge = Forge::new(identity.clone(), opts.victim, opts, i as u64);
            tokio::spawn(flood_kind(shared.clone(), kind, forge, end, opts.rate))
        })
        .collect();
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    while Instant::now() + Duration::from_millis(500) < end {
        ticks.tick().await;
        say(&shared.report("progress", started.elapsed()));
    }
    for task in tasks {
        let _ = task.await;
    }
    shared.report("done", started.elapsed())
}

async fn run(opts: Opts) -> Result<(), BoxError> {
    let senders = Senders::default();
    let connector = Capturing {
        inner: Connector::new(Config::loopback()),
        senders: senders.clone(),
        generation: Mutex::new(0),
    };
    let mut builder = Mesh::builder()
        .signaling_url(opts.server.clone())
        .room(opts.room.clone())
        .max_peers(opts.max_peers);
    let keypair = builder.identity()?;
    let identity = Identity::from_secret_bytes(&keypair.secret());
    let mesh = builder.connector(connector).build()?;
    let mut events = mesh.events();
    mesh.join().await?;
    say(&json!({"event": "joined", "id": mesh.local_id().to_string()}));

    // Wait for the victim's link (its hello verified), then for `start`.
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut linked = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::PeerConnected { peer }) if peer == opts.victim && !linked => {
                    linked = true;
                    say(&json!({"event": "linked"}));
                }
                Some(_) => {}
                None => return Err("the mesh stopped".into()),
            },
            line = lines.next_line() => match line? {
                Some(line) if line.trim() == "start" => break,
                Some(_) => {}
                None => return Ok(()),
            },
        }
    }
    // The mesh's events are not read during the flood: the stream lags, the mesh does not wait.
    say(&flood(&opts, &senders, &identity).await);
    // Stay in the mesh until told to go.
    while lines.next_line().await?.is_some() {}
    mesh.leave().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let opts = <Opts as clap::Parser>::parse();
    match run(opts).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            say(&json!({"event": "error", "message": err.to_string()}));
            eprintln!("flood_attacker: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    fn forge(kinds: &[&str]) -> Forge {
        let mut args = vec![
            "flood_attacker".to_string(),
            "--server".into(),
            "ws://x".into(),
            "--room".into(),
            "r".into(),
            "--victim".into(),
            NodeId::from_bytes([7; 20]).to_string(),
        ];
        for kind in kinds {
            args.push("--kinds".into());
            args.push((*kind).into());
        }
        let opts = Opts::try_parse_from(args).expect("flags");
        Forge::new(Identity::from_secret_bytes(&[3; 32]), opts.victim, &opts, 0)
    }

    #[test]
    fn the_flags_are_consistent() {
        Opts::command().debug_assert();
    }

    #[test]
    fn every_kind_makes_frames_the_victim_decodes() {
        let mut forge = forge(&[]);
        for kind in ALL_KINDS {
            for _ in 0..10 {
                let bytes = forge.frame(kind).expect("a frame");
                let frame = Frame::decode(&bytes).expect("decodes");
                assert!(
                    bytes.len() <= p2pmesh::mesh_core::Config::default().max_frame_bytes,
                    "{kind:?}: {} bytes",
                    bytes.len()
                );
                match frame {
                    Frame::Gossip(inner) => {
                        gossip_core::wire::decode(&inner).expect("gossip decodes");
                    }
                    Frame::Kad(inner) => {
                        let limits = kademlia_core::wire::Limits::from_config(
                            &kademlia_core::Config::default(),
                        );
                        kademlia_core::wire::Message::decode(&inner, &limits).expect("kad decodes");
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn unique_broadcasts_are_signed_and_distinct_and_bad_ones_are_not() {
        let mut forge = forge(&[]);
        let message = |bytes: Vec<u8>| {
            let Ok(Frame::Gossip(inner)) = Frame::decode(&bytes) else {
                panic!("not gossip");
            };
            let Ok(gossip_core::wire::Frame::Gossip(m)) = gossip_core::wire::decode(&inner) else {
                panic!("not a message");
            };
            m
        };
        let a = message(forge.frame(Kind::Unique).expect("frame"));
        let b = message(forge.frame(Kind::Unique).expect("frame"));
        assert_ne!(a.id, b.id);
        // A gossip node accepts a unique one and refuses its bad-signature twin.
        let mut receiver = gossip_core::Node::new(
            Identity::from_secret_bytes(&[4; 32]),
            gossip_core::Config {
                deliver_all_topics: true,
                max_payload_len: p2pmesh::MAX_MESSAGE_BYTES,
                ..gossip_core::Config::default()
            },
            1,
        );
        let now = wall_now();
        let from = forge.local;
        receiver.handle_peer_up(now, from);
        let unique = forge.frame(Kind::Unique).expect("frame");
        let Ok(Frame::Gossip(inner)) = Frame::decode(&unique) else {
            panic!("not gossip");
        };
        receiver.handle_message(now, from, &inner);
        assert_eq!(receiver.stats().delivered, 1);
        forge.turn = 0; // The next bad signature is a broadcast.
        let bad = forge.frame(Kind::BadSignature).expect("frame");
        let Ok(Frame::Gossip(inner)) = Frame::decode(&bad) else {
            panic!("not gossip");
        };
        receiver.handle_message(now, from, &inner);
        assert_eq!(receiver.stats().delivered, 1);
        assert_eq!(receiver.stats().dropped_bad_signature, 1);
    }
}
