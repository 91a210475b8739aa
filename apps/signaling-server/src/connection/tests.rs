//! [`serve`] driven over channels, without sockets, on tokio's paused clock: joins with a
//! proof, relays, errors, leaves, the rate limit, the join and idle timeouts, shutdown.
//!
//! Keys and the server's randomness come from one seed (`SIGNALING_TEST_SEED`, or each test's
//! default), printed when a test fails, so that any failure replays exactly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::extract::ws::Message;
use ed25519_dalek::{Signer as _, SigningKey};
use futures_channel::mpsc as chan;
use futures_util::{SinkExt as _, StreamExt as _};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::error::CapacityError;
use transport::{PeerId, join_proof_message};

use super::serve;
use crate::{Config, Shared};

/// The host a join proof names: [`Config::default`]'s address.
const HOST: &str = "127.0.0.1:8080";

fn local() -> super::Origin {
    super::Origin {
        source: crate::source::Source::of(std::net::IpAddr::from([127, 0, 0, 1])),
        host: Some(HOST.to_owned()),
    }
}

/// A test's seed; printed if the test panics.
struct Seed(u64);

impl Seed {
    fn new(default: u64) -> Self {
        let seed = std::env::var("SIGNALING_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        Self(seed)
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed with seed {0}; replay with SIGNALING_TEST_SEED={0}",
                self.0
            );
        }
    }
}

/// A server without a listener: its shared state, and the keys of a seeded generator.
struct Server {
    shared: std::sync::Arc<Shared>,
    shutdown: watch::Sender<bool>,
    keys: ChaCha8Rng,
    _seed: Seed,
}

impl Server {
    fn new(config: Config, default_seed: u64) -> Self {
        let seed = Seed::new(default_seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed.0);
        let mut server_seed = [0u8; 32];
        rng.fill_bytes(&mut server_seed);
        let (shared, shutdown) = Shared::new(config, server_seed, None);
        Self {
            shared,
            shutdown,
            keys: rng,
            _seed: seed,
        }
    }

    fn key(&mut self) -> SigningKey {
        let mut secret = [0u8; 32];
        self.keys.fill_bytes(&mut secret);
        SigningKey::from_bytes(&secret)
    }

    /// Two clients with fresh keys joined in turn, `a` then `b`; `a`'s `peer_joined` for `b`
    /// already read. Returns `(a_key, b_key, a, b)`.
    async fn join_pair(&mut self) -> (SigningKey, SigningKey, Client, Client) {
        let (a_key, b_key) = (self.key(), self.key());
        let mut a = self.connect().await;
        a.join(&a_key).await;
        let mut b = self.connect().await;
        b.join(&b_key).await;
        let _ = a.recv().await; // peer_joined
        (a_key, b_key, a, b)
    }

    /// A connection served by [`serve`] over two channels; reads the challenge.
    async fn connect(&self) -> Client {
        let (to_server, read) = chan::channel(64);
        let (write, from_server) = chan::channel(64);
        let task = tokio::spawn(serve(write, read, self.shared.clone(), local()));
        let mut client = Client {
            to_server,
            from_server,
            task,
            nonce: [0; 32],
        };
        let challenge = client.recv().await;
        assert_eq!(challenge["type"], "challenge", "{challenge}");
        hex::decode_to_slice(challenge["nonce"].as_str().unwrap(), &mut client.nonce).unwrap();
        client
    }

    fn metric(&self, series: &str) -> f64 {
        let text = self.shared.metrics.render(0, 0, 0, Vec::new());
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }
}

fn id_of(key: &SigningKey) -> String {
    PeerId::from_public_key(&key.verifying_key().to_bytes()).to_string()
}

struct Client {
    to_server: chan::Sender<Result<Message, axum::Error>>,
    from_server: chan::Receiver<Message>,
    task: JoinHandle<()>,
    nonce: [u8; 32],
}

impl Client {
    async fn send(&mut self, value: Value) {
        self.send_frame(Message::Text(value.to_string().into()))
            .await;
    }

    async fn send_frame(&mut self, message: Message) {
        self.to_server.send(Ok(message)).await.unwrap();
    }

    /// The next frame the server wrote, WebSocket pings included; `None` once it has ended.
    async fn frame(&mut self) -> Option<Message> {
        self.from_server.next().await
    }

    /// The next JSON message (pings skipped).
    async fn recv(&mut self) -> Value {
        loop {
            match self.frame().await {
                Some(Message::Text(text)) => return serde_json::from_str(&text).unwrap(),
                Some(Message::Ping(_)) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    async fn expect_error(&mut self, code: &str) -> Value {
        let error = self.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
        error
    }

    /// The close frame's code, after any text or pings; the handler then ends.
    async fn closed(mut self) -> u16 {
        let code = loop {
            match self.frame().await {
                Some(Message::Close(Some(frame))) => break frame.code,
                Some(Message::Text(_) | Message::Ping(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        // The client going away ends the handler's linger at once.
        let Self {
            to_server, task, ..
        } = self;
        drop(to_server);
        task.await.unwrap();
        code
    }

    /// Frames already written, without waiting.
    fn pending(&mut self) -> Vec<Message> {
        let mut frames = Vec::new();
        while let Ok(frame) = self.from_server.try_recv() {
            frames.push(frame);
        }
        frames
    }

    fn join_message(&self, key: &SigningKey) -> Value {
        let signature = key.sign(&join_proof_message(&self.nonce, HOST));
        json!({
            "type": "join",
            "peerId": id_of(key),
            "publicKey": hex::encode(key.verifying_key().to_bytes()),
            "signature": hex::encode(signature.to_bytes()),
            "host": HOST,
            "protocolVersion": 1,
        })
    }

    /// Join with a proof; returns the ids listed in `bootstrap_peers`.
    async fn join(&mut self, key: &SigningKey) -> Vec<String> {
        self.send(self.join_message(key)).await;
        let joined = self.recv().await;
        assert_eq!(joined["type"], "joined", "{joined}");
        assert_eq!(joined["peerId"], id_of(key), "{joined}");
        let bootstrap = self.recv().await;
        assert_eq!(bootstrap["type"], "bootstrap_peers", "{bootstrap}");
        bootstrap["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn assert_alive(&mut self) {
        self.send(json!({"type": "ping", "ts": 7})).await;
        assert_eq!(self.recv().await, json!({"type": "pong", "ts": 7}));
    }
}

fn only_pings(frames: &[Message]) -> bool {
    frames.iter().all(|f| matches!(f, Message::Ping(_)))
}

#[tokio::test(start_paused = true)]
async fn joins_with_a_proof_are_introduced_to_each_other() {
    let mut server = Server::new(Config::default(), 1);
    let (a_key, b_key) = (server.key(), server.key());
    let mut a = server.connect().await;
    assert!(
        a.join(&a_key).await.is_empty(),
        "the first join meets nobody"
    );
    let mut b = server.connect().await;
    assert_eq!(b.join(&b_key).await, vec![id_of(&a_key)]);
    let announced = a.recv().await;
    assert_eq!(
        announced,
        json!({"type": "peer_joined", "peerId": id_of(&b_key)})
    );
    assert_eq!(server.metric("signaling_joins_total"), 2.0);
    assert_eq!(server.metric("signaling_clients"), 2.0);
}

#[tokio::test(start_paused = true)]
async fn a_relay_reaches_its_addressee_with_from_set_by_the_server() {
    let mut server = Server::new(Config::default(), 2);
    let (a_key, b_key, mut a, mut b) = server.join_pair().await;
    a.send(json!({
        "type": "signal",
        "to": id_of(&b_key),
        "from": "0000000000000000000000000000000000000000",
        "signal": {"sdp": "x"},
    }))
    .await;
    let relayed = b.recv().await;
    assert_eq!(relayed["type"], "signal", "{relayed}");
    assert_eq!(relayed["from"], id_of(&a_key), "{relayed}");
    assert_eq!(relayed["signal"], json!({"sdp": "x"}), "{relayed}");
    assert!(only_pings(&a.pending()), "the sender gets no reply");
    assert_eq!(server.metric("signaling_relayed_messages_total"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn bad_joins_and_relays_get_their_error_and_serving_goes_on() {
    let mut server = Server::new(Config::default(), 3);
    let (key, other) = (server.key(), server.key());
    let mut c = server.connect().await;

    // A relay before join.
    c.send(json!({"type": "signal", "to": id_of(&other), "signal": {}}))
        .await;
    c.expect_error("not_joined").await;
    // A join without a proof (the server verifies ids by default).
    c.send(json!({"type": "join", "peerId": id_of(&key)})).await;
    c.expect_error("proof_required").await;
    // A proof signed over another connection's nonce.
    let mut forged = c.join_message(&key);
    forged["signature"] = json!(hex::encode(
        key.sign(&join_proof_message(&[9; 32], HOST)).to_bytes()
    ));
    c.send(forged).await;
    c.expect_error("invalid_signature").await;
    // A key that is not the id's.
    let mut mismatched = c.join_message(&key);
    mismatched["peerId"] = json!(id_of(&other));
    c.send(mismatched).await;
    c.expect_error("id_mismatch").await;
    // Not JSON, and binary.
    c.send_frame(Message::Text("{not json".into())).await;
    c.expect_error("invalid_json").await;
    c.send_frame(Message::Binary(vec![1, 2, 3].into())).await;
    c.expect_error("binary_not_supported").await;

    c.join(&key).await;
    // A relay to nobody, and to oneself.
    c.send(json!({"type": "signal", "to": id_of(&other), "signal": {}}))
        .await;
    let error = c.expect_error("unknown_peer").await;
    assert_eq!(error["peerId"], id_of(&other), "{error}");
    c.send(json!({"type": "signal", "to": id_of(&key), "signal": {}}))
        .await;
    c.expect_error("self_signal").await;
    // A second join on the same connection.
    c.send(c.join_message(&key)).await;
    c.expect_error("already_joined").await;
    // The same id from another connection.
    let mut thief = server.connect().await;
    thief.send(thief.join_message(&key)).await;
    thief.expect_error("id_taken").await;
    c.assert_alive().await;
    thief.assert_alive().await;
    assert_eq!(
        server.metric(r#"signaling_rejected_inputs_total{reason="invalid_signature"}"#),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn an_oversized_message_is_answered_then_closed_with_1009() {
    let server = Server::new(Config::default(), 4);
    let mut c = server.connect().await;
    let too_long = tokio_tungstenite::tungstenite::Error::Capacity(CapacityError::MessageTooLong {
        size: 1 << 20,
        max_size: 1 << 16,
    });
    c.to_server
        .send(Err(axum::Error::new(too_long)))
        .await
        .unwrap();
    c.expect_error("message_too_large").await;
    assert_eq!(c.closed().await, 1009);
    assert_eq!(server.metric("signaling_clients"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_leave_tells_the_introduced_peers_and_frees_the_id() {
    let mut server = Server::new(Config::default(), 5);
    let (a_key, b_key, mut a, mut b) = server.join_pair().await;

    // Only the holder may name its id in a leave.
    a.send(json!({"type": "leave", "peerId": id_of(&b_key)}))
        .await;
    a.expect_error("not_your_id").await;
    a.send(json!({"type": "leave"})).await;
    assert_eq!(
        b.recv().await,
        json!({"type": "peer_left", "peerId": id_of(&a_key)})
    );
    a.send(json!({"type": "signal", "to": id_of(&b_key), "signal": {}}))
        .await;
    a.expect_error("not_joined").await;
    a.send(json!({"type": "leave"})).await;
    a.expect_error("not_joined").await;

    // The id is free again: another connection may take it.
    let mut again = server.connect().await;
    assert_eq!(again.join(&a_key).await, vec![id_of(&b_key)]);

    // A connection that goes away leaves too.
    drop(again.to_server);
    again.task.await.unwrap();
    assert_eq!(b.recv().await["type"], "peer_joined");
    assert_eq!(
        b.recv().await,
        json!({"type": "peer_left", "peerId": id_of(&a_key)})
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_refuses_then_closes_on_sustained_abuse() {
    let config = Config {
        rate_per_sec: 2,
        rate_burst: 3,
        rate_abuse_strikes: 4,
        ..Config::default()
    };
    let server = Server::new(config, 6);
    let mut c = server.connect().await;
    // The clock stands still while the messages arrive: exactly the burst passes.
    for ts in 0..5 {
        c.send(json!({"type": "ping", "ts": ts})).await;
    }
    for ts in 0..3 {
        assert_eq!(c.recv().await, json!({"type": "pong", "ts": ts}));
    }
    c.expect_error("rate_limited").await;
    c.expect_error("rate_limited").await;
    // Half a second refills one message (2 per second); a message that passes clears the strikes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(json!({"type": "ping", "ts": 9})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "ts": 9}));
    for ts in 0..3 {
        c.send(json!({"type": "ping", "ts": ts})).await;
        c.expect_error("rate_limited").await;
    }
    // The fourth refusal in a row closes the connection.
    c.send(json!({"type": "ping", "ts": 4})).await;
    assert_eq!(c.closed().await, 1008);
    assert_eq!(
        server.metric(r#"signaling_rejected_inputs_total{reason="rate_limited"}"#),
        6.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_joins_is_closed_at_the_join_timeout() {
    let config = Config {
        join_timeout_secs: 30,
        ..Config::default()
    };
    let server = Server::new(config, 7);
    let mut c = server.connect().await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(
        only_pings(&c.pending()),
        "nothing but pings before the timeout"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.expect_error("join_timeout").await;
    assert_eq!(c.closed().await, 1008);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_at_the_idle_timeout_and_an_answering_one_is_not() {
    let config = Config {
        idle_timeout_secs: 60,
        ping_interval_secs: 20,
        ..Config::default()
    };
    let mut server = Server::new(config, 8);
    let (_, _, mut silent, mut live) = server.join_pair().await;

    // The live client answers every ping with a pong, as a WebSocket client does.
    let answering = tokio::spawn(async move {
        let mut pings = 0;
        while pings < 10 {
            match live.frame().await {
                Some(Message::Ping(payload)) => {
                    pings += 1;
                    live.send_frame(Message::Pong(payload)).await;
                }
                Some(Message::Text(_)) => {}
                other => panic!("the answering client got {other:?}"),
            }
        }
        live
    });
    tokio::time::sleep(Duration::from_secs(59)).await;
    let pings = silent.pending();
    assert!(only_pings(&pings) && pings.len() == 2, "{pings:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(silent.closed().await, 1000);
    // 200 s later the answering client is still served.
    let mut live = answering.await.unwrap();
    live.assert_alive().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_tells_each_client_then_closes_with_1001() {
    let mut server = Server::new(Config::default(), 9);
    let key = server.key();
    let mut c = server.connect().await;
    c.join(&key).await;
    server.shutdown.send(true).unwrap();
    let bye = c.recv().await;
    assert_eq!(bye["type"], "shutdown", "{bye}");
    assert_eq!(c.closed().await, 1001);
    // A connection that arrives during shutdown is closed at once.
    let (to_server, read) = chan::channel::<Result<Message, axum::Error>>(1);
    let (write, mut from_server) = chan::channel(8);
    serve(write, read, server.shared.clone(), local()).await;
    drop(to_server);
    let first = from_server.next().await;
    assert!(
        matches!(&first, Some(Message::Text(t)) if t.contains("shutdown")),
        "{first:?}"
    );
    assert_eq!(server.metric("signaling_clients"), 0.0);
}

/// Join/leave cycling: every join makes the server tell each introduced peer (`peer_joined`), and
/// every leave tells them again (`peer_left`). The notifications a cycling connection causes are
/// paid from its own rate limit, so the server never sends the room more messages than the
/// cycler may send itself (its burst plus its rate over the time taken).
#[tokio::test(start_paused = true)]
async fn join_leave_cycling_cannot_multiply_the_servers_traffic() {
    let config = Config::default();
    let (rate, burst) = (config.rate_per_sec, config.rate_burst);
    let mut server = Server::new(config, 23);
    let mut bystanders = Vec::new();
    for _ in 0..10 {
        let key = server.key();
        let mut client = server.connect().await;
        client.join(&key).await;
        bystanders.push(client);
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    for b in &mut bystanders {
        b.pending();
    }
    let key = server.key();
    let mut cycler = server.connect().await;
    let started = tokio::time::Instant::now();
    let mut notifications = 0usize;
    for _ in 0..100 {
        let join = Message::Text(cycler.join_message(&key).to_string().into());
        let leave = Message::Text(json!({"type": "leave"}).to_string().into());
        // The cycler may be closed for abuse: its sends then fail, which is fine.
        let _ = cycler.to_server.send(Ok(join)).await;
        let _ = cycler.to_server.send(Ok(leave)).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        cycler.pending();
        for b in &mut bystanders {
            notifications += b
                .pending()
                .iter()
                .filter(|f| {
                    matches!(f, Message::Text(t) if t.contains("peer_joined") || t.contains("peer_left"))
                })
                .count();
        }
    }
    let elapsed = started.elapsed().as_secs() + 1;
    let budget = burst as usize + rate as usize * elapsed as usize;
    assert!(notifications > 0, "the first join is announced");
    assert!(
        notifications <= budget,
        "{notifications} notifications sent for one connection whose budget is {budget} messages"
    );
}

/// A client that never reads its socket: relays to it queue up (bounded: `peer_busy`), its socket
/// stops taking writes, and the write timeout drops it, which frees its id, instead of its task
/// waiting on the write forever.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    let config = Config {
        rate_per_sec: 100_000,
        rate_burst: 100_000,
        ..Config::default()
    };
    let (write_timeout, idle) = (config.write_timeout(), config.idle_timeout());
    let mut server = Server::new(config, 29);
    let (_a_key, b_key, mut a, b) = server.join_pair().await;
    let b_id = id_of(&b_key);
    let signal = json!({"type": "signal", "to": b_id, "signal": {"type": "offer", "sdp": "x"}});
    let mut busy = false;
    for _ in 0..400 {
        a.send(signal.clone()).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        busy |= a
            .pending()
            .iter()
            .any(|f| matches!(f, Message::Text(t) if t.contains("peer_busy")));
    }
    assert!(busy, "the queue to a client that does not read is bounded");
    assert!(!b.task.is_finished(), "still within the write timeout");
    // Longer than the write timeout, shorter than the idle timeout.
    assert!(write_timeout * 2 < idle);
    tokio::time::sleep(write_timeout * 2).await;
    a.pending();
    assert!(b.task.is_finished(), "the stuck writer was dropped");
    let held = server.shared.registry.read().unwrap().holds(&b_id);
    assert!(!held, "its id is free again");
}
