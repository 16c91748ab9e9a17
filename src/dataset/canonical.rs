//! Canonical JSON text and the content hash encoding (see the module doc of
//! [`crate::dataset`] for the byte layout).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::rows::Column;
use crate::spec::dataset::ColumnType;

/// The canonical JSON text of a value: no whitespace, object keys sorted by
/// UTF-8 bytes, independent of serde_json's `preserve_order` feature.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        // Scalars: serde_json's own text (escapes, shortest float form).
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One typed value as the hash sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Canonical JSON text.
    Json(&'a str),
}

const MAGIC: &[u8] = b"promptgate.dataset.v1\0";

/// Streams rows into the content hash.
pub(crate) struct ContentHasher {
    sha: Sha256,
    rows: u64,
}

impl ContentHasher {
    pub(crate) fn new(columns: &[Column]) -> ContentHasher {
        let mut sha = Sha256::new();
        sha.update(MAGIC);
        sha.update((columns.len() as u64).to_le_bytes());
        for c in columns {
            put_str(&mut sha, &c.name);
            sha.update([type_byte(c.kind)]);
        }
        ContentHasher { sha, rows: 0 }
    }

    /// Adds one row; `cells` in the column order given to `new`.
    pub(crate) fn row<'a>(&mut self, cells: impl IntoIterator<Item = Cell<'a>>) {
        for cell in cells {
            match cell {
                Cell::Null => self.sha.update([0u8]),
                Cell::Str(s) => {
                    self.sha.update([1u8]);
                    put_str(&mut self.sha, s);
                }
                Cell::Int(i) => {
                    self.sha.update([2u8]);
                    self.sha.update(i.to_le_bytes());
                }
                Cell::Float(f) => {
                    self.sha.update([3u8]);
                    self.sha.update(f.to_bits().to_le_bytes());
                }
                Cell::Bool(b) => {
                    self.sha.update([4u8, u8::from(b)]);
                }
                Cell::Json(s) => {
                    self.sha.update([5u8]);
                    put_str(&mut self.sha, s);
                }
            }
        }
        self.rows += 1;
    }

    pub(crate) fn finish(mut self) -> String {
        self.sha.update(self.rows.to_le_bytes());
        hex::encode(self.sha.finalize())
    }
}

fn put_str(sha: &mut Sha256, s: &str) {
    sha.update((s.len() as u64).to_le_bytes());
    sha.update(s.as_bytes());
}

fn type_byte(kind: ColumnType) -> u8 {
    match kind {
        ColumnType::String => b's',
        ColumnType::Integer => b'i',
        ColumnType::Float => b'f',
        ColumnType::Boolean => b'b',
        ColumnType::Json => b'j',
    }
}

/// sha256 of bytes, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let a: Value =
            serde_json::from_str(r#"{ "b": [1, {"y": 2, "x": "é\n"}], "a": 1.5 }"#).expect("json");
        assert_eq!(canonical_json(&a), r#"{"a":1.5,"b":[1,{"x":"é\n","y":2}]}"#);
        assert_eq!(canonical_json(&json!("q\"")), r#""q\"""#);
    }
}
