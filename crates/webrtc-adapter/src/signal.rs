//! The signaling payloads a link exchanges, as JSON in simple-peer's shape.
//!
//! `{"type":"offer"|"answer","sdp":".."}` for descriptions and
//! `{"type":"candidate","candidate":{"candidate":"..","sdpMid":"..","sdpMLineIndex":0}}`
//! for trickled ICE candidates: the shape browsers' `RTCSessionDescription.toJSON()` and
//! `RTCIceCandidate.toJSON()` give, and the one simple-peer (the JavaScript library's WebRTC
//! wrapper) sends.

//!
//! The types here are the adapter's own, so that the native and the browser implementation
//! read and write the same JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Whether a description is an offer or an answer (`pranswer` and `rollback` are not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    /// The initiator's description.
    Offer,
    /// The responder's description.
    Answer,
}

/// An SDP offer or answer: `{"type":"offer"|"answer","sdp":".."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Offer or answer.
    #[serde(rename = "type")]
    pub sdp_type: SdpType,
    /// The SDP text.
    pub sdp: String,
}

/// A trickled ICE candidate, in the shape of the browsers' `RTCIceCandidateInit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The candidate attribute (`candidate:..`, RFC 8839).
    pub candidate: String,
    /// The media section's id.
    pub sdp_mid: Option<String>,
    /// The media section's index.
    #[serde(rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    /// The ICE username fragment the candidate belongs to.
    pub username_fragment: Option<String>,
}

/// One signaling payload.
#[derive(Debug, Clone)]
pub enum Signal {
    /// An SDP offer or answer.
    Description(Description),
    /// A trickled ICE candidate.
    Candidate(Candidate),
    /// The end of the peer's candidates (an empty candidate string), or a payload this side
    /// does not act on (simple-peer's `renegotiate`, `transceiverRequest`).
    Ignored,
}

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed signal: {0}")]
pub struct MalformedSignal(String);

impl Signal {
    /// Reads a payload received from the peer. Input is untrusted: anything malformed is an
    /// error, never a panic.
    pub fn from_json(value: Value) -> Result<Signal, MalformedSignal> {
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "offer" | "answer" => {
                let desc: Description = serde_json::from_value(value)
                    .map_err(|err| MalformedSignal(err.to_string()))?;
                Ok(Signal::Description(desc))
            }
            "pranswer" => Err(MalformedSignal("pranswer is not supported".into())),
            "candidate" | "" if value.get("candidate").is_some() => {
                let cand = value
                    .get("candidate")
                    .cloned()
                    .ok_or_else(|| MalformedSignal("no candidate".into()))?;
                let init: Candidate =
                    serde_json::from_value(cand).map_err(|err| MalformedSignal(err.to_string()))?;
                if init.candidate.is_empty() {
                    Ok(Signal::Ignored)
                } else {
                    Ok(Signal::Candidate(init))
                }
            }
            "renegotiate" | "transceiverRequest" => Ok(Signal::Ignored),
            _ => Err(MalformedSignal(format!("unknown signal type {kind:?}"))),
        }
    }

    /// The payload as JSON, to send to the peer.
    pub fn to_json(&self) -> Value {
        match self {
            Signal::Description(desc) => serde_json::to_value(desc).unwrap_or(Value::Null),
            Signal::Candidate(init) => json!({
                "type": "candidate",
                "candidate": serde_json::to_value(init).unwrap_or(Value::Null),
            }),
            Signal::Ignored => Value::Null,
        }
    }
}

/// The first `a=fingerprint:` value of an SDP, e.g. `sha-256 AB:CD:..`: the certificate
/// fingerprint DTLS checks the peer's certificate against.
pub fn sdp_fingerprint(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix("a=fingerprint:"))
        .map(|value| value.trim().to_owned())
}

/// The raw digest bytes of a fingerprint written `sha-256 AB:CD:..` (the form mesh-core's
/// handshake signs over, if it wants bytes); `None` if it is not that form.
pub fn fingerprint_bytes(fingerprint: &str) -> Option<Vec<u8>> {
    let (_, hex) = fingerprint.split_once(' ')?;
    hex.split(':')
        .map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_round_trips() {
        let init = Candidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            ..Default::default()
        };
        let json = Signal::Candidate(init).to_json();
        assert_eq!(json["type"], "candidate");
        assert_eq!(json["candidate"]["sdpMLineIndex"], 0);
        match Signal::from_json(json) {
            Ok(Signal::Candidate(back)) => assert!(back.candidate.ends_with("typ host")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_description_round_trips() {
        let json = json!({"type": "offer", "sdp": "v=0\r\n"});
        match Signal::from_json(json.clone()) {
            Ok(signal @ Signal::Description(_)) => assert_eq!(signal.to_json(), json),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for junk in [
            json!(null),
            json!(42),
            json!({"type": "offer"}),
            json!({"type": "candidate", "candidate": 7}),
            json!({"type": "bogus"}),
        ] {
            assert!(Signal::from_json(junk).is_err());
        }
        let end = json!({"type": "candidate", "candidate": {"candidate": ""}});
        assert!(matches!(Signal::from_json(end), Ok(Signal::Ignored)));
    }

    /// The native side's own types read what this module writes, and the other way round, so
    /// a native and a browser peer understand each other's signals.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_webrtc_crates_types_read_and_write_the_same_json() {
        use webrtc::peer_connection::{RTCIceCandidateInit, RTCSdpType, RTCSessionDescription};

        let desc = Signal::Description(Description {
            sdp_type: SdpType::Answer,
            sdp: "v=0\r\n".into(),
        });
        let theirs: RTCSessionDescription =
            serde_json::from_value(desc.to_json()).expect("webrtc reads our description");
        assert_eq!(theirs.sdp_type, RTCSdpType::Answer);
        assert_eq!(theirs.sdp, "v=0\r\n");

        let init = RTCIceCandidateInit {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: Some("abcd".into()),
            ..Default::default()
        };
        let json =
            json!({"type": "candidate", "candidate": serde_json::to_value(&init).expect("json")});
        match Signal::from_json(json) {
            Ok(Signal::Candidate(ours)) => {
                assert_eq!(ours.candidate, init.candidate);
                assert_eq!(ours.sdp_mid.as_deref(), Some("0"));
                assert_eq!(ours.sdp_mline_index, Some(0));
                assert_eq!(ours.username_fragment.as_deref(), Some("abcd"));
                let back: RTCIceCandidateInit =
                    serde_json::from_value(Signal::Candidate(ours).to_json()["candidate"].clone())
                        .expect("webrtc reads our candidate");
                assert_eq!(back, init);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fingerprints_are_read_from_sdp() {
        let sdp = "v=0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 AB:CD:01\r\nm=application\r\n";
        let fp = sdp_fingerprint(sdp);
        assert_eq!(fp.as_deref(), Some("sha-256 AB:CD:01"));
        assert_eq!(
            fingerprint_bytes("sha-256 AB:CD:01"),
            Some(vec![0xab, 0xcd, 0x01])
        );
        assert_eq!(fingerprint_bytes("nonsense"), None);
        assert_eq!(sdp_fingerprint("v=0\r\n"), None);
    }
}
