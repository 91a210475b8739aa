//! p2pmesh's peer-link connector: on the `webrtc` crate (webrtc-rs 0.21) natively, and on the
//! page's `RTCPeerConnection` (web-sys) in the browser (wasm32). Both have the same names and
//! the same signals, and they interoperate.
//!
//! [`Connector`] implements [`transport::LinkConnector`]: for each peer it builds a `webrtc`
//! peer connection with one reliable, ordered data channel, and the [`Link`] it returns is a
//! [`transport::PeerLink`]. The driver routes the link's signals (offer, answer, trickled ICE
//! candidates, as simple-peer-shaped JSON; see [`Signal`]) to the peer through whatever route
//! mesh-core chooses, and feeds the peer's signals back with `handle_signal`. When the channel
//! opens the link reports both DTLS certificate fingerprints, which the peers' signed hello
//! covers.
//!
//! ```no_run
//! use transport::{LinkConnector, LinkEvent, LinkSender, PeerId, PeerLink, Role};
//! use webrtc_adapter::{Config, Connector};
//!
//! # async fn run() -> Result<(), transport::LinkError> {
//! let connector = Connector::new(Config::default());
//! let mut link = connector.connect(PeerId::new("b0b"), Role::Initiator).await?;
//! while let Some(event) = link.next_event().await {
//!     match event {
//!         LinkEvent::Signal(signal) => { /* send `signal` to the peer */ }
//!         LinkEvent::Open { local_fingerprint, remote_fingerprint } => {
//!             link.sender().send(b"hello".to_vec()).await?;
//!         }
//!         LinkEvent::Message(bytes) => { /* a frame from the peer */ }
//!         LinkEvent::Closed(reason) => break,
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # In the browser
//!
//! On `wasm32` the same [`Connector`], [`Link`], [`LinkSender`] and [`Config`] drive a browser
//! `RTCPeerConnection`. Each link is a task on the page's event loop that owns the connection,
//! its negotiated channel and its callbacks; the handles hold only bounded queues to it, so
//! they are `Send` as the transport traits require. Local candidates trickle out as they are
//! gathered; remote ones that come before the remote description are held until it is set.
//! The `Open` event reports the fingerprints read from the local and remote SDP with
//! [`sdp_fingerprint`], as natively, so a browser and a native peer sign the same hello.
//! `send` waits while the channel's `bufferedAmount` is above [`Config::send_buffer_limit`]
//! (resuming on `bufferedamountlow`). Every connection is closed when its link ends, for
//! whatever reason, and `live_connections()` (browser only) counts the ones still open:
//! Chromium refuses more than 500 per page. The socket, mDNS and ICE-timing fields of
//! [`Config`] are ignored there, and `BufferedRuntime`, `init_log_bridge` and
//! `QUIET_LOG_DIRECTIVES` exist only natively.
//!
//! # Choices, and the crate's pitfalls they avoid (native)
//!
//! - The data channel is negotiated out of band (stream id 0, label `p2pmesh`) on both sides,
//!   so it opens when SCTP does, without the DCEP round trip. A browser peer creates it the
//!   same way (`createDataChannel("p2pmesh", {negotiated: true, id: 0})`).
//! - Sockets are bound to [`Config::bind_addrs`]; [`Config::loopback`] binds `127.0.0.1:0`,
//!   because a wildcard bind skips loopback. mDNS is off unless asked for.
//! - Each UDP socket gets 4 MiB kernel buffers ([`BufferedRuntime`]).
//! - `send` waits while more than [`Config::send_buffer_limit`] bytes are unacknowledged: the
//!   crate's own send queue is unbounded by default.
//! - One task per link owns the channel's event stream and always calls the connection's
//!   `close()`, whether the link fails, times out, is closed or its handle is dropped.
//! - The crate logs through `log`: [`init_log_bridge`] forwards it to `tracing`, and each
//!   connection's logs carry its link's span (`link{peer=.. role=..}`);
//!   [`QUIET_LOG_DIRECTIVES`] quiets the per-connection chatter.
//!
//! # Link setup time: where webrtc 0.21's 200 ms steps come from
//!
//! Two peers on loopback take about 800 ms to open a channel at the crate's defaults, in 200 ms
//! steps (`examples/raw_open_time.rs`). Through this adapter they take about 22 ms
//! (`examples/open_time.rs`). The causes, in the crates' 0.21.1 sources:
//!
//! 1. ICE nomination waits for the agent's check timer: the controlling agent nominates a pair
//!    that has succeeded only on its next tick (`rtc-ice` `agent/agent_selector.rs`
//!    `ControllingSelector::contact_candidates`, line 216), every `DEFAULT_CHECK_INTERVAL`
//!    = 200 ms (`agent/agent_config.rs:10`). [`Config::ice_check_interval`] shortens it (default
//!    20 ms), keeping the crate's 1.4 s per-pair budget ([`Config::ice_check_budget`]).
//! 2. The connection driver (`webrtc` `peer_connection/driver.rs`, its loop from line 835)
//!    sends queued packets (`poll_writes`, line 850), then drains the core's events
//!    (`poll_events`, line 851), and handling an event queues packets: the DTLS ClientHello
//!    when ICE selects a pair (`rtc` `handler/dtls.rs:381`), the SCTP INIT when DTLS completes
//!    (`handler/sctp.rs:702`), the DCEP OPEN when SCTP does. Nothing wakes the loop for them, so they wait for the next
//!    timer, which once ICE is connected is the agent's tick again: its interval starts at
//!    `DEFAULT_CHECK_INTERVAL` and only shorter keepalive or failure timeouts lower it
//!    (`rtc-ice` `agent/mod.rs:584` `get_timeout_interval`). With a 5 ms check interval the
//!    raw crate still takes 400 ms: two such stranded steps. The link task wakes the driver when
//!    the connection reports a state change and every [`Config::setup_wake_interval`] until
//!    the channel opens, through a public call that ends in the driver's `wake_writes`.
//! 3. The DCEP round trip (one more stranded step) is avoided by negotiating the channel.
//!
//! Two rarer stalls of about 1 s were found while measuring, and are configured away:
//!
//! - The answerer's DTLS ClientHello can reach the offerer before the offerer's ICE agent has
//!   selected its pair; ICE drops it (`rtc` `handler/ice.rs:104`) and DTLS retransmits after
//!   1 s (`rtc-dtls` `conn/mod.rs:42`). Here the answerer is the DTLS server, so the offerer,
//!   which selects last, sends the ClientHello.
//! - When a peer's check arrives before its trickled host candidate, the agent knows that
//!   address as peer-reflexive, credits later responses to the peer-reflexive pair, and waits
//!   `DEFAULT_PRFLX_ACCEPTANCE_MIN_WAIT` (1 s, `rtc-ice` `agent/agent_config.rs:28`) before
//!   nominating it. Here that wait is zero.
//!
//! # Known limit of the crate
//!
//! A burst of more than about 256 messages that arrive together is delivered to the
//! application at about one message per few milliseconds, raw or through this adapter (the
//! receive side's message-count backlog bound, `rtc` `handler/sctp.rs:113`
//! `SCTP_PIPELINE_READ_BACKLOG_LIMIT`, and its resumption). Senders of many small messages
//! should coalesce them into fewer, larger ones (up to [`Config::max_message_size`]).

#![deny(missing_docs)]

mod config;
mod signal;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod web;

pub use config::{Config, IceServer};
pub use signal::{
    Candidate, Description, MalformedSignal, SdpType, Signal, fingerprint_bytes, sdp_fingerprint,
};

#[cfg(not(target_arch = "wasm32"))]
pub use native::{
    BufferedRuntime, Connector, Link, LinkSender, LogBridgeError, QUIET_LOG_DIRECTIVES,
    init_log_bridge,
};
#[cfg(target_arch = "wasm32")]
pub use web::{Connector, Link, LinkSender, live_connections};

/// The label of the link's data channel.
pub const CHANNEL_LABEL: &str = "p2pmesh";
/// The SCTP stream id of the link's (negotiated) data channel.
pub const CHANNEL_ID: u16 = 0;
