//! Incremental decoders for the two streaming wire formats: newline-delimited
//! JSON (Ollama) and server-sent events (OpenAI-compatible).
//!
//! Invariants: the decoders are pure byte-in/event-out state machines with no
//! I/O, so the same bytes give the same events however the network splits
//! them into chunks (a property test pins this). A line may end in `\n` or
//! `\r\n`; a multi-byte UTF-8 character split across chunks is reassembled
//! because lines are decoded only once complete. Bytes after the last newline
//! stay buffered until [`LineBuffer::finish`].

use serde::Deserialize;
use serde_json::Value;

/// Splits a byte stream into lines (without their terminators).
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// Appends `chunk` and calls `emit` with every line it completes.
    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(&str)) {
        // Fast path: nothing buffered, decode complete lines straight from the chunk.
        let mut rest = chunk;
        if !self.buf.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                None => {
                    self.buf.extend_from_slice(rest);
                    return;
                }
                Some(i) => {
                    self.buf.extend_from_slice(&rest[..i]);
                    let line = std::mem::take(&mut self.buf);
                    emit(trim_cr(&String::from_utf8_lossy(&line)));
                    rest = &rest[i + 1..];
                }
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            emit(trim_cr(&String::from_utf8_lossy(&rest[..i])));
            rest = &rest[i + 1..];
        }
        self.buf.extend_from_slice(rest);
    }

    /// Ends the stream: a trailing line without a newline is still a line.
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            emit(trim_cr(&String::from_utf8_lossy(&line)));
        }
    }
}

fn trim_cr(s: &str) -> &str {
    s.strip_suffix('\r').unwrap_or(s)
}

/// Newline-delimited JSON: one value per non-blank line.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    lines: LineBuffer,
}

impl NdjsonDecoder {
    /// Returns the JSON texts of the lines `chunk` completes (blank lines skipped).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        self.lines.push(chunk, |l| {
            if !l.trim().is_empty() {
                out.push(l.to_string());
            }
        });
        out
    }

    pub fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.lines.finish(|l| {
            if !l.trim().is_empty() {
                out.push(l.to_string());
            }
        });
        out
    }
}

/// One server-sent event: its `event:` name (if any) and its `data:` lines
/// joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Server-sent events per the WHATWG rules that matter for LLM APIs: `data:`
/// lines accumulate, a blank line dispatches, `:` lines are comments, a single
/// space after the colon is dropped, `id:`/`retry:` are ignored.
#[derive(Debug, Default)]
pub struct SseDecoder {
    lines: LineBuffer,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let Self { lines, event, data } = self;
        lines.push(chunk, |l| Self::line(event, data, l, &mut out));
        out
    }

    /// Ends the stream; an event not closed by a blank line is still dispatched.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let Self { lines, event, data } = self;
        lines.finish(|l| Self::line(event, data, l, &mut out));
        Self::line(event, data, "", &mut out);
        out
    }

    fn line(
        event: &mut Option<String>,
        data: &mut Option<String>,
        line: &str,
        out: &mut Vec<SseEvent>,
    ) {
        if line.is_empty() {
            if let Some(d) = data.take() {
                out.push(SseEvent {
                    event: event.take(),
                    data: d,
                });
            }
            *event = None;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => *data = Some(value.to_string()),
            },
            "event" => *event = Some(value.to_string()),
            _ => {}
        }
    }
}

/// `T` from a JSON object only: derived structs also accept arrays
/// (fields by position), which the general path treats as no object at all.
pub(crate) struct Obj<T>(pub(crate) T);

/// The string field `key` of a JSON object.
pub(crate) fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

/// For `#[serde(default, deserialize_with = "present")]`: whether a key is
/// there at all, whatever its value (even `null`).
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// JSON generators for the property tests of the decoders' typed paths.
#[cfg(test)]
pub(crate) mod json_strategies {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    pub(crate) fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..300).prop_map(Value::from),
            Just(json!(2.5)),
            prop_oneof![
                Just(""),
                Just("Par"),
                Just("is\"\n\u{e9}"),
                Just("stop"),
                Just("gpt-x")
            ]
            .prop_map(Value::from),
        ]
    }

    pub(crate) fn any_json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![Just("content"), Just("index"), Just("x")].prop_map(String::from),
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `good`, or now and then anything at all in its place.
    pub(crate) fn or_any(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
        prop_oneof![4 => good, 1 => any_json()].boxed()
    }

    /// A chat message or stream delta: role, content, tool calls made of `call`.
    pub(crate) fn message_like(call: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
        let calls = prop::collection::vec(call, 0..3).prop_map(Value::from);
        optional_fields(vec![
            ("role", leaf().boxed()),
            ("content", or_any(leaf())),
            ("tool_calls", or_any(calls)),
        ])
    }

    /// A tool call's `function`: name and arguments.
    pub(crate) fn function() -> BoxedStrategy<Value> {
        or_any(optional_fields(vec![
            ("name", or_any(leaf())),
            ("arguments", any_json().boxed()),
        ]))
    }

    /// `v`, and in one case of ten an `error` key (often `null`) added to it.
    pub(crate) fn with_rare_error(v: Value) -> BoxedStrategy<Value> {
        let error = prop_oneof![Just(Value::Null), any_json()];
        prop_oneof![
            9 => Just(v.clone()),
            1 => error.prop_map(move |e| {
                let mut v = v.clone();
                if let Value::Object(m) = &mut v {
                    m.insert("error".into(), e);
                }
                v
            }),
        ]
        .boxed()
    }

    pub(crate) fn optional_fields(
        fields: Vec<(&'static str, BoxedStrategy<Value>)>,
    ) -> BoxedStrategy<Value> {
        let parts: Vec<_> = fields
            .into_iter()
            .map(|(k, v)| proptest::option::of(v).prop_map(move |v| (k, v)))
            .collect();
        parts
            .prop_map(|kvs| {
                let mut m = Map::new();
                for (k, v) in kvs {
                    if let Some(v) = v {
                        m.insert(k.to_string(), v);
                    }
                }
                Value::Object(m)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_basic() {
        let mut d = SseDecoder::default();
        let ev = d.push(
            b": keepalive\n\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: l1\ndata:l2\n\ndata: [DONE]",
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[1].event.as_deref(), Some("x"));
        assert_eq!(ev[1].data, "l1\nl2");
        let rest = d.finish();
        assert_eq!(
            rest,
            vec![SseEvent {
                event: None,
                data: "[DONE]".into()
            }]
        );
    }

    #[test]
    fn ndjson_split_utf8() {
        let text = "{\"c\":\"é\"}\n\n{\"c\":2}".as_bytes();
        let mut d = NdjsonDecoder::default();
        let mut got = d.push(&text[..7]);
        got.extend(d.push(&text[7..]));
        got.extend(d.finish());
        assert_eq!(
            got,
            vec!["{\"c\":\"é\"}".to_string(), "{\"c\":2}".to_string()]
        );
    }
}
