//! `bench-web`: p2pmesh in the browser, measured on loopback (run by `cargo xtask bench-web`).
//!
//! Prints figures, asserts none. Everything runs on 127.0.0.1: a signaling server in this process
//! serving a temporary folder that holds the benchmark's own small page (`bench.html` +
//! `bench.js`, written below, on the JavaScript API) and a copy of the built `pkg/`
//! (`cargo xtask web`); headless Chromium through chromedriver; native nodes as processes.
//!
//! The page records, with `performance.now()` (milliseconds since the navigation started, i.e.
//! `performance.timeOrigin`): when `mesh.join()` resolved and when the first `peer:connect`
//! fired; and, for each benchmark broadcast received, `performance.timeOrigin +
//! performance.now()`, the wall clock in milliseconds since the Unix epoch, which the native
//! nodes also read (`SystemTime`): all processes are on one machine, so one clock.
//!
//! Phases:
//! - **open**: a native `chat-cli` waits in a room; the page is loaded `--loads` times into it
//!   (each load a new identity: `persistIdentity: false`; `about:blank` in between, so the
//!   previous page's mesh closes). (a) *page load to first link*: the first `peer:connect`'s
//!   `performance.now()`; (b) *browser-native link open*: from `join()` resolving (the server's
//!   introductions arrive with it: the node decides to dial) to that `peer:connect` (negative
//!   if the link came up before `join()`'s promise resumed the page, which is reported as is).
//! - **broadcast**: `--tabs` tabs, each in a Chromium of its own (with `--one-browser`, all in
//!   one Chromium, where the background tabs are throttled), and `--natives` `bench-node` processes in
//!   another room; once every node has heard every other's warm-up broadcast, `--rounds` rounds
//!   in which every node broadcasts once (`{"bench":NAME,"seq":N,"sent_ms":T}`); (c) the latency
//!   of every delivery at every node, `recv_ms - sent_ms`, by kind of sender and receiver.
//!
//! Output: a Markdown table per phase; with `--json`, one JSON object as the last line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_web::{
    Browser, ChatCli, Chromedriver, Error, PATIENCE, Result, Signaling, Summary, built_web_dir,
    chat_cli_binary, eventually, workspace_binary,
};
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

#[derive(Parser, Debug)]
#[command(
    name = "bench-web",
    about = "p2pmesh in headless Chromium, measured on loopback"
)]
struct Args {
    /// Page loads of the open phase.
    #[arg(long, default_value_t = 20)]
    loads: usize,
    /// Browser tabs of the broadcast phase, each in a Chromium of its own (as each user has), so
    /// that every tab is in the foreground.
    #[arg(long, default_value_t = 4)]
    tabs: usize,
    /// Put the tabs in one Chromium instead (all but one in the background, where Chromium
    /// throttles a page's timers whatever the flags: announcements and GRAFTs then wait ~1 s).
    #[arg(long)]
    one_browser: bool,
    /// Native nodes (bench-node processes) of the broadcast phase.
    #[arg(long, default_value_t = 6)]
    natives: usize,
    /// Rounds of the broadcast phase (every node broadcasts once per round).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Pause between two rounds, in milliseconds.
    #[arg(long, default_value_t = 200)]
    round_gap_ms: u64,
    /// Also print the results as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// Chromium flags for the benchmark only: tabs in the background must not be throttled.
const UNTHROTTLED: [&str; 3] = [
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
];

const BENCH_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>p2pmesh bench</title></head>
<body><p>p2pmesh benchmark page</p><script type="module" src="bench.js"></script></body></html>
"#;

/// The benchmark page: joins `?room=` as `?name=` at once and records what bench-web reads.
const BENCH_JS: &str = r#"import init, { createMesh, WebSocketTransport } from "./pkg/p2pmesh.js";

const TOPIC = "bench";
const MAX_RECEIVED = 200000;
const params = new URLSearchParams(location.search);
const name = params.get("name") || "tab";
const wall = () => performance.timeOrigin + performance.now();
const bench = (window.bench = {
  id: null, error: null, joinStart: null, joined: null, firstLink: null, links: 0, received: [],
});

try {
  await init();
  const transport = new WebSocketTransport(`ws://${location.host}/`);
  const mesh = await createMesh({ transport, room: params.get("room") || undefined, persistIdentity: false });
  bench.id = mesh.peerId;
  mesh.on("peer:connect", () => {
    if (bench.firstLink === null) bench.firstLink = performance.now();
    bench.links += 1;
  });
  mesh.on("peer:disconnect", () => { bench.links -= 1; });
  mesh.on("message", ({ data, topic }) => {
    const recv_ms = wall();
    if (topic !== TOPIC) return;
    let probe;
    try { probe = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data)); } catch { return; }
    if (!probe || typeof probe.bench !== "string") return;
    if (bench.received.length < MAX_RECEIVED) {
      bench.received.push({ origin: probe.bench, seq: probe.seq, sent_ms: probe.sent_ms, recv_ms });
    }
  });
  await mesh.subscribe(TOPIC, () => {});
  bench.joinStart = performance.now();
  await mesh.join();
  bench.joined = performance.now();
  bench.send = (seq) => mesh.sendBroadcast(TOPIC, JSON.stringify({ bench: name, seq, sent_ms: wall() }));
  window.addEventListener("pagehide", () => { mesh.leave().catch(() => {}); });
} catch (err) {
  bench.error = String((err && err.message) || err);
}
"#;

/// A delivery: `origin`'s broadcast `seq`, sent at `sent_ms`, received at `recv_ms` (wall clock,
/// milliseconds since the Unix epoch).
#[derive(Debug, Clone, Deserialize)]
struct Delivery {
    origin: String,
    seq: u64,
    sent_ms: f64,
    recv_ms: f64,
}

/// The page's benchmark state after a load.
#[derive(Debug, Deserialize)]
struct Load {
    error: Option<String>,
    joined: Option<f64>,
    #[serde(rename = "firstLink")]
    first_link: Option<f64>,
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The page's folder: bench.html, bench.js and the built pkg/.
fn bench_site() -> Result<tempfile::TempDir> {
    let built = built_web_dir()?;
    let site = tempfile::Builder::new()
        .prefix("p2pmesh-bench-web-")
        .tempdir()?;
    std::fs::write(site.path().join("index.html"), BENCH_HTML)?;
    std::fs::write(site.path().join("bench.html"), BENCH_HTML)?;
    std::fs::write(site.path().join("bench.js"), BENCH_JS)?;
    copy_dir(&built.join("pkg"), &site.path().join("pkg"))?;
    Ok(site)
}

fn bench_url(server: &Signaling, room: &str, name: &str) -> String {
    format!("{}bench.html?room={room}&name={name}", server.http_url())
}

/// (a) and (b) over `loads` page loads next to a waiting chat-cli.
async fn open_phase(
    driver: &Chromedriver,
    server: &Signaling,
    loads: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let chat_cli = chat_cli_binary()?;
    let mut waiter = ChatCli::start(&chat_cli, &server.ws_url(), "waiter", "bench-open", &[])?;
    waiter.joined().await?;
    let browser = Browser::open(driver, &UNTHROTTLED).await?;
    let mut to_link = Vec::with_capacity(loads);
    let mut link_open = Vec::with_capacity(loads);
    for i in 0..loads {
        browser
            .goto(&bench_url(server, "bench-open", &format!("load{i}")))
            .await?;
        let load: Load = browser
            .wait_for(
                &format!("load {i}: the first link"),
                "const b = window.bench; return b && (b.error !== null || (b.firstLink !== null && b.joined !== null)) \
                 ? { error: b.error, joined: b.joined, firstLink: b.firstLink } : null;",
            )
            .await?;
        if let Some(error) = load.error {
            return Err(Error::Other(format!("load {i}: the page failed: {error}")));
        }
        let (Some(joined), Some(first_link)) = (load.joined, load.first_link) else {
            return Err(Error::Other(format!(
                "load {i}: the page reported no times"
            )));
        };
        eprintln!(
            "bench-web: load {i}: first link at {first_link:.1} ms, {:.1} ms after join",
            first_link - joined
        );
        to_link.push(first_link);
        link_open.push(first_link - joined);
        browser.goto("about:blank").await?;
    }
    browser.close().await?;
    drop(waiter);
    Ok((to_link, link_open))
}

/// A bench-node process; its deliveries are read into `received` by a task.
struct NativeNode {
    name: String,
    child: Child,
    stdin: ChildStdin,
    received: Arc<Mutex<Vec<Delivery>>>,
    links: Arc<Mutex<usize>>,
}

impl NativeNode {
    async fn start(binary: &Path, server: &Signaling, room: &str, name: &str) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(["--server", &server.ws_url(), "--room", room, "--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Other("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Other("no stdout".into()))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let links = Arc::new(Mutex::new(0));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let (r, l) = (received.clone(), links.clone());
        let who = name.to_owned();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("bench-web: {who} printed {line:?}");
                    continue;
                };
                match value["event"].as_str() {
                    Some("ready") => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Some("link") => *l.lock().unwrap_or_else(|e| e.into_inner()) += 1,
                    Some("recv") => {
                        if let Ok(d) = serde_json::from_value::<Delivery>(value) {
                            let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
                            // Bounded: far above what a run sends.
                            if r.len() < 1_000_000 {
                                r.push(d);
                            }
                        }
                    }
                    _ => eprintln!("bench-web: {who} printed {line:?}"),
                }
            }
        });
        tokio::time::timeout(PATIENCE, ready_rx)
            .await
            .map_err(|_| Error::Other(format!("{name} did not join")))?
            .map_err(|_| Error::Other(format!("{name} exited before joining")))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin,
            received,
            links,
        })
    }

    async fn send(&mut self, seq: u64) -> Result<()> {
        self.stdin
            .write_all(format!("send {seq}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(())
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn links(&self) -> usize {
        *self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// One tab of the broadcast phase: a window of one of its browsers.
struct Tab {
    name: String,
    /// Index of its browser.
    browser: usize,
    window: fantoccini::wd::WindowHandle,
}

async fn in_tab<T: serde::de::DeserializeOwned>(
    browsers: &[Browser],
    tab: &Tab,
    script: &str,
    args: Vec<Value>,
) -> Result<T> {
    let browser = &browsers[tab.browser];
    browser
        .client()
        .switch_to_window(tab.window.clone())
        .await?;
    browser.eval(script, args).await
}

/// Every delivery seen by every node, by receiver name.
async fn collect(
    browsers: &[Browser],
    tabs: &[Tab],
    natives: &[NativeNode],
) -> Result<BTreeMap<String, Vec<Delivery>>> {
    let mut all = BTreeMap::new();
    for tab in tabs {
        let got: Vec<Delivery> =
            in_tab(browsers, tab, "return window.bench.received;", vec![]).await?;
        all.insert(tab.name.clone(), got);
    }
    for node in natives {
        all.insert(node.name.clone(), node.deliveries());
    }
    Ok(all)
}

/// How many of the `(origin, seq)` broadcasts each receiver holds.
fn count_of(all: &BTreeMap<String, Vec<Delivery>>, wanted: &HashSet<(String, u64)>) -> usize {
    all.values()
        .map(|ds| {
            ds.iter()
                .filter(|d| wanted.contains(&(d.origin.clone(), d.seq)))
                .map(|d| (d.origin.as_str(), d.seq))
                .collect::<HashSet<_>>()
                .len()
        })
        .sum()
}

struct BroadcastResult {
    /// Latencies by "sender kind -> receiver kind" and "all".
    latencies: BTreeMap<String, Vec<f64>>,
    expected: usize,
    delivered: usize,
}

async fn broadcast_phase(
    driver: &Chromedriver,
    server: &Signaling,
    args: &Args,
) -> Result<BroadcastResult> {
    let room = "bench-broadcast";
    let node_binary = workspace_binary("chat-web", "bench-node")?;
    let mut browsers: Vec<Browser> = Vec::new();
    let mut tabs = Vec::new();
    for i in 0..args.tabs {
        let window = if i == 0 || !args.one_browser {
            browsers.push(Browser::open(driver, &UNTHROTTLED).await?);
            browsers[browsers.len() - 1].client().window().await?
        } else {
            browsers[0].client().new_window(false).await?.handle
        };
        let index = browsers.len() - 1;
        let browser = &browsers[index];
        browser.client().switch_to_window(window.clone()).await?;
        let name = format!("tab{i}");
        browser.goto(&bench_url(server, room, &name)).await?;
        tabs.push(Tab {
            name,
            browser: index,
            window,
        });
    }
    let mut natives = Vec::new();
    for i in 0..args.natives {
        natives.push(NativeNode::start(&node_binary, server, room, &format!("native{i}")).await?);
    }
    let kind = |name: &str| {
        if name.starts_with("tab") {
            "browser"
        } else {
            "native"
        }
    };
    let names: Vec<String> = tabs
        .iter()
        .map(|t| t.name.clone())
        .chain(natives.iter().map(|n| n.name.clone()))
        .collect();

    // Every tab joined and every node has a link.
    for tab in &tabs {
        let browser = &browsers[tab.browser];
        browser
            .client()
            .switch_to_window(tab.window.clone())
            .await?;
        let ok: Value = browser
            .wait_for(
                &format!("{} to join and link", tab.name),
                "const b = window.bench; \
                 return b && (b.error !== null || (b.send && b.links > 0)) ? b.error ?? true : null;",
            )
            .await?;
        if let Value::String(error) = ok {
            return Err(Error::Other(format!(
                "{}: the page failed: {error}",
                tab.name
            )));
        }
    }
    eventually("every native node to have a link", PATIENCE, || async {
        let unlinked: Vec<&str> = natives
            .iter()
            .filter(|n| n.links() == 0)
            .map(|n| n.name.as_str())
            .collect();
        Ok(if unlinked.is_empty() {
            Ok(())
        } else {
            Err(format!("unlinked: {unlinked:?}"))
        })
    })
    .await?;

    // Warm-up: seq 0 from everyone, until every node holds every other's.
    for tab in &tabs {
        in_tab::<Value>(&browsers, tab, "window.bench.send(0); return null;", vec![]).await?;
    }
    for node in &mut natives {
        node.send(0).await?;
    }
    let warm: HashSet<(String, u64)> = names.iter().map(|n| (n.clone(), 0)).collect();
    let n = names.len();
    let wanted_warm = n * (n - 1);
    eventually(
        "every node to hear every warm-up broadcast",
        PATIENCE,
        || async {
            let got = count_of(&collect(&browsers, &tabs, &natives).await?, &warm);
            Ok(if got >= wanted_warm {
                Ok(())
            } else {
                Err(format!("{got} of {wanted_warm} warm-up deliveries"))
            })
        },
    )
    .await?;

    // Measured rounds.
    for round in 1..=args.rounds as u64 {
        for tab in &tabs {
            in_tab::<Value>(
                &browsers,
                tab,
                "window.bench.send(arguments[0]); return null;",
                vec![json!(round)],
            )
            .await?;
        }
        for node in &mut natives {
            node.send(round).await?;
        }
        tokio::time::sleep(Duration::from_millis(args.round_gap_ms)).await;
    }
    let wanted: HashSet<(String, u64)> = names
        .iter()
        .flat_map(|n| (1..=args.rounds as u64).map(move |r| (n.clone(), r)))
        .collect();
    let expected = wanted.len() * (n - 1);
    // Wait for the stragglers, but report what arrived if some never do.
    let _ = eventually(
        "every measured delivery",
        Duration::from_secs(30),
        || async {
            let got = count_of(&collect(&browsers, &tabs, &natives).await?, &wanted);
            Ok(if got >= expected {
                Ok(())
            } else {
                Err(format!("{got} of {expected}"))
            })
        },
    )
    .await;
    let all = collect(&browsers, &tabs, &natives).await?;

    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut delivered = 0;
    for (receiver, deliveries) in &all {
        let mut seen = HashSet::new();
        for d in deliveries {
            if d.seq == 0 || &d.origin == receiver || !seen.insert((d.origin.clone(), d.seq)) {
                continue;
            }
            delivered += 1;
            let ms = d.recv_ms - d.sent_ms;
            latencies.entry("all".into()).or_default().push(ms);
            latencies
                .entry(format!("{} -> {}", kind(&d.origin), kind(receiver)))
                .or_default()
                .push(ms);
        }
    }
    for node in natives {
        node.quit().await;
    }
    for browser in browsers {
        browser.close().await?;
    }
    Ok(BroadcastResult {
        latencies,
        expected,
        delivered,
    })
}

fn row(label: &str, s: Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.count, s.p50, s.p90, s.p99, s.max
        ),
        None => format!("| {label} | 0 | - | - | - | - |"),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn summary_json(s: Option<Summary>) -> Value {
    s.map_or(Value::Null, |s| {
        json!({"count": s.count, "p50": round3(s.p50), "p90": round3(s.p90), "p99": round3(s.p99), "max": round3(s.max)})
    })
}

async fn run(args: Args) -> Result<()> {
    let site = bench_site()?;
    let driver = Chromedriver::start().await?;
    let server = Signaling::start(site.path()).await?;

    let (to_link, link_open) = open_phase(&driver, &server, args.loads).await?;
    let to_link_s = Summary::of(&to_link);
    let link_open_s = Summary::of(&link_open);
    println!(
        "\n## Browser: page load to first link, and link open ({} loads next to a native chat-cli)\n",
        args.loads
    );
    println!("| figure (ms) | count | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    println!("{}", row("(a) page load -> first peer:connect", to_link_s));
    println!(
        "{}",
        row(
            "(b) join() resolved -> peer:connect (browser-native link open)",
            link_open_s
        )
    );
    if let Some(first) = to_link.first() {
        println!("\nfirst (cold) load: {first:.1} ms to the first link");
    }

    let bcast = broadcast_phase(&driver, &server, &args).await?;
    println!(
        "\n## Broadcast latency, {} browser tabs ({}) + {} native nodes, {} rounds (every node sends once per round)\n",
        args.tabs,
        if args.one_browser {
            "one Chromium"
        } else {
            "a Chromium each"
        },
        args.natives,
        args.rounds
    );
    println!("| sender -> receiver (ms) | count | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (label, values) in &bcast.latencies {
        println!("{}", row(label, Summary::of(values)));
    }
    println!(
        "\ndelivered {} of {} expected deliveries",
        bcast.delivered, bcast.expected
    );

    if args.json {
        let by_kind: HashMap<&String, Value> = bcast
            .latencies
            .iter()
            .map(|(k, v)| (k, summary_json(Summary::of(v))))
            .collect();
        let out = json!({
            "loads": args.loads,
            "page_to_first_link_ms": summary_json(to_link_s),
            "first_load_to_first_link_ms": to_link.first().map(|x| round3(*x)),
            "browser_native_link_open_ms": summary_json(link_open_s),
            "broadcast": {
                "tabs": args.tabs,
                "one_browser": args.one_browser,
                "natives": args.natives,
                "rounds": args.rounds,
                "expected": bcast.expected,
                "delivered": bcast.delivered,
                "latency_ms": by_kind,
            },
        });
        println!("{out}");
    }
    server.stop().await;
    drop(driver);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-web: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
