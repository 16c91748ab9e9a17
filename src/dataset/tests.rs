//! Property tests: validation, the canonical hash, and the Parquet round trip.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::Row;
use super::parquet_io::{self, SnapshotMeta};
use super::rows::tests::spec;
use super::rows::{Schema, parse_rows};
use super::store::content_hash;
use crate::spec::dataset::ColumnType;

fn schema() -> Schema {
    Schema::from_spec(&spec(
        &[
            ("id", ColumnType::String, true),
            ("n", ColumnType::Integer, false),
            ("f", ColumnType::Float, false),
            ("b", ColumnType::Boolean, true),
            ("j", ColumnType::Json, false),
            ("s", ColumnType::String, false),
        ],
        "id",
    ))
    .expect("schema")
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        Just(0.0),
        Just(-0.0),
        (-1000i32..1000).prop_map(f64::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,8}",
        ".{0,6}",
        Just("quote\"back\\slash\nnl".to_string())
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        finite().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Rows as written in `rows.jsonl` (before normalisation): unique keys, and
/// optional columns sometimes absent (None).
fn raw_rows() -> impl Strategy<Value = Vec<Row>> {
    let row = (
        prop::option::of(any::<i64>()),
        prop::option::of(finite()),
        any::<bool>(),
        prop::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
        prop::option::of(text()),
    );
    prop::collection::btree_map("[a-z0-9]{1,6}", row, 0..12).prop_map(|m| {
        m.into_iter()
            .map(|(id, (n, f, b, j, s))| {
                let mut r = Map::new();
                r.insert("id".into(), Value::String(id));
                if let Some(n) = n {
                    r.insert("n".into(), n.into());
                }
                if let Some(f) = f {
                    r.insert("f".into(), f.into());
                }
                r.insert("b".into(), b.into());
                if let Some(j) = j {
                    r.insert("j".into(), j);
                }
                if let Some(s) = s {
                    r.insert("s".into(), s.into());
                }
                r
            })
            .collect()
    })
}

/// JSONL text of `rows`: keys in the given order, `ws` around every token,
/// optional absent columns sometimes written as explicit nulls.
fn to_jsonl(rows: &[Row], reverse_keys: bool, ws: &str, explicit_nulls: bool) -> String {
    let mut out = String::new();
    for r in rows {
        let mut entries: Vec<(String, Value)> =
            r.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if explicit_nulls {
            for c in ["n", "f", "j", "s"] {
                if !r.contains_key(c) {
                    entries.push((c.to_string(), Value::Null));
                }
            }
        }
        if reverse_keys {
            entries.reverse();
        }
        let fields: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{ws}{}{ws}:{ws}{v}{ws}", Value::String(k.clone())))
            .collect();
        out.push_str(&format!("{ws}{{{}}}{ws}\n", fields.join(",")));
    }
    out
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("\t"), Just("  ")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hash_ignores_key_order_whitespace_row_order_and_explicit_nulls(
        rows in raw_rows(),
        ws in ws(),
        reverse_rows in any::<bool>(),
        nulls in any::<bool>(),
    ) {
        let s = schema();
        let base = parse_rows(&s, &to_jsonl(&rows, false, "", false)).expect("valid");
        let mut other_rows = rows.clone();
        if reverse_rows {
            other_rows.reverse();
        }
        let other = parse_rows(&s, &to_jsonl(&other_rows, true, ws, nulls)).expect("valid");
        prop_assert_eq!(&base, &other);
        prop_assert_eq!(content_hash(&s, &base), content_hash(&s, &other));
    }

    #[test]
    fn any_value_change_changes_the_hash(
        rows in raw_rows().prop_filter("non-empty", |r| !r.is_empty()),
        pick in any::<prop::sample::Index>(),
        col in 0usize..6,
        new_value in prop_oneof![
            text().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            finite().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            json_value(),
        ],
    ) {
        let s = schema();
        let rows = parse_rows(&s, &to_jsonl(&rows, false, "", false)).expect("valid");
        let column = &s.columns[col];
        // Only values the column accepts (normalised as validation would).
        let new_value = match (column.kind, &new_value) {
            (_, Value::Null) if !column.required => Value::Null,
            (ColumnType::String, Value::String(_))
            | (ColumnType::Boolean, Value::Bool(_))
            | (ColumnType::Json, _) => new_value.clone(),
            (ColumnType::Integer, Value::Number(n)) if n.is_i64() => new_value.clone(),
            (ColumnType::Float, Value::Number(n)) if n.is_f64() => new_value.clone(),
            _ => return Ok(()),
        };
        let i = pick.index(rows.len());
        let old_value = rows[i].get(&column.name).cloned().unwrap_or(Value::Null);
        let same = match (&old_value, &new_value) {
            (Value::Number(a), Value::Number(b)) if column.kind == ColumnType::Float => {
                a.as_f64().map(f64::to_bits) == b.as_f64().map(f64::to_bits)
            }
            (a, b) => super::canonical_json(a) == super::canonical_json(b),
        };
        prop_assume!(!same);
        let mut changed = rows.clone();
        changed[i].insert(column.name.clone(), new_value);
        prop_assert_ne!(content_hash(&s, &rows), content_hash(&s, &changed));
    }

    #[test]
    fn parquet_round_trip_is_identity(rows in raw_rows()) {
        let s = schema();
        let rows = parse_rows(&s, &to_jsonl(&rows, false, " ", false)).expect("valid");
        let hash = content_hash(&s, &rows);
        let meta = SnapshotMeta { name: "t".into(), version: 1, content_sha256: hash.clone() };
        let bytes = parquet_io::write(&s, &rows, &meta, "t.parquet").expect("write");
        let decoded = parquet_io::read(bytes, "t.parquet").expect("read");
        prop_assert_eq!(&decoded.schema, &s);
        prop_assert_eq!(decoded.content_sha256, hash);
        prop_assert_eq!(decoded.rows.len(), rows.len());
        for (a, b) in decoded.rows.iter().zip(&rows) {
            // Compare floats by bits (0.0 == -0.0 for serde_json).
            prop_assert_eq!(super::canonical_json(&Value::Object(a.clone())),
                super::canonical_json(&Value::Object(b.clone())));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn a_bad_value_is_reported_at_its_line_and_column(
        rows in raw_rows().prop_filter("non-empty", |r| !r.is_empty()),
        pick in any::<prop::sample::Index>(),
        col in 0usize..5,
    ) {
        let s = schema();
        let (name, bad) = [
            ("id", Value::Null),
            ("n", json!("x")),
            ("f", json!(true)),
            ("b", json!(1)),
            ("s", json!(5)),
        ][col].clone();
        let mut rows = rows;
        let i = pick.index(rows.len());
        rows[i].insert(name.to_string(), bad);
        let errs = parse_rows(&s, &to_jsonl(&rows, false, "", false)).expect_err("invalid");
        prop_assert_eq!(errs.len(), 1);
        prop_assert_eq!(errs[0].line, i + 1);
        prop_assert_eq!(errs[0].column.as_deref(), Some(name));
    }
}
