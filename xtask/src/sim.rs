//! `cargo xtask sim`: run one simulator scenario in release mode and print its report.
//!
//! The simulator is a binary of `crates/sim` (`cargo run --release -p sim --bin sim`), so xtask needs no
//! dependency on it and the simulation runs optimised while xtask itself builds in debug.

use crate::util::{cargo_run_release, run};

/// Flags of `cargo xtask sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// broadcast | lookup | churn | partition
    #[arg(long, default_value = "broadcast")]
    scenario: String,
    /// Nodes at the start.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// The seed the whole run derives from (the same seed replays the same report).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Frame loss probability on peer links (default: the scenario's; broadcast 0.01).
    #[arg(long)]
    loss: Option<f64>,
    /// Fraction of nodes that crash (default: the scenario's; broadcast 0.05).
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

/// Entry point of the `sim` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let mut cmd = cargo_run_release("sim", "sim");
    cmd.args(["--scenario", &args.scenario]);
    cmd.args(["--nodes", &args.nodes.to_string()]);
    cmd.args(["--seed", &args.seed.to_string()]);
    cmd.args(["--strategy", &args.strategy]);
    if let Some(loss) = args.loss {
        cmd.args(["--loss", &loss.to_string()]);
    }
    if let Some(crash) = args.crash {
        cmd.args(["--crash", &crash.to_string()]);
    }
    if args.json {
        cmd.arg("--json");
    }
    if args.progress {
        cmd.arg("--progress");
    }
    run("sim", &mut cmd).map_err(|e| format!("{e} (seed {})", args.seed))
}
