//! `cargo xtask broadcast-study`: the study behind the broadcast's settings (issue 17,
//! docs/decisions.md §35). It runs the simulator's broadcast scenario (release build) once per
//! variant, on the same mesh and seed: flooding, the settings before issue 17 (fewest-hops trees are
//! approximated by a hop cost of 10 s, which leaves the link latency only as a tie-break), each change
//! added in turn (the latest: the feasible-successor rule, repeated announcements), other radii, hop
//! costs, fewer trees, damped tree adverts (fewer `Tree` frames while the mesh forms), more long
//! links and 8 links per node; and prints one row per variant with delivery, RMR, `ldh`, the latency
//! percentiles, the simulator's events, and the latency as a multiple of flooding's.
//! Two variants run at a time (each run is single-threaded).

use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::util::{build_sim, last_json, output};

/// Flags of `cargo xtask broadcast-study`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Nodes of each run.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// The seed of every run (the same mesh for every variant).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only the variants whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Runs at a time.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

/// The flags that turn off the latest changes (the feasible-successor rule, repeated announcements).
const BEFORE_LAST_PASS: &[&str] = &[
    "--tune",
    "tree_feasible_successors=0",
    "--tune",
    "announce_repeat_ms=0",
];

/// One variant: its name, the simulator flags that make it, and whether it is a row from before
/// the feasible-successor rule and repeated announcements (which then get [`BEFORE_LAST_PASS`]).
const VARIANTS: &[(&str, &[&str], bool)] = &[
    ("flood", &["--strategy", "flood"], false),
    (
        "before: fewest-hops trees, 500 ms first retry, flush 250 ms, graft 1 s",
        &[
            "--tune",
            "tree_hop_cost_ms=10000",
            "--tune",
            "retry_min_ms=500",
            "--tune",
            "graft_timeout_ms=1000",
            "--tune",
            "lazy_flush_ms=250",
            "--tune",
            "eager_radius=0",
        ],
        true,
    ),
    (
        "+ first retry after the measured round trip",
        &[
            "--tune",
            "tree_hop_cost_ms=10000",
            "--tune",
            "graft_timeout_ms=1000",
            "--tune",
            "lazy_flush_ms=250",
            "--tune",
            "eager_radius=0",
        ],
        true,
    ),
    (
        "+ flush 50 ms, graft 200 ms",
        &[
            "--tune",
            "tree_hop_cost_ms=10000",
            "--tune",
            "eager_radius=0",
        ],
        true,
    ),
    (
        "+ fastest-path trees (60 ms per hop)",
        &["--tune", "eager_radius=0"],
        true,
    ),
    ("+ eager radius 3", &[], true),
    (
        "+ feasible successors (DUAL)",
        &["--tune", "announce_repeat_ms=0"],
        false,
    ),
    ("+ announcements repeated (5 s) = the defaults", &[], false),
    ("eager radius 2", &["--tune", "eager_radius=2"], false),
    ("eager radius 4", &["--tune", "eager_radius=4"], false),
    ("0 ms per hop", &["--tune", "tree_hop_cost_ms=0"], false),
    ("30 ms per hop", &["--tune", "tree_hop_cost_ms=30"], false),
    ("6 trees", &["--tune", "trees=6"], false),
    (
        "tree adverts after 500 ms",
        &["--tune", "tree_advert_delay_ms=500"],
        false,
    ),
    (
        "tree adverts after 1 s",
        &["--tune", "tree_advert_delay_ms=1000"],
        false,
    ),
    ("3 long links of 5", &["--tune", "random_links=3"], false),
    (
        "flood, 3 long links of 5",
        &["--strategy", "flood", "--tune", "random_links=3"],
        false,
    ),
    (
        "8 links (3 long)",
        &["--tune", "max_peers=8", "--tune", "random_links=3"],
        false,
    ),
    (
        "flood, 8 links",
        &[
            "--strategy",
            "flood",
            "--tune",
            "max_peers=8",
            "--tune",
            "random_links=3",
        ],
        false,
    ),
];

/// What a row shows of a run's JSON report.
const FIELDS: &[&str] = &[
    "delivery_ratio",
    "rmr",
    "ldh",
    "latency_ms_p50",
    "latency_ms_p99",
    "events",
];

/// Entry point of the `broadcast-study` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let sim = build_sim()?;

    let variants: Vec<(&str, &[&str], bool)> = VARIANTS
        .iter()
        .copied()
        .filter(|(name, _, _)| args.only.as_ref().is_none_or(|o| name.contains(o.as_str())))
        .collect();
    let queue = Arc::new(Mutex::new(variants.clone().into_iter().enumerate()));
    let results = Arc::new(Mutex::new(vec![None; variants.len()]));
    let workers: Vec<_> = (0..args.jobs.max(1))
        .map(|_| {
            let (queue, results, sim) = (queue.clone(), results.clone(), sim.clone());
            let (nodes, seed) = (args.nodes.to_string(), args.seed.to_string());
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().map(|mut q| q.next()).ok().flatten();
                    let Some((i, (name, flags, before))) = next else {
                        break;
                    };
                    eprintln!("broadcast-study: running {name}");
                    let mut cmd = Command::new(&sim);
                    cmd.args([
                        "--scenario",
                        "broadcast",
                        "--nodes",
                        &nodes,
                        "--seed",
                        &seed,
                    ]);
                    cmd.arg("--json").args(flags);
                    if before {
                        cmd.args(BEFORE_LAST_PASS);
                    }
                    let report = output(name, &mut cmd).and_then(|out| last_json(&out));
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(report);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| "broadcast-study: a worker panicked".to_string())?;
    }
    let results = results
        .lock()
        .map_err(|_| "broadcast-study: poisoned".to_string())?
        .clone();
    print_table(&args, &variants, &results)
}

type Outcome = Result<serde_json::Value, String>;

fn print_table(
    args: &Args,
    variants: &[(&str, &[&str], bool)],
    results: &[Option<Outcome>],
) -> Result<(), String> {
    let number = |v: &serde_json::Value, key: &str| v.get(key).and_then(serde_json::Value::as_f64);
    // Each run is compared with flooding on its own mesh: 8-link runs with 8-link flooding, runs with
    // more long links with flooding over the same links.
    let flood_of = |variant: &str| {
        let reference = if variant.contains("8 links") {
            "flood, 8 links"
        } else if variant.contains("3 long links of 5") {
            "flood, 3 long links of 5"
        } else {
            "flood"
        };
        results.iter().zip(variants).find_map(|(r, (name, _, _))| {
            (*name == reference)
                .then(|| r.as_ref().and_then(|r| r.as_ref().ok()))
                .flatten()
        })
    };
    println!(
        "broadcast study: {} nodes, seed {} (1% loss, 5% crash; ratios against flooding on the same mesh)",
        args.nodes, args.seed
    );
    println!("| variant | {} | p50 / p99 x flood |", FIELDS.join(" | "));
    println!("|---|{}---|", "---|".repeat(FIELDS.len()));
    let mut failed = Vec::new();
    for ((name, _, _), result) in variants.iter().zip(results) {
        match result {
            Some(Ok(report)) => {
                let cells: Vec<String> = FIELDS
                    .iter()
                    .map(|key| number(report, key).map_or("-".into(), |v| format!("{v}")))
                    .collect();
                let flood = flood_of(name);
                let ratio = |key: &str| {
                    number(report, key)
                        .zip(flood.and_then(|f| number(f, key)))
                        .map_or("-".into(), |(v, f)| format!("{:.2}", v / f))
                };
                println!(
                    "| {name} | {} | {} / {} |",
                    cells.join(" | "),
                    ratio("latency_ms_p50"),
                    ratio("latency_ms_p99")
                );
            }
            Some(Err(err)) => failed.push(format!("{name}: {err}")),
            None => failed.push(format!("{name}: did not run")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}
