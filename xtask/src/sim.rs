//! `cargo xtask sim`: run one simulator scenario in release mode and print its report.
//!
//! The simulator is a binary of `crates/sim` (`cargo run --release -p sim --bin sim`), so xtask needs no
//! dependency on it and the simulation runs optimised while xtask itself builds in debug. Its flags
//! (`--scenario`, `--nodes`, `--seed`, `--strategy`, `--loss`, `--crash`, `--attackers`, `--json`,
//! `--progress`) are the binary's own: xtask passes them through unchanged, so they are declared and
//! checked in one place (`cargo xtask sim --help` shows the binary's help).

use crate::util::{cargo_run_release, run};

/// Flags of `cargo xtask sim`: everything after `sim` goes to the simulator binary.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The simulator's flags, e.g. `--scenario broadcast --nodes 10000 --seed 1 --json`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    flags: Vec<String>,
}

/// Entry point of the `sim` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let mut cmd = cargo_run_release("sim", "sim");
    cmd.args(&args.flags);
    run("sim", &mut cmd)
}
