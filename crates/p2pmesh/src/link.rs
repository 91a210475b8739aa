//! One task per link: it owns the [`PeerLink`], reports the link's events to the driver (tagged
//! with the link's id), feeds it the peer's signals, and sends the driver's frames through the
//! link's [`LinkSender`].
//!
//! Reading and sending run side by side in the task, never one after the other: a send waits
//! while the peer's queue is full, and the peer's queue drains only while the peer reads. When one
//! loop did both, two peers that sent to each other at once could each wait in `send` for the
//! other to read, and neither read again (the hang of `ten_nodes_over_memory_links`).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::NodeId;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::debug;
use transport::{LinkConnector, LinkEvent, LinkSender, PeerLink, Role};

/// Time a closing link has to flush its queue and close.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Time a link we close stays open after its last frame was handed over, so that the frame (a
/// leaving node's goodbye) is delivered before the close: a WebRTC close may drop what is still
/// buffered.
const LINGER: Duration = Duration::from_millis(100);

/// The driver's ends of a link task's queues. Dropping them closes the link once the queued
/// frames are sent.
#[derive(Debug)]
pub(crate) struct LinkQueues {
    /// Frames for the data channel.
    pub(crate) frames: mpsc::Sender<Vec<u8>>,
    /// Signals from the peer for the link's engine.
    pub(crate) signals: mpsc::Sender<Value>,
}

/// The task's ends of [`LinkQueues`].
#[derive(Debug)]
pub(crate) struct LinkInbox {
    frames: mpsc::Receiver<Vec<u8>>,
    signals: mpsc::Receiver<Value>,
}

/// A link task's two queues, each bounded by `capacity`.
pub(crate) fn queues(capacity: usize) -> (LinkQueues, LinkInbox) {
    let (frames, frames_rx) = mpsc::channel(capacity);
    let (signals, signals_rx) = mpsc::channel(capacity);
    (
        LinkQueues { frames, signals },
        LinkInbox {
            frames: frames_rx,
            signals: signals_rx,
        },
    )
}

/// What a link task reports.
#[derive(Debug)]
pub(crate) struct LinkReport {
    /// Which link (a peer may have had earlier links whose late reports must be ignored).
    pub(crate) id: u64,
    /// The peer.
    pub(crate) peer: NodeId,
    /// What happened; `Closed` is the last report of a link.
    pub(crate) event: LinkEvent,
}

/// Runs one link until it closes, or until the driver drops the queues: then the queued frames are
/// sent first (so a leaving node's goodbye goes out) and the link is closed.
pub(crate) async fn run<C>(
    connector: Arc<C>,
    id: u64,
    peer: NodeId,
    role: Role,
    inbox: LinkInbox,
    reports: mpsc::Sender<LinkReport>,
) where
    C: LinkConnector + 'static,
    C::Link: 'static,
{
    let report = |event| LinkReport { id, peer, event };
    let mut link = match connector
        .connect(crate::identity::transport_id(peer), role)
        .await
    {
        Ok(link) => link,
        Err(err) => {
            debug!(%peer, %err, "link setup failed");
            let _ = reports
                .send(report(LinkEvent::Closed(err.to_string())))
                .await;
            return;
        }
    };
    let LinkInbox {
        mut frames,
        mut signals,
    } = inbox;
    let sender = link.sender();
    let sending = async {
        while let Some(bytes) = frames.recv().await {
            if let Err(err) = sender.send(bytes).await {
                debug!(%peer, %err, "link send failed");
            }
        }
    };
    // Reads until the link ends (true) or the driver stops listening (false).
    let reading = read(&mut link, &mut signals, &reports, report);
    let flushed = {
        let (sending, reading) = (pin!(sending), pin!(reading));
        tokio::select! {
            () = sending => true,
            ended = reading => !ended,
        }
    };
    if flushed {
        // The driver dropped the queues and every frame is handed over: linger, still reading so
        // that the peer's sends never wait on us, then close.
        let lingering = read(&mut link, &mut signals, &reports, report);
        let _ = p2pmesh_rt::timeout(LINGER, lingering).await;
        let _ = p2pmesh_rt::timeout(CLOSE_GRACE, link.close()).await;
    }
}

/// Reads the link's events and feeds it the peer's signals; returns true when the link has ended
/// (its `Closed` reported), false when the report queue is gone.
async fn read<L: PeerLink>(
    link: &mut L,
    signals: &mut mpsc::Receiver<Value>,
    reports: &mpsc::Sender<LinkReport>,
    report: impl Fn(LinkEvent) -> LinkReport,
) -> bool {
    let mut signals_open = true;
    loop {
        tokio::select! {
            signal = signals.recv(), if signals_open => match signal {
                Some(signal) => {
                    if let Err(err) = link.handle_signal(signal).await {
                        debug!(peer = %link.peer(), %err, "link refused a signal");
                    }
                }
                None => signals_open = false,
            },
            event = link.next_event() => {
                let (event, last) = match event {
                    Some(LinkEvent::Closed(reason)) => (LinkEvent::Closed(reason), true),
                    None => (LinkEvent::Closed("link ended".into()), true),
                    Some(event) => (event, false),
                };
                if reports.send(report(event)).await.is_err() {
                    return false;
                }
                if last {
                    return true;
                }
            }
        }
    }
}
