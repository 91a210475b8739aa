//! A signaling server in this process, serving a web folder on the same origin as its WebSocket.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Result;

/// A signaling server on a free port of 127.0.0.1, in this process (on the caller's tokio
/// runtime), serving `web_dir` at `GET /`. Dropping it stops it.
#[derive(Debug)]
pub struct Signaling {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Signaling {
    /// Binds a free port and serves: WebSocket signaling and `web_dir`'s files at `/`.
    pub async fn start(web_dir: &Path) -> Result<Self> {
        let config = signaling_server::Config {
            web_dir: web_dir.to_path_buf(),
            ..signaling_server::Config::ephemeral()
        };
        Self::start_with(config).await
    }

    /// Binds and serves `config` (its `addr` should be on 127.0.0.1).
    pub async fn start_with(config: signaling_server::Config) -> Result<Self> {
        let server = signaling_server::Server::bind(config).await?;
        let addr = server.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT`: what chat-cli's `--server` takes.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/`: the web folder's index.html.
    pub fn http_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The chat page that joins `room` as `name` at once (`/?name=NAME&room=ROOM`, plus
    /// `extra` query pairs, if any; values are percent-encoded).
    pub fn chat_url(&self, name: &str, room: &str, extra: &[(&str, &str)]) -> String {
        let mut url = format!(
            "{}?name={}&room={}",
            self.http_url(),
            encode(name),
            encode(room)
        );
        for (key, value) in extra {
            url.push_str(&format!("&{}={}", encode(key), encode(value)));
        }
        url
    }

    /// Stops the server and waits (a few seconds at most) for it to close its connections.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("ann-1_x.y~"), "ann-1_x.y~");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
