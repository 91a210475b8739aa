//! The Kademlia node: the state machine a driver feeds with inputs and drains of outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kbucket::{Change, Insert, RoutingTable};
use crate::query::{Kind, Lookup, Phase, Query};
use crate::record::RecordStore;
use crate::wire::{DecodeError, Limits, Message, Request, Response};
use crate::{Config, ID_LEN, Instant, NodeId, QueryEnd, QueryId, QueryResult, Record};

/// Something the driver must do, returned by [`Node::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Deliver `bytes` to the node `to`; it hands them to its own [`Node::handle_message`] with our id
    /// as `from`. Delivery may fail silently: requests time out.
    Send {
        /// The receiver.
        to: NodeId,
        /// The encoded message (see [`wire`](crate::wire)).
        bytes: Vec<u8>,
    },
    /// Something happened that the application may want to know.
    Event(Event),
}

/// What a node reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A lookup started by [`Node::find_node`], [`Node::get_value`], [`Node::put_value`] or
    /// [`Node::bootstrap`] ended. (The node's own bucket refreshes and republications report nothing.)
    QueryFinished {
        /// The id the command returned.
        id: QueryId,
        /// What it found.
        result: QueryResult,
        /// Why it ended.
        end: QueryEnd,
        /// Sequential hops the result depended on (see [the rounds definition](crate::query#rounds)).
        rounds: u32,
        /// Requests the query sent (FIND_NODE or FIND_VALUE, and the STOREs of `put_value`).
        requests: u32,
    },
    /// A verified contact entered the routing table.
    PeerAdded {
        /// The contact.
        peer: NodeId,
        /// Its bucket index.
        bucket: usize,
    },
    /// A contact left the routing table (it failed to answer, was replaced, or went down).
    PeerRemoved {
        /// The contact.
        peer: NodeId,
    },
}

/// Counters of what a node did and, above all, of what it dropped. Read with [`Node::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages given to [`Node::handle_message`].
    pub messages_received: u64,
    /// [`Output::Send`]s queued.
    pub messages_sent: u64,
    /// Requests from other nodes answered.
    pub requests_answered: u64,
    /// Dropped: larger than `max_message_bytes`.
    pub dropped_oversized: u64,
    /// Dropped: empty or of an unknown version.
    pub dropped_bad_version: u64,
    /// Dropped: not a message, or trailing bytes.
    pub dropped_undecodable: u64,
    /// Dropped: more than `k` contacts or a value over `max_value_bytes`.
    pub dropped_over_limit: u64,
    /// Dropped: claimed to come from our own id.
    pub dropped_from_self: u64,
    /// Dropped: a response to no outstanding request: late (after its timeout, or after its query
    /// finished), duplicate, or forged.
    pub dropped_unmatched: u64,
    /// Dropped: a response to an outstanding request, from a peer other than the one asked.
    pub dropped_wrong_peer: u64,
    /// Dropped: a response of the wrong kind for its request, or a record that does not match the key
    /// asked or has expired; the request counts as failed.
    pub dropped_unexpected: u64,
    /// Requests that got no answer within `request_timeout`.
    pub requests_timed_out: u64,
    /// STOREs accepted.
    pub stores_accepted: u64,
    /// STOREs refused: store full, record expired, or sent by a node other than its publisher.
    pub stores_refused: u64,
    /// Records of others removed on expiry.
    pub records_expired: u64,
    /// Lookups started (including refreshes and republications).
    pub queries_started: u64,
    /// Lookups refused because `max_queries` were running.
    pub queries_rejected: u64,
    /// Own records no longer republished because `max_published` others were published after them.
    pub published_evicted: u64,
    /// Outputs dropped because `max_outputs` were waiting.
    pub outputs_dropped: u64,
}

/// Why an outstanding request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Does the least recently seen entry of a full bucket still answer?
    EvictionPing,
    Lookup(QueryId),
    Store(QueryId),
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    peer: NodeId,
    deadline: Instant,
    purpose: Purpose,
}

#[derive(Debug, Clone)]
struct Published {
    record: Record,
    next_republish: Instant,
    /// Publication order, to stop republishing the oldest when `max_published` is reached.
    seq: u64,
}

/// A sans-IO Kademlia node. See the [crate docs](crate) for the contract and a driver loop.
pub struct Node {
    local_id: NodeId,
    config: Config,
    limits: Limits,
    rng: ChaCha8Rng,
    table: RoutingTable,
    store: RecordStore,
    published: BTreeMap<NodeId, Published>,
    publish_seq: u64,
    queries: BTreeMap<QueryId, Query>,
    /// Deadlines of the queries still in their lookup phase.
    query_deadlines: BTreeSet<(Instant, QueryId)>,
    next_query: u64,
    /// Outstanding requests by request id; bounded by the running queries (at most `alpha + k` each:
    /// lookup requests, then STOREs) plus one eviction ping per bucket.
    pending: BTreeMap<u64, Pending>,
    /// The same requests by deadline.
    deadlines: BTreeSet<(Instant, u64)>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("local_id", &self.local_id)
            .field("contacts", &self.table.len())
            .field("records", &self.store.len())
            .field("published", &self.published.len())
            .field("queries", &self.queries.len())
            .field("pending", &self.pending.len())
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with id `local_id`; `seed` seeds all its randomness (request ids, refresh targets), so the
    /// same seed and inputs replay the same run.
    ///
    /// # Panics
    /// If `config` cannot work: `k`, `alpha`, `max_queries` or `max_outputs` zero,
    /// `max_lookup_candidates < k + alpha`, `max_message_bytes` too small for a value of
    /// `max_value_bytes` or for `k` contacts, `republish_interval >= record_ttl`, or a zero timeout.
    pub fn new(local_id: NodeId, config: Config, seed: u64) -> Self {
        config.check();
        Self {
            local_id,
            limits: Limits::from_config(&config),
            rng: ChaCha8Rng::seed_from_u64(seed),
            table: RoutingTable::new(local_id, config.k, config.replacement_cache_size),
            store: RecordStore::default(),
            published: BTreeMap::new(),
            publish_seq: 0,
            queries: BTreeMap::new(),
            query_deadlines: BTreeSet::new(),
            next_query: 0,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Our id.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routing table (read only).
    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The records this node stores for their publishers (possibly expired but not yet removed by
    /// [`Node::handle_timeout`]).
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.store.iter()
    }

    /// The records this node publishes and republishes.
    pub fn published(&self) -> impl Iterator<Item = &Record> {
        self.published.values().map(|p| &p.record)
    }

    /// Whether a query is still running.
    pub fn is_running(&self, id: QueryId) -> bool {
        self.queries.contains_key(&id)
    }

    /// Learns of `peer` from outside the DHT (e.g. a signaling server's introduction). It stays an
    /// unverified candidate, used by lookups while the table is thin, until it answers us.
    pub fn add_contact(&mut self, now: Instant, peer: NodeId) {
        self.table.insert_unverified(now, peer);
    }

    /// Joins the network: looks up our own id starting from `contacts` (and whatever the table knows).
    /// Each contact that answers becomes a verified entry.
    pub fn bootstrap(&mut self, now: Instant, contacts: &[NodeId]) -> QueryId {
        for c in contacts {
            self.table.insert_unverified(now, *c);
        }
        let target = self.local_id;
        let mut initial = contacts.to_vec();
        initial.extend(self.table.lookup_candidates(&target, self.config.k));
        self.start_query(now, Kind::Bootstrap, target, initial)
    }

    /// Finds the `k` nodes closest to `target` ([`QueryResult::FindNode`]).
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> QueryId {
        let initial = self.table.lookup_candidates(&target, self.config.k);
        self.start_query(now, Kind::FindNode, target, initial)
    }

    /// Finds the record under `key` ([`QueryResult::GetValue`]): from our own store at once if we hold
    /// it, otherwise from the first node on the way to the key that does.
    pub fn get_value(&mut self, now: Instant, key: NodeId) -> QueryId {
        if let Some(record) = self.local_record(now, &key) {
            let id = self.new_query_id();
            self.emit(Event::QueryFinished {
                id,
                result: QueryResult::GetValue {
                    key,
                    record: Some(record),
                },
                end: QueryEnd::Completed,
                rounds: 0,
                requests: 0,
            });
            return id;
        }
        let initial = self.table.lookup_candidates(&key, self.config.k);
        self.start_query(now, Kind::GetValue, key, initial)
    }

    /// Publishes `value` under `key`: stores it at the `k` closest nodes a lookup finds
    /// ([`QueryResult::PutValue`]), and again every `republish_interval` until [`Node::unpublish`],
    /// each time with a fresh expiry of `record_ttl`.
    ///
    /// # Panics
    /// If `value` is longer than [`Config::max_value_bytes`] (a caller error: no node would accept it).
    pub fn put_value(&mut self, now: Instant, key: NodeId, value: Vec<u8>) -> QueryId {
        assert!(
            value.len() <= self.config.max_value_bytes,
            "put_value: a value of {} bytes exceeds Config::max_value_bytes ({})",
            value.len(),
            self.config.max_value_bytes
        );
        let record = Record {
            key,
            value,
            publisher: self.local_id,
            expires: now + self.config.record_ttl,
        };
        if !self.published.contains_key(&key) && self.published.len() >= self.config.max_published {
            let oldest = self
                .published
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.published.remove(&oldest);
                self.stats.published_evicted += 1;
            }
        }
        self.publish_seq += 1;
        self.published.insert(
            key,
            Published {
                record: record.clone(),
                next_republish: now + self.config.republish_interval,
                seq: self.publish_seq,
            },
        );
        let initial = self.table.lookup_candidates(&key, self.config.k);
        self.start_query(
            now,
            Kind::PutValue {
                record,
                republish: false,
            },
            key,
            initial,
        )
    }

    /// Stops republishing the record under `key`; the copies already stored expire on their own.
    /// Returns whether we published it.
    pub fn unpublish(&mut self, key: &NodeId) -> bool {
        self.published.remove(key).is_some()
    }

    /// The driver tells us `peer` is reachable now (e.g. a data channel to it opened): it becomes or
    /// stays a verified entry, subject to its bucket having room (see [`RoutingTable`]).
    pub fn handle_peer_up(&mut self, now: Instant, peer: NodeId) {
        self.seen_verified(now, peer);
    }

    /// The driver tells us `peer` is unreachable: our requests to it fail at once, so lookups move on,
    /// and it leaves the routing table (a verified replacement takes its place).
    pub fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        let change = self.table.remove(now, &peer);
        self.apply_change(change);
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(p) = self.take_pending(id) {
                self.request_failed(now, p);
            }
        }
    }

    /// Bytes from `from`, which the transport vouches for. A request is answered at once and counts as
    /// `from` being seen: it becomes or stays a verified entry, since it reached us. A response is
    /// accepted only from the peer asked, for an outstanding request. Anything malformed, oversized or
    /// unexpected is dropped and counted in [`Stats`].
    pub fn handle_message(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        self.stats.messages_received += 1;
        if from == self.local_id {
            self.stats.dropped_from_self += 1;
            return;
        }
        let message = match Message::decode(bytes, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                let counter = match e {
                    DecodeError::Oversized(_) => &mut self.stats.dropped_oversized,
                    DecodeError::Version(_) => &mut self.stats.dropped_bad_version,
                    DecodeError::Undecodable => &mut self.stats.dropped_undecodable,
                    DecodeError::Limit(_) => &mut self.stats.dropped_over_limit,
                };
                *counter += 1;
                return;
            }
        };
        match message {
            Message::Request { id, body } => self.on_request(now, from, id, body),
            Message::Response { id, body } => self.on_response(now, from, id, body),
        }
    }

    /// Runs everything due at `now`: request and lookup timeouts, record expiry, republication and
    /// bucket refresh. Call it when [`Node::poll_timeout`] says (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            if let Some(p) = self.take_pending(id) {
                self.stats.requests_timed_out += 1;
                self.request_failed(now, p);
            }
        }

        while let Some(&(deadline, id)) = self.query_deadlines.first() {
            if deadline > now {
                break;
            }
            self.lookup_done(now, id, QueryEnd::TimedOut);
        }

        self.stats.records_expired += self.store.expire(now) as u64;

        let due: Vec<NodeId> = self
            .published
            .iter()
            .filter(|(_, p)| p.next_republish <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(p) = self.published.get_mut(&key) else {
                continue;
            };
            p.record.expires = now + self.config.record_ttl;
            p.next_republish = now + self.config.republish_interval;
            let record = p.record.clone();
            let initial = self.table.lookup_candidates(&key, self.config.k);
            let kind = Kind::PutValue {
                record,
                republish: true,
            };
            let _ = self.start_query(now, kind, key, initial);
        }

        for index in self
            .table
            .due_for_refresh(now, self.config.refresh_interval)
        {
            // Marked first, so that a refresh refused for lack of query slots waits a full interval
            // instead of being retried at every call.
            self.table.mark_refreshed(now, index);
            let mut random = [0u8; ID_LEN];
            self.rng.fill_bytes(&mut random);
            let target = self.local_id.random_in_bucket(index, random);
            let initial = self.table.lookup_candidates(&target, self.config.k);
            let _ = self.start_query(now, Kind::Refresh, target, initial);
        }
    }

    /// The next output, if any. Drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called; `None` when nothing is scheduled. Ask again
    /// after every input: inputs change it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let requests = self.deadlines.first().map(|(t, _)| *t);
        let queries = self.query_deadlines.first().map(|(t, _)| *t);
        let republish = self.published.values().map(|p| p.next_republish).min();
        let refresh = self.table.next_refresh(self.config.refresh_interval);
        [
            requests,
            queries,
            self.store.next_expiry(),
            republish,
            refresh,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- internals -----

    fn new_query_id(&mut self) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        id
    }

    fn emit(&mut self, event: Event) {
        self.push_output(Output::Event(event));
    }

    fn push_output(&mut self, output: Output) {
        if self.outputs.len() >= self.config.max_outputs {
            self.stats.outputs_dropped += 1;
            return;
        }
        if matches!(output, Output::Send { .. }) {
            self.stats.messages_sent += 1;
        }
        self.outputs.push_back(output);
    }

    fn send(&mut self, to: NodeId, message: &Message) {
        let bytes = message.encode();
        // Config::check guarantees room for the largest value and the longest contact list.
        debug_assert!(bytes.len() <= self.config.max_message_bytes);
        self.push_output(Output::Send { to, bytes });
    }

    fn send_request(&mut self, now: Instant, peer: NodeId, body: Request, purpose: Purpose) {
        let id = loop {
            let id = self.rng.next_u64();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let deadline = now + self.config.request_timeout;
        self.pending.insert(
            id,
            Pending {
                peer,
                deadline,
                purpose,
            },
        );
        self.deadlines.insert((deadline, id));
        self.send(peer, &Message::Request { id, body });
    }

    fn take_pending(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.deadlines.remove(&(p.deadline, id));
        Some(p)
    }

    /// `peer` proved reachable: update the table, ping a bucket's least recently seen entry if needed.
    fn seen_verified(&mut self, now: Instant, peer: NodeId) {
        match self.table.insert_verified(now, peer) {
            Insert::Local | Insert::Refreshed | Insert::Pending { ping: None } => {}
            Insert::Added { bucket, evicted } => {
                if let Some(old) = evicted {
                    self.emit(Event::PeerRemoved { peer: old });
                }
                self.emit(Event::PeerAdded { peer, bucket });
            }
            Insert::Pending { ping: Some(lrs) } => {
                self.send_request(now, lrs, Request::Ping, Purpose::EvictionPing);
            }
        }
    }

    fn apply_change(&mut self, change: Change) {
        if let Some(peer) = change.removed {
            self.emit(Event::PeerRemoved { peer });
        }
        if let Some(peer) = change.added
            && let Some(bucket) = self.local_id.bucket_index(&peer)
        {
            self.emit(Event::PeerAdded { peer, bucket });
        }
    }

    fn local_record(&self, now: Instant, key: &NodeId) -> Option<Record> {
        if let Some(p) = self.published.get(key) {
            return Some(p.record.clone());
        }
        self.store.get(key, now).cloned()
    }

    /// The `k` verified contacts closest to `target`, leaving out the requester, who knows itself.
    fn closest_for(&self, target: &NodeId, requester: &NodeId) -> Vec<NodeId> {
        let k = self.config.k;
        let mut closest = self.table.closest_unordered(target, k + 1);
        match closest.iter().position(|id| id == requester) {
            Some(i) => {
                closest.swap_remove(i);
            }
            // Without the requester among them, the k + 1 closest hold one too many: drop the
            // farthest, since the set is unordered.
            None if closest.len() > k => {
                let farthest = closest
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, id)| target.distance_key(id))
                    .map(|(i, _)| i);
                if let Some(i) = farthest {
                    closest.swap_remove(i);
                }
            }
            None => {}
        }
        closest
    }

    fn on_request(&mut self, now: Instant, from: NodeId, id: u64, body: Request) {
        self.seen_verified(now, from);
        let body = match body {
            Request::Ping => Response::Pong,
            Request::FindNode { target } => Response::Nodes {
                closer: self.closest_for(&target, &from),
            },
            Request::FindValue { key } => match self.local_record(now, &key) {
                Some(record) => Response::Value { record },
                None => Response::Nodes {
                    closer: self.closest_for(&key, &from),
                },
            },
            Request::Store { record } => Response::Stored {
                ok: self.accept_store(now, from, record),
            },
        };
        self.stats.requests_answered += 1;
        self.send(from, &Message::Response { id, body });
    }

    fn accept_store(&mut self, now: Instant, from: NodeId, mut record: Record) -> bool {
        // Only publishers store (nobody replicates others' records here), so a record naming another
        // publisher is a forgery; an expired one is useless.
        if record.publisher != from || record.is_expired(now) {
            self.stats.stores_refused += 1;
            return false;
        }
        // A far-future expiry would pin the record: no record lives longer than our TTL.
        record.expires = record.expires.min(now + self.config.record_ttl);
        match self.store.put(record, self.config.max_records) {
            Ok(()) => {
                self.stats.stores_accepted += 1;
                true
            }
            Err(_) => {
                self.stats.stores_refused += 1;
                false
            }
        }
    }

    fn on_response(&mut self, now: Instant, from: NodeId, id: u64, body: Response) {
        let Some(p) = self.pending.get(&id) else {
            self.stats.dropped_unmatched += 1;
            return;
        };
        if p.peer != from {
            // Keep waiting: the peer asked may still answer.
            self.stats.dropped_wrong_peer += 1;
            return;
        }
        let Some(p) = self.take_pending(id) else {
            return;
        };
        match (p.purpose, body) {
            (Purpose::EvictionPing, Response::Pong) => {
                self.seen_verified(now, from);
                let change = self.table.ping_ended(now, &from, true);
                self.apply_change(change);
            }
            (Purpose::Lookup(q), Response::Nodes { closer }) => {
                self.seen_verified(now, from);
                for c in &closer {
                    self.table.insert_unverified(now, *c);
                }
                if let Some(query) = self.queries.get_mut(&q)
                    && matches!(query.phase, Phase::Lookup)
                {
                    query.lookup.on_success(&from, &closer);
                    self.drive(now, q);
                }
            }
            (Purpose::Lookup(q), Response::Value { record })
                if self.value_fits(now, q, &record) =>
            {
                self.seen_verified(now, from);
                self.value_found(q, from, record);
            }
            (Purpose::Store(q), Response::Stored { ok }) => {
                self.seen_verified(now, from);
                self.store_answered(now, q, ok);
            }
            _ => {
                self.stats.dropped_unexpected += 1;
                self.request_failed(now, p);
            }
        }
    }

    /// Whether `record` answers the `get_value` query `q` (a late answer to a finished one also fits).
    fn value_fits(&self, now: Instant, q: QueryId, record: &Record) -> bool {
        if record.is_expired(now) {
            return false;
        }
        match self.queries.get(&q) {
            Some(query) => {
                matches!(query.kind, Kind::GetValue) && record.key == query.lookup.target()
            }
            None => true,
        }
    }

    fn value_found(&mut self, q: QueryId, from: NodeId, record: Record) {
        let Some(query) = self.queries.remove(&q) else {
            return;
        };
        self.query_deadlines.remove(&(query.deadline, q));
        self.cancel_requests(q);
        self.emit(Event::QueryFinished {
            id: q,
            result: QueryResult::GetValue {
                key: query.lookup.target(),
                record: Some(record),
            },
            end: QueryEnd::Completed,
            rounds: query.lookup.hop_of(&from),
            requests: query.requests,
        });
    }

    /// Forgets the outstanding requests of a finished query, so that outstanding requests stay bounded
    /// by the running queries; late answers to them count as unmatched.
    fn cancel_requests(&mut self, q: QueryId) {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.purpose, Purpose::Lookup(x) | Purpose::Store(x) if x == q))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.take_pending(id);
        }
    }

    fn store_answered(&mut self, now: Instant, q: QueryId, ok: bool) {
        let Some(query) = self.queries.get_mut(&q) else {
            return;
        };
        if let Phase::Storing {
            pending, stored, ..
        } = &mut query.phase
        {
            *pending = pending.saturating_sub(1);
            if ok {
                *stored += 1;
            }
        }
        self.drive(now, q);
    }

    fn request_failed(&mut self, now: Instant, p: Pending) {
        match p.purpose {
            Purpose::EvictionPing => {
                let change = self.table.ping_ended(now, &p.peer, false);
                self.apply_change(change);
            }
            Purpose::Lookup(q) => {
                let change = self.table.request_failed(now, &p.peer);
                self.apply_change(change);
                if let Some(query) = self.queries.get_mut(&q)
                    && matches!(query.phase, Phase::Lookup)
                {
                    query.lookup.on_failure(&p.peer);
                    self.drive(now, q);
                }
            }
            Purpose::Store(q) => {
                let change = self.table.request_failed(now, &p.peer);
                self.apply_change(change);
                self.store_answered(now, q, false);
            }
        }
    }

    fn start_query(
        &mut self,
        now: Instant,
        kind: Kind,
        target: NodeId,
        initial: Vec<NodeId>,
    ) -> QueryId {
        let id = self.new_query_id();
        if self.queries.len() >= self.config.max_queries {
            self.stats.queries_rejected += 1;
            if let Some(result) = empty_result(&kind, target) {
                self.emit(Event::QueryFinished {
                    id,
                    result,
                    end: QueryEnd::Rejected,
                    rounds: 0,
                    requests: 0,
                });
            }
            return id;
        }
        self.stats.queries_started += 1;
        self.table.touch_lookup(now, &target);
        let c = &self.config;
        let lookup = Lookup::new(
            target,
            self.local_id,
            initial,
            c.k,
            c.alpha,
            c.max_lookup_candidates,
        );
        let deadline = now + c.query_timeout;
        self.query_deadlines.insert((deadline, id));
        self.queries.insert(
            id,
            Query {
                kind,
                lookup,
                deadline,
                requests: 0,
                phase: Phase::Lookup,
            },
        );
        self.drive(now, id);
        id
    }

    /// Sends what query `q` needs next and ends it when it is done.
    fn drive(&mut self, now: Instant, q: QueryId) {
        let Some(query) = self.queries.get_mut(&q) else {
            return;
        };
        match query.phase {
            Phase::Lookup => {
                let mut ask = Vec::new();
                let done = query.lookup.poll(&mut ask);
                let target = query.lookup.target();
                let request = match query.kind {
                    Kind::GetValue => Request::FindValue { key: target },
                    _ => Request::FindNode { target },
                };
                query.requests = query.requests.saturating_add(ask.len() as u32);
                for peer in ask {
                    self.send_request(now, peer, request.clone(), Purpose::Lookup(q));
                }
                if done {
                    self.lookup_done(now, q, QueryEnd::Completed);
                }
            }
            Phase::Storing { pending: 0, .. } => self.finish(q, QueryEnd::Completed),
            Phase::Storing { .. } => {}
        }
    }

    /// The lookup phase of `q` ended: a `put_value` goes on to store, anything else finishes.
    fn lookup_done(&mut self, now: Instant, q: QueryId, end: QueryEnd) {
        let Some(query) = self.queries.get_mut(&q) else {
            return;
        };
        self.query_deadlines.remove(&(query.deadline, q));
        let Kind::PutValue { record, .. } = &query.kind else {
            self.finish(q, end);
            return;
        };
        let record = record.clone();
        let (closest, rounds) = query.lookup.result();
        query.requests = query.requests.saturating_add(closest.len() as u32);
        query.phase = Phase::Storing {
            pending: closest.len(),
            stored: 0,
            rounds,
            end,
        };
        if closest.is_empty() {
            self.finish(q, end);
            return;
        }
        for peer in closest {
            let body = Request::Store {
                record: record.clone(),
            };
            self.send_request(now, peer, body, Purpose::Store(q));
        }
    }

    /// Removes `q` and reports its result; `lookup_end` is why its lookup ended (a `put_value`
    /// reports why its lookup phase ended instead).
    fn finish(&mut self, q: QueryId, lookup_end: QueryEnd) {
        let Some(query) = self.queries.remove(&q) else {
            return;
        };
        self.query_deadlines.remove(&(query.deadline, q));
        self.cancel_requests(q);
        let (closest, lookup_rounds) = query.lookup.result();
        let target = query.lookup.target();
        let (result, end, rounds) = match (query.kind, query.phase) {
            (Kind::Refresh, _)
            | (
                Kind::PutValue {
                    republish: true, ..
                },
                _,
            ) => return,
            (Kind::FindNode, Phase::Lookup) => (
                QueryResult::FindNode { target, closest },
                lookup_end,
                lookup_rounds,
            ),
            (Kind::Bootstrap, Phase::Lookup) => (
                QueryResult::Bootstrap { closest },
                lookup_end,
                lookup_rounds,
            ),
            (Kind::GetValue, Phase::Lookup) => (
                QueryResult::GetValue {
                    key: target,
                    record: None,
                },
                lookup_end,
                lookup_rounds,
            ),
            (
                Kind::PutValue { .. },
                Phase::Storing {
                    stored,
                    rounds,
                    end,
                    ..
                },
            ) => (
                QueryResult::PutValue {
                    key: target,
                    stored,
                },
                end,
                rounds,
            ),
            // A put always stores before it finishes; a lookup never stores.
            (Kind::PutValue { .. }, Phase::Lookup) | (_, Phase::Storing { .. }) => return,
        };
        self.emit(Event::QueryFinished {
            id: q,
            result,
            end,
            rounds,
            requests: query.requests,
        });
    }
}

/// The result of a query that ran no request, `None` for the node's own queries.
fn empty_result(kind: &Kind, target: NodeId) -> Option<QueryResult> {
    match kind {
        Kind::FindNode => Some(QueryResult::FindNode {
            target,
            closest: Vec::new(),
        }),
        Kind::Bootstrap => Some(QueryResult::Bootstrap {
            closest: Vec::new(),
        }),
        Kind::GetValue => Some(QueryResult::GetValue {
            key: target,
            record: None,
        }),
        Kind::PutValue {
            republish: false, ..
        } => Some(QueryResult::PutValue {
            key: target,
            stored: 0,
        }),
        Kind::Refresh
        | Kind::PutValue {
            republish: true, ..
        } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn id(n: u32) -> NodeId {
        NodeId::hash(n.to_be_bytes())
    }

    fn small() -> Config {
        Config {
            k: 2,
            alpha: 1,
            max_lookup_candidates: 8,
            ..Config::default()
        }
    }

    /// Drains `node`: the messages it sent (decoded) and its events.
    fn drain(node: &mut Node) -> (Vec<(NodeId, Message)>, Vec<Event>) {
        let limits = Limits::from_config(node.config());
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        while let Some(o) = node.poll_output() {
            match o {
                Output::Send { to, bytes } => {
                    sent.push((to, Message::decode(&bytes, &limits).expect("valid")))
                }
                Output::Event(e) => events.push(e),
            }
        }
        (sent, events)
    }

    fn respond(node: &mut Node, now: Instant, from: NodeId, id: u64, body: Response) {
        node.handle_message(now, from, &Message::Response { id, body }.encode());
    }

    fn request_id(m: &Message) -> u64 {
        match m {
            Message::Request { id, .. } => *id,
            Message::Response { .. } => panic!("expected a request, got {m:?}"),
        }
    }

    fn finished(events: &[Event]) -> Option<(QueryResult, QueryEnd, u32, u32)> {
        events.iter().find_map(|e| match e {
            Event::QueryFinished {
                result,
                end,
                rounds,
                requests,
                ..
            } => Some((result.clone(), *end, *rounds, *requests)),
            _ => None,
        })
    }

    #[test]
    fn garbage_is_dropped_and_counted() {
        let mut node = Node::new(id(0), Config::default(), 1);
        node.handle_message(t(0), id(1), &[]);
        node.handle_message(t(0), id(1), &[9, 9]);
        node.handle_message(t(0), id(1), &[1, 200, 3]);
        node.handle_message(t(0), id(1), &vec![1; 100_000]);
        node.handle_message(
            t(0),
            id(0),
            &Message::Request {
                id: 1,
                body: Request::Ping,
            }
            .encode(),
        );
        let s = node.stats();
        assert_eq!(s.dropped_bad_version, 2);
        assert_eq!(s.dropped_undecodable, 1);
        assert_eq!(s.dropped_oversized, 1);
        assert_eq!(s.dropped_from_self, 1);
        assert!(node.poll_output().is_none());
        assert!(node.routing_table().is_empty());
    }

    #[test]
    fn requests_are_answered_and_make_the_requester_verified() {
        let mut node = Node::new(id(0), Config::default(), 1);
        node.handle_message(
            t(0),
            id(1),
            &Message::Request {
                id: 42,
                body: Request::Ping,
            }
            .encode(),
        );
        let (sent, events) = drain(&mut node);
        assert_eq!(
            sent,
            vec![(
                id(1),
                Message::Response {
                    id: 42,
                    body: Response::Pong
                }
            )]
        );
        assert!(matches!(events[..], [Event::PeerAdded { peer, .. }] if peer == id(1)));
        assert!(node.routing_table().contains(&id(1)));
    }

    #[test]
    fn unmatched_and_spoofed_responses_are_dropped() {
        let mut node = Node::new(id(0), small(), 1);
        node.add_contact(t(0), id(1));
        let q = node.find_node(t(0), id(99));
        let (sent, _) = drain(&mut node);
        assert_eq!(sent.len(), 1);
        let (to, request) = &sent[0];
        assert_eq!(*to, id(1));
        let rid = request_id(request);
        let nodes = Response::Nodes {
            closer: vec![id(2)],
        };
        // Wrong id.
        respond(&mut node, t(10), id(1), rid.wrapping_add(1), nodes.clone());
        // Right id, wrong peer: dropped, and the real answer is still awaited.
        respond(&mut node, t(10), id(3), rid, nodes.clone());
        assert_eq!(node.stats().dropped_unmatched, 1);
        assert_eq!(node.stats().dropped_wrong_peer, 1);
        assert!(!node.routing_table().contains(&id(3)));
        // The right answer is taken; a duplicate is unmatched.
        respond(&mut node, t(20), id(1), rid, nodes.clone());
        respond(&mut node, t(20), id(1), rid, nodes);
        assert_eq!(node.stats().dropped_unmatched, 2);
        assert!(node.routing_table().contains(&id(1)));
        assert!(node.is_running(q));
        // id(2) is only heard of: asked, but not an entry.
        let (sent, _) = drain(&mut node);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, id(2));
        assert!(!node.routing_table().contains(&id(2)));
    }

    #[test]
    fn wrong_kind_of_answer_fails_the_request() {
        let mut node = Node::new(id(0), small(), 1);
        node.add_contact(t(0), id(1));
        let _ = node.find_node(t(0), id(99));
        let (sent, _) = drain(&mut node);
        respond(
            &mut node,
            t(10),
            id(1),
            request_id(&sent[0].1),
            Response::Pong,
        );
        assert_eq!(node.stats().dropped_unexpected, 1);
        let (_, events) = drain(&mut node);
        let (result, end, _, requests) = finished(&events).expect("finished");
        assert_eq!(
            result,
            QueryResult::FindNode {
                target: id(99),
                closest: vec![]
            }
        );
        assert_eq!((end, requests), (QueryEnd::Completed, 1));
    }

    #[test]
    fn request_timeout_moves_the_lookup_on_and_query_timeout_ends_it() {
        let config = Config {
            query_timeout: Duration::from_secs(5),
            k: 3,
            ..small()
        };
        let mut node = Node::new(id(0), config, 1);
        for n in 1..=5 {
            node.add_contact(t(0), id(n));
        }
        let _ = node.find_node(t(0), id(99));
        let (sent, _) = drain(&mut node);
        assert_eq!(sent.len(), 1, "alpha = 1");
        assert_eq!(node.poll_timeout(), Some(t(2_000)));
        node.handle_timeout(t(1_999));
        assert!(drain(&mut node).0.is_empty());
        node.handle_timeout(t(2_000));
        assert_eq!(node.stats().requests_timed_out, 1);
        let (sent2, _) = drain(&mut node);
        assert_eq!(sent2.len(), 1);
        assert_ne!(sent2[0].0, sent[0].0, "moves on to the next candidate");
        node.handle_timeout(t(4_000));
        let _ = drain(&mut node);
        // Overall timeout at 5 s, before the third request's 6 s.
        assert_eq!(node.poll_timeout(), Some(t(5_000)));
        node.handle_timeout(t(5_000));
        let (_, events) = drain(&mut node);
        let (_, end, _, requests) = finished(&events).expect("finished");
        assert_eq!((end, requests), (QueryEnd::TimedOut, 3));
    }

    #[test]
    fn peer_down_fails_its_requests_at_once() {
        let mut node = Node::new(id(0), small(), 1);
        node.handle_peer_up(t(0), id(1));
        node.add_contact(t(0), id(2));
        let _ = node.find_node(t(0), id(1));
        let (sent, _) = drain(&mut node);
        assert_eq!(
            sent[0].0,
            id(1),
            "the verified contact is the target itself"
        );
        node.handle_peer_down(t(5), id(1));
        assert!(!node.routing_table().contains(&id(1)));
        let (sent, events) = drain(&mut node);
        assert!(events.contains(&Event::PeerRemoved { peer: id(1) }));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, id(2));
    }

    /// Fills bucket 159 of a node with k = 2 and returns the node and the ids in it.
    fn full_far_bucket() -> (Node, Vec<NodeId>) {
        let me = NodeId::from_bytes([0; ID_LEN]);
        let far = |n: u8| {
            let mut b = [0u8; ID_LEN];
            b[0] = 0x80;
            b[ID_LEN - 1] = n;
            NodeId::from_bytes(b)
        };
        let mut node = Node::new(me, small(), 1);
        node.handle_peer_up(t(0), far(1));
        node.handle_peer_up(t(1), far(2));
        let _ = drain(&mut node);
        (node, vec![far(1), far(2), far(3)])
    }

    #[test]
    fn full_bucket_pings_and_evicts_the_silent() {
        let (mut node, ids) = full_far_bucket();
        node.handle_peer_up(t(2), ids[2]);
        let (sent, events) = drain(&mut node);
        assert!(events.is_empty(), "the newcomer waits");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, ids[0], "least recently seen is pinged");
        assert!(matches!(
            sent[0].1,
            Message::Request {
                body: Request::Ping,
                ..
            }
        ));
        node.handle_timeout(t(2) + Duration::from_secs(2));
        let (_, events) = drain(&mut node);
        assert_eq!(
            events,
            vec![
                Event::PeerRemoved { peer: ids[0] },
                Event::PeerAdded {
                    peer: ids[2],
                    bucket: 159
                }
            ]
        );
        assert!(node.routing_table().contains(&ids[2]));
        assert_eq!(node.routing_table().len(), 2);
    }

    #[test]
    fn full_bucket_keeps_the_pinged_if_it_answers() {
        let (mut node, ids) = full_far_bucket();
        node.handle_peer_up(t(2), ids[2]);
        let (sent, _) = drain(&mut node);
        respond(
            &mut node,
            t(3),
            ids[0],
            request_id(&sent[0].1),
            Response::Pong,
        );
        node.handle_timeout(t(10_000));
        let (_, events) = drain(&mut node);
        assert!(events.is_empty());
        let table = node.routing_table();
        assert!(table.contains(&ids[0]) && table.contains(&ids[1]));
        assert!(!table.contains(&ids[2]));
        let order: Vec<_> = table
            .bucket(159)
            .expect("bucket")
            .entries()
            .iter()
            .map(|e| e.id())
            .collect();
        assert_eq!(
            order,
            vec![ids[1], ids[0]],
            "the pinged is now most recently seen"
        );
    }

    fn store_request(node: &mut Node, now: Instant, from: NodeId, record: Record) -> bool {
        node.handle_message(
            now,
            from,
            &Message::Request {
                id: 7,
                body: Request::Store { record },
            }
            .encode(),
        );
        let (sent, _) = drain(node);
        match &sent[..] {
            [
                (
                    _,
                    Message::Response {
                        body: Response::Stored { ok },
                        ..
                    },
                ),
            ] => *ok,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn find_value(node: &mut Node, now: Instant, key: NodeId) -> Response {
        node.handle_message(
            now,
            id(50),
            &Message::Request {
                id: 8,
                body: Request::FindValue { key },
            }
            .encode(),
        );
        let (mut sent, _) = drain(node);
        match sent.pop() {
            Some((_, Message::Response { body, .. })) => body,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn stored_records_are_bounded_checked_and_expire() {
        let config = Config {
            max_records: 1,
            ..Config::default()
        };
        let ttl = config.record_ttl;
        let mut node = Node::new(id(0), config, 1);
        let record = |key: u32, publisher: NodeId, expires: Instant| Record {
            key: id(key),
            value: vec![1, 2, 3],
            publisher,
            expires,
        };
        let far_future = t(0) + ttl * 10;
        // The TTL caps a longer expiry.
        assert!(store_request(
            &mut node,
            t(0),
            id(1),
            record(100, id(1), far_future)
        ));
        assert_eq!(node.records().next().map(|r| r.expires), Some(t(0) + ttl));
        // Full for a new key, but the same key may be replaced.
        assert!(!store_request(
            &mut node,
            t(0),
            id(1),
            record(101, id(1), far_future)
        ));
        assert!(store_request(
            &mut node,
            t(1),
            id(2),
            record(100, id(2), far_future)
        ));
        // A record for another publisher, or already expired, is refused.
        assert!(!store_request(
            &mut node,
            t(2),
            id(3),
            record(100, id(4), far_future)
        ));
        assert!(!store_request(
            &mut node,
            t(2),
            id(3),
            record(100, id(3), t(2))
        ));
        assert_eq!(node.stats().stores_accepted, 2);
        assert_eq!(node.stats().stores_refused, 3);

        assert!(
            matches!(find_value(&mut node, t(3), id(100)), Response::Value { record } if record.publisher == id(2))
        );
        let expiry = t(1) + ttl;
        assert_eq!(node.poll_timeout().map(|d| d <= expiry), Some(true));
        // Expired: not served even before the timer runs, then removed.
        assert!(matches!(
            find_value(&mut node, expiry, id(100)),
            Response::Nodes { .. }
        ));
        node.handle_timeout(expiry);
        assert_eq!(node.records().count(), 0);
        assert_eq!(node.stats().records_expired, 1);
    }

    #[test]
    fn put_value_stores_at_the_closest_and_republishes() {
        let config = small();
        let republish = config.republish_interval;
        let mut node = Node::new(id(0), config, 1);
        node.handle_peer_up(t(0), id(1));
        node.handle_peer_up(t(0), id(2));
        let _ = drain(&mut node);
        let key = id(77);
        let q = node.put_value(t(0), key, b"hello".to_vec());
        // Lookup: each contact answers with nothing new.
        for _ in 0..2 {
            let (sent, _) = drain(&mut node);
            for (to, m) in sent {
                respond(
                    &mut node,
                    t(10),
                    to,
                    request_id(&m),
                    Response::Nodes { closer: vec![] },
                );
            }
        }
        let (sent, _) = drain(&mut node);
        assert_eq!(sent.len(), 2, "a STORE to each of the k closest");
        for (to, m) in &sent {
            let Message::Request {
                id: rid,
                body: Request::Store { record },
            } = m
            else {
                panic!("expected STORE, got {m:?}");
            };
            assert_eq!((record.key, record.publisher), (key, id(0)));
            let ok = *to == id(1);
            respond(&mut node, t(20), *to, *rid, Response::Stored { ok });
        }
        let (_, events) = drain(&mut node);
        let (result, end, rounds, requests) = finished(&events).expect("finished");
        assert_eq!(result, QueryResult::PutValue { key, stored: 1 });
        assert_eq!((end, rounds, requests), (QueryEnd::Completed, 1, 4));
        assert!(!node.is_running(q));
        // Our own record is served locally.
        let get = node.get_value(t(30), key);
        let (_, events) = drain(&mut node);
        assert!(
            matches!(&events[..], [Event::QueryFinished { id, rounds: 0, requests: 0, result: QueryResult::GetValue { record: Some(_), .. }, .. }] if *id == get)
        );
        // Republished after the interval, with a fresh expiry and no event.
        let at = t(0) + republish;
        assert!(node.poll_timeout().is_some_and(|d| d <= at));
        node.handle_timeout(at);
        let (sent, events) = drain(&mut node);
        assert!(!sent.is_empty());
        assert!(events.is_empty());
        assert_eq!(
            node.published().next().map(|r| r.expires),
            Some(at + node.config().record_ttl)
        );
    }

    #[test]
    fn a_record_under_another_key_is_refused() {
        let mut node = Node::new(id(0), small(), 1);
        node.handle_peer_up(t(0), id(1));
        let _ = drain(&mut node);
        let key = id(77);
        let q = node.get_value(t(0), key);
        let (sent, _) = drain(&mut node);
        assert!(matches!(
            sent[0].1,
            Message::Request {
                body: Request::FindValue { .. },
                ..
            }
        ));
        respond(
            &mut node,
            t(1),
            id(1),
            request_id(&sent[0].1),
            Response::Nodes {
                closer: vec![id(2)],
            },
        );
        let (sent, _) = drain(&mut node);
        assert_eq!(sent[0].0, id(2));
        // A record under another key is not an answer.
        let wrong = Record {
            key: id(78),
            value: vec![],
            publisher: id(9),
            expires: t(100_000),
        };
        respond(
            &mut node,
            t(2),
            id(2),
            request_id(&sent[0].1),
            Response::Value { record: wrong },
        );
        assert_eq!(node.stats().dropped_unexpected, 1);
        // id(2) failed, id(1) answered without the value: nothing left to ask.
        let (_, events) = drain(&mut node);
        let (result, end, _, _) = finished(&events).expect("finished");
        assert_eq!(result, QueryResult::GetValue { key, record: None });
        assert_eq!(end, QueryEnd::Completed);
        assert!(!node.is_running(q));
    }

    #[test]
    fn get_value_found_reports_the_hop_of_the_holder() {
        let mut node = Node::new(id(0), small(), 1);
        node.handle_peer_up(t(0), id(1));
        let _ = drain(&mut node);
        let key = id(77);
        let q = node.get_value(t(0), key);
        let (sent, _) = drain(&mut node);
        respond(
            &mut node,
            t(1),
            id(1),
            request_id(&sent[0].1),
            Response::Nodes {
                closer: vec![id(2)],
            },
        );
        let (sent, _) = drain(&mut node);
        let record = Record {
            key,
            value: b"v".to_vec(),
            publisher: id(9),
            expires: t(100_000),
        };
        respond(
            &mut node,
            t(2),
            id(2),
            request_id(&sent[0].1),
            Response::Value {
                record: record.clone(),
            },
        );
        let (_, events) = drain(&mut node);
        assert_eq!(
            events.last(),
            Some(&Event::QueryFinished {
                id: q,
                result: QueryResult::GetValue {
                    key,
                    record: Some(record)
                },
                end: QueryEnd::Completed,
                rounds: 2,
                requests: 2,
            })
        );
    }

    #[test]
    fn idle_buckets_are_refreshed() {
        let config = small();
        let interval = config.refresh_interval;
        let mut node = Node::new(id(0), config, 1);
        node.handle_peer_up(t(0), id(1));
        let _ = drain(&mut node);
        let bucket = id(0).bucket_index(&id(1)).expect("not us");
        assert_eq!(node.poll_timeout(), Some(t(0) + interval));
        node.handle_timeout(t(0) + interval);
        let (sent, events) = drain(&mut node);
        assert!(events.is_empty(), "refreshes report nothing");
        let [
            (
                to,
                Message::Request {
                    body: Request::FindNode { target },
                    ..
                },
            ),
        ] = &sent[..]
        else {
            panic!("expected one FIND_NODE, got {sent:?}");
        };
        assert_eq!(*to, id(1));
        assert_eq!(
            id(0).bucket_index(target),
            Some(bucket),
            "a random id in the idle bucket"
        );
        // A lookup into the bucket postpones its next refresh.
        let later = t(0) + interval + interval / 2;
        let _ = node.find_node(later, id(1));
        let b = node.routing_table().bucket(bucket).expect("bucket");
        assert_eq!(b.last_lookup(), later);
    }

    #[test]
    fn too_many_queries_are_rejected() {
        let config = Config {
            max_queries: 1,
            ..small()
        };
        let mut node = Node::new(id(0), config, 1);
        node.add_contact(t(0), id(1));
        let a = node.find_node(t(0), id(5));
        let b = node.find_node(t(0), id(6));
        assert_ne!(a, b);
        let (_, events) = drain(&mut node);
        assert!(
            matches!(&events[..], [Event::QueryFinished { id, end: QueryEnd::Rejected, .. }] if *id == b)
        );
        assert_eq!(node.stats().queries_rejected, 1);
    }

    #[test]
    fn output_queue_is_bounded() {
        let config = Config {
            max_outputs: 2,
            ..Config::default()
        };
        let mut node = Node::new(id(0), config, 1);
        for n in 1..=5 {
            node.handle_message(
                t(0),
                id(n),
                &Message::Request {
                    id: 1,
                    body: Request::Ping,
                }
                .encode(),
            );
        }
        // Each ping yields an event (new contact) and a pong: 10 outputs, 2 kept.
        let (sent, events) = drain(&mut node);
        assert_eq!(sent.len() + events.len(), 2);
        assert_eq!(node.stats().outputs_dropped, 8);
    }

    #[test]
    fn same_seed_same_run() {
        let run = |seed| {
            let mut node = Node::new(id(0), small(), seed);
            node.add_contact(t(0), id(1));
            let _ = node.find_node(t(0), id(9));
            drain(&mut node).0
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6), "request ids come from the seed");
    }
}
