//! `WebSocketTransport`: the signaling server's address and the listeners of its events. The
//! mesh opens the WebSocket itself (p2pmesh's `signaling_url`, proving its id with its key), and
//! reports the connection's events here.

use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use crate::listeners::Listeners;

/// What a transport shares with the mesh built on it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) url: String,
    pub(crate) listeners: Listeners,
}

/// The WebSocket signaling transport: `new WebSocketTransport(url)`, then give it to `createMesh`.
///
/// Its events: `"open"` (joined the server; again after a reconnection), `"close"` with
/// `{ reason, reconnecting }`, `"error"` with the error's text (the join failed).
#[wasm_bindgen]
#[derive(Debug)]
pub struct WebSocketTransport {
    shared: Rc<Shared>,
}

/// A transport's shared part, handed from a `WebSocketTransport` to `createMesh` without taking
/// the transport from JavaScript (which keeps using it).
#[wasm_bindgen(skip_typescript)]
#[derive(Debug)]
pub struct TransportShare {
    pub(crate) shared: Rc<Shared>,
}

#[wasm_bindgen]
impl WebSocketTransport {
    /// A transport to the signaling server at `url` (`ws://` or `wss://`). Nothing connects before
    /// `mesh.join()`.
    #[wasm_bindgen(constructor)]
    pub fn new(url: String) -> Self {
        Self {
            shared: Rc::new(Shared {
                url,
                listeners: Listeners::default(),
            }),
        }
    }

    /// The signaling server's URL.
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// Calls `callback` on `event`: `"open"`, `"close"` or `"error"`.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, callback: Function) {
        self.shared.listeners.on(event, callback);
    }

    /// Stops calling `callback` on `event`.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, event: &str, callback: &Function) {
        self.shared.listeners.off(event, callback);
    }

    /// The shared part, for `createMesh` (not part of the API).
    #[wasm_bindgen(js_name = __p2pmeshShare, skip_typescript)]
    pub fn share(&self) -> TransportShare {
        TransportShare {
            shared: self.shared.clone(),
        }
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TRANSPORT_TYPES: &'static str = r#"
export interface WebSocketTransport {
  /** Calls `callback` on `event`: "open", "close" ({ reason, reconnecting }) or "error" (message). */
  on<E extends TransportEventName>(event: E, callback: TransportListener<E>): void;
  /** Stops calling `callback` on `event`. */
  off<E extends TransportEventName>(event: E, callback: TransportListener<E>): void;
}
"#;
