//! The WebSocket signaling client: [`WsSignaling`] implements
//! [`transport::SignalingTransport`] over tokio-tungstenite.
//!
//! It connects, proves its id (ed25519 signature over the server's challenge nonce) or, for
//! a server in compatibility mode, joins with a plain id; then it turns the server's messages
//! into [`TransportEvent`]s (the JavaScript client's events: open, close, error, signal,
//! connect_request, bootstrap_peers, kademlia_rpc_message). When the connection is lost it
//! reconnects with exponential backoff and jitter, joins again and reports
//! [`TransportEvent::Reconnected`].
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
use futures_util::{SinkExt, StreamExt};
use rand::RngExt as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};
use transport::{
    ClientMessage, ErrorCode, Join, NONCE_LEN, PROTOCOL_VERSION, PeerId, RpcKind, ServerMessage,
    SignalingTransport, TransportError, TransportEvent, join_proof_message,
};

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
    /// Interval of the client's WebSocket pings (default 20 s); a server silent for three
    /// intervals is taken as lost.
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

enum Command {
    Send(ClientMessage),
    Close,
}

/// A reconnecting WebSocket signaling client.
#[derive(Debug)]
pub struct WsSignaling {
    id: PeerId,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<TransportEvent>,
    connected: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send(_) => f.write_str("Send"),
            Self::Close => f.write_str("Close"),
        }
    }
}

impl WsSignaling {
    /// Start connecting (in a task of the current tokio runtime). The first event is
    /// [`TransportEvent::Open`] once joined, or errors while it keeps trying.
    pub fn connect(config: Config) -> Self {
        let capacity = config.queue_capacity.max(1);
        let (commands, commands_rx) = mpsc::channel(capacity);
        let (events_tx, events) = mpsc::channel(capacity);
        let connected = Arc::new(AtomicBool::new(false));
        let id = config.identity.peer_id();
        let driver = Driver {
            config,
            commands: commands_rx,
            events: events_tx,
            connected: connected.clone(),
        };
        let task = tokio::spawn(driver.run());
        Self {
            id,
            commands,
            events,
            connected,
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
            .send(Command::Send(message))
            .await
            .map_err(|_| TransportError::Closed)
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        self.events.recv().await
    }

    async fn close(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = self.commands.send(Command::Close).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            self.connected.store(false, Ordering::Release);
        }
    }
}

impl Drop for WsSignaling {
    fn drop(&mut self) {
        // The driver sees its command queue closed, leaves and closes the socket.
        let _ = self.commands.try_send(Command::Close);
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a session ended.
enum End {
    /// The user closed the transport (or dropped it).
    Stopped,
    /// Lost or failed; try again. `joined` says whether it had joined.
    Lost { joined: bool, reason: String },
    /// The server refused our identity: retrying cannot help.
    Fatal(String),
}

struct Driver {
    config: Config,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<TransportEvent>,
    connected: Arc<AtomicBool>,
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
            | ErrorCode::InvalidRoom
            | ErrorCode::UnsupportedVersion
    )
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
                        .events
                        .send(TransportEvent::Close {
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
                        if self
                            .events
                            .send(TransportEvent::Close {
                                reason,
                                reconnecting: true,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    } else {
                        debug!(%reason, attempts, "signaling connection attempt failed");
                    }
                }
            }
            let delay = self.config.backoff(attempts.max(1));
            let wake = Instant::now() + delay;
            // Wait, but stay responsive to close; sends are refused while disconnected.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => break,
                    command = self.commands.recv() => match command {
                        None | Some(Command::Close) => return,
                        Some(Command::Send(_)) => {}
                    },
                }
            }
        }
    }

    async fn emit(&self, event: TransportEvent) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::Stopped)
    }

    async fn session(&mut self, ever_joined: bool, attempts: u32) -> End {
        let lost = |reason: String| End::Lost {
            joined: false,
            reason,
        };
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let connect = tokio_tungstenite::connect_async_with_config(
            self.config.url.as_str(),
            Some(ws_config),
            true,
        );
        let mut ws = match tokio::time::timeout(self.config.join_timeout, connect).await {
            Ok(Ok((ws, _response))) => ws,
            Ok(Err(err)) => return lost(format!("connect failed: {err}")),
            Err(_) => return lost("connect timed out".into()),
        };
        let joined = match self.handshake(&mut ws).await {
            Ok(joined) => joined,
            Err(end) => {
                let _ = ws.close(None).await;
                return end;
            }
        };
        self.connected.store(true, Ordering::Release);
        let event = if ever_joined {
            TransportEvent::Reconnected {
                peer_id: joined.0,
                attempts,
            }
        } else {
            TransportEvent::Open {
                peer_id: joined.0,
                room: joined.1,
            }
        };
        if let Err(end) = self.emit(event).await {
            return end;
        }
        for event in joined.2 {
            if let Err(end) = self.emit(event).await {
                return end;
            }
        }
        match self.serve(&mut ws).await {
            End::Stopped => {
                let leave = ClientMessage::Leave {
                    peer_id: Some(self.config.identity.peer_id()),
                };
                if let Ok(text) = serde_json::to_string(&leave) {
                    let _ = ws.send(Message::Text(text.into())).await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                End::Stopped
            }
            End::Lost { reason, .. } => End::Lost {
                joined: true,
                reason,
            },
            End::Fatal(reason) => End::Fatal(reason),
        }
    }

    /// Join; returns the id, the room and events that arrived with the join.
    async fn handshake(
        &mut self,
        ws: &mut Socket,
    ) -> Result<(PeerId, String, Vec<TransportEvent>), End> {
        let peer_id = self.config.identity.peer_id();
        let lost = |reason: String| End::Lost {
            joined: false,
            reason,
        };
        if let Identity::Unverified(id) = &self.config.identity {
            // As the JavaScript client does: join as soon as the socket is open.
            self.send_join(ws, id.clone(), None, None).await?;
        }
        let deadline = Instant::now() + self.config.join_timeout;
        let mut early = Vec::new();
        loop {
            let next = tokio::select! {
                next = ws.next() => next,
                _ = tokio::time::sleep_until(deadline) => return Err(lost("join timed out".into())),
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return Err(End::Stopped),
                    Some(Command::Send(_)) => continue,
                },
            };
            let text = match next {
                None => return Err(lost("closed during join".into())),
                Some(Err(err)) => return Err(lost(format!("read failed: {err}"))),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(lost(format!("closed during join: {frame:?}")));
                }
                Some(Ok(_)) => continue,
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
                        let signature = key.sign(&join_proof_message(&raw));
                        let key_hex = hex::encode(key.verifying_key().to_bytes());
                        let sig_hex = hex::encode(signature.to_bytes());
                        let key = key_hex;
                        self.send_join(ws, peer_id.clone(), Some(key), Some(sig_hex))
                            .await?;
                    }
                }
                ServerMessage::Joined { peer_id, room, .. } => {
                    return Ok((peer_id, room, early));
                }
                ServerMessage::BootstrapPeers { .. }
                    if matches!(self.config.identity, Identity::Unverified(_)) =>
                {
                    // An old server: no `joined`, the introductions mean we are in.
                    early.extend(to_events(message));
                    let room = self.config.room.clone().unwrap_or_default();
                    return Ok((peer_id, room, early));
                }
                ServerMessage::Error { code, message, .. } => {
                    let _ = self
                        .events
                        .send(TransportEvent::Error {
                            code,
                            message: message.clone(),
                            peer_id: None,
                        })
                        .await;
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
        &self,
        ws: &mut Socket,
        peer_id: PeerId,
        public_key: Option<String>,
        signature: Option<String>,
    ) -> Result<(), End> {
        let join = ClientMessage::Join(Join {
            peer_id,
            public_key,
            signature,
            room: self.config.room.clone(),
            protocol_version: Some(PROTOCOL_VERSION),
        });
        let text = serde_json::to_string(&join).map_err(|e| End::Fatal(e.to_string()))?;
        ws.send(Message::Text(text.into()))
            .await
            .map_err(|e| End::Lost {
                joined: false,
                reason: format!("send failed: {e}"),
            })
    }

    /// The joined session: commands out, events in, keepalive.
    async fn serve(&mut self, ws: &mut Socket) -> End {
        let keepalive = self.config.keepalive.max(Duration::from_millis(100));
        let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        let mut last_seen = Instant::now();
        let lost = |reason: String| End::Lost {
            joined: true,
            reason,
        };
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return End::Stopped,
                    Some(Command::Send(message)) => {
                        let text = match serde_json::to_string(&message) {
                            Ok(text) => text,
                            Err(err) => {
                                warn!(%err, "cannot encode a client message");
                                continue;
                            }
                        };
                        if let Err(err) = ws.send(Message::Text(text.into())).await {
                            return lost(format!("send failed: {err}"));
                        }
                    }
                },
                incoming = ws.next() => {
                    last_seen = Instant::now();
                    let text = match incoming {
                        None => return lost("connection closed".into()),
                        Some(Err(err)) => return lost(format!("read failed: {err}")),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(frame))) => {
                            let reason = frame
                                .map(|f| format!("closed by the server ({}: {})", u16::from(f.code), f.reason))
                                .unwrap_or_else(|| "closed by the server".into());
                            return lost(reason);
                        }
                        Some(Ok(_)) => continue,
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
                        if self.events.send(event).await.is_err() {
                            return End::Stopped;
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > keepalive * 3 {
                        return lost("the server stopped answering".into());
                    }
                    if let Err(err) = ws.send(Message::Ping(Default::default())).await {
                        return lost(format!("ping failed: {err}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let config = Config::new("ws://127.0.0.1:1", Identity::Keypair(key));
        for attempt in 1..40 {
            let full = config
                .backoff_initial
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(config.backoff_max);
            let d = config.backoff(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(config.backoff(40) <= config.backoff_max);
    }
}
