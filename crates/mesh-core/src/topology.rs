//! The topology part: the peer book, the per-peer and node-wide dial backoff, and the decisions of
//! which links to hold: admission, eviction, alternatives and dial plans. Every decision is a pure
//! function of this state and the links: it returns what to do (peers to dial, a link to evict), and
//! the composer ([`Node`](crate::Node)) does it.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use kademlia_core::{Instant, NodeId};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;

use crate::Config;
use crate::event::DisconnectReason;
use crate::link::{Link, LinkState, Links};
use crate::peer_book::{Backoff, PeerBook};

/// What a link is for, seen from this node (see [`Topology::role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Covers close class `i`.
    Close(usize),
    /// A long link, in a bucket above every close class.
    Long,
}

/// The topology's own state.
#[derive(Debug)]
pub(crate) struct Topology {
    pub(crate) local: NodeId,
    pub(crate) book: PeerBook,
    pub(crate) backoff: Backoff,
    /// Consecutive failed or lost links; delays the next dial (reset by a link coming up).
    pub(crate) failures: u32,
    pub(crate) next_dial: Instant,
    /// Since when the node has had a free slot (`None` while full).
    pub(crate) underfull_since: Option<Instant>,
    /// Ids our links named (their links, alternatives) that are not proven yet: never dialled nor
    /// handed out, checked a few at a time (see `Node::verify_candidates`); at most
    /// [`MAX_CANDIDATES`], the oldest forgotten.
    candidates: VecDeque<NodeId>,
    /// Checks under way: (probe id, candidate); at most [`MAX_CANDIDATES`].
    checks: VecDeque<(u64, NodeId)>,
}

/// Unproven ids a node keeps to check, and checks it keeps waiting.
pub(crate) const MAX_CANDIDATES: usize = 64;

/// Candidates checked per maintenance pass.
const CHECKS_PER_PASS: usize = 4;

impl Topology {
    pub(crate) fn new(local: NodeId, config: &Config) -> Self {
        Self {
            local,
            book: PeerBook::new(local, config.peer_book_bucket),
            backoff: Backoff::default(),
            failures: 0,
            next_dial: Instant::ZERO,
            underfull_since: None,
            candidates: VecDeque::new(),
            checks: VecDeque::new(),
        }
    }

    /// A link named `p` (one of its links, an alternative): a candidate until it proves itself.
    pub(crate) fn hear_of(&mut self, p: NodeId) {
        if p == self.local || self.book.contains(&p) || self.candidates.contains(&p) {
            return;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            self.candidates.pop_front();
        }
        self.candidates.push_back(p);
    }

    /// The next candidates to check (taken off the list), skipping those proven meanwhile.
    pub(crate) fn candidates_to_check(&mut self) -> Vec<NodeId> {
        let mut out = Vec::new();
        while out.len() < CHECKS_PER_PASS {
            let Some(c) = self.candidates.pop_front() else {
                break;
            };
            if !self.book.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Probe `probe` checks candidate `c`.
    pub(crate) fn checking(&mut self, probe: u64, c: NodeId) {
        if self.checks.len() >= MAX_CANDIDATES {
            self.checks.pop_front();
        }
        self.checks.push_back((probe, c));
    }

    /// Whether `from` answered probe `probe` as the candidate it checks (the check is then over).
    pub(crate) fn checked(&mut self, probe: u64, from: NodeId) -> bool {
        match self.checks.iter().position(|e| *e == (probe, from)) {
            Some(i) => {
                self.checks.remove(i);
                true
            }
            None => false,
        }
    }

    /// Records that `p` exists.
    pub(crate) fn learn(&mut self, now: Instant, p: NodeId) {
        if p != self.local {
            self.book.insert(p, now);
        }
    }

    /// A link came up: the node's dial backoff and the peer's reset.
    pub(crate) fn handle_link_up(&mut self, now: Instant, peer: NodeId) {
        self.failures = 0;
        self.next_dial = now;
        self.backoff.reset(&peer);
        self.learn(now, peer);
    }

    /// The link to `peer` closed for `reason` (it was up: `was_up`): backs off after a failure and
    /// forgets a peer that fell silent. Whether it counts as a failed attempt.
    pub(crate) fn handle_link_closed(
        &mut self,
        now: Instant,
        peer: NodeId,
        reason: DisconnectReason,
        was_up: bool,
        rng: &mut ChaCha8Rng,
        config: &Config,
    ) -> bool {
        let failure = matches!(
            reason,
            DisconnectReason::Timeout | DisconnectReason::Idle | DisconnectReason::Closed
        );
        if failure {
            self.failures = self.failures.saturating_add(1);
            let delay = backoff_delay(self.failures, rng, config);
            self.next_dial = now + delay;
            let peer_delay =
                backoff_delay(self.backoff.failures(&peer).saturating_add(1), rng, config);
            self.backoff
                .block(peer, now + peer_delay, config.max_backoff_entries);
        }
        if reason == DisconnectReason::Idle {
            // An up link fell silent: probably gone, stop proposing it. A failed attempt only backs
            // the peer off: across a partition, or after a lost signal, it is still the peer to
            // link to once it can be reached (a node that forgot every peer would be stuck).
            self.book.remove(&peer);
        }
        failure && !was_up
    }

    /// `peer` refused our link: each refusal from the same peer blocks it twice as long (30 s, 60 s,
    /// ... up to 8 min), so a full peer that keeps refusing is asked less and less often.
    pub(crate) fn handle_rejected(&mut self, now: Instant, peer: NodeId, config: &Config) {
        let refusals = self.backoff.failures(&peer).min(4);
        self.backoff.block(
            peer,
            now + (config.reconnect_backoff_max / 2) * (1 << refusals),
            config.max_backoff_entries,
        );
    }

    /// Paces the node's own dialling after a refusal or failure.
    pub(crate) fn pace(&mut self, now: Instant, rng: &mut ChaCha8Rng, config: &Config) {
        self.failures = self.failures.saturating_add(1);
        let delay = backoff_delay(self.failures, rng, config);
        self.next_dial = now + delay;
    }

    /// Number of links kept for closeness: the rest go to random peers.
    fn close_target(config: &Config) -> usize {
        config.max_peers - config.random_links
    }

    /// What a link to `peer` is for, seen from us, given `lowest`, the bucket of the closest peer we
    /// know: close class `i` covers the buckets `lowest + i * close_spacing ..` up to the next class;
    /// every bucket above the close classes is long.
    pub(crate) fn role(&self, lowest: usize, peer: &NodeId, config: &Config) -> Role {
        let bucket = self.local.bucket_index(peer).unwrap_or(0);
        let class = bucket.saturating_sub(lowest) / config.close_spacing;
        if class < Self::close_target(config) {
            Role::Close(class)
        } else {
            Role::Long
        }
    }

    /// Our links (in any state, or only up ones) grouped by role: one list per close class, then the
    /// long links. `None` before we know any peer.
    pub(crate) fn coverage(
        &self,
        links: &Links,
        up_only: bool,
        config: &Config,
    ) -> Option<(Vec<Vec<NodeId>>, Vec<NodeId>)> {
        let lowest = self.book.lowest_bucket()?;
        let mut close = alloc::vec![Vec::new(); Self::close_target(config)];
        let mut long = Vec::new();
        for (p, l) in links.iter() {
            if up_only && l.state != LinkState::Up {
                continue;
            }
            match self.role(lowest, p, config) {
                Role::Close(i) => close[i].push(*p),
                Role::Long => long.push(*p),
            }
        }
        Some((close, long))
    }

    /// The up link to evict when there are more than `max_peers`: the farthest link of a close class
    /// that has more than one, else the shortest of the long links beyond `random_links`. Every role
    /// (close class, long) keeps its links, so a newcomer that filled a gap or came closer than a
    /// class's link displaces only what is now redundant.
    pub(crate) fn surplus(&self, links: &Links, config: &Config) -> Option<NodeId> {
        if links.up().len() <= config.max_peers {
            return None;
        }
        let (close, long) = self.coverage(links, true, config)?;
        let local = self.local;
        close
            .iter()
            .filter(|class| class.len() > 1)
            .filter_map(|class| class.iter().max_by_key(|p| p.distance(&local)))
            .max_by_key(|p| p.distance(&local))
            .copied()
            .or_else(|| {
                (long.len() > config.random_links)
                    .then(|| long.iter().min_by_key(|p| p.distance(&local)).copied())
                    .flatten()
            })
    }

    /// Up to `alternatives` peers to propose to `peer` instead of us: our links and their links
    /// closest to it, those with free slots first (a neighbor list shorter than `max_peers` means a
    /// free slot). A link's link is handed out only when it is proven to us (in the peer book): a
    /// link's claims alone are never passed on.
    pub(crate) fn alternatives_for(
        &self,
        links: &Links,
        peer: &NodeId,
        config: &Config,
    ) -> Vec<NodeId> {
        let mut c: Vec<(bool, kademlia_core::Distance, NodeId)> = Vec::new();
        for (p, l) in links.iter() {
            if l.state != LinkState::Up || p == peer {
                continue;
            }
            c.push((
                l.neighbors.len() + 1 >= config.max_peers,
                p.distance(peer),
                *p,
            ));
            for n in &l.neighbors {
                if n != peer && *n != self.local && self.book.contains(n) {
                    c.push((true, n.distance(peer), *n));
                }
            }
        }
        c.sort();
        c.dedup_by_key(|e| e.2);
        c.into_iter()
            .map(|e| e.2)
            .take(config.alternatives)
            .collect()
    }

    /// Whether we accept a link from `peer` (its offer or its link request): while a slot is free;
    /// when full, if it covers a role we lack (a close class with no link, or a long link short of
    /// `random_links`), or is closer than our link of its close class (the spec's "a closer peer
    /// offers": the displaced link is evicted with alternatives). Long links are never displaced.
    pub(crate) fn admits(
        &self,
        links: &Links,
        joined: bool,
        peer: &NodeId,
        config: &Config,
    ) -> bool {
        if !joined {
            return false;
        }
        if links.len() < config.max_peers {
            return true;
        }
        let Some(lowest) = self.book.lowest_bucket() else {
            return true;
        };
        let Some((close, long)) = self.coverage(links, false, config) else {
            return true;
        };
        // The peer may be closer than anything we knew: its role is then class 0 of the new lowest.
        let lowest = self
            .local
            .bucket_index(peer)
            .map_or(lowest, |b| b.min(lowest));
        match self.role(lowest, peer, config) {
            Role::Close(i) => {
                let class = close.get(i).map_or(&[][..], Vec::as_slice);
                class.is_empty()
                    || class
                        .iter()
                        .all(|p| peer.distance(&self.local) < p.distance(&self.local))
            }
            Role::Long => long.len() < config.random_links,
        }
    }

    /// The dial plan: the peers to dial now to fill the roles we lack. Each close class with the
    /// closest known peer in its buckets, the long links with peers drawn bucket-uniformly from the
    /// buckets above (Kleinberg's harmonic distance distribution). While slots are free, as many dials
    /// as free slots; when full, one attempt at a time, toward a missing role or a peer closer than our
    /// closest link (class 0): when it comes up, the link it makes redundant is evicted.
    pub(crate) fn plan_dials(
        &mut self,
        now: Instant,
        links: &Links,
        joined: bool,
        rng: &mut ChaCha8Rng,
        config: &Config,
    ) -> Vec<NodeId> {
        // The dial backoff paces a node that keeps failing; a node with no link at all dials on
        // (one attempt per peer per its own backoff), or it could sit alone for a minute.
        let isolated = !links.values().any(Link::is_up);
        if !joined || now < self.next_dial && !isolated {
            return Vec::new();
        }
        let Some(lowest) = self.book.lowest_bucket() else {
            return Vec::new();
        };
        let Some((close, long)) = self.coverage(links, false, config) else {
            return Vec::new();
        };
        let pending = links.values().filter(|l| !l.is_up()).count();
        // The last free slot is left to incoming links for `link_fill_delay` before we dial to fill
        // it: while a mesh forms (or re-forms), a node full of its own choices refuses most newcomers,
        // and every refusal is a routed request and a routed answer.
        if links.len() >= config.max_peers {
            self.underfull_since = None;
        } else if self.underfull_since.is_none() {
            self.underfull_since = Some(now);
        }
        let reserve = usize::from(
            self.underfull_since
                .is_some_and(|t| now.saturating_duration_since(t) < config.link_fill_delay),
        );
        let free = config.max_peers.saturating_sub(links.len() + reserve);
        let spacing = config.close_spacing;
        let mut wanted: Vec<NodeId> = Vec::new();
        for (i, class) in close.iter().enumerate() {
            if !class.is_empty() {
                continue;
            }
            let range = lowest + i * spacing..lowest + (i + 1) * spacing;
            let pick = self.book.closest_in(range, |p| {
                links.contains_key(p) || !self.backoff.allows(p, now)
            });
            if let Some(p) = pick {
                wanted.push(p);
            }
        }
        let long_from = lowest + spacing * Self::close_target(config);
        let mut want_long = config.random_links.saturating_sub(long.len());
        if free > 0 {
            // Free slots that no close class can fill go to long links too.
            want_long = want_long.max(free.saturating_sub(wanted.len()));
        }
        for _ in 0..want_long {
            let pick = self.book.random(rng, long_from, |p| {
                links.contains_key(p) || !self.backoff.allows(p, now) || wanted.contains(p)
            });
            if let Some(p) = pick {
                wanted.push(p);
            }
        }
        // Slots still free and no role left to fill (a small mesh has no long range, or its classes
        // are taken): any peer we know will do, rather than a slot left empty.
        while wanted.len() < free {
            let pick = self.book.random(rng, 0, |p| {
                links.contains_key(p) || !self.backoff.allows(p, now) || wanted.contains(p)
            });
            match pick {
                Some(p) => wanted.push(p),
                None => break,
            }
        }
        if free > 0 {
            wanted.truncate(free);
            return wanted;
        }
        if pending > 0 {
            return Vec::new();
        }
        // Full: one attempt toward a peer closer than our closest link. A missing role of a full node
        // stays missing: the peers that would fill it are full too, and asking them one after another
        // costs a routed request and a refusal each.
        let local = self.local;
        let nearest_link = close
            .first()
            .and_then(|c| c.iter().map(|p| p.distance(&local)).min());
        self.book
            .closest_in(lowest..lowest + spacing, |p| {
                links.contains_key(p) || !self.backoff.allows(p, now)
            })
            .filter(|p| nearest_link.is_none_or(|d| p.distance(&local) < d))
            .into_iter()
            .collect()
    }

    /// When to look at the links again after a maintenance pass: a node whose slots are all up has
    /// little to do and looks less often (a lost link or a new introduction brings the next look
    /// forward).
    pub(crate) fn next_maintenance(
        now: Instant,
        links: &Links,
        rng: &mut ChaCha8Rng,
        config: &Config,
    ) -> Instant {
        let full = links.len() >= config.max_peers && links.values().all(Link::is_up);
        let interval = if full {
            config.full_maintenance_interval
        } else {
            config.maintenance_interval
        };
        let jitter = rng.random_range(0..=interval.as_micros() as u64 / 10);
        now + interval + Duration::from_micros(jitter)
    }
}

/// The exponential dial backoff after `failures` consecutive failures, with jitter.
pub(crate) fn backoff_delay(failures: u32, rng: &mut ChaCha8Rng, config: &Config) -> Duration {
    let base = config.reconnect_backoff.as_micros() as u64;
    let max = config.reconnect_backoff_max.as_micros() as u64;
    let exp = base
        .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
        .min(max);
    let jittered = exp / 2 + rng.random_range(0..=exp);
    Duration::from_micros(jittered)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;
    use crate::test_support::id;

    #[test]
    fn admission_needs_a_join_and_takes_anyone_while_a_slot_is_free() {
        let config = Config::default();
        let topology = Topology::new(id(1), &config);
        let links = Links::default();
        assert!(!topology.admits(&links, false, &id(2), &config));
        assert!(topology.admits(&links, true, &id(2), &config));
    }

    #[test]
    fn the_dial_plan_fills_free_slots_from_the_peer_book() {
        let config = Config::default();
        let mut topology = Topology::new(id(0x10), &config);
        let now = Instant::from_millis(1_000);
        for n in [0x11, 0x20, 0x40, 0x80, 0x90, 0xa0, 0xc0] {
            topology.learn(now, id(n));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let links = Links::default();
        assert!(
            topology
                .plan_dials(now, &links, false, &mut rng, &config)
                .is_empty()
        );
        let plan = topology.plan_dials(now, &links, true, &mut rng, &config);
        // One slot is left to incoming links for `link_fill_delay`.
        assert_eq!(plan.len(), config.max_peers - 1);
        assert!(plan.contains(&id(0x11)), "the closest peer fills class 0");
        let mut unique = plan.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), plan.len());
    }

    #[test]
    fn failures_back_off_and_an_idle_link_forgets_its_peer() {
        let config = Config::default();
        let mut topology = Topology::new(id(1), &config);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let now = Instant::from_millis(1_000);
        topology.learn(now, id(2));
        let failed = topology.handle_link_closed(
            now,
            id(2),
            DisconnectReason::Idle,
            true,
            &mut rng,
            &config,
        );
        assert!(
            !failed,
            "an up link that fell silent is not a failed attempt"
        );
        assert!(topology.next_dial > now);
        assert!(!topology.backoff.allows(&id(2), now));
        assert_eq!(topology.book.len(), 0);
        topology.handle_link_up(now, id(3));
        assert_eq!(topology.failures, 0);
        assert_eq!(topology.next_dial, now);
    }
}
