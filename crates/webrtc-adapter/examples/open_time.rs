//! Link open time through the adapter: two connectors in one process over 127.0.0.1,
//! signals passed directly, from `connect` to both sides reporting `Open`.
//!
//! ```text
//! cargo run --release -p webrtc-adapter --example open_time
//! LINKS=50 CHECK_MS=200 WAKE_MS=0 cargo run --release -p webrtc-adapter --example open_time
//! ```
//!
//! Knobs: `LINKS` (default 20), `CHECK_MS` (ICE check interval, adapter default 20),
//! `WAKE_MS` (setup wake interval, adapter default 2; 0 = off), `PARALLEL` (links opened at
//! once, default 1), `RUST_LOG`.

use std::time::{Duration, Instant};

use transport::{LinkConnector, LinkEvent, PeerId, PeerLink, Role};
use webrtc_adapter::{Config, Connector, Link};

mod common;

use common::{BoxError, env_u64, init_tracing, summary};

/// Pumps both links until both report `Open`; returns the time from the start.
async fn open_pair(a_conn: &Connector, b_conn: &Connector) -> Result<Duration, BoxError> {
    let t0 = Instant::now();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut a = a_conn
        .connect(PeerId::new(format!("b{n}")), Role::Initiator)
        .await?;
    let mut b = b_conn
        .connect(PeerId::new(format!("a{n}")), Role::Responder)
        .await?;
    let (mut a_open, mut b_open) = (None, None);
    while a_open.is_none() || b_open.is_none() {
        tokio::select! {
            Some(ev) = a.next_event() => match ev {
                LinkEvent::Signal(s) => b.handle_signal(s).await?,
                LinkEvent::Open { .. } => a_open = Some(t0.elapsed()),
                LinkEvent::Closed(r) => return Err(format!("a closed: {r}").into()),
                LinkEvent::Message(_) => {}
            },
            Some(ev) = b.next_event() => match ev {
                LinkEvent::Signal(s) => a.handle_signal(s).await?,
                LinkEvent::Open { .. } => b_open = Some(t0.elapsed()),
                LinkEvent::Closed(r) => return Err(format!("b closed: {r}").into()),
                LinkEvent::Message(_) => {}
            },
        }
    }
    close(&mut a, &mut b).await;
    let open = a_open.max(b_open).unwrap_or_default();
    if open > Duration::from_millis(250) {
        eprintln!("slow link {n}: {open:?}");
    }
    Ok(open)
}

async fn close(a: &mut Link, b: &mut Link) {
    a.close().await;
    b.close().await;
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    init_tracing();
    let _ = webrtc_adapter::init_log_bridge(if std::env::var("RUST_LOG").is_ok() {
        tracing_log::log::LevelFilter::Trace
    } else {
        tracing_log::log::LevelFilter::Warn
    });
    let links = env_u64("LINKS").unwrap_or(20) as usize;
    let parallel = env_u64("PARALLEL").unwrap_or(1).max(1) as usize;
    let mut config = Config::loopback();
    if let Some(ms) = env_u64("CHECK_MS") {
        config.ice_check_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = env_u64("WAKE_MS") {
        config.setup_wake_interval = Duration::from_millis(ms);
    }
    let a = Connector::new(config.clone());
    let b = Connector::new(config.clone());
    let mut opens = Vec::with_capacity(links);
    while opens.len() < links {
        let batch = parallel.min(links - opens.len());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let (a, b) = (a.clone(), b.clone());
            set.spawn(async move { open_pair(&a, &b).await });
        }
        while let Some(res) = set.join_next().await {
            opens.push(res??);
        }
    }
    println!(
        "adapter open time over {links} links (parallel {parallel}, check {:?}, wake {:?}): {}",
        config.ice_check_interval,
        config.setup_wake_interval,
        summary(&mut opens)
    );
    Ok(())
}
