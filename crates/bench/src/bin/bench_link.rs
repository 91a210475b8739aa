//! `bench_link`: the link benchmark behind `cargo xtask bench-link [--json]`.
//!
//! Everything runs in this one process, over 127.0.0.1, with one clock:
//!
//! 1. **Memory per link.** After a warm-up pair, `--rss-pairs` (default 50) adapter link pairs
//!    are opened and held: both ends live here, so that is twice as many *link ends* (peer
//!    connections). RSS (`VmRSS` of `/proc/self/status`) after minus before, divided by the link
//!    ends, is `rss_kib_per_link`. Kernel socket buffers are not in RSS.
//! 2. **Link open time.** `--links` (default 60) links opened one after the other by two
//!    `webrtc_adapter::Connector`s with `Config::loopback()`, signals passed directly; one
//!    link's open time runs from `connect()` until both ends have reported `Open`.
//! 3. **Throughput** of `--message-bytes` (default 16 KiB) messages, `--mb` (default 32) MB per
//!    run, `--runs` (default 3) interleaved runs, the median of each reported: a raw `webrtc`
//!    crate pair tuned as the adapter tunes it (`raw_mb_s`), the adapter's `Link::send`
//!    (`adapter_mb_s`, extra) and `Mesh::send` between two linked `Mesh` nodes on a real
//!    signaling server (`mesh_mb_s`). Bytes/s are counted at the receiver from the first send
//!    until the last distinct message arrived; MB = 10^6 bytes.
//! 4. **Broadcast latency.** `--nodes` (default 20) `Mesh` nodes join one signaling server; once
//!    every node has a link, the links connect them all and a warm-up broadcast from every node
//!    reached every other, `--broadcasts` (default 50) broadcasts are sent from pseudo-random
//!    nodes, 20 ms apart, each carrying its send time; latency is taken per (message, receiver).
//!
//! It prints a table and, with `--json`, one JSON object as its last line. Every phase has a
//! deadline; the whole run takes well under a minute on an idle machine.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt as _;
use p2pmesh::{Event, Mesh, NodeId};
use rtc::peer_connection::transport::RTCDtlsRole;
use signaling_server::{Config as ServerConfig, Server};
use tokio::sync::oneshot;
use transport::{LinkConnector, LinkEvent, LinkSender as _, PeerId, PeerLink, Role};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, SettingEngineBuilder,
};
use webrtc_adapter::{BufferedRuntime, Config, Connector, Link};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// The topic of the broadcast phase.
const TOPIC: &str = "bench";

/// Deadline of one phase step (a link open, a throughput run, a wait for the mesh).
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// `Mesh::send` calls in flight at once in the throughput phase.
const SENDS_IN_FLIGHT: usize = 4;

/// The flags of `bench_link` (what `cargo xtask bench-link` passes).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bench_link",
    about = "Measure WebRTC links: memory, open time, throughput, broadcast latency"
)]
struct Opts {
    /// Print one JSON object as the last line, after the table.
    #[arg(long)]
    json: bool,
    /// Links opened one after the other in the open-time phase.
    #[arg(long, default_value_t = 60, value_parser = at_least(1))]
    links: usize,
    /// Adapter link pairs held in the memory phase.
    #[arg(long, default_value_t = 50)]
    rss_pairs: usize,
    /// Bytes per message in the throughput phase.
    #[arg(long, default_value_t = 16 * 1024, value_parser = at_least(16))]
    message_bytes: usize,
    /// Megabytes (10^6 bytes) sent per throughput run.
    #[arg(long, default_value_t = 32)]
    mb: usize,
    /// Interleaved throughput runs (the median of each is reported).
    #[arg(long, default_value_t = 3, value_parser = at_least(1))]
    runs: usize,
    /// Mesh nodes in the broadcast phase.
    #[arg(long, default_value_t = 20, value_parser = at_least(2))]
    nodes: usize,
    /// Broadcasts measured in the broadcast phase.
    #[arg(long, default_value_t = 50)]
    broadcasts: usize,
}

/// A `usize` flag of at least `min` (a smaller value is an error, not silently raised).
fn at_least(min: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..)
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn median(v: Vec<f64>) -> f64 {
    percentile(&sorted(v), 50.0)
}

fn rss_kib() -> u64 {
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

/// CPU time of the whole process (user + system, every thread) in seconds, from
/// `/proc/self/stat` (clock ticks, assumed 100 per second).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which ends with ')'): utime is the 12th, stime 13th.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The process's one clock, for timestamps carried in payloads.
fn since_base() -> Duration {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed()
}

async fn deadline<T>(what: &str, limit: Duration, f: impl Future<Output = Res<T>>) -> Res<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("{what}: no result within {limit:?}"))?
}

// ---------------------------------------------------------------------------------------------
// Adapter links.

/// Opens one adapter link pair, pumping signals between the ends; returns both ends and the
/// time from `connect()` until both reported `Open`.
async fn open_adapter_pair(a: &Connector, b: &Connector, n: usize) -> Res<(Link, Link, Duration)> {
    let t0 = Instant::now();
    let mut la = a
        .connect(PeerId::new(format!("b{n}")), Role::Initiator)
        .await?;
    let mut lb = b
        .connect(PeerId::new(format!("a{n}")), Role::Responder)
        .await?;
    let (mut a_open, mut b_open) = (None, None);
    while a_open.is_none() || b_open.is_none() {
        tokio::select! {
            Some(ev) = la.next_event() => match ev {
                LinkEvent::Signal(s) => lb.handle_signal(s).await?,
                LinkEvent::Open { .. } => a_open = Some(t0.elapsed()),
                LinkEvent::Closed(r) => return Err(format!("link {n} a closed: {r}").into()),
                LinkEvent::Message(_) => {}
            },
            Some(ev) = lb.next_event() => match ev {
                LinkEvent::Signal(s) => la.handle_signal(s).await?,
                LinkEvent::Open { .. } => b_open = Some(t0.elapsed()),
                LinkEvent::Closed(r) => return Err(format!("link {n} b closed: {r}").into()),
                LinkEvent::Message(_) => {}
            },
        }
    }
    let open = a_open.max(b_open).unwrap_or_default();
    Ok((la, lb, open))
}

struct OpenTimes {
    p50: f64,
    p99: f64,
    min: f64,
    max: f64,
    links: usize,
}

async fn bench_open_time(config: &Config, links: usize) -> Res<OpenTimes> {
    let a = Connector::new(config.clone());
    let b = Connector::new(config.clone());
    let mut opens = Vec::with_capacity(links);
    for n in 0..links {
        let (mut la, mut lb, open) =
            deadline("link open", STEP_DEADLINE, open_adapter_pair(&a, &b, n)).await?;
        opens.push(ms(open));
        la.close().await;
        lb.close().await;
    }
    let opens = sorted(opens);
    Ok(OpenTimes {
        p50: percentile(&opens, 50.0),
        p99: percentile(&opens, 99.0),
        min: opens[0],
        max: opens[opens.len() - 1],
        links,
    })
}

struct Rss {
    before_kib: u64,
    after_kib: u64,
    link_ends: usize,
    per_link_kib: f64,
}

async fn bench_rss(config: &Config, pairs: usize) -> Res<Rss> {
    let a = Connector::new(config.clone());
    let b = Connector::new(config.clone());
    // Warm-up: the first link initialises lazily allocated state (runtime, crypto tables).
    let (mut wa, mut wb, _) =
        deadline("warm-up link", STEP_DEADLINE, open_adapter_pair(&a, &b, 0)).await?;
    wa.close().await;
    wb.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib();
    let mut held = Vec::with_capacity(pairs);
    for n in 0..pairs {
        let (la, lb, _) =
            deadline("link open", STEP_DEADLINE, open_adapter_pair(&a, &b, n + 1)).await?;
        held.push((la, lb));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    for (mut la, mut lb) in held {
        la.close().await;
        lb.close().await;
    }
    let link_ends = 2 * pairs;
    Ok(Rss {
        before_kib: before,
        after_kib: after,
        link_ends,
        per_link_kib: after.saturating_sub(before) as f64 / link_ends.max(1) as f64,
    })
}

// ---------------------------------------------------------------------------------------------
// Throughput.

/// A message of `size` bytes whose first 12 bytes are its run and sequence number.
fn numbered(size: usize, run: u32, seq: u64) -> Vec<u8> {
    let mut msg = vec![7u8; size];
    msg[..4].copy_from_slice(&run.to_le_bytes());
    msg[4..12].copy_from_slice(&seq.to_le_bytes());
    msg
}

fn numbering(msg: &[u8]) -> Option<(u32, u64)> {
    let run = u32::from_le_bytes(msg.get(..4)?.try_into().ok()?);
    let seq = u64::from_le_bytes(msg.get(4..12)?.try_into().ok()?);
    Some((run, seq))
}

async fn adapter_run(config: &Config, size: usize, count: u64) -> Res<f64> {
    let a = Connector::new(config.clone());
    let b = Connector::new(config.clone());
    let (la, mut lb, _) =
        deadline("link open", STEP_DEADLINE, open_adapter_pair(&a, &b, 0)).await?;
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0u64;
        let mut bytes = 0usize;
        while got < count {
            match lb.next_event().await {
                Some(LinkEvent::Message(m)) => {
                    got += 1;
                    bytes += m.len();
                }
                Some(LinkEvent::Signal(_)) => {}
                other => return Err(format!("adapter receiver: {other:?}")),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        lb.close().await;
        Ok(bytes as f64 / secs / 1e6)
    });
    let mut la = la;
    for seq in 0..count {
        la.sender().send(numbered(size, 0, seq)).await?;
    }
    let rate = deadline("adapter run", STEP_DEADLINE, async { Ok(receiver.await??) }).await?;
    la.close().await;
    Ok(rate)
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

/// A plain `webrtc` peer connection with the adapter's tuning (its `Connector::setting_engine`
/// and builder calls, repeated here because they are private) and one negotiated channel.
async fn raw_pc(
    config: &Config,
    candidates: tokio::sync::mpsc::Sender<RTCIceCandidateInit>,
) -> Res<(Arc<dyn PeerConnection>, Arc<dyn DataChannel>)> {
    let interval = config.ice_check_interval.max(Duration::from_millis(1));
    let requests = (config.ice_check_budget.as_micros() / interval.as_micros()).clamp(1, 1000);
    let se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(config.include_loopback_candidates)
        .with_ice_connection_attempts(Some(interval), u16::try_from(requests).ok())
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .build();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_setting_engine(se)
            .with_runtime(Arc::new(BufferedRuntime::new(config.socket_buffer_size)))
            .with_handler(Arc::new(RawHandler(candidates)))
            .with_udp_addrs(config.bind_addrs.clone())
            .with_data_channel_send_buffer_limit(config.send_buffer_limit.max(1))
            .build()
            .await?,
    );
    let init = RTCDataChannelInit {
        ordered: true,
        negotiated: Some(webrtc_adapter::CHANNEL_ID),
        ..Default::default()
    };
    let dc = pc
        .create_data_channel(webrtc_adapter::CHANNEL_LABEL, Some(init))
        .await?;
    Ok((pc, dc))
}

async fn raw_run(config: &Config, size: usize, count: u64) -> Res<f64> {
    let (atx, mut arx) = tokio::sync::mpsc::channel(64);
    let (btx, mut brx) = tokio::sync::mpsc::channel(64);
    let (a, adc) = raw_pc(config, atx).await?;
    let (b, bdc) = raw_pc(config, btx).await?;
    let opened = deadline("raw open", STEP_DEADLINE, async {
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
        Ok(())
    })
    .await;
    if let Err(err) = opened {
        let _ = a.close().await;
        let _ = b.close().await;
        return Err(err);
    }
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0u64;
        let mut bytes = 0usize;
        while got < count {
            match bdc.poll().await {
                Some(DataChannelEvent::OnMessage(m)) => {
                    got += 1;
                    bytes += m.data.len();
                }
                Some(DataChannelEvent::OnClose) | None => return Err("raw receiver: closed"),
                _ => {}
            }
        }
        Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
    });
    // The sender keeps reading its own channel's events, as the crate requires.
    let adc2 = adc.clone();
    let drain = tokio::spawn(async move { while adc2.poll().await.is_some() {} });
    let sent = async {
        for seq in 0..count {
            adc.send(BytesMut::from(&numbered(size, 0, seq)[..]))
                .await?;
        }
        Ok::<(), BoxError>(())
    }
    .await;
    let rate = match sent {
        Ok(()) => deadline("raw run", STEP_DEADLINE, async { Ok(receiver.await??) }).await,
        Err(err) => Err(err),
    };
    drain.abort();
    let _ = a.close().await;
    let _ = b.close().await;
    rate
}

/// A running signaling server on 127.0.0.1 (ephemeral port).
struct TestServer {
    url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start() -> Res<Self> {
        let server = Server::bind(ServerConfig::ephemeral()).await?;
        let addr = server.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            url: format!("ws://{addr}"),
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn mesh_builder(url: &str, room: &str) -> p2pmesh::MeshBuilder {
    Mesh::builder()
        .signaling_url(url)
        .room(room)
        .webrtc_config(Config::loopback())
        .event_capacity(1 << 15)
        .subscription_capacity(1 << 15)
}

/// Waits until `mesh` has `peer` as a neighbour.
async fn wait_linked(mesh: &Mesh, peer: NodeId) -> Res<()> {
    loop {
        if mesh.peers().await?.contains(&peer) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Default)]
struct MeshRunStats {
    rates: Vec<f64>,
    backpressure_waits: u64,
    /// Process CPU time (all threads, both ends) per MB sent, per run.
    cpu_ms_per_mb: Vec<f64>,
    raw_cpu_ms_per_mb: Vec<f64>,
    frames_dropped_full: u64,
}

/// `runs` runs of `Mesh::send` from one node to its neighbour; the receiver counts distinct
/// messages of the run (retries may duplicate) from its event stream.
async fn bench_mesh_throughput(
    server: &TestServer,
    size: usize,
    count: u64,
    runs: usize,
    raw_rates: &mut Vec<f64>,
    adapter_rates: &mut Vec<f64>,
    config: &Config,
) -> Res<MeshRunStats> {
    let a = mesh_builder(&server.url, "throughput").build()?;
    a.join().await?;
    let b = mesh_builder(&server.url, "throughput").build()?;
    b.join().await?;
    deadline("mesh pair linked", STEP_DEADLINE, async {
        wait_linked(&a, b.local_id()).await?;
        wait_linked(&b, a.local_id()).await
    })
    .await?;
    let mut out = MeshRunStats::default();
    for run in 0..runs {
        // Interleaved: raw, adapter, mesh, so that all three see the same machine load.
        let cpu0 = cpu_secs();
        raw_rates.push(raw_run(config, size, count).await?);
        out.raw_cpu_ms_per_mb
            .push((cpu_secs() - cpu0) * 1e3 / (count as f64 * size as f64 / 1e6));
        adapter_rates.push(adapter_run(config, size, count).await?);
        let run_id = u32::try_from(run + 1)?;
        let mut events = b.events();
        let from = a.local_id();
        let start = Instant::now();
        let receiver = tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut bytes = 0usize;
            let mut lagged = 0u64;
            while (seen.len() as u64) < count {
                match events.next().await {
                    Some(Event::Message(m)) if m.topic.is_none() && m.from == from => {
                        if let Some((r, seq)) = numbering(&m.data)
                            && r == run_id
                            && seen.insert(seq)
                        {
                            bytes += m.data.len();
                        }
                    }
                    Some(Event::Lagged { missed }) => lagged += missed,
                    Some(_) => {}
                    None => return Err(format!("mesh receiver: stream ended, lagged {lagged}")),
                }
            }
            Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
        });
        let to = b.local_id();
        let waits = std::sync::atomic::AtomicU64::new(0);
        let sender = async {
            // A few sends in flight, so that the handle's round trip to the driver per send does
            // not serialise the stream.
            let mut sends = futures_util::stream::iter(0..count)
                .map(|seq| {
                    let (a, waits) = (&a, &waits);
                    async move {
                        let msg = numbered(size, run_id, seq);
                        loop {
                            match a.send(to, msg.clone()).await {
                                Ok(_) => return Ok(()),
                                Err(p2pmesh::Error::Node(
                                    p2pmesh::mesh_core::Error::TooManyPending,
                                )) => {
                                    // The node's window of unacknowledged direct messages is full.
                                    waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                                Err(err) => return Err(BoxError::from(err)),
                            }
                        }
                    }
                })
                .buffer_unordered(SENDS_IN_FLIGHT);
            while let Some(sent) = sends.next().await {
                sent?;
            }
            Ok(())
        };
        let cpu0 = cpu_secs();
        deadline("mesh send", STEP_DEADLINE, sender).await?;
        let rate = deadline("mesh run", STEP_DEADLINE, async { Ok(receiver.await??) }).await?;
        out.cpu_ms_per_mb
            .push((cpu_secs() - cpu0) * 1e3 / (count as f64 * size as f64 / 1e6));
        out.backpressure_waits += waits.into_inner();
        out.rates.push(rate);
    }
    let stats = a.stats().await?;
    out.frames_dropped_full = stats.frames_dropped_full;
    let _ = a.leave().await;
    let _ = b.leave().await;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Broadcast latency.

struct BroadcastResult {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
    expected: usize,
    links: usize,
    setup: Duration,
}

/// Whether the mutual links of `graph` connect all of its nodes.
fn is_connected(graph: &HashMap<NodeId, Vec<NodeId>>) -> bool {
    let Some(start) = graph.keys().next().copied() else {
        return true;
    };
    let mut seen = BTreeSet::from([start]);
    let mut stack = vec![start];
    while let Some(n) = stack.pop() {
        for m in &graph[&n] {
            let mutual = graph.get(m).is_some_and(|back| back.contains(&n));
            if mutual && seen.insert(*m) {
                stack.push(*m);
            }
        }
    }
    seen.len() == graph.len()
}

/// What the receivers record: (payload kind, broadcast index, receiver) -> latency.
type Received = Arc<Mutex<HashMap<(u8, u32, usize), Duration>>>;

/// A broadcast payload: kind (0 warm-up, 1 measured), index, send time since the base.
fn stamped(kind: u8, index: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(13);
    v.push(kind);
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(&(since_base().as_nanos() as u64).to_le_bytes());
    v
}

fn unstamp(data: &[u8]) -> Option<(u8, u32, Duration)> {
    let kind = *data.first()?;
    let index = u32::from_le_bytes(data.get(1..5)?.try_into().ok()?);
    let nanos = u64::from_le_bytes(data.get(5..13)?.try_into().ok()?);
    Some((kind, index, Duration::from_nanos(nanos)))
}

async fn bench_broadcast(
    server: &TestServer,
    nodes: usize,
    broadcasts: usize,
) -> Res<BroadcastResult> {
    let t0 = Instant::now();
    let received: Received = Arc::new(Mutex::new(HashMap::new()));
    let mut meshes = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let mesh = mesh_builder(&server.url, "broadcast").build()?;
        let mut sub = mesh.subscribe(TOPIC).await?;
        let log = received.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let now = since_base();
                if let Some((kind, index, sent)) = unstamp(&m.data)
                    && let Ok(mut log) = log.lock()
                {
                    log.entry((kind, index, i))
                        .or_insert(now.saturating_sub(sent));
                }
            }
        });
        deadline("join", STEP_DEADLINE, async { Ok(mesh.join().await?) }).await?;
        meshes.push(mesh);
    }
    // Every node has a link and the links connect them all.
    let links = deadline("mesh connected", Duration::from_secs(60), async {
        loop {
            let mut graph = HashMap::new();
            for m in &meshes {
                graph.insert(m.local_id(), m.peers().await?);
            }
            if graph.values().all(|p| !p.is_empty()) && is_connected(&graph) {
                return Ok(graph.values().map(Vec::len).sum::<usize>() / 2);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    // Warm-up: a broadcast from every node reaches every other one.
    deadline(
        "warm-up broadcasts reach all",
        Duration::from_secs(60),
        async {
            let mut round = 0u32;
            loop {
                for m in &meshes {
                    m.broadcast(TOPIC, stamped(0, round)).await?;
                    round += 1;
                }
                let first = round - u32::try_from(nodes)?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let log = received.lock().map_err(|_| "poisoned")?;
                let all = (0..nodes).all(|sender| {
                    let index = first + u32::try_from(sender).unwrap_or(u32::MAX);
                    (0..nodes).all(|r| r == sender || log.contains_key(&(0, index, r)))
                });
                if all {
                    return Ok(());
                }
            }
        },
    )
    .await?;
    let setup = t0.elapsed();
    // Measured broadcasts from pseudo-random nodes (xorshift, fixed seed).
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut origins = Vec::with_capacity(broadcasts);
    for index in 0..broadcasts {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let origin = (rng % nodes as u64) as usize;
        origins.push(origin);
        meshes[origin]
            .broadcast(TOPIC, stamped(1, u32::try_from(index)?))
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected = broadcasts * (nodes - 1);
    let wait_until = Instant::now() + Duration::from_secs(5);
    let latencies = loop {
        let got: Vec<f64> = {
            let log = received.lock().map_err(|_| "poisoned")?;
            log.iter()
                .filter(|((kind, index, r), _)| {
                    *kind == 1 && origins.get(*index as usize) != Some(r)
                })
                .map(|(_, d)| ms(*d))
                .collect()
        };
        if got.len() >= expected || Instant::now() > wait_until {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for m in &meshes {
        let _ = tokio::time::timeout(Duration::from_secs(10), m.leave()).await;
    }
    let samples = latencies.len();
    let latencies = sorted(latencies);
    Ok(BroadcastResult {
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        samples,
        expected,
        links,
        setup,
    })
}

// ---------------------------------------------------------------------------------------------

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[tokio::main]
async fn main() -> Res<()> {
    let opts = <Opts as clap::Parser>::parse();
    let filter = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| format!("warn,{},rtc=error", webrtc_adapter::QUIET_LOG_DIRECTIVES));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let _ = webrtc_adapter::init_log_bridge(tracing_log::log::LevelFilter::Warn);
    let started = Instant::now();
    let config = Config::loopback();

    eprintln!("bench-link: memory ({} link pairs held)...", opts.rss_pairs);
    let rss = bench_rss(&config, opts.rss_pairs).await?;
    eprintln!("bench-link: link open time ({} links)...", opts.links);
    let open = bench_open_time(&config, opts.links).await?;

    eprintln!(
        "bench-link: throughput ({} runs of raw, adapter, mesh)...",
        opts.runs
    );
    let server = TestServer::start().await?;
    let size = opts.message_bytes;
    let count = ((opts.mb * 1_000_000) / size).max(1) as u64;
    let (mut raw_rates, mut adapter_rates) = (Vec::new(), Vec::new());
    let mesh = bench_mesh_throughput(
        &server,
        size,
        count,
        opts.runs,
        &mut raw_rates,
        &mut adapter_rates,
        &config,
    )
    .await?;
    let mesh_runs = mesh.rates.clone();
    let mesh_cpu = median(mesh.cpu_ms_per_mb.clone());
    let raw_cpu = median(mesh.raw_cpu_ms_per_mb.clone());
    let raw_runs = raw_rates.clone();
    let (raw_mb_s, adapter_mb_s, mesh_mb_s) =
        (median(raw_rates), median(adapter_rates), median(mesh.rates));
    let ratio = mesh_mb_s / raw_mb_s;

    eprintln!("bench-link: broadcast latency ({} nodes)...", opts.nodes);
    let bcast = bench_broadcast(&server, opts.nodes, opts.broadcasts).await?;
    server.stop().await;

    let rss_ok = rss.per_link_kib * 1024.0 <= 400_000.0;
    println!();
    println!("bench-link (loopback, one process)               value        target");
    println!(
        "link open, median ({} adapter links)            {:>8.1} ms   <= 250 ms  {}",
        open.links,
        open.p50,
        verdict(open.p50 <= 250.0)
    );
    println!(
        "link open, p99 (min {:.1}, max {:.1})             {:>8.1} ms",
        open.min, open.max, open.p99
    );
    println!(
        "throughput raw webrtc pair ({} B msgs)          {:>8.1} MB/s (runs {:?})",
        size,
        raw_mb_s,
        raw_runs.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    println!("throughput adapter Link::send                     {adapter_mb_s:>8.1} MB/s");
    println!(
        "throughput Mesh::send                             {:>8.1} MB/s (runs {:?})",
        mesh_mb_s,
        mesh_runs.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    println!(
        "ratio mesh / raw                                  {:>8.2}      >= 0.90    {}",
        ratio,
        verdict(ratio >= 0.9)
    );
    println!(
        "  (CPU per MB, all threads: raw {raw_cpu:.1} ms, mesh {mesh_cpu:.1} ms; mesh: {} waits on \
         a full direct window, {} frames dropped on a full link queue)",
        mesh.backpressure_waits, mesh.frames_dropped_full
    );
    println!(
        "RSS per link end ({} ends, {} -> {} KiB)     {:>8.1} KiB  <= 400 kB  {}",
        rss.link_ends,
        rss.before_kib,
        rss.after_kib,
        rss.per_link_kib,
        verdict(rss_ok)
    );
    println!(
        "broadcast p50 ({} nodes, {} links, {}/{} deliveries) {:>8.2} ms",
        opts.nodes, bcast.links, bcast.samples, bcast.expected, bcast.p50
    );
    println!(
        "broadcast p99 (max {:.2} ms)                       {:>8.2} ms   <= 50 ms   {}",
        bcast.max,
        bcast.p99,
        verdict(bcast.p99 <= 50.0 && bcast.samples == bcast.expected)
    );
    println!(
        "total {:.1} s (mesh of {} formed in {:.1} s)",
        started.elapsed().as_secs_f64(),
        opts.nodes,
        bcast.setup.as_secs_f64()
    );

    if opts.json {
        let round = |x: f64, d: i32| {
            let f = 10f64.powi(d);
            (x * f).round() / f
        };
        let json = serde_json::json!({
            "open_ms_p50": round(open.p50, 2),
            "open_ms_p99": round(open.p99, 2),
            "mesh_mb_s": round(mesh_mb_s, 2),
            "raw_mb_s": round(raw_mb_s, 2),
            "ratio": round(ratio, 3),
            "rss_kib_per_link": round(rss.per_link_kib, 1),
            "broadcast_ms_p50": round(bcast.p50, 3),
            "broadcast_ms_p99": round(bcast.p99, 3),
            "open_links": open.links,
            "adapter_mb_s": round(adapter_mb_s, 2),
            "message_bytes": size,
            "messages_per_run": count,
            "runs": opts.runs,
            "mesh_backpressure_waits": mesh.backpressure_waits,
            "mesh_frames_dropped_full": mesh.frames_dropped_full,
            "mesh_cpu_ms_per_mb": round(mesh_cpu, 2),
            "raw_cpu_ms_per_mb": round(raw_cpu, 2),
            "rss_link_ends": rss.link_ends,
            "broadcast_nodes": opts.nodes,
            "broadcast_links": bcast.links,
            "broadcast_samples": bcast.samples,
            "broadcast_expected": bcast.expected,
            "total_s": round(started.elapsed().as_secs_f64(), 1),
        });
        println!("{json}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Opts;

    #[test]
    fn the_flags_are_consistent() {
        Opts::command().debug_assert();
    }

    #[test]
    fn defaults_and_values_parse() {
        let opts = Opts::try_parse_from(["bench_link"]).expect("defaults");
        assert_eq!(
            (opts.json, opts.links, opts.rss_pairs, opts.message_bytes),
            (false, 60, 50, 16 * 1024)
        );
        assert_eq!(
            (opts.mb, opts.runs, opts.nodes, opts.broadcasts),
            (32, 3, 20, 50)
        );
        let opts =
            Opts::try_parse_from(["bench_link", "--json", "--nodes", "5", "--rss-pairs", "0"])
                .expect("flags");
        assert!(opts.json);
        assert_eq!((opts.nodes, opts.rss_pairs), (5, 0));
    }

    #[test]
    fn values_under_their_minimum_are_refused() {
        for args in [
            ["bench_link", "--nodes", "1"],
            ["bench_link", "--links", "0"],
            ["bench_link", "--runs", "0"],
            ["bench_link", "--message-bytes", "15"],
            ["bench_link", "--unknown", "1"],
        ] {
            assert!(Opts::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
