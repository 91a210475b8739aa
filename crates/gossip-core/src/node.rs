//! The broadcast state machine.

use core::fmt;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kademlia_core::{Instant, NodeId};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cache::MessageCache;
use crate::config::{Config, Strategy};
use crate::identity::{Ed25519, Identity, Signer, Verifier};
use crate::lazy::LazyQueue;
use crate::message::{MessageId, signed_bytes};
use crate::seen::{Seen, SeenCache};
use crate::wire::{self, Announce, Auth, DecodeError, Frame, MAX_TREES, Message, TreeAdvert};

/// What the node asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes over the link to `to`.
    Send {
        /// The link's peer.
        to: NodeId,
        /// One encoded frame.
        bytes: Vec<u8>,
    },
    /// Tell the application something.
    Event(Event),
}

/// What the node tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message on a subscribed topic arrived, for the first and only time.
    Delivered {
        /// Its id.
        id: MessageId,
        /// The node that published it (its signature was checked unless unsigned messages are allowed).
        origin: NodeId,
        /// Topic.
        topic: String,
        /// Application bytes.
        payload: Vec<u8>,
        /// Hops it travelled: 1 when it came straight from its origin.
        hops: u8,
        /// When the origin published it (the origin's clock).
        timestamp: Instant,
        /// The link it arrived on.
        from: NodeId,
    },
    /// A push to `peer` was retransmitted `max_retries` times and never acknowledged: the link may be
    /// dead though still up (a hint for the layer that manages links).
    AckTimeout {
        /// The message.
        id: MessageId,
        /// The silent link.
        peer: NodeId,
    },
}

/// Why [`Node::publish`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic is longer than `Config::max_topic_len`.
    #[error("topic is {len} bytes, the limit is {max}")]
    TopicTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is larger than `Config::max_payload_len`.
    #[error("payload is {len} bytes, the limit is {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why [`Node::subscribe`] refused a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The topic is longer than `Config::max_topic_len`.
    #[error("topic is {len} bytes, the limit is {max}")]
    TopicTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `Config::max_subscriptions` topics are already subscribed.
    #[error("already subscribed to the maximum of {0} topics")]
    TooMany(usize),
}

/// Counters, cumulative since the node was created.
///
/// Payload transmissions (every time a message's bytes go out on a link) are
/// [`Stats::payload_transmissions`]; a simulator computes the relative message redundancy from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages published by this node.
    pub published: u64,
    /// New, valid messages accepted (delivered or not).
    pub accepted: u64,
    /// [`Event::Delivered`] emitted.
    pub delivered: u64,
    /// Copies of already accepted messages received.
    pub duplicates: u64,
    /// First eager pushes of a message on a link.
    pub payload_sends: u64,
    /// Retransmissions of unacknowledged pushes.
    pub payload_retries: u64,
    /// Messages sent in answer to a GRAFT.
    pub payload_graft_responses: u64,
    /// Messages sent over other links because the link of an unacknowledged push went down.
    pub payload_reroutes: u64,
    /// Frames handed to the driver.
    pub frames_sent: u64,
    /// Bytes handed to the driver.
    pub bytes_sent: u64,
    /// Frames received from links.
    pub frames_received: u64,
    /// ACKs sent.
    pub acks_sent: u64,
    /// ACKs that settled a pending push.
    pub acks_received: u64,
    /// ACKs (or implicit acknowledgements) for nothing pending: late, duplicated or unsolicited.
    pub acks_unmatched: u64,
    /// IHAVE frames sent.
    pub ihaves_sent: u64,
    /// IHAVE frames received.
    pub ihaves_received: u64,
    /// GRAFT frames sent.
    pub grafts_sent: u64,
    /// GRAFT frames received.
    pub grafts_received: u64,
    /// GRAFTed ids that were no longer cached.
    pub graft_misses: u64,
    /// Announced messages given up on after `max_graft_attempts` GRAFTs (or with no announcer left).
    pub grafts_abandoned: u64,
    /// PRUNE frames sent.
    pub prunes_sent: u64,
    /// PRUNE frames received.
    pub prunes_received: u64,
    /// Times a later copy over a shorter path made its link the message's parent (pruning the first).
    pub parent_swaps: u64,
    /// Frames from a peer that is not a link (or is this node).
    pub dropped_unknown_link: u64,
    /// Frames over `Config::max_frame_len`, topics, payloads or id lists over their bounds.
    pub dropped_oversized: u64,
    /// Frames with an unknown version byte.
    pub dropped_version: u64,
    /// Frames that do not decode.
    pub dropped_malformed: u64,
    /// Messages whose id is not the hash of their content.
    pub dropped_id_mismatch: u64,
    /// Unsigned messages while signatures are required.
    pub dropped_unsigned: u64,
    /// Messages whose public key does not hash to their origin.
    pub dropped_key_mismatch: u64,
    /// Messages with an invalid signature.
    pub dropped_bad_signature: u64,
    /// Messages older than the replay window (or than a forgotten id).
    pub dropped_too_old: u64,
    /// Messages timestamped too far in the future.
    pub dropped_future: u64,
    /// Messages that travelled more than `hop_limit` hops.
    pub dropped_hop_limit: u64,
    /// Pushes given up after `max_retries` retransmissions.
    pub retries_exhausted: u64,
    /// Retransmissions abandoned because the message left the cache.
    pub retries_abandoned: u64,
    /// Pushes not tracked because `max_pending_acks` was reached.
    pub pending_overflow: u64,
    /// Announcements dropped because a link's lazy queue was full.
    pub lazy_overflow: u64,
    /// Announced messages not tracked because `max_missing` was reached.
    pub missing_overflow: u64,
    /// Ids forgotten by the seen-cache to stay within its count bound.
    pub seen_evicted: u64,
    /// Messages evicted from the message cache to stay within its bounds.
    pub cache_evicted: u64,
    /// Outputs dropped because `max_outputs` were waiting.
    pub outputs_dropped: u64,
    /// Links ignored because `max_links` were up, or because the peer is this node.
    pub links_refused: u64,
    /// Rooted trees: times this node's root or parent in a tree changed.
    pub tree_changes: u64,
    /// Rooted trees: hold-downs started (a path to a root lost; see `Config::tree_hold_down`).
    pub tree_holds: u64,
}

impl Stats {
    /// Every time a message's bytes went out on a link: first pushes, retries, GRAFT answers and
    /// reroutes.
    pub fn payload_transmissions(&self) -> u64 {
        self.payload_sends
            + self.payload_retries
            + self.payload_graft_responses
            + self.payload_reroutes
    }

    /// Input dropped as invalid, over all reasons.
    pub fn dropped(&self) -> u64 {
        self.dropped_unknown_link
            + self.dropped_oversized
            + self.dropped_version
            + self.dropped_malformed
            + self.dropped_id_mismatch
            + self.dropped_unsigned
            + self.dropped_key_mismatch
            + self.dropped_bad_signature
            + self.dropped_too_old
            + self.dropped_future
            + self.dropped_hop_limit
    }
}

/// How a link carries new messages from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Up, but no message has crossed it yet: the adaptive fanout decides.
    Undecided,
    /// Part of the tree: messages are pushed.
    Eager,
    /// Off the tree: messages are announced.
    Lazy,
}

/// This node's place in one rooted tree ([`Config::rooted_tree`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    root: NodeId,
    distance: u8,
    parent: Option<NodeId>,
}

/// A tree's hold-down after its path to `root` was lost or got longer: until `until`, a path to
/// `root` is taken only if it is at most `feasible` hops (no longer than the one lost). Any longer
/// path may lead back through this node's own subtree, whose nodes still advertise the lost path;
/// meanwhile this node advertises what it has instead (another root, or itself), which reaches the
/// subtree and clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    root: NodeId,
    feasible: u8,
    until: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    retries: u32,
    due: Instant,
}

#[derive(Debug, Clone)]
struct Missing {
    /// Announcers with the hops after which they had the message; on rooted trees fewest hops first
    /// (a GRAFT asks the nearest to the origin), else in the order they announced.
    announcers: VecDeque<(u8, NodeId)>,
    grafts: u32,
    due: Instant,
}

/// One node's broadcast state: Plumtree over the links it is given, with per-hop acknowledgements.
///
/// See the [crate documentation](crate) for the contract.
pub struct Node<S = Identity, V = Ed25519> {
    id: NodeId,
    signer: S,
    verifier: V,
    config: Config,
    rng: ChaCha8Rng,
    now: Instant,
    seq: u64,
    links: BTreeMap<NodeId, Mode>,
    subscriptions: BTreeSet<String>,
    seen: SeenCache,
    cache: MessageCache,
    pending: BTreeMap<(MessageId, NodeId), Retry>,
    pending_due: BTreeSet<(Instant, MessageId, NodeId)>,
    missing: BTreeMap<MessageId, Missing>,
    missing_due: BTreeSet<(Instant, MessageId)>,
    lazy: LazyQueue,
    lazy_flush_at: Option<Instant>,
    outputs: VecDeque<Output>,
    stats: Stats,
    // Our place in each rooted tree, and what each link last told us of its places and what we last
    // told it (rooted trees only; one entry per tree).
    places: Vec<Place>,
    holds: Vec<Option<Hold>>,
    /// When each tree's place last changed its root or parent (an origin prefers settled trees).
    settled_since: Vec<Instant>,
    tree_heard: BTreeMap<NodeId, Vec<TreeAdvert>>,
    tree_told: BTreeMap<NodeId, Vec<TreeAdvert>>,
    tree_refresh_at: Option<Instant>,
    tree_flush_at: Option<Instant>,
}

impl<S, V> fmt::Debug for Node<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("now", &self.now)
            .field("links", &self.links)
            .field("seen", &self.seen.len())
            .field("cached", &self.cache.len())
            .field("pending", &self.pending.len())
            .field("missing", &self.missing.len())
            .finish_non_exhaustive()
    }
}

impl<S: Signer> Node<S, Ed25519> {
    /// A node that signs with `signer`, checks signatures with ed25519, and draws its randomness from a
    /// generator seeded with `seed`.
    ///
    /// # Panics
    /// If `config` is inconsistent (a zero hop limit, retry factor, id list bound, seen bound, announcer
    /// bound, flush interval or retry delay).
    pub fn new(signer: S, config: Config, seed: u64) -> Self {
        Self::with_verifier(signer, Ed25519, config, seed)
    }
}

impl<S: Signer, V: Verifier> Node<S, V> {
    /// Like [`Node::new`], with another signature checker (a simulator may want a cheaper one).
    ///
    /// # Panics
    /// As [`Node::new`].
    pub fn with_verifier(signer: S, verifier: V, config: Config, seed: u64) -> Self {
        config.check();
        let id = signer.id();
        Self {
            id,
            signer,
            verifier,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Instant::ZERO,
            seq: 0,
            links: BTreeMap::new(),
            subscriptions: BTreeSet::new(),
            seen: SeenCache::new(config.max_seen, config.max_message_age),
            cache: MessageCache::new(
                config.max_cached_messages,
                config.max_cached_bytes,
                config.max_links,
                config.message_cache_ttl,
            ),
            pending: BTreeMap::new(),
            pending_due: BTreeSet::new(),
            missing: BTreeMap::new(),
            missing_due: BTreeSet::new(),
            lazy: LazyQueue::new(config.max_lazy_queue),
            lazy_flush_at: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            places: vec![
                Place {
                    root: id,
                    distance: 0,
                    parent: None,
                };
                config.trees
            ],
            holds: vec![None; config.trees],
            settled_since: vec![Instant::ZERO; config.trees],
            tree_heard: BTreeMap::new(),
            tree_told: BTreeMap::new(),
            tree_refresh_at: None,
            tree_flush_at: None,
            config,
        }
    }

    /// This node's id (SHA-1 of its public key).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The links, in id order.
    pub fn links(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.links.keys().copied()
    }

    /// The links messages are pushed to (the tree, as this node sees it), in id order.
    ///
    /// With [`Config::rooted_tree`], the links on any of the trees (a parent or a child in one).
    pub fn eager_links(&self) -> impl Iterator<Item = NodeId> + '_ {
        let rooted = self.rooted();
        self.links
            .iter()
            .filter(move |(peer, mode)| {
                if rooted {
                    (0..self.places.len()).any(|t| self.tree_links(t).any(|p| p == **peer))
                } else {
                    **mode == Mode::Eager
                }
            })
            .map(|(peer, _)| *peer)
    }

    /// This node's place in each rooted tree ([`Config::rooted_tree`]): the root it follows, its hops
    /// to it, and its parent (`None` when it is the root as far as it knows).
    pub fn tree_places(&self) -> Vec<(NodeId, u8, Option<NodeId>)> {
        self.places
            .iter()
            .map(|p| (p.root, p.distance, p.parent))
            .collect()
    }

    /// The tree a message published now would travel on.
    pub fn next_tree(&self) -> u8 {
        if self.rooted() { self.pick_tree() } else { 0 }
    }

    /// Whether `topic` is subscribed.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.subscriptions.contains(topic)
    }

    /// Number of ids in the seen-cache (at most `Config::max_seen`).
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Sets the number of nodes the adaptive fanout assumes (e.g. mesh-core's estimate of the mesh's
    /// size); `None` uses the number of links.
    pub fn set_network_size(&mut self, nodes: Option<usize>) {
        self.config.network_size = nodes;
    }

    /// Delivers messages on `topic` from now on. Returns whether it was newly subscribed.
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, SubscribeError> {
        if topic.len() > self.config.max_topic_len {
            return Err(SubscribeError::TopicTooLong {
                len: topic.len(),
                max: self.config.max_topic_len,
            });
        }
        if self.subscriptions.contains(topic) {
            return Ok(false);
        }
        if self.subscriptions.len() >= self.config.max_subscriptions {
            return Err(SubscribeError::TooMany(self.config.max_subscriptions));
        }
        Ok(self.subscriptions.insert(topic.to_owned()))
    }

    /// Stops delivering messages on `topic` (they are still relayed). Returns whether it was subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.subscriptions.remove(topic)
    }

    /// A link to `peer` is up: messages may cross it from now on.
    pub fn handle_peer_up(&mut self, now: Instant, peer: NodeId) {
        self.advance(now);
        if self.links.contains_key(&peer) {
            return;
        }
        if peer == self.id || self.links.len() >= self.config.max_links {
            self.stats.links_refused += 1;
            return;
        }
        if self.rooted() {
            // The tree, not the first message, decides whether the link is eager.
            self.links.insert(peer, Mode::Lazy);
            self.update_tree();
            self.tell_place(peer, false);
            if self.tree_refresh_at.is_none() {
                self.tree_refresh_at = Some(self.now + self.config.tree_refresh_interval);
            }
        } else {
            self.links.insert(peer, Mode::Undecided);
        }
    }

    /// The link to `peer` is down. Pushes it had not acknowledged are sent over the remaining links that
    /// are not known to hold them.
    pub fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.advance(now);
        if self.links.remove(&peer).is_none() {
            return;
        }
        self.lazy.remove(&peer);
        self.tree_heard.remove(&peer);
        self.tree_told.remove(&peer);
        if self.rooted() {
            self.update_tree();
        }
        for missing in self.missing.values_mut() {
            missing.announcers.retain(|(_, p)| *p != peer);
        }
        let unacked: Vec<MessageId> = self
            .pending
            .keys()
            .filter(|(_, p)| *p == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in unacked {
            self.untrack(id, peer);
            self.reroute(id);
        }
    }

    /// Publishes `payload` on `topic` to the whole mesh. The node itself does not receive it.
    ///
    /// With no links the message reaches nobody: there is no store-and-forward.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<MessageId, PublishError> {
        if topic.len() > self.config.max_topic_len {
            return Err(PublishError::TopicTooLong {
                len: topic.len(),
                max: self.config.max_topic_len,
            });
        }
        if payload.len() > self.config.max_payload_len {
            return Err(PublishError::PayloadTooLarge {
                len: payload.len(),
                max: self.config.max_payload_len,
            });
        }
        self.advance(now);
        // Sequence numbers follow the clock, so a restarted node does not reuse one (which would give a
        // repeated message the id of its earlier copy, and have it dropped as a duplicate).
        self.seq = self.now.as_micros().max(self.seq.saturating_add(1));
        let id = MessageId::compute(&self.id, self.seq, topic, &payload);
        let signature = self
            .signer
            .sign(&signed_bytes(&self.id, self.seq, self.now, topic, &payload));
        let tree = if self.rooted() { self.pick_tree() } else { 0 };
        let message = Message {
            id,
            origin: self.id,
            seq: self.seq,
            timestamp: self.now,
            topic: topic.to_owned(),
            payload,
            hops: 0,
            tree,
            auth: Some(Auth {
                public_key: self.signer.public_key(),
                signature,
            }),
        };
        self.stats.published += 1;
        self.remember(
            id,
            Seen {
                timestamp: self.now,
                from: None,
                hops: 0,
                first_hops: 0,
            },
        );
        let frame = wire::encode(&Frame::Gossip(message));
        self.cache_insert(id, frame.clone(), None);
        self.disseminate(id, 0, &frame, None, tree);
        Ok(id)
    }

    /// Bytes arrived from the link to `from`. Anything malformed, oversized, unexpected or badly signed is
    /// dropped and counted in [`Stats`].
    pub fn handle_message(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        self.advance(now);
        self.stats.frames_received += 1;
        if !self.links.contains_key(&from) {
            self.stats.dropped_unknown_link += 1;
            return;
        }
        if bytes.len() > self.config.max_frame_len() {
            self.stats.dropped_oversized += 1;
            return;
        }
        let frame = match wire::decode(bytes) {
            Ok(frame) => frame,
            Err(DecodeError::Version(_)) => {
                self.stats.dropped_version += 1;
                return;
            }
            Err(DecodeError::Empty | DecodeError::Malformed) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        match frame {
            Frame::Gossip(message) => self.on_gossip(from, message),
            Frame::Ack(id) => self.on_ack(from, id),
            Frame::IHave(announces) => self.on_ihave(from, announces),
            Frame::Graft(ids) => self.on_graft(from, ids),
            Frame::Prune => {
                self.stats.prunes_received += 1;
                if !self.rooted() {
                    self.links.insert(from, Mode::Lazy);
                }
            }
            Frame::Tree(adverts) => {
                if self.rooted() {
                    if adverts.len() > MAX_TREES {
                        self.stats.dropped_oversized += 1;
                        return;
                    }
                    self.tree_heard.insert(from, adverts);
                    self.update_tree();
                }
            }
        }
    }

    /// Runs every timer due at `now`: retransmissions, GRAFTs, the announcement flush and cache expiry.
    /// Calling it early or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;

        while let Some(&(due, id, peer)) = self.pending_due.first()
            && due <= now
        {
            self.retry(id, peer);
        }

        let mut grafts: BTreeMap<NodeId, Vec<MessageId>> = BTreeMap::new();
        while let Some(&(due, id)) = self.missing_due.first()
            && due <= now
        {
            self.missing_due.pop_first();
            let Some(missing) = self.missing.get_mut(&id) else {
                continue;
            };
            let next = if missing.grafts < self.config.max_graft_attempts {
                missing.announcers.pop_front()
            } else {
                None
            };
            let Some((hops, peer)) = next else {
                self.missing.remove(&id);
                self.stats.grafts_abandoned += 1;
                continue;
            };
            // Announcers are asked in turn, and asked again, until the attempts run out: a lost GRAFT or
            // answer from the only announcer is then retried too.
            missing.announcers.push_back((hops, peer));
            missing.grafts += 1;
            missing.due = now + self.config.graft_retry_timeout;
            self.missing_due.insert((missing.due, id));
            grafts.entry(peer).or_default().push(id);
        }
        for (peer, ids) in grafts {
            // Plumtree: the link we pull from joins the tree (unless the rooted tree decides).
            if !self.rooted() {
                self.links.insert(peer, Mode::Eager);
            }
            for chunk in ids.chunks(self.config.max_ids_per_frame) {
                self.stats.grafts_sent += 1;
                self.send_frame(peer, &Frame::Graft(chunk.to_vec()));
            }
        }

        if self.lazy_flush_at.is_some_and(|at| at <= now) {
            self.lazy_flush_at = None;
            for (peer, announces) in self.lazy.drain() {
                if !self.links.contains_key(&peer) {
                    continue;
                }
                // A peer that has shown it holds a message since it was queued (its own IHAVE, a
                // copy, an ACK) is not told about it: on most lazy links both ends receive the message
                // within a flush interval of each other, and only the first to flush needs to.
                let announces: Vec<Announce> = announces
                    .into_iter()
                    .filter(|a| !self.cache.holders(&a.id).contains(&peer))
                    .collect();
                for chunk in announces.chunks(self.config.max_ids_per_frame) {
                    self.stats.ihaves_sent += 1;
                    self.send_frame(peer, &Frame::IHave(chunk.to_vec()));
                }
            }
        }

        if self.holds.iter().flatten().any(|h| h.until <= now) {
            self.update_tree();
        }
        if self.tree_flush_at.is_some_and(|at| at <= now) {
            self.flush_places();
        }
        if self.tree_refresh_at.is_some_and(|at| at <= now) {
            self.tree_refresh_at = None;
            if self.rooted() && !self.links.is_empty() {
                // Every link hears our places again (frames may be lost); a change is told at once.
                let peers: Vec<NodeId> = self.links.keys().copied().collect();
                for peer in peers {
                    self.tell_place(peer, true);
                }
                self.tree_refresh_at = Some(now + self.config.tree_refresh_interval);
            }
        }

        self.seen.expire(now);
        self.stats.cache_evicted += self.cache.expire(now) as u64;
    }

    /// The next output for the driver, if any. Drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called, if any timer is armed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.pending_due.first().map(|&(due, _, _)| due),
            self.missing_due.first().map(|&(due, _)| due),
            self.lazy_flush_at,
            self.tree_refresh_at,
            self.tree_flush_at,
            self.holds.iter().flatten().map(|h| h.until).min(),
            // Expiry only bounds memory: it is batched on a coarse tick rather than waking the
            // node for every message that ages out.
            self.seen.next_expiry().map(coarse),
            self.cache.next_expiry().map(coarse),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- input handlers ----

    fn on_gossip(&mut self, from: NodeId, message: Message) {
        if message.topic.len() > self.config.max_topic_len
            || message.payload.len() > self.config.max_payload_len
        {
            self.stats.dropped_oversized += 1;
            return;
        }
        let id = MessageId::compute(
            &message.origin,
            message.seq,
            &message.topic,
            &message.payload,
        );
        if id != message.id {
            self.stats.dropped_id_mismatch += 1;
            return;
        }
        // The frame is intact: acknowledge it whatever happens next, so its sender never retransmits a
        // message this node has or will not take.
        self.stats.acks_sent += 1;
        self.send_frame(from, &Frame::Ack(id));

        if let Some(seen) = self.seen.get(&id).copied() {
            self.stats.duplicates += 1;
            self.on_duplicate(from, id, seen, message.hops);
            return;
        }
        self.holds(id, from);
        if message.origin == self.id {
            // Our own message that the seen-cache forgot: never deliver or relay it again.
            self.stats.duplicates += 1;
            return;
        }
        let hops = message.hops.saturating_add(1);
        if hops > self.config.hop_limit {
            self.stats.dropped_hop_limit += 1;
            return;
        }
        if message.timestamp > self.now + self.config.max_clock_skew {
            self.stats.dropped_future += 1;
            return;
        }
        if !self.seen.admits(message.timestamp, self.now) {
            self.stats.dropped_too_old += 1;
            return;
        }
        // Only now, for a message not seen before, the expensive check.
        match &message.auth {
            None if self.config.require_signatures => {
                self.stats.dropped_unsigned += 1;
                return;
            }
            None => {}
            Some(auth) => {
                if NodeId::from_public_key(&auth.public_key) != message.origin {
                    self.stats.dropped_key_mismatch += 1;
                    return;
                }
                let signed = signed_bytes(
                    &message.origin,
                    message.seq,
                    message.timestamp,
                    &message.topic,
                    &message.payload,
                );
                if !self
                    .verifier
                    .verify(&auth.public_key, &signed, &auth.signature)
                {
                    self.stats.dropped_bad_signature += 1;
                    return;
                }
            }
        }

        self.stats.accepted += 1;
        self.remember(
            id,
            Seen {
                timestamp: message.timestamp,
                from: Some(from),
                hops,
                first_hops: hops,
            },
        );
        // Plumtree: the link that delivered a message first is a tree edge (unless the rooted tree
        // decides, or the node floods).
        if self.config.strategy == Strategy::Plumtree && !self.config.rooted_tree {
            self.links.insert(from, Mode::Eager);
        }
        if let Some(missing) = self.missing.remove(&id) {
            self.missing_due.remove(&(missing.due, id));
        }

        let forward = hops < self.config.hop_limit;
        let mut message = message;
        message.hops = hops;
        if forward {
            let frame = wire::encode(&Frame::Gossip(message.clone()));
            self.cache_insert(id, frame.clone(), Some(from));
            self.disseminate(id, hops, &frame, Some(from), message.tree);
        }
        if self.subscriptions.contains(&message.topic) {
            self.stats.delivered += 1;
            self.emit(Output::Event(Event::Delivered {
                id,
                origin: message.origin,
                topic: message.topic,
                payload: message.payload,
                hops,
                timestamp: message.timestamp,
                from,
            }));
        }
    }

    /// Plumtree cuts the link a second copy came over. Here the cut also shapes the tree by hops, so
    /// that it approaches a shortest-path tree whatever the latencies, and the last delivery hop stays
    /// low for every origin:
    ///
    /// - a copy from the message's parent is a retransmission (our ACK was lost): nothing to cut;
    /// - a copy over a strictly shorter path makes its link the parent, and the old parent is pruned;
    /// - a copy from a peer that received the message later in the tree than we did (more hops), and
    ///   to which we pushed it too, is left for that peer to judge when our copy reaches it: it will
    ///   either keep us as its better parent or prune us, and we must not cut the link first;
    /// - otherwise the sender is pruned.
    ///
    /// The hop counts compared are those carried by the copies themselves (each side sends its copy once,
    /// with the hops it first had), so two peers never both leave the decision to the other.
    fn on_duplicate(&mut self, from: NodeId, id: MessageId, seen: Seen, sender_hops: u8) {
        if seen.from == Some(from)
            || self.config.strategy == Strategy::Flood
            || self.config.rooted_tree
        {
            // A retransmission, or a copy under flooding or on a rooted tree (decided elsewhere):
            // nothing to cut.
            self.holds(id, from);
            return;
        }
        let via_sender = sender_hops.saturating_add(1);
        if sender_hops > seen.first_hops && self.cache.pushed(&id, &from) {
            // The sender judges once our copy reaches it, so that copy must arrive: a push it has not
            // acknowledged stays pending (and is retransmitted if it was lost).
            self.cache.add_holder(&id, from);
            return;
        }
        self.holds(id, from);
        if let Some(parent) = seen.from
            && via_sender < seen.hops
            && self.links.contains_key(&parent)
        {
            self.stats.parent_swaps += 1;
            self.links.insert(from, Mode::Eager);
            self.prune(parent);
            self.seen.insert(
                id,
                Seen {
                    from: Some(from),
                    hops: via_sender,
                    ..seen
                },
            );
            return;
        }
        self.prune(from);
    }

    fn on_ack(&mut self, from: NodeId, id: MessageId) {
        if self.untrack(id, from) {
            self.stats.acks_received += 1;
        } else {
            self.stats.acks_unmatched += 1;
        }
        self.cache.add_holder(&id, from);
    }

    fn on_ihave(&mut self, from: NodeId, announces: Vec<Announce>) {
        if announces.len() > self.config.max_ids_per_frame {
            self.stats.dropped_oversized += 1;
            return;
        }
        self.stats.ihaves_received += 1;
        // The peer announces rather than pushes: it sees the link as lazy, and so do we until a message
        // shows otherwise.
        if self.links.get(&from) == Some(&Mode::Undecided) {
            self.links.insert(from, Mode::Lazy);
        }
        let rooted = self.rooted();
        for Announce { id, hops } in announces {
            self.holds(id, from);
            let via_announcer = hops.saturating_add(1);
            if self.seen.contains(&id) {
                continue;
            }
            if via_announcer > self.config.hop_limit {
                continue;
            }
            if let Some(missing) = self.missing.get_mut(&id) {
                if !missing.announcers.iter().any(|(_, p)| *p == from)
                    && missing.announcers.len() < self.config.max_announcers
                {
                    // On rooted trees the nearest announcer to the origin is asked first, so that a
                    // repaired delivery is not many hops longer than the tree's; plain Plumtree asks
                    // in the order announced (its tree follows the GRAFTs).
                    let at = if rooted {
                        missing.announcers.partition_point(|(h, _)| *h <= hops)
                    } else {
                        missing.announcers.len()
                    };
                    missing.announcers.insert(at, (hops, from));
                }
                continue;
            }
            if self.missing.len() >= self.config.max_missing {
                self.stats.missing_overflow += 1;
                continue;
            }
            let due = self.now + self.config.graft_timeout;
            self.missing.insert(
                id,
                Missing {
                    announcers: VecDeque::from([(hops, from)]),
                    grafts: 0,
                    due,
                },
            );
            self.missing_due.insert((due, id));
        }
    }

    fn on_graft(&mut self, from: NodeId, ids: Vec<MessageId>) {
        if ids.len() > self.config.max_ids_per_frame {
            self.stats.dropped_oversized += 1;
            return;
        }
        self.stats.grafts_received += 1;
        if !self.rooted() {
            self.links.insert(from, Mode::Eager);
        }
        for id in ids {
            let Some(frame) = self.cache.frame(&id).map(<[u8]>::to_vec) else {
                self.stats.graft_misses += 1;
                continue;
            };
            self.stats.payload_graft_responses += 1;
            self.send(from, frame);
            self.track(id, from);
        }
    }

    // ---- dissemination ----

    /// Pushes `frame` to the tree and announces it to the other links, skipping `except` and links known
    /// to hold it. Undecided links are split by the adaptive fanout.
    fn disseminate(
        &mut self,
        id: MessageId,
        hops: u8,
        frame: &[u8],
        except: Option<NodeId>,
        tree: u8,
    ) {
        let holders = self.cache.holders(&id);
        let mut eager = Vec::new();
        let mut lazy = Vec::new();
        let mut undecided = Vec::new();
        let flood = self.config.strategy == Strategy::Flood;
        let on_tree: Vec<NodeId> = if self.rooted() {
            let tree = usize::from(tree) % self.places.len().max(1);
            self.tree_links(tree).collect()
        } else {
            Vec::new()
        };
        for (&peer, &mode) in &self.links {
            if Some(peer) == except || holders.contains(&peer) {
                continue;
            }
            if flood {
                eager.push(peer);
                continue;
            }
            if self.rooted() {
                if on_tree.contains(&peer) {
                    eager.push(peer);
                } else {
                    lazy.push(peer);
                }
                continue;
            }
            match mode {
                Mode::Eager => eager.push(peer),
                Mode::Lazy => lazy.push(peer),
                Mode::Undecided => undecided.push(peer),
            }
        }
        if !undecided.is_empty() {
            let push = self.fanout(undecided.len());
            // A partial Fisher-Yates shuffle picks `push` of them uniformly.
            for i in 0..push {
                let j = self.rng.random_range(i..undecided.len());
                undecided.swap(i, j);
            }
            for (i, peer) in undecided.into_iter().enumerate() {
                if i < push {
                    self.links.insert(peer, Mode::Eager);
                    eager.push(peer);
                } else {
                    self.links.insert(peer, Mode::Lazy);
                    lazy.push(peer);
                }
            }
        }
        for &peer in &eager {
            self.cache.add_pushed(&id, peer);
        }
        for peer in eager {
            self.stats.payload_sends += 1;
            self.send(peer, frame.to_vec());
            self.track(id, peer);
        }
        for peer in lazy {
            self.announce(peer, Announce { id, hops });
        }
    }

    // ---- the rooted tree ----

    fn rooted(&self) -> bool {
        self.config.rooted_tree && self.config.strategy == Strategy::Plumtree
    }

    /// The order of roots in tree `tree`: ids compared with their first byte offset by the tree's
    /// share of the id space, so that each tree's root (the lowest in its order) is another node.
    fn tree_key(&self, tree: usize, id: &NodeId) -> [u8; 20] {
        let mut key = *id.as_bytes();
        let trees = self.config.trees.max(1);
        key[0] ^= u8::try_from(tree * 256 / trees).unwrap_or(0);
        key
    }

    /// Recomputes this node's place in every tree from what its links told it, and tells the links
    /// whose advertisement changed.
    ///
    /// Loop freedom without sequence numbers: a node that loses its path to a root, or finds only a
    /// longer one, holds that root down for [`Config::tree_hold_down`] (see [`Hold`]), taking only
    /// paths no longer than the one it had. What it advertises meanwhile (another root, or itself)
    /// reaches its subtree, whose nodes do the same, so that no stale path is left when the hold
    /// ends; a root that is gone then disappears instead of being counted up hop by hop.
    fn update_tree(&mut self) {
        let now = self.now;
        for tree in 0..self.places.len() {
            if self.holds[tree].is_some_and(|h| h.until <= now) {
                self.holds[tree] = None;
            }
            let old = self.places[tree];
            let mut new = self.pick_place(tree);
            // Lost: the parent no longer offers the root (its link is gone, it follows another root
            // or takes us as its parent) and what is left is worse. A parent that still offers the
            // root, even over more hops, is followed: it holds itself to the same rule.
            let parent_offers = old.parent.is_some_and(|p| {
                self.links.contains_key(&p)
                    && self
                        .tree_heard
                        .get(&p)
                        .and_then(|h| h.get(tree))
                        .is_some_and(|a| a.root == old.root && !a.child)
            });
            let lost = old.parent.is_some()
                && !parent_offers
                && if new.root == old.root {
                    new.distance > old.distance
                } else {
                    self.tree_key(tree, &new.root) > self.tree_key(tree, &old.root)
                };
            if lost && self.holds[tree].is_none() {
                self.stats.tree_holds += 1;
                // The link to the root itself is lost: the root may be gone, and its other links
                // may notice later; hold until they have (`tree_root_hold_down`).
                let hold = if old.distance <= 1 {
                    self.config.tree_root_hold_down
                } else {
                    self.config.tree_hold_down
                };
                self.holds[tree] = Some(Hold {
                    root: old.root,
                    feasible: old.distance,
                    until: now + hold,
                });
                new = self.pick_place(tree);
            }
            if new.root != old.root || new.parent != old.parent {
                self.settled_since[tree] = now;
                self.stats.tree_changes += 1;
            }
            self.places[tree] = new;
        }
        // Changes are told after `tree_advert_delay`: a node often changes several times in a row
        // (a new root's wave reaching it over several links), and its links need only the last.
        if self.config.tree_advert_delay.is_zero() {
            self.flush_places();
        } else if self.tree_flush_at.is_none() {
            self.tree_flush_at = Some(now + self.config.tree_advert_delay);
        }
    }

    /// Tells every link whose view of our places is out of date.
    fn flush_places(&mut self) {
        self.tree_flush_at = None;
        let peers: Vec<NodeId> = self.links.keys().copied().collect();
        for peer in peers {
            self.tell_place(peer, false);
        }
    }

    /// The best place the links offer in `tree`: the lowest root in the tree's order, then the fewest
    /// hops, then the lowest parent id; this node as its own root if none is better.
    ///
    /// A dead root's paths are not advertised for ever: each node takes one more hop than the
    /// neighbor it follows, never a child (split horizon) and never beyond `hop_limit / 2` hops, so
    /// the distances of a root that is gone count up until every path to it passes the bound and the
    /// next root in the order takes over (every tree path, up to a common ancestor and down, thus
    /// fits under the hop limit).
    fn pick_place(&self, tree: usize) -> Place {
        let mut best = Place {
            root: self.id,
            distance: 0,
            parent: None,
        };
        let mut best_key = self.tree_key(tree, &self.id);
        for (peer, heard) in &self.tree_heard {
            let Some(heard) = heard.get(tree) else {
                continue;
            };
            if heard.child || !self.links.contains_key(peer) {
                continue;
            }
            let distance = heard.distance.saturating_add(1);
            if distance > self.config.hop_limit / 2 {
                continue;
            }
            if let Some(hold) = self.holds[tree]
                && hold.root == heard.root
                && distance > hold.feasible
            {
                continue;
            }
            let key = self.tree_key(tree, &heard.root);
            if (key, distance, Some(*peer)) < (best_key, best.distance, best.parent) {
                best_key = key;
                best = Place {
                    root: heard.root,
                    distance,
                    parent: Some(*peer),
                };
            }
        }
        best
    }

    /// The links a message on `tree` is pushed to: the parent and the children.
    fn tree_links(&self, tree: usize) -> impl Iterator<Item = NodeId> + '_ {
        let parent = self.places.get(tree).and_then(|p| p.parent);
        self.links.keys().copied().filter(move |peer| {
            Some(*peer) == parent
                || self
                    .tree_heard
                    .get(peer)
                    .and_then(|h| h.get(tree))
                    .is_some_and(|a| a.child)
        })
    }

    /// The tree a message we publish travels on: the one whose root is fewest hops away (its last
    /// delivery is at most that many hops plus the tree's height), among the trees we are part of.
    ///
    /// A tree this node's place in changed lately (a root lost, a parent replaced) may be changing
    /// elsewhere too: settled trees are preferred, the others used only when no tree is settled.
    fn pick_tree(&self) -> u8 {
        let settle = self.config.tree_hold_down;
        let mut best: Option<(bool, u8, usize)> = None;
        for (tree, place) in self.places.iter().enumerate() {
            let part = place.parent.is_some() || self.tree_links(tree).next().is_some();
            if !part {
                continue;
            }
            let unsettled = self.holds[tree].is_some()
                || self.now.saturating_duration_since(self.settled_since[tree]) < settle;
            let key = (unsettled, place.distance, tree);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        best.map_or(0, |(_, _, tree)| u8::try_from(tree).unwrap_or(0))
    }

    /// Sends `peer` our places if they changed since we last told it (or always, with `again`).
    fn tell_place(&mut self, peer: NodeId, again: bool) {
        let adverts: Vec<TreeAdvert> = self
            .places
            .iter()
            .map(|p| TreeAdvert {
                root: p.root,
                distance: p.distance,
                child: p.parent == Some(peer),
            })
            .collect();
        if !again && self.tree_told.get(&peer) == Some(&adverts) {
            return;
        }
        self.tree_told.insert(peer, adverts.clone());
        self.send_frame(peer, &Frame::Tree(adverts));
    }

    /// How many of `undecided` links to push to: the seed README's adaptive fanout over the nodes known
    /// (links, or the driver's estimate): all up to 5, 80-90% up to 15, 60-70% beyond; at least one.
    fn fanout(&mut self, undecided: usize) -> usize {
        let known = self.config.network_size.unwrap_or(self.links.len());
        let percent = match known {
            0..=5 => 100,
            6..=15 => self.rng.random_range(80..=90),
            _ => self.rng.random_range(60..=70),
        };
        (undecided * percent).div_ceil(100).clamp(1, undecided)
    }

    /// The unacknowledged push of `id` lost its link: send it over every remaining link not known to
    /// hold it.
    fn reroute(&mut self, id: MessageId) {
        let Some(frame) = self.cache.frame(&id).map(<[u8]>::to_vec) else {
            self.stats.retries_abandoned += 1;
            return;
        };
        let holders = self.cache.holders(&id);
        let targets: Vec<NodeId> = self
            .links
            .keys()
            .filter(|peer| !holders.contains(peer) && !self.pending.contains_key(&(id, **peer)))
            .copied()
            .collect();
        for peer in targets {
            self.stats.payload_reroutes += 1;
            self.send(peer, frame.clone());
            self.track(id, peer);
        }
    }

    fn retry(&mut self, id: MessageId, peer: NodeId) {
        let Some(retry) = self.pending.get(&(id, peer)).copied() else {
            return;
        };
        self.untrack(id, peer);
        if !self.links.contains_key(&peer) {
            return;
        }
        if retry.retries >= self.config.max_retries {
            self.stats.retries_exhausted += 1;
            self.emit(Output::Event(Event::AckTimeout { id, peer }));
            return;
        }
        let Some(frame) = self.cache.frame(&id).map(<[u8]>::to_vec) else {
            self.stats.retries_abandoned += 1;
            return;
        };
        self.stats.payload_retries += 1;
        self.send(peer, frame);
        let retries = retry.retries + 1;
        let due = self.now + self.backoff(retries);
        self.pending.insert((id, peer), Retry { retries, due });
        self.pending_due.insert((due, id, peer));
    }

    /// The wait after the `retries`-th retransmission: `retry_initial * retry_factor^retries`, capped.
    fn backoff(&self, retries: u32) -> Duration {
        let mut delay = self.config.retry_initial;
        for _ in 0..retries {
            delay = delay.saturating_mul(self.config.retry_factor);
            if delay >= self.config.retry_max_delay {
                break;
            }
        }
        delay.min(self.config.retry_max_delay)
    }

    // ---- bookkeeping ----

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the node, whatever the driver passes.
        self.now = self.now.max(now);
    }

    fn remember(&mut self, id: MessageId, seen: Seen) {
        self.stats.seen_evicted += self.seen.insert(id, seen) as u64;
    }

    fn cache_insert(&mut self, id: MessageId, frame: Vec<u8>, holder: Option<NodeId>) {
        self.stats.cache_evicted += self.cache.insert(self.now, id, frame, holder) as u64;
    }

    /// `peer` is known to hold `id`: never push it there again, and treat a pending push as acknowledged.
    fn holds(&mut self, id: MessageId, peer: NodeId) {
        self.untrack(id, peer);
        self.cache.add_holder(&id, peer);
    }

    fn prune(&mut self, peer: NodeId) {
        self.links.insert(peer, Mode::Lazy);
        self.stats.prunes_sent += 1;
        self.send_frame(peer, &Frame::Prune);
    }

    fn announce(&mut self, peer: NodeId, announce: Announce) {
        if !self.lazy.push(peer, announce) {
            self.stats.lazy_overflow += 1;
            return;
        }
        if self.lazy_flush_at.is_none() {
            self.lazy_flush_at = Some(self.now + self.config.lazy_flush_interval);
        }
    }

    fn track(&mut self, id: MessageId, peer: NodeId) {
        if self.pending.contains_key(&(id, peer)) {
            return;
        }
        if self.pending.len() >= self.config.max_pending_acks {
            self.stats.pending_overflow += 1;
            return;
        }
        let due = self.now + self.config.retry_initial;
        self.pending.insert((id, peer), Retry { retries: 0, due });
        self.pending_due.insert((due, id, peer));
    }

    fn untrack(&mut self, id: MessageId, peer: NodeId) -> bool {
        match self.pending.remove(&(id, peer)) {
            Some(retry) => {
                self.pending_due.remove(&(retry.due, id, peer));
                true
            }
            None => false,
        }
    }

    fn send_frame(&mut self, to: NodeId, frame: &Frame) {
        self.send(to, wire::encode(frame));
    }

    fn send(&mut self, to: NodeId, bytes: Vec<u8>) {
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.emit(Output::Send { to, bytes });
    }

    fn emit(&mut self, output: Output) {
        if self.outputs.len() >= self.config.max_outputs {
            self.stats.outputs_dropped += 1;
            return;
        }
        self.outputs.push_back(output);
    }
}

/// `at` rounded up to the next multiple of [`EXPIRY_TICK`] since the epoch.
fn coarse(at: Instant) -> Instant {
    let tick = u64::try_from(EXPIRY_TICK.as_micros()).unwrap_or(u64::MAX);
    Instant::from_micros(at.as_micros().div_ceil(tick).saturating_mul(tick))
}

/// Granularity of the seen-cache's and the message cache's expiry timers.
const EXPIRY_TICK: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests;
