//! `bench-node`: a native mesh node for `bench-web`'s broadcast-latency phase, driven through
//! stdin and reporting on stdout, one JSON object per line.
//!
//! It joins `--server` in `--room` (loopback WebRTC), subscribes to `--topic`, and prints
//! `{"event":"ready","id":ID}` once joined and `{"event":"link","peer":ID}` per link that comes
//! up. A stdin line `send SEQ` broadcasts `{"bench":NAME,"seq":SEQ,"sent_ms":T}` on the topic
//! (as text in p2pmesh's payload envelope, so the benchmark page receives a string),
//! where T is the wall clock in milliseconds since the Unix epoch (the clock a browser's
//! `performance.timeOrigin + performance.now()` also reads, on the same machine). Each such
//! broadcast received prints `{"event":"recv","origin":NAME,"seq":SEQ,"sent_ms":T,"recv_ms":R,
//! "hops":H}`, R read from the same clock right after the mesh hands the message over. `quit`
//! (or the end of stdin) leaves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::StreamExt as _;
use p2pmesh::{Event, Mesh};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Parser, Debug)]
#[command(name = "bench-node", about = "A native mesh node driven by bench-web")]
struct Args {
    /// The signaling server (`ws://127.0.0.1:PORT`).
    #[arg(long)]
    server: String,
    /// The room.
    #[arg(long)]
    room: String,
    /// The name carried in its broadcasts.
    #[arg(long)]
    name: String,
    /// The topic of the benchmark's broadcasts.
    #[arg(long, default_value = "bench")]
    topic: String,
}

/// A benchmark broadcast (the browser page sends the same JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Probe {
    bench: String,
    seq: u64,
    sent_ms: f64,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn say(out: &mut tokio::io::Stdout, value: serde_json::Value) -> std::io::Result<()> {
    out.write_all(format!("{value}\n").as_bytes()).await?;
    out.flush().await
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mesh = Mesh::builder()
        .signaling_url(args.server.clone())
        .room(args.room.clone())
        .webrtc_config(p2pmesh::webrtc_adapter::Config::loopback())
        .join_timeout(Duration::from_secs(30))
        .build()?;
    let mut events = mesh.events();
    let _subscription = mesh.subscribe(&args.topic).await?;
    mesh.join().await?;
    let mut out = tokio::io::stdout();
    say(
        &mut out,
        json!({"event": "ready", "id": mesh.local_id().to_string()}),
    )
    .await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let mut words = line.split_whitespace();
                match (words.next(), words.next().and_then(|s| s.parse::<u64>().ok())) {
                    (Some("send"), Some(seq)) => {
                        let probe = Probe { bench: args.name.clone(), seq, sent_ms: now_ms() };
                        // As text in the payload envelope: a browser receives a string.
                        let text = serde_json::to_string(&probe)?;
                        mesh.broadcast(&args.topic, p2pmesh::payload::encode_text(&text)).await?;
                    }
                    (Some("quit"), _) => break,
                    _ => eprintln!("bench-node: unknown command {line:?}"),
                }
            }
            event = events.next() => match event {
                Some(Event::Message(message)) => {
                    let recv_ms = now_ms();
                    if message.topic.as_deref() != Some(args.topic.as_str()) {
                        continue;
                    }
                    let bytes = p2pmesh::payload::decode(&message.data).as_bytes();
                    if let Ok(probe) = serde_json::from_slice::<Probe>(bytes) {
                        say(&mut out, json!({
                            "event": "recv",
                            "origin": probe.bench,
                            "seq": probe.seq,
                            "sent_ms": probe.sent_ms,
                            "recv_ms": recv_ms,
                            "hops": message.hops,
                        })).await?;
                    }
                }
                Some(Event::PeerConnected { peer }) => {
                    say(&mut out, json!({"event": "link", "peer": peer.to_string()})).await?;
                }
                Some(Event::Lagged { missed }) => {
                    say(&mut out, json!({"event": "lagged", "missed": missed})).await?;
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    mesh.leave().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-node: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
