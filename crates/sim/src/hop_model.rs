//! The hop and delay models: what a broadcast needs on a graph when nothing is lost or crashes, over
//! shared rooted trees (mesh-core's broadcast) with an eager radius around the origin, and by
//! flooding (whose first copies take the best paths, as a per-origin tree would for every later
//! message from that origin).
//!
//! - The **hop model** counts every link as one hop, over fewest-hop trees: the fewest hops a
//!   message needs on a topology whatever the latencies, so a bound on `ldh`.
//! - The **delay model** gives every link its one-way latency in the simulator's network model and
//!   builds the trees as mesh-core does (the path cost to the root: latency plus
//!   `tree_hop_cost` per hop): what shared trees can reach against flooding, in latency, before
//!   any loss or crash.
//!
//! Run on a broadcast scenario's final mesh they tell the topology's and the trees' share of the
//! run's `ldh` and latency from the repairs' (docs/decisions.md §38); those notes use mesh-core's
//! default trees and hop cost whatever `--tune` changed (the scenario sees its nodes' settings only
//! through [`crate::Protocol`]). Roots are random vertices; a
//! message rides the tree whose root is cheapest to reach from its origin. A node that received the
//! message over fewer hops than the radius pushes it to every link, any other node to its tree
//! neighbours; only a node's first copy is pushed on, and each push counts, so RMR is the
//! simulator's (transmissions / (receivers - 1) - 1).

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use netsim::{NetConfig, Network, percentile};
use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;

use crate::report::{Report, peak_rss_mb};
use crate::scenario::{ScenarioArgs, Strategy, scenario_rng, shuffle};

/// A graph: each vertex's neighbours, symmetric, no self-loops or double links. Vertices without
/// neighbours (crashed slots of a simulated mesh) take no part.
pub type Graph = Vec<Vec<u32>>;

/// A radius that makes every node push to every link: flooding.
pub const FLOOD: u32 = u32::MAX;

/// Radii the reports list.
const RADII: [u32; 6] = [0, 1, 2, 3, 4, FLOOD];

/// What a link costs in a model.
#[derive(Debug, Clone, Copy)]
pub enum Model<'a, T> {
    /// Every link one hop; fewest-hop trees.
    Hops,
    /// Every link its one-way latency in `net` (in microseconds); trees minimise the path's latency
    /// plus `hop_cost` per hop, as mesh-core's `tree_hop_cost` does.
    Delay {
        /// The latencies.
        net: &'a Network<T>,
        /// What a hop adds to a tree path's cost.
        hop_cost: Duration,
    },
}

impl<T: Copy + Ord> Model<'_, T> {
    /// A message's time over the link between `a` and `b`.
    fn link(&self, a: u32, b: u32) -> u64 {
        match self {
            Model::Hops => 1,
            Model::Delay { net, .. } => micros(net.link_latency(a, b)),
        }
    }

    /// The link's cost in a tree path.
    fn tree_link(&self, a: u32, b: u32) -> u64 {
        match self {
            Model::Hops => 1,
            Model::Delay { hop_cost, .. } => self.link(a, b) + micros(*hop_cost),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What broadcasts from sampled origins need in a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HopFigures {
    /// Mean over the origins of the largest hop count at which a node first gets the message.
    pub ldh: f64,
    /// The largest of those.
    pub ldh_max: u32,
    /// Transmissions / (receivers - 1) - 1, summed over the origins.
    pub rmr: f64,
    /// Receivers over the vertices with neighbours, averaged over the origins.
    pub delivery: f64,
    /// Median time from the origin to a receiver, over every origin and receiver (the model's unit:
    /// hops, or microseconds).
    pub p50: u64,
    /// Its 99th percentile.
    pub p99: u64,
}

/// A random graph in which every vertex has `degree` neighbours but for a handful: the configuration
/// model (every vertex's `degree` link ends shuffled and paired in turn), dropping the few pairs that
/// would make a self-loop or a second link between two vertices.
pub fn random_graph(n: usize, degree: usize, rng: &mut ChaCha8Rng) -> Graph {
    let mut ends: Vec<u32> = (0..n as u32)
        .flat_map(|v| std::iter::repeat_n(v, degree))
        .collect();
    shuffle(&mut ends, rng);
    let mut graph: Graph = vec![Vec::with_capacity(degree); n];
    for pair in ends.chunks_exact(2) {
        let (a, b) = (pair[0], pair[1]);
        if a != b && !graph[a as usize].contains(&b) {
            graph[a as usize].push(b);
            graph[b as usize].push(a);
        }
    }
    graph
}

/// One tree: every vertex's path cost to the root (u64::MAX: unreachable) and its tree neighbours.
struct Tree {
    cost: Vec<u64>,
    neighbours: Graph,
}

impl Tree {
    /// The cheapest-path tree from `root` (Dijkstra; among equal costs the parent that settled
    /// first, so in the hop model a breadth-first tree).
    fn new<T: Copy + Ord>(graph: &Graph, model: Model<'_, T>, root: u32) -> Self {
        let n = graph.len();
        let (mut cost, mut parent, mut done) =
            (vec![u64::MAX; n], vec![u32::MAX; n], vec![false; n]);
        cost[root as usize] = 0;
        let mut heap = BinaryHeap::from([Reverse((0u64, 0u64, root))]);
        let mut seq = 0u64;
        while let Some(Reverse((c, _, x))) = heap.pop() {
            if std::mem::replace(&mut done[x as usize], true) {
                continue;
            }
            for &y in &graph[x as usize] {
                let through = c + model.tree_link(x, y);
                if through < cost[y as usize] {
                    cost[y as usize] = through;
                    parent[y as usize] = x;
                    seq += 1;
                    heap.push(Reverse((through, seq, y)));
                }
            }
        }
        let mut neighbours: Graph = vec![Vec::new(); n];
        for (child, &p) in parent.iter().enumerate() {
            if p != u32::MAX {
                neighbours[child].push(p);
                neighbours[p as usize].push(child as u32);
            }
        }
        Self { cost, neighbours }
    }
}

/// One broadcast from `origin`.
struct Spread {
    /// The largest hop count of a first copy.
    last_hop: u32,
    /// Transmissions.
    sent: u64,
    /// Receivers, the origin included.
    reached: u64,
}

/// Spread one message from `origin` (`tree`: the one it rides; `None` with [`FLOOD`]), pushing
/// each receiver's arrival time (but the origin's) to `times`.
fn spread<T: Copy + Ord>(
    graph: &Graph,
    model: Model<'_, T>,
    tree: Option<&Tree>,
    origin: u32,
    radius: u32,
    times: &mut Vec<u64>,
) -> Spread {
    let mut got = vec![false; graph.len()];
    let mut out = Spread {
        last_hop: 0,
        sent: 0,
        reached: 0,
    };
    // Arrivals: (time, order sent, receiver, sender, hops).
    let mut heap = BinaryHeap::from([Reverse((0u64, 0u64, origin, u32::MAX, 0u32))]);
    let mut seq = 0u64;
    while let Some(Reverse((t, _, x, sender, h))) = heap.pop() {
        if std::mem::replace(&mut got[x as usize], true) {
            continue;
        }
        out.reached += 1;
        out.last_hop = out.last_hop.max(h);
        if x != origin {
            times.push(t);
        }
        let targets = match tree {
            Some(tree) if h >= radius => &tree.neighbours[x as usize],
            _ => &graph[x as usize],
        };
        for &y in targets.iter().filter(|&&y| y != sender) {
            out.sent += 1;
            seq += 1;
            heap.push(Reverse((t + model.link(x, y), seq, y, x, h + 1)));
        }
    }
    out
}

/// Broadcasts from up to `origins` vertices spread evenly over those with neighbours, over `trees`
/// trees from random roots with an eager `radius` ([`FLOOD`]: flooding, no trees).
pub fn broadcasts<T: Copy + Ord>(
    graph: &Graph,
    model: Model<'_, T>,
    trees: usize,
    radius: u32,
    origins: usize,
    rng: &mut ChaCha8Rng,
) -> HopFigures {
    let members: Vec<u32> = (0..graph.len() as u32)
        .filter(|&v| !graph[v as usize].is_empty())
        .collect();
    if members.is_empty() {
        return HopFigures {
            ldh: 0.0,
            ldh_max: 0,
            rmr: 0.0,
            delivery: 0.0,
            p50: 0,
            p99: 0,
        };
    }
    let forest: Vec<Tree> = if radius == FLOOD {
        Vec::new()
    } else {
        (0..trees.max(1))
            .map(|_| Tree::new(graph, model, members[rng.random_range(0..members.len())]))
            .collect()
    };
    let step = (members.len() / origins.max(1)).max(1);
    let (mut hops, mut max, mut sent, mut receivers, mut delivered, mut count) =
        (0u64, 0u32, 0u64, 0u64, 0.0, 0u32);
    let mut times = Vec::new();
    for &origin in members.iter().step_by(step) {
        let tree = forest.iter().min_by_key(|t| t.cost[origin as usize]);
        let one = spread(graph, model, tree, origin, radius, &mut times);
        hops += u64::from(one.last_hop);
        max = max.max(one.last_hop);
        sent += one.sent;
        receivers += one.reached - 1;
        delivered += one.reached as f64 / members.len() as f64;
        count += 1;
    }
    let mut at = |p: f64| percentile(&mut times, p).unwrap_or(0);
    let (p50, p99) = (at(50.0), at(99.0));
    HopFigures {
        ldh: hops as f64 / f64::from(count),
        ldh_max: max,
        rmr: if receivers == 0 {
            0.0
        } else {
            sent as f64 / receivers as f64 - 1.0
        },
        delivery: delivered / f64::from(count),
        p50,
        p99,
    }
}

/// Notes on `report`: both models on `graph` (`what` says which graph) with `trees` trees and 64
/// origins, for radii 0 to 4 and flooding; the delay model with `net`'s latencies and `hop_cost`.
pub fn note_figures<T: Copy + Ord>(
    report: &mut Report,
    what: &str,
    graph: &Graph,
    net: &Network<T>,
    hop_cost: Duration,
    trees: usize,
    seed: u64,
) {
    let delay = Model::Delay { net, hop_cost };
    let run = |model, radius| broadcasts(graph, model, trees, radius, 64, &mut scenario_rng(seed));
    let flood = run(delay, FLOOD);
    let ms = |us: u64| us as f64 / 1000.0;
    for radius in RADII {
        let hops = run(Model::Hops, radius);
        let delays = if radius == FLOOD {
            flood
        } else {
            run(delay, radius)
        };
        let name = if radius == FLOOD {
            "flooding".to_string()
        } else {
            format!("{trees} trees, radius {radius}")
        };
        report.note(
            &format!("hop model, {what}: {name}"),
            format!(
                "ldh {:.2} (max {}), rmr {:.4}, delivery {:.4}",
                hops.ldh, hops.ldh_max, hops.rmr, hops.delivery
            ),
        );
        report.note(
            &format!("delay model, {what}: {name}"),
            format!(
                "p50 / p99 {:.1} / {:.1} ms (x flooding {:.2} / {:.2}), ldh {:.2}, rmr {:.4}",
                ms(delays.p50),
                ms(delays.p99),
                delays.p50 as f64 / flood.p50.max(1) as f64,
                delays.p99 as f64 / flood.p99.max(1) as f64,
                delays.ldh,
                delays.rmr
            ),
        );
    }
}

/// The `hop-model` scenario: both models on a random graph of `args.nodes` vertices with `max_peers`
/// links each, `trees` trees, the simulator's default latencies and `tree_hop_cost` (mesh-core's
/// settings, changed with `--tune`). The report's `ldh`, `rmr` and delivery are the hop model's at
/// `eager_radius` (`--strategy flood`: flooding), its latency the delay model's; the notes list
/// every radius.
pub fn run(args: &ScenarioArgs, config: &mesh_core::Config) -> Report {
    let wall = std::time::Instant::now();
    let mut report = Report::new("hop-model", args.nodes, args.seed, args.strategy.name());
    let mut rng = scenario_rng(args.seed);
    let graph = random_graph(args.nodes, config.max_peers, &mut rng);
    let net: Network<kademlia_core::Instant> = Network::new(NetConfig::default(), rng.next_u64());
    let (trees, hop_cost) = (config.gossip.trees, config.gossip.tree_hop_cost);
    let radius = match args.strategy {
        Strategy::Flood => FLOOD,
        Strategy::Plumtree => u32::from(config.gossip.eager_radius),
    };
    let run = |model| {
        broadcasts(
            &graph,
            model,
            trees,
            radius,
            64,
            &mut scenario_rng(args.seed),
        )
    };
    let (hops, delays) = (
        run(Model::Hops),
        run(Model::Delay {
            net: &net,
            hop_cost,
        }),
    );
    report.delivery_ratio = Some(hops.delivery);
    report.rmr = Some(hops.rmr);
    report.ldh = Some(hops.ldh);
    report.ldh_max = Some(hops.ldh_max);
    report.latency_ms_p50 = Some(delays.p50 as f64 / 1000.0);
    report.latency_ms_p99 = Some(delays.p99 as f64 / 1000.0);
    let degree = graph.iter().map(Vec::len).sum::<usize>() as f64 / args.nodes.max(1) as f64;
    report.note(
        "graph",
        format!("random, {} links per vertex", config.max_peers),
    );
    report.note("mean degree", format!("{degree:.3}"));
    note_figures(
        &mut report,
        "random graph",
        &graph,
        &net,
        hop_cost,
        trees,
        args.seed,
    );
    "none".clone_into(&mut report.engine);
    report.wall_s = wall.elapsed().as_secs_f64();
    report.peak_rss_mb = peak_rss_mb();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use kademlia_core::Instant;

    const HOPS: Model<'static, Instant> = Model::Hops;

    fn ring(n: u32) -> Graph {
        (0..n).map(|v| vec![(v + n - 1) % n, (v + 1) % n]).collect()
    }

    fn spread_hops(
        graph: &Graph,
        tree: Option<&Tree>,
        origin: u32,
        radius: u32,
    ) -> (u32, u64, u64) {
        let one = spread(graph, HOPS, tree, origin, radius, &mut Vec::new());
        (one.last_hop, one.sent, one.reached)
    }

    #[test]
    fn a_random_graph_is_simple_symmetric_and_nearly_regular() {
        let graph = random_graph(1000, 5, &mut scenario_rng(1));
        let mut short = 0;
        for (v, peers) in graph.iter().enumerate() {
            assert!(peers.len() <= 5);
            short += 5 - peers.len();
            for &p in peers {
                assert_ne!(p as usize, v);
                assert_eq!(peers.iter().filter(|&&q| q == p).count(), 1);
                assert!(graph[p as usize].contains(&(v as u32)));
            }
        }
        assert!(short <= 40, "{short} link ends dropped");
    }

    /// On a ring of 10, flooding reaches the far side in 5 hops with 11 copies for 9 receivers (the
    /// origin sends 2, every other node 1; two cross at the far side). The tree from vertex 0 is
    /// the path 5-6-7-8-9-0-1-2-3-4: from its end 4 a message needs 9 hops and one copy per
    /// receiver; with radius 1, 4 also pushes to 5 over the ring link, which halves the hops and
    /// costs two copies (its push to 5, and the one that crosses between 8 and 9).
    #[test]
    fn flooding_and_one_tree_on_a_ring_count_as_by_hand() {
        let graph = ring(10);
        assert_eq!(spread_hops(&graph, None, 0, FLOOD), (5, 11, 10));
        let tree = Tree::new(&graph, HOPS, 0);
        assert_eq!(tree.cost[5], 5);
        assert_eq!(tree.neighbours[5], vec![6]);
        assert_eq!(spread_hops(&graph, Some(&tree), 4, 0), (9, 9, 10));
        assert_eq!(spread_hops(&graph, Some(&tree), 4, 1), (5, 11, 10));
    }

    /// `sim --scenario hop-model`: the report's figures are the settings' radius (mesh-core's 3,
    /// or a tuned one), and 8 links need fewer hops than 5.
    #[test]
    fn the_scenario_reports_the_radius_of_the_settings() {
        let mut args = ScenarioArgs::new(crate::Scenario::HopModel);
        args.nodes = 1500;
        let run = |tune: &[(&str, &str)]| {
            let mut args = args.clone();
            args.tune = tune
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            crate::mesh::run(&args).expect("hop-model runs")
        };
        let (five, eight) = (run(&[]), run(&[("max_peers", "8")]));
        let graph = random_graph(1500, 5, &mut scenario_rng(1));
        let three = broadcasts(&graph, HOPS, 12, 3, 64, &mut scenario_rng(1));
        assert_eq!(five.ldh, Some(three.ldh));
        assert_eq!(five.rmr, Some(three.rmr));
        assert_eq!(five.delivery_ratio, Some(1.0));
        assert!(eight.ldh.zip(five.ldh).is_some_and(|(e, f)| e < f));
        assert_eq!(five.engine, "none");
    }

    #[test]
    fn a_larger_radius_lowers_ldh_and_costs_copies() {
        let graph = random_graph(2000, 5, &mut scenario_rng(2));
        let at = |radius| broadcasts(&graph, HOPS, 12, radius, 32, &mut scenario_rng(3));
        let (none, three, flood) = (at(0), at(3), at(FLOOD));
        for f in [none, three, flood] {
            assert!((f.delivery - 1.0).abs() < 1e-9, "{f:?}");
        }
        assert!(
            none.rmr.abs() < 1e-9,
            "one copy per receiver on a tree: {none:?}"
        );
        assert!(three.ldh < none.ldh && flood.ldh < three.ldh);
        assert!(0.0 < three.rmr && three.rmr < flood.rmr);
    }

    /// With every link 10 ms the delay model is the hop model in tens of milliseconds (the trees'
    /// hop cost adds the same to every link, so the trees are the same); with drawn latencies
    /// flooding is the fastest, and the trees slower.
    #[test]
    fn the_delay_model_is_the_hop_model_when_every_link_is_as_fast() {
        let graph = random_graph(1000, 5, &mut scenario_rng(4));
        let ten = Duration::from_millis(10);
        let even: Network<Instant> = Network::new(
            NetConfig {
                latency_min: ten,
                latency_max: ten,
                ..NetConfig::default()
            },
            7,
        );
        let delay = Model::Delay {
            net: &even,
            hop_cost: Duration::from_millis(60),
        };
        for radius in [0, 3, FLOOD] {
            let hops = broadcasts(&graph, HOPS, 12, radius, 16, &mut scenario_rng(5));
            let delays = broadcasts(&graph, delay, 12, radius, 16, &mut scenario_rng(5));
            assert_eq!(
                (delays.p50, delays.p99),
                (hops.p50 * 10_000, hops.p99 * 10_000)
            );
            assert_eq!((delays.ldh, delays.rmr), (hops.ldh, hops.rmr));
        }
        let drawn: Network<Instant> = Network::new(NetConfig::default(), 7);
        let delay = Model::Delay {
            net: &drawn,
            hop_cost: Duration::from_millis(60),
        };
        let flood = broadcasts(&graph, delay, 12, FLOOD, 16, &mut scenario_rng(5));
        let trees = broadcasts(&graph, delay, 12, 3, 16, &mut scenario_rng(5));
        assert!(
            flood.p50 < trees.p50 && flood.p99 < trees.p99,
            "{flood:?} {trees:?}"
        );
    }
}
