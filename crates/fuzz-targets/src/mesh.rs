//! mesh-core's framing: the frame codec (with the composed cores' messages and routed payloads it
//! carries) and chunk reassembly.

use arbitrary::{Arbitrary, Unstructured};
use core::time::Duration;
use mesh_core::frame::{self, ChunkResult, Frame, Payload, Reassembly};
use mesh_core::{Config, Instant};

/// A data-channel message as a node decodes it: never a panic; what decodes encodes to bytes that
/// decode to the same frame; the cores' messages and routed payloads inside decode without panic
/// too, and round-trip.
pub fn mesh_frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let bytes = frame.encode();
    assert_eq!(Frame::decode(&bytes).as_ref(), Ok(&frame));
    match &frame {
        Frame::Kad(inner) => crate::kademlia_wire(inner),
        Frame::Gossip(inner) => crate::gossip_wire(inner),
        Frame::Routed(r) => {
            // As the node reads a routed body.
            if let Ok(payload) = postcard::from_bytes::<Payload>(&r.body) {
                let body = postcard::to_allocvec(&payload).expect("a payload serializes");
                assert_eq!(postcard::from_bytes::<Payload>(&body).ok(), Some(payload));
            }
        }
        _ => {}
    }
}

/// One input to a link's reassembly buffers.
#[derive(Debug, Arbitrary)]
enum Step {
    /// A chunk as a peer may send it, checked by the decoder first.
    Chunk {
        msg: u8,
        index: u16,
        count: u16,
        len: u16,
    },
    /// A whole frame of `len` bytes split as a sender splits it, its chunks delivered in the order
    /// given (indexes modulo the count; repeats and gaps allowed).
    Split { msg: u8, len: u32, order: Vec<u16> },
    /// Time passes, then expired messages are dropped.
    Wait { ms: u32 },
}

/// A link's chunk reassembly fed chunks: never a panic; the buffers stay within their bounds in
/// count and bytes; a complete message is at most `max_message_bytes`; and a split frame whose chunks
/// all arrive once, in any order, comes back whole (when the buffers were not full of others).
pub fn mesh_reassembly(data: &[u8]) {
    // Small limits, so that the bounds are reached in a few steps.
    let config = Config {
        max_frame_bytes: 1024,
        max_message_bytes: 16 * 1024,
        max_reassembly_bytes: 24 * 1024,
        max_reassembly_messages: 3,
        ..Config::default()
    };
    let mut u = Unstructured::new(data);
    let mut r = Reassembly::default();
    let mut now = Instant::from_millis(1_000);
    for _ in 0..64 {
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        match step {
            Step::Chunk {
                msg,
                index,
                count,
                len,
            } => {
                let bytes = Frame::Chunk(frame::Chunk {
                    msg: u32::from(msg),
                    index,
                    count,
                    data: vec![msg; usize::from(len)],
                })
                .encode();
                if let Ok(Frame::Chunk(c)) = Frame::decode(&bytes)
                    && let ChunkResult::Complete(whole) = r.push(now, c, &config)
                {
                    assert!(whole.len() <= config.max_message_bytes);
                }
            }
            Step::Split { msg, len, order } => {
                let len =
                    usize::try_from(len).unwrap_or(usize::MAX) % (config.max_message_bytes + 2048);
                let whole = Frame::Gossip((0..len).map(|i| i as u8).collect()).encode();
                let parts = frame::split(whole.clone(), config.max_frame_bytes, u32::from(msg));
                assert!(parts.iter().all(|p| p.len() <= config.max_frame_bytes));
                let n = parts.len();
                let mut delivered = vec![false; n];
                let mut got = None;
                let mut fresh = r.is_empty();
                for i in order.iter().map(|i| usize::from(*i) % n.max(1)) {
                    fresh &= !delivered[i];
                    delivered[i] = true;
                    match Frame::decode(&parts[i]) {
                        Ok(Frame::Chunk(c)) => {
                            if let ChunkResult::Complete(b) = r.push(now, c, &config) {
                                got = Some(b);
                            }
                        }
                        Ok(_) => got = Some(parts[i].clone()),
                        Err(e) => panic!("a split part does not decode: {e}"),
                    }
                }
                // Every part once, into empty buffers, a frame within the limit: it comes back.
                let all_once = fresh && delivered.iter().all(|d| *d) && order.len() == n;
                if all_once && whole.len() <= config.max_message_bytes {
                    assert_eq!(got, Some(whole), "a split frame did not come back whole");
                }
            }
            Step::Wait { ms } => {
                now += Duration::from_millis(u64::from(ms % 120_000));
                r.expire(now, &config);
                assert!(
                    r.next_expiry(&config).is_none_or(|t| t > now),
                    "an expired message stayed"
                );
            }
        }
        assert!(r.len() <= config.max_reassembly_messages);
        assert!(r.bytes() <= config.max_reassembly_bytes);
    }
}
