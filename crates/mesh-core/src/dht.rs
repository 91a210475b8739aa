//! The DHT part ([`Node::put`](crate::Node::put), [`Node::get`](crate::Node::get),
//! [`Node::remove`](crate::Node::remove)): each command is a pure state machine, like the probe lookup.
//! It says which requests to send ([`Dht::next_round`], [`Dht::stores_for`]), takes the answers
//! ([`Dht::handle_value`], [`Dht::handle_stored`]) and its deadline ([`Dht::handle_timeout`]), and ends
//! with a [`Finished`] report; the composer sends the requests (docs/decisions.md §33).
//!
//! A get goes toward the key through `lookup_parallelism` different first links at once; the first
//! node on a path that holds the record answers with it, otherwise the node where no link leads closer
//! answers "none" with the nodes it knows closest to the key. When every path said none, the next
//! round asks those nodes themselves. A put goes toward the key the same way; the node where it
//! arrives stores it and names the closest nodes it knows, and the origin sends each of them the
//! record to store (`lookup_k` replicas in all).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use kademlia_core::{Distance, Instant, NodeId, Record, StoreError};

use crate::Config;

/// A record this node publishes, and when it goes out again.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) record: Record,
    pub(crate) next_republish: Instant,
    /// The nodes that said they stored the last version: the next one is stored at them too, so
    /// that an update or a removal reaches every copy, also when the closest nodes named this
    /// time differ (at most `2 × lookup_k`).
    pub(crate) holders: Vec<NodeId>,
}

#[derive(Debug)]
enum Kind {
    Get {
        /// Nodes that answered "none", closest first: a found record is handed to those closer to
        /// the key than the node that had it (they should have held it).
        misses: BTreeSet<(Distance, NodeId)>,
        /// First links the first round goes through.
        paths: usize,
    },
    Put {
        record: alloc::boxed::Box<Record>,
        /// Whether the application hears of the end (not for republications).
        notify: bool,
        stored: BTreeSet<NodeId>,
        refused: Option<StoreError>,
        /// Nodes sent a store (the closest named by the node where the put arrived).
        asked: BTreeSet<NodeId>,
        /// A node holds the name for another publisher: no more stores go out (they would store
        /// the record at nodes that never saw the owner's and split the name).
        taken: bool,
    },
}

#[derive(Debug)]
struct Op {
    key: NodeId,
    kind: Kind,
    round: u32,
    deadline: Instant,
    /// Request ids awaiting their answer.
    outstanding: BTreeSet<u64>,
    /// Closest nodes named by answers, bounded by `lookup_k`.
    closest: BTreeSet<(Distance, NodeId)>,
    /// Nodes a round-2+ get was sent to.
    probed: BTreeSet<NodeId>,
    answered: bool,
    hops: u32,
}

/// A request to send for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// A get toward the key through the `attempt`-th ranked first link.
    GetTowardKey {
        request: u64,
        key: NodeId,
        attempt: usize,
    },
    /// A get sent to one node.
    GetFrom {
        request: u64,
        key: NodeId,
        node: NodeId,
    },
    /// A put toward the key through the `attempt`-th ranked first link.
    Put {
        request: u64,
        record: Record,
        attempt: usize,
    },
    /// A store at one node.
    Store {
        request: u64,
        record: Record,
        node: NodeId,
    },
}

/// A command that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finished {
    /// A get: the record found (checked by the composer), whether anybody answered, and the hops.
    Get {
        id: u64,
        key: NodeId,
        record: Option<Record>,
        answered: bool,
        hops: u32,
        rounds: u32,
    },
    /// A put: how many stored it, how many were asked, the last refusal.
    Put {
        id: u64,
        key: NodeId,
        notify: bool,
        stored: u32,
        /// The nodes that stored it.
        holders: Vec<NodeId>,
        asked: u32,
        refused: Option<StoreError>,
    },
}

/// An answer to one of our requests: its envelope verified, from `from`.
#[derive(Debug)]
pub(crate) struct Answer<T> {
    pub(crate) request: u64,
    pub(crate) from: NodeId,
    /// The record (a get's), or the store's result (a put's or store's).
    pub(crate) body: T,
    /// The closest nodes the answerer named.
    pub(crate) closest: Vec<NodeId>,
    /// Link traversals the request made to reach the answerer.
    pub(crate) hops: u32,
}

/// What a command does after an answer or its deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for more answers.
    Wait,
    /// Send these requests (and wait).
    Send(Vec<Request>),
    /// It ended.
    Finished(Finished),
}

/// The running DHT commands, the requests they wait for, and the records this node publishes.
#[derive(Debug, Default)]
pub(crate) struct Dht {
    ops: BTreeMap<u64, Op>,
    /// Request id -> the command's id.
    requests: BTreeMap<u64, u64>,
    /// Records this node publishes, by key (bounded by the Kademlia config's `max_published`).
    pub(crate) published: BTreeMap<NodeId, Published>,
    /// Gets run before a put of a name new to this node (get id -> the put's id and record): the
    /// put goes out only if nobody holds the name for another publisher. Bounded by the running
    /// commands.
    pub(crate) claims: BTreeMap<u64, (u64, Record)>,
    /// For records this node stores: the nodes it gave a copy to, which get each newer version too.
    /// At most `max_records` keys (the store's own bound).
    pub(crate) copies: BTreeMap<NodeId, Vec<NodeId>>,
}

impl Dht {
    /// Remembers giving `node` a copy of the record under `key`: at most `per_key` nodes per key
    /// (the earliest go first) and `max` keys (the caller prunes the keys it no longer stores
    /// first; beyond that, the lowest key goes).
    pub(crate) fn remember_copy(&mut self, key: NodeId, node: NodeId, per_key: usize, max: usize) {
        if !self.copies.contains_key(&key) && self.copies.len() >= max {
            self.copies.pop_first();
        }
        let nodes = self.copies.entry(key).or_default();
        if !nodes.contains(&node) {
            if nodes.len() >= per_key {
                nodes.remove(0);
            }
            nodes.push(node);
        }
    }

    /// Forgets the copies of records no longer stored (`keep` says which are).
    pub(crate) fn prune_copies(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.copies.retain(|k, _| keep(k));
    }

    /// Number of running commands.
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// The deadline of command `id`.
    pub(crate) fn deadline(&self, id: u64) -> Option<Instant> {
        self.ops.get(&id).map(|o| o.deadline)
    }

    /// When the next published record is due for republication.
    pub(crate) fn next_republish(&self) -> Option<Instant> {
        self.published.values().map(|p| p.next_republish).min()
    }

    /// Starts get `id` of `key`: its first round, requests numbered by `fresh`.
    /// The first round goes through `paths` first links (the node's up links), at least
    /// `lookup_parallelism`.
    pub(crate) fn start_get(
        &mut self,
        now: Instant,
        id: u64,
        key: NodeId,
        paths: usize,
        fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Vec<Request> {
        self.insert(
            now,
            id,
            key,
            Kind::Get {
                misses: BTreeSet::new(),
                paths,
            },
        );
        self.round(now, id, fresh, config)
    }

    /// Starts put `id` of `record` (republications: `notify` false).
    /// `also`: nodes that held the last version, sent the record to store at once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_put(
        &mut self,
        now: Instant,
        id: u64,
        record: Record,
        notify: bool,
        also: &[NodeId],
        mut fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Vec<Request> {
        let kind = Kind::Put {
            record: alloc::boxed::Box::new(record.clone()),
            notify,
            stored: BTreeSet::new(),
            refused: None,
            asked: BTreeSet::new(),
            taken: false,
        };
        self.insert(now, id, record.key, kind);
        let mut out = self.round(now, id, &mut fresh, config);
        if let Some(op) = self.ops.get_mut(&id)
            && let Kind::Put { asked, .. } = &mut op.kind
        {
            for node in also.iter().take(2 * config.lookup_k) {
                if !asked.insert(*node) {
                    continue;
                }
                let request = fresh();
                op.outstanding.insert(request);
                self.requests.insert(request, id);
                out.push(Request::Store {
                    request,
                    record: record.clone(),
                    node: *node,
                });
            }
        }
        out
    }

    fn insert(&mut self, now: Instant, id: u64, key: NodeId, kind: Kind) {
        self.ops.insert(
            id,
            Op {
                key,
                kind,
                round: 0,
                deadline: now,
                outstanding: BTreeSet::new(),
                closest: BTreeSet::new(),
                probed: BTreeSet::new(),
                answered: false,
                hops: 0,
            },
        );
    }

    /// The next round of command `id`. Round 1 goes toward the key through `lookup_parallelism`
    /// first links; a get's later rounds ask the closest nodes named so far that were not asked yet
    /// (and end when there are none); a put's later rounds (no node answered) go toward the key again
    /// through the next first links.
    fn round(
        &mut self,
        now: Instant,
        id: u64,
        mut fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Vec<Request> {
        let Some(op) = self.ops.get_mut(&id) else {
            return Vec::new();
        };
        op.round += 1;
        op.deadline = now + config.lookup_round_timeout;
        let alpha = config.lookup_parallelism;
        let first_attempt = (op.round as usize - 1) * alpha;
        let mut out = Vec::new();
        match &op.kind {
            Kind::Get { paths, .. } if op.round == 1 => {
                // Every link: the first answer wins, and each extra path is a chance of a
                // shorter or faster one (docs/decisions.md §33).
                for attempt in 0..alpha.max(*paths) {
                    out.push(Request::GetTowardKey {
                        request: fresh(),
                        key: op.key,
                        attempt,
                    });
                }
            }
            Kind::Get { misses, .. } => {
                let asked: BTreeSet<NodeId> = misses.iter().map(|e| e.1).collect();
                let next: Vec<NodeId> = op
                    .closest
                    .iter()
                    .map(|e| e.1)
                    .filter(|n| !asked.contains(n) && !op.probed.contains(n))
                    .take(alpha)
                    .collect();
                if next.is_empty() && !op.answered {
                    // Nobody answered: toward the key again, through other links.
                    for attempt in first_attempt..first_attempt + alpha {
                        out.push(Request::GetTowardKey {
                            request: fresh(),
                            key: op.key,
                            attempt,
                        });
                    }
                }
                for node in next {
                    op.probed.insert(node);
                    out.push(Request::GetFrom {
                        request: fresh(),
                        key: op.key,
                        node,
                    });
                }
            }
            Kind::Put { record, .. } => {
                for attempt in first_attempt..first_attempt + alpha {
                    out.push(Request::Put {
                        request: fresh(),
                        record: (**record).clone(),
                        attempt,
                    });
                }
            }
        }
        if out.is_empty() {
            // No round after all: the command ends (the caller sees no requests).
            op.round -= 1;
        }
        for r in &out {
            let request = request_id(r);
            op.outstanding.insert(request);
            self.requests.insert(request, id);
        }
        out
    }

    /// The command a request belongs to, if it still runs.
    pub(crate) fn command_of(&self, request: u64) -> Option<u64> {
        self.requests.get(&request).copied()
    }

    /// The key of command `id`.
    pub(crate) fn key(&self, id: u64) -> Option<NodeId> {
        self.ops.get(&id).map(|o| o.key)
    }

    /// A get's answer to `request` from `from` (its envelope verified): `record` (its key and
    /// signature checked by the composer: `None` also when they failed), `closest`, and the request's
    /// link traversals. Returns the command and what it does next; `None` for an answer to no
    /// request of a running get.
    pub(crate) fn handle_value(
        &mut self,
        now: Instant,
        answer: Answer<Option<Record>>,
        fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Option<(u64, Step)> {
        let Answer {
            request,
            from,
            body: record,
            closest,
            hops,
        } = answer;
        let id = self.take_request(request)?;
        let op = self.ops.get_mut(&id)?;
        let Kind::Get { misses, .. } = &mut op.kind else {
            return Some((id, Step::Wait));
        };
        op.answered = true;
        op.hops = hops;
        if let Some(record) = record {
            let rounds = op.round;
            let key = op.key;
            self.finish_ops(id);
            return Some((
                id,
                Step::Finished(Finished::Get {
                    id,
                    key,
                    record: Some(record),
                    answered: true,
                    hops,
                    rounds,
                }),
            ));
        }
        misses.insert((from.distance(&op.key), from));
        merge_closest(op, closest, config.lookup_k);
        Some((id, self.after_answer(now, id, fresh, config)))
    }

    /// A put's or store's answer to `request` from `from`: `result`, and (from the node where the put
    /// arrived) the closest nodes it knows. New closest nodes get the record to store
    /// ([`Step::Send`]); the put ends when every node asked has answered.
    pub(crate) fn handle_stored(
        &mut self,
        now: Instant,
        answer: Answer<Result<(), StoreError>>,
        local: NodeId,
        mut fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Option<(u64, Step)> {
        let Answer {
            request,
            from,
            body: result,
            closest,
            ..
        } = answer;
        let id = self.take_request(request)?;
        let op = self.ops.get_mut(&id)?;
        let Kind::Put {
            record,
            stored,
            refused,
            asked,
            taken,
            ..
        } = &mut op.kind
        else {
            return Some((id, Step::Wait));
        };
        op.answered = true;
        match result {
            Ok(()) => {
                stored.insert(from);
            }
            Err(e) => {
                *taken |= e == StoreError::OtherPublisher;
                *refused = Some(e);
            }
        }
        asked.insert(from);
        let mut stores = Vec::new();
        let k = config.lookup_k;
        let closest = if *taken { Vec::new() } else { closest };
        for node in closest.into_iter().take(k) {
            if node == local || asked.contains(&node) || asked.len() >= k {
                continue;
            }
            asked.insert(node);
            let request = fresh();
            op.outstanding.insert(request);
            self.requests.insert(request, id);
            stores.push(Request::Store {
                request,
                record: (**record).clone(),
                node,
            });
        }
        if !stores.is_empty() {
            // The store phase gets a round's time from now.
            op.deadline = now + config.lookup_round_timeout;
            return Some((id, Step::Send(stores)));
        }
        Some((id, self.after_answer(now, id, fresh, config)))
    }

    /// After an answer that did not end the command: wait while requests are out, otherwise the
    /// next round or the end.
    fn after_answer(
        &mut self,
        now: Instant,
        id: u64,
        fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Step {
        match self.ops.get(&id) {
            Some(op) if !op.outstanding.is_empty() => Step::Wait,
            Some(op) if matches!(op.kind, Kind::Put { .. }) && op.answered => self.end(id),
            Some(_) => self.next_or_end(now, id, fresh, config),
            None => Step::Wait,
        }
    }

    fn next_or_end(
        &mut self,
        now: Instant,
        id: u64,
        fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Step {
        let Some(op) = self.ops.get(&id) else {
            return Step::Wait;
        };
        if op.round >= config.lookup_max_rounds {
            return self.end(id);
        }
        let requests = self.round(now, id, fresh, config);
        if requests.is_empty() {
            self.end(id)
        } else {
            Step::Send(requests)
        }
    }

    /// Command `id`'s deadline passed: its outstanding requests are forgotten; a put that heard from
    /// anybody ends, anything else goes on to its next round or ends.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        id: u64,
        fresh: impl FnMut() -> u64,
        config: &Config,
    ) -> Step {
        let Some(op) = self.ops.get_mut(&id) else {
            return Step::Wait;
        };
        for r in core::mem::take(&mut op.outstanding) {
            self.requests.remove(&r);
        }
        if matches!(op.kind, Kind::Put { .. }) && op.answered {
            return self.end(id);
        }
        self.next_or_end(now, id, fresh, config)
    }

    /// Ends command `id` with what it has.
    fn end(&mut self, id: u64) -> Step {
        let Some(op) = self.finish_ops(id) else {
            return Step::Wait;
        };
        Step::Finished(match op.kind {
            Kind::Get { .. } => Finished::Get {
                id,
                key: op.key,
                record: None,
                answered: op.answered,
                hops: op.hops,
                rounds: op.round,
            },
            Kind::Put {
                notify,
                stored,
                refused,
                asked,
                taken,
                ..
            } => Finished::Put {
                id,
                key: op.key,
                notify,
                stored: stored.len() as u32,
                holders: stored.into_iter().collect(),
                asked: asked.len() as u32,
                refused: if taken {
                    Some(StoreError::OtherPublisher)
                } else {
                    refused
                },
            },
        })
    }

    fn finish_ops(&mut self, id: u64) -> Option<Op> {
        let op = self.ops.remove(&id)?;
        for r in &op.outstanding {
            self.requests.remove(r);
        }
        Some(op)
    }

    fn take_request(&mut self, request: u64) -> Option<u64> {
        let id = self.requests.remove(&request)?;
        if let Some(op) = self.ops.get_mut(&id) {
            op.outstanding.remove(&request);
        }
        Some(id)
    }
}

fn request_id(r: &Request) -> u64 {
    match r {
        Request::GetTowardKey { request, .. }
        | Request::GetFrom { request, .. }
        | Request::Put { request, .. }
        | Request::Store { request, .. } => *request,
    }
}

fn merge_closest(op: &mut Op, closest: Vec<NodeId>, k: usize) {
    for n in closest.into_iter().take(k) {
        op.closest.insert((n.distance(&op.key), n));
    }
    while op.closest.len() > k {
        op.closest.pop_last();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;
    use p2pmesh_base::Identity;

    fn fresh(next: &mut u64) -> impl FnMut() -> u64 + '_ {
        move || {
            *next += 1;
            *next
        }
    }

    fn record() -> Record {
        Record::sign(
            &Identity::from_secret_bytes(&[7; 32]),
            b"name".to_vec(),
            1,
            b"v".to_vec(),
            Instant::from_millis(1_000_000),
        )
    }

    fn answer<T>(request: u64, from: NodeId, body: T, closest: Vec<NodeId>) -> Answer<T> {
        Answer {
            request,
            from,
            body,
            closest,
            hops: 3,
        }
    }

    fn requests(step: Step) -> Vec<Request> {
        match step {
            Step::Send(r) => r,
            other => panic!("expected requests, got {other:?}"),
        }
    }

    #[test]
    fn a_get_asks_toward_the_key_then_the_closest_named_then_ends_not_found() {
        let config = Config::default();
        let (mut dht, mut next, now) = (Dht::default(), 100, Instant::from_millis(1));
        let key = id(9);
        let first = dht.start_get(now, 1, key, 0, fresh(&mut next), &config);
        assert_eq!(first.len(), config.lookup_parallelism);
        assert!(first.iter().enumerate().all(|(i, r)| matches!(r,
            Request::GetTowardKey { key: k, attempt, .. } if *k == key && *attempt == i)));
        // An answer to no request of ours is ignored.
        assert!(
            dht.handle_value(
                now,
                answer(5, id(1), None, vec![]),
                fresh(&mut next),
                &config
            )
            .is_none()
        );
        // Every path says none; one names two nodes.
        let mut last = Step::Wait;
        for (i, r) in first.iter().enumerate() {
            let closest = if i == 0 { vec![id(8), id(3)] } else { vec![] };
            let a = answer(request_id(r), id(20 + i as u8), None, closest);
            last = dht
                .handle_value(now, a, fresh(&mut next), &config)
                .expect("an answer to a running command")
                .1;
        }
        let second = requests(last);
        let asked: Vec<NodeId> = second
            .iter()
            .map(|r| match r {
                Request::GetFrom { node, .. } => *node,
                other => panic!("round 2 asks nodes: {other:?}"),
            })
            .collect();
        assert_eq!(asked.len(), 2);
        assert!(asked.contains(&id(8)) && asked.contains(&id(3)));
        // They have none either and name nobody new: not found, but answered.
        let mut last = Step::Wait;
        for r in &second {
            last = dht
                .handle_value(
                    now,
                    answer(request_id(r), id(8), None, vec![]),
                    fresh(&mut next),
                    &config,
                )
                .expect("an answer to a running command")
                .1;
        }
        match last {
            Step::Finished(Finished::Get {
                record: None,
                answered: true,
                rounds: 2,
                ..
            }) => {}
            other => panic!("expected not found, got {other:?}"),
        }
        assert_eq!(dht.len(), 0);
    }

    #[test]
    fn a_found_record_ends_the_get_and_late_answers_are_ignored() {
        let config = Config::default();
        let (mut dht, mut next, now) = (Dht::default(), 100, Instant::from_millis(1));
        let r = record();
        let first = dht.start_get(now, 1, r.key, 0, fresh(&mut next), &config);
        let a = answer(request_id(&first[1]), id(4), Some(r.clone()), vec![]);
        match dht
            .handle_value(now, a, fresh(&mut next), &config)
            .expect("an answer to a running command")
            .1
        {
            Step::Finished(Finished::Get {
                record: Some(found),
                hops: 3,
                rounds: 1,
                ..
            }) => {
                assert_eq!(found, r);
            }
            other => panic!("expected found, got {other:?}"),
        }
        let late = answer(request_id(&first[0]), id(5), None, vec![]);
        assert!(
            dht.handle_value(now, late, fresh(&mut next), &config)
                .is_none()
        );
    }

    #[test]
    fn a_put_stores_at_the_named_closest_and_counts_who_stored() {
        let config = Config::default();
        let (mut dht, mut next, now) = (Dht::default(), 100, Instant::from_millis(1));
        let local = id(1);
        let first = dht.start_put(now, 1, record(), true, &[], fresh(&mut next), &config);
        assert_eq!(first.len(), config.lookup_parallelism);
        // The node where the put arrived stored it and names itself, us, and two others.
        let root = id(9);
        let a = answer(
            request_id(&first[0]),
            root,
            Ok(()),
            vec![root, local, id(7), id(6)],
        );
        let stores = requests(
            dht.handle_stored(now, a, local, fresh(&mut next), &config)
                .expect("an answer to a running command")
                .1,
        );
        let targets: Vec<NodeId> = stores
            .iter()
            .map(|r| match r {
                Request::Store { node, .. } => *node,
                other => panic!("stores: {other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            vec![id(7), id(6)],
            "neither the root again nor ourselves"
        );
        // The other paths arrived at the same root: nothing new to ask.
        for r in &first[1..] {
            let a = answer(request_id(r), root, Ok(()), vec![root, id(7)]);
            assert_eq!(
                dht.handle_stored(now, a, local, fresh(&mut next), &config)
                    .expect("an answer to a running command")
                    .1,
                Step::Wait
            );
        }
        let a = answer(request_id(&stores[0]), id(7), Ok(()), vec![]);
        assert_eq!(
            dht.handle_stored(now, a, local, fresh(&mut next), &config)
                .expect("an answer to a running command")
                .1,
            Step::Wait
        );
        let a = answer(
            request_id(&stores[1]),
            id(6),
            Err(StoreError::PublisherQuota),
            vec![],
        );
        match dht
            .handle_stored(now, a, local, fresh(&mut next), &config)
            .expect("an answer to a running command")
            .1
        {
            Step::Finished(Finished::Put {
                stored: 2,
                asked: 3,
                refused: Some(StoreError::PublisherQuota),
                notify: true,
                ..
            }) => {}
            other => panic!("expected the end, got {other:?}"),
        }
    }

    #[test]
    fn a_name_held_by_another_publisher_stops_the_stores() {
        let config = Config::default();
        let (mut dht, mut next, now) = (Dht::default(), 100, Instant::from_millis(1));
        let local = id(1);
        let first = dht.start_put(now, 1, record(), true, &[], fresh(&mut next), &config);
        // One path arrives where the name is another's; another path names nodes to store at.
        let a = answer(
            request_id(&first[0]),
            id(9),
            Err(StoreError::OtherPublisher),
            vec![id(7)],
        );
        let step = dht
            .handle_stored(now, a, local, fresh(&mut next), &config)
            .expect("an answer to a running command")
            .1;
        assert_eq!(step, Step::Wait);
        let a = answer(request_id(&first[1]), id(8), Ok(()), vec![id(6), id(5)]);
        let step = dht
            .handle_stored(now, a, local, fresh(&mut next), &config)
            .expect("an answer to a running command")
            .1;
        assert_eq!(step, Step::Wait, "no stores once the name is known taken");
        let a = answer(request_id(&first[2]), id(8), Err(StoreError::Stale), vec![]);
        match dht
            .handle_stored(now, a, local, fresh(&mut next), &config)
            .expect("an answer to a running command")
            .1
        {
            Step::Finished(Finished::Put {
                refused: Some(StoreError::OtherPublisher),
                stored: 1,
                ..
            }) => {}
            other => panic!("expected the refusal, got {other:?}"),
        }
    }

    #[test]
    fn commands_nobody_answers_retry_through_other_links_then_end_unanswered() {
        let config = Config::default();
        let (mut dht, mut next, now) = (Dht::default(), 100, Instant::from_millis(1));
        let _ = dht.start_put(now, 1, record(), true, &[], fresh(&mut next), &config);
        let _ = dht.start_get(now, 2, id(9), 0, fresh(&mut next), &config);
        let mut ends = 0;
        for round in 2..=config.lookup_max_rounds + 1 {
            for op in [1, 2] {
                match dht.handle_timeout(now, op, fresh(&mut next), &config) {
                    Step::Send(r) => {
                        assert!(round <= config.lookup_max_rounds);
                        let first = (round as usize - 1) * config.lookup_parallelism;
                        assert!(r.iter().all(|r| matches!(r,
                            Request::Put { attempt, .. } | Request::GetTowardKey { attempt, .. } if *attempt >= first)));
                    }
                    Step::Finished(Finished::Put {
                        stored: 0,
                        asked: 0,
                        ..
                    })
                    | Step::Finished(Finished::Get {
                        answered: false,
                        record: None,
                        ..
                    }) => ends += 1,
                    other => panic!("round {round}: {other:?}"),
                }
            }
        }
        assert_eq!(ends, 2);
        assert_eq!(dht.len(), 0);
    }
}
