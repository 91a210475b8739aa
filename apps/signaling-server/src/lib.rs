//! The p2pmesh signaling server: WebSocket signaling (JSON, a superset of the JavaScript
//! p2pmesh server's protocol, see docs/protocol.md), `GET /health`, `GET /metrics`, and the
//! browser chat (apps/chat-web, built by `cargo xtask web`) at `GET /`: a WebSocket upgrade at `/`
//! is the signaling socket, any other `GET /` the chat's index.html, and other paths its files
//! (from [`Config::web_dir`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = signaling_server::Server::bind(signaling_server::Config::ephemeral()).await?;
//! println!("listening on {}", server.local_addr()?);
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! What it guarantees:
//! - Ids: by default a join proves its id (ed25519 signature over the connection's nonce and
//!   this server's host, so a proof cannot be relayed to another server; the id is SHA-1 of
//!   the key). One live connection holds an id; a second join with it is
//!   refused (`id_taken`) and the holder keeps it; only the holding connection can
//!   unregister it.
//! - Rooms: nothing crosses rooms. Introductions are targeted: the joiner's K XOR-closest
//!   peers and a few random ones (the registry module documents how, and its cost).
//! - Relays: `from` is always set by the server.
//! - Limits (see [`Config`]): frame size (close 1009), per-connection rate limit (GCRA; error,
//!   then close 1008; a join is charged the notifications it causes), maximum clients
//!   (`server_full`, close 1013), per source address: open connections (`429`), joins per
//!   second, peers per introduction; HTTP header-read timeout, write timeout, idle timeout with
//!   WebSocket pings, join timeout. Every outgoing queue is bounded. `/metrics` never names a
//!   room.
//! - Every malformed input gets an `error` with a `code`; the connection keeps serving.
//! - Shutdown: clients get a `shutdown` message and a close 1001, then the server returns.

#![deny(missing_docs)]

mod cluster;
mod config;
mod connection;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod rate;
mod registry;
mod source;
mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};
use transport::{ErrorCode, ServerMessage};

pub use config::Config;

use metrics::Metrics;
use registry::Registry;
use source::{Admitted, Connections, Joins, Source};

/// The read buffer of one WebSocket: small, because there are tens of thousands of them
/// (tungstenite's default is 128 KiB); larger messages grow it as needed.
const READ_BUFFER: usize = 4 * 1024;

/// Bytes buffered before a write reaches the socket (the connection flushes after each batch).
const WRITE_BUFFER: usize = 4 * 1024;

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) metrics: Metrics,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) next_conn: AtomicU64,
    /// Open connections per source address.
    pub(crate) connections: Arc<Connections>,
    /// Joins per source address.
    pub(crate) joins: Joins,
    /// The hosts a join proof may name (`None`: the connection's `Host` header).
    pub(crate) proof_hosts: Option<Vec<String>>,
    /// The server's randomness (challenge nonces, random introductions): seeded from the OS
    /// in [`Server::bind`], from a printed seed in tests.
    pub(crate) rng: Mutex<ChaCha20Rng>,
    /// The cluster this server shares rooms with (`--redis`).
    pub(crate) cluster: Option<Arc<cluster::Cluster>>,
    /// Ids whose cluster-wide claim is in flight on this server (a second local join of one
    /// waits for none: it is refused).
    pub(crate) claiming: Mutex<std::collections::HashSet<Arc<str>>>,
}

impl Shared {
    /// The state of a server with `config`, its randomness seeded with `seed`; the sender
    /// starts the shutdown.
    pub(crate) fn new(
        config: Config,
        seed: [u8; 32],
        cluster: Option<cluster::Cluster>,
    ) -> (Arc<Self>, watch::Sender<bool>) {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let shared = Arc::new(Self {
            metrics: Metrics::new(cluster.is_some()),
            cluster: cluster.map(Arc::new),
            claiming: Mutex::new(std::collections::HashSet::new()),
            slots: Arc::new(Semaphore::new(config.max_clients)),
            connections: Arc::new(Connections::default()),
            joins: Joins::new(config.source_join_rate, config.source_join_burst),
            proof_hosts: config.proof_hosts(),
            config,
            registry: RwLock::new(Registry::default()),
            shutdown,
            next_conn: AtomicU64::new(1),
            rng: Mutex::new(ChaCha20Rng::from_seed(seed)),
        });
        (shared, shutdown_tx)
    }

    /// Fill `bytes` from the server's generator.
    pub(crate) fn fill_random(&self, bytes: &mut [u8]) {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fill_bytes(bytes);
    }
}

/// A bound, not yet running, signaling server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Bind the listening socket of `config.addr` (port 0 picks a free port).
    pub async fn bind(mut config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.addr).await?;
        // Port 0 picked a port: the proofs name the real one.
        config.addr = listener.local_addr()?;
        if config.proof_hosts().is_none() {
            warn!(
                "listening on every interface without --public-host: join proofs are checked \
                 against each request's Host header, which a server relaying proofs can forge"
            );
        }
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let cluster = match &config.redis {
            Some(url) => {
                let mut id = [0u8; 8];
                rand::rng().fill_bytes(&mut id);
                Some(cluster::Cluster::new(
                    url,
                    &config.redis_prefix,
                    Duration::from_millis(config.redis_expiry_ms),
                    hex::encode(id),
                )?)
            }
            None => None,
        };
        let (shared, shutdown_tx) = Shared::new(config, seed, cluster);
        Ok(Self {
            listener,
            shared,
            shutdown_tx,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` completes, then tell every client, close every socket, and wait
    /// (at most `shutdown_grace_secs`) for them to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            shared,
            shutdown_tx,
        } = self;
        let addr = listener.local_addr()?;
        let config = &shared.config;
        info!(
            %addr,
            max_clients = config.max_clients,
            compat_unverified_ids = config.compat_unverified_ids,
            max_frame_bytes = config.max_frame_bytes,
            rate_per_sec = config.rate_per_sec,
            rate_burst = config.rate_burst,
            "signaling server listening"
        );
        let app = router(shared.clone());
        let cluster = shared
            .cluster
            .clone()
            .map(|cluster| tokio::spawn(cluster::run(shared.clone(), cluster)));
        let mut http = JoinSet::new();
        let stop = shutdown_tx.subscribe();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => {
                    info!("shutting down: closing every connection");
                    let _ = shutdown_tx.send(true);
                    break;
                }
                Some(_) = http.join_next(), if !http.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: as axum::serve, wait a little.
                    warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // Signals are small and latency matters: no Nagle delay.
            let _ = tcp.set_nodelay(true);
            let source = Source::of(remote.ip());
            let Some(admitted) = shared
                .connections
                .admit(source, shared.config.max_connections_per_source)
            else {
                shared.metrics.refused_connections.inc();
                debug!(%source, "refused a connection: too many from its source");
                http.spawn(refuse_busy_source(tcp));
                continue;
            };
            http.spawn(serve_http(
                tcp,
                Arc::new(admitted),
                app.clone(),
                shared.config.http_header_timeout(),
                stop.clone(),
            ));
        }
        // The HTTP connections that are not WebSockets finish their request and close.
        let grace = Duration::from_secs(shared.config.shutdown_grace_secs);
        let _ =
            tokio::time::timeout(grace, async { while http.join_next().await.is_some() {} }).await;
        http.abort_all();
        let _ = shutdown_tx.send(true);
        // Upgraded WebSockets are not HTTP connections any more: wait for them by their permits.
        let grace = Duration::from_secs(shared.config.shutdown_grace_secs);
        let all = u32::try_from(shared.config.max_clients).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(grace, shared.slots.acquire_many(all)).await;
        if drained.is_err() {
            warn!(
                open = shared.metrics.clients.get(),
                "shutdown grace period over with connections still open"
            );
        }
        if let Some(cluster) = cluster {
            // It says goodbye to the others once the shutdown is signalled.
            let _ = cluster.await;
        }
        info!("signaling server stopped");
        Ok(())
    }
}

/// Bind `config.addr` and serve until `shutdown` completes (what the binary runs).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Server::bind(config).await?.run(shutdown).await
}

/// Refuse a connection from a source over its limit: a short `429`, then close.
async fn refuse_busy_source(mut tcp: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 44\r\n\r\ntoo many connections from your address now\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(BUSY).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// The source of a request's connection (a request extension): the WebSocket it upgrades to
/// keeps the source's place until it closes.
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub(crate) Arc<Admitted>);

/// One HTTP/1.1 connection: hyper with a header-read timer (a request head not complete within
/// `header_timeout`, or an idle keep-alive connection, is closed), WebSocket upgrades allowed.
async fn serve_http(
    tcp: TcpStream,
    admitted: Arc<Admitted>,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let peer = Peer(admitted);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                debug!(%err, "HTTP connection ended");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", any(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(web_file)
        .with_state(shared)
}

/// `/`: the signaling socket for a WebSocket upgrade, else the browser chat's page. A request that
/// asks for an upgrade but gets it wrong is refused as before (axum's rejection says why).
async fn root(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let asks_upgrade =
        parts.headers.contains_key(header::UPGRADE) || parts.method == axum::http::Method::CONNECT;
    match WebSocketUpgrade::from_request_parts(&mut parts, &shared).await {
        Ok(ws) => {
            let Some(peer) = parts.extensions.get::<Peer>().cloned() else {
                warn!("a request without its connection's source");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(transport::normalize_host);
            websocket(ws, shared, peer, host).await
        }
        Err(rejection) if asks_upgrade => rejection.into_response(),
        Err(_) => web::index(&shared.config.web_dir, Request::from_parts(parts, body)).await,
    }
}

async fn web_file(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    web::file(&shared.config.web_dir, request).await
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    if *shared.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if shared.cluster.as_ref().is_some_and(|c| !c.is_up()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "redis unreachable: joins are refused\n",
        )
            .into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    let (joined, remote, rooms, sizes) = {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        (
            registry.len(),
            registry.remote_len(),
            registry.room_count(),
            registry.room_sizes(),
        )
    };
    let body = shared.metrics.render(joined, remote, rooms, sizes);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

async fn websocket(
    ws: WebSocketUpgrade,
    shared: Arc<Shared>,
    peer: Peer,
    host: Option<String>,
) -> Response {
    let config = &shared.config;
    let ws = ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(config.max_frame_bytes.saturating_mul(2) + WRITE_BUFFER)
        .max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes);
    let permit = match shared.slots.clone().try_acquire_owned() {
        Ok(permit) if !*shared.shutdown.borrow() => permit,
        _ => {
            shared.metrics.refused_connections.inc();
            shared.metrics.reject(ErrorCode::ServerFull);
            let max = config.max_clients;
            return ws.on_upgrade(move |socket| async move {
                let (mut write, mut read) = socket.split();
                let refusal = connection::encode(&ServerMessage::Error {
                    code: Some(ErrorCode::ServerFull),
                    message: format!(
                        "the server holds its maximum of {max} clients; try again later"
                    ),
                    peer_id: None,
                });
                let _ = write.send(axum::extract::ws::Message::Text(refusal)).await;
                connection::close_socket(
                    &mut write,
                    &mut read,
                    connection::close::TRY_AGAIN_LATER,
                    "server full",
                )
                .await;
            });
        }
    };
    ws.on_upgrade(move |socket| async move {
        let (write, read) = socket.split();
        let origin = connection::Origin {
            source: peer.0.source,
            host,
        };
        connection::serve(write, read, shared, origin).await;
        drop(permit);
        drop(peer);
    })
}
