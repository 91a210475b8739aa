//! The acceptance test of the browser port: two chat-web pages in headless Chromium (each its own
//! browser and profile, so two distinct nodes) and two native chat-cli processes chat in one room
//! of a signaling server that also serves the pages.
//!
//! How the mesh is made so that a page has a native node it is not linked to: the page `quinn`
//! joins first, alone; then the page `pia` joins with `?maxPeers=1`, so its one link is to
//! `quinn` (the only node in the room), and it keeps it (its one link is a random "long" link,
//! which mesh-core never displaces for a closer peer); then the terminals `ann` and `bob` join.
//!
//! What it proves:
//! 1. everyone learns everyone's name (the chat's hello / here);
//! 2. a line sent from each page and from each terminal reaches all four;
//! 3. each page's `#topology` draws one link line per `#peers` entry, the same peers;
//! 4. a `/dm` from `pia` reaches a native node it has no link to (picked from the natives whose id
//!    is not in `pia`'s `#peers`), routed through the mesh;
//! 5. closing `quinn`'s page removes it from `pia`'s `#peers`, and both terminals print
//!    `* quinn left`.
//!
//! Needs Chromium, chromedriver and the built chat (`cargo xtask web`); fails saying so when one
//! is missing. Waits poll the DOM and stdout; their long patience only stops a hung test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_web::{ChatCli, ChatPage, Chromedriver, Signaling, built_web_dir, chat_cli_binary};

const ROOM: &str = "e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_terminals_chat_in_one_mesh() {
    let web = built_web_dir().expect("the built chat");
    let chat_cli = chat_cli_binary().expect("the chat-cli binary");
    let driver = Chromedriver::start().await.expect("chromedriver");
    let server = Signaling::start(&web).await.expect("signaling server");

    // quinn alone, then pia with one link at most: pia's link is quinn.
    let quinn = ChatPage::open(
        driver.browser().await.expect("browser"),
        &server.chat_url("quinn", ROOM, &[]),
        "quinn",
    )
    .await
    .expect("quinn's page joins");
    let pia = ChatPage::open(
        driver.browser().await.expect("browser"),
        &server.chat_url("pia", ROOM, &[("maxPeers", "1")]),
        "pia",
    )
    .await
    .expect("pia's page joins");
    assert_ne!(quinn.id(), pia.id(), "two browsers, two ids");
    pia.wait_peers("pia's one link, to quinn", |p| {
        p.len() == 1 && p[0] == quinn.id()
    })
    .await
    .expect("pia links to quinn (and chat-web honours ?maxPeers=1)");

    let mut ann = ChatCli::start(&chat_cli, &server.ws_url(), "ann", ROOM, &[]).expect("ann");
    let ann_id = ann.joined().await.expect("ann joins");
    let mut bob = ChatCli::start(&chat_cli, &server.ws_url(), "bob", ROOM, &[]).expect("bob");
    let bob_id = bob.joined().await.expect("bob joins");

    // 1. Everyone knows everyone.
    for other in ["bob", "quinn", "pia"] {
        ann.knows(other).await.expect("ann learns the others");
    }
    for other in ["ann", "quinn", "pia"] {
        bob.knows(other).await.expect("bob learns the others");
    }
    for other in ["ann", "bob", "pia"] {
        quinn.knows(other).await.expect("quinn learns the others");
    }
    for other in ["ann", "bob", "quinn"] {
        pia.knows(other).await.expect("pia learns the others");
    }

    // 2. A line from each reaches all four (a page shows its own line too).
    let pages = [&quinn, &pia];
    for page in pages {
        let text = format!("hello from {}'s page", page.name());
        page.send(&text).await.expect("type in the page");
        for reader in pages {
            reader
                .wait_log(
                    &format!("{}'s line in {}'s page", page.name(), reader.name()),
                    |l| l.is("chat", page.name(), &text),
                )
                .await
                .expect("the page line reaches every page");
        }
        let shown = format!("<{}> {text}", page.name());
        for terminal in [&mut ann, &mut bob] {
            terminal
                .expect_line("a page's line", |l| l == shown)
                .await
                .expect("the page line reaches every terminal");
        }
    }
    for who in ["ann", "bob"] {
        let text = format!("hello from {who}'s terminal");
        let (writer, reader) = if who == "ann" {
            (&mut ann, &mut bob)
        } else {
            (&mut bob, &mut ann)
        };
        writer.type_line(&text).await.expect("type in the terminal");
        let shown = format!("<{who}> {text}");
        reader
            .expect_line("the other terminal's line", |l| l == shown)
            .await
            .expect("the terminal line reaches the other terminal");
        for page in pages {
            page.wait_log(&format!("{who}'s line in {}'s page", page.name()), |l| {
                l.is("chat", who, &text)
            })
            .await
            .expect("the terminal line reaches every page");
        }
    }

    // 3. Each page draws its links: one line per #peers entry.
    let (quinn_peers, _) = quinn
        .wait_topology("quinn's topology to match its peers", |p| p.len() >= 2)
        .await
        .expect("quinn's #topology matches #peers");
    assert!(
        quinn_peers.iter().any(|p| p == pia.id()),
        "quinn is linked to pia"
    );
    let (pia_peers, pia_links) = pia
        .wait_topology("pia's topology to match its one peer", |p| p.len() == 1)
        .await
        .expect("pia's #topology matches #peers");
    assert_eq!(
        (pia_peers.as_slice(), pia_links.len()),
        ([quinn.id().to_owned()].as_slice(), 1)
    );

    // 4. pia writes to a native node it has no link to.
    let unlinked = |prefix: &str| !pia_peers.iter().any(|p| p.starts_with(prefix));
    let (target, target_terminal) = if unlinked(&ann_id) {
        ("ann", &mut ann)
    } else {
        assert!(
            unlinked(&bob_id),
            "pia has one link, so one native is not linked"
        );
        ("bob", &mut bob)
    };
    pia.send(&format!("/dm {target} only for {target}"))
        .await
        .expect("type the /dm");
    let shown = format!("[dm] <pia> only for {target}");
    target_terminal
        .expect_line("pia's direct message", |l| l == shown)
        .await
        .expect("the direct message reaches a node pia is not linked to");

    // 5. quinn's page closes: pia's #peers loses it, the terminals see it leave.
    let quinn_id = quinn.id().to_owned();
    quinn.close().await.expect("close quinn's page");
    pia.wait_peers("quinn gone from pia's #peers", |p| !p.contains(&quinn_id))
        .await
        .expect("pia's #peers drops quinn");
    for terminal in [&mut ann, &mut bob] {
        terminal
            .expect_line("quinn leaving", |l| l == "* quinn left")
            .await
            .expect("the terminals see quinn leave");
    }

    let status = ann.quit().await.expect("ann quits");
    assert!(status.success(), "ann's exit status {status}");
    let status = bob.quit().await.expect("bob quits");
    assert!(status.success(), "bob's exit status {status}");
    server.stop().await;
    drop(pia);
    drop(driver);
}
