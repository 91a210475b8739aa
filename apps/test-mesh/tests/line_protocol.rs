//! mesh-node's line protocol end to end: two real mesh-node processes join a signaling server
//! started here, link over WebRTC on loopback, and are driven through stdin/stdout: a broadcast
//! and a direct message arrive with the reported size and SHA-1, `peers` and `stats` answer,
//! a malformed line is refused without stopping the node, and `leave` ends the process cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use test_mesh::{Command, Report, digest, payload};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Generous: only stops a hung test.
const PATIENCE: Duration = Duration::from_secs(60);

struct Node {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Node {
    fn start(server: &str) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-node"))
            .args(["--server", server, "--room", "lines", "--all-topics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mesh-node starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    async fn say(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.expect("write");
        self.stdin.write_all(b"\n").await.expect("write");
    }

    async fn command(&mut self, command: &Command) {
        self.say(&serde_json::to_string(command).expect("serialises"))
            .await;
    }

    /// The next report that `want` accepts (others are skipped).
    async fn next<T>(&mut self, what: &str, want: impl Fn(Report) -> Option<T>) -> T {
        let wait = async {
            loop {
                let line = self
                    .stdout
                    .next_line()
                    .await
                    .expect("read")
                    .unwrap_or_else(|| panic!("mesh-node exited while waiting for {what}"));
                let report: Report = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a report: {line} ({e})"));
                if let Some(found) = want(report) {
                    return found;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {what}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_are_driven_by_lines() {
    let server = signaling_server::Server::bind(signaling_server::Config::ephemeral())
        .await
        .expect("server binds");
    let url = format!("ws://{}", server.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let mut ann = Node::start(&url);
    let ann_id = ann
        .next("ann's joined", |r| match r {
            Report::Joined { id, .. } => Some(id),
            _ => None,
        })
        .await;
    let mut bob = Node::start(&url);
    let bob_id = bob
        .next("bob's joined", |r| match r {
            Report::Joined { id, .. } => Some(id),
            _ => None,
        })
        .await;
    let linked = bob_id.clone();
    ann.next("ann's link to bob", move |r| match r {
        Report::PeerConnected { peer, .. } if peer == linked => Some(()),
        _ => None,
    })
    .await;
    let linked = ann_id.clone();
    bob.next("bob's link to ann", move |r| match r {
        Report::PeerConnected { peer, .. } if peer == linked => Some(()),
        _ => None,
    })
    .await;

    // A broadcast, padded to 100 kB (chunked on the wire), arrives whole.
    ann.command(&Command::Broadcast {
        req: Some(1),
        topic: "news".into(),
        data: "hello|".into(),
        size: Some(100_000),
    })
    .await;
    let sent = ann
        .next("ann's broadcast report", |r| match r {
            Report::Broadcast {
                req: Some(1),
                sha1,
                bytes,
                ..
            } => Some((sha1, bytes)),
            _ => None,
        })
        .await;
    assert_eq!(sent, (digest(&payload("hello|", Some(100_000))), 100_000));
    let from = ann_id.clone();
    let got = bob
        .next("the broadcast at bob", move |r| match r {
            Report::Message {
                from: f,
                topic: Some(t),
                sha1,
                bytes,
                preview,
                ..
            } if f == from => Some((t, sha1, bytes, preview)),
            _ => None,
        })
        .await;
    assert_eq!((got.0.as_str(), got.1, got.2), ("news", sent.0, 100_000));
    // The filler goes on from the text's length: byte 6 is `g`.
    assert!(got.3.starts_with("hello|ghi"), "{}", got.3);

    // A direct message, and its report.
    bob.command(&Command::Send {
        req: Some(2),
        to: ann_id.clone(),
        data: "psst".into(),
        size: None,
    })
    .await;
    bob.next("bob's sent report", |r| match r {
        Report::Sent { req: Some(2), .. } => Some(()),
        _ => None,
    })
    .await;
    let from = bob_id.clone();
    let direct = ann
        .next("the direct message at ann", move |r| match r {
            Report::Message {
                from: f,
                topic: None,
                preview,
                ..
            } if f == from => Some(preview),
            _ => None,
        })
        .await;
    assert_eq!(direct, "psst");

    // A bad line is refused; the node goes on answering.
    ann.say("{\"cmd\":\"fly\"}").await;
    ann.next("an error report", |r| match r {
        Report::Error { req: None, message } if message.starts_with("not a command") => Some(()),
        _ => None,
    })
    .await;
    ann.command(&Command::Forge {
        req: Some(3),
        kind: test_mesh::forge::Kind::BadSignature,
        victim: None,
        to: None,
        tag: "x".into(),
    })
    .await;
    ann.next("forge refused without --forger", |r| match r {
        Report::Error { req: Some(3), .. } => Some(()),
        _ => None,
    })
    .await;
    ann.command(&Command::Peers { req: Some(4) }).await;
    let peers = ann
        .next("ann's peers", |r| match r {
            Report::Peers {
                req: Some(4),
                peers,
            } => Some(peers),
            _ => None,
        })
        .await;
    assert_eq!(peers, vec![bob_id.clone()]);
    ann.command(&Command::Stats { req: Some(5) }).await;
    let stats = ann
        .next("ann's stats", |r| match r {
            Report::Stats {
                req: Some(5),
                stats,
            } => Some(stats),
            _ => None,
        })
        .await;
    assert_eq!(stats.get("links").and_then(|v| v.as_u64()), Some(1));

    // `leave` says goodbye: bob sees ann leave, and ann's process ends with success.
    ann.command(&Command::Leave { req: Some(6) }).await;
    ann.next("ann's left", |r| match r {
        Report::Left { req: Some(6), .. } => Some(()),
        _ => None,
    })
    .await;
    let status = tokio::time::timeout(PATIENCE, ann.child.wait())
        .await
        .expect("ann exits")
        .expect("wait");
    assert!(status.success(), "{status}");
    let gone = ann_id.clone();
    bob.next("ann gone at bob", move |r| match r {
        Report::PeerDisconnected { peer, reason, .. } if peer == gone => Some(reason),
        _ => None,
    })
    .await;

    drop(bob);
    let _ = stop.send(());
    let _ = tokio::time::timeout(PATIENCE, serving).await;
}
