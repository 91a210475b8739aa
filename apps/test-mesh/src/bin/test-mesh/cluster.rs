//! The processes of a scenario: one signaling server and many `mesh-node`s (optionally in two
//! network namespaces), what they reported, and waiting for a condition on it.
//!
//! Every process is started with `kill_on_drop`, and [`Cluster`]'s drop kills them all and removes
//! the namespaces, so nothing outlives a scenario, a failure or a Ctrl-C (which drops it).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use test_mesh::{Command, Report};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::netns::Netns;

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    pub node: PathBuf,
    pub server: PathBuf,
}

/// One line (or the end) of a node's stdout.
#[derive(Debug)]
enum Incoming {
    Report(usize, Report),
    Garbled(usize, String),
    Exited(usize),
}

/// A message as one node received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub direct: bool,
    pub sha1: String,
    pub at_us: u64,
}

/// What one node reported so far.
#[derive(Debug, Default)]
pub struct NodeState {
    pub id: Option<String>,
    pub alive: bool,
    pub links: HashSet<String>,
    /// Every peer it ever had a link with.
    pub ever_linked: HashSet<String>,
    /// Tag (the payload up to its first `|`) -> receptions.
    pub received: HashMap<String, Vec<Received>>,
    pub server_up: bool,
    pub direct_failed: Vec<String>,
    pub errors: Vec<String>,
    pub stats: Option<serde_json::Map<String, serde_json::Value>>,
    /// When it last reported its server lost, and joined again (`server-failover`).
    pub server_lost_at: Option<Instant>,
    pub server_back_at: Option<Instant>,
    /// When each of its links went down, and why (the node's `DisconnectReason`).
    pub link_downs: Vec<(Instant, String)>,
    /// Peers it linked to while the server was down (for `mesh-signaling`).
    pub linked_while_server_down: Vec<String>,
    /// Its links' ups (`+peer`) and downs (`-peer`), with their `at_us`, for failure reports.
    pub link_history: Vec<(u64, String)>,
}

struct NodeProc {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// How a node is started.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Run in this namespace, gathering WebRTC candidates on this address.
    pub netns: Option<(String, IpAddr)>,
    pub forger: bool,
    /// The servers to join, in order (default: the scenario's one server).
    pub servers: Option<Vec<String>>,
}

/// The processes of one scenario and what they reported.
pub struct Cluster {
    bins: Bins,
    room: String,
    logs: PathBuf,
    server: Option<Child>,
    server_addr: SocketAddr,
    server_netns: Option<String>,
    /// A Redis and the servers sharing it (`server-failover`).
    redis: Option<(Child, u16)>,
    pub cluster_servers: Vec<(Option<Child>, SocketAddr)>,
    procs: Vec<Option<NodeProc>>,
    pub nodes: Vec<NodeState>,
    tx: mpsc::UnboundedSender<Incoming>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    next_req: u64,
    /// Request number -> the tag its broadcast or message carries.
    req_tags: HashMap<u64, String>,
    /// Tag -> (sender, when it was handed to the mesh).
    pub sent: HashMap<String, (usize, u64)>,
    pub netns: Option<Netns>,
    verbose: bool,
    label: String,
    /// When a link last came up or went down anywhere.
    pub last_link_change: Instant,
}

impl Cluster {
    /// A cluster with no process yet; logs go to `logs`.
    pub fn new(bins: Bins, label: &str, logs: &Path, verbose: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            bins,
            room: format!("tm-{label}-{}", std::process::id()),
            logs: logs.to_path_buf(),
            server: None,
            server_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            server_netns: None,
            redis: None,
            cluster_servers: Vec::new(),
            procs: Vec::new(),
            nodes: Vec::new(),
            tx,
            rx,
            next_req: 1,
            req_tags: HashMap::new(),
            sent: HashMap::new(),
            netns: None,
            verbose,
            label: label.to_string(),
            last_link_change: Instant::now(),
        }
    }

    /// Prints a progress line (stderr).
    pub fn progress(&self, text: &str) {
        eprintln!("[{}] {text}", self.label);
    }

    /// Starts the signaling server on a free loopback port (or on `addr` in `netns`).
    pub async fn start_server(&mut self, at: Option<(String, SocketAddr)>) -> Result<(), String> {
        let (netns, addr) = match at {
            Some((ns, addr)) => (Some(ns), addr),
            None => {
                if self.server_addr.port() == 0 {
                    self.server_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
                }
                (None, self.server_addr)
            }
        };
        self.server_addr = addr;
        self.server_netns = netns.clone();
        let child = self.spawn_server(netns.as_deref(), addr, "server", &[])?;
        self.server = Some(child);
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.server_accepts().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the signaling server did not start listening".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn server_accepts(&self) -> bool {
        match &self.server_netns {
            None => tokio::net::TcpStream::connect(self.server_addr)
                .await
                .is_ok(),
            Some(ns) => tokio::process::Command::new("ip")
                .args(["netns", "exec", ns, "bash", "-c"])
                .arg(format!(
                    "exec 3<>/dev/tcp/{}/{}",
                    self.server_addr.ip(),
                    self.server_addr.port()
                ))
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success()),
        }
    }

    /// Spawns a signaling server listening on `addr` (in `netns`), with the limits per source
    /// address lifted (every node runs on this host) and `extra` flags; its stderr goes to the
    /// log `name`.
    fn spawn_server(
        &self,
        netns: Option<&str>,
        addr: SocketAddr,
        name: &str,
        extra: &[&str],
    ) -> Result<Child, String> {
        let log = self.log_file(name)?;
        in_netns(netns, &self.bins.server)
            .args(["--addr", &addr.to_string()])
            .args(["--max-connections-per-source", "100000"])
            .args([
                "--source-join-rate",
                "100000",
                "--source-join-burst",
                "100000",
            ])
            .args(["--max-introduced-per-source", "100000"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bins.server.display()))
    }

    /// Starts Debian's `redis-server` on a free loopback port (no persistence) and `count`
    /// signaling servers sharing it (`--redis`); their URLs are [`Cluster::cluster_url`].
    pub async fn start_redis_cluster(&mut self, count: usize) -> Result<(), String> {
        let port = free_port()?;
        let log = self.log_file("redis")?;
        let redis = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server ({e}): apt-get install redis-server")
            })?;
        self.redis = Some((redis, port));
        wait_accepts(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            "redis-server",
        )
        .await?;
        for k in 0..count {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
            let redis = format!("redis://127.0.0.1:{port}");
            let prefix = format!("{}-{}", self.label, self.room);
            let cluster = ["--redis", redis.as_str(), "--redis-prefix", prefix.as_str()];
            let child = self.spawn_server(None, addr, &format!("server{k}"), &cluster)?;
            self.cluster_servers.push((Some(child), addr));
            wait_accepts(addr, "a signaling server of the cluster").await?;
        }
        Ok(())
    }

    /// The URL of the cluster's server `k`.
    pub fn cluster_url(&self, k: usize) -> String {
        format!("ws://{}", self.cluster_servers[k].1)
    }

    /// Kills the cluster's server `k` with SIGKILL.
    pub async fn kill_cluster_server(&mut self, k: usize) {
        if let Some(mut child) = self.cluster_servers.get_mut(k).and_then(|(c, _)| c.take()) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Kills the server with SIGKILL (or stops it with SIGTERM when `graceful`).
    pub async fn stop_server(&mut self, graceful: bool) {
        if let Some(mut child) = self.server.take() {
            if graceful && let Some(pid) = child.id() {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// The URL nodes join.
    pub fn server_url(&self) -> String {
        format!("ws://{}", self.server_addr)
    }

    fn log_file(&self, name: &str) -> Result<std::fs::File, String> {
        let path = self.logs.join(format!("{}-{name}.log", self.label));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    /// Starts a node; its index is returned at once, its `joined` comes later.
    pub fn start_node(&mut self, options: &NodeOptions) -> Result<usize, String> {
        let index = self.procs.len();
        let log = self.log_file(&format!("node{index}"))?;
        let mut cmd = in_netns(
            options.netns.as_ref().map(|(ns, _)| ns.as_str()),
            &self.bins.node,
        );
        let servers = match &options.servers {
            Some(urls) => urls.join(","),
            None => self.server_url(),
        };
        cmd.args(["--server", &servers, "--room", &self.room])
            .arg("--all-topics");
        if let Some((_, ip)) = &options.netns {
            cmd.args(["--bind", &ip.to_string()]);
        }
        if options.forger {
            cmd.arg("--forger");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bins.node.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let incoming = match serde_json::from_str::<Report>(&line) {
                    Ok(report) => Incoming::Report(index, report),
                    Err(_) => Incoming::Garbled(index, line),
                };
                if tx.send(incoming).is_err() {
                    return;
                }
            }
            let _ = tx.send(Incoming::Exited(index));
        });
        self.procs.push(Some(NodeProc { child, stdin }));
        self.nodes.push(NodeState {
            alive: true,
            server_up: false,
            ..NodeState::default()
        });
        Ok(index)
    }

    /// Kills node `index` with SIGKILL.
    pub async fn kill_node(&mut self, index: usize) {
        if let Some(mut proc) = self.procs.get_mut(index).and_then(Option::take) {
            let _ = proc.child.start_kill();
            let _ = proc.child.wait().await;
        }
        if let Some(node) = self.nodes.get_mut(index) {
            node.alive = false;
        }
    }

    /// Indices of the nodes that run.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect()
    }

    /// The index of the node with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id.as_deref() == Some(id))
    }

    /// The id of node `index` (after it joined).
    pub fn id(&self, index: usize) -> Result<String, String> {
        self.nodes
            .get(index)
            .and_then(|n| n.id.clone())
            .ok_or_else(|| format!("node {index} has not joined"))
    }

    /// A fresh request number, remembered with `tag`.
    fn request(&mut self, tag: &str) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.req_tags.insert(req, tag.to_string());
        req
    }

    /// Writes a command to node `index`.
    pub async fn command(&mut self, index: usize, command: &Command) -> Result<(), String> {
        let mut line = serde_json::to_vec(command).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let stdin = self
            .procs
            .get_mut(index)
            .and_then(Option::as_mut)
            .and_then(|p| p.stdin.as_mut())
            .ok_or_else(|| format!("node {index} is not running"))?;
        stdin
            .write_all(&line)
            .await
            .map_err(|e| format!("node {index}: {e}"))
    }

    /// Broadcasts the payload `tag|` (padded to `size`) from `index` on topic `tm`.
    pub async fn broadcast(
        &mut self,
        index: usize,
        tag: &str,
        size: Option<usize>,
    ) -> Result<(), String> {
        let req = self.request(tag);
        let command = Command::Broadcast {
            req: Some(req),
            topic: "tm".into(),
            data: format!("{tag}|"),
            size,
        };
        self.command(index, &command).await
    }

    /// Sends the payload `tag|` (padded to `size`) from `index` to node `to`.
    pub async fn send(
        &mut self,
        index: usize,
        to: usize,
        tag: &str,
        size: Option<usize>,
    ) -> Result<(), String> {
        let to = self.id(to)?;
        let req = self.request(tag);
        let command = Command::Send {
            req: Some(req),
            to,
            data: format!("{tag}|"),
            size,
        };
        self.command(index, &command).await
    }

    /// Records one incoming line.
    fn apply(&mut self, incoming: Incoming) {
        let (index, report) = match incoming {
            Incoming::Report(index, report) => (index, report),
            Incoming::Garbled(index, line) => {
                self.nodes[index]
                    .errors
                    .push(format!("not a report: {line}"));
                return;
            }
            Incoming::Exited(index) => {
                if self.nodes[index].alive {
                    self.nodes[index].errors.push("exited".into());
                }
                self.nodes[index].alive = false;
                return;
            }
        };
        if self.verbose {
            eprintln!("  node{index}: {report:?}");
        }
        let server_down = self.server.is_none();
        let node = &mut self.nodes[index];
        match report {
            Report::Joined { id, .. } => {
                node.id = Some(id);
                node.server_up = true;
            }
            Report::PeerConnected { peer, at_us } => {
                self.last_link_change = Instant::now();
                node.link_history.push((at_us, format!("+{peer}")));
                if server_down && !node.ever_linked.contains(&peer) {
                    node.linked_while_server_down.push(peer.clone());
                }
                node.ever_linked.insert(peer.clone());
                node.links.insert(peer);
            }
            Report::PeerDisconnected {
                peer,
                reason,
                at_us,
            } => {
                self.last_link_change = Instant::now();
                node.link_downs.push((Instant::now(), reason));
                node.link_history.push((at_us, format!("-{peer}")));
                node.links.remove(&peer);
            }
            Report::Message {
                from,
                topic,
                sha1,
                preview,
                at_us,
                ..
            } => {
                let tag = preview.split('|').next().unwrap_or_default().to_string();
                node.received.entry(tag).or_default().push(Received {
                    from,
                    direct: topic.is_none(),
                    sha1,
                    at_us,
                });
            }
            Report::Broadcast { req, at_us, .. } | Report::Sent { req, at_us, .. } => {
                if let Some(tag) = req.and_then(|r| self.req_tags.get(&r)) {
                    self.sent.insert(tag.clone(), (index, at_us));
                }
            }
            Report::DirectFailed { direct_id, to, .. } => {
                node.direct_failed.push(format!("{direct_id} to {to}"));
            }
            Report::Stats { stats, .. } => node.stats = Some(stats),
            Report::ServerDisconnected { .. } => {
                node.server_up = false;
                node.server_lost_at = Some(Instant::now());
            }
            Report::ServerReconnected { .. } => {
                node.server_up = true;
                node.server_back_at = Some(Instant::now());
            }
            Report::Error { message, .. } => node.errors.push(message),
            Report::Lagged { missed, .. } => node.errors.push(format!("lagged {missed}")),
            _ => {}
        }
    }

    /// Takes what has arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(incoming) = self.rx.try_recv() {
            self.apply(incoming);
        }
    }

    /// Waits until `check` passes (returns the time it took) or `timeout` passes (an error with
    /// `check`'s last complaint). Prints `check`'s complaint as progress every few seconds.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Cluster) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut next_note = start + Duration::from_secs(5);
        loop {
            self.drain();
            let status = check(self);
            let Err(status) = status else {
                return Ok(start.elapsed());
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{what}: not after {:.0} s ({status})",
                    timeout.as_secs_f64()
                ));
            }
            if now >= next_note {
                self.progress(&format!(
                    "waiting for {what} ({:.0} s): {status}",
                    start.elapsed().as_secs_f64()
                ));
                next_note = now + Duration::from_secs(5);
            }
            let wake = deadline.min(next_note);
            if let Ok(Some(incoming)) =
                tokio::time::timeout_at(tokio::time::Instant::from_std(wake), self.rx.recv()).await
            {
                self.apply(incoming);
            }
        }
    }

    /// Lets `duration` pass while recording what arrives.
    pub async fn idle(&mut self, duration: Duration) {
        let _ = self
            .wait_for("time to pass", duration, |_| Err(String::new()))
            .await;
    }

    /// Nodes in `among` that have joined, and a complaint naming those that have not.
    pub fn all_joined(&self, among: &[usize]) -> Result<(), String> {
        let waiting: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| self.nodes[i].id.is_none())
            .collect();
        if let Some(i) = among.iter().find(|&&i| !self.nodes[i].alive) {
            return Err(format!("node {i} died: {:?}", self.nodes[*i].errors.last()));
        }
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}/{} joined",
                among.len() - waiting.len(),
                among.len()
            ))
        }
    }

    /// Whether the links among the live nodes form one connected graph with no live node alone.
    pub fn connected(&self) -> Result<(), String> {
        let live = self.live();
        self.all_joined(&live)?;
        let ids: HashMap<&str, usize> = live
            .iter()
            .filter_map(|&i| self.nodes[i].id.as_deref().map(|id| (id, i)))
            .collect();
        let mut adjacency: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in &live {
            for peer in &self.nodes[i].links {
                if let Some(&j) = ids.get(peer.as_str()) {
                    adjacency.entry(i).or_default().push(j);
                    adjacency.entry(j).or_default().push(i);
                }
            }
        }
        let Some(&first) = live.first() else {
            return Ok(());
        };
        let mut seen = HashSet::from([first]);
        let mut stack = vec![first];
        while let Some(i) = stack.pop() {
            for &j in adjacency.get(&i).map_or(&[][..], Vec::as_slice) {
                if seen.insert(j) {
                    stack.push(j);
                }
            }
        }
        if seen.len() == live.len() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} live nodes reachable over links",
                seen.len(),
                live.len()
            ))
        }
    }

    /// Every live node reports the server up (`up`) or gone (`!up`).
    pub fn server_seen(&self, up: bool) -> Result<(), String> {
        let other = self
            .live()
            .iter()
            .filter(|&&i| self.nodes[i].server_up != up)
            .count();
        match (other, up) {
            (0, _) => Ok(()),
            (n, true) => Err(format!("{n} not registered yet")),
            (n, false) => Err(format!("{n} still connected")),
        }
    }

    /// No live node still reports a link to a node that was killed: every death was noticed.
    pub fn no_dead_links(&self) -> Result<(), String> {
        let stale: usize = self
            .live()
            .iter()
            .map(|&i| {
                self.nodes[i]
                    .links
                    .iter()
                    .filter(|p| self.index_of(p).is_some_and(|j| !self.nodes[j].alive))
                    .count()
            })
            .sum();
        if stale == 0 {
            Ok(())
        } else {
            Err(format!("{stale} links to killed nodes still up"))
        }
    }

    /// [`Cluster::connected`], and no link came up or went down for `quiet`: the mesh settled.
    pub fn settled(&self, quiet: Duration) -> Result<(), String> {
        self.connected()?;
        let still = self.last_link_change.elapsed();
        if still >= quiet {
            Ok(())
        } else {
            Err(format!(
                "connected; links changed {:.1} s ago",
                still.as_secs_f64()
            ))
        }
    }

    /// Deliveries of the messages tagged `tags` to `receivers` (each tag's sender excluded):
    /// (delivered, expected). A receiver that got one twice counts once here; see [`Cluster::duplicates`].
    pub fn deliveries(&self, tags: &[String], receivers: &[usize]) -> (usize, usize) {
        let mut delivered = 0;
        let mut expected = 0;
        for tag in tags {
            for &r in receivers {
                if sender_of_tag(tag) == Some(r) {
                    continue;
                }
                expected += 1;
                if self.nodes[r].received.contains_key(tag) {
                    delivered += 1;
                }
            }
        }
        (delivered, expected)
    }

    /// Receptions beyond the first of each tag at each node.
    pub fn duplicates(&self, tags: &[String]) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                tags.iter()
                    .filter_map(|t| n.received.get(t))
                    .map(|r| r.len().saturating_sub(1))
                    .sum::<usize>()
            })
            .sum()
    }

    /// Latencies (ms) from each tag's send to each of its first receptions.
    pub fn latencies(&self, tags: &[String]) -> Vec<f64> {
        let mut out = Vec::new();
        for tag in tags {
            let Some(&(_, sent)) = self.sent.get(tag) else {
                continue;
            };
            for node in &self.nodes {
                if let Some(first) = node.received.get(tag).and_then(|r| r.first()) {
                    out.push(first.at_us.saturating_sub(sent) as f64 / 1000.0);
                }
            }
        }
        out
    }

    /// Asks every live node for its counters and waits for them.
    pub async fn collect_stats(&mut self) -> Result<(), String> {
        let live = self.live();
        for &i in &live {
            self.nodes[i].stats = None;
            self.command(i, &Command::Stats { req: None }).await?;
        }
        self.wait_for("counters", Duration::from_secs(10), |c| {
            if live.iter().all(|&i| c.nodes[i].stats.is_some()) {
                Ok(())
            } else {
                Err("some nodes have not answered".into())
            }
        })
        .await
        .map(|_| ())
    }

    /// The sum of counter `name` over live nodes.
    pub fn stat_sum(&self, name: &str) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.stats.as_ref())
            .filter_map(|s| s.get(name).and_then(serde_json::Value::as_u64))
            .sum()
    }

    /// Stops everything: nodes first (SIGKILL), then the server, then the namespaces.
    pub async fn shutdown(&mut self) {
        for index in 0..self.procs.len() {
            self.kill_node(index).await;
        }
        self.stop_server(false).await;
        if let Some(netns) = self.netns.take() {
            netns.remove();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `kill_on_drop` kills each child as its handle drops; the namespaces go last.
        self.procs.clear();
        self.server = None;
        self.cluster_servers.clear();
        self.redis = None;
        if let Some(netns) = self.netns.take() {
            netns.remove();
        }
    }
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits (at most 20 s) until `addr` accepts TCP connections.
async fn wait_accepts(addr: SocketAddr, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not start listening on {addr}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The sender of `tag`, from the tag itself (`...:<index>` for broadcasts, `...:<from>-<to>` for
/// direct messages), known before its `sent` report arrives.
pub fn sender_of_tag(tag: &str) -> Option<usize> {
    let last = tag.rsplit(':').next()?;
    last.split('-').next()?.parse().ok()
}

/// `program`, run in `netns` when given (through `ip netns exec`, which execs it: the child is
/// the program itself).
fn in_netns(netns: Option<&str>, program: &Path) -> tokio::process::Command {
    match netns {
        None => tokio::process::Command::new(program),
        Some(ns) => {
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(program);
            cmd
        }
    }
}
