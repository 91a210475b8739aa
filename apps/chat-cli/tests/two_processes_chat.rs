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
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-cli"))
            .args(["--server", url, "--name", name, "--no-host"])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chats_talk_through_their_terminals() {
    let server = signaling_server::Server::bind(signaling_server::Config::ephemeral())
        .await
        .expect("bind");
    let url = format!("ws://{}", server.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

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
