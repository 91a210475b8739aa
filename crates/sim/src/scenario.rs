//! The measured scenarios. Each is a function of its [`ScenarioArgs`] and returns a [`Report`]; the
//! tests and `cargo xtask sim` call the same functions.
//!
//! Time line shared by all: `nodes` nodes are created (keys from the seed) and join one after another,
//! evenly spread over `max(10 s, nodes × 5 ms)` of virtual time; then the mesh settles for 20 s; then the
//! scenario's own phase runs; then a drain long enough for every retry to finish.

use core::time::Duration;
use std::collections::BTreeMap;

use kademlia_core::Instant;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::protocol::Protocol;
use crate::report::{Report, cpu_seconds, peak_rss_mb, percentile};
use crate::simulation::{SimConfig, Simulation};

/// Which scenario (on the command line, its [`Scenario::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 100 broadcasts over a settled mesh with loss and crashes.
    Broadcast,
    /// 1,000 Kademlia lookups (`dht_find_node`), 1,000 mesh lookups (`find_node`, the reported
    /// `lookup_*`) and 1,000 routed direct messages after 10% of the nodes crashed.
    Lookup,
    /// Broadcasts and lookups while nodes crash and restart.
    Churn,
    /// Two halves cut apart for 60 s, then healed.
    Partition,
    /// 100 honest broadcasts while 5% of the nodes attack (tree hijack, false neighbour claims,
    /// future-dated floods, dropping); mesh-core nodes only (see [`crate::attack`]).
    BroadcastAttack,
    /// 1,000 DHT puts, then 30% of the nodes crash and as many new ones join, then 1,000 gets of the
    /// records put (the `dht` function of this module).
    Dht,
    /// No simulation: the hop and delay models ([`crate::hop_model`]) on a random graph of `nodes`
    /// vertices with `max_peers` links each: what a broadcast needs when nothing is lost (the fewest
    /// hops, the latency against flooding's) over shared trees per eager radius, and by flooding.
    HopModel,
}

impl Scenario {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Broadcast => "broadcast",
            Scenario::Lookup => "lookup",
            Scenario::Churn => "churn",
            Scenario::Partition => "partition",
            Scenario::BroadcastAttack => "broadcast-attack",
            Scenario::Dht => "dht",
            Scenario::HopModel => "hop-model",
        }
    }
}

/// How broadcasts spread (on the command line, its [`Strategy::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Eager push along a tree, lazy announcements elsewhere.
    Plumtree,
    /// The JavaScript library's flooding: every link but the sender's.
    Flood,
}

impl Strategy {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Plumtree => "plumtree",
            Strategy::Flood => "flood",
        }
    }
}

/// The parameters of one run.
#[derive(Debug, Clone)]
pub struct ScenarioArgs {
    /// Which scenario.
    pub scenario: Scenario,
    /// Nodes at the start.
    pub nodes: usize,
    /// The seed everything derives from.
    pub seed: u64,
    /// Frame loss probability on peer links; `None`: the scenario's default (broadcast 0.01, else 0).
    pub loss: Option<f64>,
    /// Fraction of nodes that crash; `None`: the scenario's default (broadcast 0.05, lookup 0.10,
    /// churn 0.20 crash-and-restart events per node, partition 0, dht 0.30).
    pub crash: Option<f64>,
    /// Dissemination strategy.
    pub strategy: Strategy,
    /// Print progress to standard error every 10 s of virtual time.
    pub progress: bool,
    /// Fraction of the nodes that attack (`broadcast-attack` only); `None`: 0.05.
    pub attackers: Option<f64>,
    /// Node settings changed from mesh-core's defaults, as `(name, value)` pairs (the broadcast study's
    /// knobs; [`crate::mesh::TUNABLES`] lists the names).
    pub tune: Vec<(String, String)>,
    /// Shards of a sharded run ([`SimConfig::shards`]); 0 (the default): sequential.
    pub shards: usize,
    /// Broadcast only: the nodes that end up lowest in each tree's order (the trees' roots once all
    /// have joined) join before the others, so that no join re-roots a tree (`sim --roots-first`).
    pub roots_first: bool,
}

impl ScenarioArgs {
    /// Defaults for a scenario: 1,000 nodes, seed 1, plumtree.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            nodes: 1_000,
            seed: 1,
            loss: None,
            crash: None,
            strategy: Strategy::Plumtree,
            progress: false,
            attackers: None,
            tune: Vec::new(),
            shards: 0,
            roots_first: false,
        }
    }
}

const SETTLE: Duration = Duration::from_secs(20);

/// The index of gossip's TREE frames in [`netsim::NetStats::frames_by_kind`]: 16 plus gossip's frame
/// kind 5 (see `Driven::frame_kind`).
const TREE_FRAME_KIND: usize = 21;
pub(crate) const DRAIN: Duration = Duration::from_secs(40);
/// Broadcasts whose redundancy is not counted (the tree is still forming).
pub const WARMUP: u32 = 20;
/// A node is expected to deliver a broadcast if it joined at least this long before the publish.
pub const JOIN_GRACE: Duration = Duration::from_secs(10);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// Run a scenario over any [`Protocol`]; `node_config` already carries the strategy.
pub fn run_with<P: Protocol>(args: &ScenarioArgs, node_config: P::Config) -> Report {
    let wall = std::time::Instant::now();
    let cpu = cpu_seconds();
    let mut report = match args.scenario {
        Scenario::Broadcast => broadcast::<P>(args, node_config),
        Scenario::Lookup => lookup::<P>(args, node_config),
        Scenario::Churn => churn::<P>(args, node_config),
        Scenario::Partition => partition::<P>(args, node_config),
        Scenario::Dht => dht::<P>(args, node_config),
        Scenario::BroadcastAttack | Scenario::HopModel => {
            panic!(
                "{} needs mesh-core's settings: call sim::mesh::run",
                args.scenario.name()
            )
        }
    };
    report.wall_s = wall.elapsed().as_secs_f64();
    report.peak_rss_mb = peak_rss_mb();
    report.cpu_s = cpu_seconds().zip(cpu).map(|(end, start)| end - start);
    if args.shards > 0 {
        "sharded".clone_into(&mut report.engine);
    }
    report
}

fn new_sim<P: Protocol>(args: &ScenarioArgs, loss: f64, node_config: P::Config) -> Simulation<P> {
    let mut config = SimConfig::default();
    config.net.loss = loss;
    config.shards = args.shards;
    let mut sim = Simulation::new(args.seed, config, node_config);
    if args.progress {
        sim.set_progress(Some(Duration::from_secs(10)));
    }
    sim
}

pub(crate) fn scenario_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x5ce7_a210_0000_0001)
}

/// `fraction` of the `nodes` node indices, distinct, in random order.
pub(crate) fn pick_victims(nodes: usize, fraction: f64, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut victims: Vec<u32> = (0..nodes as u32).collect();
    shuffle(&mut victims, rng);
    victims.truncate((fraction * nodes as f64).round() as usize);
    victims
}

/// Shuffle `v` in place (Fisher-Yates).
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Create `n` nodes and join them evenly over the join span, then let the mesh settle.
fn join_all<P: Protocol>(sim: &mut Simulation<P>, n: usize) {
    let slots: Vec<u32> = (0..n).map(|_| sim.add_node()).collect();
    join_slots(sim, slots);
}

/// Join the created nodes `slots` evenly over the join span, then let the mesh settle.
pub(crate) fn join_slots<P: Protocol>(sim: &mut Simulation<P>, slots: Vec<u32>) {
    let n = slots.len();
    let span = secs((n as f64 * 0.005).max(10.0));
    let start = sim.now();
    for (i, slot) in slots.into_iter().enumerate() {
        let at = start + span.mul_f64(i as f64 / n as f64);
        sim.run_until(at);
        sim.join(slot);
    }
    sim.run_until(start + span + SETTLE);
}

/// A random live slot that satisfies `ok`, or `None` after many tries.
pub(crate) fn pick<P: Protocol>(
    sim: &Simulation<P>,
    rng: &mut ChaCha8Rng,
    mut ok: impl FnMut(u32) -> bool,
) -> Option<u32> {
    let n = sim.len() as u32;
    (0..10_000)
        .map(|_| rng.random_range(0..n))
        .find(|&s| sim.is_live(s) && ok(s))
}

/// Broadcast measurements over the messages `first..` (all recorded ones), with the redundancy counted
/// from `payload_before` (the payload transmissions when message `WARMUP` was published).
fn broadcast_metrics_from<P: Protocol>(
    sim: &Simulation<P>,
    report: &mut Report,
    first: usize,
    payload_before: Option<u64>,
) {
    let _ = broadcast_metrics(sim, report, None, first, payload_before);
}

/// [`broadcast_metrics_from`], where only the slots `counted` marks (`None`: all) are receivers: expected
/// to deliver (when live and joined [`JOIN_GRACE`] before the publish) and measured. Returns how many
/// broadcasts each receiver that missed some missed.
pub(crate) fn broadcast_metrics<P: Protocol>(
    sim: &Simulation<P>,
    report: &mut Report,
    counted: Option<&[bool]>,
    first: usize,
    payload_before: Option<u64>,
) -> BTreeMap<u32, u64> {
    let counts = |s: u32| counted.is_none_or(|c| c.get(s as usize).copied().unwrap_or(false));
    let live: Vec<u32> = sim
        .live_slots()
        .into_iter()
        .filter(|&s| counts(s))
        .collect();
    let mut expected = 0u64;
    let mut delivered = 0u64;
    let mut latencies = Vec::new();
    let mut ldh = 0;
    let mut per_message_ldh: Vec<f64> = Vec::new();
    let mut receivers_after_warmup = 0u64;
    let mut duplicates = 0u64;
    let mut missed: BTreeMap<u32, u64> = BTreeMap::new();
    for (i, rec) in sim.recorder.broadcasts.iter().enumerate().skip(first) {
        duplicates += u64::from(rec.duplicates);
        for &s in &live {
            if s == rec.origin {
                continue;
            }
            let Some(joined) = sim.joined_at(s) else {
                continue;
            };
            if joined + JOIN_GRACE > rec.published {
                continue;
            }
            expected += 1;
            if rec.has(s) {
                delivered += 1;
            } else {
                *missed.entry(s).or_default() += 1;
            }
        }
        let mut message_ldh = 0;
        for &(_, latency_us, hops) in rec.deliveries.iter().filter(|d| counts(d.0)) {
            latencies.push(latency_us as f64 / 1000.0);
            ldh = ldh.max(hops);
            message_ldh = message_ldh.max(hops);
        }
        if !rec.deliveries.is_empty() {
            per_message_ldh.push(f64::from(message_ldh));
        }

        if i >= WARMUP as usize {
            receivers_after_warmup += rec.deliveries.len() as u64;
        }
    }
    report.delivery_ratio = Some(if expected == 0 {
        0.0
    } else {
        delivered as f64 / expected as f64
    });
    report.ldh = (!per_message_ldh.is_empty())
        .then(|| per_message_ldh.iter().sum::<f64>() / per_message_ldh.len() as f64);
    report.ldh_max = Some(ldh);
    report.latency_ms_p50 = percentile(&mut latencies, 50.0);
    report.latency_ms_p99 = percentile(&mut latencies, 99.0);
    if let Some(before) = payload_before
        && receivers_after_warmup > 0
    {
        let payload = sim.payload_transmissions().saturating_sub(before);
        report.rmr = Some(payload as f64 / receivers_after_warmup as f64 - 1.0);
        report.note("rmr payload transmissions", payload);
        report.note("rmr receivers - 1 (summed)", receivers_after_warmup);
    }
    report.note(
        "ldh of each broadcast p50 / p99",
        format!(
            "{} / {}",
            percentile(&mut per_message_ldh, 50.0).unwrap_or(0.0),
            percentile(&mut per_message_ldh, 99.0).unwrap_or(0.0)
        ),
    );
    let hops = sim.recorder.broadcasts.iter().skip(first).flat_map(|rec| {
        rec.deliveries
            .iter()
            .filter(|d| counts(d.0))
            .map(|&(_, _, hops)| usize::try_from(hops).unwrap_or(usize::MAX))
    });
    report.note("deliveries by hops (0..)", histogram(hops, 33));
    report.note(
        "deliveries by latency (100 ms bins from 0)",
        histogram(latencies.iter().map(|ms| (*ms / 100.0) as usize), 31),
    );
    report.note("broadcast expected deliveries", expected);
    report.note("broadcast missed deliveries", expected - delivered);
    report.note("broadcast duplicate deliveries", duplicates);
    missed
}

/// Counts of `values` in `bins` bins (the last one takes every larger value), as one line of counts
/// from 0 up to the last non-empty bin.
pub(crate) fn histogram(values: impl IntoIterator<Item = usize>, bins: usize) -> String {
    let mut hist = vec![0u64; bins.max(1)];
    let last_bin = hist.len() - 1;
    for v in values {
        hist[v.min(last_bin)] += 1;
    }
    let last = hist.iter().rposition(|&c| c > 0).unwrap_or(0);
    hist[..=last]
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn net_notes<P: Protocol>(sim: &Simulation<P>, report: &mut Report) {
    let s = sim.stats();
    report.note(
        "virtual seconds",
        format!(
            "{:.1}",
            (sim.now() - SimConfig::default().start).as_secs_f64()
        ),
    );
    report.note("events", s.events);
    report.events = Some(s.events);
    report.note(
        "frames sent / lost / cut / no link",
        format!(
            "{} / {} / {} / {}",
            s.frames_sent, s.frames_lost, s.frames_cut, s.frames_no_link
        ),
    );
    report.note("bytes delivered", s.bytes_delivered);
    report.note(
        "links attempted / opened",
        format!("{} / {}", s.links_attempted, s.links_opened),
    );
    report.note(
        "signals relayed / dropped",
        format!("{} / {}", s.signals_relayed, s.signals_dropped),
    );
    report.note(
        "offers answered / refused; answers matched / stale",
        format!(
            "{} / {}; {} / {}",
            s.offers_answered, s.offers_unsolicited, s.answers_matched, s.answers_stale
        ),
    );
    report.note(
        "attempts abandoned <1s / <10s / later; answerer; failed after answer",
        format!(
            "{} / {} / {}; {}; {}",
            s.attempts_abandoned[0],
            s.attempts_abandoned[1],
            s.attempts_abandoned[2],
            s.answers_abandoned,
            s.link_up_failed
        ),
    );
    report.note("stalled timers", s.stalled_timers);
    report.note("timers run", s.timers_run);
    for (name, value) in sim.counters() {
        report.note(&format!("nodes (live, summed): {name}"), value);
    }
    let (degree, ecc_p50, ecc_max) = sim.topology(64);
    report.note(
        "mesh mean degree; eccentricity p50 / max (64 sampled nodes)",
        format!("{degree:.2}; {ecc_p50} / {ecc_max}"),
    );
    let k = &s.frames_by_kind;
    report.note(
        "frames: hello kad direct signal chunk neighbors ping pong evict bye",
        format!(
            "{} {} {} {} {} {} {} {} {} {}",
            k[0], k[1], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10]
        ),
    );
    report.note(
        "gossip frames: payload ack ihave graft prune tree catch-up roots",
        format!(
            "{} {} {} {} {} {} {} {}",
            k[16], k[17], k[18], k[19], k[20], k[TREE_FRAME_KIND], k[22], k[23]
        ),
    );
}

fn broadcast<P: Protocol>(args: &ScenarioArgs, node_config: P::Config) -> Report {
    let loss = args.loss.unwrap_or(0.01);
    let crash = args.crash.unwrap_or(0.05);
    let mut report = Report::new("broadcast", args.nodes, args.seed, args.strategy.name());
    let mut rng = scenario_rng(args.seed);
    let mut sim = new_sim::<P>(args, loss, node_config);
    let mut slots: Vec<u32> = (0..args.nodes).map(|_| sim.add_node()).collect();
    if args.roots_first {
        let mut config = mesh_core::Config::default();
        // The tunes were checked when the nodes' configuration was made.
        let _ = crate::mesh::apply_tune(&mut config, &args.tune);
        slots = roots_first(&sim, slots, config.gossip.trees);
        report.note("join order", "the trees' final roots first");
    }
    join_slots(&mut sim, slots);
    let joined = sim.stats();

    const MESSAGES: u32 = 100;
    let interval = Duration::from_secs(1);
    let t0 = sim.now();
    let phase = interval * MESSAGES;
    // Crashes at random times during the broadcasts, distinct victims.
    let victims = pick_victims(args.nodes, crash, &mut rng);
    let mut plan: Vec<(Instant, Option<u32>, u32)> = victims
        .iter()
        .map(|&v| (t0 + phase.mul_f64(rng.random::<f64>()), Some(v), 0))
        .collect();
    plan.extend((0..MESSAGES).map(|i| (t0 + interval * i, None, i)));
    plan.sort_by_key(|&(t, v, i)| (t, v.is_none(), i));

    let mut payload_before = None;
    for (at, victim, index) in plan {
        sim.run_until(at);
        match victim {
            Some(v) => sim.crash(v),
            None => {
                if index == WARMUP {
                    payload_before = Some(sim.payload_transmissions());
                }
                if let Some(origin) = pick(&sim, &mut rng, |_| true) {
                    sim.broadcast(origin, index);
                }
            }
        }
    }
    let published = sim.stats();
    sim.run_for(DRAIN);
    broadcast_metrics_from(&sim, &mut report, 0, payload_before);
    report.components = Some(sim.components());
    phase_notes(&mut report, [&joined, &published, &sim.stats()]);
    report.note("loss", loss);
    report.note("crashed", victims.len());
    report.note("rmr definition", format!(
        "sum of payload transmissions / sum of (receivers - 1) - 1 over messages {WARMUP}..{MESSAGES}"
    ));
    report.note(
        "delivery definition",
        format!(
            "nodes live at the end that joined >= {} s before the publish",
            JOIN_GRACE.as_secs()
        ),
    );
    net_notes(&sim, &mut report);
    let gossip = mesh_core::Config::default().gossip;
    let (graph, net) = (sim.mutual_links(), sim.network().clone());
    crate::hop_model::note_figures(
        &mut report,
        "final mesh",
        &graph,
        &net,
        gossip.tree_hop_cost,
        gossip.trees,
        args.seed,
    );
    report
}

/// `slots` in join order with the nodes lowest in each of `trees` trees' orders first (each tree's root
/// once all have joined, [`gossip_core::tree_order_key`]), the others after them in their order. No
/// node that joins later is lower in any tree than the root it finds, so no join re-roots a tree.
pub(crate) fn roots_first<P: Protocol>(
    sim: &Simulation<P>,
    slots: Vec<u32>,
    trees: usize,
) -> Vec<u32> {
    let mut first: Vec<u32> = (0..trees.max(1))
        .filter_map(|tree| {
            slots
                .iter()
                .copied()
                .min_by_key(|&slot| gossip_core::tree_order_key(trees, tree, &sim.id(slot)))
        })
        .collect();
    first.sort_unstable();
    first.dedup();
    let rest = slots.into_iter().filter(|slot| !first.contains(slot));
    first.iter().copied().chain(rest).collect()
}

/// Where the broadcast scenario's events and frames fall: while the nodes join, from the end of the
/// join to the last publish, and while the last broadcasts drain (`at`: the counts at the end of each).
fn phase_notes(report: &mut Report, at: [&netsim::NetStats; 3]) {
    let split = |count: fn(&netsim::NetStats) -> u64| {
        format!(
            "{} / {} / {}",
            count(at[0]),
            count(at[1]) - count(at[0]),
            count(at[2]) - count(at[1])
        )
    };
    report.note("events: join / broadcasts / drain", split(|s| s.events));
    report.note(
        "frames: join / broadcasts / drain",
        split(|s| s.frames_sent),
    );
    report.note(
        "tree frames: join / broadcasts / drain",
        split(|s| s.frames_by_kind[TREE_FRAME_KIND]),
    );
}

/// Lookup figures: success, rounds, link traversals and duration percentiles of `records`.
struct LookupFigures {
    success: f64,
    hops: (Option<f64>, Option<f64>),
    links: (Option<f64>, Option<f64>),
    ms: (Option<f64>, Option<f64>),
    note: String,
}

fn lookup_figures(records: &[crate::recorder::LookupRecord]) -> LookupFigures {
    let mut found = 0u64;
    let mut rounds = Vec::new();
    let mut durations = Vec::new();
    let mut links: Vec<f64> = records
        .iter()
        .filter_map(|r| r.links.map(f64::from))
        .collect();
    let mut unfinished = 0u64;
    for rec in records {
        match rec.finished {
            Some((at, r, ok)) => {
                if ok {
                    found += 1;
                }
                rounds.push(f64::from(r));
                durations.push(ms(at - rec.started));
            }
            None => unfinished += 1,
        }
    }
    let started = records.len() as u64;
    LookupFigures {
        success: if started == 0 {
            0.0
        } else {
            found as f64 / started as f64
        },
        hops: (percentile(&mut rounds, 50.0), percentile(&mut rounds, 99.0)),
        links: (percentile(&mut links, 50.0), percentile(&mut links, 99.0)),
        ms: (
            percentile(&mut durations, 50.0),
            percentile(&mut durations, 99.0),
        ),
        note: format!("{started} / {found} / {unfinished}"),
    }
}

/// The lookup users get (`find_node`, mesh-core's recursive lookup) as the `lookup_*` figures, with its
/// link traversals as `lookup_links_*`; kademlia-core's iterative lookup (`dht_find_node`) as the extra
/// `kad_lookup_*` keys. See the [`report`](crate::report) module docs.
fn lookup_metrics<P: Protocol>(sim: &Simulation<P>, report: &mut Report) {
    if !sim.recorder.probes.is_empty() {
        let f = lookup_figures(&sim.recorder.probes);
        report.lookup_success = Some(f.success);
        (report.lookup_hops_p50, report.lookup_hops_p99) = f.hops;
        (report.lookup_links_p50, report.lookup_links_p99) = f.links;
        (report.lookup_ms_p50, report.lookup_ms_p99) = f.ms;
        report.note("find_node lookups started / found / unfinished", f.note);
    }
    if !sim.recorder.lookups.is_empty() {
        let f = lookup_figures(&sim.recorder.lookups);
        report.kad_lookup_success = Some(f.success);
        (report.kad_lookup_hops_p50, report.kad_lookup_hops_p99) = f.hops;
        (report.kad_lookup_ms_p50, report.kad_lookup_ms_p99) = f.ms;
        report.note("dht_find_node lookups started / found / unfinished", f.note);
    }
}

fn lookup<P: Protocol>(args: &ScenarioArgs, node_config: P::Config) -> Report {
    let loss = args.loss.unwrap_or(0.0);
    let crash = args.crash.unwrap_or(0.10);
    let mut report = Report::new("lookup", args.nodes, args.seed, args.strategy.name());
    let mut rng = scenario_rng(args.seed);
    let mut sim = new_sim::<P>(args, loss, node_config);
    join_all(&mut sim, args.nodes);

    let victims = pick_victims(args.nodes, crash, &mut rng);
    for &v in &victims {
        sim.crash(v);
    }
    sim.run_for(Duration::from_secs(1));

    const LOOKUPS: usize = 1_000;
    const DIRECTS: usize = 1_000;
    let spacing = Duration::from_millis(10);
    for _ in 0..LOOKUPS {
        if let Some(from) = pick(&sim, &mut rng, |_| true)
            && let Some(target) = pick(&sim, &mut rng, |t| t != from)
        {
            let id = sim.id(target);
            sim.find_node(from, id);
        }
        sim.run_for(spacing);
    }
    sim.run_for(Duration::from_secs(30));
    // mesh-core's recursive lookups (`find_node`, what users call), reported as `lookup_*`; the
    // Kademlia lookups above are the extra `kad_lookup_*` keys.
    for _ in 0..LOOKUPS {
        if let Some(from) = pick(&sim, &mut rng, |_| true)
            && let Some(target) = pick(&sim, &mut rng, |t| t != from)
        {
            let id = sim.id(target);
            sim.probe(from, id);
        }
        sim.run_for(spacing);
    }
    sim.run_for(Duration::from_secs(30));
    for _ in 0..DIRECTS {
        if let Some(from) = pick(&sim, &mut rng, |_| true) {
            let links = sim.node(from).map(P::links).unwrap_or_default();
            let target = pick(&sim, &mut rng, |t| t != from && !links.contains(&sim.id(t)));
            if let Some(to) = target {
                sim.send_direct(from, to);
            }
        }
        sim.run_for(spacing);
    }
    sim.run_for(DRAIN);

    lookup_metrics(&sim, &mut report);
    let directs = &sim.recorder.directs;
    let delivered: Vec<f64> = directs
        .iter()
        .filter_map(|d| d.delivered.map(|(h, _)| f64::from(h)))
        .collect();
    let failed = directs.iter().filter(|d| d.failed).count();
    report.direct_delivery_ratio = Some(delivered.len() as f64 / directs.len().max(1) as f64);
    let mut hops = delivered;
    report.direct_hops_p50 = percentile(&mut hops, 50.0);
    report.direct_hops_p99 = percentile(&mut hops, 99.0);
    report.note(
        "direct deliveries by link traversals (0..)",
        histogram(hops.iter().map(|&h| h as usize), 34),
    );
    report.components = Some(sim.components());
    report.note("loss", loss);
    report.note("crashed (at once, after settling)", victims.len());
    report.note(
        "direct sent / delivered / failed",
        format!("{} / {} / {failed}", directs.len(), hops.len()),
    );
    net_notes(&sim, &mut report);
    report
}

fn churn<P: Protocol>(args: &ScenarioArgs, node_config: P::Config) -> Report {
    let loss = args.loss.unwrap_or(0.0);
    let rate = args.crash.unwrap_or(0.20);
    let mut report = Report::new("churn", args.nodes, args.seed, args.strategy.name());
    let mut rng = scenario_rng(args.seed);
    let mut sim = new_sim::<P>(args, loss, node_config);
    join_all(&mut sim, args.nodes);

    // The churn plan, fixed up front so that origins and lookup targets can be picked among nodes that
    // stay up: `rate × nodes` crashes at random times over the phase, each restarting with the same key
    // after 5-20 s down.
    let phase = Duration::from_secs(100);
    let t0 = sim.now();
    let crashes = (rate * args.nodes as f64).round() as usize;
    let mut times: Vec<Instant> = (0..crashes)
        .map(|_| t0 + phase.mul_f64(rng.random::<f64>()))
        .collect();
    times.sort();
    let n = args.nodes as u32;
    let mut down: Vec<Vec<(Instant, Instant)>> = vec![Vec::new(); args.nodes];
    // (time, kind: 0 restart, 1 crash, 2 broadcast, 3 lookup, index)
    let mut plan: Vec<(Instant, u8, u32)> = Vec::new();
    for at in times {
        let victim = (0..1_000).map(|_| rng.random_range(0..n)).find(|&v| {
            down[v as usize]
                .last()
                .is_none_or(|&(_, up)| up + JOIN_GRACE < at)
        });
        if let Some(v) = victim {
            let up = at + secs(rng.random_range(5.0..20.0));
            down[v as usize].push((at, up));
            plan.push((at, 1, v));
            plan.push((up, 0, v));
        }
    }
    let restarts = plan.iter().filter(|p| p.1 == 0).count();
    for i in 0..100u32 {
        plan.push((t0 + Duration::from_secs(u64::from(i)), 2, i));
    }
    for i in 0..500u32 {
        plan.push((t0 + Duration::from_millis(u64::from(i) * 200), 3, i));
    }
    plan.sort();
    // Up, and joined long enough ago, over the whole of [from, to].
    let stable = |s: u32, from: Instant, to: Instant| {
        down[s as usize]
            .iter()
            .all(|&(c, u)| to < c || u + JOIN_GRACE <= from)
    };
    for (at, kind, x) in plan {
        sim.run_until(at);
        match kind {
            0 => sim.restart(x),
            1 => sim.crash(x),
            2 => {
                if let Some(origin) = pick(&sim, &mut rng, |s| stable(s, at, at + secs(1.0))) {
                    sim.broadcast(origin, x);
                }
            }
            _ => {
                let window = at + Duration::from_secs(30);
                if let Some(from) = pick(&sim, &mut rng, |s| stable(s, at, window))
                    && let Some(target) =
                        pick(&sim, &mut rng, |t| t != from && stable(t, at, window))
                {
                    let id = sim.id(target);
                    // The same pair through both lookups: `find_node` (`lookup_*`) and
                    // kademlia-core's `dht_find_node` (`kad_lookup_*`).
                    sim.probe(from, id);
                    sim.find_node(from, id);
                }
            }
        }
    }
    sim.run_for(DRAIN);
    broadcast_metrics_from(&sim, &mut report, 0, None);
    lookup_metrics(&sim, &mut report);
    report.components = Some(sim.components());
    report.note("loss", loss);
    report.note(
        "crash-restart events",
        format!("{restarts} (restart with the same key after 5-20 s)"),
    );
    report.note(
        "delivery definition",
        format!(
            "nodes live at the end that (re)joined >= {} s before the publish",
            JOIN_GRACE.as_secs()
        ),
    );
    report.note(
        "lookup definition",
        "find_node (lookup_*) and dht_find_node (kad_lookup_*) of the same target; origin and \
         target stay up for 30 s from the start",
    );
    net_notes(&sim, &mut report);
    report
}

fn partition<P: Protocol>(args: &ScenarioArgs, node_config: P::Config) -> Report {
    let loss = args.loss.unwrap_or(0.0);
    let crash = args.crash.unwrap_or(0.0);
    let mut report = Report::new("partition", args.nodes, args.seed, args.strategy.name());
    let mut rng = scenario_rng(args.seed);
    let mut sim = new_sim::<P>(args, loss, node_config);
    join_all(&mut sim, args.nodes);

    let victims = pick_victims(args.nodes, crash, &mut rng);
    for &v in &victims {
        sim.crash(v);
    }
    let side_a: Vec<bool> = (0..args.nodes).map(|_| rng.random_bool(0.5)).collect();
    let cut = Duration::from_secs(60);
    let start = sim.now() + Duration::from_secs(1);
    sim.partition(side_a, start, start + cut);
    sim.run_until(start + Duration::from_secs(30));
    let components_during = sim.components();
    sim.run_until(start + cut);
    let heal_settle = Duration::from_secs(60);
    sim.run_for(heal_settle);
    report.components = Some(sim.components());
    let first = sim.recorder.broadcasts.len();
    for i in 0..20u32 {
        if let Some(origin) = pick(&sim, &mut rng, |_| true) {
            sim.broadcast(origin, first as u32 + i);
        }
        sim.run_for(Duration::from_secs(1));
    }
    sim.run_for(DRAIN);
    broadcast_metrics_from(&sim, &mut report, first, None);
    report.note("loss", loss);
    report.note("crashed before the cut", victims.len());
    report.note("components 30 s into the cut", components_during);
    report.note(
        "components measured",
        format!("{} s after the heal", heal_settle.as_secs()),
    );
    net_notes(&sim, &mut report);
    report
}

/// DHT puts in the `dht` scenario, and gets.
pub const DHT_RECORDS: u32 = 1_000;
/// Between two puts, and between two gets: 1,000 of each over 5 s.
const DHT_SPACING: Duration = Duration::from_millis(5);
/// The most a phase waits for its puts or gets to finish (a get ends within `lookup_max_rounds` ×
/// `lookup_round_timeout`, 8 s with mesh-core's defaults).
const DHT_WAIT: Duration = Duration::from_secs(30);

/// Run until every DHT command of `records` finished, checking once a virtual second, for at most
/// [`DHT_WAIT`]; returns how long it waited.
fn wait_dht<P: Protocol>(
    sim: &mut Simulation<P>,
    done: impl Fn(&Simulation<P>) -> bool,
) -> Duration {
    let start = sim.now();
    while !done(sim) && sim.now() < start + DHT_WAIT {
        sim.run_for(Duration::from_secs(1));
    }
    sim.now() - start
}

/// For each record index below [`DHT_RECORDS`], the live nodes that hold it with the value it was put
/// with (stored for others or published).
fn dht_holders<P: Protocol>(sim: &Simulation<P>) -> Vec<u32> {
    let mut holders = vec![0u32; DHT_RECORDS as usize];
    for slot in sim.live_slots() {
        let Some(node) = sim.node(slot) else {
            continue;
        };
        let mut held: Vec<u32> = node
            .dht_records()
            .into_iter()
            .filter_map(|(name, value)| {
                let index: u32 = std::str::from_utf8(&name)
                    .ok()?
                    .strip_prefix("rec-")?
                    .parse()
                    .ok()?;
                (index < DHT_RECORDS && value == crate::recorder::dht_value(index)).then_some(index)
            })
            .collect();
        held.sort_unstable();
        held.dedup();
        for index in held {
            holders[index as usize] += 1;
        }
    }
    holders
}

/// `dht`: `nodes` nodes join and settle; 1,000 records (`rec-<i>`, a 16-byte value) are put by random
/// live nodes, one every 5 ms, and the scenario waits for the puts to end. Then `crash` (default 30%)
/// of the nodes crash at once without notice and as many new nodes (new keys) join, spread over the
/// join span (10 s up to 2,000 joiners), followed by the usual 20 s settle: 30 s from the crash to the
/// first get. That is 6-15 times the 2-5 s a node takes to notice a dead link, so every survivor has
/// dropped its dead links and the joiners have their links and records handed over, while the
/// records' republication (every 30 min) plays no part: what is measured is the replicas made at put
/// time and the hand-over to joiners. Then 1,000 gets of random records among those whose put
/// succeeded, from random live nodes, one every 5 ms. See the [`report`](crate::report) docs.
fn dht<P: Protocol>(args: &ScenarioArgs, node_config: P::Config) -> Report {
    let loss = args.loss.unwrap_or(0.0);
    let crash = args.crash.unwrap_or(0.30);
    let mut report = Report::new("dht", args.nodes, args.seed, args.strategy.name());
    let mut rng = scenario_rng(args.seed);
    let mut sim = new_sim::<P>(args, loss, node_config);
    join_all(&mut sim, args.nodes);

    for index in 0..DHT_RECORDS {
        if let Some(from) = pick(&sim, &mut rng, |_| true) {
            sim.dht_put(from, index);
        }
        sim.run_for(DHT_SPACING);
    }
    let put_wait = wait_dht(&mut sim, |sim| {
        sim.recorder
            .puts
            .iter()
            .all(|p| p.query.is_none() || p.finished.is_some())
    });

    let victims = pick_victims(args.nodes, crash, &mut rng);
    for &v in &victims {
        sim.crash(v);
    }
    let first_new = sim.len() as u32;
    let joiners: Vec<u32> = (0..victims.len()).map(|_| sim.add_node()).collect();
    let churn_start = sim.now();
    join_slots(&mut sim, joiners);
    let settle = sim.now() - churn_start;
    let holders_before = dht_holders(&sim);

    let stored: Vec<u32> = sim
        .recorder
        .puts
        .iter()
        .filter(|p| p.finished.as_ref().is_some_and(|f| f.stored >= 1))
        .map(|p| p.index)
        .collect();
    if !stored.is_empty() {
        for _ in 0..DHT_RECORDS {
            let index = stored[rng.random_range(0..stored.len())];
            if let Some(from) = pick(&sim, &mut rng, |_| true) {
                sim.dht_get(from, index);
            }
            sim.run_for(DHT_SPACING);
        }
    }
    let get_wait = wait_dht(&mut sim, |sim| {
        sim.recorder
            .gets
            .iter()
            .all(|g| g.query.is_none() || g.finished.is_some())
    });
    let holders_after = dht_holders(&sim);

    dht_metrics(
        &sim,
        &mut report,
        first_new,
        &holders_before,
        &holders_after,
    );
    report.components = Some(sim.components());
    report.note("loss", loss);
    report.note(
        "crashed at once after the puts / joined",
        format!("{} / {}", victims.len(), victims.len()),
    );
    report.note(
        "waited for puts / crash to first get / waited for gets (virtual s)",
        format!(
            "{:.0} / {:.0} / {:.0}",
            put_wait.as_secs_f64(),
            settle.as_secs_f64(),
            get_wait.as_secs_f64()
        ),
    );
    net_notes(&sim, &mut report);
    report
}

/// The DHT figures (see the [`report`](crate::report) docs) and diagnostics. Slots from `first_new`
/// joined after the crash; `holders_*` are [`dht_holders`] before the gets and at the end.
fn dht_metrics<P: Protocol>(
    sim: &Simulation<P>,
    report: &mut Report,
    first_new: u32,
    holders_before: &[u32],
    holders_after: &[u32],
) {
    let puts = &sim.recorder.puts;
    let put_ok: Vec<u32> = puts
        .iter()
        .filter(|p| p.finished.as_ref().is_some_and(|f| f.stored >= 1))
        .map(|p| p.index)
        .collect();
    report.put_success = Some(put_ok.len() as f64 / puts.len().max(1) as f64);
    let mut stored: Vec<f64> = puts
        .iter()
        .filter_map(|p| p.finished.as_ref().map(|f| f64::from(f.stored)))
        .collect();
    let mut asked: Vec<f64> = puts
        .iter()
        .filter_map(|p| p.finished.as_ref().map(|f| f64::from(f.asked)))
        .collect();
    report.put_stored_p50 = percentile(&mut stored, 50.0);
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    for f in puts.iter().filter_map(|p| p.finished.as_ref()) {
        if let Some(r) = f.refused {
            *refusals.entry(format!("{r:?}")).or_default() += 1;
        }
    }
    report.note(
        "puts started / refused at once / finished / stored >= 1",
        format!(
            "{} / {} / {} / {}",
            puts.len(),
            puts.iter().filter(|p| p.query.is_none()).count(),
            stored.len(),
            put_ok.len()
        ),
    );
    report.note(
        "put stored min / p50; asked p50",
        format!(
            "{} / {}; {}",
            stored.first().copied().unwrap_or(0.0),
            percentile(&mut stored, 50.0).unwrap_or(0.0),
            percentile(&mut asked, 50.0).unwrap_or(0.0)
        ),
    );
    report.note(
        "puts that heard a refusal, by the last one",
        format!("{refusals:?}"),
    );

    let gets = &sim.recorder.gets;
    let found: Vec<&crate::recorder::GetRecord> = gets.iter().filter(|g| g.found()).collect();
    report.get_success = (!gets.is_empty()).then(|| found.len() as f64 / gets.len() as f64);
    let mut hops: Vec<f64> = found
        .iter()
        .filter_map(|g| g.finished.as_ref().map(|f| f64::from(f.hops)))
        .collect();
    report.get_hops_p50 = percentile(&mut hops, 50.0);
    report.get_hops_p99 = percentile(&mut hops, 99.0);
    let mut durations: Vec<f64> = gets
        .iter()
        .filter_map(|g| g.finished.as_ref().map(|f| ms(f.at - g.started)))
        .collect();
    report.get_ms_p50 = percentile(&mut durations, 50.0);
    report.get_ms_p99 = percentile(&mut durations, 99.0);
    let mut rounds: Vec<f64> = gets
        .iter()
        .filter_map(|g| g.finished.as_ref().map(|f| f64::from(f.rounds)))
        .collect();
    let unfinished = gets
        .iter()
        .filter(|g| g.query.is_some() && g.finished.is_none())
        .count();
    let finished: Vec<(&crate::recorder::GetRecord, &crate::recorder::GetResult)> = gets
        .iter()
        .filter_map(|g| g.finished.as_ref().map(|f| (g, f)))
        .collect();
    let wrong = finished
        .iter()
        .filter(|(g, f)| f.value.is_some() && !g.found())
        .count();
    let none_answered = finished
        .iter()
        .filter(|(_, f)| f.value.is_none() && f.answered)
        .count();
    let none_silent = finished
        .iter()
        .filter(|(_, f)| f.value.is_none() && !f.answered)
        .count();
    report.note(
        "gets started / found / refused at once / unfinished",
        format!(
            "{} / {} / {} / {unfinished}",
            gets.len(),
            found.len(),
            gets.iter().filter(|g| g.query.is_none()).count()
        ),
    );
    report.note(
        "gets not found: wrong value / none, answered / none, no answer",
        format!("{wrong} / {none_answered} / {none_silent}"),
    );
    report.note(
        "gets from the local store (0 rounds)",
        finished.iter().filter(|(_, f)| f.rounds == 0).count(),
    );
    report.note(
        "get rounds p50 / p99 / max",
        format!(
            "{} / {} / {}",
            percentile(&mut rounds, 50.0).unwrap_or(0.0),
            percentile(&mut rounds, 99.0).unwrap_or(0.0),
            rounds.last().copied().unwrap_or(0.0)
        ),
    );
    report.note(
        "found gets by link traversals (0..)",
        histogram(hops.iter().map(|&h| h as usize), 33),
    );
    let by = |new: bool| {
        let of: Vec<_> = gets
            .iter()
            .filter(|g| (g.from >= first_new) == new)
            .collect();
        format!("{} / {}", of.iter().filter(|g| g.found()).count(), of.len())
    };
    report.note(
        "gets found / started: by first nodes; by joiners",
        format!("{}; {}", by(false), by(true)),
    );
    let failed: Vec<String> = gets
        .iter()
        .filter(|g| !g.found())
        .take(10)
        .map(|g| {
            let end = g.finished.as_ref().map_or_else(
                || "unfinished".to_owned(),
                |f| {
                    format!(
                        "answered {} rounds {} hops {} after {} ms",
                        f.answered,
                        f.rounds,
                        f.hops,
                        ms(f.at - g.started)
                    )
                },
            );
            format!(
                "rec-{} from slot {}{}: {end}, live holders before the gets {} / at the end {}",
                g.index,
                g.from,
                if g.from >= first_new { " (joiner)" } else { "" },
                holders_before[g.index as usize],
                holders_after[g.index as usize]
            )
        })
        .collect();
    if !failed.is_empty() {
        report.note("failed gets (first 10)", failed.join("; "));
    }

    let lost = put_ok
        .iter()
        .filter(|&&i| holders_after[i as usize] == 0)
        .count();
    report.records_lost = Some(lost as u64);
    let holders = |h: &[u32]| {
        let mut v: Vec<f64> = put_ok.iter().map(|&i| f64::from(h[i as usize])).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let p50 = percentile(&mut v, 50.0).unwrap_or(0.0);
        if min.is_finite() {
            format!("{min} / {p50}")
        } else {
            "-".to_owned()
        }
    };
    report.note(
        "record's live holders min / p50: before gets; at end",
        format!("{}; {}", holders(holders_before), holders(holders_after)),
    );
    report.note(
        "records held by no live node before the gets",
        put_ok
            .iter()
            .filter(|&&i| holders_before[i as usize] == 0)
            .count(),
    );
}
