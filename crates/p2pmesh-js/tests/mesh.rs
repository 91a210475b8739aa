//! Two meshes of the JavaScript API in one page, over a real signaling server and real WebRTC
//! links (loopback, headless Chromium): they link up ("peer:connect" on both), a string sent
//! directly arrives as a string with no topic, bytes broadcast on a topic nobody subscribed to
//! arrive as a `Uint8Array` on "message" (every broadcast does), a subscriber gets its topic's
//! broadcasts, `peers`, `routingTable` and `findNode` know the other, a record one `put`s the other
//! `get`s until it is `remove`d (DHT errors carry a `code`), and `leave` is seen by the other
//! ("peer:disconnect") and reported by the transport ("close").
//!
//! The server runs outside the browser; its URL is given when the test is compiled:
//!
//! ```text
//! cargo build -p signaling-server
//! $CARGO_TARGET_DIR/debug/signaling-server --addr 127.0.0.1:$PORT &
//! P2PMESH_TEST_SIGNALING_URL=ws://127.0.0.1:$PORT \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! cargo test --target wasm32-unknown-unknown -p p2pmesh-js --test mesh
//! ```
#![cfg(target_arch = "wasm32")]
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Recorder, get, listen, options, wait};
use js_sys::{Array, Uint8Array};
use p2pmesh_js::{WebSocketTransport, create_mesh};
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

// Read when the test is built (a browser has no environment); missing, the test fails and says
// how to run it.
fn server_url() -> &'static str {
    match option_env!("P2PMESH_TEST_SIGNALING_URL") {
        Some(url) => url,
        None => panic!(
            "P2PMESH_TEST_SIGNALING_URL is not set: start a signaling server (cargo build -p \
             signaling-server; target/debug/signaling-server --addr 127.0.0.1:PORT) and build \
             this test with P2PMESH_TEST_SIGNALING_URL=ws://127.0.0.1:PORT (see tests/mesh.rs)"
        ),
    }
}

fn strings(value: JsValue) -> Vec<String> {
    value
        .dyn_into::<Array>()
        .expect("an array")
        .iter()
        .map(|v| v.as_string().expect("a string"))
        .collect()
}

#[wasm_bindgen_test]
async fn two_meshes_link_and_exchange_strings_bytes_and_broadcasts() {
    let url = server_url();
    let room: JsValue = format!("p2pmesh-js-{}", js_sys::Date::now()).into();
    let fields = |room: &JsValue| vec![("room", room.clone()), ("persistIdentity", false.into())];

    let a_transport = WebSocketTransport::new(url.to_owned());
    let a_opened = Recorder::new();
    a_transport.on("open", a_opened.function());
    let a_closed = Recorder::new();
    a_transport.on("close", a_closed.function());
    let a = create_mesh(options(a_transport, &fields(&room)))
        .await
        .expect("a");
    let b = create_mesh(options(
        WebSocketTransport::new(url.to_owned()),
        &fields(&room),
    ))
    .await
    .expect("b");
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    let a_connected = listen(&a, "peer:connect");
    let b_connected = listen(&b, "peer:connect");
    let b_disconnected = listen(&b, "peer:disconnect");
    let b_messages = listen(&b, "message");

    wait(a.join()).await.expect("a joins");
    a_opened.until("a's transport opens", |_| true).await;
    wait(b.join()).await.expect("b joins");
    b_connected
        .until("b links to a", |p| p.as_string().as_deref() == Some(&a_id))
        .await;
    a_connected
        .until("a links to b", |p| p.as_string().as_deref() == Some(&b_id))
        .await;
    assert_eq!(
        strings(wait(a.peers()).await.expect("peers")),
        vec![b_id.clone()]
    );
    assert!(strings(wait(b.routing_table()).await.expect("table")).contains(&a_id));
    let found = strings(wait(a.find_node(b_id.clone())).await.expect("lookup"));
    assert_eq!(found.first(), Some(&b_id));

    // The DHT: a record a publishes, b finds (a string value as a string); only a removes it.
    let put = wait(a.put("name:a".into(), "hello dht".into()))
        .await
        .expect("put");
    assert!(get(&put, "stored").as_f64().expect("stored") >= 1.0);
    assert_eq!(get(&put, "key").as_string().map(|k| k.len()), Some(40));
    let record = wait(b.get("name:a".into())).await.expect("get");
    assert_eq!(get(&record, "key").as_string().as_deref(), Some("name:a"));
    assert_eq!(
        get(&record, "value").as_string().as_deref(),
        Some("hello dht")
    );
    assert_eq!(get(&record, "publisher").as_string(), Some(a_id.clone()));
    assert!(get(&record, "seq").as_f64().expect("seq") > 0.0);
    assert!(get(&record, "ageMs").as_f64().expect("ageMs") >= 0.0);
    let not_mine = wait(b.remove("name:a".into())).await.expect_err("not b's");
    assert_eq!(
        get(&not_mine, "code").as_string().as_deref(),
        Some("NotPublished")
    );
    let empty = wait(a.put("name:a".into(), "".into()))
        .await
        .expect_err("empty");
    assert_eq!(
        get(&empty, "code").as_string().as_deref(),
        Some("EmptyValue")
    );
    wait(a.remove("name:a".into())).await.expect("remove");
    assert!(wait(b.get("name:a".into())).await.expect("get").is_null());
    assert!(
        wait(b.get(Uint8Array::from(&[9u8, 9][..]).into()))
            .await
            .expect("get")
            .is_null()
    );

    // A string arrives as a string, without a topic.
    wait(a.send(b_id.clone(), "hello".into()))
        .await
        .expect("send");
    let direct = b_messages
        .until("the direct message", |m| get(m, "topic").is_undefined())
        .await;
    assert_eq!(get(&direct, "from").as_string(), Some(a_id.clone()));
    assert_eq!(get(&direct, "data").as_string().as_deref(), Some("hello"));

    // Bytes on a topic b never subscribed to: still on "message", as bytes.
    let bytes = Uint8Array::from(&[1u8, 2, 3][..]);
    wait(a.send_broadcast("news".into(), bytes.into()))
        .await
        .expect("broadcast");
    let news = b_messages
        .until("the broadcast", |m| {
            get(m, "topic").as_string().as_deref() == Some("news")
        })
        .await;
    let data = get(&news, "data")
        .dyn_into::<Uint8Array>()
        .expect("bytes arrive as a Uint8Array");
    assert_eq!(data.to_vec(), vec![1, 2, 3]);

    // A subscriber gets its topic.
    let chat = Recorder::new();
    wait(b.subscribe("chat".into(), chat.function()))
        .await
        .expect("subscribe");
    wait(a.send_broadcast("chat".into(), "hi all".into()))
        .await
        .expect("broadcast");
    let said = chat.until("the chat broadcast", |_| true).await;
    assert_eq!(get(&said, "data").as_string().as_deref(), Some("hi all"));
    assert_eq!(get(&said, "topic").as_string().as_deref(), Some("chat"));

    wait(a.leave()).await.expect("a leaves");
    b_disconnected
        .until("b sees a leave", |p| {
            p.as_string().as_deref() == Some(&a_id)
        })
        .await;
    let close = a_closed.until("a's transport closes", |_| true).await;
    assert_eq!(get(&close, "reconnecting").as_bool(), Some(false));
    assert!(wait(a.peers()).await.is_err(), "a left: calls reject");
    wait(b.leave()).await.expect("b leaves");
}
