//! One WebSocket connection: its join, its messages, its limits.
//!
//! [`serve`] is generic over a `Sink` and a `Stream` of WebSocket messages (as in axum's
//! testing-websockets example), so its logic does not depend on a real socket: the tests
//! drive it over channels. One task owns the socket; other connections reach it only through
//! its bounded outgoing queue.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use ed25519_dalek::{Signature, VerifyingKey};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use p2pmesh_base::introduce::Rule;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tracing::{debug, trace, warn};
use transport::{
    DEFAULT_ROOM, ErrorCode, NONCE_LEN, PROTOCOL_VERSION, PeerId, PeerInfo, ServerMessage,
    is_compat_id, is_hex_id, is_valid_room, join_proof_message,
};

use crate::Shared;
use crate::cluster::ClaimError;
use crate::fields::{self, Fields, ParseError};
use crate::rate::Limiter;
use crate::registry::{At, Tell};
use crate::source::Source;

/// Close codes (RFC 6455 §7.4.1).
pub(crate) mod close {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
    pub(crate) const TRY_AGAIN_LATER: u16 = 1013;
}

/// How long a closing connection waits for the client's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Most queued messages written to the socket before one flush.
const WRITE_BATCH: usize = 32;

/// Longest echo of a client's string in an error message.
const MAX_ECHO: usize = 64;

/// The kinds of message relayed from one peer to another, `from` overwritten.
const RELAYED: &[&str] = &[
    "signal",
    "batched_signals",
    "connection_rejected",
    "signal_rejected",
    "kademlia_rpc_request",
    "kademlia_rpc_response",
    "offer",
    "answer",
    "candidate",
    "ack",
];

/// Why the main loop ended.
enum Ending {
    /// The client went away (close frame, EOF or I/O error).
    Gone,
    /// We close with this code and reason.
    Close(u16, &'static str),
    /// Server shutdown.
    Shutdown,
}

/// A refused input.
#[derive(Debug)]
struct Rejection {
    code: ErrorCode,
    message: String,
    peer_id: Option<String>,
}

fn reject(code: ErrorCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
        peer_id: None,
    }
}

fn echo(s: &str) -> String {
    if s.len() <= MAX_ECHO {
        s.to_owned()
    } else {
        let mut end = MAX_ECHO;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

/// Where a connection comes from: its source address, and the `Host` its request named.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) source: Source,
    /// The request's `Host` header, normalized.
    pub(crate) host: Option<String>,
}

struct Joined {
    id: Arc<str>,
    room: Arc<str>,
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    source: Source,
    host: Option<String>,
    nonce: [u8; NONCE_LEN],
    joined: Option<Joined>,
    ever_joined: bool,
    limiter: Limiter,
    strikes: u32,
    tx: mpsc::Sender<Utf8Bytes>,
    replies: Vec<Utf8Bytes>,
}

pub(crate) fn encode(message: &ServerMessage) -> Utf8Bytes {
    match serde_json::to_string(message) {
        Ok(text) => Utf8Bytes::from(text),
        Err(err) => {
            warn!(%err, "could not encode a server message");
            Utf8Bytes::from_static(r#"{"type":"error","message":"internal error"}"#)
        }
    }
}

fn error_message(code: ErrorCode, message: String, peer_id: Option<String>) -> ServerMessage {
    ServerMessage::Error {
        code: Some(code),
        message,
        peer_id: peer_id.map(PeerId::new),
    }
}

/// Serve one upgraded connection (its two halves) until it ends.
pub(crate) async fn serve<W, R>(mut write: W, mut read: R, shared: Arc<Shared>, origin: Origin)
where
    W: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    shared.metrics.clients.inc();
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut nonce = [0u8; NONCE_LEN];
    shared.fill_random(&mut nonce);
    let (tx, mut rx) = mpsc::channel(shared.config.outgoing_queue.max(1));
    let config = &shared.config;
    let mut conn = Conn {
        id,
        source: origin.source,
        host: origin.host,
        nonce,
        joined: None,
        ever_joined: false,
        limiter: Limiter::new(config.rate_per_sec, config.rate_burst),
        strikes: 0,
        tx,
        replies: Vec::new(),
        shared: shared.clone(),
    };
    debug!(conn = id, "connected");
    let ending = conn.run(&mut write, &mut read, &mut rx).await;
    conn.unregister();
    match ending {
        Ending::Gone => {}
        Ending::Close(code, reason) => {
            debug!(conn = id, code, reason, "closing");
            close_socket(&mut write, &mut read, code, reason).await;
        }
        Ending::Shutdown => {
            let bye = encode(&ServerMessage::Shutdown {
                message: "the server is shutting down".into(),
            });
            let _ = written(CLOSE_LINGER, write.send(Message::Text(bye))).await;
            close_socket(
                &mut write,
                &mut read,
                close::GOING_AWAY,
                "server shutting down",
            )
            .await;
        }
    }
    shared.metrics.clients.dec();
    debug!(conn = id, "disconnected");
}

/// Send a close frame, then wait (briefly) for the client's.
pub(crate) async fn close_socket<W, R>(write: &mut W, read: &mut R, code: u16, reason: &'static str)
where
    W: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    if !written(CLOSE_LINGER, write.send(Message::Close(Some(frame)))).await {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(_)) = read.next().await {}
    })
    .await;
}

/// Whether `write` completed without error within `limit`. A client that does not read its
/// socket stops the writes once the socket's buffers are full; it is dropped after `limit`
/// rather than holding its task, its queue and its id forever.
async fn written<E>(limit: Duration, write: impl Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(limit, write).await, Ok(Ok(())))
}

fn is_capacity_error(err: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = err.into_inner();
    matches!(inner.downcast_ref::<WsError>(), Some(WsError::Capacity(_)))
}

impl Conn {
    async fn run<W, R>(
        &mut self,
        socket: &mut W,
        read: &mut R,
        rx: &mut mpsc::Receiver<Utf8Bytes>,
    ) -> Ending
    where
        W: Sink<Message> + Unpin,
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let config = self.shared.config.clone();
        let mut shutdown = self.shared.shutdown.clone();
        if *shutdown.borrow_and_update() {
            return Ending::Shutdown;
        }
        let challenge = encode(&ServerMessage::Challenge {
            nonce: hex::encode(self.nonce),
            protocol_version: PROTOCOL_VERSION,
            compat_unverified_ids: config.compat_unverified_ids,
        });
        let write_timeout = config.write_timeout();
        if !written(write_timeout, socket.send(Message::Text(challenge))).await {
            return Ending::Gone;
        }
        let idle = config.idle_timeout();
        let interval = config.ping_interval().min(idle);
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let join_deadline = tokio::time::sleep(config.join_timeout());
        tokio::pin!(join_deadline);
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ending::Shutdown,
                incoming = read.next() => {
                    let Some(incoming) = incoming else { return Ending::Gone };
                    last_seen = Instant::now();
                    match incoming {
                        Ok(Message::Text(text)) => {
                            if let Some(ending) = self.handle_text(&text).await {
                                let _ = written(write_timeout, self.flush_replies(socket)).await;
                                return ending;
                            }
                        }
                        Ok(Message::Binary(_)) => {
                            match self.admit() {
                                Admit::Yes => self.reply_error(reject(
                                    ErrorCode::BinaryNotSupported,
                                    "binary messages are not supported: send JSON text",
                                )),
                                Admit::No => {}
                                Admit::Abuse => {
                                    let _ = written(write_timeout, self.flush_replies(socket)).await;
                                    return Ending::Close(close::POLICY, "rate limit abuse");
                                }
                            }
                        }
                        Ok(Message::Ping(_) | Message::Pong(_)) => {}
                        Ok(Message::Close(_)) => return Ending::Gone,
                        Err(err) => {
                            if is_capacity_error(err) {
                                self.reply_error(reject(
                                    ErrorCode::MessageTooLarge,
                                    format!(
                                        "message over the limit of {} bytes",
                                        config.max_frame_bytes
                                    ),
                                ));
                                let _ = written(write_timeout, self.flush_replies(socket)).await;
                                return Ending::Close(close::TOO_BIG, "message too large");
                            }
                            return Ending::Gone;
                        }
                    }
                    if !written(write_timeout, self.flush_replies(socket)).await {
                        return Ending::Gone;
                    }
                }
                Some(first) = rx.recv() => {
                    let batch = async {
                        socket.feed(Message::Text(first)).await?;
                        for _ in 1..WRITE_BATCH {
                            let Ok(more) = rx.try_recv() else { break };
                            socket.feed(Message::Text(more)).await?;
                        }
                        socket.flush().await
                    };
                    if !written(write_timeout, batch).await {
                        return Ending::Gone;
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() >= idle {
                        return Ending::Close(close::NORMAL, "idle timeout");
                    }
                    if !written(write_timeout, socket.send(Message::Ping(Default::default()))).await {
                        return Ending::Gone;
                    }
                }
                _ = &mut join_deadline, if !self.ever_joined => {
                    self.reply_error(reject(
                        ErrorCode::JoinTimeout,
                        format!("no join within {} s", config.join_timeout().as_secs()),
                    ));
                    let _ = written(write_timeout, self.flush_replies(socket)).await;
                    return Ending::Close(close::POLICY, "join timeout");
                }
            }
        }
    }
}

/// The rate limiter's verdict on one message.
enum Admit {
    Yes,
    /// Over the rate: dropped, an error is queued.
    No,
    /// Over the rate for too long: close.
    Abuse,
}

fn required_str<'a>(map: &Fields<'a>, field: &str) -> Result<Cow<'a, str>, Rejection> {
    match map.get(field) {
        None => Err(reject(
            ErrorCode::MissingField,
            format!("missing field `{field}`"),
        )),
        Some(raw) => fields::as_str(raw).ok_or_else(|| {
            reject(
                ErrorCode::InvalidField,
                format!("field `{field}` must be a string"),
            )
        }),
    }
}

fn optional_str<'a>(map: &Fields<'a>, field: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match map.get(field) {
        None => Ok(None),
        Some(raw) => fields::as_str(raw).map(Some).ok_or_else(|| {
            reject(
                ErrorCode::InvalidField,
                format!("field `{field}` must be a string"),
            )
        }),
    }
}

/// `field` must be present with a JSON type starting with `first` (`{`, `[` or `"`).
fn required_kind(map: &Fields<'_>, field: &str, what: &str, first: char) -> Result<(), Rejection> {
    match map.get(field) {
        None => Err(reject(
            ErrorCode::MissingField,
            format!("missing field `{field}`"),
        )),
        Some(raw) if fields::kind(raw) == first => Ok(()),
        Some(_) => Err(reject(
            ErrorCode::InvalidField,
            format!("field `{field}` must be {what}"),
        )),
    }
}

impl Conn {
    fn compat(&self) -> bool {
        self.shared.config.compat_unverified_ids
    }

    fn valid_id(&self, id: &str) -> bool {
        if self.compat() {
            is_compat_id(id)
        } else {
            is_hex_id(id)
        }
    }

    fn id_rule(&self) -> &'static str {
        if self.compat() {
            "1 to 128 printable ASCII characters"
        } else {
            "40 lowercase hex characters"
        }
    }

    fn reply(&mut self, message: &ServerMessage) {
        self.replies.push(encode(message));
    }

    fn reply_error(&mut self, rejection: Rejection) {
        self.shared.metrics.reject(rejection.code);
        trace!(conn = self.id, code = %rejection.code, "rejected input");
        let message = error_message(rejection.code, rejection.message, rejection.peer_id);
        self.reply(&message);
    }

    async fn flush_replies<W>(&mut self, socket: &mut W) -> Result<(), W::Error>
    where
        W: Sink<Message> + Unpin,
    {
        if self.replies.is_empty() {
            return Ok(());
        }
        for reply in self.replies.drain(..) {
            socket.feed(Message::Text(reply)).await?;
        }
        socket.flush().await
    }

    fn admit(&mut self) -> Admit {
        if self.limiter.try_take() {
            self.strikes = 0;
            return Admit::Yes;
        }
        self.strikes = self.strikes.saturating_add(1);
        let config = &self.shared.config;
        if self.strikes >= config.rate_abuse_strikes.max(1) {
            self.shared.metrics.reject(ErrorCode::RateLimited);
            warn!(conn = self.id, "closing a connection over its rate limit");
            return Admit::Abuse;
        }
        let message = format!(
            "too many messages: the limit is {} per second with bursts of {}",
            config.rate_per_sec, config.rate_burst
        );
        self.reply_error(reject(ErrorCode::RateLimited, message));
        Admit::No
    }

    /// Handle one text message; `Some` ends the connection.
    async fn handle_text(&mut self, text: &str) -> Option<Ending> {
        match self.admit() {
            Admit::Yes => {}
            Admit::No => return None,
            Admit::Abuse => return Some(Ending::Close(close::POLICY, "rate limit abuse")),
        }
        if let Err(rejection) = self.dispatch(text).await {
            self.reply_error(rejection);
        }
        None
    }

    async fn dispatch(&mut self, text: &str) -> Result<(), Rejection> {
        let map = Fields::parse(text).map_err(|e| match e {
            ParseError::InvalidJson(e) => {
                reject(ErrorCode::InvalidJson, format!("invalid JSON: {e}"))
            }
            ParseError::NotAnObject => {
                reject(ErrorCode::NotAnObject, "a message must be a JSON object")
            }
            ParseError::TooManyFields => reject(
                ErrorCode::InvalidField,
                format!("a message has at most {} fields", fields::MAX_FIELDS),
            ),
        })?;
        let kind = match map.get("type") {
            None => return Err(reject(ErrorCode::MissingType, "missing field `type`")),
            Some(raw) => fields::as_str(raw)
                .ok_or_else(|| reject(ErrorCode::InvalidField, "field `type` must be a string"))?,
        };
        match &*kind {
            "join" => self.join(&map).await,
            "leave" => self.leave(&map),
            "ping" => {
                let ts = map
                    .get("ts")
                    .and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok());
                self.reply(&ServerMessage::Pong { ts });
                Ok(())
            }
            k if RELAYED.contains(&k) => self.relay(k, &map),
            other => Err(reject(
                ErrorCode::UnknownType,
                format!("unknown message type `{}`", echo(other)),
            )),
        }
    }

    async fn join(&mut self, map: &Fields<'_>) -> Result<(), Rejection> {
        if let Some(joined) = &self.joined {
            return Err(reject(
                ErrorCode::AlreadyJoined,
                format!(
                    "this connection already holds {}; send leave first",
                    joined.id
                ),
            ));
        }
        let peer_id = required_str(map, "peerId")?;
        let version = match map.get("protocolVersion") {
            None => None,
            Some(raw) => Some(serde_json::from_str::<u64>(raw.get()).map_err(|_| {
                reject(
                    ErrorCode::InvalidField,
                    "field `protocolVersion` must be a non-negative integer",
                )
            })?),
        };
        if let Some(v) = version
            && v > u64::from(PROTOCOL_VERSION)
        {
            return Err(reject(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported; this server speaks {PROTOCOL_VERSION}"
                ),
            ));
        }
        let room = optional_str(map, "room")?.unwrap_or(Cow::Borrowed(DEFAULT_ROOM));
        let room = &*room;
        if !is_valid_room(room) {
            return Err(reject(
                ErrorCode::InvalidRoom,
                format!(
                    "invalid room `{}`: 1 to 64 characters of [A-Za-z0-9._-]",
                    echo(room)
                ),
            ));
        }
        let peer_id = &*peer_id;
        let public_key = optional_str(map, "publicKey")?;
        let signature = optional_str(map, "signature")?;
        let verified = match (public_key.as_deref(), signature.as_deref()) {
            (None, None) => {
                if !self.valid_id(peer_id) {
                    return Err(reject(
                        ErrorCode::InvalidPeerId,
                        format!("invalid peer id `{}`: {}", echo(peer_id), self.id_rule()),
                    ));
                }
                if !self.compat() {
                    return Err(reject(
                        ErrorCode::ProofRequired,
                        "this server verifies ids: join with publicKey and signature over the challenge nonce",
                    ));
                }
                false
            }
            (Some(_), None) => {
                return Err(reject(ErrorCode::MissingField, "missing field `signature`"));
            }
            (None, Some(_)) => {
                return Err(reject(ErrorCode::MissingField, "missing field `publicKey`"));
            }
            (Some(public_key), Some(signature)) => {
                let host = optional_str(map, "host")?.ok_or_else(|| {
                    reject(
                        ErrorCode::MissingField,
                        "missing field `host`: a join proof names the server it is for (protocol version 2)",
                    )
                })?;
                self.check_host(&host)?;
                self.verify(peer_id, public_key, signature, &host)?;
                true
            }
        };
        self.register(peer_id, room, verified || version.is_some())
            .await
    }

    /// A proof is valid only for this server: its `host` must be one this server answers to.
    fn check_host(&self, host: &str) -> Result<(), Rejection> {
        if host.len() > transport::MAX_HOST_LEN {
            return Err(reject(
                ErrorCode::InvalidField,
                format!("field `host` is over {} bytes", transport::MAX_HOST_LEN),
            ));
        }
        let host = transport::normalize_host(host);
        let ours = match &self.shared.proof_hosts {
            Some(hosts) => hosts.contains(&host),
            None => self.host.as_deref() == Some(host.as_str()),
        };
        if ours {
            return Ok(());
        }
        let expected = match &self.shared.proof_hosts {
            Some(hosts) => hosts.join(", "),
            None => self.host.clone().unwrap_or_default(),
        };
        Err(reject(
            ErrorCode::WrongHost,
            format!(
                "this proof is for `{}`; this server is `{}`",
                echo(&host),
                echo(&expected)
            ),
        ))
    }

    fn verify(
        &self,
        peer_id: &str,
        public_key: &str,
        signature: &str,
        host: &str,
    ) -> Result<(), Rejection> {
        if !is_hex_id(peer_id) {
            return Err(reject(
                ErrorCode::InvalidPeerId,
                format!(
                    "invalid peer id `{}`: 40 lowercase hex characters",
                    echo(peer_id)
                ),
            ));
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(public_key, &mut key).map_err(|_| {
            reject(
                ErrorCode::InvalidPublicKey,
                "publicKey must be 32 bytes as 64 hex characters",
            )
        })?;
        let verifying_key = VerifyingKey::from_bytes(&key).map_err(|_| {
            reject(
                ErrorCode::InvalidPublicKey,
                "publicKey is not a valid ed25519 key",
            )
        })?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(signature, &mut sig).map_err(|_| {
            reject(
                ErrorCode::InvalidSignature,
                "signature must be 64 bytes as 128 hex characters",
            )
        })?;
        if PeerId::from_public_key(&key).as_str() != peer_id {
            return Err(reject(
                ErrorCode::IdMismatch,
                "peerId is not SHA-1 of publicKey",
            ));
        }
        verifying_key
            .verify_strict(
                &join_proof_message(&self.nonce, host),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| {
                reject(
                    ErrorCode::InvalidSignature,
                    "the signature does not verify over this connection's challenge and host",
                )
            })
    }

    /// Pay for a join before it is made: the notifications it causes (`peer_joined` to each
    /// peer it is introduced to, at most the room's size, and as many `peer_left` when it
    /// leaves) are charged to this connection's rate limit, so that join/leave cycling cannot
    /// make the server send more messages than the cycler may send itself; and the source's join
    /// rate is checked.
    fn pay_for_join(&mut self, room_len: usize) -> Result<(), Rejection> {
        let config = &self.shared.config;
        let introduced = room_len.min(
            config
                .bootstrap_closest
                .saturating_add(config.bootstrap_random),
        );
        let cost = u32::try_from(introduced.saturating_mul(2)).unwrap_or(u32::MAX);
        if !self.limiter.try_take_n(cost) {
            return Err(reject(
                ErrorCode::RateLimited,
                format!(
                    "too many joins: this join costs {cost} messages of the limit of {} per second",
                    config.rate_per_sec
                ),
            ));
        }
        if !self.shared.joins.try_join(self.source) {
            return Err(reject(
                ErrorCode::RateLimited,
                format!(
                    "too many joins from your address: the limit is {} per second with bursts of {}",
                    config.source_join_rate, config.source_join_burst
                ),
            ));
        }
        Ok(())
    }

    async fn register(
        &mut self,
        peer_id: &str,
        room: &str,
        extended: bool,
    ) -> Result<(), Rejection> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let id: Arc<str> = Arc::from(peer_id);
        let id_taken = || Rejection {
            code: ErrorCode::IdTaken,
            message: format!("{peer_id} is held by another connection"),
            peer_id: Some(peer_id.to_owned()),
        };
        // A join that will be refused causes no notification: it is not charged.
        let (held, room_len) = {
            let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
            (registry.holds(peer_id), registry.room_len(room))
        };
        if held {
            return Err(id_taken());
        }
        self.pay_for_join(room_len)?;
        if let Some(cluster) = &shared.cluster {
            // The id is claimed cluster-wide first; a second local join of it meanwhile is
            // refused here.
            if !shared
                .claiming
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone())
            {
                return Err(id_taken());
            }
            let claimed = cluster.claim(peer_id, self.id, room, self.source).await;
            shared
                .claiming
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            match claimed {
                Ok(()) => {}
                Err(ClaimError::Taken) => return Err(id_taken()),
                Err(ClaimError::Unavailable(why)) => {
                    debug!(conn = self.id, %why, "join refused: the cluster is unreachable");
                    return Err(reject(
                        ErrorCode::Unavailable,
                        "this server cannot reach its cluster's Redis: join another server, or again later",
                    ));
                }
            }
        }
        let room: Arc<str> = Arc::from(room);
        // The introduction rule: the joiner's closest peers, then a few random ones, each draw a
        // random key (a draw that hits a peer already chosen is lost; four draws per wanted peer).
        let rule = Rule {
            closest: config.bootstrap_closest,
            random: config.bootstrap_random,
            attempts: config.bootstrap_random * 4,
        };
        let mut rng = shared.rng.lock().unwrap_or_else(|e| e.into_inner());
        let joined = shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .join(
                id.clone(),
                self.id,
                room.clone(),
                self.tx.clone(),
                self.source,
                rule,
                config.max_introduced_per_source,
                &mut *rng,
            );
        drop(rng);
        let introductions = match joined {
            Ok(introductions) => introductions,
            Err(()) => {
                // Another connection of this server holds it (the claim, ours too, stays).
                return Err(id_taken());
            }
        };
        shared.metrics.joins.inc();
        debug!(conn = self.id, peer = %id, room = %room, introduced = introductions.peers.len(), "joined");
        let announce = encode(&ServerMessage::PeerJoined {
            peer_id: PeerId::new(&*id),
        });
        self.tell(&introductions.tell, &announce, Some(&id), None);
        if extended {
            self.reply(&ServerMessage::Joined {
                peer_id: PeerId::new(&*id),
                room: room.to_string(),
                protocol_version: PROTOCOL_VERSION,
            });
        }
        // The JavaScript server sends bootstrap_peers only when there is someone to list.
        if extended || !introductions.peers.is_empty() {
            let peers = introductions
                .peers
                .iter()
                .map(|p| PeerInfo {
                    id: PeerId::new(&**p),
                })
                .collect();
            self.reply(&ServerMessage::BootstrapPeers { peers });
        }
        self.joined = Some(Joined { id, room });
        self.ever_joined = true;
        Ok(())
    }

    fn leave(&mut self, map: &Fields<'_>) -> Result<(), Rejection> {
        let Some(joined) = &self.joined else {
            return Err(reject(ErrorCode::NotJoined, "leave before join"));
        };
        if let Some(named) = optional_str(map, "peerId")?
            && *named != *joined.id
        {
            return Err(Rejection {
                code: ErrorCode::NotYourId,
                message: format!("this connection does not hold {}", echo(&named)),
                peer_id: None,
            });
        }
        self.unregister();
        Ok(())
    }

    /// Give up the held id (if any) and tell the peers introduced to or by it.
    fn unregister(&mut self) {
        let Some(joined) = self.joined.take() else {
            return;
        };
        let tell = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .leave(&joined.id, self.id);
        debug!(conn = self.id, peer = %joined.id, "left");
        if let Some(cluster) = &self.shared.cluster {
            cluster.leave(&joined.id, self.id, &joined.room, self.source);
        }
        if tell.is_empty() {
            return;
        }
        let left = encode(&ServerMessage::PeerLeft {
            peer_id: PeerId::new(&*joined.id),
        });
        self.tell(&tell, &left, None, Some(&joined.id));
    }

    /// Send `text` (`peer_joined` or `peer_left` about `about`) to each of `tell`: a local
    /// queue directly, a peer of another server through the cluster, which remembers (joined)
    /// or forgets (left) that it was introduced to `about`.
    fn tell(&self, tell: &[Tell], text: &Utf8Bytes, joined: Option<&str>, left: Option<&str>) {
        for t in tell {
            match t {
                Tell::Local(queue) => {
                    let _ = queue.try_send(text.clone());
                }
                Tell::Remote { server, id } => {
                    if let Some(cluster) = &self.shared.cluster {
                        cluster.notice(&self.shared, server, id, text, joined, left);
                    }
                }
            }
        }
    }

    fn relay(&mut self, kind: &str, map: &Fields<'_>) -> Result<(), Rejection> {
        let Some(joined) = &self.joined else {
            return Err(reject(
                ErrorCode::NotJoined,
                format!("`{kind}` before join: join first"),
            ));
        };
        let to = required_str(map, "to")?;
        if !self.valid_id(&to) {
            return Err(reject(
                ErrorCode::InvalidPeerId,
                format!(
                    "invalid peer id `{}` in `to`: {}",
                    echo(&to),
                    self.id_rule()
                ),
            ));
        }
        match kind {
            "signal" => required_kind(map, "signal", "an object", '{')?,
            "batched_signals" => required_kind(map, "signals", "an array", '[')?,
            "connection_rejected" | "signal_rejected" => {
                required_kind(map, "reason", "a string", '"')?;
            }
            "kademlia_rpc_request" | "kademlia_rpc_response" => {
                required_kind(map, "rpcMessage", "an object", '{')?;
            }
            _ => {}
        }
        if *to == *joined.id {
            return Err(reject(
                ErrorCode::SelfSignal,
                format!("`{kind}` addressed to its own sender"),
            ));
        }
        let text = map.with_from(&joined.id);
        let shared = &self.shared;
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        let not_found = || Rejection {
            code: ErrorCode::UnknownPeer,
            message: format!("Peer {to} not found."),
            peer_id: Some(to.to_string()),
        };
        let queue = match registry.route(&joined.room, &to).ok_or_else(not_found)? {
            At::Local(queue) => queue,
            At::Remote(server) => {
                let server = server.clone();
                drop(registry);
                let cluster = shared.cluster.as_ref().ok_or_else(not_found)?;
                if !cluster.relay(shared, &server, &to, &joined.room, &joined.id, &text) {
                    return Err(Rejection {
                        code: ErrorCode::PeerBusy,
                        message: format!(
                            "the way to peer {to} (another server of the cluster) is full; message dropped"
                        ),
                        peer_id: Some(to.to_string()),
                    });
                }
                shared.metrics.relayed.inc();
                trace!(conn = self.id, kind, to = %to, "relayed to another server");
                return Ok(());
            }
        };
        match queue.try_send(Utf8Bytes::from(text)) {
            Ok(()) => {
                shared.metrics.relayed.inc();
                trace!(conn = self.id, kind, to = %to, "relayed");
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(Rejection {
                code: ErrorCode::PeerBusy,
                message: format!("peer {to} is not keeping up; message dropped"),
                peer_id: Some(to.to_string()),
            }),
            Err(TrySendError::Closed(_)) => Err(not_found()),
        }
    }
}

#[cfg(test)]
mod tests;
