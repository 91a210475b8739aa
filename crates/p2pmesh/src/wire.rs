//! How mesh frames ride in the signaling protocol's `signal` messages (docs/protocol.md): the
//! `signal` object is `{"p2pmesh": "<standard base64 of the frame>"}`, so a JavaScript client that
//! receives one sees an unknown signal and ignores it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The key of the `signal` object that carries a mesh frame.
pub const SIGNAL_KEY: &str = "p2pmesh";

/// The `signal` object carrying `frame`.
pub fn encode_frame(frame: &[u8]) -> Value {
    json!({ SIGNAL_KEY: STANDARD.encode(frame) })
}

/// The mesh frame in a `signal` object, if it carries one.
pub fn decode_frame(signal: &Value) -> Option<Vec<u8>> {
    let text = signal.get(SIGNAL_KEY)?.as_str()?;
    STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_others_are_not_frames() {
        let frame = [0u8, 1, 2, 250, 255];
        let signal = encode_frame(&frame);
        assert_eq!(signal, json!({"p2pmesh": "AAEC+v8="}));
        assert_eq!(decode_frame(&signal), Some(frame.to_vec()));
        assert_eq!(decode_frame(&json!({"type": "offer", "sdp": "v=0"})), None);
        assert_eq!(decode_frame(&json!({"p2pmesh": "not base64!"})), None);
        assert_eq!(decode_frame(&json!({"p2pmesh": 3})), None);
    }
}
