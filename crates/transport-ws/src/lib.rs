//! The WebSocket signaling client: [`WsSignaling`] implements
//! [`transport::SignalingTransport`], natively over tokio-tungstenite and in the browser
//! (wasm32) over the browser's `WebSocket`, with the same API and the same protocol code.
//!
//! It connects, proves its id (ed25519 signature over the server's challenge nonce) or, for
//! a server in compatibility mode, joins with a plain id; then it turns the server's messages
//! into [`TransportEvent`]s (the JavaScript client's events: open, close, error, signal,
//! connect_request, bootstrap_peers, kademlia_rpc_message). It keeps the connection alive with
//! the protocol's `ping` (answered by `pong`: browsers cannot send WebSocket pings) and takes
//! a server silent for three keepalive intervals as lost. When the connection is lost it
//! connects again, joins again and reports [`TransportEvent::Reconnected`]; on
//! [`close`](SignalingTransport::close) it leaves.
//!
//! # Several servers
//!
//! [`Config::with_servers`] gives it the servers of one cluster (servers that share rooms, so
//! that any of them serves the client under the same id); [`Config::new`] gives it one. It starts
//! with the first. When a joined session is lost it dials the next server at once, so that a
//! client whose server dies is served again by another within moments; an attempt that fails goes
//! on to the next server at once too, and only once every server failed in turn (a round) does it
//! wait, with exponential backoff and jitter that grow with each round failed in a row. A server
//! that answers `id_taken` (right after a server dies the cluster still holds our id for it, until
//! the dead server's claim expires) is asked again after [`ID_TAKEN_RETRY`] to twice that, up to
//! 20 times in a row, before that counts as a failed attempt. Each attempt proves the id for the host of
//! the URL it dials ([`host_of_url`]). A server that refuses us for a reason of its own
//! (`wrong_host`, `unsupported_version`, `proof_required`) leaves the rotation; the client gives up
//! when none is left, or at once when a refusal concerns our identity or room. Which server it
//! joined is logged and readable with [`WsSignaling::server`].
//!
//! Only the socket differs between the platforms (the private `socket` module); the driver
//! task runs on [`p2pmesh_rt`] (tokio natively, the browser's event loop in wasm32), and the
//! [`WsSignaling`] handle holds only channels, so it is `Send` on both.
//!
//! ```no_run
//! # async fn demo() {
//! use transport::{SignalingTransport, TransportEvent};
//! use transport_ws::{Config, Identity, WsSignaling};
//!
//! let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
//! let mut signaling = WsSignaling::connect(Config::new("ws://127.0.0.1:8080", Identity::Keypair(key)));
//! while let Some(event) = signaling.next_event().await {
//!     if let TransportEvent::ConnectRequest { peer } = event {
//!         let _ = signaling.send_signal(peer, serde_json::json!({"type": "offer", "sdp": "..."})).await;
//!     }
//! }
//! # }
//! ```

#![deny(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ed25519_dalek::{Signer as _, SigningKey};
use futures_util::{SinkExt as _, StreamExt as _};
use p2pmesh_rt::Instant;
use rand::RngExt as _;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use transport::{
    ClientMessage, ErrorCode, Join, NONCE_LEN, PROTOCOL_VERSION, PeerId, RpcKind, ServerMessage,
    SignalingTransport, TransportError, TransportEvent, join_proof_message,
};

mod rotation;
mod socket;

use rotation::{Rotation, Wait};
use socket::{Incoming, Socket};

/// How the client proves (or just states) its id.
#[derive(Clone)]
pub enum Identity {
    /// Prove the id: it is SHA-1 of this key's public half.
    Keypair(SigningKey),
    /// State an id without proof (only a server started with `--compat-unverified-ids`
    /// accepts this, as it accepts the JavaScript clients).
    Unverified(PeerId),
}

impl Identity {
    /// The peer id this identity joins with.
    pub fn peer_id(&self) -> PeerId {
        match self {
            Self::Keypair(key) => PeerId::from_public_key(&key.verifying_key().to_bytes()),
            Self::Unverified(id) => id.clone(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keypair(_) => write!(f, "Keypair({})", self.peer_id()),
            Self::Unverified(id) => write!(f, "Unverified({id})"),
        }
    }
}

/// The client's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers' URLs, e.g. `ws://127.0.0.1:8080`, in the order they are tried (see
    /// "Several servers" in the crate's doc). Servers of one cluster: they share rooms. At least
    /// one; a URL without a host is left out, and with no URL left the client ends at once
    /// ([`TransportEvent::Close`] without reconnecting).
    pub urls: Vec<String>,
    /// The id and how it is proven.
    pub identity: Identity,
    /// The room to join (the server's default room when `None`).
    pub room: Option<String>,
    /// The delay after the first round of failed attempts (every server tried once; default
    /// 250 ms); it doubles with each round failed in a row, up to `backoff_max`. A lost session
    /// dials the next server without a delay.
    pub backoff_initial: Duration,
    /// The longest reconnection delay (default 30 s). Each delay is jittered down by up to half.
    pub backoff_max: Duration,
    /// Bound of the outgoing and incoming queues, in messages (default 64).
    pub queue_capacity: usize,
    /// Time allowed to connect and join (default 10 s).
    pub join_timeout: Duration,
    /// Interval of the client's keepalive `ping`s (default 20 s, at least 100 ms); a server
    /// silent for three intervals is taken as lost.
    pub keepalive: Duration,
}

impl Config {
    /// A configuration for the one server at `url`, with the defaults.
    pub fn new(url: impl Into<String>, identity: Identity) -> Self {
        Self::with_servers([url], identity)
    }

    /// A configuration for the servers at `urls`, tried in this order, with the defaults.
    ///
    /// ```
    /// # let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    /// use transport_ws::{Config, Identity};
    /// let config = Config::with_servers(
    ///     ["wss://signal-a.example.org", "wss://signal-b.example.org"],
    ///     Identity::Keypair(key),
    /// );
    /// assert_eq!(config.urls.len(), 2);
    /// ```
    pub fn with_servers(
        urls: impl IntoIterator<Item = impl Into<String>>,
        identity: Identity,
    ) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            identity,
            room: None,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            queue_capacity: 64,
            join_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(20),
        }
    }

    /// Join `room` instead of the default room.
    pub fn with_room(mut self, room: impl Into<String>) -> Self {
        self.room = Some(room.into());
        self
    }

    /// The delay before reconnection attempt `attempt` (1-based), with jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let full = self
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        let half = full / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

/// A reconnecting WebSocket signaling client.
///
/// The handle holds only channels to the driver task (so it is `Send` in the browser too);
/// dropping it is a [`close`](SignalingTransport::close) that nobody waits for.
#[derive(Debug)]
pub struct WsSignaling {
    id: PeerId,
    urls: Vec<String>,
    commands: mpsc::Sender<ClientMessage>,
    events: mpsc::Receiver<TransportEvent>,
    joined: Arc<Joined>,
    /// Sending (or dropping) it tells the driver to leave and end.
    stop: Option<oneshot::Sender<()>>,
    task: Option<p2pmesh_rt::Task>,
}

impl WsSignaling {
    /// Start connecting, in a task of the current runtime (natively a tokio runtime must be
    /// running; in the browser the page's event loop). The first event is
    /// [`TransportEvent::Open`] once joined, or errors while it keeps trying.
    pub fn connect(config: Config) -> Self {
        let capacity = config.queue_capacity.max(1);
        let (commands, commands_rx) = mpsc::channel(capacity);
        let (events_tx, events) = mpsc::channel(capacity);
        let (stop, stop_rx) = oneshot::channel();
        let joined = Arc::new(Joined::default());
        let id = config.identity.peer_id();
        let urls = config.urls.clone();
        let driver = Driver {
            config,
            commands: commands_rx,
            events: events_tx,
            joined: joined.clone(),
            stop: Stop {
                rx: stop_rx,
                requested: false,
            },
        };
        let task = p2pmesh_rt::spawn(driver.run());
        Self {
            id,
            urls,
            commands,
            events,
            joined,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Whether the client is joined right now.
    pub fn is_connected(&self) -> bool {
        self.joined.server().is_some()
    }

    /// The URL of the server the client is joined to right now (one of [`Config::urls`]).
    pub fn server(&self) -> Option<&str> {
        self.joined
            .server()
            .and_then(|i| self.urls.get(i))
            .map(String::as_str)
    }
}

/// Which server the driver is joined to, shared with the handle: the server's index plus one, 0
/// while not joined.
#[derive(Debug, Default)]
struct Joined(AtomicUsize);

impl Joined {
    fn set(&self, server: Option<usize>) {
        self.0.store(server.map_or(0, |i| i + 1), Ordering::Release);
    }

    fn server(&self) -> Option<usize> {
        self.0.load(Ordering::Acquire).checked_sub(1)
    }
}

#[async_trait]
impl SignalingTransport for WsSignaling {
    fn local_id(&self) -> &PeerId {
        &self.id
    }

    async fn send(&mut self, message: ClientMessage) -> Result<(), TransportError> {
        if self.task.is_none() {
            return Err(TransportError::Closed);
        }
        if !self.is_connected() {
            return Err(TransportError::NotConnected);
        }
        self.commands
            .send(message)
            .await
            .map_err(|_| TransportError::Closed)
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        self.events.recv().await
    }

    async fn close(&mut self) {
        if let Some(mut task) = self.task.take() {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            // The driver's leave and close are bounded by its own timeouts ([`CLOSE_GRACE`]).
            task.join().await;
            self.joined.set(None);
        }
    }
}

/// How long a closing driver waits to send `leave` and close the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a client waits before it asks a server that answered `id_taken` again (jittered up
/// by as much again): about the time a signaling cluster takes to notice that the server that
/// held our id died.
pub const ID_TAKEN_RETRY: Duration = Duration::from_millis(250);

/// The handle's request to stop (sent, or the handle dropped), awaitable any number of times.
struct Stop {
    rx: oneshot::Receiver<()>,
    requested: bool,
}

impl Stop {
    /// Completes once the stop is requested (at once if it already was). Cancel-safe.
    async fn requested(&mut self) {
        if !self.requested {
            let _ = (&mut self.rx).await;
            self.requested = true;
        }
    }
}

/// How a session ended.
enum End {
    /// The user closed the transport (or dropped it).
    Stopped,
    /// Lost or failed; try again.
    Lost(String),
    /// The server refused the join.
    Refused(Refusal, String),
}

/// What a refused join means for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Another connection holds our id: ask again soon (after a server's death the cluster
    /// holds it for the dead server a little longer).
    IdTaken,
    /// This server cannot take us (the host our proof names, its protocol version, its proof
    /// mode); another server may.
    ThisServer,
    /// Our identity or room is refused: no server can take us.
    Fatal,
}

/// The task behind a [`WsSignaling`]: it owns the socket and runs the protocol, the same on
/// every platform.
struct Driver {
    config: Config,
    commands: mpsc::Receiver<ClientMessage>,
    events: mpsc::Sender<TransportEvent>,
    joined: Arc<Joined>,
    stop: Stop,
}

/// A join's proof of its id, for the server `host`.
struct Proof {
    public_key: String,
    signature: String,
    host: String,
}

/// The host a join proof names for the server at `url`: its authority (`host` or `host:port`,
/// without the scheme's default port), lowercase, as [`transport::normalize_host`] compares it.
pub fn host_of_url(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Some(transport::normalize_host(&authority))
}

/// What a join refused with `code` means: `None` for a refusal that another attempt may get past
/// (the server is full, rate limits), which counts as a failed attempt.
fn refusal(code: ErrorCode) -> Option<Refusal> {
    match code {
        ErrorCode::IdTaken => Some(Refusal::IdTaken),
        ErrorCode::ProofRequired | ErrorCode::WrongHost | ErrorCode::UnsupportedVersion => {
            Some(Refusal::ThisServer)
        }
        ErrorCode::InvalidPeerId
        | ErrorCode::InvalidPublicKey
        | ErrorCode::InvalidSignature
        | ErrorCode::IdMismatch
        | ErrorCode::InvalidRoom => Some(Refusal::Fatal),
        _ => None,
    }
}

/// What the handshake learnt: the id held, the room, and events that arrived with the join.
struct Handshake {
    peer_id: PeerId,
    room: String,
    early: Vec<TransportEvent>,
}

impl Driver {
    async fn run(mut self) {
        let mut rotation = Rotation::new(self.config.urls.len());
        for (i, url) in self.config.urls.iter().enumerate() {
            if host_of_url(url).is_none() {
                warn!(%url, "signaling: no host in this server URL; it is left out");
                rotation.remove(i);
            }
        }
        let Some(mut server) = rotation.first() else {
            let reason = format!("no usable signaling server URL in {:?}", self.config.urls);
            self.give_up(reason).await;
            return;
        };
        // Attempts since the last join (or the start), as `Reconnected` reports them.
        let mut attempts: u32 = 0;
        let mut ever_joined = false;
        loop {
            attempts += 1;
            let (end, session) = self.session(server, ever_joined, attempts).await;
            self.joined.set(None);
            let url = &self.config.urls[server];
            let next = match (end, session) {
                (End::Stopped, _) => return,
                (End::Lost(reason), Some(session)) => {
                    ever_joined = true;
                    attempts = 0;
                    info!(%url, %reason, "signaling connection lost; reconnecting");
                    let close = TransportEvent::Close {
                        reason,
                        reconnecting: true,
                    };
                    if self.emit(close).await.is_err() {
                        return;
                    }
                    rotation.lost(session)
                }
                (End::Lost(reason), None) => {
                    debug!(%url, %reason, attempts, "signaling connection attempt failed");
                    rotation.failed()
                }
                (End::Refused(Refusal::IdTaken, reason), _) => {
                    debug!(%url, %reason, attempts, "signaling: id taken; asking again soon");
                    rotation.id_taken()
                }
                (End::Refused(Refusal::ThisServer, reason), _) => match rotation.refused() {
                    Some(next) => {
                        warn!(%url, %reason, "signaling: this server refused us; it is left out");
                        next
                    }
                    None => {
                        self.give_up(reason).await;
                        return;
                    }
                },
                (End::Refused(Refusal::Fatal, reason), _) => {
                    self.give_up(reason).await;
                    return;
                }
            };
            server = next.server;
            let wait = match next.wait {
                Wait::Now => continue,
                Wait::Soon => {
                    let jitter = rand::rng().random_range(0..=ID_TAKEN_RETRY.as_millis() as u64);
                    ID_TAKEN_RETRY + Duration::from_millis(jitter)
                }
                Wait::Backoff(failures) => self.config.backoff(failures),
            };
            let wake = Instant::now() + wait;
            // Wait, but stay responsive to close; sends are refused while disconnected, and
            // one queued just before the loss is dropped.
            loop {
                tokio::select! {
                    () = p2pmesh_rt::sleep_until(wake) => break,
                    () = self.stop.requested() => return,
                    command = self.commands.recv() => if command.is_none() {
                        return;
                    },
                }
            }
        }
    }

    /// Reports the end: retrying cannot help.
    async fn give_up(&mut self, reason: String) {
        warn!(%reason, "signaling: giving up");
        let _ = self
            .emit(TransportEvent::Close {
                reason,
                reconnecting: false,
            })
            .await;
    }

    /// Hands `event` to the user, unless the user stops first.
    async fn emit(&mut self, event: TransportEvent) -> Result<(), End> {
        tokio::select! {
            sent = self.events.send(event) => sent.map_err(|_| End::Stopped),
            () = self.stop.requested() => Err(End::Stopped),
        }
    }

    /// Sends one text message; a send the server does not take for three keepalive intervals
    /// means it is lost.
    async fn send_text(&mut self, ws: &mut Socket, text: String) -> Result<(), End> {
        let patience = self.keepalive() * 3;
        tokio::select! {
            sent = p2pmesh_rt::timeout(patience, ws.send(text)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(End::Lost(reason)),
                Err(_) => Err(End::Lost("send timed out".into())),
            },
            () = self.stop.requested() => Err(End::Stopped),
        }
    }

    async fn send_message(&mut self, ws: &mut Socket, message: &ClientMessage) -> Result<(), End> {
        match serde_json::to_string(message) {
            Ok(text) => self.send_text(ws, text).await,
            Err(err) => {
                warn!(%err, "cannot encode a client message");
                Ok(())
            }
        }
    }

    fn keepalive(&self) -> Duration {
        self.config.keepalive.max(Duration::from_millis(100))
    }

    /// One connection to server `server` (an index of the configuration's URLs): connect, join,
    /// serve until it ends; leave when stopped. Returns how it ended and, if it joined, how long
    /// it was joined.
    async fn session(
        &mut self,
        server: usize,
        ever_joined: bool,
        attempts: u32,
    ) -> (End, Option<Duration>) {
        let url = self.config.urls[server].clone();
        let capacity = self.config.queue_capacity.max(1);
        let connect =
            p2pmesh_rt::timeout(self.config.join_timeout, socket::connect(&url, capacity));
        let mut ws = tokio::select! {
            connected = connect => match connected {
                Ok(Ok(ws)) => ws,
                Ok(Err(reason)) => return (End::Lost(reason), None),
                Err(_) => return (End::Lost("connect timed out".into()), None),
            },
            () = self.stop.requested() => return (End::Stopped, None),
        };
        let joined = match self.handshake(&mut ws, &url).await {
            Ok(joined) => joined,
            Err(end) => {
                let _ = p2pmesh_rt::timeout(CLOSE_GRACE, ws.close()).await;
                return (end, None);
            }
        };
        let since = Instant::now();
        self.joined.set(Some(server));
        info!(%url, id = %joined.peer_id, room = %joined.room, attempts, "signaling: joined");
        let first = if ever_joined {
            TransportEvent::Reconnected {
                peer_id: joined.peer_id,
                attempts,
            }
        } else {
            TransportEvent::Open {
                peer_id: joined.peer_id,
                room: joined.room,
            }
        };
        let mut end = None;
        for event in std::iter::once(first).chain(joined.early) {
            if let Err(stopped) = self.emit(event).await {
                end = Some(stopped);
                break;
            }
        }
        let end = match end {
            Some(end) => end,
            None => self.serve(&mut ws).await,
        };
        if let End::Stopped = end {
            self.joined.set(None);
            let leave = ClientMessage::Leave {
                peer_id: Some(self.config.identity.peer_id()),
            };
            let _ = p2pmesh_rt::timeout(CLOSE_GRACE, async {
                if let Ok(text) = serde_json::to_string(&leave) {
                    let _ = ws.send(text).await;
                }
                let _ = ws.close().await;
            })
            .await;
        }
        (end, Some(since.elapsed()))
    }

    /// Join `url`'s server: answer the challenge with the key's proof for that server's host
    /// (or, unverified, join at once) and wait for `joined`.
    async fn handshake(&mut self, ws: &mut Socket, url: &str) -> Result<Handshake, End> {
        let peer_id = self.config.identity.peer_id();
        if let Identity::Unverified(id) = &self.config.identity {
            // As the JavaScript client does: join as soon as the socket is open.
            let id = id.clone();
            self.send_join(ws, id, None).await?;
        }
        let deadline = Instant::now() + self.config.join_timeout;
        let mut early = Vec::new();
        loop {
            let next = tokio::select! {
                next = ws.next() => next,
                () = p2pmesh_rt::sleep_until(deadline) => return Err(End::Lost("join timed out".into())),
                () = self.stop.requested() => return Err(End::Stopped),
                command = self.commands.recv() => match command {
                    None => return Err(End::Stopped),
                    // Not joined yet: the handle refuses sends; a stale one is dropped.
                    Some(_) => continue,
                },
            };
            let text = match next {
                None => return Err(End::Lost("closed during join".into())),
                Some(Incoming::Text(text)) => text,
                Some(Incoming::Closed(reason)) => {
                    return Err(End::Lost(format!("during join: {reason}")));
                }
                Some(Incoming::Other) => continue,
            };
            let Ok(message) = serde_json::from_str::<ServerMessage>(&text) else {
                debug!("ignoring an unknown server message during join");
                continue;
            };
            match message {
                ServerMessage::Challenge { nonce, .. } => {
                    if let Identity::Keypair(key) = &self.config.identity {
                        let mut raw = [0u8; NONCE_LEN];
                        if hex::decode_to_slice(&nonce, &mut raw).is_err() {
                            return Err(End::Lost("malformed challenge".into()));
                        }
                        // The proof names the server dialled, so that no other server can use it.
                        let Some(host) = host_of_url(url) else {
                            let reason = format!("no host in the signaling URL {url}");
                            return Err(End::Refused(Refusal::ThisServer, reason));
                        };
                        let signature = key.sign(&join_proof_message(&raw, &host));
                        let proof = Proof {
                            public_key: hex::encode(key.verifying_key().to_bytes()),
                            signature: hex::encode(signature.to_bytes()),
                            host,
                        };
                        self.send_join(ws, peer_id.clone(), Some(proof)).await?;
                    }
                }
                ServerMessage::Joined { peer_id, room, .. } => {
                    return Ok(Handshake {
                        peer_id,
                        room,
                        early,
                    });
                }
                ServerMessage::BootstrapPeers { .. }
                    if matches!(self.config.identity, Identity::Unverified(_)) =>
                {
                    // An old server: no `joined`, the introductions mean we are in.
                    early.extend(to_events(message));
                    let room = self.config.room.clone().unwrap_or_default();
                    return Ok(Handshake {
                        peer_id,
                        room,
                        early,
                    });
                }
                ServerMessage::Error { code, message, .. } => {
                    self.emit(TransportEvent::Error {
                        code,
                        message: message.clone(),
                        peer_id: None,
                    })
                    .await?;
                    return Err(match code.and_then(refusal) {
                        Some(refusal) => End::Refused(refusal, message),
                        None => End::Lost(message),
                    });
                }
                other => early.extend(to_events(other)),
            }
        }
    }

    async fn send_join(
        &mut self,
        ws: &mut Socket,
        peer_id: PeerId,
        proof: Option<Proof>,
    ) -> Result<(), End> {
        let (public_key, signature, host) = match proof {
            Some(p) => (Some(p.public_key), Some(p.signature), Some(p.host)),
            None => (None, None, None),
        };
        let join = ClientMessage::Join(Join {
            peer_id,
            public_key,
            signature,
            host,
            room: self.config.room.clone(),
            protocol_version: Some(PROTOCOL_VERSION),
        });
        match serde_json::to_string(&join) {
            Ok(text) => self.send_text(ws, text).await,
            Err(err) => Err(End::Refused(Refusal::Fatal, err.to_string())),
        }
    }

    /// The joined session: commands out, events in, keepalive.
    async fn serve(&mut self, ws: &mut Socket) -> End {
        let keepalive = self.keepalive();
        let mut next_ping = Instant::now() + keepalive;
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                () = self.stop.requested() => return End::Stopped,
                command = self.commands.recv() => match command {
                    None => return End::Stopped,
                    Some(message) => {
                        if let Err(end) = self.send_message(ws, &message).await {
                            return end;
                        }
                    }
                },
                incoming = ws.next() => {
                    last_seen = Instant::now();
                    let text = match incoming {
                        None => return End::Lost("connection closed".into()),
                        Some(Incoming::Closed(reason)) => return End::Lost(reason),
                        Some(Incoming::Other) => continue,
                        Some(Incoming::Text(text)) => text,
                    };
                    let message = match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(message) => message,
                        Err(_) => {
                            debug!("ignoring a server message of an unknown shape");
                            continue;
                        }
                    };
                    if let ServerMessage::Shutdown { message } = message {
                        return End::Lost(message);
                    }
                    for event in to_events(message) {
                        if let Err(end) = self.emit(event).await {
                            return end;
                        }
                    }
                }
                () = p2pmesh_rt::sleep_until(next_ping) => {
                    if last_seen.elapsed() > keepalive * 3 {
                        return End::Lost("the server stopped answering".into());
                    }
                    next_ping = Instant::now() + keepalive;
                    // The protocol's ping (browsers cannot send WebSocket pings); its `pong`
                    // counts as a sign of life like any other message.
                    let ping = ClientMessage::Ping { ts: None };
                    if let Err(end) = self.send_message(ws, &ping).await {
                        return end;
                    }
                }
            }
        }
    }
}

/// The events a server message means for the user.
fn to_events(message: ServerMessage) -> Vec<TransportEvent> {
    match message {
        ServerMessage::BootstrapPeers { peers } => vec![TransportEvent::BootstrapPeers {
            peers: peers.into_iter().map(|p| p.id).collect(),
        }],
        ServerMessage::PeerJoined { peer_id } => {
            vec![TransportEvent::ConnectRequest { peer: peer_id }]
        }
        ServerMessage::PeerLeft { peer_id } => vec![TransportEvent::PeerLeft { peer: peer_id }],
        ServerMessage::Signal { from, signal, .. } => vec![TransportEvent::Signal { from, signal }],
        ServerMessage::BatchedSignals { from, signals, .. } => signals
            .into_iter()
            .map(|signal| TransportEvent::Signal {
                from: from.clone(),
                signal,
            })
            .collect(),
        ServerMessage::ConnectionRejected {
            from,
            reason,
            alternative_peers,
            ..
        } => vec![TransportEvent::ConnectionRejected {
            from,
            reason,
            alternative_peers,
        }],
        ServerMessage::SignalRejected {
            from,
            reason,
            correct_initiator,
            ..
        } => vec![TransportEvent::SignalRejected {
            from,
            reason,
            correct_initiator,
        }],
        ServerMessage::KademliaRpcRequest {
            from, rpc_message, ..
        } => vec![TransportEvent::KademliaRpc {
            from,
            kind: RpcKind::Request,
            message: rpc_message,
        }],
        ServerMessage::KademliaRpcResponse {
            from, rpc_message, ..
        } => vec![TransportEvent::KademliaRpc {
            from,
            kind: RpcKind::Response,
            message: rpc_message,
        }],
        ServerMessage::Error {
            code,
            message,
            peer_id,
        } => vec![TransportEvent::Error {
            code,
            message,
            peer_id,
        }],
        ServerMessage::Challenge { .. }
        | ServerMessage::Joined { .. }
        | ServerMessage::Pong { .. }
        | ServerMessage::Shutdown { .. } => Vec::new(),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
