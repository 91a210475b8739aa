//! Answering the four RPCs, and what their responses (or their absence) do to lookups.

use super::*;

impl Node {
    pub(super) fn on_request(&mut self, now: Instant, from: NodeId, id: u64, body: Request) {
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

    pub(super) fn accept_store(&mut self, now: Instant, from: NodeId, record: Record) -> bool {
        // Only publishers store over this RPC (nobody replicates others' records here), so a record
        // naming another publisher is refused before its signature, which costs more, is checked.
        if record.publisher() != from {
            self.stats.stores_refused += 1;
            return false;
        }
        self.store_record(now, record).is_ok()
    }

    pub(super) fn on_response(&mut self, now: Instant, from: NodeId, id: u64, body: Response) {
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
                // A record is an answer only with its publisher's signature: a forged one is
                // discarded and the lookup goes on to the next candidate.
                if !record.verify(self.verify) {
                    self.stats.records_bad_signature += 1;
                    self.request_failed(now, p);
                    return;
                }
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
    pub(super) fn value_fits(&self, now: Instant, q: QueryId, record: &Record) -> bool {
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

    pub(super) fn value_found(&mut self, q: QueryId, from: NodeId, record: Record) {
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
    pub(super) fn cancel_requests(&mut self, q: QueryId) {
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

    pub(super) fn store_answered(&mut self, now: Instant, q: QueryId, ok: bool) {
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

    pub(super) fn request_failed(&mut self, now: Instant, p: Pending) {
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
}
