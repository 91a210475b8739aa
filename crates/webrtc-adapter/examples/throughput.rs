//! Throughput of one link over 127.0.0.1, through the adapter and through the raw `webrtc`
//! crate with the same settings, and the memory each open link costs.
//!
//! ```text
//! cargo run --release -p webrtc-adapter --example throughput
//! SIZE=1024 MB=64 cargo run --release -p webrtc-adapter --example throughput
//! ```
//!
//! Knobs: `SIZE` (message bytes, default 16384), `MB` (megabytes per run, default 256),
//! `BYTES` (bytes per run, overrides `MB`), `RUNS` (default 3, the median is printed), `LINKS` (links opened for the memory figure,
//! default 50).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use transport::{LinkConnector, LinkEvent, LinkSender as _, PeerId, PeerLink, Role};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, SettingEngineBuilder,
};
use webrtc_adapter::{BufferedRuntime, Config, Connector, Link};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn open_adapter_pair(a: &Connector, b: &Connector) -> Result<(Link, Link), BoxError> {
    let mut la = a.connect(PeerId::new("b"), Role::Initiator).await?;
    let mut lb = b.connect(PeerId::new("a"), Role::Responder).await?;
    let (mut ao, mut bo) = (false, false);
    while !(ao && bo) {
        tokio::select! {
            Some(ev) = la.next_event() => match ev {
                LinkEvent::Signal(s) => lb.handle_signal(s).await?,
                LinkEvent::Open { .. } => ao = true,
                other => return Err(format!("a: {other:?}").into()),
            },
            Some(ev) = lb.next_event() => match ev {
                LinkEvent::Signal(s) => la.handle_signal(s).await?,
                LinkEvent::Open { .. } => bo = true,
                other => return Err(format!("b: {other:?}").into()),
            },
        }
    }
    Ok((la, lb))
}

async fn adapter_run(config: &Config, size: usize, total: usize) -> Result<f64, BoxError> {
    let a = Connector::new(config.clone());
    let b = Connector::new(config.clone());
    let (mut la, mut lb) = open_adapter_pair(&a, &b).await?;
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0usize;
        while got < total {
            match lb.next_event().await {
                Some(LinkEvent::Message(m)) => got += m.len(),
                Some(LinkEvent::Signal(_)) => {}
                other => return Err(format!("receiver: {other:?}")),
            }
        }
        lb.close().await;
        Ok(())
    });
    let msg = vec![7u8; size];
    let mut sent = 0;
    while sent < total {
        la.sender().send(msg.clone()).await?;
        sent += size;
    }
    receiver.await??;
    let secs = start.elapsed().as_secs_f64();
    la.close().await;
    Ok(total as f64 / secs / 1e6)
}

struct RawHandler(tokio::sync::mpsc::Sender<RTCIceCandidateInit>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for RawHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.0.try_send(init);
        }
    }
}

async fn raw_pc(
    config: &Config,
    tx: tokio::sync::mpsc::Sender<RTCIceCandidateInit>,
) -> Result<(Arc<dyn PeerConnection>, Arc<dyn DataChannel>), BoxError> {
    let se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .with_ice_connection_attempts(Some(config.ice_check_interval), None)
        .build();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_setting_engine(se)
            .with_runtime(Arc::new(BufferedRuntime::new(config.socket_buffer_size)))
            .with_handler(Arc::new(RawHandler(tx)))
            .with_udp_addrs(config.bind_addrs.clone())
            .with_data_channel_send_buffer_limit(config.send_buffer_limit)
            .build()
            .await?,
    );
    let init = RTCDataChannelInit {
        negotiated: Some(0),
        ..Default::default()
    };
    let dc = pc.create_data_channel("raw", Some(init)).await?;
    Ok((pc, dc))
}

async fn raw_run(config: &Config, size: usize, total: usize) -> Result<f64, BoxError> {
    let (atx, mut arx) = tokio::sync::mpsc::channel(64);
    let (btx, mut brx) = tokio::sync::mpsc::channel(64);
    let (a, adc) = raw_pc(config, atx).await?;
    let (b, bdc) = raw_pc(config, btx).await?;
    let offer = a.create_offer(None).await?;
    a.set_local_description(offer.clone()).await?;
    b.set_remote_description(offer).await?;
    let answer = b.create_answer(None).await?;
    b.set_local_description(answer.clone()).await?;
    a.set_remote_description(answer).await?;
    let (mut ao, mut bo) = (false, false);
    while !(ao && bo) {
        tokio::select! {
            Some(c) = arx.recv() => b.add_ice_candidate(c).await?,
            Some(c) = brx.recv() => a.add_ice_candidate(c).await?,
            Some(ev) = adc.poll(), if !ao => ao = matches!(ev, DataChannelEvent::OnOpen),
            Some(ev) = bdc.poll(), if !bo => bo = matches!(ev, DataChannelEvent::OnOpen),
        }
    }
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0usize;
        while got < total {
            match bdc.poll().await {
                Some(DataChannelEvent::OnMessage(m)) => got += m.data.len(),
                Some(DataChannelEvent::OnClose) | None => return Err("closed"),
                _ => {}
            }
        }
        Ok(())
    });
    // The sender keeps reading its own channel's events, as the crate requires.
    let adc2 = adc.clone();
    let drain = tokio::spawn(async move { while adc2.poll().await.is_some() {} });
    let msg = BytesMut::from(&vec![7u8; size][..]);
    let mut sent = 0;
    while sent < total {
        adc.send(msg.clone()).await?;
        sent += size;
    }
    receiver.await??;
    let secs = start.elapsed().as_secs_f64();
    a.close().await?;
    b.close().await?;
    drain.abort();
    Ok(total as f64 / secs / 1e6)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let _ = webrtc_adapter::init_log_bridge(if std::env::var("RUST_LOG").is_ok() {
        tracing_log::log::LevelFilter::Trace
    } else {
        tracing_log::log::LevelFilter::Warn
    });
    let size = env_u64("SIZE", 16384) as usize;
    let total = env_u64("BYTES", env_u64("MB", 256) * 1_000_000) as usize;
    let runs = env_u64("RUNS", 3).max(1);
    let links = env_u64("LINKS", 50) as usize;
    let config = Config::loopback();

    let (mut raw, mut adapter) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        raw.push(raw_run(&config, size, total).await?);
        adapter.push(adapter_run(&config, size, total).await?);
    }
    let (raw, adapter) = (median(raw), median(adapter));
    println!(
        "throughput, {size} B messages, {} kB per run, median of {runs}: raw {raw:.2} MB/s, \
         adapter {adapter:.2} MB/s ({:.2} x raw)",
        total / 1_000,
        adapter / raw,
    );

    // Memory: open `links` links (2 x links connections) and compare resident memory.
    let a = Connector::new(config.clone());
    let b = Connector::new(config.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kb();
    let mut held = Vec::with_capacity(links);
    for _ in 0..links {
        held.push(open_adapter_pair(&a, &b).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kb();
    println!(
        "memory: {links} open links (both ends in this process): {:.0} kB per link end",
        (after.saturating_sub(before)) as f64 / (2 * links) as f64
    );
    for (mut la, mut lb) in held {
        la.close().await;
        lb.close().await;
    }
    Ok(())
}
