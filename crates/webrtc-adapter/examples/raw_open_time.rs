//! Open time of two raw `webrtc` peer connections in one process over 127.0.0.1, with the
//! setting-engine knobs given on the environment, so the 200 ms steps can be found and tuned.
//!
//! ```text
//! cargo run --release -p webrtc-adapter --example raw_open_time            # defaults
//! CHECK_MS=5 NEGOTIATED=1 cargo run --release -p webrtc-adapter --example raw_open_time
//! ```
//!
//! Knobs: `LINKS` (default 20), `CHECK_MS` (ICE check interval), `NEGOTIATED=1` (a negotiated
//! channel on both sides, no DCEP), `STAGES=1` (print per-stage times of each link),
//! `RUST_LOG` (e.g. `rtc_sctp=trace`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCIceConnectionState, RTCPeerConnectionIceEvent, RTCPeerConnectionState, SettingEngineBuilder,
};

mod common;

use common::{BoxError, env_u64, init_tracing, ms, summary};

enum Note {
    Candidate(RTCIceCandidateInit),
    IceConnected(Instant),
    Connected(Instant),
    Channel(Arc<dyn DataChannel>),
}

struct Handler(mpsc::Sender<Note>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.0.try_send(Note::Candidate(init));
        }
    }
    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            let _ = self.0.try_send(Note::IceConnected(Instant::now()));
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.0.try_send(Note::Connected(Instant::now()));
        }
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.0.try_send(Note::Channel(dc));
    }
}

async fn build(tx: mpsc::Sender<Note>) -> Result<Arc<dyn PeerConnection>, BoxError> {
    let mut se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true);
    if let Some(ms) = env_u64("CHECK_MS") {
        se = se.with_ice_connection_attempts(Some(Duration::from_millis(ms)), None);
    }
    let pc = PeerConnectionBuilder::new()
        .with_setting_engine(se.build())
        .with_handler(Arc::new(Handler(tx)))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .with_data_channel_send_buffer_limit(1 << 20)
        .build()
        .await?;
    Ok(Arc::new(pc))
}

#[derive(Debug, Default, Clone, Copy)]
struct Stages {
    ice: [Duration; 2],
    connected: [Duration; 2],
    open: [Duration; 2],
}

async fn one_link(negotiated: bool) -> Result<Stages, BoxError> {
    let t0 = Instant::now();
    let (atx, mut arx) = mpsc::channel(64);
    let (btx, mut brx) = mpsc::channel(64);
    let a = build(atx).await?;
    let b = build(btx).await?;
    let init = RTCDataChannelInit {
        negotiated: negotiated.then_some(0),
        ..Default::default()
    };
    let adc = a.create_data_channel("p2pmesh", Some(init.clone())).await?;
    let mut bdc = if negotiated {
        Some(b.create_data_channel("p2pmesh", Some(init)).await?)
    } else {
        None
    };
    let offer = a.create_offer(None).await?;
    a.set_local_description(offer.clone()).await?;
    b.set_remote_description(offer).await?;
    let answer = b.create_answer(None).await?;
    b.set_local_description(answer.clone()).await?;
    a.set_remote_description(answer).await?;

    let mut st = Stages::default();
    let (aopen_tx, mut aopen_rx) = mpsc::channel(1);
    let adc2 = adc.clone();
    let apoll = tokio::spawn(async move {
        while let Some(ev) = adc2.poll().await {
            if matches!(ev, DataChannelEvent::OnOpen) {
                let _ = aopen_tx.try_send(Instant::now());
            }
        }
    });
    let (bopen_tx, mut bopen_rx) = mpsc::channel(1);
    let mut bpoll = None;
    let mut a_open = None;
    let mut b_open = None;
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    let spawn_b = |dc: Arc<dyn DataChannel>, tx: mpsc::Sender<Instant>| {
        tokio::spawn(async move {
            while let Some(ev) = dc.poll().await {
                if matches!(ev, DataChannelEvent::OnOpen) {
                    let _ = tx.try_send(Instant::now());
                }
            }
        })
    };
    if let Some(dc) = bdc.take() {
        bpoll = Some(spawn_b(dc, bopen_tx.clone()));
    }
    while a_open.is_none() || b_open.is_none() {
        tokio::select! {
            Some(n) = arx.recv() => match n {
                Note::Candidate(c) => b.add_ice_candidate(c).await?,
                Note::IceConnected(t) => st.ice[0] = t - t0,
                Note::Connected(t) => st.connected[0] = t - t0,
                Note::Channel(_) => {}
            },
            Some(n) = brx.recv() => match n {
                Note::Candidate(c) => a.add_ice_candidate(c).await?,
                Note::IceConnected(t) => st.ice[1] = t - t0,
                Note::Connected(t) => st.connected[1] = t - t0,
                Note::Channel(dc) => bpoll = Some(spawn_b(dc, bopen_tx.clone())),
            },
            Some(t) = aopen_rx.recv() => a_open = Some(t),
            Some(t) = bopen_rx.recv() => b_open = Some(t),
            _ = &mut deadline => return Err("link did not open in 10 s".into()),
        }
    }
    st.open = [
        a_open.map(|t| t - t0).unwrap_or_default(),
        b_open.map(|t| t - t0).unwrap_or_default(),
    ];
    a.close().await?;
    b.close().await?;
    apoll.abort();
    if let Some(h) = bpoll {
        h.abort();
    }
    Ok(st)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let _ = tracing_log::LogTracer::init();
    let links = env_u64("LINKS").unwrap_or(20) as usize;
    let negotiated = std::env::var("NEGOTIATED").is_ok_and(|v| v == "1");
    let stages = std::env::var("STAGES").is_ok_and(|v| v == "1");
    let mut opens = Vec::with_capacity(links);
    for i in 0..links {
        let st = one_link(negotiated).await?;
        if stages {
            println!(
                "link {i}: ice {:.1}/{:.1} connected {:.1}/{:.1} open {:.1}/{:.1} ms",
                ms(st.ice[0]),
                ms(st.ice[1]),
                ms(st.connected[0]),
                ms(st.connected[1]),
                ms(st.open[0]),
                ms(st.open[1])
            );
        }
        opens.push(st.open[0].max(st.open[1]));
    }
    println!(
        "raw open time over {links} links (check_ms={:?}, negotiated={negotiated}): {}",
        env_u64("CHECK_MS"),
        summary(&mut opens)
    );
    Ok(())
}
