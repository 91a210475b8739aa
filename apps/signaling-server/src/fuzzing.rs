//! What the fuzz targets (crates/fuzz-targets) reach of the server without a socket: a client's
//! message parsed the way a connection parses it. Not an API: hidden from the docs, and its
//! functions panic when an invariant breaks, which is what a fuzzer looks for.

use serde_json::Value;

use crate::fields::{self, Fields, MAX_FIELDS};

/// What another server of a cluster publishes through Redis, decoded as a server decodes it
/// (delivery batches, events, member entries; see the cluster module).
///
/// # Panics
/// If a decoded batch or event does not survive its own encoding.
pub fn cluster_message(data: &[u8]) {
    crate::cluster::fuzzing::cluster_message(data);
}

/// Valid encodings of each kind of cluster message, for the fuzzer's seed corpus.
pub fn cluster_seeds() -> Vec<Vec<u8>> {
    crate::cluster::fuzzing::cluster_seeds()
}

/// Parses `text` as a connection parses a client's message, reads every field as the handlers do,
/// and checks what relaying relies on: the message re-emitted with `from` replaced
/// (`Fields::with_from`) is itself an accepted message, equal to the original with `from` set.
///
/// # Panics
/// If the parse accepts what is not a JSON object of at most `MAX_FIELDS` fields, or the re-emitted
/// message is not the original with `from` replaced.
pub fn client_message(text: &str) {
    let Ok(map) = Fields::parse(text) else {
        return;
    };
    let original: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        // JSON the server's validating scan accepts and `Value` cannot hold: a number beyond f64
        // (`5e55555`) or a lone surrogate escape (`"\udddd"`, which JavaScript's JSON.parse takes).
        // The server relays it verbatim; serde_json clients (transport-ws) ignore a message they
        // cannot parse, so only the sender's own message is lost (fuzz/regressions/
        // signaling_client_message/number-out-of-range, lone-surrogate, surrogate-at-end).
        Err(e) if unrepresentable(&e) => return,
        Err(e) => panic!("an accepted message is not JSON: {e}: {text}"),
    };
    let Value::Object(mut expected) = original else {
        panic!("an accepted message is not an object: {text}");
    };
    assert!(expected.len() <= MAX_FIELDS, "more than MAX_FIELDS fields");
    for (key, value) in &expected {
        // What the handlers read: a field's JSON type, and its string value.
        match map.get(key) {
            Some(raw) => {
                let text = fields::as_str(raw);
                assert_eq!(text.is_some(), value.is_string(), "field {key:?} misread");
                assert_eq!(fields::kind(raw) == '"', value.is_string());
            }
            None => assert!(value.is_null(), "field {key:?} lost"),
        }
    }
    let relayed = map.with_from("relay\"er\u{7f}");
    let again = Fields::parse(&relayed).expect("a relayed message parses again");
    assert_eq!(
        again.get("from").and_then(fields::as_str).as_deref(),
        Some("relay\"er\u{7f}")
    );
    expected.insert("from".into(), Value::String("relay\"er\u{7f}".into()));
    let relayed: Value = serde_json::from_str(&relayed).expect("a relayed message is JSON");
    assert_eq!(
        relayed,
        Value::Object(expected),
        "relaying changed the message"
    );
}

fn unrepresentable(e: &serde_json::Error) -> bool {
    let text = e.to_string();
    // serde_json's messages for these: "number out of range", "lone leading surrogate in hex
    // escape", "unexpected end of hex escape" (a leading surrogate with no trailing one).
    text.starts_with("number out of range")
        || text.contains("surrogate")
        || text.contains("hex escape")
}
