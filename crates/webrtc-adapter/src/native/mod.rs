//! The native implementation, on the `webrtc` crate.

mod link;
mod runtime;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rtc::peer_connection::transport::RTCDtlsRole;
use tokio::sync::mpsc;
use tracing::Instrument;
use transport::{LinkConnector, LinkError, PeerId, Role};
use webrtc::data_channel::RTCDataChannelInit;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCIceServer,
    SettingEngineBuilder,
};
use webrtc::runtime::Runtime;

pub use link::{Link, LinkSender};
pub use runtime::BufferedRuntime;

use crate::{CHANNEL_ID, CHANNEL_LABEL, Config};

/// `tracing` filter directives that quiet the `webrtc` crates' chattiest logs (ICE state and
/// DTLS handshake details at info level, per connection); append them to an `EnvFilter`.
pub const QUIET_LOG_DIRECTIVES: &str =
    "rtc_ice=error,rtc_dtls=error,rtc_sctp=warn,rtc_mdns=warn,rtc=warn,webrtc=warn";

/// Forwards the `log` records of the `webrtc` crates (and any other `log` user) to `tracing`,
/// at `max_level` and above. Below it, their log macros cost one comparison: keep it at `Info`
/// or above outside debugging, because the packet paths log at debug level.
///
/// Call once, after installing the `tracing` subscriber; a second call returns an error.
pub fn init_log_bridge(max_level: tracing_log::log::LevelFilter) -> Result<(), LogBridgeError> {
    tracing_log::LogTracer::builder()
        .with_max_level(max_level)
        .init()
        .map_err(|err| LogBridgeError(err.to_string()))
}

/// A `log` logger was already installed.
#[derive(Debug, thiserror::Error)]
#[error("log bridge not installed: {0}")]
pub struct LogBridgeError(String);

/// Opens [`Link`]s with `webrtc` peer connections.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Arc<Config>,
    runtime: Arc<dyn Runtime>,
}

impl Connector {
    /// A connector with `config`. Links run on the ambient tokio runtime.
    pub fn new(config: Config) -> Self {
        let runtime = Arc::new(BufferedRuntime::new(config.socket_buffer_size));
        Self {
            config: Arc::new(config),
            runtime,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn setting_engine(&self) -> webrtc::peer_connection::SettingEngine {
        let config = &self.config;
        let mdns = if config.mdns {
            rtc::ice::mdns::MulticastDnsMode::QueryOnly
        } else {
            rtc::ice::mdns::MulticastDnsMode::Disabled
        };
        let interval = config.ice_check_interval.max(Duration::from_millis(1));
        let requests = (config.ice_check_budget.as_micros() / interval.as_micros()).clamp(1, 1000);
        SettingEngineBuilder::new()
            .with_multicast_dns_mode(mdns)
            .with_include_loopback_candidate(config.include_loopback_candidates)
            .with_ice_connection_attempts(Some(interval), u16::try_from(requests).ok())
            // The answerer is the DTLS server, so the offerer, ICE's controlling agent, sends
            // the ClientHello. The controlling agent is the last to select a candidate pair (on
            // the response to its nomination, which the controlled agent only sends once it has
            // selected it too), so its ClientHello always finds the peer ready. The other way
            // round, the answerer's ClientHello can reach the offerer before the offerer's
            // selection; ICE drops it and DTLS retransmits it after 1 s.
            .with_answering_dtls_role(RTCDtlsRole::Server)
            // A peer's check often arrives before its trickled host candidate does, so the
            // agent first knows that address as peer-reflexive; rtc-ice then credits the
            // responses to the host pair's checks to the peer-reflexive pair (same address),
            // and nominating a pair with a peer-reflexive candidate waits 1 s by default.
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .build()
    }

    async fn build(
        &self,
        notes: mpsc::Sender<link::Note>,
    ) -> Result<Arc<dyn PeerConnection>, LinkError> {
        let ice_servers = self
            .config
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone(),
                credential: server.credential.clone(),
            })
            .collect();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .build(),
            )
            .with_setting_engine(self.setting_engine())
            .with_runtime(self.runtime.clone())
            .with_handler(Arc::new(link::Handler { notes }))
            .with_udp_addrs(self.config.bind_addrs.clone())
            .with_data_channel_send_buffer_limit(self.config.send_buffer_limit.max(1))
            .build()
            .await
            .map_err(|e| LinkError::Setup(format!("peer connection: {e}")))?;
        Ok(Arc::new(pc))
    }
}

#[async_trait]
impl LinkConnector for Connector {
    type Link = Link;

    /// Builds the connection; an [`Role::Initiator`] link's first event is its offer.
    async fn connect(&self, peer: PeerId, role: Role) -> Result<Link, LinkError> {
        // The connection's driver and the link task run in this span, so the `webrtc` crates'
        // logs say which link they are about.
        let span = tracing::debug_span!("link", %peer, ?role);
        self.connect_in_span(peer, role).instrument(span).await
    }
}

impl Connector {
    async fn connect_in_span(&self, peer: PeerId, role: Role) -> Result<Link, LinkError> {
        let (notes_tx, notes) = mpsc::channel(link::NOTE_CAPACITY);
        let pc = self.build(notes_tx).await?;
        let init = RTCDataChannelInit {
            ordered: true,
            negotiated: Some(CHANNEL_ID),
            ..Default::default()
        };
        let dc = match pc.create_data_channel(CHANNEL_LABEL, Some(init)).await {
            Ok(dc) => dc,
            Err(err) => {
                let _ = pc.close().await;
                return Err(LinkError::Setup(format!("data channel: {err}")));
            }
        };
        Link::start(link::Parts {
            peer,
            role,
            pc,
            dc,
            notes,
            event_capacity: self.config.event_capacity,
            open_timeout: self.config.open_timeout,
            wake_interval: self.config.setup_wake_interval,
            max_early_candidates: self.config.max_early_candidates,
            max_remote_candidates: self.config.max_remote_candidates,
            max_message_size: self.config.max_message_size,
        })
        .await
    }
}
