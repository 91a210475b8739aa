//! Helpers of the scenario tests: a real signaling server on an ephemeral port, nodes whose events
//! and topic messages are recorded, and patient waits (never timing assertions).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use p2pmesh::memory::MemoryNetwork;
use p2pmesh::{Event, Keypair, Mesh, Message, NodeId};
use signaling_server::{Config, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a wait may take before the test fails (it only stops a hung test).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The seed a test uses when `P2PMESH_TEST_SEED` is not set.
pub const DEFAULT_SEED: u64 = 11;

/// The wall-clock start every test node's clock is given (2026-01-01 00:00:00 UTC).
pub const START: Duration = Duration::from_secs(1_767_225_600);

/// The start time to give the builders.
pub fn start_time() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + START
}

/// This run's seed: `P2PMESH_TEST_SEED`, or [`DEFAULT_SEED`]. Printed first, so that a failing run
/// (whose output the test harness shows) says how to replay it.
pub fn test_seed(test: &str) -> u64 {
    let seed = std::env::var("P2PMESH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("{test}: seed {seed} (replay with P2PMESH_TEST_SEED={seed})");
    seed
}

/// SplitMix64: the stream of numbers a seed stands for.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce5_e4b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Node `index`'s key pair and node seed in the run of `seed`.
pub fn node_identity(seed: u64, index: u64) -> (Keypair, u64) {
    let mut state = seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f);
    let mut secret = [0u8; 32];
    for chunk in secret.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    (Keypair::from_secret(secret), splitmix(&mut state))
}

/// The topic every test node subscribes to.
pub const TOPIC: &str = "scenario";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A running signaling server.
pub struct TestServer {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// The runtime of a server that can be crashed (`None`: it runs on the test's runtime).
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    pub async fn start() -> Self {
        let server = Server::bind(Config::ephemeral()).await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            url: format!("ws://{addr}"),
            stop: Some(stop),
            task: Some(task),
            runtime: None,
        }
    }

    /// A server in a runtime of its own, so that [`crash`](Self::crash) can kill it.
    pub async fn start_crashable() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (bound, addr) = oneshot::channel();
        runtime.spawn(async move {
            let server = Server::bind(Config::ephemeral()).await.expect("bind");
            let _ = bound.send(server.local_addr().expect("addr"));
            server.run(std::future::pending()).await
        });
        let addr = addr.await.expect("the server binds");
        Self {
            url: format!("ws://{addr}"),
            stop: None,
            task: None,
            runtime: Some(runtime),
        }
    }

    /// Kills the server as a crash would: its tasks stop and its sockets close, without telling
    /// its clients.
    pub fn crash(mut self) {
        let runtime = self.runtime.take().expect("a crashable server");
        runtime.shutdown_background();
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(PATIENCE, task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A runtime may not be dropped where blocking is not allowed (in a test's async body).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Which links the nodes open.
#[derive(Debug, Clone)]
pub enum Links {
    /// Real WebRTC over loopback (webrtc-adapter).
    WebRtc,
    /// The in-memory link network.
    Memory(MemoryNetwork),
}

/// A node under test: its handle, and everything it reported.
pub struct TestNode {
    pub mesh: Mesh,
    pub id: NodeId,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub messages: Arc<Mutex<Vec<Message>>>,
    /// The runtime of a node that can be crashed (`None`: it runs on the test's runtime).
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestNode {
    /// Builds node `index` of the run of `seed` (in its own runtime when `crashable`), subscribes
    /// it to [`TOPIC`], records its events and messages, and joins.
    pub async fn start(url: &str, links: &Links, seed: u64, index: u64, crashable: bool) -> Self {
        Self::start_on(&[url], links, seed, index, crashable).await
    }

    /// [`start`](Self::start) with the signaling servers at `urls`, tried in this order.
    pub async fn start_on(
        urls: &[&str],
        links: &Links,
        seed: u64,
        index: u64,
        crashable: bool,
    ) -> Self {
        let (keypair, node_seed) = node_identity(seed, index);
        let id = keypair.peer_id();
        let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
        let links = links.clone();
        let build = move || -> Mesh {
            let builder = Mesh::builder()
                .keypair(keypair.clone())
                .seed(node_seed)
                .signaling_urls(urls);
            match links {
                Links::WebRtc => builder
                    .webrtc_config(p2pmesh::webrtc_adapter::Config::loopback())
                    .build(),
                Links::Memory(network) => builder
                    .connector(
                        network.connector(p2pmesh::transport::PeerId::verified(*id.as_bytes())),
                    )
                    .build(),
            }
            .expect("build")
        };
        let (mesh, runtime) = if crashable {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let mesh = {
                let _guard = runtime.enter();
                build()
            };
            (mesh, Some(runtime))
        } else {
            (build(), None)
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let mut stream = mesh.events();
        let log = events.clone();
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                log.lock().unwrap().push(event);
            }
        });
        let mut subscription = mesh.subscribe(TOPIC).await.expect("subscribe");
        let log = messages.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                log.lock().unwrap().push(message);
            }
        });
        tokio::time::timeout(PATIENCE, mesh.join())
            .await
            .expect("join in time")
            .expect("join");
        Self {
            mesh,
            id,
            events,
            messages,
            runtime,
        }
    }

    /// Kills the node as a crash would: its tasks stop without a goodbye to anyone.
    pub fn crash(mut self) {
        let runtime = self.runtime.take().expect("a crashable node");
        runtime.shutdown_background();
    }

    /// Topic payloads received, by origin.
    pub fn received(&self) -> HashMap<NodeId, BTreeSet<Vec<u8>>> {
        let mut by_origin: HashMap<NodeId, BTreeSet<Vec<u8>>> = HashMap::new();
        for m in self.messages.lock().unwrap().iter() {
            by_origin.entry(m.from).or_default().insert(m.data.to_vec());
        }
        by_origin
    }

    pub fn has_event(&self, f: impl Fn(&Event) -> bool) -> bool {
        self.events.lock().unwrap().iter().any(f)
    }
}

/// Waits until `check` is true (polled every 100 ms), at most [`PATIENCE`]; panics with `what`.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each node's neighbours, as its mesh reports them.
pub async fn topology(nodes: &[&TestNode]) -> HashMap<NodeId, Vec<NodeId>> {
    let mut graph = HashMap::new();
    for n in nodes {
        graph.insert(n.id, n.mesh.peers().await.unwrap_or_default());
    }
    graph
}

/// Whether the links among `nodes` connect them all (a link counts when both ends report it).
pub fn is_connected(graph: &HashMap<NodeId, Vec<NodeId>>) -> bool {
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
