//! p2pmesh's JavaScript API: the browser build of `p2pmesh::Mesh` as an ES module (by
//! wasm-bindgen, with TypeScript types), with the JavaScript library's README API so that code
//! written for it runs with only its imports changed.
//!
//! ```js
//! import init, { createMesh, WebSocketTransport } from "./pkg/p2pmesh.js";
//! await init();
//! const transport = new WebSocketTransport("ws://localhost:8080");
//! transport.on("open", () => console.log("connected to the signaling server"));
//! const mesh = await createMesh({ transport, maxPeers: 5 });
//! mesh.on("peer:connect", (peerId) => console.log("connected to", peerId));
//! mesh.on("message", ({ from, data, topic }) => console.log(from, topic, data));
//! await mesh.join();
//! await mesh.sendBroadcast("chat", "hello");
//! // The DHT: a record by name, signed by this mesh (see PutOutcome, DhtRecord, DhtError).
//! await mesh.put("name:alice", mesh.peerId);
//! const record = await mesh.get("name:alice"); // { key, value, publisher, seq, ageMs } or null
//! ```
//!
//! Build: `cargo build --profile release-wasm --target wasm32-unknown-unknown -p p2pmesh-js`, then
//! `wasm-bindgen --target web --out-name p2pmesh --out-dir pkg <target>/p2pmesh_js.wasm`.
//!
//! What differs from the JavaScript library (docs/browser.md): a peer id is SHA-1 of the mesh's
//! ed25519 public key, never chosen (`peerId` is refused; `secretKey` or `persistIdentity` keep an
//! id); `room` picks a room on the server; payloads travel in `p2pmesh::payload`'s envelope,
//! so a string sent arrives as a string and a `Uint8Array` as a `Uint8Array`.
//!
//! How it runs: `createMesh` builds the mesh (its driver is a task on the page's
//! event loop) and starts the *pump*, a task that reads the mesh's events and calls the listeners
//! registered with `on`; a listener that throws is logged on the console and the pump goes on.
//! Every method that talks to the mesh returns a promise; a failure rejects it with an `Error`
//! carrying the Rust error's text.
//!
//! The whole crate is browser-only: natively it is empty.

#![cfg(target_arch = "wasm32")]
#![deny(missing_docs)]

mod listeners;
mod mesh;
mod options;
mod transport;

pub use mesh::{Mesh, create_mesh};
pub use transport::WebSocketTransport;

use wasm_bindgen::prelude::*;

/// Runs when the module is instantiated (`await init()`): Rust panics are written to the console
/// with their message and location.
#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// A JavaScript `Error` with `message`.
pub(crate) fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A STUN or TURN server, as RTCPeerConnection takes it. */
export interface IceServerOptions {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** The options of createMesh. */
export interface MeshOptions {
  /** The signaling transport (required). */
  transport: WebSocketTransport;
  /**
   * More signaling servers of the transport's cluster (servers that share rooms), e.g.
   * ["wss://signal-b.example.org"]. The transport's URL is tried first, then these in order;
   * when the server joined is lost the mesh joins the next one at once (the transport reports
   * "close" with reconnecting, then "open"). Links stay up meanwhile.
   */
  servers?: string[];
  /** The room to join on the signaling server (default: the server's default room). */
  room?: string;
  /** Links kept at most (default 5). */
  maxPeers?: number;
  /** Peer ids (40 hex characters) to start from besides the server's introductions. */
  bootstrapNodes?: string[];
  /** STUN and TURN servers (default: none, host candidates only). */
  iceServers?: IceServerOptions[];
  /** Kademlia's K: contacts per bucket (default 20). */
  kademliaK?: number;
  /** The mesh's ed25519 secret key, 32 bytes (read one with mesh.secretKey()). Wins over persistIdentity. */
  secretKey?: Uint8Array;
  /** Keep the key pair, so the peer id, in this tab's sessionStorage across reloads (default true). */
  persistIdentity?: boolean;
  /** Refused: a peer id derives from the mesh's key. Pass `secretKey` to keep an id. */
  peerId?: never;
}

/** A message received: direct (topic undefined) or a broadcast. A string sent arrives as a string. */
export interface MeshMessage {
  /** The sender's peer id. */
  from: string;
  data: string | Uint8Array;
  /** The broadcast's topic; undefined for a direct message. */
  topic?: string;
}

/** What mesh.put and mesh.remove resolve to. */
export interface PutOutcome {
  /** The record's key in the DHT: SHA-1 of the name, 40 hex characters. */
  key: string;
  /** How many of the closest nodes stored it. */
  stored: number;
  /** How many were asked. */
  asked: number;
  /** The last refusal heard while others stored it (e.g. "Stale"), if any. */
  refused?: string;
}

/** A record mesh.get found. */
export interface DhtRecord {
  /** Its name (a string when it is UTF-8). */
  key: string | Uint8Array;
  /** The value: a string when it was put as one. */
  value: string | Uint8Array;
  /** The publisher's peer id. */
  publisher: string;
  /** Its version: when it was published, in microseconds since the Unix epoch. */
  seq: number;
  /** How long ago it was published, in milliseconds (by this node's clock). */
  ageMs: number;
}

/**
 * The Error a DHT command (put, get, remove) rejects with: `code` is "KeyTooLarge",
 * "ValueTooLarge", "EmptyValue", "NotPublished", "Busy", "DhtTimeout" (no node answered),
 * "DhtRefused" (with `reason`, e.g. "OtherPublisher": the name is another node's), "Closed" or
 * "Other".
 */
export interface DhtError extends Error {
  code: string;
  reason?: string;
}

/** The events of a mesh. */
export type MeshEventName = "peer:connect" | "peer:disconnect" | "peer:timeout" | "message";

/** The listener of a mesh event: a peer id, or the message for "message". */
export type MeshListener<E extends MeshEventName> = E extends "message"
  ? (message: MeshMessage) => void
  : (peerId: string) => void;

/** What "close" of a transport reports. */
export interface TransportClose {
  reason: string;
  /** Whether the transport tries again (it then reports "open" when back). */
  reconnecting: boolean;
}

/** The events of a transport. */
export type TransportEventName = "open" | "close" | "error";

/** The listener of a transport event. */
export type TransportListener<E extends TransportEventName> = E extends "close"
  ? (close: TransportClose) => void
  : E extends "error"
    ? (message: string) => void
    : () => void;
"#;
