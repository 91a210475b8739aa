//! `createMesh` and the `Mesh` class: the JavaScript library's mesh API over [`p2pmesh::Mesh`].

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use futures_util::StreamExt as _;
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use p2pmesh::payload::{self, Payload};
use p2pmesh::{Event, Events, Message, NodeId, PutOutcome, Record};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::js_error;
use crate::listeners::Listeners;
use crate::options;
use crate::transport::Shared;

/// A mesh node, made by `createMesh`. Its methods that talk to the mesh return promises, rejected
/// with an `Error` on failure.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Mesh {
    inner: p2pmesh::Mesh,
    peer_id: String,
    secret: [u8; 32],
    listeners: Rc<Listeners>,
    transport: Rc<Shared>,
    joined: Rc<Cell<bool>>,
}

/// Creates a mesh (see `MeshOptions`): its peer id is known at once; nothing connects before
/// `join()`. Rejects on invalid options (a `peerId` option among them: ids derive from keys).
#[wasm_bindgen(js_name = createMesh)]
pub async fn create_mesh(
    #[wasm_bindgen(unchecked_param_type = "MeshOptions")] options: JsValue,
) -> Result<Mesh, JsValue> {
    let options = options::parse(&options)?;
    let mut builder = p2pmesh::Mesh::builder()
        .signaling_urls(options.servers)
        .receive_all_topics(true)
        .persist_identity(options.persist_identity)
        .bootstrap_nodes(options.bootstrap_nodes)
        .ice_servers(options.ice_servers);
    if let Some(room) = options.room {
        builder = builder.room(room);
    }
    if let Some(max_peers) = options.max_peers {
        builder = builder.max_peers(max_peers);
    }
    if let Some(k) = options.kademlia_k {
        builder = builder.kademlia_k(k);
    }
    if let Some(secret) = options.secret_key {
        builder = builder.secret_key(secret);
    }
    let keypair = builder.identity().map_err(js_error)?;
    let inner = builder.build().map_err(js_error)?;
    let listeners = Rc::new(Listeners::default());
    spawn_local(pump(
        inner.events(),
        listeners.clone(),
        options.transport.clone(),
    ));
    Ok(Mesh {
        peer_id: inner.local_id().to_string(),
        inner,
        secret: keypair.secret(),
        listeners,
        transport: options.transport,
        joined: Rc::new(Cell::new(false)),
    })
}

/// Reads the mesh's events until it shuts down and calls the listeners.
async fn pump(mut events: Events, listeners: Rc<Listeners>, transport: Rc<Shared>) {
    while let Some(event) = events.next().await {
        match event {
            Event::PeerConnected { peer } => listeners.emit("peer:connect", &id_value(peer)),
            Event::PeerDisconnected { peer, .. } => {
                listeners.emit("peer:disconnect", &id_value(peer));
            }
            Event::PeerTimedOut { peer } => listeners.emit("peer:timeout", &id_value(peer)),
            Event::Message(message) => listeners.emit("message", &message_value(&message)),
            Event::ServerDisconnected {
                reason,
                reconnecting,
            } => transport
                .listeners
                .emit("close", &close_value(&reason, reconnecting)),
            Event::ServerReconnected => transport.listeners.emit("open", &JsValue::UNDEFINED),
            Event::Lagged { missed } => web_sys::console::warn_1(&JsValue::from_str(&format!(
                "p2pmesh: the listeners fell behind; {missed} events were dropped"
            ))),
            _ => {}
        }
    }
}

fn id_value(id: NodeId) -> JsValue {
    JsValue::from_str(&id.to_string())
}

/// Sets `object[key] = value` (a plain object's property: cannot fail).
fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}

/// `{ from, data, topic }`: `data` a string when it was sent as one, else a `Uint8Array`.
fn message_value(message: &Message) -> JsValue {
    let object = Object::new();
    set(&object, "from", &id_value(message.from));
    let data = match payload::decode(&message.data) {
        Payload::Text(text) => JsValue::from_str(text),
        Payload::Binary(bytes) => Uint8Array::from(bytes).into(),
    };
    set(&object, "data", &data);
    let topic = message
        .topic
        .as_deref()
        .map_or(JsValue::UNDEFINED, JsValue::from_str);
    set(&object, "topic", &topic);
    object.into()
}

fn close_value(reason: &str, reconnecting: bool) -> JsValue {
    let object = Object::new();
    set(&object, "reason", &JsValue::from_str(reason));
    set(&object, "reconnecting", &JsValue::from_bool(reconnecting));
    object.into()
}

/// The payload of `data`: a string as text, bytes as binary (see [`p2pmesh::payload`]).
fn payload_of(data: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = data.as_string() {
        Ok(payload::encode_text(&text))
    } else if let Some(bytes) = data.dyn_ref::<Uint8Array>() {
        Ok(payload::encode_binary(&bytes.to_vec()))
    } else if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
        Ok(payload::encode_binary(&Uint8Array::new(buffer).to_vec()))
    } else {
        Err(js_error("data must be a string or a Uint8Array"))
    }
}

/// A DHT name: a string's UTF-8, or bytes (no envelope: the name is the bytes).
fn name_of(key: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = key.as_string() {
        Ok(text.into_bytes())
    } else if let Some(bytes) = key.dyn_ref::<Uint8Array>() {
        Ok(bytes.to_vec())
    } else {
        Err(js_error("key must be a string or a Uint8Array"))
    }
}

/// A DHT command's error: an `Error` with its text, a `code` (the facade's variant, e.g.
/// `"DhtRefused"`) and, for a refusal, a `reason` (e.g. `"OtherPublisher"`).
fn dht_error(err: p2pmesh::Error) -> JsValue {
    let error = js_error(&err);
    let (code, reason) = match &err {
        p2pmesh::Error::KeyTooLarge { .. } => ("KeyTooLarge", None),
        p2pmesh::Error::ValueTooLarge { .. } => ("ValueTooLarge", None),
        p2pmesh::Error::EmptyValue => ("EmptyValue", None),
        p2pmesh::Error::NotPublished => ("NotPublished", None),
        p2pmesh::Error::Busy => ("Busy", None),
        p2pmesh::Error::DhtTimeout => ("DhtTimeout", None),
        p2pmesh::Error::DhtRefused(why) => ("DhtRefused", Some(format!("{why:?}"))),
        p2pmesh::Error::Closed => ("Closed", None),
        _ => ("Other", None),
    };
    if let Some(object) = error.dyn_ref::<Object>() {
        set(object, "code", &JsValue::from_str(code));
        if let Some(reason) = reason {
            set(object, "reason", &JsValue::from_str(&reason));
        }
    }
    error
}

/// `{ key, stored, asked, refused }`: the record's key (40 hex characters), how many of the closest
/// nodes stored it and were asked, and the last refusal heard (`undefined` when none).
fn outcome_value(outcome: &PutOutcome) -> JsValue {
    let object = Object::new();
    set(&object, "key", &id_value(outcome.key));
    set(&object, "stored", &JsValue::from(outcome.stored as f64));
    set(&object, "asked", &JsValue::from(outcome.asked as f64));
    let refused = outcome.refused.map_or(JsValue::UNDEFINED, |why| {
        JsValue::from_str(&format!("{why:?}"))
    });
    set(&object, "refused", &refused);
    object.into()
}

/// `{ key, value, publisher, seq, ageMs }`: the name (a string when it is UTF-8), the value (a
/// string when it was put as one), the publisher's peer id, the version (microseconds since the
/// epoch) and the age in milliseconds.
fn record_value(record: &Record) -> JsValue {
    let object = Object::new();
    let key = match std::str::from_utf8(&record.key) {
        Ok(text) => JsValue::from_str(text),
        Err(_) => Uint8Array::from(&record.key[..]).into(),
    };
    set(&object, "key", &key);
    let value = match payload::decode(&record.value) {
        Payload::Text(text) => JsValue::from_str(text),
        Payload::Binary(bytes) => Uint8Array::from(bytes).into(),
    };
    set(&object, "value", &value);
    set(&object, "publisher", &id_value(record.publisher));
    set(&object, "seq", &JsValue::from(record.seq as f64));
    set(
        &object,
        "ageMs",
        &JsValue::from(record.age.as_secs_f64() * 1000.0),
    );
    object.into()
}

fn peer_id(id: &str) -> Result<NodeId, JsValue> {
    id.parse()
        .map_err(|e| js_error(format!("`{id}` is not a peer id: {e}")))
}

fn ids_value(ids: Vec<NodeId>) -> JsValue {
    ids.into_iter().map(id_value).collect::<Array>().into()
}

/// A promise of `future`'s value, or rejected with its error.
fn promise(future: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    future_to_promise(future)
}

#[wasm_bindgen]
impl Mesh {
    /// This mesh's peer id: 40 hex characters, SHA-1 of its public key.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// The 32-byte ed25519 secret key: pass it as `secretKey` to `createMesh` to have this peer id
    /// again. Keep it secret.
    #[wasm_bindgen(js_name = secretKey)]
    pub fn secret_key(&self) -> Vec<u8> {
        self.secret.to_vec()
    }

    /// Joins the signaling server (the transport then reports "open"); links to the peers it
    /// introduces follow ("peer:connect"). Rejects when the server refuses or does not answer in
    /// 30 s (the transport then reports "error").
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn join(&self) -> Promise {
        let (mesh, transport, joined) = (
            self.inner.clone(),
            self.transport.clone(),
            self.joined.clone(),
        );
        promise(async move {
            match mesh.join().await {
                Ok(()) => {
                    joined.set(true);
                    transport.listeners.emit("open", &JsValue::UNDEFINED);
                    Ok(JsValue::UNDEFINED)
                }
                Err(err) => {
                    let text = err.to_string();
                    transport.listeners.emit("error", &JsValue::from_str(&text));
                    Err(js_error(text))
                }
            }
        })
    }

    /// Calls `callback` on `event`: "peer:connect", "peer:disconnect", "peer:timeout" (with the
    /// peer id) or "message" (with `{ from, data, topic }`, direct messages and every broadcast).
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, callback: Function) {
        self.listeners.on(event, callback);
    }

    /// Stops calling `callback` on `event`.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, event: &str, callback: &Function) {
        self.listeners.off(event, callback);
    }

    /// Sends `data` to a peer, neighbour or not (routed over the mesh, acknowledged and retried).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        #[wasm_bindgen(js_name = peerId)] to: String,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] data: JsValue,
    ) -> Promise {
        let mesh = self.inner.clone();
        promise(async move {
            let (to, data) = (peer_id(&to)?, payload_of(&data)?);
            mesh.send(to, data).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Broadcasts `data` on `topic` to every node of the mesh (by gossip), not to this one.
    #[wasm_bindgen(js_name = sendBroadcast, unchecked_return_type = "Promise<void>")]
    pub fn send_broadcast(
        &self,
        topic: String,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] data: JsValue,
    ) -> Promise {
        let mesh = self.inner.clone();
        promise(async move {
            let data = payload_of(&data)?;
            mesh.broadcast(&topic, data).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Calls `handler` with each broadcast on `topic` (`{ from, data, topic }`) from now on.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn subscribe(
        &self,
        topic: String,
        #[wasm_bindgen(unchecked_param_type = "(message: MeshMessage) => void")] handler: Function,
    ) -> Promise {
        let mesh = self.inner.clone();
        promise(async move {
            let mut subscription = mesh.subscribe(&topic).await.map_err(js_error)?;
            spawn_local(async move {
                while let Some(message) = subscription.next().await {
                    if let Err(thrown) =
                        handler.call1(&JsValue::UNDEFINED, &message_value(&message))
                    {
                        web_sys::console::error_3(
                            &JsValue::from_str("p2pmesh: the subscriber of"),
                            &JsValue::from_str(subscription.topic()),
                            &thrown,
                        );
                    }
                }
            });
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The neighbours: peers with an open link.
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn peers(&self) -> Promise {
        let mesh = self.inner.clone();
        promise(async move { Ok(ids_value(mesh.peers().await.map_err(js_error)?)) })
    }

    /// The contacts of the Kademlia routing table.
    #[wasm_bindgen(js_name = routingTable, unchecked_return_type = "Promise<string[]>")]
    pub fn routing_table(&self) -> Promise {
        let mesh = self.inner.clone();
        promise(async move { Ok(ids_value(mesh.routing_table().await.map_err(js_error)?)) })
    }

    /// Looks `id` up over the mesh: up to K peer ids closest to it, closest first (the first is
    /// `id` when it was found).
    #[wasm_bindgen(js_name = findNode, unchecked_return_type = "Promise<string[]>")]
    pub fn find_node(&self, id: String) -> Promise {
        let mesh = self.inner.clone();
        promise(async move {
            let target = peer_id(&id)?;
            Ok(ids_value(mesh.find_node(target).await.map_err(js_error)?))
        })
    }

    /// Publishes `value` in the DHT under the name `key` (a string, as UTF-8, or bytes; at most 64
    /// bytes), signed by this mesh, and republishes it until `remove`. `value` travels in the payload
    /// envelope, so `get` gives back a string for a string (not empty; at most 16 KiB). Resolves to
    /// `{ key, stored, asked, refused }` once the closest nodes answered; rejects when no node stored
    /// it or the name is another node's (`error.code` is `"DhtRefused"`, `error.reason` e.g.
    /// `"OtherPublisher"`), when no node answered (`"DhtTimeout"`), or on a bad argument.
    #[wasm_bindgen(unchecked_return_type = "Promise<PutOutcome>")]
    pub fn put(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] value: JsValue,
    ) -> Promise {
        let mesh = self.inner.clone();
        promise(async move {
            let (key, value) = (name_of(&key)?, payload_of(&value)?);
            if value.len() == 1 {
                // An empty string or array: only the envelope's byte. Empty means removed.
                return Err(dht_error(p2pmesh::Error::EmptyValue));
            }
            let outcome = mesh.put(key, value).await.map_err(dht_error)?;
            Ok(outcome_value(&outcome))
        })
    }

    /// Looks the name `key` up in the DHT: resolves to `{ key, value, publisher, seq, ageMs }`, or
    /// `null` when the nodes that answered have no record under it (or it was removed); rejects
    /// with `error.code` `"DhtTimeout"` when no node answered.
    #[wasm_bindgen(unchecked_return_type = "Promise<DhtRecord | null>")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: JsValue,
    ) -> Promise {
        let mesh = self.inner.clone();
        promise(async move {
            let key = name_of(&key)?;
            let record = mesh.get(key).await.map_err(dht_error)?;
            Ok(record.as_ref().map_or(JsValue::NULL, record_value))
        })
    }

    /// Removes this mesh's record named `key` from the DHT (the name stays this mesh's until the
    /// removal expires, an hour). Resolves like `put`; rejects with `error.code` `"NotPublished"`
    /// when this mesh publishes nothing under `key`.
    #[wasm_bindgen(unchecked_return_type = "Promise<PutOutcome>")]
    pub fn remove(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] key: JsValue,
    ) -> Promise {
        let mesh = self.inner.clone();
        promise(async move {
            let key = name_of(&key)?;
            let outcome = mesh.remove(key).await.map_err(dht_error)?;
            Ok(outcome_value(&outcome))
        })
    }

    /// Leaves: tells the neighbours, closes the links, leaves the server (the transport reports
    /// "close"). Every later call rejects.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&self) -> Promise {
        let (mesh, transport, joined) = (
            self.inner.clone(),
            self.transport.clone(),
            self.joined.clone(),
        );
        promise(async move {
            mesh.leave().await.map_err(js_error)?;
            if joined.replace(false) {
                transport
                    .listeners
                    .emit("close", &close_value("left the mesh", false));
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

#[wasm_bindgen(typescript_custom_section)]
const MESH_TYPES: &'static str = r#"
export interface Mesh {
  /** Calls `callback` on `event`: "peer:connect", "peer:disconnect", "peer:timeout" (a peer id) or "message". */
  on<E extends MeshEventName>(event: E, callback: MeshListener<E>): void;
  /** Stops calling `callback` on `event`. */
  off<E extends MeshEventName>(event: E, callback: MeshListener<E>): void;
}
"#;
