//! The socket in the browser: a `web_sys::WebSocket`.
//!
//! The [`Socket`] owns the WebSocket and its event handlers (JavaScript closures) and lives
//! in the driver's task (`spawn_local`); the handlers feed a bounded queue that the socket's
//! stream reads. A browser cannot apply backpressure to a WebSocket's receiving side, so
//! when that queue is full (the user stopped reading events) the connection is closed and the
//! driver reconnects later, rather than buffering without bound. Sending waits while the
//! browser's own send buffer holds more than [`MAX_BUFFERED`] bytes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::{Sink, Stream, StreamExt as _};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use super::Incoming;

/// Bytes the browser may hold unsent before [`Socket`]'s sink waits.
pub(crate) const MAX_BUFFERED: u32 = 1024 * 1024;

/// How often a waiting send looks at the browser's send buffer again (the WebSocket API has
/// no event for it draining).
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What the handlers report to the socket.
enum Raw {
    Open,
    Text(String),
    Other,
}

/// Why the connection ended, written by the handlers.
#[derive(Default)]
struct Ending {
    /// Set by `onerror` (which carries no detail) or by a queue overflow.
    cause: Option<String>,
    /// Set by `onclose`.
    close: Option<String>,
}

impl Ending {
    fn reason(&self) -> String {
        match (&self.cause, &self.close) {
            (Some(cause), Some(close)) => format!("{cause}; {close}"),
            (Some(one), None) | (None, Some(one)) => one.clone(),
            (None, None) => "connection closed".into(),
        }
    }
}

type Handler<E> = Closure<dyn FnMut(E)>;

/// A WebSocket of the browser, connected.
pub(crate) struct Socket {
    ws: WebSocket,
    rx: mpsc::Receiver<Raw>,
    ending: Rc<RefCell<Ending>>,
    ended: bool,
    drain: Option<Pin<Box<dyn Future<Output = ()>>>>,
    _onopen: Handler<Event>,
    _onmessage: Handler<MessageEvent>,
    _onclose: Handler<CloseEvent>,
    _onerror: Handler<Event>,
}

/// Opens a WebSocket to `url`, its receive queue bounded to `capacity` messages; the caller
/// bounds the time it takes (dropping the future closes the socket).
pub(crate) async fn connect(url: &str, capacity: usize) -> Result<Socket, String> {
    let ws = WebSocket::new(url).map_err(|e| format!("connect failed: {}", describe(&e)))?;
    ws.set_binary_type(BinaryType::Arraybuffer);
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let ending = Rc::new(RefCell::new(Ending::default()));

    let onopen = {
        let mut tx = tx.clone();
        Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            // The queue is empty before the socket opens: this cannot be refused.
            let _ = tx.try_send(Raw::Open);
        })
    };
    let onmessage = {
        let mut tx = tx.clone();
        let ws = ws.clone();
        let ending = ending.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let raw = match event.data().as_string() {
                Some(text) => Raw::Text(text),
                None => Raw::Other,
            };
            if let Err(err) = tx.try_send(raw)
                && err.is_full()
            {
                ending
                    .borrow_mut()
                    .cause
                    .get_or_insert_with(|| "the receive queue overflowed".into());
                let _ = ws.close_with_code_and_reason(4000, "receive queue overflow");
                tx.close_channel();
            }
        })
    };
    let onclose = {
        let tx = tx.clone();
        let ending = ending.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let reason = event.reason();
            ending.borrow_mut().close = Some(if reason.is_empty() {
                format!("closed ({})", event.code())
            } else {
                format!("closed ({}: {reason})", event.code())
            });
            tx.clone().close_channel();
        })
    };
    let onerror = {
        let ending = ending.clone();
        Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            // `close` follows with the code; the error itself carries nothing more.
            ending
                .borrow_mut()
                .cause
                .get_or_insert_with(|| "WebSocket error".into());
        })
    };
    drop(tx);
    ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
    ws.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    let mut socket = Socket {
        ws,
        rx,
        ending,
        ended: false,
        drain: None,
        _onopen: onopen,
        _onmessage: onmessage,
        _onclose: onclose,
        _onerror: onerror,
    };
    match socket.rx.next().await {
        Some(Raw::Open) => Ok(socket),
        // Nothing but `open` can come first; the channel ends when the socket closed.
        Some(_) | None => Err(format!(
            "connect failed: {}",
            socket.ending.borrow().reason()
        )),
    }
}

fn describe(error: &wasm_bindgen::JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Unhook the handlers before their closures are freed, then let the socket go.
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        if matches!(
            self.ws.ready_state(),
            WebSocket::CONNECTING | WebSocket::OPEN
        ) {
            let _ = self.ws.close();
        }
    }
}

impl Stream for Socket {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            return match self.rx.poll_next_unpin(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Raw::Open)) => continue,
                Poll::Ready(Some(Raw::Text(text))) => Poll::Ready(Some(Incoming::Text(text))),
                Poll::Ready(Some(Raw::Other)) => Poll::Ready(Some(Incoming::Other)),
                Poll::Ready(None) => {
                    self.ended = true;
                    let reason = self.ending.borrow().reason();
                    Poll::Ready(Some(Incoming::Closed(reason)))
                }
            };
        }
    }
}

impl Sink<String> for Socket {
    type Error = String;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        loop {
            if self.ws.ready_state() != WebSocket::OPEN {
                return Poll::Ready(Err(format!(
                    "send failed: {}",
                    self.ending.borrow().reason()
                )));
            }
            if let Some(drain) = self.drain.as_mut() {
                if drain.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.drain = None;
            }
            if self.ws.buffered_amount() <= MAX_BUFFERED {
                return Poll::Ready(Ok(()));
            }
            self.drain = Some(Box::pin(p2pmesh_rt::sleep(DRAIN_POLL)));
        }
    }

    fn start_send(self: Pin<&mut Self>, text: String) -> Result<(), String> {
        self.ws
            .send_with_str(&text)
            .map_err(|e| format!("send failed: {}", describe(&e)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        // The browser sends what `send` was given; `poll_ready` bounds what it holds.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        if matches!(
            self.ws.ready_state(),
            WebSocket::CONNECTING | WebSocket::OPEN
        ) {
            self.ws
                .close_with_code(1000)
                .map_err(|e| format!("close failed: {}", describe(&e)))?;
        }
        Poll::Ready(Ok(()))
    }
}
