//! `cargo xtask ci`: every check, in the order a reviewer wants them to fail.

use std::process::Command;

use crate::util::{cargo, output, run, target_dir};

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

/// The crates that build for the browser, linted there too (their browser code is compiled only
/// for wasm32, so the native clippy never sees it).
const BROWSER_CRATES: &[&str] = &[
    "p2pmesh-rt",
    "transport",
    "webrtc-adapter",
    "transport-ws",
    "p2pmesh",
    "p2pmesh-js",
];

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
    clippy_wasm()?;
    // The browser chat is built before the tests: the end-to-end test (apps/chat-web) loads it.
    crate::web::run_task(crate::web::Args {})?;
    // A failing test's message and place are what a CI log must show: backtraces of async tests
    // run to a hundred lines each and push them out of a log's tail.
    //
    // The browser chat's tests drive chat-cli processes. Left to themselves they run `cargo build -p
    // chat-cli`, which resolves features without the tests' dev-dependencies (tokio's `test-util`)
    // and so builds tokio, webrtc and everything above them a second time: about 4 minutes of a
    // fresh CI run. They take the chat-cli this `cargo test` builds for chat-cli's own tests instead.
    let chat_cli = target_dir()
        .join("debug")
        .join(format!("chat-cli{}", std::env::consts::EXE_SUFFIX));
    run(
        "test",
        cargo()
            .args(["test", "--locked", "--workspace"])
            .env("RUST_BACKTRACE", "0")
            .env("CHAT_CLI", chat_cli),
    )?;
    browser_tests()?;
    // Every multi-process scenario, as real processes through real faults, with the binaries
    // `cargo test` just built.
    crate::test_mesh::run_task(crate::test_mesh::Args {
        scenario: vec!["all".into()],
        nodes: 10,
        json: false,
        release: false,
        seed: 1,
        verbose: false,
        prebuilt: true,
    })?;
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

/// Clippy on the browser build of every crate that has one (libraries, and the browser tests).
fn clippy_wasm() -> Result<(), String> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args(["clippy", "--locked", "--target", WASM_TARGET, "--lib"]);
    for krate in BROWSER_CRATES {
        cmd.args(["-p", krate]);
    }
    cmd.args(["--", "-D", "warnings"]);
    run("clippy (wasm32)", &mut cmd)?;
    run(
        "clippy (wasm32 tests)",
        cargo().args([
            "clippy",
            "--locked",
            "--target",
            WASM_TARGET,
            "-p",
            "webrtc-adapter",
            "-p",
            "transport-ws",
            "--test",
            "web",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "clippy (wasm32 tests)",
        cargo().args([
            "clippy",
            "--locked",
            "--target",
            WASM_TARGET,
            "-p",
            "p2pmesh-js",
            "--tests",
            "--",
            "-D",
            "warnings",
        ]),
    )
}

/// The browser tests: the web link connector, the WebSocket transport and the JavaScript API,
/// compiled to wasm32 and run by wasm-bindgen-test-runner in headless Chromium (each crate's
/// webdriver.json carries the flags loopback WebRTC needs), against a real signaling server (the
/// binary the test step built) this step starts on a free loopback port and stops afterwards, also
/// on failure.
fn browser_tests() -> Result<(), String> {
    use crate::bench_signaling::{Server, free_port, healthy};
    use crate::util::target_dir;
    use std::time::{Duration, Instant};

    // The server the test step just built (signaling-server's own tests need it): `cargo build -p
    // signaling-server` would resolve tokio without the tests' `test-util` and build the stack
    // again (§44).
    let server = target_dir()
        .join("debug")
        .join(format!("signaling-server{}", std::env::consts::EXE_SUFFIX));
    if !server.is_file() {
        return Err(format!(
            "browser tests: {} is missing (the test step builds it)",
            server.display()
        ));
    }
    let port = free_port()?;
    let child = Command::new(&server)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        // The browsers all connect from 127.0.0.1: lift the limits per source address.
        .args(["--max-connections-per-source", "100000"])
        .args([
            "--source-join-rate",
            "100000",
            "--source-join-burst",
            "100000",
        ])
        .args(["--max-introduced-per-source", "100000"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("browser tests: start the server: {e}"))?;
    let _server = Server(child);
    let started = Instant::now();
    while !healthy(port) {
        if started.elapsed() > Duration::from_secs(20) {
            return Err("browser tests: the server did not become healthy within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A port nothing listens on, for the transport's reconnection test.
    let unreachable = free_port()?;
    let chromedriver =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let browser = |cmd: &mut Command| {
        cmd.env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        )
        .env("CHROMEDRIVER", &chromedriver)
        .env(
            "P2PMESH_TEST_SIGNALING_URL",
            format!("ws://127.0.0.1:{port}"),
        )
        .env(
            "P2PMESH_TEST_UNREACHABLE_URL",
            format!("ws://127.0.0.1:{unreachable}"),
        );
    };
    let mut links = cargo();
    links.args([
        "test",
        "--locked",
        "--target",
        WASM_TARGET,
        "-p",
        "webrtc-adapter",
        "-p",
        "transport-ws",
        "--test",
        "web",
    ]);
    browser(&mut links);
    run(
        "browser tests: link connector and WebSocket transport",
        &mut links,
    )?;
    let mut api = cargo();
    api.args([
        "test",
        "--locked",
        "--target",
        WASM_TARGET,
        "-p",
        "p2pmesh-js",
        "--tests",
    ]);
    browser(&mut api);
    run("browser tests: the JavaScript API", &mut api)
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
