//! The socket natively: tokio-tungstenite over TCP (or TLS).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Sink, Stream};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::Incoming;

/// A connected WebSocket.
pub(crate) struct Socket {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
    ended: bool,
}

/// Opens a WebSocket to `url`; the caller bounds the time it takes. Frames are read as the
/// driver polls, so TCP's flow control bounds what is received (`_capacity` is the browser's
/// receive queue).
pub(crate) async fn connect(url: &str, _capacity: usize) -> Result<Socket, String> {
    // Small buffers: signaling messages are small, and many clients may share a process.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0);
    match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
        Ok((inner, _response)) => Ok(Socket {
            inner,
            ended: false,
        }),
        Err(err) => Err(format!("connect failed: {err}")),
    }
}

impl Stream for Socket {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let incoming = match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
            Some(Ok(Message::Text(text))) => {
                return Poll::Ready(Some(Incoming::Text(text.as_str().to_owned())));
            }
            Some(Ok(Message::Close(frame))) => Incoming::Closed(
                frame
                    .map(|f| format!("closed by the server ({}: {})", u16::from(f.code), f.reason))
                    .unwrap_or_else(|| "closed by the server".into()),
            ),
            Some(Ok(_)) => return Poll::Ready(Some(Incoming::Other)),
            Some(Err(err)) => Incoming::Closed(format!("read failed: {err}")),
            None => Incoming::Closed("connection closed".into()),
        };
        self.ended = true;
        Poll::Ready(Some(incoming))
    }
}

impl Sink<String> for Socket {
    type Error = String;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Pin::new(&mut self.inner)
            .poll_ready(cx)
            .map_err(|e| format!("send failed: {e}"))
    }

    fn start_send(mut self: Pin<&mut Self>, text: String) -> Result<(), String> {
        Pin::new(&mut self.inner)
            .start_send(Message::Text(text.into()))
            .map_err(|e| format!("send failed: {e}"))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Pin::new(&mut self.inner)
            .poll_flush(cx)
            .map_err(|e| format!("send failed: {e}"))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        Pin::new(&mut self.inner)
            .poll_close(cx)
            .map_err(|e| format!("close failed: {e}"))
    }
}
