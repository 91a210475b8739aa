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
//! reconnects with exponential backoff and jitter, joins again and reports
//! [`TransportEvent::Reconnected`]; on [`close`](SignalingTransport::close) it leaves.
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
use std::sync::atomic::{AtomicBool, Ordering};
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

mod socket;

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
    /// The server's URL, e.g. `ws://127.0.0.1:8080`.
    pub url: String,
    /// The id and how it is proven.
    pub identity: Identity,
    /// The room to join (the server's default room when `None`).
    pub room: Option<String>,
    /// The first reconnection delay (default 250 ms); it doubles up to `backoff_max`.
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
    /// A configuration with the defaults.
    pub fn new(url: impl Into<String>, identity: Identity) -> Self {
        Self {
            url: url.into(),
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
    commands: mpsc::Sender<ClientMessage>,
    events: mpsc::Receiver<TransportEvent>,
    connected: Arc<AtomicBool>,
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
        let connected = Arc::new(AtomicBool::new(false));
        let id = config.identity.peer_id();
        let driver = Driver {
            config,
            commands: commands_rx,
            events: events_tx,
            connected: connected.clone(),
            stop: Stop {
                rx: stop_rx,
                requested: false,
            },
        };
        let task = p2pmesh_rt::spawn(driver.run());
        Self {
            id,
            commands,
            events,
            connected,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Whether the client is joined right now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
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
            self.connected.store(false, Ordering::Release);
        }
    }
}

/// How long a closing driver waits to send `leave` and close the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

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
    /// Lost or failed; try again. `joined` says whether it had joined.
    Lost { joined: bool, reason: String },
    /// The server refused our identity: retrying cannot help.
    Fatal(String),
}

/// The task behind a [`WsSignaling`]: it owns the socket and runs the protocol, the same on
/// every platform.
struct Driver {
    config: Config,
    commands: mpsc::Receiver<ClientMessage>,
    events: mpsc::Sender<TransportEvent>,
    connected: Arc<AtomicBool>,
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

/// Errors after which reconnecting with the same configuration cannot succeed.
fn is_fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ProofRequired
            | ErrorCode::InvalidPeerId
            | ErrorCode::InvalidPublicKey
            | ErrorCode::InvalidSignature
            | ErrorCode::IdMismatch
            | ErrorCode::WrongHost
            | ErrorCode::InvalidRoom
            | ErrorCode::UnsupportedVersion
    )
}

/// What the handshake learnt: the id held, the room, and events that arrived with the join.
struct Joined {
    peer_id: PeerId,
    room: String,
    early: Vec<TransportEvent>,
}

impl Driver {
    async fn run(mut self) {
        let mut attempts: u32 = 0;
        let mut ever_joined = false;
        loop {
            attempts += 1;
            let end = self.session(ever_joined, attempts).await;
            self.connected.store(false, Ordering::Release);
            match end {
                End::Stopped => return,
                End::Fatal(reason) => {
                    warn!(%reason, "signaling: giving up");
                    let _ = self
                        .emit(TransportEvent::Close {
                            reason,
                            reconnecting: false,
                        })
                        .await;
                    return;
                }
                End::Lost { joined, reason } => {
                    if joined {
                        ever_joined = true;
                        attempts = 0;
                        info!(%reason, "signaling connection lost; reconnecting");
                        let close = TransportEvent::Close {
                            reason,
                            reconnecting: true,
                        };
                        if self.emit(close).await.is_err() {
                            return;
                        }
                    } else {
                        debug!(%reason, attempts, "signaling connection attempt failed");
                    }
                }
            }
            let wake = Instant::now() + self.config.backoff(attempts.max(1));
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

    /// Hands `event` to the user, unless the user stops first.
    async fn emit(&mut self, event: TransportEvent) -> Result<(), End> {
        tokio::select! {
            sent = self.events.send(event) => sent.map_err(|_| End::Stopped),
            () = self.stop.requested() => Err(End::Stopped),
        }
    }

    /// Sends one text message; a send the server does not take for three keepalive intervals
    /// means it is lost.
    async fn send_text(&mut self, ws: &mut Socket, text: String, joined: bool) -> Result<(), End> {
        let patience = self.keepalive() * 3;
        tokio::select! {
            sent = p2pmesh_rt::timeout(patience, ws.send(text)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(End::Lost { joined, reason }),
                Err(_) => Err(End::Lost { joined, reason: "send timed out".into() }),
            },
            () = self.stop.requested() => Err(End::Stopped),
        }
    }

    async fn send_message(
        &mut self,
        ws: &mut Socket,
        message: &ClientMessage,
        joined: bool,
    ) -> Result<(), End> {
        match serde_json::to_string(message) {
            Ok(text) => self.send_text(ws, text, joined).await,
            Err(err) => {
                warn!(%err, "cannot encode a client message");
                Ok(())
            }
        }
    }

    fn keepalive(&self) -> Duration {
        self.config.keepalive.max(Duration::from_millis(100))
    }

    /// One connection: connect, join, serve until it ends; leave when stopped.
    async fn session(&mut self, ever_joined: bool, attempts: u32) -> End {
        let lost = |reason: String| End::Lost {
            joined: false,
            reason,
        };
        let capacity = self.config.queue_capacity.max(1);
        let connect = p2pmesh_rt::timeout(
            self.config.join_timeout,
            socket::connect(&self.config.url, capacity),
        );
        let mut ws = tokio::select! {
            connected = connect => match connected {
                Ok(Ok(ws)) => ws,
                Ok(Err(reason)) => return lost(reason),
                Err(_) => return lost("connect timed out".into()),
            },
            () = self.stop.requested() => return End::Stopped,
        };
        let joined = match self.handshake(&mut ws).await {
            Ok(joined) => joined,
            Err(end) => {
                let _ = p2pmesh_rt::timeout(CLOSE_GRACE, ws.close()).await;
                return end;
            }
        };
        self.connected.store(true, Ordering::Release);
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
        match end {
            End::Stopped => {
                self.connected.store(false, Ordering::Release);
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
                End::Stopped
            }
            End::Lost { reason, .. } => End::Lost {
                joined: true,
                reason,
            },
            End::Fatal(reason) => End::Fatal(reason),
        }
    }

    /// Join: answer the challenge with the key's proof (or, unverified, join at once) and
    /// wait for `joined`.
    async fn handshake(&mut self, ws: &mut Socket) -> Result<Joined, End> {
        let peer_id = self.config.identity.peer_id();
        let lost = |reason: String| End::Lost {
            joined: false,
            reason,
        };
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
                () = p2pmesh_rt::sleep_until(deadline) => return Err(lost("join timed out".into())),
                () = self.stop.requested() => return Err(End::Stopped),
                command = self.commands.recv() => match command {
                    None => return Err(End::Stopped),
                    // Not joined yet: the handle refuses sends; a stale one is dropped.
                    Some(_) => continue,
                },
            };
            let text = match next {
                None => return Err(lost("closed during join".into())),
                Some(Incoming::Text(text)) => text,
                Some(Incoming::Closed(reason)) => {
                    return Err(lost(format!("during join: {reason}")));
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
                            return Err(lost("malformed challenge".into()));
                        }
                        // The proof names the server dialled, so that no other server can use it.
                        let Some(host) = host_of_url(&self.config.url) else {
                            return Err(End::Fatal(format!(
                                "no host in the signaling URL {}",
                                self.config.url
                            )));
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
                    return Ok(Joined {
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
                    return Ok(Joined {
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
                    return Err(match code {
                        Some(code) if is_fatal(code) => End::Fatal(message),
                        _ => lost(message),
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
        let text = serde_json::to_string(&join).map_err(|e| End::Fatal(e.to_string()))?;
        self.send_text(ws, text, false).await
    }

    /// The joined session: commands out, events in, keepalive.
    async fn serve(&mut self, ws: &mut Socket) -> End {
        let keepalive = self.keepalive();
        let mut next_ping = Instant::now() + keepalive;
        let mut last_seen = Instant::now();
        let lost = |reason: String| End::Lost {
            joined: true,
            reason,
        };
        loop {
            tokio::select! {
                () = self.stop.requested() => return End::Stopped,
                command = self.commands.recv() => match command {
                    None => return End::Stopped,
                    Some(message) => {
                        if let Err(end) = self.send_message(ws, &message, true).await {
                            return end;
                        }
                    }
                },
                incoming = ws.next() => {
                    last_seen = Instant::now();
                    let text = match incoming {
                        None => return lost("connection closed".into()),
                        Some(Incoming::Closed(reason)) => return lost(reason),
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
                        return lost(message);
                    }
                    for event in to_events(message) {
                        if let Err(end) = self.emit(event).await {
                            return end;
                        }
                    }
                }
                () = p2pmesh_rt::sleep_until(next_ping) => {
                    if last_seen.elapsed() > keepalive * 3 {
                        return lost("the server stopped answering".into());
                    }
                    next_ping = Instant::now() + keepalive;
                    // The protocol's ping (browsers cannot send WebSocket pings); its `pong`
                    // counts as a sign of life like any other message.
                    let ping = ClientMessage::Ping { ts: None };
                    if let Err(end) = self.send_message(ws, &ping, true).await {
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
