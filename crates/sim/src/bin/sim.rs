//! `sim`: run one scenario of the simulator and print its report (`cargo xtask sim` calls this).

use clap::Parser;
use sim::{Scenario, ScenarioArgs, Strategy};

/// Run a deterministic many-node scenario over mesh-core.
#[derive(Parser, Debug)]
#[command(name = "sim")]
struct Cli {
    /// broadcast | lookup | churn | partition
    #[arg(long, default_value = "broadcast")]
    scenario: String,
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
    /// plumtree | flood
    #[arg(long, default_value = "plumtree")]
    strategy: String,
    /// Also print the report as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Print progress to standard error every 10 s of virtual time.
    #[arg(long)]
    progress: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Some(scenario) = Scenario::parse(&cli.scenario) else {
        eprintln!(
            "sim: unknown scenario {:?} (broadcast, lookup, churn, partition)",
            cli.scenario
        );
        return std::process::ExitCode::FAILURE;
    };
    let Some(strategy) = Strategy::parse(&cli.strategy) else {
        eprintln!("sim: unknown strategy {:?} (plumtree, flood)", cli.strategy);
        return std::process::ExitCode::FAILURE;
    };
    let args = ScenarioArgs {
        scenario,
        nodes: cli.nodes,
        seed: cli.seed,
        loss: cli.loss,
        crash: cli.crash,
        strategy,
        progress: cli.progress,
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
