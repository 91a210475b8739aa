//! `cargo xtask web`: build the browser chat into `apps/chat-web/dist/`, the folder the signaling
//! server (and chat-cli's embedded one) serves at `GET /`.
//!
//! Steps: the wasm32 target; the `wasm-bindgen` CLI at exactly the version Cargo.lock pins for
//! the `wasm-bindgen` crate (installed with `cargo install` when missing or different: the two
//! must match); `p2pmesh-js` built with the `release-wasm` profile; `wasm-bindgen --target web`
//! writing `dist/pkg/p2pmesh.js` and `p2pmesh_bg.wasm`; the page's own files copied beside them;
//! then each file's size, raw and gzip-compressed, and the gzip total of what the page loads.
//! No `wasm-opt`: Debian's (binaryen 108) corrupts wasm-bindgen output.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{cargo, root, run};

/// The crate whose wasm build is the page's mesh library.
const PACKAGE: &str = "p2pmesh-js";
/// Its wasm file's name (the library name of [`PACKAGE`]).
const WASM_FILE: &str = "p2pmesh_js.wasm";
/// The Cargo profile of the browser build.
const PROFILE: &str = "release-wasm";
/// The page's own files, copied from `apps/chat-web/` into `dist/`.
const PAGE_FILES: &[&str] = &["index.html", "app.js", "style.css"];
/// What the page loads (relative to `dist/`), whose gzip sizes make the total.
const LOADED: &[&str] = &[
    "index.html",
    "app.js",
    "style.css",
    "pkg/p2pmesh.js",
    "pkg/p2pmesh_bg.wasm",
];

/// Flags of `cargo xtask web`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Entry point of the `web` task.
pub fn run_task(_args: Args) -> Result<(), String> {
    let root = root();
    crate::ci::ensure_wasm_target()?;
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let version = locked_version(&lock, "wasm-bindgen")
        .ok_or("Cargo.lock pins no version of the wasm-bindgen crate")?;
    ensure_wasm_bindgen_cli(&version)?;

    run(
        "build",
        cargo().args([
            "build",
            "--locked",
            "--profile",
            PROFILE,
            "--target",
            crate::ci::WASM_TARGET,
            "-p",
            PACKAGE,
        ]),
    )?;
    let wasm = crate::util::target_dir()
        .join(crate::ci::WASM_TARGET)
        .join(PROFILE)
        .join(WASM_FILE);

    let source = root.join("apps").join("chat-web");
    let dist = source.join("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist).map_err(|e| format!("clearing {}: {e}", dist.display()))?;
    }
    run(
        "wasm-bindgen",
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--out-name", "p2pmesh", "--out-dir"])
            .arg(dist.join("pkg"))
            .arg(&wasm),
    )?;
    for file in PAGE_FILES {
        std::fs::copy(source.join(file), dist.join(file))
            .map_err(|e| format!("copying {file} into {}: {e}", dist.display()))?;
    }
    print_sizes(&dist)?;
    eprintln!(
        "\nxtask web: the browser chat is in {}; `cargo run -p signaling-server` serves it at http://127.0.0.1:8080/",
        dist.display()
    );
    Ok(())
}

/// The version Cargo.lock records for `package` (the first, when several are locked).
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let wanted = format!("name = \"{package}\"");
    let mut lines = lock.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != wanted {
            continue;
        }
        for line in lines.by_ref() {
            if line.starts_with("[[") || line.is_empty() {
                break;
            }
            if let Some(version) = line.strip_prefix("version = ") {
                return Some(version.trim_matches('"').to_owned());
            }
        }
    }
    None
}

/// The version `wasm-bindgen --version` prints ("wasm-bindgen 0.2.130 (hash)"), if it runs.
fn installed_wasm_bindgen() -> Option<String> {
    let out = Command::new("wasm-bindgen")
        .arg("--version")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

/// `cargo install wasm-bindgen-cli --version VERSION` unless that version is on PATH already
/// (without `--locked`: it fails on this project's registry).
fn ensure_wasm_bindgen_cli(version: &str) -> Result<(), String> {
    match installed_wasm_bindgen() {
        Some(installed) if installed == version => {
            eprintln!("== wasm-bindgen {version} (as Cargo.lock pins)");
            return Ok(());
        }
        Some(installed) => {
            eprintln!("== wasm-bindgen {installed} is installed; Cargo.lock pins {version}")
        }
        None => eprintln!("== no wasm-bindgen on PATH; Cargo.lock pins {version}"),
    }
    run(
        "install wasm-bindgen-cli",
        cargo().args(["install", "wasm-bindgen-cli", "--version", version]),
    )?;
    match installed_wasm_bindgen() {
        Some(installed) if installed == version => Ok(()),
        other => Err(format!(
            "wasm-bindgen on PATH is {other:?} after installing {version}: is ~/.cargo/bin first on PATH?"
        )),
    }
}

/// Every file under `dir` (sorted), relative to it.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries =
            std::fs::read_dir(&folder).map_err(|e| format!("listing {}: {e}", folder.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("listing {}: {e}", folder.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.to_path_buf());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The size of `bytes` gzip-compressed at the best level (what a server would send).
fn gzip_len(bytes: &[u8]) -> Result<usize, String> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map(|gz| gz.len())
        .map_err(|e| format!("gzip: {e}"))
}

fn print_sizes(dist: &Path) -> Result<(), String> {
    println!(
        "\n{:<28} {:>10} {:>10}",
        "file (apps/chat-web/dist)", "bytes", "gzip"
    );
    let mut total = (0, 0);
    for file in files_under(dist)? {
        let bytes = std::fs::read(dist.join(&file))
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let gz = gzip_len(&bytes)?;
        let name = file.to_string_lossy().replace('\\', "/");
        let loaded = LOADED.contains(&name.as_str());
        if loaded {
            total.0 += bytes.len();
            total.1 += gz;
        }
        let mark = if loaded { "" } else { " (not loaded)" };
        println!("{name:<28} {:>10} {gz:>10}{mark}", bytes.len());
    }
    println!(
        "{:<28} {:>10} {:>10}",
        "what the page loads", total.0, total.1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locked_version_is_read_from_its_package_entry() {
        let lock = r#"
[[package]]
name = "wasm-bindgen-futures"
version = "0.4.50"

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "web-sys"
version = "0.3.107"
"#;
        assert_eq!(
            locked_version(lock, "wasm-bindgen").as_deref(),
            Some("0.2.130")
        );
        assert_eq!(locked_version(lock, "web-sys").as_deref(), Some("0.3.107"));
        assert_eq!(locked_version(lock, "js-sys"), None);
    }

    #[test]
    fn this_workspace_locks_a_wasm_bindgen_version() {
        let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
        let version = locked_version(&lock, "wasm-bindgen").expect("wasm-bindgen is locked");
        assert_eq!(version.split('.').count(), 3, "{version}");
    }

    #[test]
    fn gzip_shrinks_repetitive_text() {
        let text = "p2pmesh ".repeat(1000);
        let gz = gzip_len(text.as_bytes()).expect("gzip");
        assert!(gz > 0 && gz < text.len() / 10, "{gz}");
    }
}
