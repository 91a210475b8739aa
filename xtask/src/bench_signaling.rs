//! `cargo xtask bench-signaling --clients N [--json]`: the signaling server under load.
//!
//! Builds the server and its load generator in release (`signaling-server`'s binary and its
//! `load` example: xtask itself runs in debug, too slow to load a server), starts the server
//! as its own process on a free port of 127.0.0.1 with the per-connection rate limit raised
//! out of the way (so the run measures relay throughput, not the limiter), then runs the load
//! generator: N clients join one room with identity proofs, pair up and bounce signals as fast
//! as they can for 10 s, each signal carrying its send time. It prints relayed messages/s,
//! relay latency p50/p99, the server's RSS (VmRSS from /proc) and RSS per client, then stops
//! the server with SIGTERM. Both processes raise their open-file limit to the hard limit.
//!
//! `--servers N` (N > 1) runs the same load over a cluster: a `redis-server` (Debian's) on a free
//! port, N servers with `--redis`, client i on server i mod N, so that both ends of every pair are
//! on different servers and every signal crosses the cluster through Redis. It adds each server's
//! RSS and the CPU time the servers and Redis spent per relayed message.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{cargo, run, target_dir};

/// Flags of `cargo xtask bench-signaling`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of WebSocket clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Signals in flight per pair of clients.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Servers sharing the load through one Redis (1: one server alone, no Redis).
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Print one JSON line (keys: clients, relayed_per_s, latency_ms_p50, latency_ms_p99,
    /// server_rss_mb, rss_kib_per_client).
    #[arg(long)]
    json: bool,
}

pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

pub(crate) fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// A server process, stopped (SIGTERM, then SIGKILL) when dropped, also on failure.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM for a graceful stop; SIGKILL if it does not exit in time.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Entry point of the `bench-signaling` task.
pub fn run_task(args: Args) -> Result<(), String> {
    run(
        "build (release)",
        cargo().args([
            "build",
            "--locked",
            "--quiet",
            "--release",
            "-p",
            "signaling-server",
            "--bin",
            "signaling-server",
            "--example",
            "load",
        ]),
    )?;
    let release = target_dir().join("release");
    let count = args.servers.max(1);
    let redis = if count > 1 {
        Some(start_redis()?)
    } else {
        None
    };
    let mut servers = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let port = free_port()?;
        let max_clients = (args.clients + 100).to_string();
        let mut command = Command::new(release.join("signaling-server"));
        command
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--max-clients", &max_clients])
            .args(["--rate-per-sec", "1000000", "--rate-burst", "1000000"])
            // Every client connects from 127.0.0.1: lift the limits per source address.
            .args(["--max-connections-per-source", &max_clients])
            .args([
                "--source-join-rate",
                "1000000",
                "--source-join-burst",
                "1000000",
            ])
            .args(["--max-introduced-per-source", "1000000"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(redis) = &redis {
            command.args(["--redis", &format!("redis://127.0.0.1:{}", redis.port)]);
        }
        let server = command
            .spawn()
            .map_err(|e| format!("start the server: {e}"))?;
        servers.push(Server(server));
        ports.push(port);
    }
    let started = Instant::now();
    for port in &ports {
        while !healthy(*port) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("a server did not become healthy within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if !args.json {
        let pids: Vec<String> = servers.iter().map(|s| s.0.id().to_string()).collect();
        eprintln!(
            "{count} server(s) (pids {}) on 127.0.0.1 ports {ports:?}{}, rate limit raised to \
             1000000/s (burst 1000000) so the run measures relaying, not the limiter",
            pids.join(", "),
            redis
                .as_ref()
                .map(|r| format!(" sharing redis-server :{}", r.port))
                .unwrap_or_default(),
        );
    }
    let mut load = Command::new(release.join("examples").join("load"));
    for (port, server) in ports.iter().zip(&servers) {
        load.args(["--url", &format!("ws://127.0.0.1:{port}")])
            .args(["--server-pid", &server.0.id().to_string()]);
    }
    if let Some(redis) = &redis {
        load.args(["--redis-pid", &redis.process.0.id().to_string()]);
    }
    load.args(["--clients", &args.clients.to_string()])
        .args(["--duration-secs", &args.duration_secs.to_string()])
        .args(["--in-flight", &args.in_flight.to_string()]);
    if args.json {
        load.arg("--json");
    }
    let status = load
        .status()
        .map_err(|e| format!("start the load generator: {e}"))?;
    drop(servers);
    drop(redis);
    if status.success() {
        Ok(())
    } else {
        Err(format!("load generator failed ({status})"))
    }
}

/// A `redis-server` for a cluster run, stopped when dropped.
pub(crate) struct Redis {
    pub(crate) port: u16,
    pub(crate) process: Server,
}

/// Start Debian's `redis-server` on a free port of 127.0.0.1, without persistence.
pub(crate) fn start_redis() -> Result<Redis, String> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("start redis-server ({e}): apt-get install redis-server"))?;
    let redis = Redis {
        port,
        process: Server(child),
    };
    let started = Instant::now();
    loop {
        if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
            let mut reply = [0u8; 5];
            if tcp.write_all(b"PING\r\n").is_ok()
                && tcp.read_exact(&mut reply).is_ok()
                && &reply == b"+PONG"
            {
                return Ok(redis);
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err("redis-server did not answer PING within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
