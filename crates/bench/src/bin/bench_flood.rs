//! `bench_flood`: the flood benchmark behind `cargo xtask bench-flood [--json]`.
//!
//! A victim node on real links while a peer floods it, as separate processes over 127.0.0.1:
//!
//! - a `signaling-server` (`--server-bin`) on a free port;
//! - the **victim**, a `mesh-node` (`--node-bin`, apps/test-mesh) subscribed to the honest topic;
//!   being its own process, its RSS (`VmRSS` of `/proc/PID/status`) and CPU time (`utime + stime`
//!   of `/proc/PID/stat`, 100 clock ticks per second) are its own;
//! - `--honest` (default 3) honest `mesh-node`s, subscribed too;
//! - the **attacker**, `flood_attacker` (`--attacker-bin`, default: next to this binary), a real
//!   node that writes crafted frames on its link to the victim as fast as the link takes them
//!   (unique signed broadcasts on the honest topic, duplicates, chunks that never complete, bad
//!   signatures, lookups of random targets, unsolicited responses, IHAVEs of made-up ids: see its
//!   docs).
//!
//! Everyone joins (the victim first, the attacker last; with `max_peers` 8 the mesh is complete,
//! so the victim has a direct link from every honest node and from the attacker). A first round
//! of honest broadcasts must reach the victim (else the setup is broken and the run fails). Then,
//! for `--seconds` (default 60), the attacker floods while each honest node broadcasts `--rate`
//! (default 2) messages a second on the honest topic, and the victim's RSS and CPU time are
//! sampled every second. After the flood, `--drain` seconds (default 10, less when everything
//! has arrived) are left for the last honest broadcasts.
//!
//! Figures (MiB = 2^20 bytes; `_mb` keys are MiB):
//! - `peak_rss_mb`, `final_rss_mb`: the largest and the last victim RSS sample of the flood;
//!   `baseline_rss_mb` is the RSS just before it, `after_rss_mb` after the drain;
//! - `flat`: the samples of the flood are cut in thirds; the first third is the warm-up, and
//!   `flat` is `max(last third) <= max(middle third) * 1.1 + 4 MiB`;
//! - `honest_delivery_ratio`: honest broadcasts of the flood period that the victim's application
//!   received / honest broadcasts sent then (`honest_peer_delivery_ratio`: the same at the honest
//!   nodes, of each other's broadcasts: the damage that spreads past the victim);
//! - `victim_cpu_share`: the victim's CPU seconds during the flood / the flood's wall seconds (1.0
//!   = one core busy); `attacker_cpu_share` likewise;
//! - the attacker's frames and bytes per kind, its frames per second, the victim's counters
//!   (`mesh-node` `stats`) after the drain, and how many messages the victim's event stream lost
//!   (`victim_lagged`, the application falling behind).
//!
//! It prints a table and, with `--json`, one JSON object as its last line; `--verbose` prints every
//! sample. Every process is started with `kill_on_drop`: nothing outlives the run, a failure or a
//! Ctrl-C. Logs of the processes go to `--logs` (default a directory under the system temp dir).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Deadline of a setup step (a process joining, the mesh forming, the first round arriving).
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// Slack of the flatness bound, in MiB.
const FLAT_SLACK_MIB: f64 = 4.0;

/// Growth factor of the flatness bound.
const FLAT_FACTOR: f64 = 1.1;

/// The flags of `bench_flood` (what `cargo xtask bench-flood` passes).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bench_flood",
    about = "Flood a mesh node over real links and measure its memory, CPU and honest delivery"
)]
struct Opts {
    /// The `mesh-node` binary (victim and honest nodes).
    #[arg(long)]
    node_bin: PathBuf,
    /// The `signaling-server` binary.
    #[arg(long)]
    server_bin: PathBuf,
    /// The `flood_attacker` binary (default: next to this one).
    #[arg(long)]
    attacker_bin: Option<PathBuf>,
    /// Seconds of flooding.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(9..))]
    seconds: u64,
    /// Honest nodes besides the victim.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=6))]
    honest: u64,
    /// Broadcasts per second of each honest node during the flood.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Most seconds after the flood for the last honest broadcasts to arrive.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// The kinds of frame the attacker sends (repeatable; default all): unique, duplicate, chunk,
    /// bad-signature, lookup, unsolicited, ihave.
    #[arg(long)]
    kinds: Vec<String>,
    /// Payload bytes of the attacker's unique broadcasts.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// The attacker's frames per second of each kind (0: as fast as its link takes them).
    #[arg(long, default_value_t = 0.0)]
    attacker_rate: f64,
    /// Seed of the attacker's random ids.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the processes' logs go.
    #[arg(long)]
    logs: Option<PathBuf>,
    /// Print one JSON object as the last line, after the table.
    #[arg(long)]
    json: bool,
    /// Print every sample.
    #[arg(long)]
    verbose: bool,
}

/// The topic honest nodes broadcast on (and the attacker floods).
const TOPIC: &str = "honest";

/// Victim, honest nodes, attacker: index 0 is the victim, the attacker is last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Node(usize),
    Attacker,
}

#[derive(Debug)]
enum Line {
    Json(Who, Value),
    Exited(Who),
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    async fn send(&mut self, line: &str) -> Res<()> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// What the processes reported so far.
#[derive(Debug, Default)]
struct State {
    ids: Vec<Option<String>>,
    alive: Vec<bool>,
    attacker_id: Option<String>,
    attacker_alive: bool,
    attacker_linked: bool,
    attacker_unlinked: u64,
    attacker_progress: Option<Value>,
    attacker_done: Option<Value>,
    /// Per node: payloads received on the honest topic.
    received: Vec<HashSet<String>>,
    /// Per node: broadcasts it handed to the mesh (the data of each).
    broadcast: Vec<Vec<String>>,
    /// Per node: the peers of its last `peers` answer.
    peers: Vec<HashSet<String>>,
    /// Per node: messages its event stream lost (`lagged`).
    lagged: Vec<u64>,
    /// The victim's flood messages delivered to its application.
    victim_flood_delivered: u64,
    victim_stats: Option<Value>,
    victim_disconnects: Vec<String>,
    errors: Vec<String>,
}

impl State {
    fn new(nodes: usize) -> Self {
        Self {
            ids: vec![None; nodes],
            alive: vec![true; nodes],
            attacker_alive: true,
            received: vec![HashSet::new(); nodes],
            broadcast: vec![Vec::new(); nodes],
            peers: vec![HashSet::new(); nodes],
            lagged: vec![0; nodes],
            ..Self::default()
        }
    }

    fn absorb(&mut self, line: Line) {
        match line {
            Line::Exited(Who::Node(i)) => self.alive[i] = false,
            Line::Exited(Who::Attacker) => self.attacker_alive = false,
            Line::Json(Who::Attacker, v) => match event(&v) {
                "joined" => self.attacker_id = text(&v, "id"),
                "linked" => self.attacker_linked = true,
                "unlinked" => self.attacker_unlinked += 1,
                "progress" => self.attacker_progress = Some(v),
                "done" => self.attacker_done = Some(v),
                "error" => self.errors.push(format!(
                    "attacker: {}",
                    text(&v, "message").unwrap_or_default()
                )),
                _ => {}
            },
            Line::Json(Who::Node(i), v) => match event(&v) {
                "joined" => self.ids[i] = text(&v, "id"),
                "message" => {
                    if v.get("topic").and_then(Value::as_str) != Some(TOPIC) {
                        return;
                    }
                    let preview = text(&v, "preview").unwrap_or_default();
                    if preview.starts_with("F:") {
                        if i == 0 {
                            self.victim_flood_delivered += 1;
                        }
                    } else {
                        self.received[i].insert(preview);
                    }
                }
                "peers" => {
                    self.peers[i] = v
                        .get("peers")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| p.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                }
                "lagged" => self.lagged[i] += v.get("missed").and_then(Value::as_u64).unwrap_or(0),
                "stats" if i == 0 => self.victim_stats = v.get("stats").cloned(),
                "peer_disconnected" if i == 0 => self.victim_disconnects.push(format!(
                    "{} ({})",
                    text(&v, "peer").unwrap_or_default(),
                    text(&v, "reason").unwrap_or_default()
                )),
                "error" => self.errors.push(format!(
                    "node {i}: {}",
                    text(&v, "message").unwrap_or_default()
                )),
                _ => {}
            },
        }
    }
}

fn event(v: &Value) -> &str {
    v.get("event").and_then(Value::as_str).unwrap_or_default()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time of a process (user + system, every thread) in seconds, from `/proc/PID/stat` (clock
/// ticks, 100 per second as on every Linux architecture we run on).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Whether RSS samples (KiB) are flat after the warm-up: the first third is the warm-up, and the
/// last third's largest sample is at most the middle third's largest × [`FLAT_FACTOR`] +
/// [`FLAT_SLACK_MIB`]. Returns the verdict and the two maxima (MiB); fewer than three samples are
/// not flat.
fn flatness(samples: &[u64]) -> (bool, f64, f64) {
    let third = samples.len() / 3;
    if third == 0 {
        return (false, f64::NAN, f64::NAN);
    }
    let middle = samples[third..2 * third].iter().copied().max().unwrap_or(0);
    let last = samples[2 * third..].iter().copied().max().unwrap_or(0);
    let (middle, last) = (mib(middle), mib(last));
    (last <= middle * FLAT_FACTOR + FLAT_SLACK_MIB, middle, last)
}

/// Sums a JSON object of counters.
fn total(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_object)
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

struct Bench {
    opts: Opts,
    logs: PathBuf,
    room: String,
    server: Option<Child>,
    server_addr: SocketAddr,
    nodes: Vec<Proc>,
    attacker: Option<Proc>,
    state: State,
    tx: mpsc::UnboundedSender<Line>,
    rx: mpsc::UnboundedReceiver<Line>,
}

fn log_file(dir: &Path, name: &str) -> Res<std::fs::File> {
    Ok(std::fs::File::create(dir.join(format!("{name}.log")))?)
}

/// Reads a process's stdout lines into the channel (so that its pipe never fills).
fn read_lines(
    who: Who,
    stdout: tokio::process::ChildStdout,
    tx: mpsc::UnboundedSender<Line>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(Line::Json(who, v));
            }
        }
        let _ = tx.send(Line::Exited(who));
    })
}

impl Bench {
    fn progress(&self, text: &str) {
        eprintln!("bench-flood: {text}");
    }

    async fn start_server(&mut self) -> Res<()> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        self.server_addr = listener.local_addr()?;
        drop(listener);
        let child = Command::new(&self.opts.server_bin)
            .args(["--addr", &self.server_addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.logs, "server")?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.opts.server_bin.display()))?;
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.server_addr)
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("the signaling server did not start listening".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn server_url(&self) -> String {
        format!("ws://{}", self.server_addr)
    }

    async fn start_node(&mut self) -> Res<()> {
        let index = self.nodes.len();
        let name = if index == 0 {
            "victim".to_string()
        } else {
            format!("honest-{index}")
        };
        let mut child = Command::new(&self.opts.node_bin)
            .args(["--server", &self.server_url(), "--room", &self.room])
            .args(["--subscribe", TOPIC, "--max-peers", "8"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(&self.logs, &name)?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.opts.node_bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        read_lines(Who::Node(index), stdout, self.tx.clone());
        let stdin = child.stdin.take();
        self.nodes.push(Proc { child, stdin });
        self.wait(&format!("{name} to join"), |s| s.ids[index].is_some())
            .await
    }

    async fn start_attacker(&mut self, victim: &str) -> Res<()> {
        let bin = match &self.opts.attacker_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()?.with_file_name("flood_attacker"),
        };
        let mut cmd = Command::new(&bin);
        cmd.args(["--server", &self.server_url(), "--room", &self.room])
            .args(["--victim", victim, "--topic", TOPIC])
            .args(["--seconds", &self.opts.seconds.to_string()])
            .args(["--payload-bytes", &self.opts.payload_bytes.to_string()])
            .args(["--rate", &self.opts.attacker_rate.to_string()])
            .args(["--seed", &self.opts.seed.to_string()]);
        for kind in &self.opts.kinds {
            cmd.args(["--kinds", kind]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(&self.logs, "attacker")?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        read_lines(Who::Attacker, stdout, self.tx.clone());
        let stdin = child.stdin.take();
        self.attacker = Some(Proc { child, stdin });
        self.wait("the attacker to join", |s| s.attacker_id.is_some())
            .await
    }

    /// Takes reported lines until `done` holds; an error after [`STEP_DEADLINE`], or when a
    /// process has exited.
    async fn wait(&mut self, what: &str, done: impl Fn(&State) -> bool) -> Res<()> {
        let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
        while !done(&self.state) {
            if self.state.alive.iter().any(|a| !a) || !self.state.attacker_alive {
                return Err(format!(
                    "a process exited while waiting for {what} (errors: {:?}; logs in {})",
                    self.state.errors,
                    self.logs.display()
                )
                .into());
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => self.state.absorb(line),
                Ok(None) => return Err("every reader stopped".into()),
                Err(_) => {
                    return Err(format!(
                        "no {what} within {STEP_DEADLINE:?} (errors: {:?}; logs in {})",
                        self.state.errors,
                        self.logs.display()
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Takes reported lines for `d`.
    async fn absorb_for(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(line)) = tokio::time::timeout_at(until, self.rx.recv()).await {
            self.state.absorb(line);
        }
    }

    async fn broadcast(&mut self, node: usize, data: String) -> Res<()> {
        let line = json!({"cmd": "broadcast", "topic": TOPIC, "data": data}).to_string();
        self.nodes[node].send(&line).await?;
        self.state.broadcast[node].push(data);
        Ok(())
    }

    /// Whether every node received every other node's broadcast whose data starts with `prefix`.
    fn all_delivered(state: &State, prefix: &str) -> bool {
        state.broadcast.iter().enumerate().all(|(from, sent)| {
            sent.iter().filter(|d| d.starts_with(prefix)).all(|d| {
                state
                    .received
                    .iter()
                    .enumerate()
                    .all(|(to, got)| to == from || got.contains(d))
            })
        })
    }
}

/// One sample of the flood.
#[derive(Debug, Clone)]
struct Sample {
    t: f64,
    rss_kib: u64,
    cpu: f64,
    attacker_cpu: f64,
    attacker_frames: u64,
}

async fn run(opts: Opts) -> Res<()> {
    let started = Instant::now();
    let logs = opts.logs.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("bench-flood-{}", std::process::id()))
    });
    std::fs::create_dir_all(&logs)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let honest = usize::try_from(opts.honest)?;
    let mut bench = Bench {
        room: format!("flood-{}", std::process::id()),
        opts: opts.clone(),
        logs: logs.clone(),
        server: None,
        server_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        nodes: Vec::new(),
        attacker: None,
        state: State::new(honest + 1),
        tx,
        rx,
    };
    bench.progress(&format!("logs in {}", logs.display()));
    bench.start_server().await?;
    bench.progress(&format!("signaling server on {}", bench.server_addr));
    for _ in 0..=honest {
        bench.start_node().await?;
    }
    let victim = bench.state.ids[0].clone().ok_or("victim without id")?;
    bench.progress(&format!("victim {victim} and {honest} honest nodes joined"));
    bench.start_attacker(&victim).await?;
    let attacker_id = bench
        .state
        .attacker_id
        .clone()
        .ok_or("attacker without id")?;
    bench.progress(&format!("attacker {attacker_id} joined"));

    // The mesh: the victim linked to every honest node and to the attacker.
    let mut expected: HashSet<String> = bench.state.ids[1..].iter().flatten().cloned().collect();
    expected.insert(attacker_id.clone());
    let deadline = Instant::now() + STEP_DEADLINE;
    loop {
        bench.nodes[0].send(r#"{"cmd":"peers"}"#).await?;
        bench.absorb_for(Duration::from_millis(500)).await;
        if bench.state.attacker_linked && expected.is_subset(&bench.state.peers[0]) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the victim's links did not form within {STEP_DEADLINE:?}: it has {:?}, the \
                 attacker linked: {} (logs in {})",
                bench.state.peers[0],
                bench.state.attacker_linked,
                logs.display()
            )
            .into());
        }
    }
    bench.progress("mesh formed; first round of honest broadcasts");
    for node in 0..=honest {
        bench.broadcast(node, format!("P:{node}")).await?;
    }
    bench
        .wait("the first round to reach every node", |s| {
            Bench::all_delivered(s, "P:")
        })
        .await?;

    let victim_pid = bench.nodes[0].pid().ok_or("victim has no pid")?;
    let attacker_pid = bench
        .attacker
        .as_ref()
        .and_then(Proc::pid)
        .ok_or("attacker has no pid")?;
    let (baseline_kib, _) = rss_kib(victim_pid).ok_or("cannot read the victim's RSS")?;
    let cpu0 = cpu_secs(victim_pid).unwrap_or(0.0);
    let attacker_cpu0 = cpu_secs(attacker_pid).unwrap_or(0.0);
    bench.progress(&format!(
        "flooding for {} s (victim RSS {:.1} MiB)",
        opts.seconds,
        mib(baseline_kib)
    ));
    if let Some(attacker) = bench.attacker.as_mut() {
        attacker.send("start").await?;
    }
    let flood_start = tokio::time::Instant::now();
    let flood_end = flood_start + Duration::from_secs(opts.seconds);
    let mut sampler =
        tokio::time::interval_at(flood_start + Duration::from_secs(1), Duration::from_secs(1));
    let per_second = (opts.rate * honest as f64).max(0.001);
    let mut talker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    talker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples: Vec<Sample> = Vec::new();
    let mut sent = 0usize;
    loop {
        tokio::select! {
            line = bench.rx.recv() => match line {
                Some(line) => bench.state.absorb(line),
                None => return Err("every reader stopped".into()),
            },
            _ = sampler.tick() => {
                let t = flood_start.elapsed().as_secs_f64();
                let Some((rss, _)) = rss_kib(victim_pid) else {
                    bench.progress("the victim exited during the flood");
                    break;
                };
                let sample = Sample {
                    t,
                    rss_kib: rss,
                    cpu: cpu_secs(victim_pid).unwrap_or(cpu0) - cpu0,
                    attacker_cpu: cpu_secs(attacker_pid).unwrap_or(attacker_cpu0) - attacker_cpu0,
                    attacker_frames: total(
                        bench.state.attacker_progress.as_ref().and_then(|p| p.get("sent")),
                    ),
                };
                if opts.verbose {
                    let previous = samples.last().cloned();
                    let (cpu_d, attacker_d) = previous.map_or(
                        (sample.cpu, sample.attacker_cpu),
                        |p| (sample.cpu - p.cpu, sample.attacker_cpu - p.attacker_cpu),
                    );
                    // The attacker reports once a second too: its rate is taken since the start.
                    eprintln!(
                        "bench-flood: t={:>5.1}s victim RSS {:>7.1} MiB, CPU {:>4.0}% ; attacker CPU {:>4.0}%, {:>8} frames ({:.0}/s)",
                        sample.t, mib(sample.rss_kib), cpu_d * 100.0, attacker_d * 100.0,
                        sample.attacker_frames, sample.attacker_frames as f64 / sample.t.max(1.0)
                    );
                } else if samples.len() % 10 == 9 {
                    eprintln!(
                        "bench-flood: t={:.0}s victim RSS {:.1} MiB",
                        sample.t, mib(sample.rss_kib)
                    );
                }
                samples.push(sample);
                if tokio::time::Instant::now() >= flood_end {
                    break;
                }
            },
            _ = talker.tick(), if tokio::time::Instant::now() < flood_end => {
                let node = 1 + sent % honest;
                let data = format!("H:{node}:{sent}");
                sent += 1;
                if bench.broadcast(node, data).await.is_err() {
                    bench.progress(&format!("honest node {node} took no more commands"));
                }
            },
        }
    }
    let flood_wall = flood_start.elapsed().as_secs_f64();
    let victim_cpu = cpu_secs(victim_pid).map(|c| c - cpu0);
    let attacker_cpu = cpu_secs(attacker_pid).map_or(0.0, |c| c - attacker_cpu0);

    bench.progress("flood over; draining");
    let drain_deadline = Instant::now() + Duration::from_secs(opts.drain);
    while Instant::now() < drain_deadline {
        bench.absorb_for(Duration::from_millis(250)).await;
        if Bench::all_delivered(&bench.state, "H:") && bench.state.attacker_done.is_some() {
            break;
        }
    }
    let after_kib = rss_kib(victim_pid).map(|(rss, _)| rss);
    let hwm_kib = rss_kib(victim_pid).map(|(_, hwm)| hwm);
    if bench.state.alive[0] {
        let _ = bench.nodes[0].send(r#"{"cmd":"stats"}"#).await;
        let _ = bench.nodes[0].send(r#"{"cmd":"peers"}"#).await;
        bench.absorb_for(Duration::from_secs(2)).await;
    }

    // Figures.
    let state = &bench.state;
    let honest_sent: Vec<&String> = state.broadcast[1..]
        .iter()
        .flatten()
        .filter(|d| d.starts_with("H:"))
        .collect();
    let victim_got = honest_sent
        .iter()
        .filter(|d| state.received[0].contains(**d))
        .count();
    let ratio = if honest_sent.is_empty() {
        f64::NAN
    } else {
        victim_got as f64 / honest_sent.len() as f64
    };
    let (mut peer_expected, mut peer_got) = (0usize, 0usize);
    for (from, sent) in state.broadcast.iter().enumerate().skip(1) {
        for data in sent.iter().filter(|d| d.starts_with("H:")) {
            for (to, got) in state.received.iter().enumerate().skip(1) {
                if to != from {
                    peer_expected += 1;
                    peer_got += usize::from(got.contains(data));
                }
            }
        }
    }
    let peer_ratio = if peer_expected == 0 {
        f64::NAN
    } else {
        peer_got as f64 / peer_expected as f64
    };
    let rss: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    let peak_kib = rss.iter().copied().max().unwrap_or(0);
    let final_kib = rss.last().copied().unwrap_or(0);
    let (flat, middle_max, last_max) = flatness(&rss);
    let victim_exited = !state.alive[0] || after_kib.is_none();
    let flat = flat && !victim_exited;
    let cpu_share = victim_cpu.map_or(f64::NAN, |c| c / flood_wall);
    let attacker_share = attacker_cpu / flood_wall;
    let done = state
        .attacker_done
        .clone()
        .or_else(|| state.attacker_progress.clone())
        .unwrap_or(Value::Null);
    let frames = total(done.get("sent"));
    let bytes = total(done.get("bytes"));
    let attack_s = done
        .get("elapsed_s")
        .and_then(Value::as_f64)
        .unwrap_or(flood_wall);
    let last_send_s = done
        .get("last_send_s")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    // The link took no frame in the flood's last 2 s: the attacker's transport stalled.
    let stalled = last_send_s + 2.0 < opts.seconds as f64;
    let frames_per_s = frames as f64 / attack_s.max(1e-9);
    let mb_per_s = bytes as f64 / attack_s.max(1e-9) / 1e6;

    if opts.verbose {
        eprintln!(
            "bench-flood: RSS samples (MiB): {:?}",
            rss.iter()
                .map(|k| (mib(*k) * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        );
        eprintln!("bench-flood: attacker: {done}");
        if let Some(stats) = &state.victim_stats {
            eprintln!("bench-flood: victim stats: {stats}");
        }
    }

    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!(
        "bench-flood ({} s flood, victim + {honest} honest mesh-node processes, 1 attacker, loopback WebRTC)",
        opts.seconds
    );
    println!(
        "victim RSS: baseline {:.1} MiB, peak {:.1} MiB, final {:.1} MiB, after drain {}",
        mib(baseline_kib),
        mib(peak_kib),
        mib(final_kib),
        after_kib.map_or("exited".to_string(), |k| format!("{:.1} MiB", mib(k)))
    );
    println!(
        "flat (max last third {last_max:.1} <= max middle third {middle_max:.1} x {FLAT_FACTOR} + {FLAT_SLACK_MIB} MiB): {flat}  {}",
        verdict(flat)
    );
    println!(
        "honest delivery at the victim: {victim_got}/{} = {ratio:.3}  {}   (among honest nodes: {peer_got}/{peer_expected} = {peer_ratio:.3})",
        honest_sent.len(),
        verdict(ratio >= 1.0)
    );
    println!(
        "victim CPU share {cpu_share:.2} of a core (attacker {attacker_share:.2}); victim event stream lost {} messages; {} flood messages reached its application",
        state.lagged[0], state.victim_flood_delivered
    );
    println!(
        "attacker: {frames} frames ({frames_per_s:.0}/s, {mb_per_s:.1} MB/s) over {attack_s:.1} s, {} link drops; per kind: {}",
        state.attacker_unlinked,
        done.get("sent").cloned().unwrap_or(Value::Null)
    );
    if stalled {
        // Either the victim closed the attacker's link (and refuses it while banned), or the
        // attacker's transport stalled.
        let why = if state.victim_disconnects.is_empty() {
            "its transport stalled"
        } else {
            "the victim closed its link, below"
        };
        println!(
            "the attacker's link took its last frame at t={last_send_s:.1} s: the flood stopped \
             early ({why}; see the attacker's log in {})",
            logs.display()
        );
    }
    if !state.victim_disconnects.is_empty() {
        println!("victim's links that closed: {:?}", state.victim_disconnects);
    }
    if victim_exited {
        println!("the victim EXITED (logs in {})", logs.display());
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());

    if opts.json {
        let round = |x: f64, d: i32| {
            let f = 10f64.powi(d);
            (x * f).round() / f
        };
        let json = json!({
            "peak_rss_mb": round(mib(peak_kib), 2),
            "final_rss_mb": round(mib(final_kib), 2),
            "flat": flat,
            "honest_delivery_ratio": round(ratio, 4),
            "victim_cpu_share": round(cpu_share, 3),
            "baseline_rss_mb": round(mib(baseline_kib), 2),
            "after_rss_mb": after_kib.map(|k| round(mib(k), 2)),
            "victim_hwm_mb": hwm_kib.map(|k| round(mib(k), 2)),
            "flat_middle_max_mb": round(middle_max, 2),
            "flat_last_max_mb": round(last_max, 2),
            "honest_sent": honest_sent.len(),
            "honest_delivered": victim_got,
            "honest_peer_delivery_ratio": round(peer_ratio, 4),
            "victim_lagged": state.lagged[0],
            "victim_flood_delivered": state.victim_flood_delivered,
            "victim_exited": victim_exited,
            "attacker_cpu_share": round(attacker_share, 3),
            "attacker_frames": frames,
            "attacker_bytes": bytes,
            "attacker_frames_per_s": round(frames_per_s, 1),
            "attacker_mb_per_s": round(mb_per_s, 2),
            "attacker_frames_per_kind": done.get("sent"),
            "attacker_bytes_per_kind": done.get("bytes"),
            "attacker_link_drops": state.attacker_unlinked,
            "attacker_last_send_s": round(last_send_s, 1),
            "attacker_stalled": stalled,
            "victim_stats": state.victim_stats,
            "rss_samples_mb": rss.iter().map(|k| round(mib(*k), 1)).collect::<Vec<_>>(),
            "seconds": opts.seconds,
            "honest_nodes": honest,
            "honest_rate_per_node": opts.rate,
            "total_s": round(started.elapsed().as_secs_f64(), 1),
        });
        println!("{json}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let opts = <Opts as clap::Parser>::parse();
    // On Ctrl-C the run is dropped, and with it (kill_on_drop) every process it started.
    let result = tokio::select! {
        result = run(opts) => result,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-flood: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn the_flags_are_consistent() {
        Opts::command().debug_assert();
    }

    #[test]
    fn short_floods_and_empty_meshes_are_refused() {
        let base = ["bench_flood", "--node-bin", "n", "--server-bin", "s"];
        assert!(Opts::try_parse_from(base).is_ok());
        for extra in [["--seconds", "8"], ["--honest", "0"], ["--honest", "7"]] {
            let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
            assert!(Opts::try_parse_from(args).is_err(), "{extra:?}");
        }
    }

    #[test]
    fn flatness_compares_the_last_third_with_the_middle_one() {
        let mib = |v: &[u64]| v.iter().map(|m| m * 1024).collect::<Vec<_>>();
        // Warm-up growth is ignored; a plateau is flat.
        assert!(flatness(&mib(&[10, 50, 90, 100, 100, 101, 100, 104, 102])).0);
        // Within 10 % + 4 MiB of the middle third's largest.
        assert!(flatness(&mib(&[10, 10, 10, 100, 100, 100, 114, 110, 100])).0);
        // Steady growth is not.
        assert!(!flatness(&mib(&[10, 20, 30, 40, 50, 60, 70, 80, 90])).0);
        assert!(!flatness(&mib(&[10, 10, 10, 100, 100, 100, 100, 100, 115])).0);
        // Too few samples to tell.
        assert!(!flatness(&mib(&[10, 10])).0);
    }
}
