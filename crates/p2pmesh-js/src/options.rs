//! `createMesh`'s options, read from the JavaScript object.

use std::rc::Rc;

use js_sys::{Array, Function, Reflect, Uint8Array};
use p2pmesh::NodeId;
use p2pmesh::webrtc_adapter::IceServer;
use wasm_bindgen::convert::TryFromJsValue as _;
use wasm_bindgen::{JsCast as _, JsValue};

use crate::js_error;
use crate::transport::{Shared, TransportShare};

/// What the refused `peerId` option is told.
pub(crate) const PEER_ID_REFUSED: &str = "createMesh: the `peerId` option is not supported: a peer id \
is SHA-1 of the mesh's ed25519 public key (the mesh proves it to the server and to its peers), so \
it cannot be chosen. To keep an id, pass `secretKey` (32 bytes; read it with mesh.secretKey() and \
store it), or leave `persistIdentity` on (the default), which keeps it in this tab across reloads.";

/// `createMesh`'s options.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) transport: Rc<Shared>,
    /// The signaling servers: the transport's URL first, then the `servers` option's others.
    pub(crate) servers: Vec<String>,
    pub(crate) room: Option<String>,
    pub(crate) max_peers: Option<usize>,
    pub(crate) bootstrap_nodes: Vec<NodeId>,
    pub(crate) ice_servers: Vec<IceServer>,
    pub(crate) kademlia_k: Option<usize>,
    pub(crate) secret_key: Option<[u8; 32]>,
    pub(crate) persist_identity: bool,
}

/// `options[key]`, `None` when undefined or null.
fn get(options: &JsValue, key: &str) -> Result<Option<JsValue>, JsValue> {
    let value = Reflect::get(options, &JsValue::from_str(key))?;
    Ok((!value.is_undefined() && !value.is_null()).then_some(value))
}

fn string(value: &JsValue, what: &str) -> Result<String, JsValue> {
    value
        .as_string()
        .ok_or_else(|| js_error(format!("createMesh: `{what}` must be a string")))
}

fn count(value: &JsValue, what: &str) -> Result<usize, JsValue> {
    match value.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX.into() => Ok(n as usize),
        _ => Err(js_error(format!(
            "createMesh: `{what}` must be a whole number"
        ))),
    }
}

fn array(value: &JsValue, what: &str) -> Result<Array, JsValue> {
    if Array::is_array(value) {
        Ok(value.clone().unchecked_into())
    } else {
        Err(js_error(format!("createMesh: `{what}` must be an array")))
    }
}

fn ice_server(value: &JsValue) -> Result<IceServer, JsValue> {
    let urls = get(value, "urls")?
        .ok_or_else(|| js_error("createMesh: each of `iceServers` needs `urls`"))?;
    let urls = if Array::is_array(&urls) {
        array(&urls, "iceServers[].urls")?
            .iter()
            .map(|u| string(&u, "iceServers[].urls"))
            .collect::<Result<_, _>>()?
    } else {
        vec![string(&urls, "iceServers[].urls")?]
    };
    let text = |key: &str| -> Result<String, JsValue> {
        get(value, key)?
            .map(|v| string(&v, &format!("iceServers[].{key}")))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(IceServer {
        urls,
        username: text("username")?,
        credential: text("credential")?,
    })
}

fn transport(value: &JsValue) -> Result<Rc<Shared>, JsValue> {
    let not_one = || js_error("createMesh: `transport` must be a WebSocketTransport");
    if !value.is_object() {
        // Reflect.get throws on a primitive.
        return Err(not_one());
    }
    let share: Function = Reflect::get(value, &JsValue::from_str("__p2pmeshShare"))?
        .dyn_into()
        .map_err(|_| not_one())?;
    let handed = share.call0(value)?;
    TransportShare::try_from_js_value(handed)
        .map(|share| share.shared)
        .map_err(|_| not_one())
}

/// Reads `options` (see `MeshOptions` in the TypeScript types).
pub(crate) fn parse(options: &JsValue) -> Result<Options, JsValue> {
    if !options.is_object() {
        return Err(js_error(
            "createMesh: pass an options object with at least `transport`",
        ));
    }
    if get(options, "peerId")?.is_some() {
        return Err(js_error(PEER_ID_REFUSED));
    }
    let transport = transport(
        &get(options, "transport")?
            .ok_or_else(|| js_error("createMesh: `transport` is required"))?,
    )?;
    let mut servers = vec![transport.url.clone()];
    if let Some(v) = get(options, "servers")? {
        for url in array(&v, "servers")?.iter() {
            let url = string(&url, "servers[]")?;
            if !servers.contains(&url) {
                servers.push(url);
            }
        }
    }
    let room = get(options, "room")?
        .map(|v| string(&v, "room"))
        .transpose()?;
    let max_peers = get(options, "maxPeers")?
        .map(|v| count(&v, "maxPeers"))
        .transpose()?;
    let kademlia_k = get(options, "kademliaK")?
        .map(|v| count(&v, "kademliaK"))
        .transpose()?;
    let bootstrap_nodes = match get(options, "bootstrapNodes")? {
        Some(v) => array(&v, "bootstrapNodes")?
            .iter()
            .map(|id| {
                let id = string(&id, "bootstrapNodes[]")?;
                id.parse::<NodeId>().map_err(|e| {
                    js_error(format!(
                        "createMesh: bootstrap node `{id}` is not a peer id: {e}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let ice_servers = match get(options, "iceServers")? {
        Some(v) => array(&v, "iceServers")?
            .iter()
            .map(|s| ice_server(&s))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let secret_key = match get(options, "secretKey")? {
        Some(v) => {
            let bytes = v
                .dyn_into::<Uint8Array>()
                .map_err(|_| js_error("createMesh: `secretKey` must be a Uint8Array"))?
                .to_vec();
            Some(bytes.try_into().map_err(|_| {
                js_error("createMesh: `secretKey` must be 32 bytes (an ed25519 secret key)")
            })?)
        }
        None => None,
    };
    let persist_identity = match get(options, "persistIdentity")? {
        Some(v) => v
            .as_bool()
            .ok_or_else(|| js_error("createMesh: `persistIdentity` must be a boolean"))?,
        None => true,
    };
    Ok(Options {
        transport,
        servers,
        room,
        max_peers,
        bootstrap_nodes,
        ice_servers,
        kademlia_k,
        secret_key,
        persist_identity,
    })
}
