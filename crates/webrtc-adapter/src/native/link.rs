//! One link: a peer connection with one negotiated data channel, and the task that owns it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;
use transport::{LinkError, LinkEvent, PeerId, PeerLink, Role};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceConnectionState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};

use crate::signal::{Candidate, Description, SdpType, Signal, sdp_fingerprint};

/// Capacity of the queue from the connection's event handler to the link task: ICE
/// candidates (a handful per link) and state changes.
pub(crate) const NOTE_CAPACITY: usize = 64;

const CONNECTING: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;

/// What the connection's event handler tells the link task. The handler runs on the
/// connection's driver and must return at once, so it only `try_send`s these.
#[derive(Debug)]
pub(crate) enum Note {
    Candidate(RTCIceCandidateInit),
    /// A protocol state changed; the driver may hold packets it queued while handling it.
    Wake,
    Failed(&'static str),
}

/// The [`PeerConnectionEventHandler`] of a link's connection.
pub(crate) struct Handler {
    pub(crate) notes: mpsc::Sender<Note>,
}

impl Handler {
    fn note(&self, note: Note) {
        if let Err(err) = self.notes.try_send(note) {
            // Only a wake can be lost in practice (64 slots, a few candidates per link).
            tracing::debug!(%err, "link note dropped");
        }
    }
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => self.note(Note::Candidate(init)),
            Err(err) => tracing::warn!(%err, "local ICE candidate not serialisable"),
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        tracing::trace!(?state, "ICE connection state");
        if state == RTCIceConnectionState::Connected {
            self.note(Note::Wake);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::trace!(?state, "connection state");
        match state {
            RTCPeerConnectionState::Connected => self.note(Note::Wake),
            RTCPeerConnectionState::Failed => self.note(Note::Failed("connection failed")),
            RTCPeerConnectionState::Closed => self.note(Note::Failed("connection closed")),
            _ => {}
        }
    }
}

/// The parts of a link shared by its handle and its task.
#[derive(Debug)]
pub(crate) struct Shared {
    state: AtomicU8,
}

/// A link to one peer: a `webrtc` peer connection with one reliable, ordered data channel
/// (negotiated out of band as stream 0 on both sides, so no DCEP round trip).
///
/// A task spawned by [`Connector::connect`](super::Connector) owns the channel's event stream
/// (`poll()`) and the connection's lifetime: it forwards events to
/// [`next_event`](PeerLink::next_event) through a bounded queue, closes the link when it does
/// not open within the open timeout, and always calls the connection's `close()` when the link
/// ends, is closed, or this handle is dropped.
pub struct Link {
    peer: PeerId,
    role: Role,
    pc: Arc<dyn PeerConnection>,
    dc: Arc<dyn DataChannel>,
    shared: Arc<Shared>,
    /// Signals produced by this handle (the offer or the answer), delivered before anything
    /// in `events`. At most one at a time.
    pending: VecDeque<LinkEvent>,
    events: mpsc::Receiver<LinkEvent>,
    /// Dropping it, or a message on it, ends the link task.
    close_tx: mpsc::Sender<()>,
    remote_description_set: bool,
    early_candidates: Vec<Candidate>,
    max_early_candidates: usize,
    /// Remote candidates taken so far (early ones included), at most `max_remote_candidates`.
    remote_candidates: usize,
    max_remote_candidates: usize,
    max_message_size: usize,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("role", &self.role)
            .field("state", &self.shared.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Everything [`Link::start`] needs.
pub(crate) struct Parts {
    pub(crate) peer: PeerId,
    pub(crate) role: Role,
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) dc: Arc<dyn DataChannel>,
    pub(crate) notes: mpsc::Receiver<Note>,
    pub(crate) event_capacity: usize,
    pub(crate) open_timeout: Duration,
    pub(crate) wake_interval: Duration,
    pub(crate) max_early_candidates: usize,
    pub(crate) max_remote_candidates: usize,
    pub(crate) max_message_size: usize,
}

fn setup_error(what: &str, err: impl std::fmt::Display) -> LinkError {
    LinkError::Setup(format!("{what}: {err}"))
}

impl Link {
    /// Spawns the link task; the initiator also makes its offer.
    pub(crate) async fn start(parts: Parts) -> Result<Link, LinkError> {
        let (events_tx, events) = mpsc::channel(parts.event_capacity.max(1));
        let (close_tx, close_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            state: AtomicU8::new(CONNECTING),
        });
        let task = Task {
            pc: parts.pc.clone(),
            dc: parts.dc.clone(),
            shared: shared.clone(),
            events: events_tx,
            notes: parts.notes,
            close_rx,
            deadline: Instant::now() + parts.open_timeout,
            wake_interval: parts.wake_interval,
        };
        tokio::spawn(task.run().in_current_span());
        let mut link = Link {
            peer: parts.peer,
            role: parts.role,
            pc: parts.pc,
            dc: parts.dc,
            shared,
            pending: VecDeque::with_capacity(1),
            events,
            close_tx,
            remote_description_set: false,
            early_candidates: Vec::new(),
            max_early_candidates: parts.max_early_candidates,
            remote_candidates: 0,
            max_remote_candidates: parts.max_remote_candidates,
            max_message_size: parts.max_message_size,
        };
        if link.role == Role::Initiator {
            // On failure the handle is dropped here, which ends the task and closes the
            // connection.
            link.describe_locally().await?;
        }
        Ok(link)
    }

    /// Whether the data channel is open.
    pub fn is_open(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) == OPEN
    }

    /// Creates this side's offer (initiator) or answer (responder), sets it as the local
    /// description and queues it as a signal for the peer.
    async fn describe_locally(&mut self) -> Result<(), LinkError> {
        let (created, create, set) = match self.role {
            Role::Initiator => (
                self.pc.create_offer(None).await,
                "create offer",
                "set local offer",
            ),
            Role::Responder => (
                self.pc.create_answer(None).await,
                "create answer",
                "set local answer",
            ),
        };
        let description = created.map_err(|e| setup_error(create, e))?;
        self.pc
            .set_local_description(description.clone())
            .await
            .map_err(|e| setup_error(set, e))?;
        let sdp_type = match self.role {
            Role::Initiator => SdpType::Offer,
            Role::Responder => SdpType::Answer,
        };
        self.pending.push_back(LinkEvent::Signal(
            Signal::Description(Description {
                sdp_type,
                sdp: description.sdp,
            })
            .to_json(),
        ));
        Ok(())
    }

    async fn apply_description(&mut self, desc: Description) -> Result<(), LinkError> {
        let expected = match self.role {
            Role::Initiator => SdpType::Answer,
            Role::Responder => SdpType::Offer,
        };
        if desc.sdp_type != expected || self.remote_description_set {
            return Err(LinkError::Setup(format!(
                "unexpected {:?} for a {:?} link",
                desc.sdp_type, self.role
            )));
        }
        let desc = match desc.sdp_type {
            SdpType::Offer => RTCSessionDescription::offer(desc.sdp),
            SdpType::Answer => RTCSessionDescription::answer(desc.sdp),
        }
        .map_err(|e| setup_error("remote description", e))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(|e| setup_error("set remote description", e))?;
        self.remote_description_set = true;
        if self.role == Role::Responder {
            self.describe_locally().await?;
        }
        for candidate in std::mem::take(&mut self.early_candidates) {
            self.add_candidate(candidate).await;
        }
        Ok(())
    }

    async fn add_candidate(&self, candidate: Candidate) {
        // One bad candidate does not fail the link: the others may still connect.
        if let Err(err) = self.pc.add_ice_candidate(to_init(candidate)).await {
            tracing::debug!(peer = %self.peer, %err, "remote ICE candidate rejected");
        }
    }
}

/// The sending half of a [`Link`] ([`PeerLink::sender`]): cloneable, for the task that sends,
/// apart from the one reading [`next_event`](PeerLink::next_event). A send waits while the
/// channel is full, and the peer's channel fills when nobody reads it: reading and sending from
/// one task can deadlock two peers that both send (see [`transport::LinkSender`]).
#[derive(Clone)]
pub struct LinkSender {
    dc: Arc<dyn DataChannel>,
    shared: Arc<Shared>,
    max_message_size: usize,
}

impl std::fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSender").finish_non_exhaustive()
    }
}

#[async_trait]
impl transport::LinkSender for LinkSender {
    /// Waits while the channel holds more than `send_buffer_limit` unacknowledged bytes.
    async fn send(&self, bytes: Vec<u8>) -> Result<(), LinkError> {
        match self.shared.state.load(Ordering::Acquire) {
            CONNECTING => return Err(LinkError::NotOpen),
            CLOSED => return Err(LinkError::Closed),
            _ => {}
        }
        if bytes.len() > self.max_message_size {
            // The trait has no variant for this yet (see the report in the crate docs).
            return Err(LinkError::Setup(format!(
                "message of {} bytes exceeds the {} byte limit",
                bytes.len(),
                self.max_message_size
            )));
        }
        self.dc
            .send(BytesMut::from(Bytes::from(bytes)))
            .await
            .map_err(|_| LinkError::Closed)
    }
}

#[async_trait]
impl PeerLink for Link {
    type Sender = LinkSender;

    fn peer(&self) -> &PeerId {
        &self.peer
    }

    fn sender(&self) -> LinkSender {
        LinkSender {
            dc: self.dc.clone(),
            shared: self.shared.clone(),
            max_message_size: self.max_message_size,
        }
    }

    async fn handle_signal(&mut self, signal: Value) -> Result<(), LinkError> {
        if self.shared.state.load(Ordering::Acquire) == CLOSED {
            return Err(LinkError::Closed);
        }
        match Signal::from_json(signal).map_err(|e| LinkError::Setup(e.to_string()))? {
            Signal::Description(desc) => self.apply_description(desc).await,
            Signal::Candidate(_) if self.remote_candidates >= self.max_remote_candidates => {
                Err(LinkError::Setup(format!(
                    "more than {} remote ICE candidates",
                    self.max_remote_candidates
                )))
            }
            Signal::Candidate(candidate) if self.remote_description_set => {
                self.remote_candidates += 1;
                self.add_candidate(candidate).await;
                Ok(())
            }
            Signal::Candidate(candidate) => {
                if self.early_candidates.len() < self.max_early_candidates {
                    self.remote_candidates += 1;
                    self.early_candidates.push(candidate);
                } else {
                    tracing::debug!(peer = %self.peer, "early ICE candidate dropped");
                }
                Ok(())
            }
            Signal::Ignored => Ok(()),
        }
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        if let Some(event) = self.pending.pop_front() {
            return Some(event);
        }
        self.events.recv().await
    }

    async fn close(&mut self) {
        self.shared.state.store(CLOSED, Ordering::Release);
        let _ = self.close_tx.try_send(());
        // The task closes it too; closing here as well means it is closed when this returns.
        if let Err(err) = self.pc.close().await {
            tracing::debug!(peer = %self.peer, %err, "close");
        }
    }
}

/// The task that owns a link's data-channel events and its connection's lifetime.
struct Task {
    pc: Arc<dyn PeerConnection>,
    dc: Arc<dyn DataChannel>,
    shared: Arc<Shared>,
    events: mpsc::Sender<LinkEvent>,
    notes: mpsc::Receiver<Note>,
    close_rx: mpsc::Receiver<()>,
    deadline: Instant,
    wake_interval: Duration,
}

/// At most this many data-channel events are taken per wake of the link task.
const DRAIN_BATCH: usize = 64;

/// What the task does with a data-channel event.
enum Step {
    Forward(LinkEvent),
    Skip,
    End(&'static str),
}

impl Task {
    async fn run(mut self) {
        let reason = match self.set_up().await {
            Ok(()) => self.forward().await,
            Err(reason) => reason,
        };
        self.shared.state.store(CLOSED, Ordering::Release);
        if let Err(err) = self.pc.close().await {
            tracing::debug!(%err, "close");
        }
        tracing::debug!(reason, "link closed");
        // Also after a local close(): the handle still gets its final Closed event. If the
        // handle is gone this fails at once.
        let _ = self.events.send(LinkEvent::Closed(reason.to_owned())).await;
    }

    /// Until the channel opens: forwards candidates, wakes the driver, enforces the open
    /// timeout. Returns once `Open` has been delivered.
    async fn set_up(&mut self) -> Result<(), &'static str> {
        let waking = !self.wake_interval.is_zero();
        let mut wake = tokio::time::interval(if waking {
            self.wake_interval
        } else {
            Duration::from_secs(3600)
        });
        wake.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = tokio::time::sleep_until(self.deadline);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                biased;
                _ = self.close_rx.recv() => return Err("closed locally"),
                note = self.notes.recv() => match self.note(note).await {
                    Step::Forward(event) => event,
                    Step::Skip => continue,
                    Step::End(reason) => return Err(reason),
                },
                event = self.dc.poll() => match event {
                    Some(DataChannelEvent::OnOpen) => match self.fingerprints().await {
                        Some((local_fingerprint, remote_fingerprint)) => {
                            self.shared.state.store(OPEN, Ordering::Release);
                            let open = LinkEvent::Open { local_fingerprint, remote_fingerprint };
                            self.emit(open).await?;
                            return Ok(());
                        }
                        None => return Err("no DTLS fingerprint in the descriptions"),
                    },
                    other => match channel_step(other) {
                        Step::Forward(event) => event,
                        Step::Skip => continue,
                        Step::End(reason) => return Err(reason),
                    },
                },
                _ = &mut deadline => return Err("open timeout"),
                _ = wake.tick(), if waking => {
                    self.wake_driver().await;
                    continue;
                }
            };
            self.emit(event).await?;
        }
    }

    /// While open: forwards messages (several per wake when they queue up) and late
    /// candidates until the link ends; returns why.
    async fn forward(&mut self) -> &'static str {
        loop {
            let step = tokio::select! {
                biased;
                _ = self.close_rx.recv() => return "closed locally",
                note = self.notes.recv() => self.note(note).await,
                event = self.dc.poll() => channel_step(event),
            };
            match step {
                Step::Forward(event) => {
                    if let Err(reason) = self.emit(event).await {
                        return reason;
                    }
                }
                Step::Skip => continue,
                Step::End(reason) => return reason,
            }
            // Take what else is ready without another trip through the scheduler.
            for _ in 0..DRAIN_BATCH {
                let Some(event) = self.dc.poll().now_or_never() else {
                    break;
                };
                match channel_step(event) {
                    Step::Forward(event) => {
                        if let Err(reason) = self.emit(event).await {
                            return reason;
                        }
                    }
                    Step::Skip => {}
                    Step::End(reason) => return reason,
                }
            }
        }
    }

    async fn note(&mut self, note: Option<Note>) -> Step {
        match note {
            Some(Note::Candidate(init)) => Step::Forward(LinkEvent::Signal(
                Signal::Candidate(from_init(init)).to_json(),
            )),
            Some(Note::Wake) => {
                if self.shared.state.load(Ordering::Acquire) == CONNECTING {
                    self.wake_driver().await;
                }
                Step::Skip
            }
            Some(Note::Failed(reason)) => Step::End(reason),
            // The handler lives as long as the connection, which this task holds.
            None => Step::End("connection gone"),
        }
    }

    /// Queues an event for the handle. Waiting here while the queue is full is the
    /// backpressure: the channel is not read, so the driver holds its messages and SCTP's
    /// window closes on the peer.
    async fn emit(&mut self, event: LinkEvent) -> Result<(), &'static str> {
        let permit = match self.events.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err("link dropped"),
            Err(mpsc::error::TrySendError::Full(())) => tokio::select! {
                biased;
                _ = self.close_rx.recv() => return Err("closed locally"),
                permit = self.events.reserve() => permit.map_err(|_| "link dropped")?,
            },
        };
        permit.send(event);
        Ok(())
    }

    /// Makes the connection's driver run its loop once more, which sends whatever packets the
    /// core queued since its last pass.
    ///
    /// `webrtc` 0.21's driver sends queued packets at the top of its loop, then drains the
    /// core's events, and handling those events queues new packets (the DTLS ClientHello when
    /// ICE selects a pair, the SCTP INIT when DTLS completes, the DCEP OPEN when SCTP does).
    /// Nothing wakes the loop for those, so they wait for the next timer: the ICE agent's,
    /// every 200 ms. Any call that ends in the crate's `wake_writes` wakes it; setting the
    /// channel's low-water mark to its current value is the cheapest one.
    async fn wake_driver(&self) {
        if let Ok(threshold) = self.dc.buffered_amount_low_threshold().await {
            let _ = self.dc.set_buffered_amount_low_threshold(threshold).await;
        }
    }

    async fn fingerprints(&self) -> Option<(String, String)> {
        let local = self.pc.current_local_description().await?;
        let remote = self.pc.current_remote_description().await?;
        Some((sdp_fingerprint(&local.sdp)?, sdp_fingerprint(&remote.sdp)?))
    }
}

/// The shared signal type of a local candidate from the `webrtc` crate.
fn from_init(init: RTCIceCandidateInit) -> Candidate {
    Candidate {
        candidate: init.candidate,
        sdp_mid: init.sdp_mid,
        sdp_mline_index: init.sdp_mline_index,
        username_fragment: init.username_fragment,
    }
}

/// A remote candidate as the `webrtc` crate takes it.
fn to_init(candidate: Candidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    }
}

/// What a data-channel event (other than `OnOpen` during setup) means for the link.
fn channel_step(event: Option<DataChannelEvent>) -> Step {
    match event {
        Some(DataChannelEvent::OnMessage(message)) => {
            Step::Forward(LinkEvent::Message(Vec::from(message.data.freeze())))
        }
        Some(DataChannelEvent::OnClose) | None => Step::End("closed by peer"),
        Some(DataChannelEvent::OnError) => Step::End("data channel error"),
        // A second OnOpen, closing, buffered-amount notices: `send` waits on the crate's own
        // buffer limit, so nothing to do.
        Some(_) => Step::Skip,
    }
}
