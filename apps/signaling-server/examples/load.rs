//! Load generator for `cargo xtask bench-signaling` (built in release by the xtask).
//!
//! N clients join one room of a running server (with identity proofs), pair up
//! (2i <-> 2i+1) and bounce signals for `--duration-secs`: each signal carries its send
//! time, the receiver records the relay latency and answers at once, keeping `--in-flight`
//! signals per pair in the air. It prints relayed messages/s, latency p50/p99, and the
//! server's RSS (VmRSS of `--server-pid`) with all clients connected.
//!
//! Given several `--url`s (servers of one cluster sharing a Redis), client i joins server
//! i mod N, so both ends of every pair are on different servers and every signal crosses the
//! cluster; with several `--server-pid`s it prints each one's RSS, and the CPU time the servers
//! (and `--redis-pid`) spent per relayed message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use transport::{PeerId, join_proof_message};

#[derive(clap::Parser, Debug)]
struct Args {
    /// Server URL; repeat it for the servers of a cluster (client i joins URL i mod N).
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    url: Vec<String>,
    /// Number of clients (rounded down to an even number).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Signals in flight per pair of clients.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// The servers' pids, to read their RSS and CPU time (repeatable).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// The Redis's pid (a cluster), to read its CPU time.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    from: Option<&'a str>,
    #[serde(default)]
    signal: Option<Stamp>,
    #[serde(default, borrow)]
    nonce: Option<&'a str>,
}

#[derive(Deserialize)]
struct Stamp {
    ts: u64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of `pid` so far, in seconds (Linux's USER_HZ of 100).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn key(i: usize) -> SigningKey {
    let mut seed = [0x42u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

struct Outcome {
    received: u64,
    latencies_us: Vec<u32>,
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    url: Arc<str>,
    partner: String,
    starts: bool,
    in_flight: usize,
    base: Instant,
    gate: Arc<Semaphore>,
    joined: Arc<Barrier>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    deadline_after: Duration,
    failures: Arc<AtomicUsize>,
) -> Outcome {
    let mut outcome = Outcome {
        received: 0,
        latencies_us: Vec::new(),
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let permit = gate.acquire().await;
    let connected = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(&*url, Some(config), true).await.ok()?;
        let k = key(i);
        let id = PeerId::from_public_key(&k.verifying_key().to_bytes());
        loop {
            let msg = ws.next().await?.ok()?;
            let Message::Text(text) = msg else { continue };
            let m: Incoming<'_> = serde_json::from_str(&text).ok()?;
            match m.kind {
                "challenge" => {
                    let mut nonce = [0u8; 32];
                    hex::decode_to_slice(m.nonce?, &mut nonce).ok()?;
                    let host = transport_ws::host_of_url(&url)?;
                    let sig = k.sign(&join_proof_message(&nonce, &host));
                    let join = format!(
                        r#"{{"type":"join","peerId":"{id}","publicKey":"{}","signature":"{}","host":"{host}","room":"bench","protocolVersion":2}}"#,
                        hex::encode(k.verifying_key().to_bytes()),
                        hex::encode(sig.to_bytes())
                    );
                    ws.send(Message::Text(join.into())).await.ok()?;
                }
                "joined" => return Some(ws),
                "error" => return None,
                _ => {}
            }
        }
    }
    .await;
    drop(permit);
    let Some(mut ws) = connected else {
        failures.fetch_add(1, Ordering::Relaxed);
        joined.wait().await;
        start.wait().await;
        done.wait().await;
        return outcome;
    };
    joined.wait().await;
    start.wait().await;
    let deadline = tokio::time::Instant::now() + deadline_after;
    let signal =
        |ts: u64| format!(r#"{{"type":"signal","to":"{partner}","signal":{{"ts":{ts}}}}}"#);
    if starts {
        for _ in 0..in_flight {
            let now = base.elapsed().as_micros() as u64;
            if ws.send(Message::Text(signal(now).into())).await.is_err() {
                break;
            }
        }
    }
    loop {
        let next = tokio::select! {
            next = ws.next() => next,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Some(Ok(Message::Text(text))) = next else {
            if matches!(next, Some(Ok(_))) {
                continue;
            }
            break;
        };
        let Ok(m) = serde_json::from_str::<Incoming<'_>>(&text) else {
            continue;
        };
        if m.kind != "signal" || m.from.is_none() {
            continue;
        }
        let Some(stamp) = m.signal else { continue };
        let now = base.elapsed().as_micros() as u64;
        outcome.received += 1;
        outcome
            .latencies_us
            .push(u32::try_from(now.saturating_sub(stamp.ts)).unwrap_or(u32::MAX));
        if ws.send(Message::Text(signal(now).into())).await.is_err() {
            break;
        }
    }
    done.wait().await;
    let _ = ws.close(None).await;
    outcome
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let n = (args.clients / 2 * 2).max(2);
    let base = Instant::now();
    let idle_rss: Option<u64> = args.server_pid.iter().map(|p| rss_kib(*p)).sum();
    let urls: Vec<Arc<str>> = args.url.iter().map(|u| Arc::from(u.as_str())).collect();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let joined = Arc::new(Barrier::new(n + 1));
    let start = Arc::new(Barrier::new(n + 1));
    let done = Arc::new(Barrier::new(n + 1));
    let failures = Arc::new(AtomicUsize::new(0));
    let duration = Duration::from_secs(args.duration_secs);
    let ids: Vec<String> = (0..n)
        .map(|i| PeerId::from_public_key(&key(i).verifying_key().to_bytes()).to_string())
        .collect();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let partner = ids[i ^ 1].clone();
        tasks.push(tokio::spawn(client(
            i,
            urls[i % urls.len()].clone(),
            partner,
            i % 2 == 0,
            args.in_flight.max(1),
            base,
            gate.clone(),
            joined.clone(),
            start.clone(),
            done.clone(),
            duration,
            failures.clone(),
        )));
    }
    let ramp = Instant::now();
    joined.wait().await;
    let ramp = ramp.elapsed();
    let failed = failures.load(Ordering::Relaxed);
    if !args.json {
        eprintln!(
            "{} of {n} clients joined in {:.1} s; sending for {} s",
            n - failed,
            ramp.as_secs_f64(),
            args.duration_secs
        );
    }
    if urls.len() > 1 {
        // Each server hears of the others' joins through Redis within milliseconds; a signal
        // sent before would find no partner.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = |pids: &[u32]| -> Option<f64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|p| cpu_secs(*p)).sum()
    };
    let redis_pids: Vec<u32> = args.redis_pid.into_iter().collect();
    let cpu_before = (cpu(&args.server_pid), cpu(&redis_pids));
    start.wait().await;
    let t0 = Instant::now();
    // RSS with every client connected and the relay under load (sampled mid-run).
    tokio::time::sleep(duration / 2).await;
    let loaded: Vec<Option<u64>> = args.server_pid.iter().map(|p| rss_kib(*p)).collect();
    let loaded_rss: Option<u64> = loaded.iter().copied().sum();
    done.wait().await;
    let cpu_after = (cpu(&args.server_pid), cpu(&redis_pids));
    let elapsed = t0.elapsed().min(duration).as_secs_f64().max(1e-9);
    let mut received = 0u64;
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(outcome) = task.await {
            received += outcome.received;
            latencies.extend(outcome.latencies_us);
        }
    }
    latencies.sort_unstable();
    let relayed_per_s = received as f64 / elapsed;
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let rss_mb = loaded_rss.map(|k| k as f64 / 1024.0);
    let per_client = match (loaded_rss, idle_rss) {
        (Some(l), Some(i)) => Some(l.saturating_sub(i) as f64 / (n - failed).max(1) as f64),
        _ => None,
    };
    let fmt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.1}"));
    let per_server: Vec<String> = loaded
        .iter()
        .map(|k| fmt(k.map(|k| k as f64 / 1024.0)))
        .collect();
    let per_relay = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) if received > 0 => Some((a - b) * 1e6 / received as f64),
        _ => None,
    };
    let cpu_us_per_relay = per_relay(cpu_before.0, cpu_after.0);
    let redis_cpu_us_per_relay = per_relay(cpu_before.1, cpu_after.1);
    let fmt2 = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.2}"));
    if args.json {
        println!(
            r#"{{"servers":{},"clients":{},"relayed_per_s":{:.0},"latency_ms_p50":{:.2},"latency_ms_p99":{:.2},"server_rss_mb":{},"rss_mb_per_server":[{}],"rss_kib_per_client":{},"cpu_us_per_relay":{},"redis_cpu_us_per_relay":{},"failed_clients":{},"in_flight_per_pair":{},"duration_s":{}}}"#,
            urls.len(),
            n - failed,
            relayed_per_s,
            p50,
            p99,
            fmt(rss_mb),
            per_server.join(","),
            fmt(per_client),
            fmt2(cpu_us_per_relay),
            fmt2(redis_cpu_us_per_relay),
            failed,
            args.in_flight.max(1),
            args.duration_secs
        );
    } else {
        println!("clients            {}", n - failed);
        println!("failed clients     {failed}");
        println!("relayed msgs/s     {relayed_per_s:.0}");
        println!("latency p50 (ms)   {p50:.2}");
        println!("latency p99 (ms)   {p99:.2}");
        println!("servers            {}", urls.len());
        println!(
            "server RSS (MiB)   {}  (per server: {})",
            fmt(rss_mb),
            per_server.join(", ")
        );
        println!(
            "CPU per relay (us) {}  (servers; Redis: {})",
            fmt2(cpu_us_per_relay),
            fmt2(redis_cpu_us_per_relay)
        );
        println!(
            "RSS/client (KiB)   {}  (server RSS under load minus before clients, per client)",
            fmt(per_client)
        );
    }
}
