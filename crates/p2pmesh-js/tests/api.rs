//! The JavaScript API's options and identity, in the browser, without a signaling server
//! (`createMesh` connects nothing before `join`): a `peerId` option is refused with an error that
//! says how to keep an id; a `secretKey` gives its peer id and reads back; `persistIdentity`
//! (the default) keeps the key in the tab's sessionStorage so a second mesh of the tab has the same
//! id, and `persistIdentity: false` does not; invalid options reject with the option's name.
//!
//! ```text
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! cargo test --target wasm32-unknown-unknown -p p2pmesh-js --test api
//! ```
#![cfg(target_arch = "wasm32")]
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{error_text, options, wait};
use js_sys::Uint8Array;
use p2pmesh_js::{WebSocketTransport, create_mesh};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const URL: &str = "ws://127.0.0.1:9/";

fn transport() -> WebSocketTransport {
    WebSocketTransport::new(URL.to_owned())
}

fn session_storage() -> web_sys::Storage {
    web_sys::window()
        .expect("a window")
        .session_storage()
        .expect("sessionStorage")
        .expect("sessionStorage")
}

#[wasm_bindgen_test]
async fn a_peer_id_option_is_refused_and_the_error_says_how_to_keep_an_id() {
    let refused = create_mesh(options(transport(), &[("peerId", "alice".into())]))
        .await
        .expect_err("peerId refused");
    let text = error_text(&refused);
    assert!(
        text.contains("peerId") && text.contains("secretKey"),
        "{text}"
    );
    assert!(text.contains("persistIdentity"), "{text}");
}

#[wasm_bindgen_test]
async fn a_secret_key_gives_its_peer_id_and_reads_back() {
    let secret = [7u8; 32];
    let key = Uint8Array::from(&secret[..]);
    let mesh = create_mesh(options(transport(), &[("secretKey", key.into())]))
        .await
        .expect("mesh");
    assert_eq!(
        mesh.peer_id(),
        p2pmesh::Keypair::from_secret(secret).peer_id().to_string()
    );
    assert_eq!(mesh.peer_id().len(), 40);
    assert_eq!(mesh.secret_key(), secret.to_vec());
    wait(mesh.leave()).await.expect("leave");
}

#[wasm_bindgen_test]
async fn persist_identity_keeps_the_id_in_the_tab_and_can_be_turned_off() {
    let storage = session_storage();
    storage
        .remove_item(p2pmesh::DEFAULT_IDENTITY_STORAGE_KEY)
        .expect("remove");
    let first = create_mesh(options(transport(), &[])).await.expect("mesh");
    let stored = storage
        .get_item(p2pmesh::DEFAULT_IDENTITY_STORAGE_KEY)
        .expect("read")
        .expect("the key was stored");
    assert_eq!(stored, hex(&first.secret_key()));
    // A reload builds the mesh again: the same id.
    let again = create_mesh(options(transport(), &[])).await.expect("mesh");
    assert_eq!(again.peer_id(), first.peer_id());
    let fresh = create_mesh(options(transport(), &[("persistIdentity", false.into())]))
        .await
        .expect("mesh");
    assert_ne!(fresh.peer_id(), first.peer_id());
    // An explicit key wins over the kept one and is not stored.
    let key = Uint8Array::from(&[3u8; 32][..]);
    let explicit = create_mesh(options(transport(), &[("secretKey", key.into())]))
        .await
        .expect("mesh");
    assert_ne!(explicit.peer_id(), first.peer_id());
    assert_eq!(
        storage
            .get_item(p2pmesh::DEFAULT_IDENTITY_STORAGE_KEY)
            .expect("read"),
        Some(stored)
    );
    storage
        .remove_item(p2pmesh::DEFAULT_IDENTITY_STORAGE_KEY)
        .expect("remove");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[wasm_bindgen_test]
async fn invalid_options_reject_with_the_option_named() {
    let cases: [(JsValue, &str); 7] = [
        (JsValue::UNDEFINED, "transport"),
        (
            options(
                transport(),
                &[("secretKey", Uint8Array::new_with_length(31).into())],
            ),
            "secretKey",
        ),
        (options(transport(), &[("maxPeers", 0.into())]), "max_peers"),
        (
            options(transport(), &[("maxPeers", 2.5.into())]),
            "maxPeers",
        ),
        (
            options(
                transport(),
                &[(
                    "bootstrapNodes",
                    js_sys::Array::of1(&"not-an-id".into()).into(),
                )],
            ),
            "not-an-id",
        ),
        (
            options(transport(), &[("servers", "ws://127.0.0.1:10/".into())]),
            "servers",
        ),
        (
            options(
                transport(),
                &[("servers", js_sys::Array::of1(&7.into()).into())],
            ),
            "servers[]",
        ),
    ];
    for (options, named) in cases {
        let error = create_mesh(options).await.expect_err("refused");
        let text = error_text(&error);
        assert!(text.contains(named), "{named}: {text}");
    }
    let transport_object = js_sys::Object::new();
    js_sys::Reflect::set(&transport_object, &"transport".into(), &"ws://x".into()).unwrap();
    let error = create_mesh(transport_object.into())
        .await
        .expect_err("refused");
    assert!(error_text(&error).contains("WebSocketTransport"));
}
