//! Running lookups: starting one, driving its rounds, finishing it with its result.

use super::*;

impl Node {
    pub(super) fn start_query(
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
    pub(super) fn drive(&mut self, now: Instant, q: QueryId) {
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
    pub(super) fn lookup_done(&mut self, now: Instant, q: QueryId, end: QueryEnd) {
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
    pub(super) fn finish(&mut self, q: QueryId, lookup_end: QueryEnd) {
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
