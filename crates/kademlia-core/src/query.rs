//! Iterative lookups: which peers to ask next, when a lookup is done, and what it found.
//!
//! A lookup keeps its candidates sorted by XOR distance to the target. It asks the closest candidates not
//! yet asked, at most `alpha` at a time, and ends when the `k` closest candidates that did not fail have
//! all answered, or when none is left to ask. Candidates that fail (timeout, peer down, malformed answer)
//! are skipped, so the lookup moves on to the next closest.
//!
//! # Rounds
//!
//! Each candidate has a *hop*: the initial candidates are hop 1; a contact first learned from the answer
//! of a hop-`h` candidate is hop `h + 1` (learning it again later does not change it). A finished
//! lookup's `rounds` is the largest hop among the answered candidates in its final `k` closest; for
//! `get_value`, it is the hop of the candidate that returned the value (0 when the record was found in
//! the node's own store). `rounds` therefore counts the sequential network round trips the result
//! depended on, however many requests ran in parallel.

use core::fmt;

use crate::{Instant, NodeId, Record};

/// Identifies a lookup started by [`Node::find_node`](crate::Node::find_node) and the like; the
/// [`Event::QueryFinished`](crate::Event::QueryFinished) that ends it carries the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub(crate) u64);

impl QueryId {
    /// The number behind the id, unique per node (for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryId({})", self.0)
    }
}

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// Result of [`Node::find_node`](crate::Node::find_node): up to `k` nodes closest to `target`
    /// that answered, closest first. The lookup of an existing node's id succeeded when that id is in
    /// `closest`.
    FindNode {
        /// The id looked up.
        target: NodeId,
        /// The closest nodes that answered, closest first.
        closest: Vec<NodeId>,
    },
    /// Result of [`Node::bootstrap`](crate::Node::bootstrap): the lookup of our own id.
    Bootstrap {
        /// The closest nodes to us that answered, closest first.
        closest: Vec<NodeId>,
    },
    /// Result of [`Node::get_value`](crate::Node::get_value).
    GetValue {
        /// The key looked up.
        key: NodeId,
        /// The record, if a node had an unexpired one.
        record: Option<Record>,
    },
    /// Result of [`Node::put_value`](crate::Node::put_value).
    PutValue {
        /// The key stored under.
        key: NodeId,
        /// How many of the closest nodes found confirmed they stored the record.
        stored: usize,
    },
}

/// Why a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryEnd {
    /// It ran to its end: the `k` closest known nodes answered, or no candidate was left, or (for
    /// `get_value`) the value was found, or (for `put_value`) every STORE was answered or timed out.
    Completed,
    /// [`Config::query_timeout`](crate::Config::query_timeout) passed; the result holds what was found.
    TimedOut,
    /// [`Config::max_queries`](crate::Config::max_queries) lookups were already running: nothing was
    /// sent and the result is empty.
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotContacted,
    Waiting,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: NodeId,
    /// XOR distance to the target, as integers for fast comparison.
    distance: (u128, u32),
    hop: u32,
    state: State,
}

/// The peer-selection state of one iterative lookup (no I/O: the node sends what it returns).
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    target: NodeId,
    local_id: NodeId,
    /// Sorted by distance to `target`; bounded by `max_candidates`.
    candidates: Vec<Candidate>,
    in_flight: usize,
    k: usize,
    alpha: usize,
    max_candidates: usize,
}

impl Lookup {
    pub(crate) fn new(
        target: NodeId,
        local_id: NodeId,
        initial: impl IntoIterator<Item = NodeId>,
        k: usize,
        alpha: usize,
        max_candidates: usize,
    ) -> Self {
        let mut lookup = Self {
            target,
            local_id,
            candidates: Vec::new(),
            in_flight: 0,
            k,
            alpha,
            max_candidates,
        };
        for id in initial {
            lookup.add(id, 1);
        }
        lookup
    }

    pub(crate) fn target(&self) -> NodeId {
        self.target
    }

    fn find(&self, id: &NodeId) -> Result<usize, usize> {
        let d = self.target.distance_key(id);
        self.candidates.binary_search_by(|c| c.distance.cmp(&d))
    }

    /// Adds a candidate unless it is us or already known (it keeps the hop it was first learned at).
    fn add(&mut self, id: NodeId, hop: u32) {
        if id == self.local_id {
            return;
        }
        let Err(i) = self.find(&id) else {
            return;
        };
        if i >= self.max_candidates {
            // Farther than every kept candidate while the list is full: useless to this lookup.
            return;
        }
        self.candidates.insert(
            i,
            Candidate {
                id,
                distance: self.target.distance_key(&id),
                hop,
                state: State::NotContacted,
            },
        );
        if self.candidates.len() > self.max_candidates {
            // Forget the farthest candidate not awaited: failed ones first, they are dead weight.
            let drop = self
                .candidates
                .iter()
                .rposition(|c| c.state == State::Failed)
                .or_else(|| {
                    self.candidates
                        .iter()
                        .rposition(|c| c.state != State::Waiting)
                });
            if let Some(j) = drop {
                self.candidates.remove(j);
            }
        }
    }

    /// `peer` answered with `closer`. Returns whether an answer from `peer` was awaited.
    pub(crate) fn on_success(&mut self, peer: &NodeId, closer: &[NodeId]) -> bool {
        let Ok(i) = self.find(peer) else {
            return false;
        };
        if self.candidates[i].state != State::Waiting {
            return false;
        }
        self.candidates[i].state = State::Succeeded;
        self.in_flight -= 1;
        let hop = self.candidates[i].hop.saturating_add(1);
        for id in closer {
            self.add(*id, hop);
        }
        true
    }

    /// `peer` failed to answer. Returns whether an answer from `peer` was awaited.
    pub(crate) fn on_failure(&mut self, peer: &NodeId) -> bool {
        let Ok(i) = self.find(peer) else {
            return false;
        };
        if self.candidates[i].state != State::Waiting {
            return false;
        }
        self.candidates[i].state = State::Failed;
        self.in_flight -= 1;
        true
    }

    /// Picks the candidates to ask now (marking them awaited) into `out`; returns whether the lookup is
    /// finished: the `k` closest candidates that did not fail have all answered (or none is left).
    pub(crate) fn poll(&mut self, out: &mut Vec<NodeId>) -> bool {
        let mut counted = 0;
        let mut done = true;
        for c in self.candidates.iter_mut() {
            if counted >= self.k {
                break;
            }
            match c.state {
                State::Failed => continue,
                State::Succeeded => {}
                State::Waiting => done = false,
                State::NotContacted => {
                    done = false;
                    if self.in_flight < self.alpha {
                        c.state = State::Waiting;
                        self.in_flight += 1;
                        out.push(c.id);
                    }
                }
            }
            counted += 1;
        }
        done
    }

    /// The `k` closest candidates that answered, closest first, and the largest hop among them.
    pub(crate) fn result(&self) -> (Vec<NodeId>, u32) {
        let mut rounds = 0;
        let closest = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Succeeded)
            .take(self.k)
            .map(|c| {
                rounds = rounds.max(c.hop);
                c.id
            })
            .collect();
        (closest, rounds)
    }

    /// The hop `peer` was learned at.
    pub(crate) fn hop_of(&self, peer: &NodeId) -> u32 {
        self.find(peer).map_or(0, |i| self.candidates[i].hop)
    }
}

/// What a query does beyond the lookup, and whom it reports to.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    FindNode,
    Bootstrap,
    /// A bucket refresh started by the node itself: no event.
    Refresh,
    GetValue,
    /// `republish` queries are the node's own and report no event.
    PutValue {
        record: Record,
        republish: bool,
    },
}

/// Where a query is.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Lookup,
    /// `put_value` after its lookup: STOREs sent, `pending` unanswered.
    Storing {
        pending: usize,
        stored: usize,
        rounds: u32,
        end: QueryEnd,
    },
}

/// A running query.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) kind: Kind,
    pub(crate) lookup: Lookup,
    pub(crate) deadline: Instant,
    pub(crate) requests: u32,
    pub(crate) phase: Phase,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ID_LEN;

    fn id(n: u8) -> NodeId {
        let mut b = [0u8; ID_LEN];
        b[ID_LEN - 1] = n;
        NodeId::from_bytes(b)
    }

    fn target() -> NodeId {
        id(0)
    }

    #[test]
    fn asks_alpha_at_a_time_closest_first() {
        let mut l = Lookup::new(target(), id(200), (1..=6).map(id), 2, 2, 10);
        let mut out = Vec::new();
        assert!(!l.poll(&mut out));
        assert_eq!(out, vec![id(1), id(2)]);
        out.clear();
        assert!(!l.poll(&mut out));
        assert!(out.is_empty(), "alpha requests already in flight");
        assert!(l.on_success(&id(1), &[]));
        assert!(!l.on_success(&id(1), &[]), "a second answer is not awaited");
        assert!(!l.poll(&mut out));
        // Only the k = 2 closest matter: id(3) is not asked while id(2) may still answer.
        assert!(out.is_empty());
        assert!(l.on_failure(&id(2)));
        assert!(!l.poll(&mut out));
        assert_eq!(out, vec![id(3)]);
        assert!(l.on_success(&id(3), &[]));
        out.clear();
        assert!(l.poll(&mut out), "the 2 closest live candidates answered");
        assert_eq!(l.result(), (vec![id(1), id(3)], 1));
    }

    #[test]
    fn hops_count_rounds_and_closer_contacts_are_followed() {
        let mut l = Lookup::new(target(), id(200), [id(50)], 1, 3, 10);
        let mut out = Vec::new();
        l.poll(&mut out);
        assert!(l.on_success(&id(50), &[id(20), id(200)]));
        out.clear();
        assert!(!l.poll(&mut out));
        assert_eq!(out, vec![id(20)], "the local id is never a candidate");
        assert!(l.on_success(&id(20), &[id(5), id(50)]));
        out.clear();
        l.poll(&mut out);
        assert_eq!(out, vec![id(5)]);
        assert!(l.on_success(&id(5), &[]));
        out.clear();
        assert!(l.poll(&mut out));
        assert_eq!(l.result(), (vec![id(5)], 3));
        assert_eq!(l.hop_of(&id(50)), 1, "re-learning keeps the first hop");
    }

    #[test]
    fn candidates_are_bounded_keeping_the_closest() {
        let mut l = Lookup::new(target(), id(200), (10..20).map(id), 2, 1, 4);
        assert_eq!(l.candidates.len(), 4);
        let mut out = Vec::new();
        l.poll(&mut out);
        assert_eq!(out, vec![id(10)]);
        l.on_success(&id(10), &[id(1), id(2), id(30)]);
        let ids: Vec<_> = l.candidates.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![id(1), id(2), id(10), id(11)]);
    }

    #[test]
    fn no_candidates_finishes_at_once() {
        let mut l = Lookup::new(target(), id(200), [], 20, 3, 60);
        let mut out = Vec::new();
        assert!(l.poll(&mut out));
        assert_eq!(l.result(), (vec![], 0));
    }
}
