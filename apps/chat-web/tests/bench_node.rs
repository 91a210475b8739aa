//! `bench-node`, the native node of `bench-web`'s broadcast phase: two of them link, and a
//! broadcast one is told to send is reported by the other with its origin, sequence number and
//! both clock readings. (Figures are bench-web's business: nothing here looks at their values
//! beyond their presence.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use chat_web::{PATIENCE, Signaling};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Node {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Node {
    fn start(server: &Signaling, name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bench-node"))
            .args([
                "--server",
                &server.ws_url(),
                "--room",
                "bench-node-test",
                "--name",
                name,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn bench-node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            _child: child,
            stdin,
            stdout,
        }
    }

    /// The next JSON event of kind `event`.
    async fn next(&mut self, event: &str) -> Value {
        let read = async {
            loop {
                let line = self
                    .stdout
                    .next_line()
                    .await
                    .expect("read")
                    .unwrap_or_else(|| panic!("stdout ended before a {event} event"));
                let value: Value = serde_json::from_str(&line).expect("a JSON line");
                if value["event"] == event {
                    return value;
                }
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .unwrap_or_else(|_| panic!("no {event} event"))
    }

    async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
        self.stdin.flush().await.expect("flush");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_is_reported_with_its_origin_and_clock_readings() {
    let web = tempfile::tempdir().expect("temp dir");
    let server = Signaling::start(web.path()).await.expect("server");
    let mut one = Node::start(&server, "one");
    let ready = one.next("ready").await;
    assert_eq!(ready["id"].as_str().map(str::len), Some(40));
    let mut two = Node::start(&server, "two");
    two.next("ready").await;
    one.next("link").await;
    two.next("link").await;

    one.command("send 7").await;
    let got = two.next("recv").await;
    assert_eq!(got["origin"], "one");
    assert_eq!(got["seq"], 7);
    assert!(got["sent_ms"].as_f64().is_some_and(|t| t > 0.0), "{got}");
    assert!(got["recv_ms"].as_f64().is_some_and(|t| t > 0.0), "{got}");

    one.command("quit").await;
    two.command("quit").await;
    server.stop().await;
}
