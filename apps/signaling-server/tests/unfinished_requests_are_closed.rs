//! A connection that never completes its HTTP request (or sends nothing, or idles between
//! requests) is closed after `http_header_timeout_secs`, instead of being held forever.
#![allow(clippy::unwrap_used)]

mod common;

use common::{PATIENCE, TestServer};
use signaling_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> Config {
    Config {
        http_header_timeout_secs: 1,
        ..Config::ephemeral()
    }
}

/// Read until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the connection");
    got
}

#[tokio::test]
async fn a_connection_that_never_sends_its_request_is_closed() {
    let server = TestServer::start(config()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    read_to_close(&mut silent).await;
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    read_to_close(&mut partial).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = TestServer::start(config()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut stream).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
    server.stop().await;
}
