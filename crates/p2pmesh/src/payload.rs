//! The payload envelope: how an application says whether its bytes are text or binary, so that "a
//! string arrives as a string" between the JavaScript API (whose `send` takes a string or a
//! `Uint8Array`) and native applications.
//!
//! The mesh carries bytes; the envelope is one byte in front of them:
//!
//! | first byte | what follows | [`decode`] gives |
//! |---|---|---|
//! | `0x00` | UTF-8 text | [`Payload::Text`] (invalid UTF-8: [`Payload::Binary`] of the whole payload) |
//! | `0x01` | binary | [`Payload::Binary`] of the rest |
//! | anything else, or nothing | an application that does not use the envelope | [`Payload::Binary`] of the whole payload |
//!
//! ```
//! use p2pmesh::payload::{self, Payload};
//!
//! let bytes = payload::encode_text("hello");
//! assert_eq!(payload::decode(&bytes), Payload::Text("hello"));
//! assert_eq!(payload::decode(&payload::encode_binary(&[7, 8])), Payload::Binary(&[7, 8]));
//! // Bytes sent without the envelope arrive unchanged.
//! assert_eq!(payload::decode(b"{\"raw\":1}"), Payload::Binary(b"{\"raw\":1}"));
//! ```

/// The first byte of a text payload.
pub const TEXT: u8 = 0x00;

/// The first byte of a binary payload.
pub const BINARY: u8 = 0x01;

/// A received payload, as [`decode`] reads it (borrowing the received bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Text (sent with [`encode_text`]).
    Text(&'a str),
    /// Bytes (sent with [`encode_binary`], or by an application that does not use the envelope).
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    /// The text, if it is text.
    pub fn as_text(&self) -> Option<&'a str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Binary(_) => None,
        }
    }

    /// The bytes: the text's UTF-8, or the binary.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }
}

/// `text` in the envelope: `0x00` then its UTF-8.
pub fn encode_text(text: &str) -> Vec<u8> {
    enveloped(TEXT, text.as_bytes())
}

/// `bytes` in the envelope: `0x01` then the bytes.
pub fn encode_binary(bytes: &[u8]) -> Vec<u8> {
    enveloped(BINARY, bytes)
}

fn enveloped(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// What `bytes` carry (see the [module](self)'s table). Never fails: what is not in the envelope
/// is binary.
pub fn decode(bytes: &[u8]) -> Payload<'_> {
    match bytes.split_first() {
        Some((&TEXT, body)) => match std::str::from_utf8(body) {
            Ok(text) => Payload::Text(text),
            Err(_) => Payload::Binary(bytes),
        },
        Some((&BINARY, body)) => Payload::Binary(body),
        _ => Payload::Binary(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_first_byte_reads_as_the_table_says() {
        assert_eq!(encode_text("hé"), [0x00, b'h', 0xc3, 0xa9]);
        assert_eq!(encode_binary(&[0xff]), [0x01, 0xff]);
        assert_eq!(decode(&[0x00]), Payload::Text(""));
        assert_eq!(decode(&[0x01]), Payload::Binary(&[]));
        assert_eq!(decode(&[]), Payload::Binary(&[]));
        // Invalid UTF-8 after the text byte: the whole payload, as binary.
        assert_eq!(
            decode(&[0x00, 0xff, 0xfe]),
            Payload::Binary(&[0x00, 0xff, 0xfe])
        );
        // A native application's JSON (first byte `{`) is not enveloped.
        assert_eq!(decode(b"{}"), Payload::Binary(b"{}"));
        assert_eq!(decode(&[0x02, 1]), Payload::Binary(&[0x02, 1]));
        assert_eq!(decode(&encode_text("a")).as_text(), Some("a"));
        assert_eq!(decode(&encode_text("a")).as_bytes(), b"a");
        assert_eq!(decode(&encode_binary(b"a")).as_text(), None);
    }

    proptest! {
        #[test]
        fn text_and_binary_round_trip(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (text_sent, bytes_sent) = (encode_text(&text), encode_binary(&bytes));
            prop_assert_eq!(decode(&text_sent), Payload::Text(&text));
            prop_assert_eq!(decode(&bytes_sent), Payload::Binary(&bytes));
        }

        #[test]
        fn unenveloped_bytes_arrive_whole(first in 2u8.., rest in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![first];
            bytes.extend(rest);
            prop_assert_eq!(decode(&bytes), Payload::Binary(&bytes));
        }
    }
}
