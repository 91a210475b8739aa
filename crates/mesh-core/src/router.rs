//! The router part: routed envelopes (building, sealing, checking), the next-hop decision, direct
//! messages awaiting acknowledgement with their retry deadlines, and duplicate suppression. It does no
//! I/O: the composer ([`Node`](crate::Node)) sends what it decides.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};
use p2pmesh_base::Identity;

use crate::event::Error;
use crate::frame::{Payload, Routed};
use crate::link::Links;
use crate::route;
use crate::{Config, SignatureCheck};

/// Room a routed envelope and its payload header take around application data.
pub(crate) const ROUTED_OVERHEAD: usize = 1024;

#[derive(Debug)]
pub(crate) struct PendingDirect {
    pub(crate) to: NodeId,
    pub(crate) data: Vec<u8>,
    pub(crate) attempts: u32,
    pub(crate) deadline: Instant,
    /// When it was first sent (µs since the epoch): every retry carries it, and so must its ack.
    pub(crate) sent_at: u64,
}

/// What a due direct message needs (see [`Router::handle_direct_timeout`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DirectStep {
    /// No acknowledgement after the last attempt: it failed.
    Failed { id: u64, to: NodeId },
    /// Send it again, as attempt `attempt` (1-based), through the server when `via_server`.
    Retry {
        id: u64,
        to: NodeId,
        data: Vec<u8>,
        attempt: u32,
        via_server: bool,
    },
}

/// Where a routed message goes next (see [`Router::next_hop`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    /// Over the link to this peer.
    Link(NodeId),
    /// Over the link back toward the previous node (backtracking).
    Back(NodeId),
    /// Nowhere on the mesh.
    DeadEnd,
}

/// The router's own state.
#[derive(Debug)]
pub(crate) struct Router {
    local: NodeId,
    /// Told of every routed message we sign ([`SignatureCheck::with_signed`]).
    check: SignatureCheck,
    next_id: u64,
    pending_direct: BTreeMap<u64, PendingDirect>,
    /// Direct messages (and link requests and offers from strangers) received inside the freshness
    /// window, by (sent_at, origin, id): the oldest first, so those that aged out are cut off the
    /// front. At most `max_seen_direct`.
    seen: BTreeSet<(u64, NodeId, u64)>,
    /// Others' routed messages handed to the signaling server (see `Config::server_relay_rate`).
    relays: TokenBucket,
}

/// A token bucket driven by the `now` of the inputs: `rate` tokens a second, at most `burst`, full at
/// first. Levels are in millionths of a token, so that no float is needed.
#[derive(Debug, Default)]
pub(crate) struct TokenBucket {
    level: u64,
    last: Option<Instant>,
}

impl TokenBucket {
    const UNIT: u64 = 1_000_000;

    /// Takes a token at `now` if there is one.
    pub(crate) fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let cap = u64::from(burst).saturating_mul(Self::UNIT);
        self.level = match self.last {
            None => cap,
            Some(last) => {
                let micros = u64::try_from(now.saturating_duration_since(last).as_micros())
                    .unwrap_or(u64::MAX);
                self.level
                    .saturating_add(micros.saturating_mul(u64::from(rate)))
                    .min(cap)
            }
        };
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
        if self.level >= Self::UNIT {
            self.level -= Self::UNIT;
            true
        } else {
            false
        }
    }
}

/// What a received direct message (or link request or offer) is (see [`Router::first_delivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Fresh and new: deliver it (it is remembered now).
    New,
    /// Received before, inside the window: a retry (acknowledge again) or a replay.
    Duplicate,
    /// Dated outside the freshness window: a replay, or a sender whose clock is off. Refused.
    Stale,
    /// New, but the memory is full of messages still inside the window: refused for now.
    Full,
}

impl Router {
    pub(crate) fn new(local: NodeId, check: SignatureCheck) -> Self {
        Self {
            local,
            check,
            next_id: 1,
            pending_direct: BTreeMap::new(),
            seen: BTreeSet::new(),
            relays: TokenBucket::default(),
        }
    }

    /// Whether another node's routed message may go through the signaling server at `now` (see
    /// `Config::server_relay_rate`); takes its token.
    pub(crate) fn relay_allowed(&mut self, now: Instant, config: &Config) -> bool {
        self.relays
            .take(now, config.server_relay_rate, config.server_relay_burst)
    }

    /// A new id for a command or an envelope (one sequence for all of them).
    pub(crate) fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Checks a direct message of `len` bytes may be sent now.
    pub(crate) fn check_direct(&self, len: usize, config: &Config) -> Result<(), Error> {
        let max = config
            .max_message_bytes
            .saturating_sub(ROUTED_OVERHEAD + usize::from(config.hop_limit) * 21 * 2);
        if len > max {
            return Err(Error::TooLarge { len, max });
        }
        if self.pending_direct.len() >= config.max_pending_direct {
            return Err(Error::TooManyPending);
        }
        Ok(())
    }

    /// Tracks direct message `id` until it is acknowledged; returns its retry deadline.
    pub(crate) fn start_direct(
        &mut self,
        now: Instant,
        id: u64,
        to: NodeId,
        data: Vec<u8>,
        config: &Config,
    ) -> Instant {
        let deadline = now + config.direct_retry_timeout;
        self.pending_direct.insert(
            id,
            PendingDirect {
                to,
                data,
                attempts: 1,
                deadline,
                sent_at: now.as_micros(),
            },
        );
        deadline
    }

    /// `from` acknowledged direct message `id` sent at `sent_at`: whether it was pending (and now is
    /// not). The date must match: an ack of an earlier run's message `id` (our ids restart at 1) does
    /// not acknowledge this one.
    pub(crate) fn handle_ack(&mut self, id: u64, from: NodeId, sent_at: u64) -> bool {
        if self
            .pending_direct
            .get(&id)
            .is_some_and(|p| p.to == from && p.sent_at == sent_at)
        {
            self.pending_direct.remove(&id);
            return true;
        }
        false
    }

    /// Every pending direct message, removed (the node leaves).
    pub(crate) fn take_pending(&mut self) -> BTreeMap<u64, PendingDirect> {
        core::mem::take(&mut self.pending_direct)
    }

    /// The retry deadline of direct message `id`, if it is pending.
    pub(crate) fn direct_deadline(&self, id: u64) -> Option<Instant> {
        self.pending_direct.get(&id).map(|p| p.deadline)
    }

    /// Direct message `id`'s retry deadline passed: it fails after `direct_attempts`, else goes again.
    pub(crate) fn handle_direct_timeout(
        &mut self,
        now: Instant,
        id: u64,
        config: &Config,
    ) -> Option<DirectStep> {
        let p = self.pending_direct.get_mut(&id)?;
        if p.attempts >= config.direct_attempts {
            let to = p.to;
            self.pending_direct.remove(&id);
            return Some(DirectStep::Failed { id, to });
        }
        p.attempts += 1;
        p.deadline = now + config.direct_retry_timeout;
        let attempt = p.attempts;
        Some(DirectStep::Retry {
            id,
            to: p.to,
            data: p.data.clone(),
            attempt,
            // One too large for the server stays on the mesh (the server would close us for it).
            via_server: attempt >= config.direct_attempts
                && config.server_fallback
                && p.data.len() + ROUTED_OVERHEAD <= config.max_signal_bytes,
        })
    }

    /// Whether a message dated `sent_at` (µs since the epoch) is inside the freshness window at `now`.
    pub(crate) fn fresh(now: Instant, sent_at: u64, config: &Config) -> bool {
        let oldest = now.saturating_sub(config.max_message_age).as_micros();
        let newest = now.saturating_add(config.max_clock_skew).as_micros();
        (oldest..=newest).contains(&sent_at)
    }

    /// Whether message `id` from `src` dated `sent_at` is new and fresh at `now`; a new one is
    /// remembered until it leaves the window (at most `max_seen_direct` at once).
    pub(crate) fn first_delivery(
        &mut self,
        now: Instant,
        src: NodeId,
        id: u64,
        sent_at: u64,
        config: &Config,
    ) -> Seen {
        // Those that aged out are refused by date from now on: forget them.
        let oldest = now.saturating_sub(config.max_message_age).as_micros();
        while self.seen.first().is_some_and(|e| e.0 < oldest) {
            self.seen.pop_first();
        }
        if !Self::fresh(now, sent_at, config) {
            return Seen::Stale;
        }
        if self.seen.contains(&(sent_at, src, id)) {
            return Seen::Duplicate;
        }
        if self.seen.len() >= config.max_seen_direct {
            return Seen::Full;
        }
        self.seen.insert((sent_at, src, id));
        Seen::New
    }

    /// Forgets message `id` from `src` dated `sent_at` (it was not handed over: its retry is new).
    pub(crate) fn forget(&mut self, src: NodeId, id: u64, sent_at: u64) {
        self.seen.remove(&(sent_at, src, id));
    }

    /// A routed envelope from us, signed unless it may go out unsigned (see [`Router::seal`]), dated
    /// `now` (a pending direct message's retry keeps the date of its first attempt).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn envelope(
        &self,
        now: Instant,
        identity: &Identity,
        dst: NodeId,
        id: u64,
        lookup: Option<NodeId>,
        payload: &Payload,
        config: &Config,
    ) -> Option<Routed> {
        let body = postcard::to_allocvec(payload).ok()?;
        let sent_at = match payload {
            Payload::Data(_) => self.pending_direct.get(&id).map(|p| p.sent_at),
            _ => None,
        };
        let mut r = Routed {
            src: self.local,
            dst,
            id,
            sent_at: sent_at.unwrap_or(now.as_micros()),
            lookup,
            hops_left: config.hop_limit,
            path: alloc::vec![self.local],
            route: Vec::new(),
            key: identity.public_key(),
            signature: Vec::new(),
            body,
        };
        if !may_go_unsigned(payload) {
            self.seal(identity, &mut r);
        }
        Some(r)
    }

    /// A reply to `request` that retraces its simple path backwards.
    pub(crate) fn reply_envelope(
        &self,
        identity: &Identity,
        request: &Routed,
        id: u64,
        payload: &Payload,
        config: &Config,
    ) -> Option<Routed> {
        let body = postcard::to_allocvec(payload).ok()?;
        let mut back = route::simple_path(&request.path);
        back.reverse();
        // back[0] is us.
        let route_rest: Vec<NodeId> = back.into_iter().skip(1).collect();
        let mut r = Routed {
            src: self.local,
            dst: request.src,
            id,
            // An ack names the message it acknowledges by id and date; other answers are dated as
            // their request too (the origin matches them to it).
            sent_at: request.sent_at,
            lookup: None,
            hops_left: config.hop_limit,
            path: alloc::vec![self.local],
            route: route_rest,
            key: identity.public_key(),
            signature: Vec::new(),
            body,
        };
        if !may_go_unsigned(payload) {
            self.seal(identity, &mut r);
        }
        Some(r)
    }

    /// Signs our own routed message `r` if it is still unsigned.
    ///
    /// A `Data` or `Ack` envelope stays unsigned only while it may leave unsigned: from us, straight
    /// over the verified link to its destination (whose hello bound the key to both DTLS
    /// fingerprints, so the link itself authenticates us). The composer seals it for every other
    /// first hop (another link, the server), so an unsigned envelope is never forwarded; the receiver
    /// enforces the same rule in [`Router::check_delivered`].
    pub(crate) fn seal(&self, identity: &Identity, r: &mut Routed) {
        if r.src == self.local && r.signature.is_empty() {
            let bytes =
                Routed::signed_bytes(&r.src, &r.dst, r.id, r.sent_at, r.lookup.as_ref(), &r.body);
            r.signature = self.check.sign(identity, &bytes).to_vec();
        }
    }

    /// Where `r` (carrying us last in its path) goes next. An explicit route first, while it runs
    /// over our up links (its head is the next hop, and stays in the frame: the receiver checks it is
    /// named there, see [`route::take_route`]); else greedy over the links' neighbor lists
    /// (`attempt` > 0 picks another first hop for our own messages), else back toward the previous
    /// node.
    pub(crate) fn next_hop(&self, links: &Links, r: &mut Routed, attempt: usize) -> Hop {
        if r.hops_left == 0 {
            return Hop::DeadEnd;
        }
        let explicit = r.route.first().copied().filter(|p| links.is_up(p));
        if let Some(p) = explicit {
            return Hop::Link(p);
        }
        r.route.clear();
        let views = views(links);
        if attempt > 0 && r.path.len() == 1 && !views.iter().any(|v| v.peer == r.dst) {
            let ranked = route::ranked(&self.local, &r.dst, &views, &r.path);
            return ranked
                .get(attempt % ranked.len().max(1))
                .copied()
                .map_or(Hop::DeadEnd, Hop::Link);
        }
        if let Some(p) = route::next_hop(&self.local, &r.dst, &views, &r.path) {
            return Hop::Link(p);
        }
        route::parent(&self.local, &r.path)
            .filter(|p| views.iter().any(|v| v.peer == *p))
            .map_or(Hop::DeadEnd, Hop::Back)
    }

    /// Whether a DHT request toward `key` that visited `path` has arrived here: no up link leads to
    /// a node closer to `key` than this one (see [`route::best_distance`]).
    pub(crate) fn arrived(&self, links: &Links, key: &NodeId, path: &[NodeId]) -> bool {
        route::best_distance(&self.local, key, &views(links), path)
            .is_none_or(|best| best >= self.local.distance(key))
    }

    /// Checks a routed message addressed to us, which came over the verified link to `link` or (when
    /// `None`) through the server, and decodes its payload. An unsigned envelope is accepted only
    /// straight from its origin over the verified link to it (the link authenticates the origin): src
    /// is the link's peer, the path is exactly [src, us] (no forwarding), not through the server, and
    /// only for a `Data` or `Ack`. Anything else unsigned fails as a bad signature.
    pub(crate) fn check_delivered(
        &self,
        links: &Links,
        r: &Routed,
        link: Option<NodeId>,
        check: SignatureCheck,
    ) -> Result<Payload, Rejected> {
        let unsigned_ok = r.signature.is_empty()
            && link.is_some_and(|peer| peer == r.src && links.is_up(&peer))
            && r.path.as_slice() == [r.src, self.local];
        if NodeId::from_public_key(&r.key) != r.src || !(unsigned_ok || signed_by_src(r, check)) {
            return Err(Rejected::BadSignature);
        }
        let payload: Payload = postcard::from_bytes(&r.body).map_err(|_| Rejected::Malformed)?;
        if r.signature.is_empty() && !may_go_unsigned(&payload) {
            return Err(Rejected::BadSignature);
        }
        Ok(payload)
    }
}

/// The router's view of the up links: each peer and the neighbor levels it announced.
fn views(links: &Links) -> Vec<route::LinkView<'_>> {
    links
        .iter()
        .filter(|(_, l)| l.is_up())
        .map(|(p, l)| route::LinkView {
            peer: *p,
            links: &l.neighbors,
            second: &l.second,
            third: &l.third,
            fourth: &l.fourth,
        })
        .collect()
}

/// Why a routed message for us was dropped (see [`Router::check_delivered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Its key or signature does not verify.
    BadSignature,
    /// Its payload does not decode.
    Malformed,
}

/// Whether `r` carries a valid signature of its origin (whose key hashes to `src`), checked with
/// `check`.
pub(crate) fn signed_by_src(r: &Routed, check: SignatureCheck) -> bool {
    NodeId::from_public_key(&r.key) == r.src
        && verify_with(
            check,
            &r.key,
            &Routed::signed_bytes(&r.src, &r.dst, r.id, r.sent_at, r.lookup.as_ref(), &r.body),
            &r.signature,
        )
}

/// Payloads whose envelope may travel unsigned straight over the verified link to its destination
/// (see [`Router::seal`] and [`Router::check_delivered`]).
pub(crate) fn may_go_unsigned(payload: &Payload) -> bool {
    matches!(payload, Payload::Data(_) | Payload::Ack)
}

/// ed25519 verification of `signature` (64 bytes) over `message` under `public_key`, the default way.
#[cfg(test)]
pub(crate) fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    verify_with(SignatureCheck::default(), public_key, message, signature)
}

/// ed25519 verification of `signature` (64 bytes) over `message` under `public_key`, done by the
/// node's [`SignatureCheck`] (memoized in a simulator).
pub(crate) fn verify_with(
    check: SignatureCheck,
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    (check.verifier())(public_key, message, &sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{id, identity};

    #[test]
    fn a_direct_message_is_retried_then_fails_and_its_deadline_follows() {
        let config = Config::default();
        let mut router = Router::new(id(1), SignatureCheck::default());
        let now = Instant::from_millis(1_000);
        let msg = router.fresh_id();
        let deadline = router.start_direct(now, msg, id(2), b"x".to_vec(), &config);
        assert_eq!(router.direct_deadline(msg), Some(deadline));
        let mut at = deadline;
        for attempt in 2..=config.direct_attempts {
            match router.handle_direct_timeout(at, msg, &config) {
                Some(DirectStep::Retry { attempt: a, .. }) => assert_eq!(a, attempt),
                other => panic!("expected a retry, got {other:?}"),
            }
            at = router.direct_deadline(msg).unwrap_or(at);
        }
        assert_eq!(
            router.handle_direct_timeout(at, msg, &config),
            Some(DirectStep::Failed { id: msg, to: id(2) })
        );
        assert_eq!(router.direct_deadline(msg), None);
    }

    #[test]
    fn only_the_addressee_acknowledges() {
        let config = Config::default();
        let mut router = Router::new(id(1), SignatureCheck::default());
        let now = Instant::from_millis(1);
        router.start_direct(now, 5, id(2), Vec::new(), &config);
        let at = now.as_micros();
        assert!(!router.handle_ack(5, id(3), at));
        // An ack of an earlier run's message 5 (another date) does not count.
        assert!(!router.handle_ack(5, id(2), at - 1));
        assert!(router.handle_ack(5, id(2), at));
        assert!(!router.handle_ack(5, id(2), at));
    }

    #[test]
    fn duplicates_are_suppressed_until_they_age_out_and_never_forgotten_early() {
        let config = Config {
            max_seen_direct: 2,
            ..Config::default()
        };
        let mut router = Router::new(id(1), SignatureCheck::default());
        let now = Instant::from_millis(100_000);
        let t = now.as_micros();
        assert_eq!(router.first_delivery(now, id(2), 1, t, &config), Seen::New);
        assert_eq!(
            router.first_delivery(now, id(2), 1, t, &config),
            Seen::Duplicate
        );
        assert_eq!(router.first_delivery(now, id(2), 2, t, &config), Seen::New);
        // Full of fresh ones: a new one waits (its sender retries) rather than one being forgotten.
        assert_eq!(router.first_delivery(now, id(3), 1, t, &config), Seen::Full);
        assert_eq!(
            router.first_delivery(now, id(2), 1, t, &config),
            Seen::Duplicate
        );
        // Too old or too far ahead: refused by date.
        let old = now.saturating_sub(config.max_message_age).as_micros() - 1;
        assert_eq!(
            router.first_delivery(now, id(3), 1, old, &config),
            Seen::Stale
        );
        let ahead = now.saturating_add(config.max_clock_skew).as_micros() + 1;
        assert_eq!(
            router.first_delivery(now, id(3), 1, ahead, &config),
            Seen::Stale
        );
        // Once the first ones left the window they are refused by date, and room is free again.
        let later = now + config.max_message_age + core::time::Duration::from_micros(1);
        assert_eq!(
            router.first_delivery(later, id(2), 1, t, &config),
            Seen::Stale
        );
        assert_eq!(
            router.first_delivery(later, id(3), 1, later.as_micros(), &config),
            Seen::New
        );
        // The same id from a sender that restarted (a later date) is another message.
        assert_eq!(
            router.first_delivery(later, id(2), 1, later.as_micros(), &config),
            Seen::New
        );
    }

    #[test]
    fn oversized_direct_messages_are_refused() {
        let config = Config::default();
        let router = Router::new(id(1), SignatureCheck::default());
        let len = config.max_message_bytes;
        assert!(matches!(
            router.check_direct(len, &config),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(router.check_direct(10, &config), Ok(()));
    }

    #[test]
    fn the_relay_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = TokenBucket::default();
        let t = Instant::from_millis(1_000);
        let taken = (0..30).filter(|_| bucket.take(t, 10, 20)).count();
        assert_eq!(taken, 20);
        // 10 a second: one more after 100 ms, none before.
        assert!(!bucket.take(t + core::time::Duration::from_millis(50), 10, 20));
        assert!(bucket.take(t + core::time::Duration::from_millis(100), 10, 20));
        assert!(!bucket.take(t + core::time::Duration::from_millis(100), 10, 20));
        // Never above the burst, however long the silence.
        let later = t + core::time::Duration::from_secs(3_600);
        assert_eq!((0..30).filter(|_| bucket.take(later, 10, 20)).count(), 20);
    }

    #[test]
    fn sealed_envelopes_verify_and_data_stays_unsigned_until_sealed() {
        let config = Config::default();
        let me = identity(1);
        let router = Router::new(me.id(), SignatureCheck::default());
        let data = router
            .envelope(
                Instant::from_millis(1),
                &me,
                id(9),
                3,
                None,
                &Payload::Data(b"hi".to_vec()),
                &config,
            )
            .expect("encodes");
        assert!(data.signature.is_empty());
        let mut sealed = data.clone();
        router.seal(&me, &mut sealed);
        assert!(signed_by_src(&sealed, SignatureCheck::default()));
        let request = router
            .envelope(
                Instant::from_millis(1),
                &me,
                id(9),
                4,
                None,
                &Payload::LinkRequest,
                &config,
            )
            .expect("encodes");
        assert!(signed_by_src(&request, SignatureCheck::default()));
    }
}
