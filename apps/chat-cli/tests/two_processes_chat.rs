//! Two `chat-cli` processes with piped stdin and stdout, against a signaling server this test
//! starts on an ephemeral port: they see each other join, a line typed in one appears in the
//! other, a `/dm` arrives, and `/quit` makes each leave (the other sees it) and exit cleanly.
//!
//! Waits are generous and only stop a hung test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;

const PATIENCE: Duration = Duration::from_secs(60);

struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Chat {
    fn start(url: &str, name: &str) -> Self {
        Self::start_with(url, name, &[])
    }

    fn start_with(url: &str, name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-cli"))
            .args(["--server", url, "--name", name, "--no-host"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chat-cli");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin: Some(stdin),
            stdout,
            seen: Vec::new(),
        }
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write stdin");
        stdin.flush().await.expect("flush");
    }

    /// Reads stdout until a line satisfies `f`; returns it.
    async fn expect_line(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let read = async {
            loop {
                match self.stdout.next_line().await.expect("read stdout") {
                    Some(line) => {
                        self.seen.push(line.clone());
                        if f(&line) {
                            return line;
                        }
                    }
                    None => panic!("stdout ended before {what}; saw {:?}", self.seen),
                }
            }
        };
        match tokio::time::timeout(PATIENCE, read).await {
            Ok(line) => line,
            Err(_) => panic!("gave up waiting for {what}; saw {:?}", self.seen),
        }
    }

    async fn exits_cleanly(mut self) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exits in time")
            .expect("wait");
        assert!(status.success(), "exit status {status}");
    }
}

/// A signaling server on an ephemeral port: its URL, and what stops it.
async fn start_server() -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let server = signaling_server::Server::bind(signaling_server::Config::ephemeral())
        .await
        .expect("bind");
    let url = format!("ws://{}", server.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (url, stop, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chats_talk_through_their_terminals() {
    let (url, stop, server) = start_server().await;

    let mut alice = Chat::start(&url, "alice");
    alice
        .expect_line("alice joined the server", |l| {
            l.starts_with("* joined") && l.contains("as alice")
        })
        .await;
    let mut bob = Chat::start(&url, "bob");
    bob.expect_line("bob joined the server", |l| {
        l.starts_with("* joined") && l.contains("as bob")
    })
    .await;

    // Each learns the other's name.
    // Both send their hello when their first link comes up, so the hellos may cross: whichever of
    // "joined" (his hello) and "is here" (his answer to hers) arrives first names him, once.
    alice
        .expect_line("bob's name", |l| {
            l == "* bob joined" || l == "* bob is here"
        })
        .await;
    bob.expect_line("alice's answer", |l| {
        l == "* alice is here" || l == "* alice joined"
    })
    .await;

    bob.type_line("hello from bob").await;
    alice
        .expect_line("bob's line", |l| l == "<bob> hello from bob")
        .await;

    alice.type_line("/dm bob just for you").await;
    bob.expect_line("alice's direct message", |l| {
        l == "[dm] <alice> just for you"
    })
    .await;

    alice.type_line("/peers").await;
    alice
        .expect_line("the peer list", |l| l.starts_with("* 1 linked: bob ("))
        .await;

    alice.type_line("/quit").await;
    bob.expect_line("alice leaves", |l| l == "* alice left")
        .await;
    alice.exits_cleanly().await;

    // The end of stdin also quits.
    let mut bob = bob;
    drop(bob.stdin.take());
    bob.exits_cleanly().await;

    let _ = stop.send(());
    let _ = tokio::time::timeout(PATIENCE, server).await;
}

/// Two chats in one room on different topics never hear each other's hello, so neither knows the
/// other's name: a `/dm` by name finds the peer through the name it published in the DHT, and
/// `/put` and `/get` exchange a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_reaches_a_name_never_seen_through_the_dht() {
    let (url, stop, server) = start_server().await;

    let mut carol = Chat::start_with(&url, "carol", &["--topic", "upstairs"]);
    carol
        .expect_line("carol joined the server", |l| {
            l.starts_with("* joined") && l.contains("as carol")
        })
        .await;
    let mut dave = Chat::start_with(&url, "dave", &["--topic", "downstairs"]);
    dave.expect_line("dave joined the server", |l| {
        l.starts_with("* joined") && l.contains("as dave")
    })
    .await;
    // Each publishes its name once linked (to the other: the only peer).
    carol
        .expect_line("carol's name in the DHT", |l| {
            l.starts_with("* your name is published in the DHT (name:carol")
        })
        .await;
    dave.expect_line("dave's name in the DHT", |l| {
        l.starts_with("* your name is published in the DHT (name:dave")
    })
    .await;

    carol.type_line("/peers").await;
    carol
        .expect_line("carol knows no name", |l| l.ends_with("0 known by name: "))
        .await;
    carol.type_line("/dm dave found you in the DHT").await;
    carol
        .expect_line("carol looks dave up", |l| {
            l == "* dave not seen here: looking the name up in the DHT"
        })
        .await;
    dave.expect_line("carol's direct message", |l| {
        l == "[dm] <carol> found you in the DHT"
    })
    .await;

    carol.type_line("/dm nobody are you there?").await;
    carol
        .expect_line("nobody is not found", |l| {
            l == "* no peer called nobody: not seen here, not in the DHT"
        })
        .await;

    dave.type_line("/put motto carpe diem").await;
    dave.expect_line("dave's put", |l| l.starts_with("* put motto: stored by "))
        .await;
    carol.type_line("/get motto").await;
    carol
        .expect_line("the record dave put", |l| {
            l.starts_with("* motto = carpe diem (publisher dave, seq ")
        })
        .await;
    carol.type_line("/get nothing-here").await;
    carol
        .expect_line("a key nobody put", |l| l == "* nothing-here: not found")
        .await;

    carol.type_line("/quit").await;
    carol.exits_cleanly().await;
    dave.type_line("/quit").await;
    dave.exits_cleanly().await;

    let _ = stop.send(());
    let _ = tokio::time::timeout(PATIENCE, server).await;
}
