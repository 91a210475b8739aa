//! The Kademlia node: the state machine a driver feeds with inputs and drains of outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kbucket::{Change, Insert, RoutingTable};
use crate::query::{Kind, Lookup, Phase, Query};
use crate::record::{RecordStore, StoreError, StoreLimits, Verify};
use crate::wire::{DecodeError, Limits, Message, Request, Response};
use crate::{Config, ID_LEN, Instant, NodeId, QueryEnd, QueryId, QueryResult, Record};

/// Something the driver must do, returned by [`Node::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Deliver `bytes` to the node `to`; it hands them to its own [`Node::handle_message`] with our id
    /// as `from`. Delivery may fail silently: requests time out.
    Transmit {
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
#[non_exhaustive]
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
    /// [`Output::Transmit`]s queued.
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
    /// Records whose signature is not valid, in a STORE (refused) or a FIND_VALUE answer (discarded:
    /// the request counts as failed and the lookup goes on).
    pub records_bad_signature: u64,
    /// Requests that got no answer within `request_timeout`.
    pub requests_timed_out: u64,
    /// STOREs accepted.
    pub stores_accepted: u64,
    /// STOREs refused, for any reason: the ones counted below, a record expired or sent by a node
    /// other than its publisher, or a bad signature.
    pub stores_refused: u64,
    /// STOREs refused as stale: a record under the key with a higher `seq` is held, or with the same
    /// `seq` and other contents.
    pub stores_stale: u64,
    /// STOREs refused because the publisher holds `max_records_per_publisher` records or
    /// `max_bytes_per_publisher` bytes here.
    pub stores_over_quota: u64,
    /// STOREs refused because the store holds `max_records` records or `max_store_bytes` bytes.
    pub stores_full: u64,
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
    store_limits: StoreLimits,
    /// Checks the signatures of the records other nodes send.
    verify: Verify,
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
    /// [`Config::validate`] tells which beforehand, as an error.
    pub fn new(local_id: NodeId, config: Config, seed: u64) -> Self {
        Self::with_verifier(local_id, config, seed, p2pmesh_base::verify)
    }

    /// [`Node::new`] with record signatures checked by `verify` (a simulator may memoize
    /// [`p2pmesh_base::verify`] across the nodes of one process; every node still checks every record).
    ///
    /// # Panics
    /// As [`Node::new`].
    pub fn with_verifier(local_id: NodeId, config: Config, seed: u64, verify: Verify) -> Self {
        config.check();
        Self {
            local_id,
            limits: Limits::from_config(&config),
            store_limits: StoreLimits::from_config(&config),
            verify,
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

    /// The unexpired record under `key` that this node stores for its publisher or publishes itself.
    pub fn record(&self, now: Instant, key: &NodeId) -> Option<Record> {
        self.local_record(now, key)
    }

    /// Whether this node stores an unexpired record under `key` for its publisher.
    pub fn holds(&self, now: Instant, key: &NodeId) -> bool {
        self.store.get(key, now).is_some()
    }

    /// Drops the record under `key` from the store if `public_key` published it (a publisher that
    /// learns its name is taken forgets its own copy). Returns whether it did.
    pub fn forget_record(&mut self, key: &NodeId, public_key: &[u8; 32]) -> bool {
        if self
            .store
            .get(key, Instant::ZERO)
            .is_none_or(|r| &r.public_key != public_key)
        {
            return false;
        }
        self.store.remove(key).is_some()
    }

    /// Stores `record` for its publisher, whoever hands it over (a node on the way of a put, a
    /// replica handing it on after churn): checked like a STORE, that is expiry, size and signature
    /// (with the node's verifier), its expiry capped at `record_ttl`, then the store's rules and
    /// bounds (see [`record`](crate::record)). Counted in [`Stats`].
    pub fn store_record(&mut self, now: Instant, mut record: Record) -> Result<(), StoreError> {
        let refused = |stats: &mut Stats, e: StoreError| {
            stats.stores_refused += 1;
            match e {
                StoreError::OtherPublisher | StoreError::Stale => stats.stores_stale += 1,
                StoreError::PublisherQuota => stats.stores_over_quota += 1,
                StoreError::Full => stats.stores_full += 1,
                StoreError::Invalid => stats.records_bad_signature += 1,
                StoreError::Expired | StoreError::TooLarge => {}
            }
            Err(e)
        };
        if record.is_expired(now) {
            return refused(&mut self.stats, StoreError::Expired);
        }
        if record.value.len() > self.config.max_value_bytes {
            return refused(&mut self.stats, StoreError::TooLarge);
        }
        if !record.verify(self.verify) {
            return refused(&mut self.stats, StoreError::Invalid);
        }
        // A far-future expiry would pin the record: no record lives longer than our TTL.
        record.expires = record.expires.min(now + self.config.record_ttl);
        match self.store.put(record, &self.store_limits) {
            Ok(()) => {
                self.stats.stores_accepted += 1;
                Ok(())
            }
            Err(e) => refused(&mut self.stats, e),
        }
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

    /// Publishes `record` (made with [`Record::sign`] by this node's key): stores it at the `k` closest
    /// nodes a lookup finds ([`QueryResult::PutValue`]), and again every `republish_interval` until
    /// [`Node::unpublish`], each time with a fresh expiry of `record_ttl` (the signature does not cover
    /// the expiry). A record replaces the one published under its key; storers keep it only if its
    /// `seq` is higher than that of the record they hold (or it is the same record).
    ///
    /// # Panics
    /// If `record` is not this node's (its public key's id is not `local_id`), is not well formed, or
    /// its value is longer than [`Config::max_value_bytes`]: a caller error, no node would accept it.
    pub fn put_value(&mut self, now: Instant, mut record: Record) -> QueryId {
        assert!(
            record.value.len() <= self.config.max_value_bytes,
            "put_value: a value of {} bytes exceeds Config::max_value_bytes ({})",
            record.value.len(),
            self.config.max_value_bytes
        );
        assert!(
            record.publisher() == self.local_id && record.is_well_formed(),
            "put_value: the record is not this node's or not well formed: {record:?}"
        );
        record.expires = now + self.config.record_ttl;
        let key = record.key;
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
        if matches!(output, Output::Transmit { .. }) {
            self.stats.messages_sent += 1;
        }
        self.outputs.push_back(output);
    }

    fn send(&mut self, to: NodeId, message: &Message) {
        let bytes = message.encode();
        // Config::check guarantees room for the largest value and the longest contact list.
        debug_assert!(bytes.len() <= self.config.max_message_bytes);
        self.push_output(Output::Transmit { to, bytes });
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
}

mod lookup;
mod rpc;

#[cfg(test)]
mod tests;
