//! Helpers shared by the scenario tests: a real server on an ephemeral port and a raw
//! WebSocket client that speaks JSON.
#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use signaling_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use transport::{PeerId, SignalingTransport, TransportEvent, join_proof_message};
use transport_ws::WsSignaling;

/// How long a test waits for something that should happen (never a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The transport-ws client's next event, within [`PATIENCE`].
pub async fn next(t: &mut WsSignaling) -> TransportEvent {
    tokio::time::timeout(PATIENCE, t.next_event())
        .await
        .expect("an event in time")
        .expect("transport open")
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A server running elsewhere (another process) at `addr`; [`TestServer::stop`] does nothing.
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            addr,
            stop: None,
            task: None,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Shut down gracefully and wait for the server to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server run");
        }
    }
}

/// A deterministic key for test client `n`.
pub fn key(n: u8) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[0] = n;
    seed[31] = 0x5a;
    SigningKey::from_bytes(&seed)
}

pub fn id_of(key: &SigningKey) -> String {
    PeerId::from_public_key(&key.verifying_key().to_bytes()).to_string()
}

/// A raw WebSocket client that sends and receives JSON values.
pub struct Raw {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The nonce of the server's challenge.
    pub nonce: [u8; 32],
    /// The server's host (`ip:port`), which a join proof names.
    pub host: String,
}

impl Raw {
    /// Connect and read the challenge.
    pub async fn connect(server: &TestServer) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .expect("connect");
        Self::challenged(ws, server).await
    }

    /// Connect from the loopback address `from` (any of 127.0.0.0/8) and read the challenge.
    pub async fn connect_from(server: &TestServer, from: [u8; 4]) -> Self {
        Self::try_connect_from(server, from).await.expect("connect")
    }

    /// [`Raw::connect_from`], or the error of a refused connection.
    pub async fn try_connect_from(
        server: &TestServer,
        from: [u8; 4],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .expect("bind a loopback source");
        let tcp = socket.connect(server.addr).await.expect("tcp connect");
        let (ws, _) =
            tokio_tungstenite::client_async(server.url(), MaybeTlsStream::Plain(tcp)).await?;
        Ok(Self::challenged(ws, server).await)
    }

    async fn challenged(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        server: &TestServer,
    ) -> Self {
        let mut raw = Self {
            ws,
            nonce: [0; 32],
            host: server.addr.to_string(),
        };
        let challenge = raw.recv().await;
        assert_eq!(challenge["type"], "challenge", "{challenge}");
        hex::decode_to_slice(challenge["nonce"].as_str().unwrap(), &mut raw.nonce).unwrap();
        raw
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .expect("send");
    }

    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next JSON message (WebSocket pings are skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message in time")
                .expect("connection open")
                .expect("read");
            match next {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// The next JSON message of type `kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Wait for the close frame; returns its code (and skips any text before it).
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("close in time");
            match next {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Send a ping message and expect the pong: proves the connection still serves.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"type": "ping", "ts": 42})).await;
        let pong = self.recv().await;
        assert_eq!(pong, json!({"type": "pong", "ts": 42}));
    }

    /// Join with an identity proof; returns the `joined` and `bootstrap_peers` messages.
    pub async fn join_verified(&mut self, key: &SigningKey, room: Option<&str>) -> (Value, Value) {
        let msg = self.join_message(key, room);
        self.send(msg).await;
        let joined = self.recv().await;
        assert_eq!(joined["type"], "joined", "{joined}");
        let bootstrap = self.recv().await;
        assert_eq!(bootstrap["type"], "bootstrap_peers", "{bootstrap}");
        (joined, bootstrap)
    }

    /// A valid signed join for this connection.
    pub fn join_message(&self, key: &SigningKey, room: Option<&str>) -> Value {
        let signature = key.sign(&join_proof_message(&self.nonce, &self.host));
        let mut msg = json!({
            "type": "join",
            "peerId": id_of(key),
            "publicKey": hex::encode(key.verifying_key().to_bytes()),
            "signature": hex::encode(signature.to_bytes()),
            "host": self.host,
            "protocolVersion": 1,
        });
        if let Some(room) = room {
            msg["room"] = json!(room);
        }
        msg
    }

    /// Expect an `error` with `code`; returns it.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        self.expect_error_in("expected error", code).await
    }

    /// [`Raw::expect_error`], its failure messages naming `case`.
    pub async fn expect_error_in(&mut self, case: &str, code: &str) -> Value {
        let error = self.recv().await;
        assert_eq!(error["type"], "error", "{case}: {error}");
        assert_eq!(error["code"], code, "{case}: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{case}: {error}"
        );
        error
    }
}

/// `GET path` over plain HTTP/1.1; returns (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
