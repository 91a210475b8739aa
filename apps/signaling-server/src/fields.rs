//! A message's top-level fields, parsed without building a tree: each value stays the raw
//! JSON text it was (validated), so a relayed message is re-emitted with `from` replaced at
//! the cost of one validating scan and one copy.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Most top-level fields in one message.
pub(crate) const MAX_FIELDS: usize = 64;

/// Deepest nesting of arrays and objects accepted (values are relayed unparsed, so the
/// recipients' parsers are protected by this bound).
pub(crate) const MAX_DEPTH: usize = 32;

/// Whether `text` nests arrays and objects deeper than [`MAX_DEPTH`] (strings skipped).
fn too_deep(text: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Why a text is not a message object.
#[derive(Debug)]
pub(crate) enum ParseError {
    InvalidJson(String),
    NotAnObject,
    TooManyFields,
}

/// The top-level fields of a JSON object, in order.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// The JSON type of a raw value, from its first character (it is valid JSON).
pub(crate) fn kind(raw: &RawValue) -> char {
    raw.get().chars().next().unwrap_or(' ')
}

/// A raw JSON string's value (borrowed when it has no escapes); `None` if not a string.
pub(crate) fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    if kind(raw) != '"' {
        return None;
    }
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

impl<'a> Fields<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Self, ParseError> {
        if too_deep(text) {
            return Err(ParseError::InvalidJson(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        match serde_json::from_str::<Fields<'a>>(text) {
            Ok(fields) => Ok(fields),
            Err(err) => match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) if kind(raw) != '{' => Err(ParseError::NotAnObject),
                Ok(_) if err.to_string().contains("too many fields") => {
                    Err(ParseError::TooManyFields)
                }
                _ => Err(ParseError::InvalidJson(err.to_string())),
            },
        }
    }

    /// The value of `name` (the last one if repeated); JSON `null` counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .filter(|v| v.get() != "null")
    }

    /// The object again, without `from` and repeated keys, with `"from": from` appended.
    pub(crate) fn with_from(&self, from: &str) -> String {
        let len: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(len + from.len() + 16);
        out.push('{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if key == "from" || self.entries[i + 1..].iter().any(|(k, _)| k == key) {
                continue;
            }
            push_json_string(&mut out, key);
            out.push(':');
            out.push_str(value.get());
            out.push(',');
        }
        out.push_str("\"from\":");
        push_json_string(&mut out, from);
        out.push('}');
        out
    }
}

fn push_json_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4).min(8));
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if entries.len() == MAX_FIELDS {
                        return Err(serde::de::Error::custom("too many fields"));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Fields { entries })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_replaced_and_everything_else_kept() {
        let text = r#"{"type":"signal","from":"spoof","to":"b","signal":{"sdp":"a\"b"},"to":"c"}"#;
        let fields = Fields::parse(text).expect("parse");
        assert_eq!(fields.get("to").and_then(as_str).as_deref(), Some("c"));
        let out: serde_json::Value =
            serde_json::from_str(&fields.with_from("me")).expect("valid JSON");
        assert_eq!(
            out,
            serde_json::json!({"type": "signal", "to": "c", "signal": {"sdp": "a\"b"}, "from": "me"})
        );
    }

    #[test]
    fn classification() {
        assert!(matches!(Fields::parse("[1]"), Err(ParseError::NotAnObject)));
        assert!(matches!(
            Fields::parse("{"),
            Err(ParseError::InvalidJson(_))
        ));
        let many = format!(
            "{{{}}}",
            (0..=MAX_FIELDS)
                .map(|i| format!("\"k{i}\":1"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(matches!(
            Fields::parse(&many),
            Err(ParseError::TooManyFields)
        ));
        let escaped = Fields::parse(r#"{"t\u0079pe":"x"}"#).expect("parse");
        assert!(escaped.get("type").is_some());
        assert!(
            Fields::parse(r#"{"a":null}"#)
                .expect("parse")
                .get("a")
                .is_none()
        );
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(matches!(
            Fields::parse(&deep),
            Err(ParseError::InvalidJson(_))
        ));
        let shallow = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(Fields::parse(&shallow).is_ok());
        assert!(Fields::parse(r#"{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"]]"}"#).is_ok());
    }
}
