//! `mesh-node`: a p2pmesh node driven by JSON lines. It joins `--server`'s `--room`, reads one
//! command per line on stdin and writes one report per line on stdout (the line protocol of
//! `test_mesh::{Command, Report}`, documented in docs/protocol.md); logs go to stderr. It leaves
//! the mesh on a `leave` command or at the end of stdin, and exits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt as _;
use p2pmesh::{Event, Mesh, NodeId, Subscription};
use serde_json::{Map, Value, json};
use test_mesh::forge::{Forgery, ForgingConnector, Kind};
use test_mesh::{Command, Report, digest, now_us, payload, preview};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Stdout};
use tracing_subscriber::EnvFilter;

/// A p2pmesh node driven by JSON lines on stdin, reporting JSON lines on stdout.
#[derive(Parser, Debug)]
#[command(name = "mesh-node", version, about)]
struct Args {
    /// The signaling server; several servers of one cluster (repeat the flag, or separate the
    /// URLs with commas) are tried in order, the next one when the one joined is lost.
    #[arg(
        long = "server",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080"
    )]
    servers: Vec<String>,
    /// The room.
    #[arg(long, default_value = "mesh")]
    room: String,
    /// The address WebRTC gathers its candidates on (127.0.0.1: loopback candidates only).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Report the broadcasts of every topic, not only those subscribed to.
    #[arg(long)]
    all_topics: bool,
    /// Topics to subscribe to at start (repeatable).
    #[arg(long)]
    subscribe: Vec<String>,
    /// Most links (`max_peers`).
    #[arg(long, default_value_t = 5)]
    max_peers: usize,
    /// Seconds to wait for the server's welcome.
    #[arg(long, default_value_t = 30)]
    join_timeout: u64,
    /// Accept `forge` commands: this node's links rewrite its marked messages into forgeries (a
    /// test instrument for the `forged` scenario).
    #[arg(long)]
    forger: bool,
}

/// Writes reports, one JSON line each, flushed.
struct Out(Stdout);

impl Out {
    async fn say(&mut self, report: &Report) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(report).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.0.write_all(&line).await?;
        self.0.flush().await
    }
}

fn parse_id(text: &str) -> Result<NodeId, String> {
    text.parse::<NodeId>()
        .map_err(|e| format!("not a node id: {text:?} ({e})"))
}

fn counters(stats: &p2pmesh::Stats) -> Map<String, Value> {
    let node = &stats.node;
    let values = json!({
        "links": stats.links,
        "frames_dropped_full": stats.frames_dropped_full,
        "signals_dropped": stats.signals_dropped,
        "node.frames_received": node.frames_received,
        "node.frames_sent": node.frames_sent,
        "node.dropped_malformed": node.dropped_malformed,
        "node.dropped_oversized": node.dropped_oversized,
        "node.dropped_unexpected": node.dropped_unexpected,
        "node.dropped_bad_signature": node.dropped_bad_signature,
        "node.dropped_no_route": node.dropped_no_route,
        "node.routed_forwarded": node.routed_forwarded,
        "node.routed_delivered": node.routed_delivered,
        "node.server_fallbacks": node.server_fallbacks,
        "node.direct_retries": node.direct_retries,
        "node.links_up": node.links_up,
        "node.link_failures": node.link_failures,
        "node.hello_failures": node.hello_failures,
        "gossip.delivered": node.gossip.delivered,
        "gossip.duplicates": node.gossip.duplicates,
        "gossip.payload_retries": node.gossip.payload_retries,
        "gossip.grafts_sent": node.gossip.grafts_sent,
        "gossip.dropped_bad_signature": node.gossip.dropped_bad_signature,
        "gossip.dropped_key_mismatch": node.gossip.dropped_key_mismatch,
        "gossip.dropped_id_mismatch": node.gossip.dropped_id_mismatch,
        "gossip.dropped_unsigned": node.gossip.dropped_unsigned,
    });
    match values {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Carries out one command; `Ok(false)` when the node left.
async fn handle(
    mesh: &Mesh,
    forgery: Option<&Forgery>,
    subscriptions: &mut Vec<Subscription>,
    out: &mut Out,
    command: Command,
) -> Result<bool, Box<dyn std::error::Error>> {
    match command {
        Command::Broadcast {
            req,
            topic,
            data,
            size,
        } => {
            let bytes = payload(&data, size);
            let report = Report::Broadcast {
                req,
                topic: topic.clone(),
                bytes: bytes.len(),
                sha1: digest(&bytes),
                at_us: now_us(),
            };
            match mesh.broadcast(&topic, bytes).await {
                Ok(_) => out.say(&report).await?,
                Err(err) => failed(out, req, err).await?,
            }
        }
        Command::Send {
            req,
            to,
            data,
            size,
        } => {
            let to_id = match parse_id(&to) {
                Ok(id) => id,
                Err(err) => {
                    failed(out, req, err).await?;
                    return Ok(true);
                }
            };
            let bytes = payload(&data, size);
            let (len, sha1, at_us) = (bytes.len(), digest(&bytes), now_us());
            match mesh.send(to_id, bytes).await {
                Ok(id) => {
                    out.say(&Report::Sent {
                        req,
                        to,
                        direct_id: id.to_string(),
                        bytes: len,
                        sha1,
                        at_us,
                    })
                    .await?;
                }
                Err(err) => failed(out, req, err).await?,
            }
        }
        Command::Subscribe { req, topic } => match mesh.subscribe(&topic).await {
            Ok(subscription) => {
                // Messages are reported from the event stream; the subscription only has to live.
                subscriptions.push(subscription);
                out.say(&Report::Subscribed { req, topic }).await?;
            }
            Err(err) => failed(out, req, err).await?,
        },
        Command::Leave { req } => {
            mesh.leave().await?;
            out.say(&Report::Left {
                req,
                at_us: now_us(),
            })
            .await?;
            return Ok(false);
        }
        Command::Peers { req } => match mesh.peers().await {
            Ok(peers) => {
                let peers = peers.iter().map(ToString::to_string).collect();
                out.say(&Report::Peers { req, peers }).await?;
            }
            Err(err) => failed(out, req, err).await?,
        },
        Command::Stats { req } => match mesh.stats().await {
            Ok(stats) => {
                out.say(&Report::Stats {
                    req,
                    stats: counters(&stats),
                })
                .await?;
            }
            Err(err) => failed(out, req, err).await?,
        },
        Command::Forge {
            req,
            kind,
            victim,
            to,
            tag,
        } => {
            let Some(forgery) = forgery else {
                {
                    failed(out, req, "forge needs --forger").await?;
                    return Ok(true);
                };
            };
            if let Some(victim) = victim {
                match parse_id(&victim) {
                    Ok(victim) => forgery.set_victim(victim),
                    Err(err) => {
                        failed(out, req, err).await?;
                        return Ok(true);
                    }
                }
            }
            let data = format!("{}{tag}", kind.marker()).into_bytes();
            let at_us = now_us();
            let sent = match (kind, to) {
                (Kind::SpoofedSender, Some(to)) => match parse_id(&to) {
                    Ok(to) => mesh.send(to, data).await.map(|_| ()),
                    Err(err) => {
                        failed(out, req, err).await?;
                        return Ok(true);
                    }
                },
                (Kind::SpoofedSender, None) => {
                    failed(out, req, "spoofed_sender needs `to`").await?;
                    return Ok(true);
                }
                (_, _) => mesh.broadcast("forged", data).await.map(|_| ()),
            };
            match sent {
                Ok(()) => out.say(&Report::Forged { req, kind, at_us }).await?,
                Err(err) => failed(out, req, err).await?,
            }
        }
    }
    Ok(true)
}

async fn failed(out: &mut Out, req: Option<u64>, err: impl ToString) -> std::io::Result<()> {
    out.say(&Report::Error {
        req,
        message: err.to_string(),
    })
    .await
}

fn report_of(event: Event) -> Option<Report> {
    let at_us = now_us();
    Some(match event {
        Event::PeerConnected { peer } => Report::PeerConnected {
            peer: peer.to_string(),
            at_us,
        },
        Event::PeerDisconnected { peer, reason } => Report::PeerDisconnected {
            peer: peer.to_string(),
            reason: format!("{reason:?}"),
            at_us,
        },
        Event::PeerTimedOut { peer } => Report::PeerTimedOut {
            peer: peer.to_string(),
            at_us,
        },
        Event::Message(message) => Report::Message {
            from: message.from.to_string(),
            topic: message.topic,
            bytes: message.data.len(),
            sha1: digest(&message.data),
            preview: preview(&message.data),
            hops: message.hops,
            at_us,
        },
        Event::DirectFailed { id, to, reason } => Report::DirectFailed {
            direct_id: id.to_string(),
            to: to.to_string(),
            reason: format!("{reason:?}"),
            at_us,
        },
        Event::ServerDisconnected {
            reason,
            reconnecting,
        } => Report::ServerDisconnected {
            reason,
            reconnecting,
            at_us,
        },
        Event::ServerReconnected => Report::ServerReconnected { at_us },
        Event::Lagged { missed } => Report::Lagged { missed, at_us },
        _ => return None,
    })
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let webrtc = if args.bind.is_loopback() {
        p2pmesh::webrtc_adapter::Config::loopback()
    } else {
        p2pmesh::webrtc_adapter::Config {
            bind_addrs: vec![SocketAddr::new(args.bind, 0)],
            ..p2pmesh::webrtc_adapter::Config::default()
        }
    };
    let mut builder = Mesh::builder()
        .signaling_urls(args.servers.clone())
        .room(args.room.clone())
        .max_peers(args.max_peers)
        .receive_all_topics(args.all_topics)
        .join_timeout(Duration::from_secs(args.join_timeout));
    let (mesh, forgery) = if args.forger {
        let forgery = Forgery::new(builder.peer_id()?);
        let connector = ForgingConnector::new(
            p2pmesh::webrtc_adapter::Connector::new(webrtc),
            forgery.clone(),
        );
        (builder.connector(connector).build()?, Some(forgery))
    } else {
        (builder.webrtc_config(webrtc).build()?, None)
    };
    let mut events = mesh.events();
    let mut subscriptions = Vec::new();
    for topic in &args.subscribe {
        subscriptions.push(mesh.subscribe(topic).await?);
    }
    let mut out = Out(tokio::io::stdout());
    mesh.join().await?;
    out.say(&Report::Joined {
        id: mesh.local_id().to_string(),
        at_us: now_us(),
    })
    .await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Command>(&line) {
                    Ok(command) => {
                        if !handle(&mesh, forgery.as_ref(), &mut subscriptions, &mut out, command).await? {
                            return Ok(());
                        }
                    }
                    Err(err) => failed(&mut out, None, format!("not a command: {err}")).await?,
                }
            }
            event = events.next() => match event {
                Some(event) => {
                    if let Some(report) = report_of(event) {
                        out.say(&report).await?;
                    }
                }
                None => return Err("the mesh stopped".into()),
            },
        }
    }
    mesh.leave().await?;
    out.say(&Report::Left {
        req: None,
        at_us: now_us(),
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let line = serde_json::to_string(&Report::Error {
                req: None,
                message: err.to_string(),
            })
            .unwrap_or_default();
            println!("{line}");
            eprintln!("mesh-node: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
