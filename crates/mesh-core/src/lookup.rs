//! The probe lookup part ([`Node::find_node`](crate::Node::find_node)): each lookup is a pure state
//! machine, like kademlia-core's query. It says which probes to send in a round
//! ([`Lookups::next_round`]), takes the answers ([`Lookups::handle_nodes`]) and its round deadline
//! ([`Lookups::handle_timeout`]), and ends with a [`Finished`] report. The composer sends the probes.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};

use crate::Config;

#[derive(Debug)]
struct Lookup {
    target: NodeId,
    round: u32,
    requests: u32,
    deadline: Instant,
    outstanding: BTreeSet<u64>,
    /// Closest ids named by answers, bounded by `lookup_k`.
    found: BTreeSet<(kademlia_core::Distance, NodeId)>,
    /// Ids already probed toward (as `dst`).
    probed: BTreeSet<NodeId>,
    /// Link traversals of the rounds before this one (see [`Finished::hops`]).
    hops: u32,
    /// Link traversals (probe and answer) of the last answer of this round.
    round_hops: u32,
}

/// A probe to send: routed toward `dst`, as probe `probe`, through the `attempt`-th ranked first link
/// (or through the server when `via_server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) probe: u64,
    pub(crate) dst: NodeId,
    pub(crate) attempt: usize,
    pub(crate) via_server: bool,
}

/// A lookup that ended (becomes [`Event::LookupFinished`](crate::Event::LookupFinished)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finished {
    pub(crate) id: u64,
    pub(crate) target: NodeId,
    pub(crate) peers: Vec<NodeId>,
    pub(crate) rounds: u32,
    pub(crate) requests: u32,
    pub(crate) hops: u32,
}

/// What a lookup does after an answer or a deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for more answers.
    Wait,
    /// Start the next round: call [`Lookups::next_round`].
    NextRound,
    /// It ended.
    Finished(Finished),
}

/// A probe awaiting its answer: whose it is, where it went, and the link it left on.
#[derive(Debug)]
struct Outstanding {
    lookup: u64,
    dst: NodeId,
    /// The link the probe left on (`None`: through the server, or nowhere).
    first_hop: Option<NodeId>,
}

/// The running lookups and the probes they wait for.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    lookups: BTreeMap<u64, Lookup>,
    /// Probe id -> the probe.
    probes: BTreeMap<u64, Outstanding>,
}

impl Lookups {
    /// Number of running lookups.
    pub(crate) fn len(&self) -> usize {
        self.lookups.len()
    }

    /// Starts lookup `id` of `target`; its first round comes from [`Lookups::next_round`].
    pub(crate) fn start(&mut self, now: Instant, id: u64, target: NodeId) {
        self.lookups.insert(
            id,
            Lookup {
                target,
                round: 0,
                requests: 0,
                deadline: now,
                outstanding: BTreeSet::new(),
                found: BTreeSet::new(),
                probed: BTreeSet::new(),
                hops: 0,
                round_hops: 0,
            },
        );
    }

    /// The round deadline of lookup `id`.
    pub(crate) fn deadline(&self, id: u64) -> Option<Instant> {
        self.lookups.get(&id).map(|l| l.deadline)
    }

    /// The target of lookup `id`.
    pub(crate) fn target(&self, id: u64) -> Option<NodeId> {
        self.lookups.get(&id).map(|l| l.target)
    }

    /// The next round of lookup `id`, or its end after `lookup_max_rounds`.
    fn advance(&mut self, id: u64, config: &Config) -> Step {
        match self.lookups.get(&id) {
            None => Step::Wait,
            Some(l) if l.round >= config.lookup_max_rounds => {
                self.finish(id).map_or(Step::Wait, Step::Finished)
            }
            Some(_) => Step::NextRound,
        }
    }

    /// Starts the next round of lookup `id`: the probes to send, each with an id from `fresh_id`.
    /// Round 1 goes toward the target itself through different first links; later rounds toward the
    /// closest ids found so far that we have not probed yet (a different path into the target's
    /// neighborhood); the last round, or any round of a node with no link (`have_links`), asks the
    /// target through the server.
    pub(crate) fn next_round(
        &mut self,
        now: Instant,
        id: u64,
        local: NodeId,
        have_links: bool,
        mut fresh_id: impl FnMut() -> u64,
        config: &Config,
    ) -> Vec<Probe> {
        let Some(l) = self.lookups.get_mut(&id) else {
            return Vec::new();
        };
        l.round += 1;
        l.hops = l.hops.saturating_add(core::mem::take(&mut l.round_hops));
        l.deadline = now + config.lookup_round_timeout;
        let target = l.target;
        let last_round = l.round >= config.lookup_max_rounds;
        let round = l.round;
        let mut dsts: Vec<NodeId> = Vec::new();
        if round == 1 {
            dsts.extend(core::iter::repeat_n(target, config.lookup_parallelism));
        } else {
            for (_, p) in l.found.iter() {
                if dsts.len() >= config.lookup_parallelism {
                    break;
                }
                if *p != local && !l.probed.contains(p) {
                    dsts.push(*p);
                }
            }
            if dsts.is_empty() {
                dsts.push(target);
            }
        }
        let server = (last_round && round > 1 || !have_links) && config.server_fallback;
        if server {
            dsts = alloc::vec![target];
        }
        let mut probes = Vec::with_capacity(dsts.len());
        for (attempt, dst) in dsts.into_iter().enumerate() {
            // Ids are random (the composer draws them): a collision with a waiting probe is redrawn.
            let mut probe = fresh_id();
            for _ in 0..8 {
                if !self.probes.contains_key(&probe) {
                    break;
                }
                probe = fresh_id();
            }
            if self.probes.contains_key(&probe) {
                continue;
            }
            l.outstanding.insert(probe);
            l.requests += 1;
            l.probed.insert(dst);
            self.probes.insert(
                probe,
                Outstanding {
                    lookup: id,
                    dst,
                    first_hop: None,
                },
            );
            probes.push(Probe {
                probe,
                dst,
                attempt,
                via_server: server,
            });
        }
        probes
    }

    /// Probe `probe` left on the link to `first_hop` (`None`: through the server, or nowhere).
    pub(crate) fn sent(&mut self, probe: u64, first_hop: Option<NodeId>) {
        if let Some(p) = self.probes.get_mut(&probe) {
            p.first_hop = first_hop;
        }
    }

    /// Probe `probe` was answered by `from` (its signature verified) with `nodes`, `hops` link
    /// traversals there and back; the answer came over the link to `link` (`None`: through the
    /// server). Accepted only from the probe's addressee, or from a node behind the link the probe
    /// left on (a node it passed answers along the reversed path): anything else, an answer to no
    /// probe of ours included, is `None` and leaves the probe waiting. Returns the lookup's id and what
    /// it does next.
    pub(crate) fn handle_nodes(
        &mut self,
        probe: u64,
        from: NodeId,
        link: Option<NodeId>,
        nodes: Vec<NodeId>,
        hops: u32,
        config: &Config,
    ) -> Option<(u64, Step)> {
        let p = self.probes.get(&probe)?;
        if from != p.dst && (link.is_none() || link != p.first_hop) {
            return None;
        }
        let id = self.probes.remove(&probe)?.lookup;
        let k = config.lookup_k;
        let l = self.lookups.get_mut(&id)?;
        l.outstanding.remove(&probe);
        l.round_hops = hops;
        let target = l.target;
        for p in nodes.into_iter().take(k).chain(core::iter::once(from)) {
            l.found.insert((p.distance(&target), p));
        }
        while l.found.len() > k {
            l.found.pop_last();
        }
        let found = l.found.first().is_some_and(|e| e.1 == target);
        let idle = l.outstanding.is_empty();
        let step = if found {
            self.finish(id).map_or(Step::Wait, Step::Finished)
        } else if idle {
            self.advance(id, config)
        } else {
            Step::Wait
        };
        Some((id, step))
    }

    /// Lookup `id`'s round deadline passed: its outstanding probes are forgotten, and it goes on.
    pub(crate) fn handle_timeout(&mut self, id: u64, config: &Config) -> Step {
        if let Some(l) = self.lookups.get_mut(&id) {
            for p in core::mem::take(&mut l.outstanding) {
                self.probes.remove(&p);
            }
        }
        self.advance(id, config)
    }

    /// Ends lookup `id`.
    pub(crate) fn finish(&mut self, id: u64) -> Option<Finished> {
        let l = self.lookups.remove(&id)?;
        for p in &l.outstanding {
            self.probes.remove(p);
        }
        Some(Finished {
            id,
            target: l.target,
            peers: l.found.into_iter().map(|e| e.1).collect(),
            rounds: l.round,
            requests: l.requests,
            hops: l.hops.saturating_add(l.round_hops),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    fn start(config: &Config) -> (Lookups, Vec<Probe>, u64) {
        let mut lookups = Lookups::default();
        let mut next = 100;
        lookups.start(Instant::from_millis(1), 1, id(9));
        let probes = round(&mut lookups, Instant::from_millis(1), &mut next, config);
        (lookups, probes, next)
    }

    /// The next round of lookup 1 from `id(1)` at `now`, probes numbered on from `next`.
    fn round(lookups: &mut Lookups, now: Instant, next: &mut u64, config: &Config) -> Vec<Probe> {
        lookups.next_round(
            now,
            1,
            id(1),
            true,
            || {
                *next += 1;
                *next
            },
            config,
        )
    }

    #[test]
    fn the_first_round_probes_the_target_through_different_first_links() {
        let config = Config::default();
        let (lookups, probes, _) = start(&config);
        assert_eq!(probes.len(), config.lookup_parallelism);
        assert!(probes.iter().all(|p| p.dst == id(9) && !p.via_server));
        let attempts: Vec<usize> = probes.iter().map(|p| p.attempt).collect();
        assert_eq!(attempts, (0..config.lookup_parallelism).collect::<Vec<_>>());
        assert_eq!(
            lookups.deadline(1),
            Some(Instant::from_millis(1) + config.lookup_round_timeout)
        );
    }

    #[test]
    fn an_answer_naming_the_target_finishes_the_lookup() {
        let config = Config::default();
        let (mut lookups, probes, _) = start(&config);
        lookups.sent(probes[0].probe, Some(id(5)));
        let (id_, step) = lookups
            .handle_nodes(
                probes[0].probe,
                id(7),
                Some(id(5)),
                alloc::vec![id(9), id(8)],
                4,
                &config,
            )
            .expect("a probe of this lookup");
        assert_eq!(id_, 1);
        match step {
            Step::Finished(f) => {
                assert_eq!(f.peers[0], id(9));
                assert_eq!(f.rounds, 1);
                assert_eq!(f.hops, 4);
            }
            other => panic!("expected the end, got {other:?}"),
        }
        assert_eq!(lookups.len(), 0);
        // A late answer to another probe of the finished lookup is ignored.
        assert!(
            lookups
                .handle_nodes(probes[1].probe, id(9), None, Vec::new(), 1, &config)
                .is_none()
        );
    }

    #[test]
    fn answers_count_only_from_the_addressee_or_behind_the_probes_first_hop() {
        let config = Config::default();
        let (mut lookups, probes, _) = start(&config);
        let probe = probes[0].probe;
        lookups.sent(probe, Some(id(5)));
        let answer = |l: &mut Lookups, from, link| {
            l.handle_nodes(probe, from, link, alloc::vec![id(3)], 2, &config)
        };
        // A stranger, through the server or over another link: refused, and the probe still waits.
        assert!(answer(&mut lookups, id(6), None).is_none());
        assert!(answer(&mut lookups, id(6), Some(id(4))).is_none());
        // A node behind the link the probe left on: accepted.
        assert!(answer(&mut lookups, id(6), Some(id(5))).is_some());
        // The addressee itself (the target, in round 1), whichever way it came.
        let probe = probes[1].probe;
        lookups.sent(probe, Some(id(4)));
        assert!(
            lookups
                .handle_nodes(probe, id(9), None, Vec::new(), 2, &config)
                .is_some()
        );
    }

    #[test]
    fn a_lookup_without_answers_ends_after_its_last_round() {
        let config = Config::default();
        let (mut lookups, _, mut next) = start(&config);
        let mut rounds = 1;
        loop {
            match lookups.handle_timeout(1, &config) {
                Step::NextRound => {
                    let probes = round(&mut lookups, Instant::from_millis(2), &mut next, &config);
                    assert!(!probes.is_empty());
                    rounds += 1;
                }
                Step::Finished(f) => {
                    assert_eq!(f.rounds, config.lookup_max_rounds);
                    assert!(f.peers.is_empty());
                    break;
                }
                Step::Wait => panic!("a timed-out lookup never waits"),
            }
        }
        assert_eq!(rounds, config.lookup_max_rounds);
    }
}
