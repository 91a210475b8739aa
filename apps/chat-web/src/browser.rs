//! chromedriver and headless Chromium, driven over WebDriver (fantoccini on plain HTTP).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{Error, PATIENCE, Result, eventually, free_port};

/// The chromedriver binary (Debian's `chromium-driver`); `CHROMEDRIVER` overrides it.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The Chromium binary (Debian's `chromium`); `CHROME` overrides it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium's flags for loopback WebRTC in a headless browser (see the project's WebRTC notes:
/// without both of the last two, Chromium gathers no loopback candidate and fails silently).
/// A fresh `--user-data-dir` is added per browser.
pub const CHROMIUM_FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
];

fn binary(var: &str, default: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing(format!(
            "{} not found (set {var} to another path): install it with `apt-get install -y {package}`",
            path.display()
        )))
    }
}

/// A chromedriver process on a free port of 127.0.0.1, in its own process group: dropping it
/// kills the group, chromedriver and every Chromium it started, even those of browsers never
/// closed (a test that panicked).
#[derive(Debug)]
pub struct Chromedriver {
    child: Child,
    url: String,
    chromium: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver and waits until it accepts sessions. Fails with [`Error::Missing`]
    /// when chromedriver or Chromium is not installed.
    pub async fn start() -> Result<Self> {
        let chromedriver = binary("CHROMEDRIVER", CHROMEDRIVER, "chromium-driver")?;
        let chromium = binary("CHROME", CHROMIUM, "chromium")?;
        let port = free_port()?;
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so that Drop kills its Chromiums with it.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::Other(format!("could not start {}: {e}", chromedriver.display()))
            })?;
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
        };
        let addr = ("127.0.0.1", port);
        let child = &mut driver.child;
        eventually("chromedriver to listen", PATIENCE, || {
            let exited = child.try_wait();
            async move {
                if let Some(status) = exited? {
                    return Err(Error::Other(format!(
                        "chromedriver exited at start: {status}"
                    )));
                }
                Ok(match tokio::net::TcpStream::connect(addr).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("port {port}: {e}")),
                })
            }
        })
        .await?;
        Ok(driver)
    }

    /// The WebDriver URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens a new headless Chromium with a fresh profile.
    pub async fn browser(&self) -> Result<Browser> {
        Browser::open(self, &[]).await
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)).
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium (one WebDriver session) with its own fresh profile, removed on drop.
///
/// [`Browser::close`] ends the session (Chromium exits); a browser dropped without it is killed
/// with its [`Chromedriver`].
#[derive(Debug)]
pub struct Browser {
    client: Client,
    // Dropped after the client: the profile folder outlives the session.
    profile: TempDir,
}

impl Browser {
    /// Starts a Chromium through `driver`, with [`CHROMIUM_FLAGS`], `extra_flags` and a new
    /// profile folder.
    pub async fn open(driver: &Chromedriver, extra_flags: &[&str]) -> Result<Self> {
        let profile = tempfile::Builder::new()
            .prefix("p2pmesh-chromium-")
            .tempdir()?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.extend(extra_flags.iter().map(|s| (*s).to_owned()));
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": driver.chromium,
                "args": args,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            return Err(Error::Other("capabilities are not an object".into()));
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(driver.url())
            .await?;
        Ok(Self { client, profile })
    }

    /// The profile folder (`--user-data-dir`).
    pub fn profile(&self) -> &Path {
        self.profile.path()
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for its load event (WebDriver's default page load strategy).
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client.goto(url).await?;
        Ok(())
    }

    /// Runs `script` (a function body: `return ...`) in the page with `args` (`arguments[i]`)
    /// and decodes its result.
    pub async fn eval<T: DeserializeOwned>(&self, script: &str, args: Vec<Value>) -> Result<T> {
        let value = self.client.execute(script, args).await?;
        serde_json::from_value(value.clone())
            .map_err(|e| Error::Other(format!("the page answered {value}: {e}")))
    }

    /// Runs an async `script` whose last argument is the callback that returns its result.
    pub async fn eval_async<T: DeserializeOwned>(
        &self,
        script: &str,
        args: Vec<Value>,
    ) -> Result<T> {
        let value = self.client.execute_async(script, args).await?;
        serde_json::from_value(value.clone())
            .map_err(|e| Error::Other(format!("the page answered {value}: {e}")))
    }

    /// Polls the JavaScript expression `condition` (a function body returning a value) until it
    /// returns something other than `null`/`undefined`/`false`, then decodes it.
    pub async fn wait_for<T: DeserializeOwned>(&self, what: &str, condition: &str) -> Result<T> {
        eventually(what, PATIENCE, || async {
            let value = self.client.execute(condition, vec![]).await?;
            Ok(match value {
                Value::Null | Value::Bool(false) => Err(format!("{value}")),
                v => serde_json::from_value(v.clone())
                    .map_err(|e| format!("{v} is not the awaited shape: {e}")),
            })
        })
        .await
    }

    /// Ends the WebDriver session: Chromium closes its windows (pages get `pagehide`) and exits.
    pub async fn close(self) -> Result<()> {
        let Self { client, profile } = self;
        client.close().await?;
        // Give Chromium a moment to release its profile before the folder is removed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(profile);
        Ok(())
    }
}
