//! The broadcast state machine.

use core::fmt;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use p2pmesh_base::{Instant, NodeId};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cache::MessageCache;
use crate::config::Config;
use crate::event::{Event, Output, PublishError, SubscribeError};
use crate::lazy::LazyQueue;
use crate::message::{MessageId, root_signed_bytes, signed_bytes};
use crate::policy::{Dissemination, Mode, Target};
use crate::rate::RateLimiter;
use crate::rtt::RttEstimate;
use crate::seen::{Seen, SeenCache};
use crate::stats::Stats;
use crate::wire::{
    self, Announce, Auth, DecodeError, Frame, MAX_TREES, Message, RootProof, TreeAdvert,
};
use p2pmesh_base::{Ed25519, Identity, Signer, Verifier};

#[derive(Debug, Clone, Copy)]
struct Retry {
    retries: u32,
    due: Instant,
    /// When the push was first sent: its ACK, if it was never resent, is a round-trip sample.
    sent: Instant,
}

#[derive(Debug, Clone)]
struct Missing {
    /// Announcers with the hops after which they had the message; on rooted trees fewest hops first
    /// (a GRAFT asks the nearest to the origin), else in the order they announced.
    announcers: VecDeque<(u8, NodeId)>,
    /// The link that announced it first: its share of `max_missing_per_link` holds it.
    owner: NodeId,
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
    policy: Dissemination,
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
    /// Missing messages by the link that announced them first (`Missing::owner`).
    missing_owned: BTreeMap<NodeId, BTreeSet<MessageId>>,
    /// Per origin: new messages accepted ([`Config::origin_rate`]).
    origin_rate: RateLimiter,
    /// Per link: announced ids added to `missing` ([`Config::ihave_rate`]).
    ihave_rate: RateLimiter,
    /// Messages whose unacknowledged push lost its link when no other link could take them: pushed
    /// to the next link that comes up (bounded like the message cache they are read from).
    stranded: BTreeSet<MessageId>,
    missing_due: BTreeSet<(Instant, MessageId)>,
    lazy: LazyQueue,
    lazy_flush_at: Option<Instant>,
    /// Announcements flushed once, in the order they are due to be repeated
    /// ([`Config::announce_repeat`]): at most `max_pending_acks`.
    repeats: VecDeque<(Instant, NodeId, Announce)>,
    outputs: VecDeque<Output>,
    stats: Stats,
    // Our place in each rooted tree, and what each link last told us of its places and what we last
    // told it (rooted trees only; one entry per tree).
    places: Vec<Place>,
    holds: Vec<Option<Hold>>,
    /// When each tree's place last changed its root or parent (an origin prefers settled trees).
    settled_since: Vec<Instant>,
    /// Per tree, the costs this node advertised lately for its root: its feasible distance.
    advertised: Vec<tree::Advertised>,
    tree_heard: BTreeMap<NodeId, Vec<TreeAdvert>>,
    tree_told: BTreeMap<NodeId, Vec<TreeAdvert>>,
    /// This node's proof of itself as a root (signed when first needed, renewed at a quarter of
    /// `tree_proof_max_age`).
    own_proof: Option<RootProof>,
    /// Per link, the roots it follows and the timestamps of the verified proofs it gave of them (at
    /// most `2 * trees`): the proofs themselves are kept once, in `proofs_held`.
    proofs_heard: BTreeMap<NodeId, BTreeMap<NodeId, Instant>>,
    /// Every proof some link in `proofs_heard` names, by root and timestamp: most links name the
    /// same proofs, and a proof is five times the size of its name.
    proofs_held: BTreeMap<(NodeId, Instant), RootProof>,
    /// Per root, the freshest proof in `proofs_heard` (the one [`Node::proof_of`] tells), kept equal
    /// to the latest over the links as proofs come and go: one lookup instead of one per link.
    proofs_best: BTreeMap<NodeId, RootProof>,
    /// Per link, the roots and timestamps of the root proofs we last told it, in root order.
    proofs_told: BTreeMap<NodeId, Vec<(NodeId, Instant)>>,
    tree_refresh_at: Option<Instant>,
    tree_flush_at: Option<Instant>,
    /// When a frame last arrived on any link (`None` before the first).
    last_heard: Option<Instant>,
    /// Per link, the round trip measured by the driver's ping and the ACKs of pushes sent once.
    rtt: BTreeMap<NodeId, RttEstimate>,
    /// Per link, its cost in the rooted trees (milliseconds one way), fixed from `rtt`.
    link_costs: BTreeMap<NodeId, u32>,
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
    /// bound, flush interval or retry delay, or a tree count out of range): [`Config::validate`] tells
    /// which beforehand, as an error.
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
            policy: Dissemination::of(&config),
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
            stranded: BTreeSet::new(),
            missing: BTreeMap::new(),
            missing_owned: BTreeMap::new(),
            origin_rate: RateLimiter::new(
                config.origin_rate,
                config.origin_burst,
                config.max_origins,
            ),
            ihave_rate: RateLimiter::new(
                config.ihave_rate,
                u32::try_from(config.max_ids_per_frame.saturating_mul(2)).unwrap_or(u32::MAX),
                config.max_links,
            ),
            missing_due: BTreeSet::new(),
            lazy: LazyQueue::new(config.max_lazy_queue),
            lazy_flush_at: None,
            repeats: VecDeque::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            places: vec![
                Place {
                    root: id,
                    distance: 0,
                    cost: 0,
                    parent: None,
                };
                config.trees
            ],
            holds: vec![None; config.trees],
            settled_since: vec![Instant::ZERO; config.trees],
            advertised: vec![tree::Advertised::default(); config.trees],
            tree_heard: BTreeMap::new(),
            tree_told: BTreeMap::new(),
            own_proof: None,
            proofs_heard: BTreeMap::new(),
            proofs_held: BTreeMap::new(),
            proofs_best: BTreeMap::new(),
            proofs_told: BTreeMap::new(),
            tree_refresh_at: None,
            tree_flush_at: None,
            last_heard: None,
            rtt: BTreeMap::new(),
            link_costs: BTreeMap::new(),
            config,
        }
    }

    /// This node's id (SHA-1 of its public key).
    pub fn local_id(&self) -> NodeId {
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
        let rooted = self.policy.keeps_trees();
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

    /// The smoothed round trip of the link to `peer`, once measured (the driver's
    /// [`Node::handle_link_rtt`], the ACKs of pushes sent once).
    pub fn link_rtt(&self, peer: &NodeId) -> Option<Duration> {
        self.rtt.get(peer).map(RttEstimate::smoothed)
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
        if self.policy.keeps_trees() {
            self.pick_tree()
        } else {
            0
        }
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
        self.links.insert(peer, self.policy.new_link());
        if self.policy.keeps_trees() {
            self.update_tree();
            self.tell_place(peer, false);
            if self.tree_refresh_at.is_none() {
                self.tree_refresh_at = Some(self.now + self.config.tree_refresh_interval);
            }
        }
        self.unstrand(peer);
        self.catch_up(peer, self.config.catch_up_window);
        self.ask_catch_up(peer);
    }

    /// A node that heard nothing from any link for longer than the catch-up window was cut off
    /// (its links dead but not yet closed, or none): it asks its new link `peer` for what that link
    /// accepted since shortly before the silence began, not only in the last window.
    fn ask_catch_up(&mut self, peer: NodeId) {
        let window = self.config.catch_up_window;
        let Some(heard) = self.last_heard else {
            return;
        };
        let silent = self.now.saturating_duration_since(heard);
        if window.is_zero() || silent <= window {
            return;
        }
        let span = (silent + window).min(self.config.message_cache_ttl);
        self.stats.catch_up_asked += 1;
        let micros = u64::try_from(span.as_micros()).unwrap_or(u64::MAX);
        self.send_frame(peer, &Frame::CatchUp(micros));
    }

    /// Announces to the link `peer` the messages cached within `window` (the last
    /// [`Config::catch_up_window`] for a new link) that it is not known to hold (see there).
    fn catch_up(&mut self, peer: NodeId, window: Duration) {
        if self.config.catch_up_window.is_zero() {
            return;
        }
        let since = self.now.saturating_sub(window);
        let recent: Vec<MessageId> = self
            .cache
            .since(since)
            // Not what it is known to hold, nor what was just pushed to it (a stranded message).
            .filter(|id| !self.holds_or_gets(id, &peer))
            .take(self.config.max_ids_per_frame)
            .collect();
        for id in recent {
            let hops = self.seen.get(&id).map_or(0, |s| s.hops);
            self.stats.catch_up_announced += 1;
            self.announce(peer, Announce { id, hops });
        }
    }

    /// The driver measured the round trip of the link to `peer` (a ping when it came up): it counts
    /// like the round trip of an acknowledged push, which sets the link's cost in the rooted trees
    /// (half the round trip plus [`Config::tree_hop_cost`]) and times the first retransmission of a
    /// push to it. Ignored for a peer that is not a link.
    pub fn handle_link_rtt(&mut self, now: Instant, peer: NodeId, rtt: Duration) {
        self.advance(now);
        if !self.links.contains_key(&peer) {
            return;
        }
        self.sample_rtt(peer, rtt);
    }

    /// One more round-trip sample of the link to `peer`.
    fn sample_rtt(&mut self, peer: NodeId, rtt: Duration) {
        self.rtt
            .entry(peer)
            .and_modify(|estimate| estimate.sample(rtt))
            .or_insert_with(|| RttEstimate::new(rtt));
        self.refresh_link_cost(peer);
    }

    /// The link to `peer` is down. Pushes it had not acknowledged are sent over the remaining links that
    /// are not known to hold them; when there are none, to the next link that comes up.
    pub fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.advance(now);
        if self.links.remove(&peer).is_none() {
            return;
        }
        self.lazy.remove(&peer);
        self.ihave_rate.remove(&peer);
        self.tree_heard.remove(&peer);
        self.tree_told.remove(&peer);
        if let Some(proofs) = self.proofs_heard.remove(&peer) {
            self.forget_proofs(proofs.into_iter());
        }
        self.proofs_told.remove(&peer);
        self.rtt.remove(&peer);
        self.link_costs.remove(&peer);
        if self.policy.keeps_trees() {
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
        let tree = if self.policy.keeps_trees() {
            self.pick_tree()
        } else {
            0
        };
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
        self.disseminate(id, 0, &frame, None, tree, &[]);
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
        self.last_heard = Some(self.now);
        match frame {
            Frame::Gossip(message) => self.on_gossip(from, message),
            Frame::Ack(id) => self.on_ack(from, id),
            Frame::IHave(announces) => self.on_ihave(from, announces),
            Frame::Graft(ids) => self.on_graft(from, ids),
            Frame::Prune => {
                self.stats.prunes_received += 1;
                if self.policy.grafts_and_prunes_set_modes() {
                    self.links.insert(from, Mode::Lazy);
                }
            }
            Frame::CatchUp(micros) => {
                let span = Duration::from_micros(micros).min(self.config.message_cache_ttl);
                self.catch_up(from, span);
            }
            Frame::Tree { proofs, adverts } => {
                if self.policy.keeps_trees() {
                    if adverts.len() > MAX_TREES || proofs.len() > self.config.trees {
                        self.stats.dropped_oversized += 1;
                        return;
                    }
                    // Only the proofs of the roots it now follows are kept.
                    self.prune_proofs(from, |root| adverts.iter().any(|a| a.root == *root));
                    // Only the trees whose entry changed need their places recomputed.
                    let changed = match self.tree_heard.get(&from) {
                        Some(before) if before.len() == adverts.len() => {
                            tree_mask(before.iter().zip(&adverts).map(|(old, new)| old != new))
                        }
                        _ => u64::MAX,
                    };
                    self.tree_heard.insert(from, adverts);
                    // The proofs count once the entries that name them are held.
                    self.on_proofs(from, proofs, changed);
                }
            }
            Frame::Roots(proofs) => {
                if self.policy.keeps_trees() {
                    if proofs.len() > self.config.trees {
                        self.stats.dropped_oversized += 1;
                        return;
                    }
                    self.on_proofs(from, proofs, 0);
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
                self.forget_missing(id);
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
            if self.policy.grafts_and_prunes_set_modes() {
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
                self.queue_repeats(peer, &announces);
            }
        }
        self.repeat_announcements();

        if self.holds.iter().flatten().any(|h| h.until <= now) {
            self.update_tree();
        }
        if self.tree_flush_at.is_some_and(|at| at <= now) {
            self.flush_places();
        }
        if self.tree_refresh_at.is_some_and(|at| at <= now) {
            self.tree_refresh_at = None;
            if self.policy.keeps_trees() && !self.links.is_empty() {
                // Proofs that aged out no longer count.
                self.update_tree();
                // Every link hears our places again (frames may be lost); a change is told at once.
                self.tell_places(true);
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
            self.repeats.front().map(|&(due, _, _)| due),
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

    // ---- bookkeeping ----

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the node, whatever the driver passes.
        self.now = self.now.max(now);
    }

    fn remember(&mut self, id: MessageId, seen: Seen) {
        self.stats.seen_evicted += self.seen.insert(id, seen, self.now) as u64;
    }

    fn cache_insert(&mut self, id: MessageId, frame: Vec<u8>, holder: Option<NodeId>) {
        self.stats.cache_evicted += self.cache.insert(self.now, id, frame, holder) as u64;
    }

    /// Remembers the announcements just flushed to `peer`, to be sent once more one to two
    /// [`Config::announce_repeat`] later unless `peer` shows it holds them by then.
    fn queue_repeats(&mut self, peer: NodeId, announces: &[Announce]) {
        if self.config.announce_repeat.is_zero() {
            return;
        }
        // On a grid of `announce_repeat`, so that the announcements of one period go in one frame.
        let repeat = self.config.announce_repeat;
        let due = round_up(self.now + repeat, repeat);
        let room = self
            .config
            .max_pending_acks
            .saturating_sub(self.repeats.len());
        self.repeats
            .extend(announces.iter().take(room).map(|&a| (due, peer, a)));
    }

    /// Sends again, once, the announcements due to be repeated ([`Config::announce_repeat`]) whose link is
    /// still up and has not shown it holds the message, one IHAVE per link.
    fn repeat_announcements(&mut self) {
        let mut again: BTreeMap<NodeId, Vec<Announce>> = BTreeMap::new();
        while let Some(&(due, peer, announce)) = self.repeats.front() {
            if due > self.now {
                break;
            }
            self.repeats.pop_front();
            let unknown = self.links.contains_key(&peer)
                && self.cache.contains(&announce.id)
                && !self.holds_or_gets(&announce.id, &peer);
            if unknown {
                again.entry(peer).or_default().push(announce);
            }
        }
        for (peer, announces) in again {
            self.stats.announces_repeated += announces.len() as u64;
            for chunk in announces.chunks(self.config.max_ids_per_frame) {
                self.stats.ihaves_sent += 1;
                self.send_frame(peer, &Frame::IHave(chunk.to_vec()));
            }
        }
    }

    /// Whether `peer` is known to hold `id` or is being pushed it (an unacknowledged push): then it
    /// needs no announcement of it, nor another push.
    fn holds_or_gets(&self, id: &MessageId, peer: &NodeId) -> bool {
        self.cache.holders(id).contains(peer) || self.pending.contains_key(&(*id, *peer))
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
        let due = self.now + self.backoff(peer, 0);
        self.pending.insert(
            (id, peer),
            Retry {
                retries: 0,
                due,
                sent: self.now,
            },
        );
        self.pending_due.insert((due, id, peer));
    }

    /// Stops waiting for `peer`'s acknowledgement of `id`; the push's record, if one was pending.
    fn untrack(&mut self, id: MessageId, peer: NodeId) -> Option<Retry> {
        let retry = self.pending.remove(&(id, peer))?;
        self.pending_due.remove(&(retry.due, id, peer));
        Some(retry)
    }

    fn send_frame(&mut self, to: NodeId, frame: &Frame) {
        self.send(to, wire::encode(frame));
    }

    fn send(&mut self, to: NodeId, bytes: Vec<u8>) {
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.emit(Output::Transmit { to, bytes });
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
    round_up(at, EXPIRY_TICK)
}

/// `at` rounded up to the next multiple of `tick` (not zero) since the epoch.
fn round_up(at: Instant, tick: Duration) -> Instant {
    let tick = u64::try_from(tick.as_micros()).unwrap_or(u64::MAX).max(1);
    Instant::from_micros(at.as_micros().div_ceil(tick).saturating_mul(tick))
}

/// Granularity of the seen-cache's and the message cache's expiry timers.
const EXPIRY_TICK: Duration = Duration::from_secs(5);

mod push;
mod receive;
mod tree;

pub use tree::tree_order_key;
use tree::{Hold, Place, tree_mask};

#[cfg(test)]
mod tests;
