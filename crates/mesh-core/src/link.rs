//! The link part: one link's own state (set-up, hello and fingerprints, signaling kept to be sent
//! again, keepalive, the echo rate limit, reassembly of chunked frames), the decisions its timers take,
//! and its next deadline. It does no I/O: the composer ([`Node`](crate::Node)) acts on what it returns.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::time::Duration;

use kademlia_core::{Instant, NodeId};
use p2pmesh_base::Identity;

use crate::abuse::{Bucket, Charge};
use crate::event::HelloError;
use crate::frame::{Frame, Hello, Reassembly, Routed};
use crate::{Config, SignatureCheck};

/// Times a link attempt's signaling is sent again before `link_open_timeout` decides.
pub(crate) const SIGNAL_RESENDS: u32 = 3;

/// Signaling messages a link attempt keeps to send again.
pub(crate) const MAX_SENT_SIGNALS: usize = 16;

/// Frames kept from a peer that was up before the driver reported the link open here (each at
/// most `max_frame_bytes`); later ones are dropped and counted.
pub(crate) const MAX_EARLY_FRAMES: usize = 16;
/// Signaling ids a link remembers from its peer.
pub(crate) const MAX_HEARD_SIGNALS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// We asked the (lower-id) peer to initiate; nothing handed to the driver yet.
    Requested,
    /// `Connect` emitted; waiting for the driver's `handle_link_open`.
    Connecting,
    /// The data channel is open and our hello sent; waiting for the peer's hello.
    Open,
    /// The hello verified.
    Up,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) state: LinkState,
    pub(crate) since: Instant,
    /// Our fingerprint and the peer's, once the channel is open.
    pub(crate) fingerprints: Option<(Vec<u8>, Vec<u8>)>,
    /// A hello that arrived before the driver reported the link open.
    pub(crate) early_hello: Option<Hello>,
    /// Frames that followed that early hello (the peer was up before the driver reported the link
    /// open here: its tree places, neighbor lists), handled once the hello verifies; at most
    /// [`MAX_EARLY_FRAMES`].
    pub(crate) early_frames: Vec<Frame>,
    pub(crate) neighbors: Vec<NodeId>,
    /// The peer's links' links.
    pub(crate) second: Vec<NodeId>,
    /// The peer's links' links' links.
    pub(crate) third: Vec<NodeId>,
    /// A sample of the next level (see [`Neighbors::fourth`](crate::frame::Neighbors::fourth)).
    pub(crate) fourth: Vec<NodeId>,
    /// The SHA-1 of the neighbor-lists frame we last told this peer, to send only changes.
    pub(crate) announced: Option<[u8; 20]>,
    pub(crate) last_rx: Instant,
    pub(crate) last_tx: Instant,
    /// The ping sent to measure the link's round trip (its number, when it left), until its pong.
    pub(crate) probe: Option<(u64, Instant)>,
    pub(crate) reassembly: Reassembly,
    pub(crate) next_chunk_msg: u32,
    /// We make the offer (the lower id's side once a link is decided).
    pub(crate) initiator: bool,
    /// Signaling we sent for this attempt (link request, offer, answer, candidates), sealed, kept to be
    /// sent again; at most [`MAX_SENT_SIGNALS`].
    pub(crate) sent: Vec<Routed>,
    /// Ids of the peer's signaling received for this link, to drop duplicates; at most
    /// [`MAX_HEARD_SIGNALS`].
    pub(crate) heard: Vec<u64>,
    /// When our signaling goes out again if the peer has not answered it yet.
    pub(crate) resend_at: Option<Instant>,
    pub(crate) resends: u32,
    /// When we last sent our signaling again in answer to a duplicate of the peer's.
    pub(crate) last_echo: Option<Instant>,
    /// The peer's last signaling came through the server: ours goes back that way.
    pub(crate) via_server: bool,
    /// Our hello, sent again until the peer's verifies (a lost hello would stall the link).
    pub(crate) hello: Option<Hello>,
    pub(crate) hello_at: Option<Instant>,
    /// gossip-core's ack timeouts toward this peer (see `Node::on_ack_timeout`).
    pub(crate) ack_timeouts: u32,
    /// The peer's signature-check budget (`Config::link_verify_rate`), made at its first frame.
    budget: Option<Bucket>,
    /// When the peer was last charged flood offences for being over its budget.
    flood_offence_at: Option<Instant>,
    /// The peer's offence allowance (`Config::max_offences`), made at its first offence.
    offences: Option<Bucket>,
}

/// What a link's timers decided at one `handle_timeout` (see [`Link::handle_timeout`]).
#[derive(Debug, Default)]
pub(crate) struct LinkTimeout {
    /// The attempt did not open and verify in time.
    pub(crate) open_timed_out: bool,
    /// The up link fell silent.
    pub(crate) idle: bool,
    /// The up link needs a keepalive ping.
    pub(crate) ping: bool,
    /// Send the kept signaling again, as this attempt number.
    pub(crate) resend: Option<usize>,
    /// Send our hello again.
    pub(crate) hello: Option<Hello>,
    /// Partial messages dropped from reassembly.
    pub(crate) expired: usize,
}

/// What a signaling id from the peer is (see [`Link::hear`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    /// New: act on it.
    New,
    /// A duplicate; `echo`: send ours again now.
    Duplicate { echo: bool },
}

impl Link {
    pub(crate) fn new(state: LinkState, now: Instant) -> Self {
        Self {
            state,
            since: now,
            fingerprints: None,
            initiator: false,
            sent: Vec::new(),
            heard: Vec::new(),
            resend_at: None,
            resends: 0,
            last_echo: None,
            via_server: false,
            hello: None,
            hello_at: None,
            early_hello: None,
            early_frames: Vec::new(),
            neighbors: Vec::new(),
            second: Vec::new(),
            third: Vec::new(),
            fourth: Vec::new(),
            announced: None,
            last_rx: now,
            probe: None,
            last_tx: now,
            reassembly: Reassembly::default(),
            next_chunk_msg: 0,
            ack_timeouts: 0,
            budget: None,
            flood_offence_at: None,
            offences: None,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// Whether a repeat from the peer may be answered by sending ours again now: at most once per
    /// `every` (a duplicate hello or signaling message each asks for it). Counts the answer as sent.
    pub(crate) fn echo_due(&mut self, now: Instant, every: Duration) -> bool {
        if self.last_echo.is_some_and(|t| now < t + every) {
            return false;
        }
        self.last_echo = Some(now);
        true
    }

    /// The earliest time one of this link's timers is due.
    pub(crate) fn deadline(&self, config: &Config) -> Instant {
        match self.state {
            LinkState::Up => {
                let mut t = (self.last_tx + config.keepalive_interval)
                    .min(self.last_rx + config.link_idle_timeout);
                if let Some(x) = self.reassembly.next_expiry(config) {
                    t = t.min(x);
                }
                t
            }
            _ => {
                let mut t = self.since + config.link_open_timeout;
                if let Some(x) = self.resend_at {
                    t = t.min(x);
                }
                if self.state == LinkState::Open
                    && let Some(x) = self.hello_at
                {
                    t = t.min(x);
                }
                t
            }
        }
    }

    /// Runs this link's timers at `now`: reschedules its own and returns what the composer must do.
    pub(crate) fn handle_timeout(&mut self, now: Instant, config: &Config) -> LinkTimeout {
        let mut out = LinkTimeout::default();
        match self.state {
            LinkState::Up => {
                if now.saturating_duration_since(self.last_rx) >= config.link_idle_timeout {
                    out.idle = true;
                } else if now.saturating_duration_since(self.last_tx) >= config.keepalive_interval {
                    out.ping = true;
                }
                out.expired = self.reassembly.expire(now, config);
            }
            _ => {
                if now.saturating_duration_since(self.since) >= config.link_open_timeout {
                    out.open_timed_out = true;
                } else {
                    if self.resend_at.is_some_and(|t| t <= now) {
                        self.resends += 1;
                        self.resend_at = (self.resends < SIGNAL_RESENDS)
                            .then(|| now + config.signal_retry * (1 << self.resends.min(8)));
                        out.resend = Some(self.resends as usize);
                    }
                    if self.state == LinkState::Open && self.hello_at.is_some_and(|t| t <= now) {
                        self.hello_at = Some(now + config.signal_retry / 2);
                        out.hello = self.hello.clone();
                    }
                }
            }
        }
        out
    }

    /// The data channel opened with these fingerprints: the link waits for the peer's hello and
    /// returns ours (signed by `identity` through `check`), to be sent now and again until the
    /// peer's verifies.
    pub(crate) fn open(
        &mut self,
        now: Instant,
        identity: &Identity,
        check: SignatureCheck,
        local_fingerprint: Vec<u8>,
        remote_fingerprint: Vec<u8>,
        config: &Config,
    ) -> Hello {
        self.state = LinkState::Open;
        self.last_rx = now;
        let public_key = identity.public_key();
        let signature = check.sign(
            identity,
            &Hello::signed_bytes(&public_key, &local_fingerprint, &remote_fingerprint),
        );
        let hello = Hello {
            public_key,
            sender_fingerprint: local_fingerprint.clone(),
            receiver_fingerprint: remote_fingerprint.clone(),
            signature: signature.to_vec(),
        };
        self.fingerprints = Some((local_fingerprint, remote_fingerprint));
        self.hello = Some(hello.clone());
        self.hello_at = Some(now + config.signal_retry / 2);
        hello
    }

    /// Checks the peer's hello against this link (`peer`'s id, the fingerprints; the signature with
    /// `check`); `None` while the channel is not open (no fingerprints to check against).
    pub(crate) fn check_hello(
        &self,
        peer: &NodeId,
        hello: &Hello,
        check: SignatureCheck,
    ) -> Option<Result<(), HelloError>> {
        let (local_fp, remote_fp) = self.fingerprints.as_ref()?;
        if NodeId::from_public_key(&hello.public_key) != *peer {
            return Some(Err(HelloError::WrongKey));
        }
        if hello.sender_fingerprint != *remote_fp || hello.receiver_fingerprint != *local_fp {
            return Some(Err(HelloError::WrongFingerprint));
        }
        let signed = Hello::signed_bytes(
            &hello.public_key,
            &hello.sender_fingerprint,
            &hello.receiver_fingerprint,
        );
        if !crate::router::verify_with(check, &hello.public_key, &signed, &hello.signature) {
            return Some(Err(HelloError::BadSignature));
        }
        Some(Ok(()))
    }

    /// A frame from the peer that may cost a signature check arrived at `now`: whether it is within
    /// the peer's budget (`link_verify_rate` per second, bursts of twice that).
    pub(crate) fn charge(&mut self, now: Instant, config: &Config) -> Charge {
        let rate = config.link_verify_rate;
        let budget = self
            .budget
            .get_or_insert_with(|| Bucket::new(now, rate.saturating_mul(2), rate));
        if budget.take(now, 1) {
            return Charge::Ok;
        }
        if self
            .flood_offence_at
            .is_some_and(|t| now < t + Duration::from_secs(1))
        {
            return Charge::Drop;
        }
        self.flood_offence_at = Some(now);
        Charge::DropAndOffend
    }

    /// The peer committed `n` offences at `now`: whether it is past its allowance
    /// (`max_offences` in a burst, one forgiven per second).
    pub(crate) fn offend(&mut self, now: Instant, n: u32, config: &Config) -> bool {
        self.offences
            .get_or_insert_with(|| Bucket::new(now, config.max_offences, 1))
            .drain(now, n)
    }

    /// A frame goes out on the link at `now`: the chunk message number to use.
    pub(crate) fn next_message(&mut self, now: Instant) -> u32 {
        self.last_tx = now;
        let msg = self.next_chunk_msg;
        self.next_chunk_msg = self.next_chunk_msg.wrapping_add(1);
        msg
    }

    /// Keeps our signaling `envelope` (sealed) to send it again while the attempt is not up; the side
    /// that asks schedules the resend.
    pub(crate) fn keep_sent(&mut self, now: Instant, envelope: Routed, retry: Duration) {
        if self.state == LinkState::Up || self.sent.len() >= MAX_SENT_SIGNALS {
            return;
        }
        // Kept signed: sending it again costs no signature.
        self.sent.push(envelope);
        let asks = self.state == LinkState::Requested || self.initiator && self.heard.is_empty();
        if asks && self.resend_at.is_none() {
            self.resend_at = Some(now + retry);
        }
    }

    /// Signaling `id` from the peer arrived (through the server when `via_server`): new, or a
    /// duplicate that our side answers by sending its own again (at most once per `half`).
    pub(crate) fn hear(
        &mut self,
        now: Instant,
        id: u64,
        via_server: bool,
        half: Duration,
    ) -> Heard {
        self.via_server = via_server;
        if self.heard.contains(&id) {
            let echo =
                self.state != LinkState::Up && !self.sent.is_empty() && self.echo_due(now, half);
            return Heard::Duplicate { echo };
        }
        if self.heard.len() >= MAX_HEARD_SIGNALS {
            self.heard.remove(0);
        }
        self.heard.push(id);
        self.resend_at = None;
        Heard::New
    }
}

/// Every link of a node, by peer, with the set of links whose deadline may have moved since the
/// timer table last saw them (every mutable access marks the link).
#[derive(Debug, Default)]
pub(crate) struct Links {
    map: BTreeMap<NodeId, Link>,
    dirty: BTreeSet<NodeId>,
}

impl Links {
    pub(crate) fn get(&self, peer: &NodeId) -> Option<&Link> {
        self.map.get(peer)
    }

    /// The link to `peer`, marked for the timer table.
    pub(crate) fn get_mut(&mut self, peer: &NodeId) -> Option<&mut Link> {
        let link = self.map.get_mut(peer)?;
        self.dirty.insert(*peer);
        Some(link)
    }

    pub(crate) fn insert(&mut self, peer: NodeId, link: Link) {
        self.dirty.insert(peer);
        self.map.insert(peer, link);
    }

    pub(crate) fn remove(&mut self, peer: &NodeId) -> Option<Link> {
        self.dirty.insert(*peer);
        self.map.remove(peer)
    }

    pub(crate) fn contains_key(&self, peer: &NodeId) -> bool {
        self.map.contains_key(peer)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.map.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Link> {
        self.map.values()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&NodeId, &Link)> {
        self.map.iter()
    }

    /// Whether the link to `peer` is up.
    pub(crate) fn is_up(&self, peer: &NodeId) -> bool {
        self.map.get(peer).is_some_and(Link::is_up)
    }

    /// Peers whose link is up, in id order.
    pub(crate) fn up(&self) -> Vec<NodeId> {
        self.map
            .iter()
            .filter(|(_, l)| l.is_up())
            .map(|(p, _)| *p)
            .collect()
    }

    /// The links marked since the last call, with their deadline (`None`: the link is gone).
    pub(crate) fn take_dirty(&mut self, config: &Config) -> Vec<(NodeId, Option<Instant>)> {
        let dirty = core::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|p| (p, self.map.get(&p).map(|l| l.deadline(config))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bare_routed, id};

    #[test]
    fn an_up_link_pings_when_quiet_and_goes_idle_when_silent() {
        let config = Config::default();
        let start = Instant::from_millis(1_000);
        let mut link = Link::new(LinkState::Up, start);
        let ping_at = start + config.keepalive_interval;
        assert_eq!(
            link.deadline(&config),
            ping_at.min(start + config.link_idle_timeout)
        );
        let early = link.handle_timeout(ping_at - Duration::from_millis(1), &config);
        assert!(!early.ping && !early.idle);
        assert!(link.handle_timeout(ping_at, &config).ping);
        let silent = link.handle_timeout(start + config.link_idle_timeout, &config);
        assert!(silent.idle && !silent.ping);
    }

    #[test]
    fn requested_signaling_is_resent_with_a_growing_delay_then_the_attempt_times_out() {
        let config = Config {
            link_open_timeout: Duration::from_secs(120),
            ..Config::default()
        };
        let start = Instant::from_millis(1_000);
        let mut link = Link::new(LinkState::Requested, start);
        link.keep_sent(start, bare_routed(id(1), id(2)), config.signal_retry);
        let mut at = link.deadline(&config);
        assert_eq!(at, start + config.signal_retry);
        let mut attempts = Vec::new();
        while at < start + config.link_open_timeout {
            let t = link.handle_timeout(at, &config);
            attempts.extend(t.resend);
            at = link.deadline(&config);
        }
        assert_eq!(attempts, [1, 2, 3]);
        assert!(link.handle_timeout(at, &config).open_timed_out);
    }

    #[test]
    fn duplicate_signaling_is_echoed_at_most_once_per_half_retry() {
        let half = Duration::from_millis(500);
        let now = Instant::from_millis(1_000);
        let mut link = Link::new(LinkState::Connecting, now);
        link.keep_sent(now, bare_routed(id(1), id(2)), half * 2);
        assert_eq!(link.hear(now, 7, false, half), Heard::New);
        assert_eq!(
            link.hear(now, 7, true, half),
            Heard::Duplicate { echo: true }
        );
        assert!(link.via_server);
        assert_eq!(
            link.hear(now, 7, true, half),
            Heard::Duplicate { echo: false }
        );
        assert_eq!(
            link.hear(now + half, 7, true, half),
            Heard::Duplicate { echo: true }
        );
    }

    #[test]
    fn every_mutable_access_marks_the_link_for_the_timer_table() {
        let config = Config::default();
        let now = Instant::from_millis(1);
        let mut links = Links::default();
        links.insert(id(1), Link::new(LinkState::Up, now));
        links.insert(id(2), Link::new(LinkState::Requested, now));
        assert_eq!(links.take_dirty(&config).len(), 2);
        assert!(links.take_dirty(&config).is_empty());
        let _ = links.get(&id(1));
        assert!(links.take_dirty(&config).is_empty());
        if let Some(l) = links.get_mut(&id(1)) {
            l.last_tx = now + Duration::from_secs(1);
        }
        links.remove(&id(2));
        let dirty = links.take_dirty(&config);
        assert_eq!(
            dirty,
            [
                (id(1), links.get(&id(1)).map(|l| l.deadline(&config))),
                (id(2), None)
            ]
        );
    }
}
