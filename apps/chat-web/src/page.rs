//! The chat-web page, read and typed into through its element contract (apps/chat-web/app.js):
//!
//! - `#self`: this node's name and id (`data-peer-id` once joined);
//! - `#message`: the text input (Enter sends; `/dm <peer> <text>`, `/peers`);
//! - `#log > li`: one per line, `data-kind` (`chat`, `dm`, `system`), `data-from` (the sender's
//!   id), `data-name` (its name), the text in a `.text` child;
//! - `#peers > li`: one per linked peer, `data-peer-id`;
//! - `#topology`: an SVG, one `line.link` (`data-peer-id`) per linked peer.

use fantoccini::Locator;
use fantoccini::key::Key;
use serde::Deserialize;

use crate::{Browser, PATIENCE, Result, eventually};

/// One line of `#log`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogLine {
    /// `data-kind`: `chat`, `dm` or `system`.
    pub kind: Option<String>,
    /// `data-from`: the sender's id (empty for system lines).
    pub from: Option<String>,
    /// `data-name`: the sender's name.
    pub name: Option<String>,
    /// The text (its `.text` child, or the whole line's text without one).
    pub text: String,
}

impl LogLine {
    /// Whether it is a `kind` line from `name` saying `text`.
    pub fn is(&self, kind: &str, name: &str, text: &str) -> bool {
        self.kind.as_deref() == Some(kind)
            && self.name.as_deref() == Some(name)
            && self.text == text
    }

    /// Whether it is a system line saying `text`.
    pub fn is_system(&self, text: &str) -> bool {
        self.kind.as_deref() == Some("system") && self.text == text
    }
}

/// What the page shows, read in one script.
#[derive(Debug, Clone, Default, Deserialize)]
struct Snapshot {
    /// The 40-hex id found in `#self`, if any.
    id: Option<String>,
    /// `#self`'s text.
    me: Option<String>,
    log: Vec<LogLine>,
    peers: Vec<String>,
    links: Vec<String>,
}

/// Reads the whole contract at once. The id in `#self` is looked for in its text and in its
/// attributes and those of its descendants.
const SNAPSHOT: &str = r#"
const all = (s) => Array.from(document.querySelectorAll(s));
const me = document.querySelector('#self');
let id = null;
if (me) {
  const texts = [me.textContent || ''];
  for (const e of [me, ...me.querySelectorAll('*')]) {
    for (const a of e.attributes) texts.push(a.value);
  }
  for (const t of texts) {
    const m = /\b[0-9a-f]{40}\b/.exec(t);
    if (m) { id = m[0]; break; }
  }
}
return {
  id,
  me: me ? me.textContent : null,
  log: all('#log > *').map((e) => ({
    kind: e.dataset.kind ?? null,
    from: e.dataset.from ?? null,
    name: e.dataset.name ?? null,
    text: (e.querySelector('.text') ?? e).textContent || '',
  })),
  peers: all('#peers > [data-peer-id]').map((e) => e.dataset.peerId),
  links: all('#topology line.link[data-peer-id]').map((e) => e.dataset.peerId),
};
"#;

/// A chat-web page in its own [`Browser`].
#[derive(Debug)]
pub struct ChatPage {
    browser: Browser,
    name: String,
    id: String,
}

impl ChatPage {
    /// Opens `url` (a chat URL that joins at once, see
    /// [`Signaling::chat_url`](crate::Signaling::chat_url)) in `browser` and waits until `#self`
    /// shows the node's id.
    pub async fn open(browser: Browser, url: &str, name: &str) -> Result<Self> {
        browser.goto(url).await?;
        let mut page = Self {
            browser,
            name: name.to_owned(),
            id: String::new(),
        };
        page.id = page
            .wait_snapshot(&format!("page {name} to show its id in #self"), |s| {
                s.id.clone()
            })
            .await?;
        Ok(page)
    }

    /// The chat name it was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its peer id (40 hex characters), as `#self` shows it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its browser.
    pub fn browser(&self) -> &Browser {
        &self.browser
    }

    /// Types `text` into `#message` and presses Enter.
    pub async fn send(&self, text: &str) -> Result<()> {
        let input = self.browser.client().find(Locator::Css("#message")).await?;
        input
            .send_keys(&format!("{text}{}", char::from(Key::Enter)))
            .await?;
        Ok(())
    }

    /// Waits until `#log` says that `name` joined or is here (printed once, whichever came
    /// first), as chat-cli prints it.
    pub async fn knows(&self, name: &str) -> Result<()> {
        let joined = format!("{name} joined");
        let here = format!("{name} is here");
        self.wait_log(&format!("page {} to learn of {name}", self.name), |l| {
            l.is_system(&joined) || l.is_system(&here)
        })
        .await
        .map(drop)
    }

    /// What the page shows now (`#self`, `#peers`, `#topology`'s links, the end of `#log`), for
    /// a failing test's message.
    pub async fn describe(&self) -> String {
        match self.snapshot().await {
            Ok(snapshot) => format!("page {}: {}", self.name, describe(&snapshot)),
            Err(err) => format!("page {}: unreadable ({err})", self.name),
        }
    }

    /// `#log`'s lines.
    pub async fn log(&self) -> Result<Vec<LogLine>> {
        Ok(self.snapshot().await?.log)
    }

    /// The ids in `#peers`.
    pub async fn peers(&self) -> Result<Vec<String>> {
        Ok(self.snapshot().await?.peers)
    }

    /// The `data-peer-id`s of `#topology`'s link lines.
    pub async fn topology_links(&self) -> Result<Vec<String>> {
        Ok(self.snapshot().await?.links)
    }

    /// Waits for a `#log` line that satisfies `matches`.
    pub async fn wait_log(
        &self,
        what: &str,
        matches: impl Fn(&LogLine) -> bool,
    ) -> Result<LogLine> {
        self.wait_snapshot(what, |s| s.log.iter().find(|l| matches(l)).cloned())
            .await
    }

    /// Waits until `#peers` (its ids) satisfies `ok`, and returns them.
    pub async fn wait_peers(
        &self,
        what: &str,
        ok: impl Fn(&[String]) -> bool,
    ) -> Result<Vec<String>> {
        self.wait_snapshot(what, |s| ok(&s.peers).then(|| s.peers.clone()))
            .await
    }

    /// Waits until `#peers` and `#topology`'s link lines name the same peers (as sets, one line
    /// per entry) and `ok` holds for them; returns `(peers, links)`.
    pub async fn wait_topology(
        &self,
        what: &str,
        ok: impl Fn(&[String]) -> bool,
    ) -> Result<(Vec<String>, Vec<String>)> {
        self.wait_snapshot(what, |s| {
            let mut peers = s.peers.clone();
            let mut links = s.links.clone();
            peers.sort();
            links.sort();
            (peers == links && ok(&s.peers)).then(|| (s.peers.clone(), s.links.clone()))
        })
        .await
    }

    /// Closes the page's window; it being the browser's only one, Chromium ends the session.
    pub async fn close(self) -> Result<()> {
        self.browser.client().close_window().await?;
        Ok(())
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        self.browser.eval(SNAPSHOT, vec![]).await
    }

    async fn wait_snapshot<T>(&self, what: &str, f: impl Fn(&Snapshot) -> Option<T>) -> Result<T> {
        eventually(what, PATIENCE, || async {
            let snapshot = self.snapshot().await?;
            Ok(f(&snapshot).ok_or_else(|| describe(&snapshot)))
        })
        .await
    }
}

fn describe(s: &Snapshot) -> String {
    let log: Vec<String> = s
        .log
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(|l| {
            format!(
                "[{}|{}] {}",
                l.kind.as_deref().unwrap_or("-"),
                l.name.as_deref().or(l.from.as_deref()).unwrap_or("-"),
                l.text
            )
        })
        .collect();
    format!(
        "#self {:?}; #peers {:?}; #topology links {:?}; #log (last 20) {:?}",
        s.me, s.peers, s.links, log
    )
}
