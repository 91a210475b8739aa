//! Terminal chat over a p2pmesh mesh.
//!
//! [`run`] joins the signaling server (starting one in this process when the server is on this
//! machine and nothing answers there; or one of several servers of a cluster, the next one when
//! the one joined is lost), then broadcasts each line read from `stdin` on the chat
//! topic and writes what happens to `stdout`, one line each:
//!
//! ```text
//! * no signaling server answered at ws://127.0.0.1:8080: started one in this process (the browser chat: http://127.0.0.1:8080/)
//! * joined ws://127.0.0.1:8080 (room default, topic chat) as alice (3f9c2a71)
//! * bob joined
//! <bob> hi alice
//! [dm] <bob> a direct message
//! * bob left
//! ```
//!
//! Commands: `/peers` lists the neighbours and the names known; `/dm <peer> <text>` sends a direct
//! message to a peer named by its name or a prefix of its id (neighbour or not), and a name not
//! heard here is looked up in the DHT; `/put <key> <value>` publishes a record in the DHT and
//! `/get <key>` looks one up; `/quit` (or the end of `stdin`) leaves gracefully. Lines typed before
//! any peer is linked wait for the first link (at most [`MAX_QUEUED`] of them).
//!
//! # Names in the DHT
//!
//! When its first link comes up, a chat publishes its name in the mesh's DHT
//! ([`Mesh::put`](p2pmesh::Mesh::put)): the record named [`NAME_PREFIX`]` + name` (`name:alice`)
//! whose value is its peer id as 40 hex characters, text in the payload envelope (what the browser
//! chat's `put(key, string)` writes). `/dm alice …` for a name not heard on the topic (a peer on
//! another topic, or one whose hello was missed) gets that record and sends to its publisher, whose
//! signature the DHT checked (the value is only informative). A name is first come, first served:
//! when another peer holds it, the chat says so, and `/dm` by that name reaches the other peer. The
//! chat removes its name when it leaves; a chat that ended without leaving keeps it until the record
//! expires (an hour), and since each run has a new peer id, a restarted chat finds its name taken
//! until then.
//!
//! `/put` and `/get` values are text, in the payload envelope too.
//!
//! # The chat message format
//!
//! Every payload, broadcast on the topic or sent directly, is one JSON object, sent as text in
//! p2pmesh's [payload envelope](p2pmesh::payload) (a `0x00` byte, then the UTF-8 JSON), so that
//! the browser chat on p2pmesh's JavaScript API receives it as a string:
//! `{"kind": K, "name": N, "text": T}` where `name` is the sender's display name and `kind` is
//! - `"hello"`: broadcast once, when the node's first link comes up (others print `* N joined` and
//!   answer with a direct `"here"`);
//! - `"here"`: the direct answer to a hello, so that a newcomer learns who is there;
//! - `"chat"`: a line (broadcast) or, sent directly, a `/dm`, with `text`;
//! - `"bye"`: broadcast before leaving.
//!
//! A received payload is read through [`p2pmesh::payload::decode`]; one without the envelope (an
//! older chat-cli's bare JSON) is read as JSON too. A payload that is not such an object is shown
//! as text, with the sender's short id.

#![deny(missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_util::StreamExt as _;
use p2pmesh::{Event, Mesh, Message, NodeId, PutOutcome, Record, StoreError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Lines kept while no peer is linked yet.
pub const MAX_QUEUED: usize = 100;

/// What a chat's name record is called in the DHT: this, then the name.
pub const NAME_PREFIX: &str = "name:";

/// How long leaving waits for the removal of our name from the DHT.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

/// DHT results waiting for the chat loop.
const DHT_QUEUE: usize = 64;

/// How long the end of `stdin` waits for a first link when lines are still queued.
const EOF_WAIT: Duration = Duration::from_secs(15);

/// Time given to the last messages (a bye, lines just sent) to spread before leaving.
const LINGER: Duration = Duration::from_millis(500);

/// The chat's options (also its command line).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "chat-cli",
    about = "Terminal chat over a p2pmesh mesh",
    version
)]
pub struct Config {
    /// The signaling server. When it is on this machine and nothing answers, one is started in
    /// this process. Several servers of one cluster (repeat the flag, or separate the URLs with
    /// commas) are tried in order, the next one when the one joined is lost; none is started
    /// then.
    #[arg(
        long = "server",
        env = "P2PMESH_SERVER",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080"
    )]
    pub servers: Vec<String>,
    /// The name shown to others (default: `user-` and the start of the peer id).
    #[arg(long)]
    pub name: Option<String>,
    /// The signaling room (default: the server's default room).
    #[arg(long)]
    pub room: Option<String>,
    /// The gossip topic of the chat.
    #[arg(long, default_value = "chat")]
    pub topic: String,
    /// Never start a signaling server, even when none answers.
    #[arg(long)]
    pub no_host: bool,
    /// More log output on stderr (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Config {
    /// The defaults, as with no flags.
    pub fn new() -> Self {
        Self {
            servers: vec!["ws://127.0.0.1:8080".into()],
            name: None,
            room: None,
            topic: "chat".into(),
            no_host: false,
            verbose: 0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the chat stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mesh failed (e.g. the server could not be joined).
    #[error(transparent)]
    Mesh(#[from] p2pmesh::Error),
    /// Reading stdin or writing stdout failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server URL is not a `ws://` URL with a host.
    #[error("not a ws:// URL with a host: {0}")]
    BadUrl(String),
}

/// One chat payload (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `hello`, `here`, `chat` or `bye`.
    pub kind: String,
    /// The sender's display name.
    pub name: String,
    /// The line, for `chat`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl ChatMessage {
    fn new(kind: &str, name: &str, text: &str) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            text: text.into(),
        }
    }

    /// The payload: the JSON object as text in the payload envelope.
    fn to_bytes(&self) -> Vec<u8> {
        p2pmesh::payload::encode_text(&serde_json::to_string(self).unwrap_or_default())
    }

    /// The chat message in a received payload, or the text to show for a payload that is not one.
    fn from_payload(data: &[u8]) -> Result<Self, String> {
        let bytes = p2pmesh::payload::decode(data).as_bytes();
        serde_json::from_slice(bytes).map_err(|_| String::from_utf8_lossy(bytes).into_owned())
    }
}

/// A line typed by the user, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input<'a> {
    /// Nothing (blank).
    Empty,
    /// `/quit` or `/exit`.
    Quit,
    /// `/peers`.
    Peers,
    /// `/help`.
    Help,
    /// `/dm <who> <text>`.
    Dm { who: &'a str, text: &'a str },
    /// `/put <key> <value>` (the value is the rest of the line).
    Put { key: &'a str, value: &'a str },
    /// `/get <key>`.
    Get { key: &'a str },
    /// A command used wrongly: how to use it.
    Usage(&'static str),
    /// An unknown `/command`.
    Unknown(&'a str),
    /// A line to broadcast (`//…` too: it is not a command).
    Line(&'a str),
}

const HELP: &str = "* /peers, /dm <name or id prefix> <text> (a name not seen here is looked up in \
                    the DHT), /put <key> <value>, /get <key>, /quit; other lines are sent to everyone";

impl<'a> Input<'a> {
    fn parse(line: &'a str) -> Self {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Self::Empty;
        }
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        // The first word of `rest` and what follows it.
        let split = |rest: &'a str| {
            let rest = rest.trim_start();
            rest.split_once(' ').unwrap_or((rest, ""))
        };
        match command {
            "/quit" | "/exit" => Self::Quit,
            "/peers" => Self::Peers,
            "/help" => Self::Help,
            "/dm" => match split(rest) {
                (who, text) if !who.is_empty() && !text.trim().is_empty() => Self::Dm { who, text },
                _ => Self::Usage("* usage: /dm <name or id prefix> <text>"),
            },
            "/put" => match split(rest) {
                (key, value) if !key.is_empty() && !value.is_empty() => Self::Put { key, value },
                _ => Self::Usage("* usage: /put <key> <value>"),
            },
            "/get" => match rest.trim() {
                key if !key.is_empty() && !key.contains(' ') => Self::Get { key },
                _ => Self::Usage("* usage: /get <key>"),
            },
            _ if command.starts_with('/') && !command.starts_with("//") => Self::Unknown(command),
            _ => Self::Line(line),
        }
    }
}

/// The result of a DHT command the chat started, for its loop.
#[derive(Debug)]
enum DhtDone {
    /// Our name was published (on the first link).
    Published(Result<PutOutcome, p2pmesh::Error>),
    /// A `/put`.
    Put {
        key: String,
        result: Result<PutOutcome, p2pmesh::Error>,
    },
    /// A `/get`.
    Got {
        key: String,
        result: Result<Option<Record>, p2pmesh::Error>,
    },
    /// The lookup of a `/dm`'s name.
    Resolved {
        who: String,
        text: String,
        result: Result<Option<Record>, p2pmesh::Error>,
    },
}

/// Times a publication of our name that no node answered is tried again, and the wait before each.
const PUBLISH_RETRIES: usize = 5;
const PUBLISH_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The record under which `name` is published.
fn name_key(name: &str) -> String {
    format!("{NAME_PREFIX}{name}")
}

/// A record's value as the chat shows it: text, or bytes in hex.
fn shown(value: &[u8]) -> String {
    match p2pmesh::payload::decode(value) {
        p2pmesh::payload::Payload::Text(text) => text.to_owned(),
        p2pmesh::payload::Payload::Binary(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// A duration as the chat shows it: `42s`, `3m12s`, `2h5m`.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, s / 60 % 60),
    }
}

/// A signaling server this process started; stopped when the chat ends.
struct HostedServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The host and port of a `ws://host[:port][/path]` URL (parsed by the `url` crate; without a
/// port, ws's default 80).
fn server_addr(url: &str) -> Result<(String, u16), Error> {
    let bad = || Error::BadUrl(url.to_owned());
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    if parsed.scheme() != "ws" {
        return Err(bad());
    }
    let host = match parsed.host().ok_or_else(bad)? {
        url::Host::Domain(domain) => domain.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    let port = parsed.port_or_known_default().ok_or_else(bad)?;
    Ok((host, port))
}

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// Starts a server at `addr` when nothing answers there. `None` when one answers, or when the
/// address was taken meanwhile (another chat started one first). Like the `signaling-server`
/// binary, it serves the browser chat (apps/chat-web/dist, built by `cargo xtask web`) at `GET /`.
async fn host_if_absent(addr: SocketAddr) -> Option<HostedServer> {
    let probe = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr));
    if matches!(probe.await, Ok(Ok(_))) {
        return None;
    }
    let config = signaling_server::Config {
        addr,
        ..signaling_server::Config::default()
    };
    let server = signaling_server::Server::bind(config).await.ok()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Some(HostedServer { stop, task })
}

fn short(id: &NodeId) -> String {
    let mut s = id.to_string();
    s.truncate(8);
    s
}

struct Chat<W> {
    mesh: Mesh,
    topic: String,
    name: String,
    out: W,
    /// Display names of the peers heard from.
    names: HashMap<NodeId, String>,
    /// Whether our hello went out (on the first link).
    greeted: bool,
    queued: VecDeque<String>,
    /// Where the DHT commands' tasks send their results.
    dht: mpsc::Sender<DhtDone>,
    /// Whether our name is published in the DHT (removed when leaving).
    published: bool,
}

impl<W: AsyncWrite + Unpin> Chat<W> {
    async fn say(&mut self, line: &str) -> Result<(), Error> {
        self.out.write_all(line.as_bytes()).await?;
        self.out.write_all(b"\n").await?;
        self.out.flush().await?;
        Ok(())
    }

    fn display(&self, id: &NodeId) -> String {
        self.names.get(id).cloned().unwrap_or_else(|| short(id))
    }

    async fn broadcast(&mut self, message: &ChatMessage) -> Result<(), Error> {
        self.mesh.broadcast(&self.topic, message.to_bytes()).await?;
        Ok(())
    }

    /// A line typed by the user. Returns false on `/quit`.
    async fn handle_line(&mut self, line: &str) -> Result<bool, Error> {
        match Input::parse(line) {
            Input::Empty => {}
            Input::Quit => return Ok(false),
            Input::Peers => self.list_peers().await?,
            Input::Help => self.say(HELP).await?,
            Input::Dm { who, text } => self.direct(who, text).await?,
            Input::Put { key, value } => {
                let (mesh, key) = (self.mesh.clone(), key.to_owned());
                let value = p2pmesh::payload::encode_text(value);
                self.spawn_dht(async move {
                    let result = mesh.put(&key, value).await;
                    DhtDone::Put { key, result }
                });
            }
            Input::Get { key } => {
                let (mesh, key) = (self.mesh.clone(), key.to_owned());
                self.spawn_dht(async move {
                    let result = mesh.get(&key).await;
                    DhtDone::Got { key, result }
                });
            }
            Input::Usage(usage) => self.say(usage).await?,
            Input::Unknown(command) => {
                self.say(&format!("* unknown command {command} (try /help)"))
                    .await?;
            }
            Input::Line(line) => {
                if self.greeted {
                    let message = ChatMessage::new("chat", &self.name, line);
                    self.broadcast(&message).await?;
                } else if self.queued.len() < MAX_QUEUED {
                    self.queued.push_back(line.to_owned());
                } else {
                    self.say("* no peers yet and too many lines waiting: line dropped")
                        .await?;
                }
            }
        }
        Ok(true)
    }

    /// Runs a DHT command in a task of its own (it may take seconds); its result comes back to the
    /// chat loop.
    fn spawn_dht(&self, command: impl Future<Output = DhtDone> + Send + 'static) {
        let results = self.dht.clone();
        tokio::spawn(async move {
            let _ = results.send(command.await).await;
        });
    }

    /// What a DHT command ended with.
    async fn handle_dht(&mut self, done: DhtDone) -> Result<(), Error> {
        match done {
            DhtDone::Published(Ok(outcome)) => {
                self.published = true;
                self.published_name(outcome).await
            }
            DhtDone::Published(Err(err)) => {
                // Unless the node refused the command, it publishes the record (and republishes it
                // later, also after a timeout, and where another peer's name is not stored):
                // removed when leaving.
                self.published = !matches!(
                    err,
                    p2pmesh::Error::KeyTooLarge { .. }
                        | p2pmesh::Error::ValueTooLarge { .. }
                        | p2pmesh::Error::EmptyValue
                        | p2pmesh::Error::Busy
                );
                let line = if err == p2pmesh::Error::DhtRefused(StoreError::OtherPublisher) {
                    format!(
                        "* the name {} is another peer's in the DHT: a /dm {} from a peer that \
                         has not seen you reaches them",
                        self.name, self.name
                    )
                } else {
                    format!("* could not publish your name in the DHT: {err}")
                };
                self.say(&line).await
            }
            DhtDone::Put { key, result } => {
                let line = match result {
                    Ok(outcome) => format!(
                        "* put {key}: stored by {} of {} nodes",
                        outcome.stored, outcome.asked
                    ),
                    Err(err) => format!("* put {key} failed: {err}"),
                };
                self.say(&line).await
            }
            DhtDone::Got { key, result } => {
                let line = match result {
                    Ok(Some(record)) => format!(
                        "* {key} = {} (publisher {}, seq {}, {} old)",
                        shown(&record.value),
                        self.display(&record.publisher),
                        record.seq,
                        age(record.age)
                    ),
                    Ok(None) => format!("* {key}: not found"),
                    Err(err) => format!("* get {key} failed: {err}"),
                };
                self.say(&line).await
            }
            DhtDone::Resolved { who, text, result } => match result {
                Ok(Some(record)) if record.publisher != self.mesh.local_id() => {
                    let to = record.publisher;
                    // Learned: the name is known from now on (until another says otherwise).
                    self.names.entry(to).or_insert_with(|| who.clone());
                    self.send_direct(to, &text).await
                }
                Ok(Some(_)) => self.say(&format!("* {who} is you")).await,
                Ok(None) => {
                    let line = format!("* no peer called {who}: not seen here, not in the DHT");
                    self.say(&line).await
                }
                Err(err) => {
                    let line = format!("* no peer called {who} seen here, and the DHT: {err}");
                    self.say(&line).await
                }
            },
        }
    }

    async fn list_peers(&mut self) -> Result<(), Error> {
        let peers = self.mesh.peers().await?;
        let linked: Vec<String> = peers
            .iter()
            .map(|p| match self.names.get(p) {
                Some(name) => format!("{name} ({})", short(p)),
                None => short(p),
            })
            .collect();
        let mut known: Vec<&str> = self.names.values().map(String::as_str).collect();
        known.sort_unstable();
        let line = if linked.is_empty() && known.is_empty() {
            "* no peers yet".to_owned()
        } else {
            format!(
                "* {} linked: {}; {} known by name: {}",
                linked.len(),
                linked.join(", "),
                known.len(),
                known.join(", ")
            )
        };
        self.say(&line).await
    }

    fn resolve(&self, who: &str) -> Option<NodeId> {
        let by_name: Vec<NodeId> = self
            .names
            .iter()
            .filter(|(_, name)| name.as_str() == who)
            .map(|(id, _)| *id)
            .collect();
        if let [id] = by_name[..] {
            return Some(id);
        }
        if let Ok(id) = who.parse::<NodeId>() {
            return Some(id);
        }
        let prefix = who.to_ascii_lowercase();
        let by_prefix: Vec<NodeId> = self
            .names
            .keys()
            .filter(|id| id.to_string().starts_with(&prefix))
            .copied()
            .collect();
        match by_prefix[..] {
            [id] if prefix.len() >= 4 => Some(id),
            _ => None,
        }
    }

    async fn published_name(&mut self, outcome: PutOutcome) -> Result<(), Error> {
        let line = format!(
            "* your name is published in the DHT ({}, stored by {} of {} nodes)",
            name_key(&self.name),
            outcome.stored,
            outcome.asked
        );
        self.say(&line).await
    }

    /// A `/dm`: to the peer `who` names here, or else to the publisher of its name in the DHT.
    async fn direct(&mut self, who: &str, text: &str) -> Result<(), Error> {
        if let Some(to) = self.resolve(who) {
            return self.send_direct(to, text).await;
        }
        if who == self.name {
            return self.say(&format!("* {who} is you")).await;
        }
        let (mesh, who, text) = (self.mesh.clone(), who.to_owned(), text.to_owned());
        self.say(&format!(
            "* {who} not seen here: looking the name up in the DHT"
        ))
        .await?;
        self.spawn_dht(async move {
            let result = mesh.get(name_key(&who)).await;
            DhtDone::Resolved { who, text, result }
        });
        Ok(())
    }

    async fn send_direct(&mut self, to: NodeId, text: &str) -> Result<(), Error> {
        let message = ChatMessage::new("chat", &self.name, text);
        match self.mesh.send(to, message.to_bytes()).await {
            Ok(_) => Ok(()),
            Err(err) => self.say(&format!("* could not send: {err}")).await,
        }
    }

    async fn handle_event(&mut self, event: Event) -> Result<(), Error> {
        match event {
            Event::PeerConnected { .. } if !self.greeted => {
                self.greeted = true;
                let hello = ChatMessage::new("hello", &self.name, "");
                self.broadcast(&hello).await?;
                let mesh = self.mesh.clone();
                let (key, id) = (name_key(&self.name), self.mesh.local_id().to_string());
                self.spawn_dht(async move {
                    let value = p2pmesh::payload::encode_text(&id);
                    // A put that reached nobody (the only link went away meanwhile) is tried again.
                    let mut result = mesh.put(&key, value.clone()).await;
                    for _ in 0..PUBLISH_RETRIES {
                        if result != Err(p2pmesh::Error::DhtTimeout) {
                            break;
                        }
                        tokio::time::sleep(PUBLISH_RETRY_AFTER).await;
                        result = mesh.put(&key, value.clone()).await;
                    }
                    DhtDone::Published(result)
                });
                while let Some(line) = self.queued.pop_front() {
                    let message = ChatMessage::new("chat", &self.name, &line);
                    self.broadcast(&message).await?;
                }
            }
            Event::Message(message) => self.handle_message(message).await?,
            Event::DirectFailed { to, .. } => {
                let line = format!(
                    "* a direct message to {} was not delivered",
                    self.display(&to)
                );
                self.say(&line).await?;
            }
            Event::Lagged { missed } => {
                self.say(&format!("* {missed} events were missed")).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn handle_message(&mut self, message: Message) -> Result<(), Error> {
        let direct = message.topic.is_none();
        if message.topic.as_deref().is_some_and(|t| t != self.topic) {
            return Ok(());
        }
        let chat = match ChatMessage::from_payload(&message.data) {
            Ok(chat) => chat,
            Err(text) => {
                let line = format!("<{}> {text}", short(&message.from));
                return self.say(&line).await;
            }
        };
        let from = message.from;
        let known = self.names.insert(from, chat.name.clone()).is_some();
        match chat.kind.as_str() {
            "hello" => {
                if !known {
                    self.say(&format!("* {} joined", chat.name)).await?;
                }
                let here = ChatMessage::new("here", &self.name, "");
                if let Err(err) = self.mesh.send(from, here.to_bytes()).await {
                    tracing::debug!(%err, "could not answer a hello");
                }
            }
            "here" => {
                if !known {
                    self.say(&format!("* {} is here", chat.name)).await?;
                }
            }
            "bye" => {
                self.names.remove(&from);
                self.say(&format!("* {} left", chat.name)).await?;
            }
            _ if direct => {
                self.say(&format!("[dm] <{}> {}", chat.name, chat.text))
                    .await?;
            }
            _ => self.say(&format!("<{}> {}", chat.name, chat.text)).await?,
        }
        Ok(())
    }
}

/// Runs the chat until `/quit` or the end of `stdin`: what the `chat-cli` binary does, and what
/// tests call with their own `stdin` and `stdout`.
pub async fn run<R, W>(config: Config, stdin: R, stdout: W) -> Result<(), Error>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let addrs = config
        .servers
        .iter()
        .map(|url| server_addr(url))
        .collect::<Result<Vec<_>, _>>()?;
    let local = addrs.iter().all(|(host, _)| is_local(host));
    let mut out = stdout;
    let mut hosted = None;
    // Only a lone server is started here: beside a cluster it would be a room of its own.
    if let ([(host, port)], [url]) = (addrs.as_slice(), config.servers.as_slice())
        && local
        && !config.no_host
    {
        let addr = (host.as_str(), *port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::BadUrl(url.clone()))?;
        hosted = host_if_absent(addr).await;
        if hosted.is_some() {
            let line = format!(
                "* no signaling server answered at {url}: started one in this process \
                 (the browser chat: http://{addr}/)"
            );
            out.write_all(format!("{line}\n").as_bytes()).await?;
            out.flush().await?;
        }
    }

    let mut builder = Mesh::builder()
        .signaling_urls(config.servers.clone())
        .join_timeout(Duration::from_secs(15));
    if let Some(room) = &config.room {
        builder = builder.room(room.clone());
    }
    if local {
        // Every peer of a server on this machine is on this machine.
        builder = builder.webrtc_config(p2pmesh::webrtc_adapter::Config::loopback());
    }
    let id = builder.peer_id()?;
    let mesh = builder.build()?;
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| format!("user-{}", short(&id)));
    let mut events = mesh.events();
    // The subscription makes the node receive the topic; messages are read from `events`.
    let _subscription = mesh.subscribe(&config.topic).await?;
    mesh.join().await?;

    let (dht, mut dht_results) = mpsc::channel(DHT_QUEUE);
    let mut chat = Chat {
        mesh: mesh.clone(),
        topic: config.topic.clone(),
        name,
        out,
        names: HashMap::new(),
        greeted: false,
        queued: VecDeque::new(),
        dht,
        published: false,
    };
    let servers = match config.servers.as_slice() {
        [one] => one.clone(),
        all => format!("one of {}", all.join(", ")),
    };
    let joined = format!(
        "* joined {servers} (room {}, topic {}) as {} ({})",
        config.room.as_deref().unwrap_or("default"),
        config.topic,
        chat.name,
        short(&id)
    );
    chat.say(&joined).await?;

    let mut lines = stdin.lines();
    let mut eof_deadline: Option<tokio::time::Instant> = None;
    let result = loop {
        if eof_deadline.is_some() && chat.queued.is_empty() {
            break Ok(());
        }
        let deadline = eof_deadline;
        tokio::select! {
            line = lines.next_line(), if eof_deadline.is_none() => match line {
                Ok(Some(line)) => match chat.handle_line(&line).await {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(err) => break Err(err),
                },
                Ok(None) => {
                    eof_deadline = Some(tokio::time::Instant::now() + EOF_WAIT);
                }
                Err(err) => break Err(err.into()),
            },
            event = events.next() => match event {
                Some(event) => {
                    if let Err(err) = chat.handle_event(event).await {
                        break Err(err);
                    }
                }
                None => break Ok(()),
            },
            Some(done) = dht_results.recv() => {
                if let Err(err) = chat.handle_dht(done).await {
                    break Err(err);
                }
            }
            () = sleep_until(deadline) => {
                let n = chat.queued.len();
                chat.say(&format!("* no peer came: {n} queued lines not sent")).await?;
                break Ok(());
            }
        }
    };

    if chat.greeted {
        let bye = ChatMessage::new("bye", &chat.name, "");
        let _ = chat.broadcast(&bye).await;
    }
    if chat.published {
        // So that a lookup of the name finds nothing rather than a peer that left.
        let removal = tokio::time::timeout(REMOVE_WAIT, mesh.remove(name_key(&chat.name)));
        if let Ok(Err(err)) = removal.await {
            tracing::debug!(%err, "could not remove the name from the DHT");
        }
    }
    tokio::time::sleep(LINGER).await;
    mesh.leave().await?;
    if let Some(server) = hosted {
        let _ = server.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), server.task).await;
    }
    result
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_parse() {
        assert_eq!(
            server_addr("ws://127.0.0.1:8080").expect("url"),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            server_addr("ws://[::1]:9/x").expect("url"),
            ("::1".into(), 9)
        );
        assert_eq!(
            server_addr("ws://LocalHost:80/room?x=1").expect("url"),
            ("localhost".into(), 80)
        );
        assert!(server_addr("http://a:1").is_err());
        assert!(server_addr("wss://a:1").is_err());
        assert_eq!(
            server_addr("ws://example.org").expect("url"),
            ("example.org".into(), 80)
        );
        assert!(server_addr("ws://a:99999").is_err());
        assert!(server_addr("ws://:1").is_err());
        assert!(server_addr("not a url").is_err());
    }

    #[test]
    fn several_servers_are_given_by_repeating_the_flag_or_with_commas() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            Config::try_parse_from(std::iter::once("chat-cli").chain(args.iter().copied()))
                .expect("flags")
                .servers
        };
        assert_eq!(parse(&[]), ["ws://127.0.0.1:8080"]);
        assert_eq!(parse(&["--server", "ws://a:1"]), ["ws://a:1"]);
        assert_eq!(
            parse(&["--server", "ws://a:1,ws://b:2", "--server", "ws://c:3"]),
            ["ws://a:1", "ws://b:2", "ws://c:3"]
        );
    }

    #[test]
    fn commands_parse() {
        use Input::*;
        assert_eq!(Input::parse(""), Empty);
        assert_eq!(Input::parse("   \r\n"), Empty);
        assert_eq!(Input::parse("/quit"), Quit);
        assert_eq!(Input::parse("/exit\r"), Quit);
        assert_eq!(Input::parse("/peers"), Peers);
        assert_eq!(Input::parse("/help"), Help);
        assert_eq!(
            Input::parse("/dm bob hi there"),
            Dm {
                who: "bob",
                text: "hi there"
            }
        );
        assert_eq!(
            Input::parse("/dm  bob hi"),
            Dm {
                who: "bob",
                text: "hi"
            }
        );
        assert!(matches!(Input::parse("/dm bob"), Usage(u) if u.contains("/dm")));
        assert!(matches!(Input::parse("/dm bob   "), Usage(_)));
        assert!(matches!(Input::parse("/dm"), Usage(_)));
        assert_eq!(
            Input::parse("/put motto carpe diem"),
            Put {
                key: "motto",
                value: "carpe diem"
            }
        );
        assert!(matches!(Input::parse("/put motto"), Usage(u) if u.contains("/put")));
        assert!(matches!(Input::parse("/put"), Usage(_)));
        assert_eq!(Input::parse("/get motto"), Get { key: "motto" });
        assert_eq!(Input::parse("/get  motto "), Get { key: "motto" });
        assert!(matches!(Input::parse("/get"), Usage(u) if u.contains("/get")));
        assert!(matches!(Input::parse("/get two words"), Usage(_)));
        assert_eq!(Input::parse("/nope x"), Unknown("/nope"));
        assert_eq!(Input::parse("//not a command"), Line("//not a command"));
        assert_eq!(Input::parse("hello all\n"), Line("hello all"));
    }

    #[test]
    fn dht_names_values_and_ages_read_well() {
        assert_eq!(name_key("alice"), "name:alice");
        assert_eq!(
            shown(&p2pmesh::payload::encode_text("carpe diem")),
            "carpe diem"
        );
        assert_eq!(shown(&[0xff, 0x01]), "0xff01");
        assert_eq!(age(Duration::from_millis(1_500)), "1s");
        assert_eq!(age(Duration::from_secs(192)), "3m12s");
        assert_eq!(age(Duration::from_secs(7_500)), "2h5m");
    }

    #[test]
    fn chat_messages_are_small_json_in_a_text_envelope() {
        let m = ChatMessage::new("chat", "alice", "hi");
        let bytes = m.to_bytes();
        assert_eq!(
            p2pmesh::payload::decode(&bytes),
            p2pmesh::payload::Payload::Text(r#"{"kind":"chat","name":"alice","text":"hi"}"#)
        );
        assert_eq!(ChatMessage::from_payload(&bytes), Ok(m));
        // An older chat-cli's bare JSON, and text that is not a chat message.
        assert_eq!(
            ChatMessage::from_payload(br#"{"kind":"here","name":"bob"}"#),
            Ok(ChatMessage::new("here", "bob", ""))
        );
        assert_eq!(
            ChatMessage::from_payload(&p2pmesh::payload::encode_text("plain words")),
            Err("plain words".to_owned())
        );
        assert_eq!(
            ChatMessage::from_payload(&p2pmesh::payload::encode_binary(&[0xff, b'a'])),
            Err("\u{fffd}a".to_owned())
        );
        let hello: ChatMessage =
            serde_json::from_slice(br#"{"kind":"hello","name":"bob"}"#).expect("json");
        assert_eq!(hello, ChatMessage::new("hello", "bob", ""));
    }
}
