//! The acceptance test of the browser port: two chat-web pages in headless Chromium (each its own
//! browser and profile, so two distinct nodes) and two native chat-cli processes chat in one room
//! of a signaling server that also serves the pages.
//!
//! How the mesh is made so that a page has a native node it is not linked to: the page `quinn`
//! joins first, alone; then the page `pia` joins with `?maxPeers=1`, so its first link is to
//! `quinn` (the only node in the room); then the terminals `ann` and `bob` join. pia keeps one
//! link (perhaps moved to a closer node), so at least one of the two natives is not linked to it.
//!
//! What it proves:
//! 1. everyone learns everyone's name (the chat's hello / here);
//! 2. a line sent from each page and from each terminal reaches all four;
//! 3. each page's `#topology` draws one link line per `#peers` entry, the same peers (pia: one);
//! 4. a `/dm` from `pia` reaches a native node it has no link to (picked from the natives whose id
//!    is not in `pia`'s `#peers`), routed through the mesh;
//! 5. closing `quinn`'s page removes it from `pia`'s `#peers`, and both terminals print
//!    `* quinn left`;
//! 6. names in the DHT: a terminal `cy` on another topic (it hears no hello, and nobody hears its
//!    own) and `pia` reach each other by name with `/dm`, each name looked up in the DHT where the
//!    other published it (the page through the JavaScript API's `put`, the terminal natively).
//!
//! Needs Chromium, chromedriver and the built chat (`cargo xtask web`); fails saying so when one
//! is missing. Waits poll the DOM and stdout; their long patience only stops a hung test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_web::{ChatCli, ChatPage, Chromedriver, Signaling, built_web_dir, chat_cli_binary};

const ROOM: &str = "e2e";

/// The four participants, for the scenario and for the diagnostics of a failure.
struct Mesh {
    quinn: Option<ChatPage>,
    pia: ChatPage,
    ann: ChatCli,
    bob: ChatCli,
    ann_id: String,
    bob_id: String,
}

impl Mesh {
    async fn describe(&self) -> String {
        let mut out = Vec::new();
        if let Some(quinn) = &self.quinn {
            out.push(quinn.describe().await);
        }
        out.push(self.pia.describe().await);
        out.push(self.ann.describe());
        out.push(self.bob.describe());
        out.join("\n")
    }
}

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

    let mut mesh = Mesh {
        quinn: Some(quinn),
        pia,
        ann,
        bob,
        ann_id,
        bob_id,
    };
    if let Err(err) = scenario(&mut mesh, &server.ws_url()).await {
        panic!("{err}\n\nwhat each showed:\n{}", mesh.describe().await);
    }

    let Mesh { ann, bob, pia, .. } = mesh;
    let status = ann.quit().await.expect("ann quits");
    assert!(status.success(), "ann's exit status {status}");
    let status = bob.quit().await.expect("bob quits");
    assert!(status.success(), "bob's exit status {status}");
    server.stop().await;
    drop(pia);
    drop(driver);
}

async fn scenario(mesh: &mut Mesh, server_ws_url: &str) -> chat_web::Result<()> {
    let Mesh {
        quinn,
        pia,
        ann,
        bob,
        ann_id,
        bob_id,
    } = mesh;
    let Some(quinn_page) = quinn.as_ref() else {
        return Err(chat_web::Error::Other("quinn's page is gone".into()));
    };

    // 1. Everyone knows everyone.
    for other in ["bob", "quinn", "pia"] {
        ann.knows(other).await?;
    }
    for other in ["ann", "quinn", "pia"] {
        bob.knows(other).await?;
    }
    for other in ["ann", "bob", "pia"] {
        quinn_page.knows(other).await?;
    }
    for other in ["ann", "bob", "quinn"] {
        pia.knows(other).await?;
    }

    // 2. A line from each reaches all four (a page shows its own line too).
    let pages = [quinn_page, &*pia];
    for page in pages {
        let text = format!("hello from {}'s page", page.name());
        page.send(&text).await?;
        for reader in pages {
            reader
                .wait_log(
                    &format!("{}'s line in {}'s page", page.name(), reader.name()),
                    |l| l.is("chat", page.name(), &text),
                )
                .await?;
        }
        let shown = format!("<{}> {text}", page.name());
        for terminal in [&mut *ann, &mut *bob] {
            terminal
                .expect_line(&format!("{}'s line", page.name()), |l| l == shown)
                .await?;
        }
    }
    for from_ann in [true, false] {
        let (writer, reader) = if from_ann {
            (&mut *ann, &mut *bob)
        } else {
            (&mut *bob, &mut *ann)
        };
        let who = writer.name().to_owned();
        let text = format!("hello from {who}'s terminal");
        writer.type_line(&text).await?;
        let shown = format!("<{who}> {text}");
        reader
            .expect_line(&format!("{who}'s line"), |l| l == shown)
            .await?;
        for page in pages {
            page.wait_log(&format!("{who}'s line in {}'s page", page.name()), |l| {
                l.is("chat", &who, &text)
            })
            .await?;
        }
    }

    // 3. Each page draws its links: one line per #peers entry.
    // quinn (no cap) links to the natives at least: two or more peers, each drawn.
    quinn_page
        .wait_topology("quinn's #topology to match its #peers", |p| p.len() >= 2)
        .await?;
    // pia's one link may have moved from quinn to a closer node meanwhile (mesh-core replaces
    // links by XOR distance): whichever it is, the picture shows exactly it.
    let (pia_peers, pia_links) = pia
        .wait_topology("pia's #topology to match its one peer", |p| p.len() == 1)
        .await?;
    assert_eq!(pia_links.len(), 1, "pia draws its one link");

    // 4. pia writes to a native node it has no link to.
    let unlinked = |prefix: &str| !pia_peers.iter().any(|p| p.starts_with(prefix));
    let target = if unlinked(ann_id) {
        &mut *ann
    } else {
        assert!(
            unlinked(bob_id),
            "pia has one link, so one native is not linked"
        );
        &mut *bob
    };
    let name = target.name().to_owned();
    pia.send(&format!("/dm {name} only for {name}")).await?;
    let shown = format!("[dm] <pia> only for {name}");
    target
        .expect_line("pia's direct message", |l| l == shown)
        .await?;

    // 5. quinn's page closes: pia's #peers loses it, the terminals see it leave.
    let quinn_id = quinn_page.id().to_owned();
    if let Some(page) = quinn.take() {
        page.close().await?;
    }
    pia.wait_peers("quinn gone from pia's #peers", |p| !p.contains(&quinn_id))
        .await?;
    for terminal in [&mut *ann, &mut *bob] {
        terminal
            .expect_line("quinn leaving", |l| l == "* quinn left")
            .await?;
    }

    // 6. cy, on another topic, and pia find each other's names in the DHT.
    let mut cy = ChatCli::start(
        &chat_cli_binary()?,
        server_ws_url,
        "cy",
        ROOM,
        &["--topic", "elsewhere"],
    )?;
    cy.joined().await?;
    cy.expect_line("cy's name in the DHT", |l| {
        l.starts_with("* your name is published in the DHT (name:cy,")
    })
    .await?;
    pia.wait_log("pia's name in the DHT", |l| {
        l.kind.as_deref() == Some("system")
            && l.text
                .starts_with("your name is published in the DHT (name:pia,")
    })
    .await?;
    pia.send("/dm cy found by name").await?;
    cy.expect_line("pia's direct message to cy", |l| {
        l == "[dm] <pia> found by name"
    })
    .await?;
    cy.type_line("/dm pia found you too").await?;
    pia.wait_log("cy's direct message to pia", |l| {
        l.is("dm", "cy", "found you too")
    })
    .await?;
    let status = cy.quit().await?;
    assert!(status.success(), "cy's exit status {status}");
    Ok(())
}
