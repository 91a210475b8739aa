//! The scenarios. Each starts its own server and nodes in a fresh [`Cluster`], drives them through
//! one fault, and returns an [`Outcome`].
//!
//! Payload tags: a broadcast's payload starts with `<label>:<sender>|`, a direct message's with
//! `<label>:<sender>-<addressee>|`; receivers report the first bytes, so every reception is
//! matched to its send.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use test_mesh::forge::{FORGED_PREFIX, Kind};
use test_mesh::{Command, digest, payload};

use crate::cluster::{Cluster, NodeOptions, sender_of_tag};
use crate::netns::Netns;

/// Every scenario, in the order `all` runs them.
pub const ALL: [&str; 10] = [
    "join-broadcast",
    "direct",
    "churn",
    "hot-churn",
    "server-restart",
    "partition",
    "large-message",
    "forged",
    "mesh-signaling",
    "server-failover",
];

/// What a scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub nodes: usize,
    pub delivered: usize,
    pub expected: usize,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    /// Seconds from the scenario's disturbance (the first start, a kill, a restart, the heal)
    /// until the live nodes' links formed one connected graph again.
    pub converge_s: Option<f64>,
    /// `join-broadcast` only: the latencies of a second round in which the nodes broadcast one
    /// after another, 50 ms apart, instead of all at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paced_latency_ms_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paced_latency_ms_p99: Option<f64>,
    /// `server-failover` only: seconds from the SIGKILL of a server until each of its nodes was
    /// joined to another (median and largest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_s_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_s_max: Option<f64>,
    pub pass: bool,
    pub duration_s: f64,
    /// Why it failed, or what else was seen.
    pub detail: String,
}

/// What a scenario run accumulates.
struct Tally {
    tags: Vec<String>,
    delivered: usize,
    expected: usize,
    latencies: Vec<f64>,
    paced: Vec<f64>,
    converge_s: Option<f64>,
    failover: Vec<f64>,
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            tags: Vec::new(),
            delivered: 0,
            expected: 0,
            latencies: Vec::new(),
            paced: Vec::new(),
            converge_s: None,
            failover: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }
}

/// Settings shared by the scenarios.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nodes: usize,
    pub seed: u64,
    /// How long the partition lasts.
    pub partition: Duration,
}

/// Runs `name` in `cluster`.
pub async fn run(name: &str, cluster: &mut Cluster, settings: &Settings) -> Outcome {
    let start = Instant::now();
    let mut tally = Tally::new();
    let result = match name {
        "join-broadcast" => join_broadcast(cluster, settings, &mut tally).await,
        "direct" => direct(cluster, settings, &mut tally).await,
        "churn" => churn(cluster, settings, &mut tally).await,
        "hot-churn" => hot_churn(cluster, settings, &mut tally).await,
        "server-restart" => server_restart(cluster, settings, &mut tally).await,
        "partition" => partition(cluster, settings, &mut tally).await,
        "large-message" => large_message(cluster, settings, &mut tally).await,
        "forged" => forged(cluster, settings, &mut tally).await,
        "mesh-signaling" => mesh_signaling(cluster, settings, &mut tally).await,
        "server-failover" => server_failover(cluster, settings, &mut tally).await,
        other => Err(format!("no scenario {other:?}")),
    };
    if let Err(err) = result {
        tally.fail(err);
    }
    if tally.delivered != tally.expected {
        let missing = tally.expected - tally.delivered.min(tally.expected);
        tally.fail(format!("{missing} deliveries missing"));
    }
    for (i, node) in cluster.nodes.iter().enumerate() {
        if node.alive
            && let Some(err) = node.errors.iter().find(|e| !e.starts_with("lagged"))
        {
            tally.notes.push(format!("node {i} reported: {err}"));
        }
    }
    cluster.shutdown().await;
    let mut latencies = tally.latencies.clone();
    latencies.sort_by(f64::total_cmp);
    let mut paced = tally.paced.clone();
    paced.sort_by(f64::total_cmp);
    let pass = tally.failures.is_empty();
    let mut detail = tally.failures.join("; ");
    if !tally.notes.is_empty() {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&tally.notes.join("; "));
    }
    Outcome {
        scenario: name.to_string(),
        nodes: settings.nodes,
        delivered: tally.delivered,
        expected: tally.expected,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p99: percentile(&latencies, 0.99),
        converge_s: tally.converge_s.map(|s| (s * 100.0).round() / 100.0),
        paced_latency_ms_p50: percentile(&paced, 0.50),
        paced_latency_ms_p99: percentile(&paced, 0.99),
        failover_s_p50: {
            let mut f = tally.failover.clone();
            f.sort_by(f64::total_cmp);
            f.get(f.len() / 2).map(|s| (s * 100.0).round() / 100.0)
        },
        failover_s_max: tally
            .failover
            .iter()
            .copied()
            .reduce(f64::max)
            .map(|s| (s * 100.0).round() / 100.0),
        pass,
        duration_s: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        detail,
    }
}

/// The `q` quantile of sorted `values` (nearest rank), rounded to 0.1 ms.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((sorted[rank - 1] * 10.0).round() / 10.0)
}

/// A small deterministic generator for the choices of the scenarios (which nodes die).
struct Choice(u64);

impl Choice {
    fn next(&mut self, below: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below.max(1)
    }

    /// `count` distinct elements of `from`.
    fn pick(&mut self, from: &[usize], count: usize) -> Vec<usize> {
        let mut pool = from.to_vec();
        let mut out = Vec::new();
        while out.len() < count && !pool.is_empty() {
            out.push(pool.swap_remove(self.next(pool.len())));
        }
        out
    }
}

/// How long the links must stay unchanged for the mesh to count as settled.
const QUIET: Duration = Duration::from_secs(3);

/// Waits until the live nodes' links form one connected graph that has not changed for
/// [`QUIET`] (and `extra` holds); returns the seconds from `since` to the last link change.
async fn converge(
    c: &mut Cluster,
    what: &str,
    timeout: Duration,
    since: Instant,
    extra: impl Fn(&Cluster) -> Result<(), String>,
) -> Result<f64, String> {
    c.wait_for(what, timeout, |c| {
        c.settled(QUIET)?;
        extra(c)
    })
    .await?;
    Ok(c.last_link_change
        .saturating_duration_since(since)
        .as_secs_f64())
}

fn nothing_else(_: &Cluster) -> Result<(), String> {
    Ok(())
}

fn join_timeout(nodes: usize) -> Duration {
    Duration::from_secs(30 + 2 * nodes as u64)
}

fn delivery_timeout(nodes: usize) -> Duration {
    Duration::from_secs(30 + nodes as u64 / 2)
}

/// Starts the server (unless running) and `count` nodes, and waits until they joined and their
/// links form one connected graph; returns their indices and records the time to converge.
async fn start_mesh(
    cluster: &mut Cluster,
    count: usize,
    options: impl Fn(usize) -> NodeOptions,
    tally: &mut Tally,
) -> Result<Vec<usize>, String> {
    let start = Instant::now();
    let mut started = Vec::new();
    for k in 0..count {
        started.push(cluster.start_node(&options(k))?);
        // A little apart, as people arrive; 2 cores also start WebRTC stacks more smoothly.
        cluster.idle(Duration::from_millis(40)).await;
    }
    cluster.progress(&format!("{count} nodes started"));
    let joined = started.clone();
    cluster
        .wait_for("every node to join", join_timeout(count), |c| {
            c.all_joined(&joined)
        })
        .await?;
    let took = converge(
        cluster,
        "one settled mesh",
        join_timeout(count),
        start,
        nothing_else,
    )
    .await?;
    tally.converge_s = Some(took);
    cluster.progress(&format!("mesh settled {took:.1} s after the first start"));
    Ok(started)
}

/// Every node of `senders` broadcasts once (tags `<label>:<sender>`); waits until every live
/// node has every other's message or the time is out, and adds the figures to `tally`.
async fn broadcast_round(
    cluster: &mut Cluster,
    label: &str,
    senders: &[usize],
    size: Option<usize>,
    pace: Option<Duration>,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut tags = Vec::new();
    for &s in senders {
        let tag = format!("{label}:{s}");
        cluster.broadcast(s, &tag, size).await?;
        tags.push(tag);
        if let Some(pace) = pace {
            cluster.idle(pace).await;
        }
    }
    let receivers = cluster.live();
    let waited = {
        let (tags, receivers) = (tags.clone(), receivers.clone());
        cluster
            .wait_for(
                &format!("round {label} to reach everyone"),
                delivery_timeout(receivers.len()),
                move |c| {
                    let (delivered, expected) = c.deliveries(&tags, &receivers);
                    if delivered == expected {
                        Ok(())
                    } else {
                        Err(format!("{delivered}/{expected} delivered"))
                    }
                },
            )
            .await
    };
    let (delivered, expected) = cluster.deliveries(&tags, &receivers);
    tally.delivered += delivered;
    tally.expected += expected;
    tally.latencies.extend(cluster.latencies(&tags));
    let duplicates = cluster.duplicates(&tags);
    if duplicates > 0 {
        tally.fail(format!("round {label}: {duplicates} duplicate deliveries"));
    }
    if let Some(size) = size {
        let mut broken = 0;
        for tag in &tags {
            let intact = digest(&payload(&format!("{tag}|"), Some(size)));
            broken += receivers
                .iter()
                .filter_map(|&r| cluster.nodes[r].received.get(tag))
                .flatten()
                .filter(|m| m.sha1 != intact)
                .count();
        }
        if broken > 0 {
            tally.fail(format!("round {label}: {broken} copies arrived damaged"));
        }
    }
    if waited.is_err() {
        tally.notes.push(missing(cluster, &tags, &receivers));
    }
    tally.tags.extend(tags);
    if let Err(err) = waited {
        tally.notes.push(err);
    }
    Ok(())
}

/// Which receivers lack which tags, with what each receiver's links were (at most 10 lines).
fn missing(cluster: &Cluster, tags: &[String], receivers: &[usize]) -> String {
    let mut lines = Vec::new();
    for &r in receivers {
        let node = &cluster.nodes[r];
        let lacking: Vec<&str> = tags
            .iter()
            .filter(|t| !node.received.contains_key(*t) && sender_of_tag(t) != Some(r))
            .map(String::as_str)
            .collect();
        if lacking.is_empty() {
            continue;
        }
        let links: Vec<String> = node
            .links
            .iter()
            .map(|p| {
                cluster.index_of(p).map_or("?".into(), |j| {
                    format!("{j}{}", if cluster.nodes[j].alive { "" } else { "(dead)" })
                })
            })
            .collect();
        // Its link changes, in seconds from the first send of the round.
        let first_send = tags
            .iter()
            .filter_map(|t| cluster.sent.get(t).map(|s| s.1))
            .min()
            .unwrap_or(0);
        let history: Vec<String> = node
            .link_history
            .iter()
            .filter(|(at, _)| *at + 30_000_000 >= first_send)
            .map(|(at, change)| {
                let (sign, peer) = change.split_at(1);
                let who = cluster.index_of(peer).map_or("?".into(), |j| j.to_string());
                format!(
                    "{:+.1}s {sign}{who}",
                    (*at as f64 - first_send as f64) / 1e6
                )
            })
            .collect();
        let first: Vec<&str> = lacking.iter().take(5).copied().collect();
        lines.push(format!(
            "node {r} lacks {} ({}), links now [{}], ever {}, link changes [{}]",
            lacking.len(),
            first.join(" "),
            links.join(" "),
            node.ever_linked.len(),
            history.join(", ")
        ));
    }
    lines.truncate(10);
    format!("missing: {}", lines.join("; "))
}

fn no_options(_: usize) -> NodeOptions {
    NodeOptions::default()
}

async fn join_broadcast(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    let nodes = start_mesh(c, s.nodes, no_options, t).await?;
    // All at once: the figure. Then one after another, to tell the mesh's own latency from the
    // queueing of N simultaneous broadcasts on this machine's cores.
    broadcast_round(c, "jb", &nodes, None, None, t).await?;
    let burst = std::mem::take(&mut t.latencies);
    broadcast_round(c, "jbp", &nodes, None, Some(Duration::from_millis(50)), t).await?;
    t.paced = std::mem::replace(&mut t.latencies, burst);
    Ok(())
}

/// For each live node, a live node it has no link to (or any other, if it is linked to all).
fn unlinked_partner(c: &Cluster, from: usize, choice: &mut Choice) -> Option<usize> {
    let live = c.live();
    let links = &c.nodes[from].links;
    let strangers: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&j| j != from && c.nodes[j].id.as_ref().is_some_and(|id| !links.contains(id)))
        .collect();
    if strangers.is_empty() {
        let others: Vec<usize> = live.into_iter().filter(|&j| j != from).collect();
        return others.get(choice.next(others.len())).copied();
    }
    strangers.get(choice.next(strangers.len())).copied()
}

/// Direct messages `(from, to)` tagged `<label>:<from>-<to>`, padded to `size`; waits until each
/// arrived at its addressee, and checks that each arrived once, intact, and nowhere else.
async fn direct_round(
    c: &mut Cluster,
    label: &str,
    pairs: &[(usize, usize)],
    size: Option<usize>,
    t: &mut Tally,
) -> Result<(), String> {
    let mut tags = Vec::new();
    for &(from, to) in pairs {
        let tag = format!("{label}:{from}-{to}");
        c.send(from, to, &tag, size).await?;
        tags.push((tag, from, to));
    }
    let expect = tags.clone();
    let waited = c
        .wait_for(
            &format!("direct messages {label} to arrive"),
            delivery_timeout(c.live().len()),
            move |c| {
                let arrived = expect
                    .iter()
                    .filter(|(tag, _, to)| c.nodes[*to].received.contains_key(tag))
                    .count();
                if arrived == expect.len() {
                    Ok(())
                } else {
                    Err(format!("{arrived}/{} arrived", expect.len()))
                }
            },
        )
        .await;
    let from_id = |c: &Cluster, i: usize| c.nodes[i].id.clone().unwrap_or_default();
    for (tag, from, to) in &tags {
        t.expected += 1;
        let intact = digest(&payload(&format!("{tag}|"), size));
        match c.nodes[*to].received.get(tag).map(Vec::as_slice) {
            Some([one]) if one.direct && one.from == from_id(c, *from) && one.sha1 == intact => {
                t.delivered += 1;
                if let Some(&(_, sent)) = c.sent.get(tag) {
                    t.latencies
                        .push(one.at_us.saturating_sub(sent) as f64 / 1000.0);
                }
            }
            Some([]) | None => {}
            Some([one]) => t.fail(format!(
                "{tag} arrived wrong (direct {}, from {}, intact {})",
                one.direct,
                one.from,
                one.sha1 == intact
            )),
            Some(many) => t.fail(format!("{tag} arrived {} times", many.len())),
        }
        let elsewhere = c
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| i != to && n.received.contains_key(tag))
            .count();
        if elsewhere > 0 {
            t.fail(format!("{tag} was delivered to {elsewhere} other nodes"));
        }
        let failed_reports: usize = c.nodes[*from].direct_failed.len();
        if failed_reports > 0 {
            t.notes.push(format!(
                "node {from} reported {failed_reports} unacknowledged direct messages"
            ));
        }
    }
    if let Err(err) = waited {
        t.notes.push(err);
    }
    Ok(())
}

async fn direct(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    let nodes = start_mesh(c, s.nodes, no_options, t).await?;
    let mut choice = Choice(s.seed | 1);
    let mut pairs = Vec::new();
    let mut linked = 0;
    for &i in &nodes {
        let j = unlinked_partner(c, i, &mut choice).ok_or("fewer than two nodes")?;
        if c.nodes[i].links.contains(&c.id(j)?) {
            linked += 1;
        }
        pairs.push((i, j));
    }
    if linked > 0 {
        t.notes
            .push(format!("{linked} senders were linked to every other node"));
    }
    direct_round(c, "dm", &pairs, None, t).await
}

async fn churn(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    let nodes = start_mesh(c, s.nodes, no_options, t).await?;
    let count = (s.nodes * 3).div_ceil(10);
    let victims = Choice(s.seed | 1).pick(&nodes, count);
    let disturbed = Instant::now();
    for &v in &victims {
        c.kill_node(v).await;
    }
    c.progress(&format!(
        "killed {victims:?} with SIGKILL; starting {count} new nodes"
    ));
    let mut fresh = Vec::new();
    for _ in 0..count {
        fresh.push(c.start_node(&NodeOptions::default())?);
    }
    let joined = fresh.clone();
    c.wait_for("the new nodes to join", join_timeout(count), |c| {
        c.all_joined(&joined)
    })
    .await?;
    let took = converge(
        c,
        "one settled mesh again",
        join_timeout(s.nodes),
        disturbed,
        Cluster::no_dead_links,
    )
    .await?;
    t.converge_s = Some(took);
    let live = c.live();
    broadcast_round(c, "ch", &live, None, None, t).await
}

async fn hot_churn(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    let nodes = start_mesh(c, s.nodes, no_options, t).await?;
    let count = (s.nodes / 4).max(1);
    let victims = Choice(s.seed | 1).pick(&nodes, count);
    let disturbed = Instant::now();
    for &v in &victims {
        c.kill_node(v).await;
    }
    c.progress(&format!(
        "killed {victims:?} with SIGKILL; the others broadcast in 1 s"
    ));
    c.idle(Duration::from_secs(1)).await;
    let live = c.live();
    broadcast_round(c, "hc", &live, None, None, t).await?;
    let took = converge(
        c,
        "one settled mesh again",
        join_timeout(s.nodes),
        disturbed,
        Cluster::no_dead_links,
    )
    .await?;
    t.converge_s = Some(took);
    Ok(())
}

async fn server_restart(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    let nodes = start_mesh(c, s.nodes, no_options, t).await?;
    c.stop_server(false).await;
    c.progress("server killed with SIGKILL");
    c.wait_for(
        "every node to see the server gone",
        Duration::from_secs(30),
        |c| c.server_seen(false),
    )
    .await?;
    broadcast_round(c, "sr1", &nodes, None, None, t).await?;
    let restarted = Instant::now();
    c.start_server(None).await?;
    c.progress("server started again on the same port");
    c.wait_for(
        "every node to register again",
        Duration::from_secs(90),
        |c| c.server_seen(true),
    )
    .await?;
    let newcomer = c.start_node(&NodeOptions::default())?;
    c.wait_for("the newcomer to join", join_timeout(1), |c| {
        c.all_joined(&[newcomer])
    })
    .await?;
    let took = converge(
        c,
        "one settled mesh with the newcomer",
        join_timeout(s.nodes),
        restarted,
        nothing_else,
    )
    .await?;
    t.converge_s = Some(took);
    let live = c.live();
    broadcast_round(c, "sr2", &live, None, None, t).await
}

async fn partition(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    crate::netns::available()?;
    let netns = Netns::create()?;
    let (ns_a, ns_b, ip_a, ip_b) = (netns.a.clone(), netns.b.clone(), netns.ip_a, netns.ip_b);
    c.netns = Some(netns);
    c.start_server(Some((ns_a.clone(), (ip_a, 8080).into())))
        .await?;
    let half = s.nodes / 2;
    let side = move |k: usize| NodeOptions {
        netns: Some(if k < half {
            (ns_a.clone(), ip_a)
        } else {
            (ns_b.clone(), ip_b)
        }),
        ..NodeOptions::default()
    };
    let nodes = start_mesh(c, s.nodes, side, t).await?;
    let side_a: HashSet<usize> = nodes.iter().copied().filter(|&i| i < half).collect();
    broadcast_round(c, "pt1", &nodes, None, None, t).await?;
    let cross = |c: &Cluster| {
        nodes
            .iter()
            .filter(|&&i| side_a.contains(&i))
            .map(|&i| {
                c.nodes[i]
                    .links
                    .iter()
                    .filter(|p| c.index_of(p).is_some_and(|j| !side_a.contains(&j)))
                    .count()
            })
            .sum::<usize>()
    };
    c.progress(&format!(
        "cutting the veth pair for {} s ({} links cross it)",
        s.partition.as_secs(),
        cross(c)
    ));
    c.netns.as_ref().ok_or("no namespaces")?.cut()?;
    c.idle(s.partition).await;
    let left = cross(c);
    t.notes
        .push(format!("{left} cross links still reported up at the heal"));
    c.netns.as_ref().ok_or("no namespaces")?.heal()?;
    let healed = Instant::now();
    c.progress("healed");
    let took = converge(
        c,
        "the two sides to merge",
        Duration::from_secs(120),
        healed,
        |c| {
            if cross(c) == 0 {
                Err("no link crosses".into())
            } else {
                Ok(())
            }
        },
    )
    .await?;
    t.converge_s = Some(took);
    let live = c.live();
    broadcast_round(c, "pt2", &live, None, None, t).await
}

/// One MiB, the largest message p2pmesh takes by default.
const LARGE: usize = p2pmesh::MAX_MESSAGE_BYTES;

async fn large_message(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    let nodes = start_mesh(c, s.nodes, no_options, t).await?;
    broadcast_round(c, "lm", &nodes[..1], Some(LARGE), None, t).await?;
    let sender = nodes[1 % nodes.len()];
    let mut choice = Choice(s.seed | 1);
    let to = unlinked_partner(c, sender, &mut choice).ok_or("fewer than two nodes")?;
    direct_round(c, "lmd", &[(sender, to)], Some(LARGE), t).await
}

async fn forged(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    let forger_options = |k: usize| NodeOptions {
        forger: k == 0,
        ..NodeOptions::default()
    };
    let nodes = start_mesh(c, s.nodes, forger_options, t).await?;
    let (forger, victim) = (nodes[0], nodes[1]);
    let victim_id = c.id(victim)?;
    let neighbour = c.nodes[forger]
        .links
        .iter()
        .find_map(|p| c.index_of(p).filter(|&j| j != victim))
        .ok_or("the forger has no link")?;
    let mut choice = Choice(s.seed | 1);
    let stranger = unlinked_partner(c, forger, &mut choice).ok_or("fewer than two nodes")?;
    let forgeries = [
        (Kind::BadSignature, None),
        (Kind::SpoofedOrigin, None),
        (Kind::SpoofedSender, Some(neighbour)),
        (Kind::SpoofedSender, Some(stranger)),
    ];
    for (n, (kind, to)) in forgeries.into_iter().enumerate() {
        let to = to.map(|j| c.id(j)).transpose()?;
        c.command(
            forger,
            &Command::Forge {
                req: None,
                kind,
                victim: Some(victim_id.clone()),
                to,
                tag: format!("f{n}"),
            },
        )
        .await?;
    }
    c.progress("forgeries sent; waiting for them to spread or be refused");
    // Retries and repairs of a push take up to ~15 s; direct retries 3 s each.
    c.idle(Duration::from_secs(12)).await;
    // A forgery is accepted if it arrives at all (the broadcasts travel only over the forger's
    // links, which forge them) or, for a direct message, with the victim as its sender. A direct
    // message's last attempt goes through the signaling server, which the forger does not
    // rewrite: that copy arrives as what it is, the forger's own message.
    let forger_id = c.id(forger)?;
    let mut accepted = Vec::new();
    let mut honest = 0;
    for (i, node) in c.nodes.iter().enumerate() {
        for (tag, copies) in &node.received {
            if !tag.starts_with(FORGED_PREFIX) {
                continue;
            }
            for copy in copies {
                if tag.starts_with(Kind::SpoofedSender.marker()) && copy.from == forger_id {
                    honest += 1;
                } else {
                    accepted.push(format!("node {i} accepted {tag:?} from {}", copy.from));
                }
            }
        }
    }
    if !accepted.is_empty() {
        t.fail(format!("forgeries delivered: {}", accepted.join(", ")));
    }
    if honest > 0 {
        t.notes.push(format!(
            "{honest} spoofed direct messages arrived unforged through the server fallback, from the forger"
        ));
    }
    c.collect_stats().await?;
    let refused = [
        "gossip.dropped_bad_signature",
        "gossip.dropped_key_mismatch",
        "gossip.dropped_id_mismatch",
        "node.dropped_bad_signature",
        "node.dropped_unexpected",
    ]
    .map(|name| (name, c.stat_sum(name)));
    let total: u64 = refused.iter().map(|(_, n)| n).sum();
    if total == 0 {
        t.fail("no node counted a refused forgery: the forgeries never arrived");
    }
    t.notes.push(format!(
        "refused: {}",
        refused
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let forger_errors = &c.nodes[forger].errors;
    if !forger_errors.is_empty() {
        t.fail(format!("the forger failed: {forger_errors:?}"));
    }
    broadcast_round(c, "fg", &nodes, None, None, t).await
}

async fn mesh_signaling(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_server(None).await?;
    start_mesh(c, s.nodes, no_options, t).await?;
    c.stop_server(true).await;
    c.progress("server stopped");
    c.wait_for(
        "every node to see the server gone",
        Duration::from_secs(30),
        |c| c.server_seen(false),
    )
    .await?;
    let stopped = Instant::now();
    // A node that dies leaves holes its neighbours fill with new links: with the server gone,
    // their offers and answers can only travel over the mesh.
    let mut choice = Choice(s.seed | 1);
    let mut new_link = None;
    for attempt in 0..3 {
        let live = c.live();
        if live.len() <= 3 {
            break;
        }
        let victim = choice.pick(&live, 1)[0];
        c.kill_node(victim).await;
        c.progress(&format!(
            "killed node {victim} (attempt {}): waiting for a link to a peer never linked before",
            attempt + 1
        ));
        let found = c
            .wait_for(
                "a new link signaled over the mesh",
                Duration::from_secs(30),
                |c| {
                    if c.live()
                        .iter()
                        .any(|&i| !c.nodes[i].linked_while_server_down.is_empty())
                    {
                        Ok(())
                    } else {
                        Err("none yet".into())
                    }
                },
            )
            .await;
        if found.is_ok() {
            new_link = c.live().into_iter().find_map(|i| {
                c.nodes[i]
                    .linked_while_server_down
                    .first()
                    .map(|p| (i, c.index_of(p)))
            });
            break;
        }
    }
    match new_link {
        Some((i, Some(j))) => {
            t.notes.push(format!(
                "node {i} linked to node {j}, a peer it never had a link to, with the server stopped"
            ));
        }
        Some((i, None)) => t.notes.push(format!("node {i} linked to a new peer")),
        None => t.fail("no node opened a link to a new peer while the server was stopped"),
    }
    let took = converge(
        c,
        "one settled mesh without the server",
        join_timeout(s.nodes),
        stopped,
        Cluster::no_dead_links,
    )
    .await?;
    t.converge_s = Some(took);
    let live = c.live();
    broadcast_round(c, "ms", &live, None, None, t).await
}

/// Three signaling servers sharing one Redis, the nodes spread over them (node k on server k mod 3,
/// the two others as its fallbacks). One server is killed with SIGKILL: its nodes are served again
/// by the others (the time each took is the scenario's `failover_s`), no node loses a link, and a
/// broadcast from every node afterwards reaches every node.
async fn server_failover(c: &mut Cluster, s: &Settings, t: &mut Tally) -> Result<(), String> {
    c.start_redis_cluster(3).await?;
    let urls: Vec<String> = (0..3).map(|k| c.cluster_url(k)).collect();
    let nodes = start_mesh(
        c,
        s.nodes,
        |k| NodeOptions {
            servers: Some((0..3).map(|j| urls[(k + j) % 3].clone()).collect()),
            ..NodeOptions::default()
        },
        t,
    )
    .await?;
    broadcast_round(c, "sf1", &nodes, None, None, t).await?;
    let orphans: Vec<usize> = nodes.iter().copied().filter(|k| k % 3 == 0).collect();
    let killed = Instant::now();
    c.kill_cluster_server(0).await;
    c.progress(&format!(
        "server 0 killed with SIGKILL ({} nodes on it)",
        orphans.len()
    ));
    c.wait_for(
        "the killed server's nodes to be served by another",
        Duration::from_secs(60),
        |c| {
            let waiting = orphans
                .iter()
                .filter(|&&k| c.nodes[k].server_back_at.is_none_or(|at| at <= killed))
                .count();
            if waiting == 0 {
                Ok(())
            } else {
                Err(format!("{waiting} not joined again"))
            }
        },
    )
    .await?;
    for &k in &orphans {
        if let Some(back) = c.nodes[k].server_back_at {
            t.failover.push(back.duration_since(killed).as_secs_f64());
        }
    }
    let largest = t.failover.iter().copied().fold(0.0, f64::max);
    c.progress(&format!(
        "their nodes joined other servers {largest:.2} s (largest) after the kill"
    ));
    t.notes.push(format!(
        "{} nodes failed over, the last {largest:.2} s after the kill",
        t.failover.len()
    ));
    let live = c.live();
    broadcast_round(c, "sf2", &live, None, None, t).await?;
    // A link the mesh replaced by a better one (an eviction, its own choice; its maintenance goes on
    // whatever the servers do) is not lost; any other end of a link after the kill is.
    let evicted = |reason: &str| reason.starts_with("Evicted");
    let mut replaced = 0;
    let lost: Vec<String> = live
        .iter()
        .filter_map(|&k| {
            let downs: Vec<&String> = c.nodes[k]
                .link_downs
                .iter()
                .filter(|(at, _)| *at > killed)
                .map(|(_, reason)| reason)
                .collect();
            replaced += downs.iter().filter(|r| evicted(r)).count();
            let lost: Vec<&str> = downs
                .iter()
                .filter(|r| !evicted(r))
                .map(|r| r.as_str())
                .collect();
            (!lost.is_empty()).then(|| format!("node {k}: {}", lost.join(" ")))
        })
        .collect();
    if !lost.is_empty() {
        t.fail(format!(
            "links went down after the server was killed: {}",
            lost.join(", ")
        ));
    }
    if replaced > 0 {
        t.notes.push(format!(
            "{replaced} link ends evicted after the kill (the mesh's own replacements)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Choice, percentile};

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.50), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&values[..1], 0.99), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn picks_are_distinct_and_repeatable() {
        let from: Vec<usize> = (0..10).collect();
        let one = Choice(7).pick(&from, 3);
        assert_eq!(one, Choice(7).pick(&from, 3));
        let mut sorted = one.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 3);
        assert_eq!(Choice(7).pick(&from, 20).len(), 10);
    }
}
