//! A client given several servers, against real signaling servers in this process: when its
//! server dies it joins the next one (and is reachable there), a first server that nobody answers
//! at is skipped, and a join refused with `id_taken` is asked again soon.
//!
//! Each client's backoff is an hour: what it must do here it can do only without the backoff (the
//! failover to the next server, the rotation within a round, the quick `id_taken` retry), so a
//! client that waited the backoff would fail the test at the patience. Nothing measures time.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::json;
use transport::{ErrorCode, PeerId, SignalingTransport, TransportEvent};
use transport_ws::{Config, Identity, WsSignaling};

/// A generous bound on each wait, not a measurement.
const PATIENCE: Duration = Duration::from_secs(10);

/// Longer than any test: a client that waits its backoff does not come back within the patience.
const NEVER: Duration = Duration::from_secs(3600);

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn id_of(key: &SigningKey) -> PeerId {
    PeerId::from_public_key(&key.verifying_key().to_bytes())
}

/// A signaling server in a runtime of its own, so that it can be killed: its tasks stop and its
/// sockets close without a goodbye, as when its process dies.
struct Server {
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    async fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (bound, addr) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let server = signaling_server::Server::bind(signaling_server::Config::ephemeral())
                .await
                .expect("bind");
            let _ = bound.send(server.local_addr().expect("address"));
            server.run(std::future::pending()).await
        });
        let addr = addr.await.expect("the server binds");
        Self {
            url: format!("ws://{addr}"),
            runtime: Some(runtime),
        }
    }

    fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A `ws://` URL of a loopback port that nobody listens on.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("ws://{addr}")
}

fn client(urls: &[&str], key: SigningKey) -> WsSignaling {
    let mut config = Config::with_servers(urls.iter().copied(), Identity::Keypair(key));
    config.backoff_initial = NEVER;
    config.backoff_max = NEVER;
    WsSignaling::connect(config)
}

/// Skips events until one matches `wanted`, which it returns.
async fn wait_for(
    t: &mut WsSignaling,
    what: &str,
    wanted: impl Fn(&TransportEvent) -> bool,
) -> TransportEvent {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, t.next_event())
            .await
            .unwrap_or_else(|_| panic!("gave up waiting for {what}"));
        match event {
            Some(event) if wanted(&event) => return event,
            Some(_) => {}
            None => panic!("the client ended while waiting for {what}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_server_dies_joins_the_next_one() {
    let (a, b) = (Server::start().await, Server::start().await);
    let me = id_of(&key(1));
    let mut t = client(&[&a.url, &b.url], key(1));
    let open = wait_for(&mut t, "the join", |e| {
        matches!(e, TransportEvent::Open { .. })
    })
    .await;
    assert!(matches!(open, TransportEvent::Open { peer_id, .. } if peer_id == me));
    assert_eq!(t.server(), Some(a.url.as_str()), "the first server first");

    a.kill();
    let close = wait_for(&mut t, "the loss", |e| {
        matches!(e, TransportEvent::Close { .. })
    })
    .await;
    assert!(matches!(
        close,
        TransportEvent::Close {
            reconnecting: true,
            ..
        }
    ));
    let back = wait_for(&mut t, "the join on the second server", |e| {
        matches!(e, TransportEvent::Reconnected { .. })
    })
    .await;
    assert_eq!(
        back,
        TransportEvent::Reconnected {
            peer_id: me.clone(),
            attempts: 1
        },
        "the next server at once, in one attempt"
    );
    assert_eq!(t.server(), Some(b.url.as_str()));

    // Served there: a client of the second server reaches it.
    let mut other = client(&[&b.url], key(2));
    wait_for(&mut other, "the other client's join", |e| {
        matches!(e, TransportEvent::Open { .. })
    })
    .await;
    let hello = json!({"type": "offer", "sdp": "after the failover"});
    other
        .send_signal(me.clone(), hello.clone())
        .await
        .expect("joined");
    let got = wait_for(&mut t, "the signal through the second server", |e| {
        matches!(e, TransportEvent::Signal { .. })
    })
    .await;
    assert_eq!(
        got,
        TransportEvent::Signal {
            from: id_of(&key(2)),
            signal: hello
        }
    );
    t.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_server_that_nobody_answers_at_is_skipped() {
    let b = Server::start().await;
    let dead = dead_url().await;
    let mut t = client(&[&dead, &b.url], key(3));
    let open = wait_for(&mut t, "the join", |e| {
        matches!(e, TransportEvent::Open { .. })
    })
    .await;
    assert!(matches!(open, TransportEvent::Open { peer_id, .. } if peer_id == id_of(&key(3))));
    assert_eq!(t.server(), Some(b.url.as_str()));
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_refused_with_id_taken_is_asked_again_soon() {
    let server = Server::start().await;
    let mut holder = client(&[&server.url], key(4));
    wait_for(&mut holder, "the holder's join", |e| {
        matches!(e, TransportEvent::Open { .. })
    })
    .await;

    // The same id again, as a client does whose old server's claim the cluster still holds.
    let mut t = client(&[&server.url], key(4));
    wait_for(&mut t, "id_taken", |e| {
        matches!(
            e,
            TransportEvent::Error {
                code: Some(ErrorCode::IdTaken),
                ..
            }
        )
    })
    .await;
    assert!(!t.is_connected());

    // The claim ends; the next ask, soon and not after the backoff, joins.
    holder.close().await;
    wait_for(&mut t, "the join once the id is free", |e| {
        matches!(e, TransportEvent::Open { .. })
    })
    .await;
    assert_eq!(t.server(), Some(server.url.as_str()));
    t.close().await;
}
