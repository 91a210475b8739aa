//! The harness itself: chromedriver starts and drives headless Chromiums that are distinct
//! browsers (own profiles) and all die with it; chat-cli processes are found, built and chat
//! through a signaling server started here.
//!
//! Waits are generous and only stop a hung test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use chat_web::{ChatCli, Chromedriver, PATIENCE, Signaling, chat_cli_binary, eventually};

/// Processes whose command line mentions `needle` (read from /proc).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_are_distinct_and_die_with_their_driver() {
    let driver = Chromedriver::start().await.expect("chromedriver starts");
    let pages = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        pages.path().join("index.html"),
        "<!doctype html><title>harness</title><script>\
         localStorage.setItem('visits', String(Number(localStorage.getItem('visits') || 0) + 1));\
         setTimeout(() => { window.ready = 'yes'; }, 50);\
         </script>",
    )
    .expect("write page");
    let url = format!("file://{}", pages.path().join("index.html").display());

    let one = driver.browser().await.expect("first browser");
    let two = driver.browser().await.expect("second browser");
    assert_ne!(one.profile(), two.profile());
    for browser in [&one, &two] {
        browser.goto(&url).await.expect("load page");
        let ready: String = browser
            .wait_for("the page's timer", "return window.ready || null;")
            .await
            .expect("page ready");
        assert_eq!(ready, "yes");
    }
    // Storage is the browser's own: what one page stores, the other browser does not see.
    // (Not checked across a reload: Chromium may lose a write made just before the page goes.)
    let stored = |b: &chat_web::Browser, script: &'static str| {
        let b = b.client().clone();
        async move { b.execute(script, vec![]).await.expect("run script") }
    };
    let mark = "localStorage.setItem('who', 'one'); return localStorage.getItem('who');";
    let read = "return localStorage.getItem('who');";
    assert_eq!(stored(&one, mark).await, "one");
    assert_eq!(stored(&two, read).await, serde_json::Value::Null);
    assert_eq!(stored(&one, read).await, "one");
    assert_eq!(
        stored(&two, "return localStorage.getItem('visits');").await,
        "1"
    );

    let profile = one.profile().display().to_string();
    assert!(
        !processes_mentioning(&profile).is_empty(),
        "a Chromium runs with profile {profile}"
    );
    // `two` closes its session; `one` is left to the driver's drop, as after a panic.
    two.close().await.expect("close");
    drop(driver);
    // SIGKILL is delivered at once but a process takes a moment to go.
    eventually("the Chromium of the dropped driver to go", PATIENCE, || {
        let left = processes_mentioning(&profile);
        async move {
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still running: {left:?}"))
            })
        }
    })
    .await
    .expect("no Chromium outlives its driver");
    drop(one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_cli_processes_chat_through_the_harness_server() {
    let binary = chat_cli_binary().expect("chat-cli binary");
    let web = tempfile::tempdir().expect("temp dir");
    let server = Signaling::start(web.path())
        .await
        .expect("signaling server");
    assert!(Path::new(&binary).is_file());

    let mut ann = ChatCli::start(&binary, &server.ws_url(), "ann", "harness", &[]).expect("ann");
    let ann_id = ann.joined().await.expect("ann joins");
    let mut bob = ChatCli::start(&binary, &server.ws_url(), "bob", "harness", &[]).expect("bob");
    let bob_id = bob.joined().await.expect("bob joins");
    assert_ne!(ann_id, bob_id);
    ann.knows("bob").await.expect("ann learns of bob");
    bob.knows("ann").await.expect("bob learns of ann");

    bob.type_line("hello from bob").await.expect("type");
    ann.expect_line("bob's line", |l| l == "<bob> hello from bob")
        .await
        .expect("line arrives");
    // A line matched earlier is still found (expect_line looks at what was already printed).
    ann.expect_line("bob's line again", |l| l == "<bob> hello from bob")
        .await
        .expect("seen lines are kept");

    let status = ann.quit().await.expect("ann quits");
    assert!(status.success(), "ann's exit status {status}");
    bob.expect_line("ann leaves", |l| l == "* ann left")
        .await
        .expect("bob sees ann leave");
    drop(bob);
    server.stop().await;
}
