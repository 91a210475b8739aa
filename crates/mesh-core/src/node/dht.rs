//! The composer's DHT side: the commands ([`Node::put`], [`Node::get`], [`Node::remove`]), carrying out
//! what the [`Dht`](crate::dht::Dht) part decides, and answering other nodes' DHT requests, on the way
//! toward a key and where they arrive (docs/decisions.md §33, docs/protocol.md).

use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId, Record, StoreError};
use rand::RngExt as _;

use super::Node;
use crate::dht::{Answer, Finished, Published, Request, Step};
use crate::event::{Error, Event, Output, QueryId};
use crate::frame::{Frame, Payload, Routed};
use crate::router;
use crate::timer::Timer;

/// Records handed to a new link that is closer to their key than this node, at most, per link.
const HAND_OVER_MAX: usize = 64;

/// Nodes a node remembers giving a copy of one record to (newer versions follow them).
const COPIES_MAX: usize = 8;

impl Node {
    /// Publishes `value` under the name `key` in the DHT, signed by this node: the request travels
    /// over the mesh toward the name's key ([`kademlia_core::Record::key_for`]); the node where no link
    /// leads closer stores it and names the `lookup_k` nodes closest to the key it knows, which the
    /// record is then stored at. Republished every `republish_interval` of the Kademlia config until
    /// [`Node::remove`]. Ends with [`Event::PutFinished`]. A name is first come, first served: a
    /// storer keeps the record of the first publisher it saw while that record lives, and refuses
    /// others' ([`StoreError::OtherPublisher`]). Its `seq` is the larger of `now` in microseconds and
    /// one more than that of the record this node last published under the name, so that a new value
    /// replaces the old one, also after a restart.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for a value over the Kademlia config's `max_value_bytes` or a name over
    /// [`kademlia_core::MAX_SALT_BYTES`]; [`Error::EmptyValue`] (an empty value means removed);
    /// [`Error::Busy`] when `max_lookups` lookups and DHT commands run.
    pub fn put(&mut self, now: Instant, key: &[u8], value: Vec<u8>) -> Result<QueryId, Error> {
        if value.is_empty() {
            return Err(Error::EmptyValue);
        }
        let max = self.config.kademlia.max_value_bytes;
        if value.len() > max {
            return Err(Error::TooLarge {
                len: value.len(),
                max,
            });
        }
        check_name(key)?;
        self.check_capacity()?;
        let record = self.sign_record(now, key, value)?;
        let id = self.router.fresh_id();
        let mine = self.identity.public_key();
        let ours = self.dht.published.contains_key(&record.key);
        match self.local_record(now, &record.key) {
            Some(held) if held.public_key != mine => {
                // We hold the name for another publisher: refused here, nothing sent.
                self.emit(Output::Event(Event::PutFinished {
                    id: QueryId(id),
                    key: record.key,
                    stored: 0,
                    asked: 0,
                    refused: Some(StoreError::OtherPublisher),
                }));
            }
            Some(_) => self.publish(now, id, record),
            None if ours => self.publish(now, id, record),
            None => {
                // A name new to us: first a get, so that a name held elsewhere is not stored at
                // nodes that never saw its owner's record (which would split the name).
                let check = self.router.fresh_id();
                self.start_get(now, check, record.key);
                self.dht.claims.insert(check, (id, record));
            }
        }
        self.flush(now);
        Ok(QueryId(id))
    }

    /// Publishes `record` (this node's) as put `id`: kept for republication, then put.
    fn publish(&mut self, now: Instant, id: u64, record: Record) {
        let published = &mut self.dht.published;
        if !published.contains_key(&record.key)
            && published.len() >= self.config.kademlia.max_published
        {
            // The one published longest ago stops being republished (its copies expire).
            if let Some(oldest) = published
                .iter()
                .min_by_key(|(_, p)| p.record.seq)
                .map(|(k, _)| *k)
            {
                published.remove(&oldest);
            }
        }
        let holders = published
            .get(&record.key)
            .map(|p| p.holders.clone())
            .unwrap_or_default();
        published.insert(
            record.key,
            Published {
                record: record.clone(),
                next_republish: now + self.config.kademlia.republish_interval,
                holders: holders.clone(),
            },
        );
        self.start_put(now, id, record, true, &holders);
    }

    /// Looks up the record named `key` in the DHT (from this node's own records and store at once if
    /// it has it). Ends with [`Event::GetFinished`]; a record is accepted only if its key is the
    /// name's and its publisher's signature verifies.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for a name over [`kademlia_core::MAX_SALT_BYTES`]; [`Error::Busy`].
    pub fn get(&mut self, now: Instant, key: &[u8]) -> Result<QueryId, Error> {
        check_name(key)?;
        self.get_key(now, Record::key_for(key))
    }

    /// [`Node::get`] by the record's key (SHA-1 of the name, [`kademlia_core::Record::key_for`]).
    ///
    /// # Errors
    /// [`Error::Busy`] when `max_lookups` lookups and DHT commands run.
    pub fn get_key(&mut self, now: Instant, key: NodeId) -> Result<QueryId, Error> {
        let id = self.router.fresh_id();
        if let Some(record) = self.local_record(now, &key) {
            self.emit(Output::Event(Event::GetFinished {
                id: QueryId(id),
                key,
                record: Some(record),
                answered: true,
                hops: 0,
                rounds: 0,
            }));
            self.flush(now);
            return Ok(QueryId(id));
        }
        self.check_capacity()?;
        self.start_get(now, id, key);
        self.flush(now);
        Ok(QueryId(id))
    }

    fn start_get(&mut self, now: Instant, id: u64, key: NodeId) {
        let paths = self.links.up().len();
        let rng = &mut self.rng;
        let requests =
            self.dht
                .start_get(now, id, key, paths, || rng.random::<u64>(), &self.config);
        self.send_dht(now, requests);
        self.timers.set(Timer::Dht(id), self.dht.deadline(id));
    }

    /// Removes this node's record named `key`: a tombstone (an empty value, the next `seq`) replaces
    /// it at the nodes that store it, and it is no longer republished. The tombstone keeps the name
    /// this node's until it expires. Ends with [`Event::PutFinished`].
    ///
    /// # Errors
    /// [`Error::NotPublished`] when this node publishes nothing under `key`; [`Error::TooLarge`];
    /// [`Error::Busy`].
    pub fn remove(&mut self, now: Instant, key: &[u8]) -> Result<QueryId, Error> {
        check_name(key)?;
        if !self.dht.published.contains_key(&Record::key_for(key)) {
            return Err(Error::NotPublished);
        }
        self.check_capacity()?;
        let tombstone = self.sign_record(now, key, Vec::new())?;
        let holders = self
            .dht
            .published
            .remove(&tombstone.key)
            .map(|p| p.holders)
            .unwrap_or_default();
        let id = self.router.fresh_id();
        self.start_put(now, id, tombstone, true, &holders);
        self.flush(now);
        Ok(QueryId(id))
    }

    /// The records this node publishes (and republishes).
    pub fn published(&self) -> impl Iterator<Item = &Record> {
        self.dht.published.values().map(|p| &p.record)
    }

    fn check_capacity(&self) -> Result<(), Error> {
        if self.dht.len() + self.lookups.len() >= self.config.max_lookups {
            return Err(Error::Busy);
        }
        Ok(())
    }

    /// This node's record named `key` with `value`, signed, its `seq` after the last one it
    /// published under the name.
    fn sign_record(&self, now: Instant, key: &[u8], value: Vec<u8>) -> Result<Record, Error> {
        check_name(key)?;
        let k = Record::key_for(key);
        let previous = self
            .dht
            .published
            .get(&k)
            .map(|p| &p.record)
            .or(self
                .kad
                .record(now, &k)
                .as_ref()
                .filter(|r| r.public_key == self.identity.public_key()))
            .map_or(0, |r| r.seq.saturating_add(1));
        let seq = previous.max(now.as_micros());
        Ok(Record::sign(
            &self.identity,
            key.to_vec(),
            seq,
            value,
            now + self.config.kademlia.record_ttl,
        ))
    }

    /// Starts a put of `record` (also stored here, so that requests passing this node find it).
    fn start_put(&mut self, now: Instant, id: u64, record: Record, notify: bool, also: &[NodeId]) {
        let _ = self.kad.store_record(now, record.clone());
        // The nodes this node handed its earlier version to get this one.
        for node in self
            .dht
            .copies
            .get(&record.key)
            .cloned()
            .unwrap_or_default()
        {
            self.hand_over(now, node, record.clone());
        }
        let rng = &mut self.rng;
        let requests = self.dht.start_put(
            now,
            id,
            record,
            notify,
            also,
            || rng.random::<u64>(),
            &self.config,
        );
        self.send_dht(now, requests);
        self.timers.set(Timer::Dht(id), self.dht.deadline(id));
    }

    /// The unexpired record under `key` this node publishes or stores.
    fn local_record(&self, now: Instant, key: &NodeId) -> Option<Record> {
        self.dht
            .published
            .get(key)
            .map(|p| p.record.clone())
            .or_else(|| self.kad.record(now, key))
    }

    /// Sends a command's requests.
    fn send_dht(&mut self, now: Instant, requests: Vec<Request>) {
        for r in requests {
            match r {
                Request::GetTowardKey {
                    request,
                    key,
                    attempt,
                } => {
                    let _ = self.originate_dht(
                        now,
                        key,
                        request,
                        key,
                        &Payload::DhtGet { key },
                        attempt,
                    );
                }
                Request::GetFrom { request, key, node } => {
                    let _ =
                        self.originate_dht(now, node, request, key, &Payload::DhtGet { key }, 0);
                }
                Request::Put {
                    request,
                    record,
                    attempt,
                } => {
                    let key = record.key;
                    let _ = self.originate_dht(
                        now,
                        key,
                        request,
                        key,
                        &Payload::DhtPut { record },
                        attempt,
                    );
                }
                Request::Store {
                    request,
                    record,
                    node,
                } => {
                    let key = record.key;
                    let _ = self.originate_dht(
                        now,
                        node,
                        request,
                        key,
                        &Payload::DhtStore { record },
                        0,
                    );
                }
            }
        }
    }

    /// Sends a DHT request from us to `dst` (the key, or a node), with `lookup` set to the key so that
    /// nodes on the way look at it. Never through the server (it knows no key).
    fn originate_dht(
        &mut self,
        now: Instant,
        dst: NodeId,
        id: u64,
        key: NodeId,
        payload: &Payload,
        attempt: usize,
    ) -> Option<NodeId> {
        let mut r = self.router.envelope(
            now,
            &self.identity,
            dst,
            id,
            Some(key),
            payload,
            &self.config,
        )?;
        r.hops_left = self.config.hop_limit;
        self.send_dht_routed(now, r, attempt)
    }

    /// Forwards a DHT request one hop (never through the server: a dead end is an arrival).
    fn send_dht_routed(&mut self, now: Instant, r: Routed, attempt: usize) -> Option<NodeId> {
        let mut r = r;
        match self.router.next_hop(&self.links, &mut r, attempt) {
            crate::router::Hop::Link(p) | crate::router::Hop::Back(p) => {
                r.hops_left -= 1;
                self.router.seal(&self.identity, &mut r);
                if r.src != self.local {
                    self.stats.routed_forwarded += 1;
                }
                self.send_frame(now, p, &Frame::Routed(r));
                Some(p)
            }
            crate::router::Hop::DeadEnd => {
                if r.src != self.local {
                    self.dht_arrived(now, &r);
                } else {
                    self.stats.dropped_no_route += 1;
                }
                None
            }
        }
    }

    /// A routed message with a lookup key passing through us (not addressed to us): whether it is a
    /// DHT request, which this handled (answered if we hold the record or it arrived here, forwarded
    /// otherwise).
    pub(super) fn dht_transit(&mut self, now: Instant, r: &Routed) -> bool {
        let Ok(payload) = postcard::from_bytes::<Payload>(&r.body) else {
            return false;
        };
        let key = match &payload {
            Payload::DhtGet { key } => *key,
            Payload::DhtPut { record } => record.key,
            // A store is for its addressee only.
            Payload::DhtStore { .. } => {
                self.send_dht_routed(now, r.clone(), 0);
                return true;
            }
            _ => return false,
        };
        if r.lookup != Some(key) {
            self.stats.dropped_malformed += 1;
            return true;
        }
        if let Payload::DhtGet { .. } = payload
            && let Some(record) = self.local_record(now, &key)
        {
            self.answer_get(now, r, Some(record), Vec::new());
            return true;
        }
        if r.dst == key && self.router.arrived(&self.links, &key, &r.path) {
            self.dht_arrived(now, r);
            return true;
        }
        self.send_dht_routed(now, r.clone(), 0);
        true
    }

    /// A DHT request toward a key arrived here (no link leads closer, or it can go no further).
    fn dht_arrived(&mut self, now: Instant, r: &Routed) {
        match postcard::from_bytes::<Payload>(&r.body) {
            Ok(Payload::DhtGet { key }) => {
                self.answer_get_here(now, r, key);
            }
            Ok(Payload::DhtPut { record }) => self.answer_store(now, r, record, true),
            _ => self.stats.dropped_unexpected += 1,
        }
    }

    /// A DHT request addressed to us (a get or store sent to this node).
    pub(super) fn on_dht_request(&mut self, now: Instant, r: &Routed, payload: Payload) {
        match payload {
            Payload::DhtGet { key } => {
                self.answer_get_here(now, r, key);
            }
            Payload::DhtStore { record } => self.answer_store(now, r, record, false),
            // A put's dst is its key, never a node (it would have to be an id equal to a key).
            _ => self.stats.dropped_unexpected += 1,
        }
    }

    /// Answers a get with the record under `key` if this node has it, otherwise with the closest
    /// nodes it knows.
    fn answer_get_here(&mut self, now: Instant, r: &Routed, key: NodeId) {
        let record = self.local_record(now, &key);
        let closest = if record.is_some() {
            Vec::new()
        } else {
            self.closest_known(&key, self.config.lookup_k, true)
        };
        self.answer_get(now, r, record, closest);
    }

    fn answer_get(
        &mut self,
        now: Instant,
        r: &Routed,
        record: Option<Record>,
        closest: Vec<NodeId>,
    ) {
        if r.dst != self.local && !router::signed_by_src(r, self.signature_check) {
            self.stats.dropped_bad_signature += 1;
            return;
        }
        self.stats.dht_answered += 1;
        let request_hops = r.hops();
        self.reply(
            now,
            r,
            r.id,
            &Payload::DhtValue {
                record,
                closest,
                request_hops,
            },
            false,
        );
    }

    fn answer_store(&mut self, now: Instant, r: &Routed, record: Record, arrived: bool) {
        if r.dst != self.local && !router::signed_by_src(r, self.signature_check) {
            self.stats.dropped_bad_signature += 1;
            return;
        }
        self.stats.dht_answered += 1;
        let key = record.key;
        let from_publisher = r.src == record.publisher();
        let newer = self
            .kad
            .record(now, &key)
            .is_some_and(|old| old.public_key == record.public_key && old.seq < record.seq);
        let result = self.kad.store_record(now, record.clone());
        if result.is_ok() && (from_publisher || newer) {
            // What the publisher stores at a replica is copied to the replica's links too: a get's
            // last hop is usually over a link of a replica, which then answers one hop earlier,
            // both ways (docs/decisions.md §33). A node that gave copies of a record (these, and
            // hand-overs at link-up) gives them each newer version it stores, so that updates and
            // removals replace the copies. (Not the node the store came through: it forwarded the
            // store, and holds a copy only if it was given one.)
            let mut to: Vec<NodeId> = self.dht.copies.get(&key).cloned().unwrap_or_default();
            if from_publisher {
                to.extend(self.links.up());
            }
            to.sort_unstable();
            to.dedup();
            to.retain(|n| *n != r.src);
            for node in to {
                self.hand_over(now, node, record.clone());
            }
        }
        let closest = if arrived {
            self.closest_known(&key, self.config.lookup_k, true)
        } else {
            Vec::new()
        };
        let request_hops = r.hops();
        self.reply(
            now,
            r,
            r.id,
            &Payload::DhtStored {
                result,
                closest,
                request_hops,
            },
            false,
        );
    }

    /// An answer to one of our get requests, from `from` (its envelope verified).
    pub(super) fn on_dht_value(
        &mut self,
        now: Instant,
        request: u64,
        from: NodeId,
        record: Option<Record>,
        closest: Vec<NodeId>,
        hops: u32,
    ) {
        let Some(id) = self.dht.command_of(request) else {
            self.stats.dht_dropped_answers += 1;
            return;
        };
        let key = self.dht.key(id);
        let record = match record {
            Some(rec) if Some(rec.key) == key && rec.verify(self.signature_check.verifier()) => {
                Some(rec)
            }
            Some(_) => {
                self.stats.dht_dropped_answers += 1;
                None
            }
            None => None,
        };
        let rng = &mut self.rng;
        let answer = Answer {
            request,
            from,
            body: record,
            closest,
            hops,
        };
        let Some((id, step)) =
            self.dht
                .handle_value(now, answer, || rng.random::<u64>(), &self.config)
        else {
            return;
        };
        self.dht_step(now, id, step);
    }

    /// An answer to one of our put or store requests, from `from` (its envelope verified).
    pub(super) fn on_dht_stored(
        &mut self,
        now: Instant,
        request: u64,
        from: NodeId,
        result: Result<(), StoreError>,
        closest: Vec<NodeId>,
    ) {
        let rng = &mut self.rng;
        let local = self.local;
        let answer = Answer {
            request,
            from,
            body: result,
            closest,
            hops: 0,
        };
        let Some((id, step)) =
            self.dht
                .handle_stored(now, answer, local, || rng.random::<u64>(), &self.config)
        else {
            // The answer to a hand-over or a repair: nothing waits for it.
            return;
        };
        self.dht_step(now, id, step);
    }

    /// Carries out what command `id` decided.
    fn dht_step(&mut self, now: Instant, id: u64, step: Step) {
        match step {
            Step::Wait => {}
            Step::Send(requests) => self.send_dht(now, requests),
            Step::Finished(Finished::Get { id, record, .. })
                if self.dht.claims.contains_key(&id) =>
            {
                // The get before a put of a name new to us.
                if let Some((put, mine)) = self.dht.claims.remove(&id) {
                    match record {
                        Some(held)
                            if held.public_key != mine.public_key && !held.is_expired(now) =>
                        {
                            self.emit(Output::Event(Event::PutFinished {
                                id: QueryId(put),
                                key: mine.key,
                                stored: 0,
                                asked: 0,
                                refused: Some(StoreError::OtherPublisher),
                            }));
                        }
                        _ => self.publish(now, put, mine),
                    }
                }
            }
            Step::Finished(Finished::Get {
                id,
                key,
                record,
                answered,
                hops,
                rounds,
            }) => {
                self.emit(Output::Event(Event::GetFinished {
                    id: QueryId(id),
                    key,
                    record,
                    answered,
                    hops,
                    rounds,
                }));
            }
            Step::Finished(Finished::Put {
                id,
                key,
                notify,
                stored,
                asked,
                refused,
                holders,
            }) => {
                if let Some(p) = self.dht.published.get_mut(&key) {
                    // Merged: a node of the last put that did not answer this time may still hold
                    // a copy; the newest holders are kept first.
                    let mut all = holders;
                    for h in core::mem::take(&mut p.holders) {
                        if !all.contains(&h) {
                            all.push(h);
                        }
                    }
                    all.truncate(2 * self.config.lookup_k);
                    p.holders = all;
                }
                if refused == Some(StoreError::OtherPublisher) {
                    // The name is another publisher's: ours is neither kept nor republished.
                    self.dht.published.remove(&key);
                    let public_key = self.identity.public_key();
                    self.kad.forget_record(&key, &public_key);
                }
                if notify {
                    self.emit(Output::Event(Event::PutFinished {
                        id: QueryId(id),
                        key,
                        stored,
                        asked,
                        refused,
                    }));
                }
            }
        }
        self.timers.set(Timer::Dht(id), self.dht.deadline(id));
    }

    /// Moves the DHT commands whose deadline passed on, and republishes what is due.
    pub(super) fn dht_timers(&mut self, now: Instant) {
        for id in self.timers.due_dhts(now) {
            let rng = &mut self.rng;
            let step = self
                .dht
                .handle_timeout(now, id, || rng.random::<u64>(), &self.config);
            self.dht_step(now, id, step);
        }
        if self.timers.is_due(Timer::Republish, now) {
            let due: Vec<NodeId> = self
                .dht
                .published
                .iter()
                .filter(|(_, p)| p.next_republish <= now)
                .map(|(k, _)| *k)
                .collect();
            for key in due {
                let Some(p) = self.dht.published.get_mut(&key) else {
                    continue;
                };
                p.next_republish = now + self.config.kademlia.republish_interval;
                p.record.expires = now + self.config.kademlia.record_ttl;
                let record = p.record.clone();
                let holders = p.holders.clone();
                if self.check_capacity().is_ok() {
                    let id = self.router.fresh_id();
                    self.start_put(now, id, record, false, &holders);
                }
            }
        }
        self.timers.set(Timer::Republish, self.dht.next_republish());
    }

    /// A link to `peer` came up: the records we hold whose key is closer to `peer` than to us go to
    /// it (a node that joins next to a key gets the records it should hold).
    pub(super) fn dht_link_up(&mut self, now: Instant, peer: NodeId) {
        let local = self.local;
        let records: Vec<Record> = self
            .kad
            .records()
            .filter(|r| !r.is_expired(now) && peer.distance(&r.key) < local.distance(&r.key))
            .take(HAND_OVER_MAX)
            .cloned()
            .collect();
        for record in records {
            self.hand_over(now, peer, record);
        }
    }

    /// Sends `record` to `node` to store (its answer is not awaited), and remembers it gave
    /// `node` a copy (newer versions follow; see `answer_store`).
    fn hand_over(&mut self, now: Instant, node: NodeId, record: Record) {
        self.stats.dht_handed_over += 1;
        let id = self.rng.random::<u64>();
        let key = record.key;
        if !self.dht.copies.contains_key(&key) {
            // A new key: the keys no longer stored go first (once per key, not per copy).
            let kad = &self.kad;
            self.dht.prune_copies(|k| kad.holds(now, k));
        }
        self.dht
            .remember_copy(key, node, COPIES_MAX, self.config.kademlia.max_records);
        let _ = self.originate_dht(now, node, id, key, &Payload::DhtStore { record }, 0);
    }
}

fn check_name(key: &[u8]) -> Result<(), Error> {
    if key.len() > kademlia_core::MAX_SALT_BYTES {
        return Err(Error::TooLarge {
            len: key.len(),
            max: kademlia_core::MAX_SALT_BYTES,
        });
    }
    Ok(())
}
