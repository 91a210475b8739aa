//! Native `chat-cli` processes with piped stdin and stdout.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{Error, PATIENCE, Result};

/// Lines of a chat's stdout kept for [`ChatCli::expect_line`] and for error messages.
const KEPT_LINES: usize = 10_000;

/// The `chat-cli` binary to run, built fresh for the profile of the running executable
/// (`CHAT_CLI` names another one); see [`workspace_binary`].
pub fn chat_cli_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHAT_CLI") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Missing(format!(
                "CHAT_CLI={} is not a file",
                path.display()
            )))
        };
    }
    workspace_binary("chat-cli", "chat-cli")
}

/// The binary `bin` of the workspace's package `package`, built fresh for the profile of the
/// running executable.
///
/// Cargo builds another package's binaries for nobody's tests (`CARGO_BIN_EXE_*` exists only for
/// a package's own binaries, and a dependency on chat-cli builds its library only), and
/// `cargo run --bin X` builds X alone. So this finds the target folder from the running
/// executable (`<target>/<profile>/deps/<test>` or `<target>/<profile>/<bin>`) and, when run by
/// cargo (`CARGO` is set: `cargo test`, `cargo run`), first runs
/// `cargo build -p PACKAGE --bin BIN` for that profile and target folder, so the binary is never
/// stale (a no-op when it is fresh; cargo's lock is free while tests run). Without `CARGO` it
/// takes the binary found there, or fails saying how to build it.
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| Error::Other(format!("{} has no folder", exe.display())))?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let profile_dir = dir.to_path_buf();
    let binary = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    if let (Some(cargo), Some(target_dir), Some(profile)) = (
        std::env::var_os("CARGO"),
        profile_dir.parent(),
        profile_dir.file_name().and_then(|n| n.to_str()),
    ) {
        let profile = if profile == "debug" { "dev" } else { profile };
        cargo_build(Path::new(&cargo), target_dir, profile, package, bin)?;
    }
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(Error::Missing(format!(
            "{} not found: build it with `cargo build -p {package} --bin {bin}` (same profile and target folder)",
            binary.display()
        )))
    }
}

fn cargo_build(
    cargo: &Path,
    target_dir: &Path,
    profile: &str,
    package: &str,
    bin: &str,
) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::Other("no workspace folder".into()))?;
    let status = std::process::Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Other(format!("could not run {}: {e}", cargo.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Missing(format!(
            "`cargo build -p {package} --bin {bin} --profile {profile}` failed ({status})"
        )))
    }
}

/// A `chat-cli` process (`--server URL --name NAME --room ROOM --no-host`) with piped stdin and
/// stdout; stderr is inherited, so its errors show in the test's output. Killed on drop.
#[derive(Debug)]
pub struct ChatCli {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    seen: VecDeque<String>,
    ended: bool,
}

impl ChatCli {
    /// Starts `binary` (see [`chat_cli_binary`]) against the signaling server `server`
    /// (`ws://...`) in `room` as `name`, plus `extra` arguments.
    pub fn start(
        binary: &Path,
        server: &str,
        name: &str,
        room: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let mut child = Command::new(binary)
            .args([
                "--server",
                server,
                "--name",
                name,
                "--room",
                room,
                "--no-host",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Other(format!("could not start {}: {e}", binary.display())))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Other("chat-cli has no stdout pipe".into()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            seen: VecDeque::new(),
            ended: false,
        })
    }

    /// The name it chats under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every line printed so far (the last 10 000).
    pub fn seen(&self) -> impl Iterator<Item = &str> {
        self.seen.iter().map(String::as_str)
    }

    /// Types `line` (and Enter).
    pub async fn type_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::Other(format!("{}'s stdin is closed", self.name)))?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// The first line printed, at any time (already seen or still to come), that satisfies
    /// `matches`; gives up after [`PATIENCE`] or when stdout ends.
    pub async fn expect_line(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<String> {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return Ok(line.clone());
        }
        let read = async {
            loop {
                if self.ended {
                    return Err(self.gave_up(what, "its stdout ended"));
                }
                match self.stdout.next_line().await? {
                    Some(line) => {
                        if self.seen.len() == KEPT_LINES {
                            self.seen.pop_front();
                        }
                        self.seen.push_back(line.clone());
                        if matches(&line) {
                            return Ok(line);
                        }
                    }
                    None => self.ended = true,
                }
            }
        };
        match tokio::time::timeout(PATIENCE, read).await {
            Ok(result) => result,
            Err(_) => Err(self.gave_up(what, &format!("{} s passed", PATIENCE.as_secs()))),
        }
    }

    /// Waits for the line `* joined ... as NAME (ID8)` and returns ID8, the start of its peer id.
    pub async fn joined(&mut self) -> Result<String> {
        let needle = format!(" as {} (", self.name);
        let line = self
            .expect_line("the chat to join the server", |l| {
                l.starts_with("* joined") && l.contains(&needle)
            })
            .await?;
        let id = line
            .rsplit_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .filter(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| Error::Other(format!("no id in {line:?}")))?;
        Ok(id.to_owned())
    }

    /// Waits until it has printed that `name` joined or is here (chat-cli prints either, once).
    pub async fn knows(&mut self, name: &str) -> Result<()> {
        let joined = format!("* {name} joined");
        let here = format!("* {name} is here");
        self.expect_line(&format!("{} to learn of {name}", self.name), |l| {
            l == joined || l == here
        })
        .await
        .map(drop)
    }

    /// Types `/quit` and waits for the process to exit.
    pub async fn quit(mut self) -> Result<ExitStatus> {
        self.type_line("/quit").await?;
        drop(self.stdin.take());
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => Err(self.gave_up("the chat to exit after /quit", "it is still running")),
        }
    }

    /// Its last 40 lines, for a failing test's message.
    pub fn describe(&self) -> String {
        let tail: Vec<&str> = self
            .seen
            .iter()
            .rev()
            .take(40)
            .rev()
            .map(String::as_str)
            .collect();
        format!("chat-cli {}: {tail:?}", self.name)
    }

    fn gave_up(&self, what: &str, why: &str) -> Error {
        let tail: Vec<&str> = self
            .seen
            .iter()
            .rev()
            .take(40)
            .rev()
            .map(String::as_str)
            .collect();
        Error::Timeout {
            what: format!("{what} (chat-cli {})", self.name),
            secs: PATIENCE.as_secs(),
            last: format!("{why}; its last lines: {tail:?}"),
        }
    }
}
