//! The browser chat's test harness: everything an end-to-end test or a browser benchmark of
//! p2pmesh starts, on 127.0.0.1 only, and stops when dropped (also when a test panics).
//!
//! - [`Signaling`]: a signaling server, in this process, on a free port, serving a web folder at
//!   `GET /` (the built chat, [`web_dir`], or a page of the caller's) on the same origin as its
//!   WebSocket.
//! - [`Chromedriver`] and [`Browser`]: `/usr/bin/chromedriver` on a free port, in its own
//!   process group (killed as a group, so no Chromium outlives it), and one headless Chromium
//!   per [`Browser`], each with a fresh profile (`--user-data-dir`), so two browsers are two
//!   distinct p2pmesh nodes. Driven over WebDriver by fantoccini, on plain HTTP.
//! - [`ChatPage`]: the chat-web page's contract (`#self`, `#message`, `#log`, `#peers`,
//!   `#topology`) read from and typed into.
//! - [`ChatCli`]: a native `chat-cli` process with piped stdin and stdout ([`chat_cli_binary`]
//!   says how the binary is found).
//!
//! A missing prerequisite (Chromium, chromedriver, the built chat, the chat-cli binary) is an
//! [`Error::Missing`] that says how to get it; nothing is skipped silently. Waits
//! ([`eventually`]) poll and give up after a generous patience only to stop a hung test; they
//! never assert on wall-clock time.

#![deny(missing_docs)]

mod browser;
mod cli;
mod page;
mod server;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use browser::{Browser, CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, Chromedriver};
pub use cli::{ChatCli, chat_cli_binary, workspace_binary};
pub use page::{ChatPage, LogLine};
pub use server::Signaling;

/// How long a wait polls before giving up: long, because it only stops a hung test (a cold
/// Chromium, a wasm module compiled on a loaded 2-core machine), never measures anything.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Pause between two polls of [`eventually`].
const POLL: Duration = Duration::from_millis(100);

/// The command that builds the browser chat into [`web_dir`].
pub const BUILD_WEB: &str = "cargo xtask web";

/// What went wrong in the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A prerequisite is missing; the message says how to get it.
    #[error("{0}")]
    Missing(String),
    /// A wait gave up.
    #[error("gave up after {secs} s waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The patience, in seconds.
        secs: u64,
        /// The state seen at the last poll.
        last: String,
    },
    /// A WebDriver command failed.
    #[error("webdriver: {0}")]
    WebDriver(String),
    /// A process or a socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Something else that should not happen (a page that answers with the wrong shape, a
    /// process that exits early).
    #[error("{0}")]
    Other(String),
}

impl From<fantoccini::error::CmdError> for Error {
    fn from(err: fantoccini::error::CmdError) -> Self {
        Self::WebDriver(err.to_string())
    }
}

impl From<fantoccini::error::NewSessionError> for Error {
    fn from(err: fantoccini::error::NewSessionError) -> Self {
        Self::WebDriver(format!("could not start a browser session: {err}"))
    }
}

/// The harness's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where `cargo xtask web` builds the browser chat: `apps/chat-web/dist` (index.html, app.js,
/// style.css and `pkg/`, the wasm-bindgen output `p2pmesh.js` + `p2pmesh_bg.wasm`).
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist")
}

/// The files of a built chat that the pages need, relative to [`web_dir`].
const BUILT_FILES: [&str; 3] = ["index.html", "pkg/p2pmesh.js", "pkg/p2pmesh_bg.wasm"];

/// [`web_dir`], or [`Error::Missing`] saying to run `cargo xtask web` when the chat or its wasm
/// package is not built.
pub fn built_web_dir() -> Result<PathBuf> {
    let dir = web_dir();
    let missing: Vec<&str> = BUILT_FILES
        .into_iter()
        .filter(|file| !dir.join(file).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(Error::Missing(format!(
            "the browser chat is not built ({} missing in {}): run `{BUILD_WEB}`",
            missing.join(", "),
            dir.display()
        )))
    }
}

/// Polls `probe` every 100 ms until it returns `Ok(Ok(value))`, for at most `patience`.
///
/// `Ok(Err(state))` means "not yet" and describes what was seen, so that a timeout says it; an
/// `Err` stops the wait at once.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let last = match probe().await? {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                secs: patience.as_secs(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound then released: the caller binds it again at once).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Percentiles of a sample, for the benchmarks' tables.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Values in the sample.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `values` (`None` when empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p of the sample at or below it.
            let n = sorted.len();
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            sorted[index]
        };
        Some(Self {
            count: sorted.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&values).expect("non-empty");
        assert_eq!(
            (s.count, s.p50, s.p90, s.p99, s.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        let one = Summary::of(&[7.0]).expect("non-empty");
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert_eq!(Summary::of(&[]), None);
    }

    #[tokio::test]
    async fn eventually_returns_the_value_or_says_what_it_saw() {
        let mut n = 0;
        let got = eventually("three polls", Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move {
                Ok(if v >= 3 {
                    Ok(v)
                } else {
                    Err(format!("n = {v}"))
                })
            }
        })
        .await
        .expect("value");
        assert_eq!(got, 3);
        let err = eventually::<(), _, _>("never", Duration::ZERO, || async {
            Ok(Err("still nothing".to_owned()))
        })
        .await
        .expect_err("times out");
        assert!(err.to_string().contains("never") && err.to_string().contains("still nothing"));
    }
}
