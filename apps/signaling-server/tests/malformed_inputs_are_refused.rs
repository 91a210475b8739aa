//! Every kind of malformed input is answered with an `error` carrying its machine-readable
//! `code`, and the connection, the server and the other clients keep working.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer, http_get, id_of, key};
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use signaling_server::Config;
use tokio_tungstenite::tungstenite::Message;

enum Input {
    Text(String),
    Json(Value),
    Binary,
}

fn text(s: &str) -> Input {
    Input::Text(s.to_owned())
}

#[tokio::test]
async fn malformed_inputs_get_their_error_code_and_serving_goes_on() {
    let server = TestServer::start(Config::ephemeral()).await;
    let (me_key, other_key) = (key(1), key(2));
    let (me_id, other_id) = (id_of(&me_key), id_of(&other_key));
    let mut other = Raw::connect(&server).await;
    other.join_verified(&other_key, None).await;
    let mut elsewhere = Raw::connect(&server).await;
    elsewhere.join_verified(&key(9), Some("elsewhere")).await;
    let elsewhere_id = id_of(&key(9));
    let mut me = Raw::connect(&server).await;
    me.join_verified(&me_key, None).await;
    // `other` was introduced to `me`; drain that before the checks.
    assert_eq!(other.recv().await["type"], "peer_joined");
    let mut fresh = Raw::connect(&server).await;

    let good_sig = |raw: &Raw, k: &ed25519_dalek::SigningKey| {
        hex::encode(
            k.sign(&transport::join_proof_message(&raw.nonce, &raw.host))
                .to_bytes(),
        )
    };
    let k3 = key(3);
    let k4 = key(4);
    let k3_pub = hex::encode(k3.verifying_key().to_bytes());
    let k4_pub = hex::encode(k4.verifying_key().to_bytes());
    let k3_id = id_of(&k3);
    let other_pub = hex::encode(other_key.verifying_key().to_bytes());
    let wrong_nonce_sig = hex::encode(
        k3.sign(&transport::join_proof_message(&[0u8; 32], &fresh.host))
            .to_bytes(),
    );
    let deep = format!(
        r#"{{"type":"ping","x":{}{}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    let unknown = "0".repeat(40);

    // (case, input, code) on a connection that has not joined.
    let fresh_cases: Vec<(&str, Input, &str)> = vec![
        ("not JSON", text("not json"), "invalid_json"),
        ("empty text", text(""), "invalid_json"),
        ("truncated JSON", text(r#"{"type":"join""#), "invalid_json"),
        ("too deeply nested", Input::Text(deep), "invalid_json"),
        ("an array", text("[1,2,3]"), "not_an_object"),
        ("a string", text("\"join\""), "not_an_object"),
        ("a number", text("42"), "not_an_object"),
        ("no type", Input::Json(json!({})), "missing_type"),
        (
            "type is a number",
            Input::Json(json!({"type": 5})),
            "invalid_field",
        ),
        (
            "unknown type",
            Input::Json(json!({"type": "bogus"})),
            "unknown_type",
        ),
        (
            "signal before join",
            Input::Json(json!({"type": "signal", "to": other_id, "signal": {}})),
            "not_joined",
        ),
        (
            "leave before join",
            Input::Json(json!({"type": "leave"})),
            "not_joined",
        ),
        (
            "join without peerId",
            Input::Json(json!({"type": "join"})),
            "missing_field",
        ),
        (
            "peerId is a number",
            Input::Json(json!({"type": "join", "peerId": 12})),
            "invalid_field",
        ),
        (
            "peerId not hex",
            Input::Json(json!({"type": "join", "peerId": "xyz"})),
            "invalid_peer_id",
        ),
        (
            "peerId upper-case hex",
            Input::Json(json!({"type": "join", "peerId": k3_id.to_uppercase()})),
            "invalid_peer_id",
        ),
        (
            "peerId 39 characters",
            Input::Json(json!({"type": "join", "peerId": &k3_id[..39]})),
            "invalid_peer_id",
        ),
        (
            "join without proof",
            Input::Json(json!({"type": "join", "peerId": k3_id})),
            "proof_required",
        ),
        (
            "publicKey without signature",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub})),
            "missing_field",
        ),
        (
            "publicKey not hex",
            Input::Json(
                json!({"type": "join", "peerId": k3_id, "publicKey": "zz", "signature": "00"}),
            ),
            "invalid_public_key",
        ),
        (
            "publicKey 31 bytes",
            Input::Json(
                json!({"type": "join", "peerId": k3_id, "publicKey": &k3_pub[..62],
                "signature": good_sig(&fresh, &k3)}),
            ),
            "invalid_public_key",
        ),
        (
            "signature not hex",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": "nothex"})),
            "invalid_signature",
        ),
        (
            "signature over another nonce",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": wrong_nonce_sig})),
            "invalid_signature",
        ),
        (
            "peerId of another key",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k4_pub,
                "signature": good_sig(&fresh, &k4)})),
            "id_mismatch",
        ),
        (
            "room with a space",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": good_sig(&fresh, &k3), "room": "bad room!"})),
            "invalid_room",
        ),
        (
            "room is a number",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": good_sig(&fresh, &k3), "room": 7})),
            "invalid_field",
        ),
        (
            "protocol version from the future",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": good_sig(&fresh, &k3), "protocolVersion": 99})),
            "unsupported_version",
        ),
        (
            "protocol version is a string",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": good_sig(&fresh, &k3), "protocolVersion": "1"})),
            "invalid_field",
        ),
        (
            "a proof without the server's host",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": good_sig(&fresh, &k3), "host": null})),
            "missing_field",
        ),
        (
            "a proof for another server",
            Input::Json(json!({"type": "join", "peerId": k3_id, "publicKey": k3_pub,
                "signature": good_sig(&fresh, &k3), "host": "elsewhere.example:8080"})),
            "wrong_host",
        ),
        (
            "a held id, even with its key",
            Input::Json(
                json!({"type": "join", "peerId": other_id, "publicKey": other_pub,
                "signature": good_sig(&fresh, &other_key)}),
            ),
            "id_taken",
        ),
        ("binary frame", Input::Binary, "binary_not_supported"),
    ];

    // (case, input, code) on a joined connection.
    let joined_cases: Vec<(&str, Input, &str)> = vec![
        (
            "join twice",
            Input::Json(me.join_message(&me_key, None)),
            "already_joined",
        ),
        (
            "signal without to",
            Input::Json(json!({"type": "signal", "signal": {}})),
            "missing_field",
        ),
        (
            "to is a number",
            Input::Json(json!({"type": "signal", "to": 5, "signal": {}})),
            "invalid_field",
        ),
        (
            "to is not hex",
            Input::Json(json!({"type": "signal", "to": "nothex", "signal": {}})),
            "invalid_peer_id",
        ),
        (
            "signal to oneself",
            Input::Json(json!({"type": "signal", "to": me_id, "signal": {}})),
            "self_signal",
        ),
        (
            "signal to an unknown peer",
            Input::Json(json!({"type": "signal", "to": unknown, "signal": {}})),
            "unknown_peer",
        ),
        (
            "signal to a peer of another room",
            Input::Json(json!({"type": "signal", "to": elsewhere_id, "signal": {}})),
            "unknown_peer",
        ),
        (
            "signal without signal",
            Input::Json(json!({"type": "signal", "to": other_id})),
            "missing_field",
        ),
        (
            "signal is a string",
            Input::Json(json!({"type": "signal", "to": other_id, "signal": "sdp"})),
            "invalid_field",
        ),
        (
            "batched signals not an array",
            Input::Json(json!({"type": "batched_signals", "to": other_id, "signals": {}})),
            "invalid_field",
        ),
        (
            "connection_rejected without reason",
            Input::Json(json!({"type": "connection_rejected", "to": other_id})),
            "missing_field",
        ),
        (
            "kademlia request without rpcMessage",
            Input::Json(json!({"type": "kademlia_rpc_request", "to": other_id})),
            "missing_field",
        ),
        (
            "leave naming another id",
            Input::Json(json!({"type": "leave", "peerId": other_id})),
            "not_your_id",
        ),
    ];

    let mut count = 0;
    for (conn, cases) in [(&mut fresh, fresh_cases), (&mut me, joined_cases)] {
        for (case, input, code) in cases {
            match input {
                Input::Text(t) => conn.send_text(t).await,
                Input::Json(mut v) => {
                    // Every proof names the server (protocol version 2).
                    if v.get("signature").is_some() && v.get("host").is_none() {
                        v["host"] = json!(conn.host);
                    }
                    conn.send(v).await
                }
                Input::Binary => {
                    conn.send_message(Message::Binary(vec![1, 2, 3].into()))
                        .await
                }
            }
            let error = conn.expect_error_in(case, code).await;
            if code == "unknown_peer" {
                assert!(
                    error["peerId"].is_string(),
                    "{case}: names the peer: {error}"
                );
                let named = error["peerId"].as_str().unwrap();
                assert!(error["message"].as_str().unwrap().contains(named), "{case}");
            }
            conn.assert_alive().await;
            count += 1;
        }
    }
    assert!(count >= 25, "{count} cases");

    // Nothing leaked to the bystanders, and they still serve each other.
    other.assert_alive().await;
    elsewhere.assert_alive().await;
    me.send(json!({"type": "signal", "to": other_id, "signal": {"type": "offer", "sdp": "x"}}))
        .await;
    let relayed = other.recv().await;
    assert_eq!(relayed["type"], "signal");
    assert_eq!(relayed["from"], me_id.as_str());
    // The connection that sent nothing but garbage can still join.
    let join = fresh.join_message(&k3, None);
    fresh.send(join).await;
    assert_eq!(fresh.recv().await["type"], "joined");

    let (status, metrics) = http_get(server.addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        metrics.contains("signaling_rejected_inputs_total{reason=\"invalid_json\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("signaling_rejected_inputs_total{reason=\"unknown_peer\"} 2"));
    server.stop().await;
}
