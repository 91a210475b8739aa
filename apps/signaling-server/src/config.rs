//! The server's configuration: every limit is a flag with an environment fallback and a
//! stated default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the browser chat is built (`apps/chat-web/dist`, by `cargo xtask web`), found from this
/// crate's location when it was compiled.
pub const DEFAULT_WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../chat-web/dist");

/// The signaling server's configuration (also its command-line flags).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Config {
    /// Address to listen on (WebSocket on `/`, the browser chat on `GET /`, `GET /health`,
    /// `GET /metrics`).
    #[arg(long, env = "SIGNALING_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Most connected WebSocket clients; one more is refused with `server_full` and close 1013.
    #[arg(long, env = "SIGNALING_MAX_CLIENTS", default_value_t = 20_000)]
    pub max_clients: usize,

    /// Most open TCP connections (HTTP requests and WebSockets alike) from one source address
    /// (an IPv4 address, or an IPv6 /64); one more is answered `429` and closed. Behind a reverse
    /// proxy every client shares the proxy's address: raise it there.
    #[arg(
        long,
        env = "SIGNALING_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = 64
    )]
    pub max_connections_per_source: usize,

    /// Joins per second one source address may make on average (a GCRA over all its connections;
    /// 0 counts as 1); over it a join gets `rate_limited`.
    #[arg(long, env = "SIGNALING_SOURCE_JOIN_RATE", default_value_t = 5)]
    pub source_join_rate: u32,

    /// Joins one source address may make in a burst (0 counts as 1).
    #[arg(long, env = "SIGNALING_SOURCE_JOIN_BURST", default_value_t = 64)]
    pub source_join_burst: u32,

    /// Most peers of one introduction (`bootstrap_peers`) that connected from one source address,
    /// so that ids ground near a victim from one host cannot fill its introductions.
    #[arg(long, env = "SIGNALING_MAX_INTRODUCED_PER_SOURCE", default_value_t = 4)]
    pub max_introduced_per_source: usize,

    /// Seconds a connection has to send a complete HTTP request head (also the longest an idle
    /// HTTP connection is kept between requests); then it is closed.
    #[arg(long, env = "SIGNALING_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,

    /// Seconds a write to a WebSocket client may block (a client that does not read its socket)
    /// before the connection is dropped.
    #[arg(long, env = "SIGNALING_WRITE_TIMEOUT_SECS", default_value_t = 10)]
    pub write_timeout_secs: u64,

    /// The host names clients dial this server by (`host` or `host:port`, the port left out when
    /// it is the scheme's default), to which join proofs are bound; repeatable or comma-separated.
    /// When empty: the listening address (`ip:port`, and `localhost:port` on loopback), or, when
    /// listening on every interface (0.0.0.0 or ::), the `Host` header of each connection's
    /// request, which a server relaying proofs can forge: set it on a public server.
    #[arg(long, env = "SIGNALING_PUBLIC_HOST", value_delimiter = ',')]
    pub public_host: Vec<String>,

    /// Also accept the JavaScript clients' unverified `join {peerId}` (any printable id).
    #[arg(long, env = "SIGNALING_COMPAT_UNVERIFIED_IDS")]
    pub compat_unverified_ids: bool,

    /// Largest WebSocket message or frame in bytes; over it: `message_too_large`, close 1009.
    #[arg(long, env = "SIGNALING_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Messages per second a connection may send on average (the GCRA's refill rate; 0 counts
    /// as 1).
    #[arg(long, env = "SIGNALING_RATE_PER_SEC", default_value_t = 50)]
    pub rate_per_sec: u32,

    /// Messages a connection may send in a burst (the GCRA's burst; 0 counts as 1).
    #[arg(long, env = "SIGNALING_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,

    /// Consecutive rate-limited messages after which the connection is closed with 1008.
    #[arg(long, env = "SIGNALING_RATE_ABUSE_STRIKES", default_value_t = 50)]
    pub rate_abuse_strikes: u32,

    /// Seconds without any frame from a client (pongs count) before it is closed.
    #[arg(long, env = "SIGNALING_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Seconds between the server's WebSocket pings.
    #[arg(long, env = "SIGNALING_PING_INTERVAL_SECS", default_value_t = 20)]
    pub ping_interval_secs: u64,

    /// Seconds a new connection has to send its first `join` before it is closed (1008).
    #[arg(long, env = "SIGNALING_JOIN_TIMEOUT_SECS", default_value_t = 30)]
    pub join_timeout_secs: u64,

    /// How many XOR-closest peers of the room a join is introduced to (K, Kademlia's bucket size; the
    /// JavaScript server used 5).
    #[arg(long, env = "SIGNALING_BOOTSTRAP_CLOSEST", default_value_t = 20)]
    pub bootstrap_closest: usize,

    /// How many random peers of the room a join is introduced to besides the closest.
    #[arg(long, env = "SIGNALING_BOOTSTRAP_RANDOM", default_value_t = 3)]
    pub bootstrap_random: usize,

    /// Messages queued for one client before relays to it fail with `peer_busy`.
    #[arg(long, env = "SIGNALING_OUTGOING_QUEUE", default_value_t = 64)]
    pub outgoing_queue: usize,

    /// Seconds to wait for clients to close on shutdown before exiting anyway.
    #[arg(long, env = "SIGNALING_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    pub shutdown_grace_secs: u64,

    /// The browser chat's files (built by `cargo xtask web`), served at `GET /` (index.html) and
    /// below it; a WebSocket upgrade at `/` is still the signaling socket. When the folder has no
    /// index.html, `GET /` says how to build it.
    #[arg(long, env = "SIGNALING_WEB_DIR", default_value = DEFAULT_WEB_DIR)]
    pub web_dir: PathBuf,

    /// Share rooms with the other servers using this Redis (`redis://host:port[/db]`): a cluster
    /// whose servers introduce, route and check ids as one (docs/cluster.md). Off by default: one
    /// process needs no Redis.
    #[arg(long, env = "SIGNALING_REDIS")]
    pub redis: Option<String>,

    /// The prefix of the cluster's Redis keys and channels (clusters sharing one Redis differ
    /// by it).
    #[arg(
        long,
        env = "SIGNALING_REDIS_PREFIX",
        default_value = "p2pmesh:signaling"
    )]
    pub redis_prefix: String,

    /// Milliseconds after which a server that stopped refreshing its key in Redis (killed,
    /// stalled, cut off) counts as gone: its clients leave the cluster's rooms and their ids are
    /// free. It refreshes four times per period.
    #[arg(long, env = "SIGNALING_REDIS_EXPIRY_MS", default_value_t = 2000)]
    pub redis_expiry_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_clients: 20_000,
            max_connections_per_source: 64,
            source_join_rate: 5,
            source_join_burst: 64,
            max_introduced_per_source: 4,
            http_header_timeout_secs: 10,
            write_timeout_secs: 10,
            public_host: Vec::new(),
            compat_unverified_ids: false,
            max_frame_bytes: 64 * 1024,
            rate_per_sec: 50,
            rate_burst: 100,
            rate_abuse_strikes: 50,
            idle_timeout_secs: 60,
            ping_interval_secs: 20,
            join_timeout_secs: 30,
            bootstrap_closest: 20,
            bootstrap_random: 3,
            outgoing_queue: 64,
            shutdown_grace_secs: 5,
            web_dir: PathBuf::from(DEFAULT_WEB_DIR),
            redis: None,
            redis_prefix: "p2pmesh:signaling".into(),
            redis_expiry_ms: 2000,
        }
    }
}

impl Config {
    /// A configuration for tests: listen on an ephemeral port of 127.0.0.1, without the limits per
    /// source address (every client of a test connects from 127.0.0.1; a test of those limits
    /// sets them).
    pub fn ephemeral() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::default().one_host()
        }
    }

    /// This configuration with the limits per source address lifted, for tools and tests that
    /// connect all their clients from one host.
    pub fn one_host(self) -> Self {
        Self {
            max_connections_per_source: usize::MAX,
            source_join_rate: u32::MAX,
            source_join_burst: u32::MAX,
            max_introduced_per_source: usize::MAX,
            ..self
        }
    }

    /// The hosts join proofs must name (normalized), or `None` when each connection's `Host`
    /// header is taken instead (no public host configured and listening on every interface).
    pub(crate) fn proof_hosts(&self) -> Option<Vec<String>> {
        if !self.public_host.is_empty() {
            return Some(
                self.public_host
                    .iter()
                    .map(|h| transport::normalize_host(h.trim()))
                    .collect(),
            );
        }
        let ip = self.addr.ip();
        if ip.is_unspecified() {
            return None;
        }
        let mut hosts = vec![transport::normalize_host(&self.addr.to_string())];
        if ip.is_loopback() {
            hosts.push(transport::normalize_host(&format!(
                "localhost:{}",
                self.addr.port()
            )));
        }
        Some(hosts)
    }

    pub(crate) fn http_header_timeout(&self) -> Duration {
        Duration::from_secs(self.http_header_timeout_secs.max(1))
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs.max(1))
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    pub(crate) fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs.max(1))
    }

    pub(crate) fn join_timeout(&self) -> Duration {
        Duration::from_secs(self.join_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn default_matches_the_flags_defaults() {
        let cli = Cli::try_parse_from(["signaling-server"]).expect("parse");
        assert_eq!(cli.config, Config::default());
    }
}
