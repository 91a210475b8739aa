//! `cargo xtask bench-web [--json]`: p2pmesh in headless Chromium on loopback: page load to the
//! first link, browser-native link open time, and broadcast latency across a mixed mesh of
//! browser tabs and native nodes.
//!
//! The measuring is done by the release-built `bench-web` binary of `apps/chat-web`
//! (`cargo run --release -p chat-web --bin bench-web`), which builds the `chat-cli` and
//! `bench-node` binaries it starts (same profile) and needs the browser chat's wasm package
//! (`cargo xtask web`), Chromium and chromedriver; it says so when one is missing. It prints
//! Markdown tables and, with `--json`, one JSON object as its last line (keys
//! `page_to_first_link_ms`, `first_load_to_first_link_ms`, `browser_native_link_open_ms`,
//! `broadcast.latency_ms` by sender and receiver kind, each with `count`, `p50`, `p90`, `p99`,
//! `max`). Figures only: the run never fails on a timing.

use crate::util::{cargo_run_release, run};

/// Flags of `cargo xtask bench-web`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Page loads measured for the open-time figures.
    #[arg(long, default_value_t = 20)]
    loads: usize,
    /// Browser tabs of the broadcast-latency phase.
    #[arg(long, default_value_t = 4)]
    tabs: usize,
    /// Put the tabs in one Chromium (background tabs are throttled) instead of one each.
    #[arg(long)]
    one_browser: bool,
    /// Native nodes of the broadcast-latency phase.
    #[arg(long, default_value_t = 6)]
    natives: usize,
    /// Rounds of the broadcast-latency phase (every node broadcasts once per round).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Also print the results as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// Entry point of the `bench-web` task.
pub fn run_task(args: Args) -> Result<(), String> {
    let mut cmd = cargo_run_release("chat-web", "bench-web");
    cmd.args(["--loads", &args.loads.to_string()]);
    cmd.args(["--tabs", &args.tabs.to_string()]);
    cmd.args(["--natives", &args.natives.to_string()]);
    cmd.args(["--rounds", &args.rounds.to_string()]);
    if args.one_browser {
        cmd.arg("--one-browser");
    }
    if args.json {
        cmd.arg("--json");
    }
    run("bench-web", &mut cmd)
}
