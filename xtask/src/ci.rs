//! `cargo xtask ci`: every check, in the order a reviewer wants them to fail.

use std::process::Command;

use crate::util::{cargo, output, run};

/// The sans-IO cores: no tokio in their normal dependency tree, and they build for the browser.
const CORES: &[&str] = &["p2pmesh-base", "kademlia-core", "gossip-core", "mesh-core"];

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Flags of `cargo xtask ci`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Run every check; the first failure stops the run.
pub fn run_all() -> Result<(), String> {
    run("fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run("test", cargo().args(["test", "--workspace"]))?;
    run(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    purity()?;
    eprintln!("\nxtask ci: every check passed");
    Ok(())
}

/// Entry point of the `ci` task.
pub fn run_task(_args: Args) -> Result<(), String> {
    run_all()
}

fn purity() -> Result<(), String> {
    ensure_wasm_target()?;
    for core in CORES {
        let tree = output(
            "purity: dependency tree",
            cargo().args(["tree", "-p", core, "-e", "normal", "--prefix", "none"]),
        )?;
        let forbidden: Vec<&str> = tree
            .lines()
            .filter(|line| {
                let name = line.split_whitespace().next().unwrap_or("");
                name == "tokio" || name.starts_with("tokio-")
            })
            .collect();
        if !forbidden.is_empty() {
            return Err(format!(
                "purity: {core} depends on tokio at run time: {forbidden:?}"
            ));
        }
        eprintln!("== purity: {core}: no tokio in `cargo tree -e normal`");
        run(
            &format!("purity: {core} for {WASM_TARGET}"),
            cargo().args(["build", "-p", core, "--target", WASM_TARGET]),
        )?;
    }
    Ok(())
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = output(
        "rustup",
        Command::new("rustup").args(["target", "list", "--installed"]),
    )?;
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    run(
        "rustup target add",
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
    )
}
