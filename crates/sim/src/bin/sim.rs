//! `sim`: run one scenario of the simulator and print its report (`cargo xtask sim` calls this).

use clap::Parser;
use sim::{Scenario, ScenarioArgs, Strategy};

/// mimalloc: the simulator allocates and frees millions of small frames, a sharded run's threads
/// freeing what the others allocated. Off without the `mimalloc` feature (for heap profilers).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run a deterministic many-node scenario over mesh-core.
#[derive(Parser, Debug)]
#[command(name = "sim")]
struct Cli {
    /// The scenario.
    #[arg(long, value_enum, default_value_t = Scenario::Broadcast)]
    scenario: Scenario,
    /// Nodes at the start.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// The seed the whole run derives from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Frame loss probability on peer links (default: the scenario's).
    #[arg(long)]
    loss: Option<f64>,
    /// Fraction of nodes that crash (default: the scenario's).
    #[arg(long)]
    crash: Option<f64>,
    /// How broadcasts spread.
    #[arg(long, value_enum, default_value_t = Strategy::Plumtree)]
    strategy: Strategy,
    /// Also print the report as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Print progress to standard error every 10 s of virtual time.
    #[arg(long)]
    progress: bool,
    /// Fraction of the nodes that attack (`broadcast-attack` only; default 0.05).
    #[arg(long)]
    attackers: Option<f64>,
    /// Change a node setting from mesh-core's default, `NAME=VALUE` (repeatable): trees, eager_radius,
    /// retry_min_ms, retry_initial_ms, graft_timeout_ms, lazy_flush_ms, max_peers, random_links,
    /// tree_advert_delay_ms, tree_hop_cost_ms, tree_feasible_successors, tree_refresh_interval_ms,
    /// tree_proof_max_age_ms, announce_repeat_ms.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_tune)]
    tune: Vec<(String, String)>,
    /// Broadcast only: join the nodes that end up lowest in each tree's order (the trees' roots once
    /// all have joined) before the others, so that no joining node re-roots a tree: a study of what
    /// the trees' root changes during the join cost (docs/decisions.md §40).
    #[arg(long)]
    roots_first: bool,
    /// Run sharded over N shards on as many threads as there are cores (0: sequential; 8 suits two
    /// cores). Every N gives the same run for a seed; a sharded run differs from the sequential one.
    #[arg(long, default_value_t = 0, value_name = "N")]
    shards: usize,
}

fn parse_tune(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}` is not NAME=VALUE"))?;
    Ok((name.to_string(), value.to_string()))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let args = ScenarioArgs {
        scenario: cli.scenario,
        nodes: cli.nodes,
        seed: cli.seed,
        loss: cli.loss,
        crash: cli.crash,
        strategy: cli.strategy,
        progress: cli.progress,
        attackers: cli.attackers,
        tune: cli.tune,
        shards: cli.shards,
        roots_first: cli.roots_first,
    };
    // A panic inside a node or the simulator still names the seed that replays it.
    let seed = args.seed;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("sim: panicked; replay with --seed {seed}");
    }));
    match sim::mesh::run(&args) {
        Ok(report) => {
            print!("{}", report.table());
            if cli.json {
                println!("{}", report.to_json());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("sim: {err} (seed {})", args.seed);
            std::process::ExitCode::FAILURE
        }
    }
}
