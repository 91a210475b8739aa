//! The task that owns the signaling transport: it carries the driver's messages to the server and
//! the server's events to the driver, so that the driver never waits on the transport.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;
use transport::{ClientMessage, SignalingTransport, TransportEvent};

/// Time one send may wait for the transport's outgoing queue before the message is dropped. A
/// transport whose `send` and `next_event` share one owner can otherwise wait forever on a
/// full queue while its events wait for us.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Time the transport has to leave the server and close.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Runs until the driver drops `messages` (then leaves the server and closes the transport) or the
/// transport closes for good (then `events` is dropped, which the driver sees).
pub(crate) async fn run(
    mut transport: Box<dyn SignalingTransport>,
    mut messages: mpsc::Receiver<ClientMessage>,
    events: mpsc::Sender<TransportEvent>,
) {
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(message) => {
                    match p2pmesh_rt::timeout(SEND_TIMEOUT, transport.send(message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => debug!(%err, "signaling send failed"),
                        Err(_) => debug!("signaling send timed out; message dropped"),
                    }
                }
                None => break,
            },
            event = transport.next_event() => match event {
                Some(event) => {
                    if events.send(event).await.is_err() {
                        break;
                    }
                }
                None => return,
            },
        }
    }
    let _ = p2pmesh_rt::timeout(CLOSE_GRACE, transport.close()).await;
}
