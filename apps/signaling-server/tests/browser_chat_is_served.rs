//! The server serves the browser chat's built files at `GET /` and below, with the right content
//! types, says how to build them when they are missing, and a WebSocket upgrade at `/` is still
//! the signaling socket.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{PATIENCE, Raw, TestServer, key};
use signaling_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off the wire: status line, headers (names lowercased), body bytes.
struct Reply {
    status: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8(response[..split].to_vec()).expect("ASCII head");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let reply = Reply {
        status,
        headers,
        body: response[split + 4..].to_vec(),
    };
    // Files come with their length (no chunked encoding to undo here).
    if let Some(len) = reply.header("content-length") {
        assert_eq!(len.parse::<usize>().expect("length"), reply.body.len());
    }
    reply
}

/// A fresh folder under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("signaling-server-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const INDEX: &str = "<!doctype html><title>chat</title><script type=module src=app.js></script>";
/// The smallest valid wasm module: magic and version.
const WASM: &[u8] = b"\0asm\x01\0\0\0";

#[tokio::test]
async fn the_built_chat_is_served_with_its_content_types() {
    let dir = TempDir::new("built");
    std::fs::write(dir.0.join("index.html"), INDEX).unwrap();
    std::fs::write(dir.0.join("app.js"), "export {};\n").unwrap();
    std::fs::write(dir.0.join("style.css"), "body {}\n").unwrap();
    std::fs::create_dir_all(dir.0.join("pkg")).unwrap();
    std::fs::write(dir.0.join("pkg/x.wasm"), WASM).unwrap();
    let server = TestServer::start(Config {
        web_dir: dir.0.clone(),
        ..Config::ephemeral()
    })
    .await;

    let index = get(server.addr, "/").await;
    assert!(index.status.contains(" 200 "), "{}", index.status);
    assert!(
        index
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        index.headers
    );
    assert_eq!(index.text(), INDEX);

    let wasm = get(server.addr, "/pkg/x.wasm").await;
    assert!(wasm.status.contains(" 200 "), "{}", wasm.status);
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert_eq!(wasm.body, WASM);

    let js = get(server.addr, "/app.js").await;
    assert!(
        js.header("content-type")
            .is_some_and(|t| t.starts_with("text/javascript")),
        "{:?}",
        js.headers
    );
    let css = get(server.addr, "/style.css").await;
    assert!(
        css.header("content-type")
            .is_some_and(|t| t.starts_with("text/css")),
        "{:?}",
        css.headers
    );

    // A missing file is a 404 that says where the files come from; nothing outside the folder.
    let missing = get(server.addr, "/pkg/nothing.js").await;
    assert!(missing.status.contains(" 404 "), "{}", missing.status);
    assert!(
        missing.text().contains("cargo xtask web"),
        "{}",
        missing.text()
    );
    let outside = get(server.addr, "/../Cargo.toml").await;
    assert!(!outside.status.contains(" 200 "), "{}", outside.status);

    // The other routes are untouched.
    let health = get(server.addr, "/health").await;
    assert_eq!(health.text(), "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn without_the_built_chat_the_page_says_how_to_build_it() {
    let dir = TempDir::new("empty");
    let server = TestServer::start(Config {
        web_dir: dir.0.join("dist"),
        ..Config::ephemeral()
    })
    .await;
    let page = get(server.addr, "/").await;
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let text = page.text();
    assert!(
        text.contains("The browser chat is not built yet: run <code>cargo xtask web</code>"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_at_the_root_is_still_the_signaling_socket() {
    let dir = TempDir::new("ws");
    std::fs::write(dir.0.join("index.html"), INDEX).unwrap();
    let server = TestServer::start(Config {
        web_dir: dir.0.clone(),
        ..Config::ephemeral()
    })
    .await;
    let mut client = Raw::connect(&server).await;
    let (joined, _) = client.join_verified(&key(1), None).await;
    assert_eq!(joined["room"], "default", "{joined}");
    client.assert_alive().await;

    // An upgrade request that gets the handshake wrong is refused, not answered with the page.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = vec![0u8; 512];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
    assert!(!response.contains(INDEX), "{response}");
    server.stop().await;
}
