//! A direct message is acknowledged only if the application will get it: when the receiver's
//! events queue is full (its application fell behind), the message is not handed over and not
//! acknowledged, so the sender sees it fail; every message the sender does not see fail is in the
//! receiver's events. On the in-memory network and tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{node_identity, start_time, test_seed};
use futures_util::StreamExt as _;
use p2pmesh::memory::MemoryNetwork;
use p2pmesh::{Event, Events};

const PATIENCE: Duration = Duration::from_secs(60);

async fn next_matching(events: &mut Events, f: impl Fn(&Event) -> bool) -> Event {
    let find = async {
        while let Some(event) = events.next().await {
            if f(&event) {
                return event;
            }
        }
        panic!("the event stream ended");
    };
    tokio::time::timeout(PATIENCE, find)
        .await
        .expect("event in time")
}

#[tokio::test(start_paused = true)]
async fn a_direct_message_the_application_did_not_get_is_not_acknowledged() {
    let seed = test_seed("a_direct_message_the_application_did_not_get_is_not_acknowledged");
    let network = MemoryNetwork::new();
    let build = |index: u64, capacity: usize| {
        let (keypair, node_seed) = node_identity(seed, index);
        network
            .builder_with(keypair)
            .unwrap()
            .seed(node_seed)
            .start_time(start_time())
            .event_capacity(capacity)
            .build()
            .expect("builds")
    };
    let a = build(0, 1024);
    let mut a_events = a.events();
    a.join().await.expect("a joins");
    // b's application reads its events slowly: a queue of 4 it does not read for a while.
    let capacity = 4;
    let b = build(1, capacity);
    let mut b_events = b.events();
    b.join().await.expect("b joins");
    let (a_id, b_id) = (a.local_id(), b.local_id());
    next_matching(
        &mut b_events,
        |e| matches!(e, Event::PeerConnected { peer } if *peer == a_id),
    )
    .await;
    next_matching(
        &mut a_events,
        |e| matches!(e, Event::PeerConnected { peer } if *peer == b_id),
    )
    .await;

    let total = 3 * capacity;
    let mut sent = BTreeMap::new();
    for i in 0..total {
        let data = format!("message {i}").into_bytes();
        let id = a.send(b_id, data.clone()).await.expect("send");
        sent.insert(id, data);
    }
    // The messages that did not fit fail at a once their retries are spent (well within the wait:
    // the clock is paused, so waiting costs no real time).
    let mut failed = BTreeMap::new();
    let wait = async {
        while let Some(event) = a_events.next().await {
            if let Event::DirectFailed { id, to, .. } = event {
                assert_eq!(to, b_id);
                failed.insert(id, sent[&id].clone());
            }
        }
    };
    let _ = tokio::time::timeout(PATIENCE, wait).await;
    // b's application reads what it was handed.
    let mut got = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), b_events.next()).await
    {
        if let Event::Message(m) = event {
            got.push(m.data.to_vec());
        }
    }
    let acknowledged: Vec<Vec<u8>> = sent
        .iter()
        .filter(|(id, _)| !failed.contains_key(*id))
        .map(|(_, d)| d.clone())
        .collect();
    for data in &acknowledged {
        assert!(
            got.contains(data),
            "{:?} acknowledged but not handed to the application (got {}, {} failed)",
            String::from_utf8_lossy(data),
            got.len(),
            failed.len()
        );
    }
    for data in failed.values() {
        assert!(!got.contains(data), "a failed message was delivered");
    }
    // Each message was either handed over or failed; the queue's room was used, no more.
    assert_eq!(got.len() + failed.len(), total);
    assert!(
        (1..=capacity).contains(&got.len()),
        "{} handed over",
        got.len()
    );
    // Once the application caught up, messages are delivered again.
    a.send(b_id, b"late".to_vec()).await.expect("send");
    let late = next_matching(&mut b_events, |e| matches!(e, Event::Message(_))).await;
    let Event::Message(m) = late else {
        unreachable!()
    };
    assert_eq!(&m.data[..], b"late");
    let stats = b.stats().await.expect("stats");
    assert!(stats.direct_refused >= failed.len() as u64, "{stats:?}");
    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
}
