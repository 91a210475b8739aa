//! Several servers as one, through Redis (`--redis redis://...`; decision 34 in docs/decisions.md,
//! the keys and messages in docs/protocol.md).
//!
//! # What is shared, and how
//!
//! - **Who is where.** Every server keeps a mirror of the whole cluster's membership in its
//!   [`Registry`](crate::registry::Registry): its own members with their sockets, the others'
//!   with the id of the server that holds them. Joins and leaves are published on one channel
//!   (`{prefix}:events`) that every server reads, and each server keeps its members in a hash
//!   (`{prefix}:members:{server}`) from which a server that starts or reconnects reads the rest.
//!   Introductions are therefore computed by each server from the whole room, with the same
//!   XOR walk as alone: the joiner's K closest of the room across all servers, and random ones.
//! - **Who holds an id.** A join claims `{prefix}:id:{peer}` in a Lua script that refuses it
//!   while another *live* server holds it, records the member and publishes the join, in one
//!   atomic step: the hijack check spans the cluster.
//! - **Who is alive.** Each server refreshes `{prefix}:alive:{server}` (expiry
//!   [`Config::redis_expiry_ms`](crate::Config::redis_expiry_ms), 2 s by default) every quarter of
//!   that, and in the same beat runs a script that removes the servers whose key expired (their
//!   members, their claims) and returns the live ones; every server drops the members of servers
//!   that are not live, and tells its clients introduced to them (`peer_left`). A killed server's
//!   clients vanish from the rooms within the expiry and a beat.
//! - **Relays.** A message for a peer of another server is published on that server's own
//!   channel (`{prefix}:to:{server}`): one Redis message per signal (batched: one per destination
//!   server per flush), never a room-wide broadcast. `peer_joined`/`peer_left` for a peer of
//!   another server travel the same way.
//!
//! While Redis is unreachable the server keeps serving its own clients and relays among them;
//! joins are refused (`unavailable`: the hijack check cannot span the cluster), relays to other
//! servers are dropped and counted, `/health` answers 503. When Redis is back (restarted empty
//! or not), every server writes its members again and reads the others'.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use transport::{ErrorCode, PeerId, ServerMessage};

use crate::Shared;
use crate::connection::encode;
use crate::registry::{At, RemoteMember};
use crate::source::Source;

/// Deliveries queued for other servers before relays to them fail with `peer_busy`.
const QUEUE: usize = 16 * 1024;

/// Most deliveries in one flush (one pipeline of one PUBLISH per destination server).
const FLUSH: usize = 1024;

/// How long a flush waits for more deliveries when it found some but fewer than
/// [`LINGER_BELOW`] queued (tokio's timer rounds it up to its 1 ms tick).
const LINGER: Duration = Duration::from_micros(500);

/// A flush with at least this many deliveries goes at once.
const LINGER_BELOW: u64 = 32;

/// Most members in one `members` event or one `HSET` of a resync.
const CHUNK: usize = 512;

/// How long one Redis command may take before the connection counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to reach Redis again.
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Claim an id (KEYS: the id's claim, this server's members hash; ARGV: this server, the alive-key
/// prefix, the id, its entry, the events channel, the join event). Refused (0) while another
/// server whose alive key exists holds it.
const CLAIM: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. holder) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
";

/// Give an id up (KEYS: the id's claim, this server's members hash; ARGV: this server, the id,
/// the entry it was claimed with, the events channel, the leave event): only the entry of this
/// connection is removed (a later join of the same id on this server keeps its own).
const LEAVE: &str = r"
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then
  redis.call('HDEL', KEYS[2], ARGV[2])
  if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
  end
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Remove the servers whose alive key expired (KEYS: the servers set; ARGV: the alive-key,
/// members-hash and claim prefixes): their claims, their members hash, their place in the set.
/// Returns the live servers.
const REAP: &str = r"
local live = {}
for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. s) == 1 then
    table.insert(live, s)
  else
    local members = ARGV[2] .. s
    for _, id in ipairs(redis.call('HKEYS', members)) do
      if redis.call('GET', ARGV[3] .. id) == s then
        redis.call('DEL', ARGV[3] .. id)
      end
    end
    redis.call('DEL', members)
    redis.call('SREM', KEYS[1], s)
  end
end
return live
";

/// A member's record in its server's hash (the field is its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    conn: u64,
    room: String,
    source: IpAddr,
}

/// What is published on `{prefix}:events` (postcard).
#[derive(Debug, Serialize, Deserialize)]
enum Event {
    /// `id` joined on `server`.
    Joined {
        server: String,
        id: String,
        entry: Entry,
    },
    /// `id` (connection `conn`) left `server`.
    Left {
        server: String,
        conn: u64,
        id: String,
    },
    /// Some of `server`'s members (written again after it reached Redis anew).
    Members {
        server: String,
        members: Vec<(String, Entry)>,
    },
    /// `server` stops: drop its members now.
    Gone { server: String },
}

/// One message for a peer of another server (encoded when queued, decoded without copies).
///
/// What is published on `{prefix}:to:{server}` is a batch: the sending server's id (a postcard
/// string), then deliveries, one after another, to the end of the message.
#[derive(Debug, Serialize, Deserialize)]
enum Delivery<'a> {
    /// A relayed message (its text has `from` set already).
    Relay {
        to: &'a str,
        room: &'a str,
        from: &'a str,
        text: &'a str,
    },
    /// A server message for `to` (`peer_joined`, `peer_left`, an error about its relay), and
    /// what `to` must remember it was introduced to, or forget.
    Notice {
        to: &'a str,
        text: &'a str,
        #[serde(borrow)]
        remember: Option<&'a str>,
        #[serde(borrow)]
        forget: Option<&'a str>,
    },
}

/// The keys and channels of one cluster (all under one prefix, so clusters can share a Redis).
#[derive(Debug, Clone)]
struct Keys {
    servers: String,
    alive: String,
    members: String,
    id: String,
    events: String,
    to: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            servers: format!("{prefix}:servers"),
            alive: format!("{prefix}:alive:"),
            members: format!("{prefix}:members:"),
            id: format!("{prefix}:id:"),
            events: format!("{prefix}:events"),
            to: format!("{prefix}:to:"),
        }
    }
}

/// Why a join could not be claimed.
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// A live connection of another server holds the id.
    Taken,
    /// Redis is unreachable (or this server is not in step with the cluster yet).
    Unavailable(String),
}

/// A delivery waiting for its flush, encoded.
struct Out {
    server: Arc<str>,
    delivery: Vec<u8>,
}

/// This server's place in the cluster.
pub(crate) struct Cluster {
    /// This server's id (random, new at each start).
    pub(crate) server: Arc<str>,
    keys: Keys,
    client: redis::Client,
    commands: ConnectionManager,
    out: mpsc::Sender<Out>,
    out_rx: std::sync::Mutex<Option<mpsc::Receiver<Out>>>,
    /// In step with the cluster: Redis reachable and this server's members written.
    up: AtomicBool,
    /// Wakes the subscriber to write this server's state again (it was reaped).
    resync: Notify,
    expiry: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

fn redis_error(err: &redis::RedisError) -> String {
    err.to_string()
}

fn encoded<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap_or_default()
}

impl Cluster {
    /// A cluster member for the Redis at `url` (nothing is connected yet: [`run`] does).
    pub(crate) fn new(
        url: &str,
        prefix: &str,
        expiry: Duration,
        server: String,
    ) -> std::io::Result<Self> {
        let invalid = |e: redis::RedisError| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("--redis {url}: {e}"),
            )
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let commands =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(invalid)?;
        let (out, out_rx) = mpsc::channel(QUEUE);
        Ok(Self {
            server: Arc::from(server),
            keys: Keys::new(prefix),
            client,
            commands,
            out,
            out_rx: std::sync::Mutex::new(Some(out_rx)),
            up: AtomicBool::new(false),
            resync: Notify::new(),
            expiry: expiry.max(Duration::from_millis(200)),
        })
    }

    /// Adds to `pipe` this server's alive key (with its expiry) and its place in the servers set;
    /// the `SADD`'s reply is kept: 1 when the set did not hold this server (it had been reaped).
    fn refresh_alive<'p>(&self, pipe: &'p mut redis::Pipeline) -> &'p mut redis::Pipeline {
        let expiry_ms = u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX);
        pipe.cmd("SET")
            .arg(format!("{}{}", self.keys.alive, self.server))
            .arg(1)
            .arg("PX")
            .arg(expiry_ms)
            .ignore();
        pipe.cmd("SADD").arg(&self.keys.servers).arg(&*self.server)
    }

    /// Adds [`REAP`] to `pipe`; its reply is the live servers.
    fn reap<'p>(&self, pipe: &'p mut redis::Pipeline) -> &'p mut redis::Pipeline {
        let keys = &self.keys;
        pipe.cmd("EVAL")
            .arg(REAP)
            .arg(1)
            .arg(&keys.servers)
            .arg(&keys.alive)
            .arg(&keys.members)
            .arg(&keys.id)
    }

    /// Whether the server is in step with the cluster (Redis reachable, its members written).
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn entry(conn: u64, room: &str, source: Source) -> Entry {
        Entry {
            conn,
            room: room.to_owned(),
            source: source.ip(),
        }
    }

    /// Claim `id` for this server's connection `conn` (and announce the join), or learn that a
    /// live connection of another server holds it.
    pub(crate) async fn claim(
        &self,
        id: &str,
        conn: u64,
        room: &str,
        source: Source,
    ) -> Result<(), ClaimError> {
        if !self.is_up() {
            return Err(ClaimError::Unavailable(
                "not in step with the cluster's Redis".into(),
            ));
        }
        let entry = Self::entry(conn, room, source);
        let event = Event::Joined {
            server: self.server.to_string(),
            id: id.to_owned(),
            entry: entry.clone(),
        };
        let claimed: i64 = redis::cmd("EVAL")
            .arg(CLAIM)
            .arg(2)
            .arg(format!("{}{id}", self.keys.id))
            .arg(format!("{}{}", self.keys.members, self.server))
            .arg(&*self.server)
            .arg(&self.keys.alive)
            .arg(id)
            .arg(encoded(&entry))
            .arg(&self.keys.events)
            .arg(encoded(&event))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(|e| ClaimError::Unavailable(redis_error(&e)))?;
        if claimed == 1 {
            Ok(())
        } else {
            Err(ClaimError::Taken)
        }
    }

    /// Give up `id` (connection `conn`) and announce the leave, in a task of its own.
    pub(crate) fn leave(self: &Arc<Self>, id: &str, conn: u64, room: &str, source: Source) {
        let cluster = self.clone();
        let id = id.to_owned();
        let entry = Self::entry(conn, room, source);
        tokio::spawn(async move {
            let event = Event::Left {
                server: cluster.server.to_string(),
                conn,
                id: id.clone(),
            };
            let done: Result<i64, _> = redis::cmd("EVAL")
                .arg(LEAVE)
                .arg(2)
                .arg(format!("{}{id}", cluster.keys.id))
                .arg(format!("{}{}", cluster.keys.members, cluster.server))
                .arg(&*cluster.server)
                .arg(&id)
                .arg(encoded(&entry))
                .arg(&cluster.keys.events)
                .arg(encoded(&event))
                .query_async(&mut cluster.commands.clone())
                .await;
            if let Err(err) = done {
                // The next resync (Redis back) writes the members as they are then.
                debug!(%err, peer = %id, "cluster: leave not recorded");
            }
        });
    }

    fn queue(&self, shared: &Shared, server: &Arc<str>, delivery: &Delivery<'_>) -> bool {
        let queued = self
            .out
            .try_send(Out {
                server: server.clone(),
                delivery: encoded(delivery),
            })
            .is_ok();
        if !queued {
            shared.metrics.cluster.dropped.inc();
        }
        queued
    }

    /// Queue a relay for `to`, a member of `server`; false when the queue is full.
    pub(crate) fn relay(
        &self,
        shared: &Shared,
        server: &Arc<str>,
        to: &str,
        room: &str,
        from: &str,
        text: &str,
    ) -> bool {
        let queued = self.queue(
            shared,
            server,
            &Delivery::Relay {
                to,
                room,
                from,
                text,
            },
        );
        if queued {
            shared.metrics.cluster.relays_out.inc();
        }
        queued
    }

    /// Queue a server message for `to`, a member of `server`, that it was introduced to
    /// (`remember`) or must forget (`forget`).
    pub(crate) fn notice(
        &self,
        shared: &Shared,
        server: &Arc<str>,
        to: &str,
        text: &Utf8Bytes,
        remember: Option<&str>,
        forget: Option<&str>,
    ) {
        self.queue(
            shared,
            server,
            &Delivery::Notice {
                to,
                text: text.as_str(),
                remember,
                forget,
            },
        );
    }
}

/// Run the cluster's tasks (the flusher, the subscriber and the heartbeat) until `shared`'s
/// shutdown; then tell the others this server is gone.
pub(crate) async fn run(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    let Some(out_rx) = cluster
        .out_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let mut shutdown = shared.shutdown.clone();
    info!(server = %cluster.server, "cluster: this server's id");
    tokio::select! {
        () = flush(shared.clone(), cluster.clone(), out_rx) => {}
        () = subscribe(shared.clone(), cluster.clone()) => {}
        () = heartbeat(shared.clone(), cluster.clone()) => {}
        _ = shutdown.wait_for(|stopping| *stopping) => {}
    }
    goodbye(&cluster).await;
}

/// Remove this server from the cluster at once (a graceful stop): the others drop its members
/// without waiting for its alive key to expire.
async fn goodbye(cluster: &Cluster) {
    let server = &*cluster.server;
    let keys = &cluster.keys;
    let mut pipe = redis::pipe();
    pipe.cmd("DEL")
        .arg(format!("{}{server}", keys.alive))
        .ignore();
    // With the alive key gone, reaping removes this server's claims and members.
    cluster.reap(&mut pipe).ignore();
    pipe.cmd("PUBLISH")
        .arg(&keys.events)
        .arg(encoded(&Event::Gone {
            server: server.to_owned(),
        }))
        .ignore();
    let done = tokio::time::timeout(
        RESPONSE_TIMEOUT,
        pipe.query_async::<()>(&mut cluster.commands.clone()),
    )
    .await;
    match done {
        Ok(Ok(())) => info!(server, "cluster: left"),
        Ok(Err(err)) => warn!(%err, "cluster: could not say goodbye; the others wait for expiry"),
        Err(_) => warn!("cluster: goodbye timed out; the others wait for expiry"),
    }
}

/// Publish queued deliveries: whatever is queued when a flush starts goes in one pipeline, one
/// PUBLISH per destination server.
async fn flush(shared: Arc<Shared>, cluster: Arc<Cluster>, mut rx: mpsc::Receiver<Out>) {
    let mut conn = cluster.commands.clone();
    let mut warned: Option<Instant> = None;
    // Every batch starts with this server's id.
    let header = encoded(&*cluster.server);
    while let Some(first) = rx.recv().await {
        let mut by_server: HashMap<Arc<str>, Vec<u8>> = HashMap::new();
        let mut add = |out: Out| {
            by_server
                .entry(out.server)
                .or_insert_with(|| header.clone())
                .extend_from_slice(&out.delivery);
        };
        add(first);
        let mut n = 1u64;
        let mut lingered = false;
        while n < FLUSH as u64 {
            let Ok(more) = rx.try_recv() else {
                // Under load, wait a moment for more: fewer, larger PUBLISHes cost Redis and
                // both servers far less per relay. An idle server sends at once.
                if lingered || n >= LINGER_BELOW {
                    break;
                }
                lingered = true;
                tokio::time::sleep(LINGER).await;
                continue;
            };
            add(more);
            n += 1;
        }
        let mut pipe = redis::pipe();
        for (server, batch) in by_server {
            pipe.cmd("PUBLISH")
                .arg(format!("{}{server}", cluster.keys.to))
                .arg(batch)
                .ignore();
        }
        if let Err(err) = pipe.query_async::<()>(&mut conn).await {
            shared.metrics.cluster.dropped.inc_by(n);
            if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                warn!(%err, lost = n, "cluster: deliveries to other servers lost");
                warned = Some(Instant::now());
            }
        }
    }
}

/// Refresh this server's alive key, measure Redis's round trip, and drop the servers that are
/// not live any more.
async fn heartbeat(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    let beat = cluster.expiry / 4;
    let mut tick = tokio::time::interval(beat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = cluster.commands.clone();
    loop {
        tick.tick().await;
        let started = Instant::now();
        let mut pipe = redis::pipe();
        cluster.refresh_alive(&mut pipe);
        cluster.reap(&mut pipe);
        let beat: Result<(i64, Vec<String>), _> = pipe.query_async(&mut conn).await;
        match beat {
            Ok((added, live)) => {
                shared
                    .metrics
                    .cluster
                    .redis_rtt
                    .observe(started.elapsed().as_secs_f64());
                shared.metrics.cluster.redis_up.set(1);
                shared
                    .metrics
                    .cluster
                    .servers
                    .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
                if added == 1 && cluster.is_up() {
                    // The others took this server for dead (a stall longer than the expiry, or
                    // Redis restarted): write its members again.
                    warn!("cluster: this server was missing from Redis; writing its members again");
                    cluster.up.store(false, Ordering::Release);
                    cluster.resync.notify_one();
                }
                let live: HashSet<String> = live.into_iter().collect();
                drop_remote(&shared, &cluster, |s, _| live.contains(s));
            }
            Err(err) => {
                shared.metrics.cluster.redis_up.set(0);
                debug!(%err, "cluster: heartbeat failed");
            }
        }
    }
}

/// Drop the members of other servers that `keep(server, id)` rejects, and tell this server's
/// clients introduced to them. The registry is scanned under its read lock first: the write lock
/// (which holds up every relay) is taken only when there is something to drop.
fn drop_remote(shared: &Shared, cluster: &Cluster, keep: impl Fn(&str, &str) -> bool) {
    let keep = |server: &str, id: &str| *server == *cluster.server || keep(server, id);
    let stale = shared
        .registry
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .has_remote_outside(keep);
    if !stale {
        return;
    }
    let tell = shared
        .registry
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .drop_remote(keep);
    if !tell.is_empty() {
        debug!(
            told = tell.len(),
            "cluster: members of servers gone dropped"
        );
    }
    tell_left(tell);
}

fn tell_left(tell: Vec<(mpsc::Sender<Utf8Bytes>, Arc<str>)>) {
    for (tx, id) in tell {
        let left = encode(&ServerMessage::PeerLeft {
            peer_id: PeerId::new(&*id),
        });
        let _ = tx.try_send(left);
    }
}

/// Read the cluster's messages; on each (re)connection to Redis, write this server's members and
/// read the others' first.
async fn subscribe(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match session(&shared, &cluster).await {
            Ok(()) => delay = Duration::from_millis(100),
            Err(err) => {
                warn!(%err, "cluster: Redis unreachable; retrying");
            }
        }
        cluster.up.store(false, Ordering::Release);
        shared.metrics.cluster.redis_up.set(0);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

/// One subscription: subscribe, sync, then handle messages until the connection ends or a
/// resync is asked.
async fn session(shared: &Arc<Shared>, cluster: &Arc<Cluster>) -> Result<(), String> {
    let mut pubsub = tokio::time::timeout(RESPONSE_TIMEOUT, cluster.client.get_async_pubsub())
        .await
        .map_err(|_| "connecting timed out".to_owned())?
        .map_err(|e| redis_error(&e))?;
    let own = format!("{}{}", cluster.keys.to, cluster.server);
    pubsub
        .subscribe(&[cluster.keys.events.as_str(), own.as_str()])
        .await
        .map_err(|e| redis_error(&e))?;
    sync(shared, cluster).await?;
    cluster.up.store(true, Ordering::Release);
    shared.metrics.cluster.redis_up.set(1);
    info!(server = %cluster.server, "cluster: in step with Redis");
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err("the subscription ended".into());
                };
                if message.get_channel_name() == own {
                    deliver(shared, cluster, message.get_payload_bytes());
                } else {
                    apply(shared, cluster, message.get_payload_bytes());
                }
            }
            () = cluster.resync.notified() => return Ok(()),
        }
    }
}

/// Write this server's members to Redis (alive key, claims, members hash, a `members` event),
/// then read every live server's members into the mirror and drop what is stale.
async fn sync(shared: &Shared, cluster: &Cluster) -> Result<(), String> {
    let keys = &cluster.keys;
    let server = &cluster.server;
    let mut conn = cluster.commands.clone();
    let ours = {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        registry.local_members(server)
    };
    let members_key = format!("{}{server}", keys.members);
    let mut pipe = redis::pipe();
    cluster.refresh_alive(&mut pipe).ignore();
    pipe.cmd("DEL").arg(&members_key).ignore();
    for chunk in ours.chunks(CHUNK) {
        let mut hset = redis::cmd("HSET");
        hset.arg(&members_key);
        let mut members = Vec::with_capacity(chunk.len());
        for m in chunk {
            let entry = Cluster::entry(m.conn, &m.room, m.source);
            hset.arg(&*m.id).arg(encoded(&entry));
            pipe.cmd("SET")
                .arg(format!("{}{}", keys.id, m.id))
                .arg(&**server)
                .ignore();
            members.push((m.id.to_string(), entry));
        }
        pipe.add_command(hset).ignore();
        pipe.cmd("PUBLISH")
            .arg(&keys.events)
            .arg(encoded(&Event::Members {
                server: server.to_string(),
                members,
            }))
            .ignore();
    }
    cluster.reap(&mut pipe);
    let (live,): (Vec<String>,) = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| redis_error(&e))?;
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for other in live.iter().filter(|s| **s != **server) {
        let members: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(format!("{}{other}", keys.members))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        let other: Arc<str> = Arc::from(other.as_str());
        let mut ids = HashSet::with_capacity(members.len());
        let mut registry = shared.registry.write().unwrap_or_else(|e| e.into_inner());
        for (id, entry) in members {
            let Ok(entry) = postcard::from_bytes::<Entry>(&entry) else {
                continue;
            };
            if let Some(member) = remote_member(&other, &id, entry) {
                registry.insert_remote(member);
                ids.insert(id);
            }
        }
        drop(registry);
        seen.insert(other.to_string(), ids);
    }
    drop_remote(shared, cluster, |s, id| {
        seen.get(s).is_some_and(|ids| ids.contains(id))
    });
    shared
        .metrics
        .cluster
        .servers
        .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
    Ok(())
}

fn remote_member(server: &Arc<str>, id: &str, entry: Entry) -> Option<RemoteMember> {
    // What another server wrote is checked as a client's input would be.
    if !transport::is_compat_id(id) || !transport::is_valid_room(&entry.room) {
        return None;
    }
    Some(RemoteMember {
        server: server.clone(),
        conn: entry.conn,
        id: Arc::from(id),
        room: Arc::from(entry.room.as_str()),
        source: Source::of(entry.source),
    })
}

/// Apply one event of another server to the mirror.
fn apply(shared: &Shared, cluster: &Cluster, payload: &[u8]) {
    let Ok(event) = postcard::from_bytes::<Event>(payload) else {
        warn!("cluster: an event that does not decode");
        return;
    };
    if let Event::Gone { server } = &event {
        if **server != *cluster.server {
            drop_remote(shared, cluster, |s, _| s != server);
        }
        return;
    }
    let mut registry = shared.registry.write().unwrap_or_else(|e| e.into_inner());
    match event {
        Event::Joined { server, id, entry } if *server != *cluster.server => {
            let server: Arc<str> = Arc::from(server);
            if let Some(member) = remote_member(&server, &id, entry) {
                registry.insert_remote(member);
            }
        }
        Event::Members { server, members } if *server != *cluster.server => {
            let server: Arc<str> = Arc::from(server);
            for (id, entry) in members {
                if let Some(member) = remote_member(&server, &id, entry) {
                    registry.insert_remote(member);
                }
            }
        }
        Event::Left { server, conn, id } if *server != *cluster.server => {
            registry.remove_remote(&server, conn, &id);
        }
        _ => {}
    }
}

/// Hand another server's deliveries to this server's clients.
fn deliver(shared: &Shared, cluster: &Cluster, payload: &[u8]) {
    let Some((from_server, deliveries)) = decode_batch(payload) else {
        warn!("cluster: a delivery batch that does not decode");
        return;
    };
    let from_server: Arc<str> = Arc::from(from_server);
    // Who was introduced to whom first (the only writes), then every delivery under a read lock,
    // so that relays of this server's own clients are not held up by a batch.
    let introduces = deliveries.iter().any(|d| {
        matches!(d, Delivery::Notice { remember, forget, .. } if remember.is_some() || forget.is_some())
    });
    if introduces {
        let mut registry = shared.registry.write().unwrap_or_else(|e| e.into_inner());
        for delivery in &deliveries {
            if let Delivery::Notice {
                to,
                remember,
                forget,
                ..
            } = delivery
            {
                if let Some(other) = remember {
                    registry.remember_introduced(to, Arc::from(*other));
                }
                if let Some(other) = forget {
                    registry.forget_introduced(to, other);
                }
            }
        }
    }
    let mut bounced = Vec::new();
    {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        for delivery in deliveries {
            match delivery {
                Delivery::Relay {
                    to,
                    room,
                    from,
                    text,
                } => {
                    shared.metrics.cluster.relays_in.inc();
                    let refusal = match registry.route(room, to) {
                        Some(At::Local(tx)) => {
                            match tx.try_send(Utf8Bytes::from(text.to_owned())) {
                                Ok(()) => None,
                                Err(mpsc::error::TrySendError::Full(_)) => Some((
                                    ErrorCode::PeerBusy,
                                    format!("peer {to} is not keeping up; message dropped"),
                                )),
                                Err(mpsc::error::TrySendError::Closed(_)) => {
                                    Some((ErrorCode::UnknownPeer, format!("Peer {to} not found.")))
                                }
                            }
                        }
                        _ => Some((ErrorCode::UnknownPeer, format!("Peer {to} not found."))),
                    };
                    if let Some((code, message)) = refusal {
                        shared.metrics.reject(code);
                        let text = encode(&ServerMessage::Error {
                            code: Some(code),
                            message,
                            peer_id: Some(PeerId::new(to)),
                        });
                        bounced.push((from, text));
                    }
                }
                Delivery::Notice { to, text, .. } => {
                    if let Some(At::Local(tx)) = registry.peers_at(to) {
                        let _ = tx.try_send(Utf8Bytes::from(text.to_owned()));
                    }
                }
            }
        }
    }
    for (to, text) in bounced {
        cluster.notice(shared, &from_server, to, &text, None, None);
    }
}

/// A batch's sending server and its deliveries, or `None` when any part does not decode.
fn decode_batch(payload: &[u8]) -> Option<(&str, Vec<Delivery<'_>>)> {
    let (from, mut rest) = postcard::take_from_bytes::<&str>(payload).ok()?;
    let mut deliveries = Vec::new();
    while !rest.is_empty() {
        let (delivery, more) = postcard::take_from_bytes::<Delivery<'_>>(rest).ok()?;
        deliveries.push(delivery);
        rest = more;
    }
    Some((from, deliveries))
}

/// What the fuzz targets reach of the cluster: another server's messages as a server decodes them.
pub(crate) mod fuzzing {
    use super::*;

    /// Decodes `data` as a server decodes what another server publishes (a batch of deliveries on
    /// its own channel, an event on the events channel, a member's hash entry) and checks each
    /// member the way it is checked before it enters the registry. Never a panic; what decodes
    /// encodes again to something that decodes to the same.
    ///
    /// # Panics
    /// If a decoded batch or event does not survive its own encoding.
    pub(crate) fn cluster_message(data: &[u8]) {
        if let Some((from, deliveries)) = decode_batch(data) {
            let mut again = encoded(from);
            for d in &deliveries {
                again.extend(encoded(d));
            }
            let (from2, deliveries2) = decode_batch(&again).expect("a re-encoded batch decodes");
            assert_eq!(from, from2);
            assert_eq!(format!("{deliveries:?}"), format!("{deliveries2:?}"));
        }
        if let Ok(event) = postcard::from_bytes::<Event>(data) {
            let again = encoded(&event);
            let back: Event = postcard::from_bytes(&again).expect("a re-encoded event decodes");
            assert_eq!(format!("{event:?}"), format!("{back:?}"));
            let server: Arc<str> = Arc::from("s");
            match event {
                Event::Joined { id, entry, .. } => {
                    let _ = remote_member(&server, &id, entry);
                }
                Event::Members { members, .. } => {
                    for (id, entry) in members {
                        let _ = remote_member(&server, &id, entry);
                    }
                }
                Event::Left { .. } | Event::Gone { .. } => {}
            }
        }
        if let Ok(entry) = postcard::from_bytes::<Entry>(data) {
            let _ = remote_member(&Arc::from("s"), "a", entry);
        }
    }

    /// Valid encodings of each kind of cluster message, for the fuzzer's seed corpus.
    pub(crate) fn cluster_seeds() -> Vec<Vec<u8>> {
        let entry = Entry {
            conn: 7,
            room: "default".into(),
            source: IpAddr::from([127, 0, 0, 1]),
        };
        let id = "a".repeat(40);
        let mut batch = encoded("0123456789abcdef");
        batch.extend(encoded(&Delivery::Relay {
            to: &id,
            room: "default",
            from: "b",
            text: r#"{"type":"signal","to":"a","signal":{},"from":"b"}"#,
        }));
        batch.extend(encoded(&Delivery::Notice {
            to: &id,
            text: r#"{"type":"peer_left","peerId":"b"}"#,
            remember: None,
            forget: Some("b"),
        }));
        vec![
            batch,
            encoded(&Event::Joined {
                server: "s".into(),
                id: id.clone(),
                entry: entry.clone(),
            }),
            encoded(&Event::Left {
                server: "s".into(),
                conn: 7,
                id: id.clone(),
            }),
            encoded(&Event::Members {
                server: "s".into(),
                members: vec![(id, entry.clone())],
            }),
            encoded(&Event::Gone { server: "s".into() }),
            encoded(&entry),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_to_what_was_queued_and_garbage_to_nothing() {
        let mut batch = encoded("server-a");
        batch.extend(encoded(&Delivery::Relay {
            to: "b",
            room: "default",
            from: "a",
            text: r#"{"type":"signal"}"#,
        }));
        batch.extend(encoded(&Delivery::Notice {
            to: "c",
            text: "{}",
            remember: Some("a"),
            forget: None,
        }));
        let (from, deliveries) = decode_batch(&batch).expect("decodes");
        assert_eq!(from, "server-a");
        assert!(matches!(
            deliveries[..],
            [
                Delivery::Relay {
                    to: "b",
                    room: "default",
                    from: "a",
                    ..
                },
                Delivery::Notice {
                    to: "c",
                    remember: Some("a"),
                    forget: None,
                    ..
                }
            ]
        ));
        // Cut anywhere, or with bytes after the last delivery, a batch is refused whole.
        for cut in 1..batch.len() {
            assert!(decode_batch(&batch[..cut]).is_none_or(|(_, d)| d.len() < 2));
        }
        let mut longer = batch.clone();
        longer.push(0xff);
        assert!(decode_batch(&longer).is_none());
        assert!(decode_batch(&[0xff, 0xff, 0xff]).is_none());
        assert!(postcard::from_bytes::<Event>(&[0x07, 0x01]).is_err());
    }
}
