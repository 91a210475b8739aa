//! The browser implementation, on the page's `RTCPeerConnection` (web-sys).
//!
//! Each link is an actor: [`Connector::connect`] spawns a task (on the page's event loop) that
//! owns the `RTCPeerConnection`, its negotiated `RTCDataChannel` and the closures of their
//! callbacks. The [`Link`] and [`LinkSender`] handles hold only bounded channels to it, so they
//! are `Send` as the transport traits require, and no JavaScript object leaves the task.
//!
//! The callbacks only `try_send` a [`Note`] to the task; the task turns notes into
//! [`LinkEvent`]s in order. A browser's data channel cannot pause its sender (there is no
//! receive-side flow control in the API), so a link whose reader falls behind by more than
//! [`Config::event_capacity`] messages is closed with reason `"receive queue full"` rather
//! than let memory grow.
//!
//! Every connection is closed (channel and connection `close()`, callbacks unset, closures
//! dropped) when its link ends, whatever the reason; [`live_connections`] counts the ones not
//! closed yet (Chromium refuses more than 500 per page, counting closed ones until they are
//! garbage-collected).

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use async_trait::async_trait;
use js_sys::{Array, ArrayBuffer, Reflect, Uint8Array};
use p2pmesh_rt::Instant;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use transport::{LinkConnector, LinkError, LinkEvent, PeerId, PeerLink, Role};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::{Closure, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelType,
    RtcIceCandidateInit, RtcIceConnectionState, RtcIceServer, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

use crate::signal::{Candidate, Description, SdpType, Signal, sdp_fingerprint};
use crate::{CHANNEL_ID, CHANNEL_LABEL, Config};

/// Connections created and not closed yet, on this page.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many `RTCPeerConnection`s this crate has created on this page and not closed yet.
///
/// A link's connection is closed when the link ends for any reason (closed by either side,
/// failed, timed out, or its handle dropped). Chromium counts connections against a limit of
/// 500 per page until they are garbage-collected, so an application can check that it does not
/// leak any.
pub fn live_connections() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Notes kept free in the callbacks' queue for what is not a message (state changes,
/// candidates, the channel's open and close), so that a flood of messages cannot crowd out the
/// note that ends the link.
const CONTROL_RESERVE: usize = 64;
/// Signals and closes queued from the handle to the task.
const COMMAND_CAPACITY: usize = 16;
/// Messages queued from the senders to the task (each send also waits for its result).
const SEND_CAPACITY: usize = 16;
/// Chromium fails a send, and closes the channel, past 16 MiB queued; stay well below it.
const BROWSER_SEND_QUEUE_MAX: usize = 8 << 20;

const CONNECTING: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;

/// The state the handles read without asking the task.
#[derive(Debug)]
struct Shared {
    state: AtomicU8,
    /// The largest message `send` takes: [`Config::max_message_size`], lowered at open to the
    /// peer's SCTP `max-message-size` if that is smaller.
    max_message_size: AtomicUsize,
}

impl Shared {
    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
    }
}

/// What a callback tells the link task.
#[derive(Debug)]
enum Note {
    Candidate(Candidate),
    Open,
    Message(Vec<u8>),
    BufferedLow,
    End(&'static str),
}

/// What the handle asks of the link task.
enum Command {
    Signal(Signal, oneshot::Sender<Result<(), LinkError>>),
    /// Answered once the connection is closed.
    Close(oneshot::Sender<()>),
}

/// One message to send, and where its result goes.
type Outgoing = (Vec<u8>, oneshot::Sender<Result<(), LinkError>>);

fn js_error(value: &JsValue) -> String {
    if let Some(text) = value.as_string() {
        return text;
    }
    Reflect::get(value, &JsValue::from_str("message"))
        .ok()
        .and_then(|message| message.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

fn setup_error(what: &str, err: &JsValue) -> LinkError {
    LinkError::Setup(format!("{what}: {}", js_error(err)))
}

/// Opens [`Link`]s with the browser's `RTCPeerConnection`.
///
/// Of the [`Config`], the browser uses `ice_servers`, `open_timeout`, `send_buffer_limit`
/// (capped at 8 MiB, half of what Chromium queues per channel), `max_message_size`,
/// `event_capacity`, `max_early_candidates` and `max_remote_candidates`; the socket, mDNS and ICE-timing fields are the
/// browser's business and are ignored.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Arc<Config>,
}

impl Connector {
    /// A connector with `config`. Links run as tasks on the page's event loop.
    pub fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

#[async_trait]
impl LinkConnector for Connector {
    type Link = Link;

    /// Creates the connection in the link's task; an [`Role::Initiator`] link's first event is
    /// its offer.
    async fn connect(&self, peer: PeerId, role: Role) -> Result<Link, LinkError> {
        let config = self.config.clone();
        let shared = Arc::new(Shared {
            state: AtomicU8::new(CONNECTING),
            max_message_size: AtomicUsize::new(config.max_message_size),
        });
        let (ready_tx, ready) = oneshot::channel();
        let (commands, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events_tx, events) = mpsc::channel(config.event_capacity.max(1));
        let (sends, sends_rx) = mpsc::channel(SEND_CAPACITY);
        let channels = Channels {
            commands: commands_rx,
            sends: sends_rx,
        };
        // The task runs on; dropping its handle does not stop it.
        drop(p2pmesh_rt::spawn(run_link(
            config.clone(),
            role,
            shared.clone(),
            channels,
            events_tx,
            ready_tx,
        )));
        match ready.await {
            Ok(Ok(())) => Ok(Link {
                peer,
                role,
                shared: shared.clone(),
                commands,
                events,
                sender: LinkSender { sends, shared },
            }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(LinkError::Setup("link task ended".into())),
        }
    }
}

/// A link to one peer: a browser `RTCPeerConnection` with one reliable, ordered data channel
/// (negotiated out of band as stream [`CHANNEL_ID`] on both sides).
///
/// A task owns the connection; this handle talks to it over bounded queues. Dropping the
/// handle ends the link and closes the connection.
pub struct Link {
    peer: PeerId,
    role: Role,
    shared: Arc<Shared>,
    /// Dropping it ends the link task.
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<LinkEvent>,
    sender: LinkSender,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("role", &self.role)
            .field("state", &self.shared.state())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Whether the data channel is open.
    pub fn is_open(&self) -> bool {
        self.shared.state() == OPEN
    }
}

#[async_trait]
impl PeerLink for Link {
    type Sender = LinkSender;

    fn peer(&self) -> &PeerId {
        &self.peer
    }

    fn sender(&self) -> LinkSender {
        self.sender.clone()
    }

    async fn handle_signal(&mut self, signal: Value) -> Result<(), LinkError> {
        if self.shared.state() == CLOSED {
            return Err(LinkError::Closed);
        }
        let signal = Signal::from_json(signal).map_err(|e| LinkError::Setup(e.to_string()))?;
        if matches!(signal, Signal::Ignored) {
            return Ok(());
        }
        let (reply, result) = oneshot::channel();
        self.commands
            .send(Command::Signal(signal, reply))
            .await
            .map_err(|_| LinkError::Closed)?;
        result.await.unwrap_or(Err(LinkError::Closed))
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    /// Returns once the connection is closed; [`next_event`](PeerLink::next_event) then
    /// reports `Closed("closed locally")`.
    async fn close(&mut self) {
        self.shared.set(CLOSED);
        let (ack, closed) = oneshot::channel();
        if self.commands.send(Command::Close(ack)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// The sending half of a [`Link`]: cloneable and `Send`; it hands messages to the link's task.
#[derive(Clone)]
pub struct LinkSender {
    sends: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSender").finish_non_exhaustive()
    }
}

#[async_trait]
impl transport::LinkSender for LinkSender {
    /// Waits while the channel's `bufferedAmount` is above `send_buffer_limit`.
    async fn send(&self, bytes: Vec<u8>) -> Result<(), LinkError> {
        match self.shared.state() {
            CONNECTING => return Err(LinkError::NotOpen),
            CLOSED => return Err(LinkError::Closed),
            _ => {}
        }
        let max_message_size = self.shared.max_message_size.load(Ordering::Relaxed);
        if bytes.len() > max_message_size {
            // The same error as the native adapter's.
            return Err(LinkError::Setup(format!(
                "message of {} bytes exceeds the {} byte limit",
                bytes.len(),
                max_message_size
            )));
        }
        let (reply, result) = oneshot::channel();
        self.sends
            .send((bytes, reply))
            .await
            .map_err(|_| LinkError::Closed)?;
        result.await.unwrap_or(Err(LinkError::Closed))
    }
}

/// The task's ends of the handles' queues.
struct Channels {
    commands: mpsc::Receiver<Command>,
    sends: mpsc::Receiver<Outgoing>,
}

/// The JavaScript objects of one link. Dropping it closes them and unsets their callbacks
/// before the closures are dropped, so no callback can run into a dropped closure.
struct Connection {
    pc: RtcPeerConnection,
    dc: RtcDataChannel,
    _callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Connection {
    fn new(config: &Config, notes: mpsc::Sender<Note>) -> Result<Connection, LinkError> {
        let rtc_config = RtcConfiguration::new();
        let servers = Array::new();
        for server in &config.ice_servers {
            let ice = RtcIceServer::new();
            let urls = Array::new();
            for url in &server.urls {
                urls.push(&JsValue::from_str(url));
            }
            ice.set_urls(&urls);
            if !server.username.is_empty() {
                ice.set_username(&server.username);
            }
            if !server.credential.is_empty() {
                ice.set_credential(&server.credential);
            }
            servers.push(&ice);
        }
        rtc_config.set_ice_servers(&servers);
        let pc = RtcPeerConnection::new_with_configuration(&rtc_config)
            .map_err(|e| setup_error("peer connection", &e))?;
        LIVE.fetch_add(1, Ordering::Relaxed);
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(CHANNEL_ID);
        init.set_ordered(true);
        let dc = pc.create_data_channel_with_data_channel_dict(CHANNEL_LABEL, &init);
        let mut connection = Connection {
            pc,
            dc,
            _callbacks: Vec::with_capacity(8),
        };
        connection
            .dc
            .set_binary_type(RtcDataChannelType::Arraybuffer);
        connection
            .dc
            .set_buffered_amount_low_threshold(u32::try_from(send_limit(config) / 2).unwrap_or(0));
        connection.listen(notes);
        Ok(connection)
    }

    /// Sets the callbacks; each only queues a note for the task.
    fn listen(&mut self, notes: mpsc::Sender<Note>) {
        let control = move |notes: &mpsc::Sender<Note>, note: Note| {
            if let Err(err) = notes.try_send(note) {
                tracing::debug!(%err, "link note dropped");
            }
        };

        let tx = notes.clone();
        let on_candidate = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let event: RtcPeerConnectionIceEvent = event.unchecked_into();
            // `None`, or an empty candidate, marks the end of gathering: nothing to send.
            let Some(candidate) = event.candidate() else {
                return;
            };
            let text = candidate.candidate();
            if text.is_empty() {
                return;
            }
            let username_fragment =
                Reflect::get(&candidate, &JsValue::from_str("usernameFragment"))
                    .ok()
                    .and_then(|value| value.as_string());
            control(
                &tx,
                Note::Candidate(Candidate {
                    candidate: text,
                    sdp_mid: candidate.sdp_mid(),
                    sdp_mline_index: candidate.sdp_m_line_index(),
                    username_fragment,
                }),
            );
        });
        self.pc
            .set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));

        let (tx, pc) = (notes.clone(), self.pc.clone());
        let on_state =
            Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| match pc.connection_state() {
                RtcPeerConnectionState::Failed => control(&tx, Note::End("connection failed")),
                RtcPeerConnectionState::Closed => control(&tx, Note::End("connection closed")),
                _ => {}
            });
        self.pc
            .set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));

        let (tx, pc) = (notes.clone(), self.pc.clone());
        let on_ice_state =
            Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| match pc.ice_connection_state() {
                RtcIceConnectionState::Failed => control(&tx, Note::End("ICE failed")),
                RtcIceConnectionState::Closed => control(&tx, Note::End("ICE closed")),
                _ => {}
            });
        self.pc
            .set_oniceconnectionstatechange(Some(on_ice_state.as_ref().unchecked_ref()));

        let tx = notes.clone();
        let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            control(&tx, Note::Open);
        });
        self.dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));

        let tx = notes.clone();
        let mut overflowed = false;
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            if overflowed {
                return;
            }
            let event: MessageEvent = event.unchecked_into();
            let data = event.data();
            let bytes = if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
                Uint8Array::new(buffer).to_vec()
            } else if let Some(text) = data.as_string() {
                text.into_bytes()
            } else {
                tracing::debug!("data-channel message of an unknown type dropped");
                return;
            };
            // The reserve stays for control notes; past it the reader is too slow, and the
            // browser cannot pause the peer, so the link ends instead of buffering more.
            if tx.capacity() > CONTROL_RESERVE {
                control(&tx, Note::Message(bytes));
            } else {
                overflowed = true;
                control(&tx, Note::End("receive queue full"));
            }
        });
        self.dc
            .set_onmessage(Some(on_message.as_ref().unchecked_ref()));

        let tx = notes.clone();
        let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            control(&tx, Note::End("closed by peer"));
        });
        self.dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));

        let tx = notes.clone();
        let on_error = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            control(&tx, Note::End("data channel error"));
        });
        self.dc.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        let tx = notes;
        let on_low = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            control(&tx, Note::BufferedLow);
        });
        self.dc
            .set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));

        self._callbacks = vec![
            on_candidate,
            on_state,
            on_ice_state,
            on_open,
            on_message,
            on_close,
            on_error,
            on_low,
        ];
    }

    /// The largest message the peer takes (`pc.sctp.maxMessageSize`, from its SDP's
    /// `a=max-message-size`); `None` if the browser does not say. Zero or infinity mean no limit.
    fn peer_max_message_size(&self) -> Option<usize> {
        let sctp = Reflect::get(&self.pc, &JsValue::from_str("sctp")).ok()?;
        if sctp.is_null() || sctp.is_undefined() {
            return None;
        }
        let max = Reflect::get(&sctp, &JsValue::from_str("maxMessageSize"))
            .ok()?
            .as_f64()?;
        (max.is_finite() && max >= 1.0).then_some(max as usize)
    }

    fn fingerprints(&self) -> Option<(String, String)> {
        let local = self
            .pc
            .current_local_description()
            .or_else(|| self.pc.local_description())?;
        let remote = self
            .pc
            .current_remote_description()
            .or_else(|| self.pc.remote_description())?;
        Some((
            sdp_fingerprint(&local.sdp())?,
            sdp_fingerprint(&remote.sdp())?,
        ))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_oniceconnectionstatechange(None);
        self.dc.set_onopen(None);
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onerror(None);
        self.dc.set_onbufferedamountlow(None);
        self.dc.close();
        self.pc.close();
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bound on the channel's `bufferedAmount` above which sends wait.
fn send_limit(config: &Config) -> usize {
    config.send_buffer_limit.clamp(1, BROWSER_SEND_QUEUE_MAX)
}

/// The link task: creates the connection, reports whether that worked through `ready`, runs
/// the link, and closes the connection when it ends.
async fn run_link(
    config: Arc<Config>,
    role: Role,
    shared: Arc<Shared>,
    channels: Channels,
    events: mpsc::Sender<LinkEvent>,
    ready: oneshot::Sender<Result<(), LinkError>>,
) {
    let (notes_tx, notes) = mpsc::channel(config.event_capacity.max(1) + CONTROL_RESERVE);
    let connection = match Connection::new(&config, notes_tx) {
        Ok(connection) => connection,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let deadline = Instant::now() + config.open_timeout;
    let mut actor = Actor {
        connection,
        role,
        shared,
        notes,
        channels,
        outbox: VecDeque::new(),
        remote_description_set: false,
        early_candidates: Vec::new(),
        max_early_candidates: config.max_early_candidates,
        remote_candidates: 0,
        max_remote_candidates: config.max_remote_candidates,
        send_limit: u32::try_from(send_limit(&config)).unwrap_or(u32::MAX),
        paused: false,
    };
    if role == Role::Initiator {
        // On failure the connection is dropped, and so closed, here.
        if let Err(err) = actor.describe_locally().await {
            let _ = ready.send(Err(err));
            return;
        }
    }
    if ready.send(Ok(())).is_err() {
        // `connect` was abandoned.
        return;
    }
    let (reason, ack) = actor.run(deadline, &events).await;
    actor.finish(reason, ack, events).await;
}

struct Actor {
    connection: Connection,
    role: Role,
    shared: Arc<Shared>,
    notes: mpsc::Receiver<Note>,
    channels: Channels,
    /// Events for the handle not yet in its queue: the task never waits on a full queue, so it
    /// always serves signals and `close`; notes are not read while this is not empty.
    outbox: VecDeque<LinkEvent>,
    remote_description_set: bool,
    early_candidates: Vec<Candidate>,
    max_early_candidates: usize,
    /// Remote candidates taken so far (early ones included), at most `max_remote_candidates`.
    remote_candidates: usize,
    max_remote_candidates: usize,
    send_limit: u32,
    /// The channel holds more than `send_limit` bytes: sends wait for `bufferedamountlow`.
    paused: bool,
}

impl Actor {
    /// Runs the link until it ends; returns why, and whom to tell once it is closed.
    async fn run(
        &mut self,
        deadline: Instant,
        events: &mpsc::Sender<LinkEvent>,
    ) -> (&'static str, Option<oneshot::Sender<()>>) {
        let mut deadline = pin!(p2pmesh_rt::sleep_until(deadline));
        loop {
            let open = self.shared.state() == OPEN;
            let deliver = !self.outbox.is_empty();
            let sending = open && !self.paused;
            tokio::select! {
                biased;
                command = self.channels.commands.recv() => match command {
                    None => return ("link dropped", None),
                    Some(Command::Close(ack)) => return ("closed locally", Some(ack)),
                    Some(Command::Signal(signal, reply)) => {
                        let result = self.apply(signal).await;
                        let _ = reply.send(result);
                    }
                },
                permit = events.reserve(), if deliver => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.outbox.pop_front() {
                            permit.send(event);
                        }
                    }
                    Err(_) => return ("link dropped", None),
                },
                note = self.notes.recv(), if !deliver => match note {
                    Some(note) => {
                        if let Err(reason) = self.note(note) {
                            return (reason, None);
                        }
                    }
                    // The callbacks hold the senders, and the connection holds the callbacks.
                    None => return ("connection gone", None),
                },
                outgoing = self.channels.sends.recv(), if sending => {
                    if let Some((bytes, reply)) = outgoing {
                        let _ = reply.send(self.send(&bytes));
                    }
                },
                () = &mut deadline, if !open => return ("open timeout", None),
            }
        }
    }

    /// Closes the connection, then delivers what is left and the final `Closed`.
    async fn finish(
        self,
        reason: &'static str,
        ack: Option<oneshot::Sender<()>>,
        events: mpsc::Sender<LinkEvent>,
    ) {
        let Actor {
            connection,
            shared,
            notes,
            channels,
            outbox,
            ..
        } = self;
        shared.set(CLOSED);
        drop(connection);
        drop(notes);
        let Channels { commands, sends } = channels;
        // Pending and later signals and sends fail with `Closed`.
        drop(commands);
        drop(sends);
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        tracing::debug!(reason, "link closed");
        for event in outbox {
            if events.send(event).await.is_err() {
                return;
            }
        }
        let _ = events.send(LinkEvent::Closed(reason.to_owned())).await;
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let dc = &self.connection.dc;
        let result = dc.send_with_u8_array(bytes).map_err(|err| {
            tracing::debug!(err = %js_error(&err), "data-channel send failed");
            LinkError::Closed
        });
        // `bufferedamountlow` fires when the amount falls to the threshold (half the limit).
        if dc.buffered_amount() > self.send_limit {
            self.paused = true;
        }
        result
    }

    fn note(&mut self, note: Note) -> Result<(), &'static str> {
        match note {
            Note::Candidate(candidate) => self
                .outbox
                .push_back(LinkEvent::Signal(Signal::Candidate(candidate).to_json())),
            Note::Open => {
                if self.shared.state() == CONNECTING {
                    let (local_fingerprint, remote_fingerprint) = self
                        .connection
                        .fingerprints()
                        .ok_or("no DTLS fingerprint in the descriptions")?;
                    if let Some(peer_max) = self.connection.peer_max_message_size() {
                        self.shared
                            .max_message_size
                            .fetch_min(peer_max, Ordering::Relaxed);
                    }
                    self.shared.set(OPEN);
                    self.outbox.push_back(LinkEvent::Open {
                        local_fingerprint,
                        remote_fingerprint,
                    });
                }
            }
            Note::Message(bytes) => self.outbox.push_back(LinkEvent::Message(bytes)),
            Note::BufferedLow => {
                self.paused = self.connection.dc.buffered_amount() > self.send_limit;
            }
            Note::End(reason) => return Err(reason),
        }
        Ok(())
    }

    /// Creates this side's offer (initiator) or answer (responder), sets it as the local
    /// description and queues it as a signal for the peer.
    async fn describe_locally(&mut self) -> Result<(), LinkError> {
        let pc = &self.connection.pc;
        let (promise, create, set, sdp_type) = match self.role {
            Role::Initiator => (
                pc.create_offer(),
                "create offer",
                "set local offer",
                SdpType::Offer,
            ),
            Role::Responder => (
                pc.create_answer(),
                "create answer",
                "set local answer",
                SdpType::Answer,
            ),
        };
        let created: RtcSessionDescriptionInit = JsFuture::from(promise)
            .await
            .map_err(|e| setup_error(create, &e))?
            .unchecked_into();
        let sdp = created
            .get_sdp()
            .ok_or_else(|| LinkError::Setup(format!("{create}: no SDP")))?;
        JsFuture::from(pc.set_local_description(&created))
            .await
            .map_err(|e| setup_error(set, &e))?;
        self.outbox.push_back(LinkEvent::Signal(
            Signal::Description(Description { sdp_type, sdp }).to_json(),
        ));
        Ok(())
    }

    async fn apply(&mut self, signal: Signal) -> Result<(), LinkError> {
        match signal {
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
                    tracing::debug!("early ICE candidate dropped");
                }
                Ok(())
            }
            Signal::Ignored => Ok(()),
        }
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
        let init = RtcSessionDescriptionInit::new(match desc.sdp_type {
            SdpType::Offer => RtcSdpType::Offer,
            SdpType::Answer => RtcSdpType::Answer,
        });
        init.set_sdp(&desc.sdp);
        JsFuture::from(self.connection.pc.set_remote_description(&init))
            .await
            .map_err(|e| setup_error("set remote description", &e))?;
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
        let init = RtcIceCandidateInit::new(&candidate.candidate);
        init.set_sdp_mid(candidate.sdp_mid.as_deref());
        init.set_sdp_m_line_index(candidate.sdp_mline_index);
        if let Some(ufrag) = &candidate.username_fragment {
            let _ = Reflect::set(
                &init,
                &JsValue::from_str("usernameFragment"),
                &JsValue::from_str(ufrag),
            );
        }
        let promise = self
            .connection
            .pc
            .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
        // One bad candidate does not fail the link: the others may still connect.
        if let Err(err) = JsFuture::from(promise).await {
            tracing::debug!(err = %js_error(&err), "remote ICE candidate rejected");
        }
    }
}
