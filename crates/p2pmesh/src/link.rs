//! One task per link: it owns the [`PeerLink`], carries out the driver's commands in order and
//! reports the link's events to the driver, tagged with the link's id.

use std::sync::Arc;
use std::time::Duration;

use mesh_core::NodeId;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::debug;
use transport::{LinkConnector, LinkEvent, PeerId, PeerLink, Role};

/// Time a closing link has to flush its queue and close.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Time a link we close stays open after its last frame was handed over, so that the frame (a
/// leaving node's goodbye) is delivered before the close: a WebRTC close may drop what is still
/// buffered.
const LINGER: Duration = Duration::from_millis(100);

/// What the driver asks a link task.
#[derive(Debug)]
pub(crate) enum LinkCommand {
    /// One frame for the data channel.
    Send(Vec<u8>),
    /// A signal from the peer for the WebRTC engine.
    Signal(Value),
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

/// Runs one link until it closes, or until the driver drops the command sender: then the queued
/// commands are carried out first (so a leaving node's goodbye goes out) and the link is closed.
pub(crate) async fn run<C>(
    connector: Arc<C>,
    id: u64,
    peer: NodeId,
    role: Role,
    mut commands: mpsc::Receiver<LinkCommand>,
    reports: mpsc::Sender<LinkReport>,
) where
    C: LinkConnector + 'static,
    C::Link: 'static,
{
    let report = |event| LinkReport { id, peer, event };
    let mut link = match connector.connect(PeerId::new(peer.to_string()), role).await {
        Ok(link) => link,
        Err(err) => {
            debug!(%peer, %err, "link setup failed");
            let _ = reports
                .send(report(LinkEvent::Closed(err.to_string())))
                .await;
            return;
        }
    };
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(LinkCommand::Send(bytes)) => {
                    if let Err(err) = link.send(bytes).await {
                        debug!(%peer, %err, "link send failed");
                    }
                }
                Some(LinkCommand::Signal(signal)) => {
                    if let Err(err) = link.handle_signal(signal).await {
                        debug!(%peer, %err, "link refused a signal");
                    }
                }
                None => break,
            },
            event = link.next_event() => match event {
                Some(LinkEvent::Closed(reason)) => {
                    let _ = reports.send(report(LinkEvent::Closed(reason))).await;
                    return;
                }
                None => {
                    let _ = reports.send(report(LinkEvent::Closed("link ended".into()))).await;
                    return;
                }
                Some(event) => {
                    if reports.send(report(event)).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    tokio::time::sleep(LINGER).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
}
