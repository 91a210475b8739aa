//! The hop model: how many hops a broadcast needs on a graph when every link is one hop long and
//! nothing is lost or crashes, for shared rooted trees (mesh-core's broadcast) with an eager radius
//! around the origin, and for flooding (whose first copies take the fewest hops, as a per-origin
//! tree would for every later message from that origin). It bounds what `ldh` can reach on a
//! topology whatever the latencies, and tells the topology's share of a run's `ldh` from the rest
//! (fastest-path trees, repairs after crashes and losses). docs/decisions.md §38.
//!
//! The trees are fewest-hop (breadth-first) trees from random roots; a message rides the tree whose
//! root is fewest hops from its origin (mesh-core: cheapest to reach). A node that received the
//! message over fewer hops than the radius pushes it to every link, any other node to its tree
//! neighbours; each push is a transmission, and only a node's first copy is pushed on, so RMR
//! counts as the simulator's does (transmissions / (receivers - 1) - 1).

use std::collections::VecDeque;

use rand::RngExt;
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

/// What broadcasts from sampled origins need, in the hop model.
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

/// Hop distances from `root` (u32::MAX: unreachable) and each vertex's parent on a fewest-hop path
/// (the first neighbour found one hop closer; u32::MAX for the root and the unreachable).
fn breadth_first(graph: &Graph, root: u32) -> (Vec<u32>, Vec<u32>) {
    let mut dist = vec![u32::MAX; graph.len()];
    let mut parent = vec![u32::MAX; graph.len()];
    dist[root as usize] = 0;
    let mut queue = VecDeque::from([root]);
    while let Some(x) = queue.pop_front() {
        for &y in &graph[x as usize] {
            if dist[y as usize] == u32::MAX {
                dist[y as usize] = dist[x as usize] + 1;
                parent[y as usize] = x;
                queue.push_back(y);
            }
        }
    }
    (dist, parent)
}

/// One fewest-hop tree: every vertex's distance to the root and its tree neighbours.
struct Tree {
    dist: Vec<u32>,
    neighbours: Graph,
}

impl Tree {
    fn new(graph: &Graph, root: u32) -> Self {
        let (dist, parent) = breadth_first(graph, root);
        let mut neighbours: Graph = vec![Vec::new(); graph.len()];
        for (child, &p) in parent.iter().enumerate() {
            if p != u32::MAX {
                neighbours[child].push(p);
                neighbours[p as usize].push(child as u32);
            }
        }
        Self { dist, neighbours }
    }
}

/// One broadcast from `origin`: (largest hop, transmissions, receivers including the origin).
fn spread(graph: &Graph, tree: Option<&Tree>, origin: u32, radius: u32) -> (u32, u64, u64) {
    let mut hop = vec![u32::MAX; graph.len()];
    let mut from = vec![u32::MAX; graph.len()];
    hop[origin as usize] = 0;
    let mut queue = VecDeque::from([origin]);
    let (mut last, mut sent, mut reached) = (0, 0u64, 1u64);
    while let Some(x) = queue.pop_front() {
        let h = hop[x as usize];
        last = last.max(h);
        let targets = match tree {
            Some(tree) if h >= radius => &tree.neighbours[x as usize],
            _ => &graph[x as usize],
        };
        let sender = from[x as usize];
        for &y in targets.iter().filter(|&&y| y != sender) {
            sent += 1;
            if hop[y as usize] == u32::MAX {
                hop[y as usize] = h + 1;
                from[y as usize] = x;
                reached += 1;
                queue.push_back(y);
            }
        }
    }
    (last, sent, reached)
}

/// Broadcasts from up to `origins` vertices spread evenly over those with neighbours, over `trees`
/// fewest-hop trees from random roots with an eager `radius` ([`FLOOD`]: flooding, no trees).
pub fn broadcasts(
    graph: &Graph,
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
        };
    }
    let forest: Vec<Tree> = if radius == FLOOD {
        Vec::new()
    } else {
        (0..trees.max(1))
            .map(|_| Tree::new(graph, members[rng.random_range(0..members.len())]))
            .collect()
    };
    let step = (members.len() / origins.max(1)).max(1);
    let (mut hops, mut max, mut sent, mut receivers, mut delivered, mut count) =
        (0u64, 0u32, 0u64, 0u64, 0.0, 0u32);
    for &origin in members.iter().step_by(step) {
        let tree = forest.iter().min_by_key(|t| t.dist[origin as usize]);
        let (last, s, reached) = spread(graph, tree, origin, radius);
        hops += u64::from(last);
        max = max.max(last);
        sent += s;
        receivers += reached - 1;
        delivered += reached as f64 / members.len() as f64;
        count += 1;
    }
    HopFigures {
        ldh: hops as f64 / f64::from(count),
        ldh_max: max,
        rmr: if receivers == 0 {
            0.0
        } else {
            sent as f64 / receivers as f64 - 1.0
        },
        delivery: delivered / f64::from(count),
    }
}

/// Notes on `report`: the hop model on `graph` (`what` says which graph) with `trees` trees and 64
/// origins, for radii 0 to 4 and flooding.
pub fn note_figures(report: &mut Report, what: &str, graph: &Graph, trees: usize, seed: u64) {
    for radius in RADII {
        let figures = broadcasts(graph, trees, radius, 64, &mut scenario_rng(seed));
        let key = if radius == FLOOD {
            format!("hop model, {what}: flooding (fewest hops)")
        } else {
            format!("hop model, {what}: {trees} trees, radius {radius}")
        };
        report.note(
            &key,
            format!(
                "ldh {:.2} (max {}), rmr {:.4}, delivery {:.4}",
                figures.ldh, figures.ldh_max, figures.rmr, figures.delivery
            ),
        );
    }
}

/// The `hop-model` scenario: the hop model on a random graph of `args.nodes` vertices with
/// `max_peers` links each, for `trees` trees; the report's `ldh`, `rmr` and delivery are those of
/// `eager_radius` (mesh-core's settings, changed with `--tune`), the notes list every radius.
pub fn run(args: &ScenarioArgs, config: &mesh_core::Config) -> Report {
    let wall = std::time::Instant::now();
    let mut report = Report::new("hop-model", args.nodes, args.seed, args.strategy.name());
    let mut rng = scenario_rng(args.seed);
    let graph = random_graph(args.nodes, config.max_peers, &mut rng);
    let trees = config.gossip.trees;
    let radius = match args.strategy {
        Strategy::Flood => FLOOD,
        Strategy::Plumtree => u32::from(config.gossip.eager_radius),
    };
    let figures = broadcasts(&graph, trees, radius, 64, &mut scenario_rng(args.seed));
    report.delivery_ratio = Some(figures.delivery);
    report.rmr = Some(figures.rmr);
    report.ldh = Some(figures.ldh);
    report.ldh_max = Some(figures.ldh_max);
    report.components = None;
    let degree = graph.iter().map(Vec::len).sum::<usize>() as f64 / args.nodes.max(1) as f64;
    report.note(
        "graph",
        format!("random, {} links per vertex", config.max_peers),
    );
    report.note("mean degree", format!("{degree:.3}"));
    note_figures(&mut report, "random graph", &graph, trees, args.seed);
    "none".clone_into(&mut report.engine);
    report.wall_s = wall.elapsed().as_secs_f64();
    report.peak_rss_mb = peak_rss_mb();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: u32) -> Graph {
        (0..n).map(|v| vec![(v + n - 1) % n, (v + 1) % n]).collect()
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
        assert_eq!(spread(&graph, None, 0, FLOOD), (5, 11, 10));
        let tree = Tree::new(&graph, 0);
        assert_eq!(tree.dist[5], 5);
        assert_eq!(tree.neighbours[5], vec![6]);
        assert_eq!(spread(&graph, Some(&tree), 4, 0), (9, 9, 10));
        assert_eq!(spread(&graph, Some(&tree), 4, 1), (5, 11, 10));
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
        let mut graph_rng = scenario_rng(1);
        let graph = random_graph(1500, 5, &mut graph_rng);
        let three = broadcasts(&graph, 12, 3, 64, &mut scenario_rng(1));
        assert_eq!(five.ldh, Some(three.ldh));
        assert_eq!(five.rmr, Some(three.rmr));
        assert_eq!(five.delivery_ratio, Some(1.0));
        assert!(eight.ldh.zip(five.ldh).is_some_and(|(e, f)| e < f));
        assert_eq!(five.engine, "none");
    }

    #[test]
    fn a_larger_radius_lowers_ldh_and_costs_copies() {
        let graph = random_graph(2000, 5, &mut scenario_rng(2));
        let at = |radius| broadcasts(&graph, 12, radius, 32, &mut scenario_rng(3));
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
}
