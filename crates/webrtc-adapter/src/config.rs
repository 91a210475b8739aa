//! What a [`Connector`](crate::Connector) is configured with.

use std::net::SocketAddr;
use std::time::Duration;

/// A STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:..`.
    pub urls: Vec<String>,
    /// TURN user name (empty for STUN).
    pub username: String,
    /// TURN credential (empty for STUN).
    pub credential: String,
}

impl IceServer {
    /// A STUN server, e.g. `stun:stun.l.google.com:19302`.
    pub fn stun(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            username: String::new(),
            credential: String::new(),
        }
    }

    /// A TURN server with its credentials.
    pub fn turn(
        url: impl Into<String>,
        username: impl Into<String>,
        credential: impl Into<String>,
    ) -> Self {
        Self {
            urls: vec![url.into()],
            username: username.into(),
            credential: credential.into(),
        }
    }
}

/// How links are set up. Every queue and buffer here is bounded, and its bound is a field.
///
/// One type serves both implementations. In the browser (wasm32) the page's `RTCPeerConnection`
/// owns its sockets and ICE timers, so `bind_addrs`, `include_loopback_candidates`, `mdns`,
/// `socket_buffer_size`, `ice_check_interval`, `ice_check_budget` and `setup_wake_interval`
/// are ignored there; each field says so.
#[derive(Debug, Clone)]
pub struct Config {
    /// STUN and TURN servers. Default: none (host candidates only).
    pub ice_servers: Vec<IceServer>,
    /// Local UDP addresses to gather candidates on. Default: `0.0.0.0:0` (every non-loopback
    /// IPv4 interface, one ephemeral port each). A wildcard skips loopback, so tests use
    /// [`Config::loopback`], which binds `127.0.0.1:0`. Ignored in the browser.
    pub bind_addrs: Vec<SocketAddr>,
    /// Offer loopback host candidates (only useful with a loopback bind address). Ignored in
    /// the browser (Chromium offers them with `--allow-loopback-in-peer-connection`).
    pub include_loopback_candidates: bool,
    /// Resolve and gather mDNS (`.local`) candidates. Off by default: it opens a multicast
    /// socket, which fails in a namespace with only `lo` (webrtc-notes pitfall 2), and our
    /// peers do not hide their addresses from each other anyway. Ignored in the browser.
    pub mdns: bool,
    /// How long a link may take from [`connect`](transport::LinkConnector::connect) to an open
    /// data channel before it is closed with reason `"open timeout"`. Default 10 s.
    pub open_timeout: Duration,
    /// Bytes a link's data channel may hold unacknowledged before
    /// [`send`](transport::LinkSender::send) waits. Default 1 MiB. In the browser this bounds
    /// the channel's `bufferedAmount`, capped at 8 MiB (Chromium fails sends past 16 MiB).
    pub send_buffer_limit: usize,
    /// `SO_RCVBUF` / `SO_SNDBUF` for each UDP socket. Default 4 MiB (the kernel caps it at
    /// `net.core.rmem_max`). Ignored in the browser.
    pub socket_buffer_size: usize,
    /// Largest message [`send`](transport::LinkSender::send) accepts. Default 64 KiB, the
    /// data-channel limit every browser accepts; larger messages must be chunked by the caller.
    pub max_message_size: usize,
    /// Events a link buffers for [`next_event`](transport::PeerLink::next_event) before it
    /// stops reading its data channel (and SCTP flow control slows the peer). Default 256.
    /// A browser cannot stop reading a data channel: there, a link whose reader falls this far
    /// behind is closed with reason `"receive queue full"`.
    pub event_capacity: usize,
    /// Remote candidates held while the remote description has not arrived yet (signals may
    /// overtake each other when relayed over the mesh); more are dropped. Default 32.
    pub max_early_candidates: usize,
    /// Remote candidates a link takes in all (early ones included): a peer that sends more gets
    /// an error for each and they are dropped, so a flood of candidates costs no more than this
    /// many connectivity checks. Default 64 (a host has a handful per interface and server).
    pub max_remote_candidates: usize,
    /// ICE connectivity-check interval while connecting. The crate's default (200 ms) is
    /// the first of the 200 ms steps of link setup; default here 20 ms. Ignored in the browser.
    pub ice_check_interval: Duration,
    /// Total time ICE keeps checking a candidate pair before failing it
    /// (`ice_check_interval` x max binding requests). Default 1.4 s, the crate's default.
    /// Ignored in the browser.
    pub ice_check_budget: Duration,
    /// While a link is opening, how often its connection driver is woken to flush packets
    /// that a protocol state change queued (see the crate docs: the other 200 ms steps).
    /// Default 2 ms; zero turns it off. Ignored in the browser.
    pub setup_wake_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            bind_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            include_loopback_candidates: false,
            mdns: false,
            open_timeout: Duration::from_secs(10),
            send_buffer_limit: 1 << 20,
            socket_buffer_size: 4 << 20,
            max_message_size: 64 * 1024,
            event_capacity: 256,
            max_early_candidates: 32,
            max_remote_candidates: 64,
            ice_check_interval: Duration::from_millis(20),
            ice_check_budget: Duration::from_millis(1400),
            setup_wake_interval: Duration::from_millis(2),
        }
    }
}

impl Config {
    /// The default configuration bound to `127.0.0.1:0` with loopback candidates: two peers
    /// on one machine, and tests.
    pub fn loopback() -> Self {
        Self {
            bind_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            include_loopback_candidates: true,
            ..Self::default()
        }
    }
}
