//! `test-mesh`: the mesh as real processes through real faults. For each scenario it starts a
//! signaling server and `--nodes` `mesh-node` processes (real WebRTC on loopback, or in two network
//! namespaces for `partition`), drives them over their JSON-lines protocol, and prints a table
//! row per scenario (with `--json`, also one JSON object per scenario on stdout). Progress goes
//! to stderr. It exits non-zero when a scenario fails, and kills every process it started when a
//! scenario ends, fails, or on Ctrl-C. Run it through `cargo xtask test-mesh`, which builds it and
//! the binaries it starts.

mod cluster;
mod netns;
mod scenarios;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cluster::{Bins, Cluster};
use scenarios::{ALL, Outcome, Settings};

/// Multi-process scenarios of p2pmesh through real faults.
#[derive(Parser, Debug)]
#[command(name = "test-mesh", version, about)]
struct Args {
    /// A scenario (join-broadcast, direct, churn, hot-churn, server-restart, partition,
    /// large-message, forged, mesh-signaling, server-failover), or `all`. Repeatable.
    #[arg(long, default_value = "all")]
    scenario: Vec<String>,
    /// Nodes per scenario (at least 4).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Print one JSON object per scenario on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// The mesh-node binary.
    #[arg(long)]
    node_bin: PathBuf,
    /// The signaling-server binary.
    #[arg(long)]
    server_bin: PathBuf,
    /// Seed of the scenarios' choices (which nodes are killed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds the `partition` scenario keeps the two sides apart.
    #[arg(long, default_value_t = 30)]
    partition_secs: u64,
    /// Folder for the processes' logs (default: a new one under the temp dir, removed when
    /// every scenario passed).
    #[arg(long)]
    logs: Option<PathBuf>,
    /// Print every report of every node (stderr).
    #[arg(long)]
    verbose: bool,
}

fn header() -> String {
    "| scenario | nodes | delivered / expected | latency p50 / p99 (ms) | converge (s) | pass | time (s) |\n\
     |---|---|---|---|---|---|---|"
        .into()
}

fn row(o: &Outcome) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    format!(
        "| {} | {} | {} / {} | {} / {} | {} | {} | {:.1} |",
        o.scenario,
        o.nodes,
        o.delivered,
        o.expected,
        ms(o.latency_ms_p50),
        ms(o.latency_ms_p99),
        o.converge_s.map_or("-".to_string(), |v| format!("{v:.2}")),
        if o.pass { "pass" } else { "FAIL" },
        o.duration_s
    )
}

async fn run(args: Args) -> Result<bool, String> {
    if args.nodes < 4 {
        return Err("--nodes must be at least 4".into());
    }
    let mut names = Vec::new();
    for name in &args.scenario {
        if name == "all" {
            names.extend(ALL.iter().map(ToString::to_string));
        } else if ALL.contains(&name.as_str()) {
            names.push(name.clone());
        } else {
            return Err(format!(
                "no scenario {name:?}; the scenarios: {}, all",
                ALL.join(", ")
            ));
        }
    }
    for bin in [&args.node_bin, &args.server_bin] {
        if !bin.is_file() {
            return Err(format!("{} is not built", bin.display()));
        }
    }
    let (logs, temporary) = match &args.logs {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("p2pmesh-test-mesh-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let bins = Bins {
        node: args.node_bin.clone(),
        server: args.server_bin.clone(),
    };
    let settings = Settings {
        nodes: args.nodes,
        seed: args.seed,
        partition: Duration::from_secs(args.partition_secs),
    };
    let mut outcomes = Vec::new();
    for (k, name) in names.iter().enumerate() {
        eprintln!(
            "[{name}] scenario {}/{} with {} nodes",
            k + 1,
            names.len(),
            args.nodes
        );
        let mut cluster = Cluster::new(bins.clone(), name, &logs, args.verbose);
        let outcome = scenarios::run(name, &mut cluster, &settings).await;
        drop(cluster);
        let line = row(&outcome);
        eprintln!(
            "[{name}] {} in {:.1} s{}",
            if outcome.pass { "passed" } else { "FAILED" },
            outcome.duration_s,
            if outcome.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", outcome.detail)
            }
        );
        if args.json {
            let json = serde_json::to_string(&outcome).map_err(|e| e.to_string())?;
            println!("{json}");
        } else {
            if k == 0 {
                println!("{}", header());
            }
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
        outcomes.push(outcome);
    }
    if args.json {
        eprintln!("{}", header());
    }
    for o in &outcomes {
        if args.json {
            eprintln!("{}", row(o));
        }
    }
    let passed = outcomes.iter().all(|o| o.pass);
    if passed && temporary {
        let _ = std::fs::remove_dir_all(&logs);
    } else {
        eprintln!("test-mesh: the processes' logs are in {}", logs.display());
    }
    Ok(passed)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tokio::select! {
        result = run(args) => match result {
            Ok(true) => std::process::ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("test-mesh: a scenario failed");
                std::process::ExitCode::FAILURE
            }
            Err(err) => {
                eprintln!("test-mesh: {err}");
                std::process::ExitCode::FAILURE
            }
        },
        // Dropping `run` drops its cluster: every process is killed, the namespaces removed.
        _ = tokio::signal::ctrl_c() => {
            eprintln!("test-mesh: interrupted; stopping every process");
            std::process::ExitCode::from(130)
        }
    }
}
