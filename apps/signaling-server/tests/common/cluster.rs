//! A real Redis (Debian's `redis-server`) and real signaling-server processes on free loopback
//! ports, each stopped when dropped (also when the test fails).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::{PATIENCE, http_get};

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Process(Option<Child>);

impl Process {
    /// SIGKILL now, and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait (at most [`PATIENCE`]) for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` on a free loopback port, without persistence (a restart starts empty).
pub struct Redis {
    pub port: u16,
    process: Process,
}

impl Redis {
    /// Start one on a free port.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Start one on `port` (again, after [`Redis::kill`]).
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start redis-server ({e}): install Debian's redis-server (.ci/run does)")
            });
        let redis = Self {
            port,
            process: Process(Some(child)),
        };
        let deadline = Instant::now() + PATIENCE;
        while redis.ping().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `PING` over RESP, by hand: the test checks the server, not a client library.
    pub async fn ping(&self) -> std::io::Result<()> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.write_all(b"PING\r\n").await?;
        let mut line = String::new();
        BufReader::new(tcp).read_line(&mut line).await?;
        if line.starts_with("+PONG") {
            Ok(())
        } else {
            Err(std::io::Error::other(line))
        }
    }

    /// SIGKILL the Redis.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A `signaling-server` process of a cluster.
pub struct ServerProcess {
    pub addr: SocketAddr,
    process: Process,
}

impl ServerProcess {
    /// Start the crate's binary on a free port with `--redis url --redis-prefix prefix` and
    /// `extra` flags; wait until it listens.
    pub async fn start(redis: &str, prefix: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(env!("CARGO_BIN_EXE_signaling-server"))
            .args(["--addr", &addr.to_string()])
            .args(["--redis", redis, "--redis-prefix", prefix])
            // Every client of a test connects from 127.0.0.1.
            .args(["--max-connections-per-source", "100000"])
            .args([
                "--source-join-rate",
                "100000",
                "--source-join-burst",
                "100000",
            ])
            .args(["--max-introduced-per-source", "100000"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("SERVER_LOG").unwrap_or_else(|_| "signaling_server=warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("start signaling-server");
        let server = Self {
            addr,
            process: Process(Some(child)),
        };
        server.wait_health("200").await;
        server
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Wait until `/health` answers with `status` (e.g. "200" or "503").
    pub async fn wait_health(&self, status: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Ok(mut tcp)) =
                tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(self.addr)).await
            {
                let _ = tcp.shutdown().await;
                let (line, _) = http_get(self.addr, "/health").await;
                if line.contains(status) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: /health never answered {status}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One sample of `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.addr, "/metrics").await;
        body.lines()
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (series == name).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }

    /// Wait until the sample `name` of `/metrics` is `value`.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.metric(name).await;
            if seen == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {name} stayed {seen}, not {value}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ids this server holds, and ids its mirror holds for the other servers.
    pub async fn members(&self) -> (usize, usize) {
        let local = self.metric("signaling_joined_clients").await;
        let remote = self.metric("signaling_cluster_remote_clients").await;
        (local as usize, remote as usize)
    }

    /// SIGKILL the server.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM the server and wait for it to exit.
    pub fn terminate(&mut self) {
        self.process.terminate();
    }
}

/// Wait until every server of `servers` sees `total` ids in the cluster (its own and the
/// others'), each server holding its part.
pub async fn wait_members(servers: &[&ServerProcess], total: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut seen = Vec::new();
        for s in servers {
            seen.push(s.members().await);
        }
        let locals: usize = seen.iter().map(|(l, _)| l).sum();
        if locals == total && seen.iter().all(|(l, r)| l + r == total) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the servers never agreed on {total} members: (local, remote) = {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
