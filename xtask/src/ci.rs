//! `cargo xtask ci`: every check, in the order a reviewer wants them to fail.

use std::process::Command;

use crate::util::{cargo, output, run};

/// The sans-IO cores (and the base crate they share): no tokio in their normal dependency tree, they
/// build for the browser, and their own clippy.toml forbids the clock and OS randomness.
const CORES: &[&str] = &["p2pmesh-base", "kademlia-core", "gossip-core", "mesh-core"];

/// Methods each core's clippy.toml must list in `disallowed-methods` (clippy reads the linted
/// crate's own clippy.toml, so a core without one would be linted without them).
const DISALLOWED: &[&str] = &[
    "std::time::Instant::now",
    "std::time::SystemTime::now",
    "rand::rng",
    "rand::thread_rng",
    "getrandom::fill",
    "tokio::time::Instant::now",
];

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Flags of `cargo xtask ci`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Run every check; the first failure stops the run.
pub fn run_all() -> Result<(), String> {
    // `cargo fmt` reads no lock file (and takes no `--locked`); every other step is `--locked`.
    run("fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    core_lint_config()?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--locked",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run("test", cargo().args(["test", "--locked", "--workspace"]))?;
    run(
        "doc",
        cargo()
            .args(["doc", "--locked", "--workspace", "--no-deps"])
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
            cargo().args([
                "tree", "--locked", "-p", core, "-e", "normal", "--prefix", "none",
            ]),
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
            cargo().args(["build", "--locked", "-p", core, "--target", WASM_TARGET]),
        )?;
    }
    Ok(())
}

/// A core's folder: `crates/<package>`, except the base crate's (`crates/base`).
fn core_dir(package: &str) -> std::path::PathBuf {
    let dir = package.strip_prefix("p2pmesh-").unwrap_or(package);
    crate::util::root().join("crates").join(dir)
}

/// Each core has its clippy.toml, and it disallows at least [`DISALLOWED`].
fn core_lint_config() -> Result<(), String> {
    for core in CORES {
        let path = core_dir(core).join("clippy.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("lint config: {}: {e}", path.display()))?;
        let missing = missing_disallowed(&text);
        if !missing.is_empty() {
            return Err(format!(
                "lint config: {} does not disallow {missing:?}",
                path.display()
            ));
        }
    }
    eprintln!("== lint config: every core's clippy.toml forbids the clock and OS randomness");
    Ok(())
}

/// The entries of [`DISALLOWED`] that a clippy.toml's text does not list as a path.
fn missing_disallowed(text: &str) -> Vec<&'static str> {
    DISALLOWED
        .iter()
        .copied()
        .filter(|method| !text.contains(&format!("path = \"{method}\"")))
        .collect()
}

pub fn ensure_wasm_target() -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_clippy_toml_lists_the_disallowed_methods() {
        for core in CORES {
            let path = core_dir(core).join("clippy.toml");
            let text = std::fs::read_to_string(&path).expect("a core has its clippy.toml");
            assert_eq!(missing_disallowed(&text), Vec::<&str>::new(), "{core}");
        }
    }

    #[test]
    fn a_missing_entry_is_reported() {
        let text = r#"disallowed-methods = [{ path = "std::time::Instant::now" }]"#;
        let missing = missing_disallowed(text);
        assert!(missing.contains(&"rand::rng"), "{missing:?}");
        assert!(!missing.contains(&"std::time::Instant::now"), "{missing:?}");
    }
}
