//! Row validation: `rows.jsonl` text -> typed, normalised rows in key order,
//! or every problem with its line and column.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Row;
use super::canonical::{Cell, canonical_json};
use crate::spec::dataset::{ColumnType, DatasetSpec};

/// One column of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    pub required: bool,
}

/// A `dataset.yaml` whose key column cannot identify rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("key column `{0}` is not among the columns")]
    NotAColumn(String),
    #[error("key column `{0}` must be required (it identifies rows)")]
    NotRequired(String),
    #[error("key column `{key}` must be of type string or integer, not {kind}")]
    KeyKind { key: String, kind: &'static str },
}

/// A value that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("missing value for required {0} column")]
    Missing(&'static str),
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("integer {0} does not fit in a signed 64-bit integer")]
    IntegerTooLarge(serde_json::Number),
    #[error("{0} is not a number")]
    NotANumber(serde_json::Number),
    #[error("integer {0} is not exactly representable as a float")]
    InexactFloat(serde_json::Number),
    #[error("{0} is not a finite number")]
    NotFinite(serde_json::Number),
}

/// The columns of a dataset in snapshot order: key first, then the others by
/// name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub key: String,
    pub columns: Vec<Column>,
}

impl Schema {
    /// Checks the key column (present, required, string or integer) and
    /// orders the columns.
    pub fn from_spec(spec: &DatasetSpec) -> Result<Schema, SchemaError> {
        let key = spec
            .columns
            .get(&spec.key)
            .ok_or_else(|| SchemaError::NotAColumn(spec.key.clone()))?;
        if !key.required {
            return Err(SchemaError::NotRequired(spec.key.clone()));
        }
        if !matches!(key.kind, ColumnType::String | ColumnType::Integer) {
            return Err(SchemaError::KeyKind {
                key: spec.key.clone(),
                kind: key.kind.as_str(),
            });
        }
        let mut columns = vec![Column {
            name: spec.key.clone(),
            kind: key.kind,
            required: true,
        }];
        columns.extend(
            spec.columns
                .iter()
                .filter(|(n, _)| **n != spec.key)
                .map(|(n, c)| Column {
                    name: n.clone(),
                    kind: c.kind,
                    required: c.required,
                }),
        );
        Ok(Schema {
            key: spec.key.clone(),
            columns,
        })
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The row's key as text (for messages and result files).
    pub fn key_text(&self, row: &Row) -> String {
        match row.get(&self.key) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }
    }
}

/// Compares two key values: integers numerically, strings by UTF-8 bytes.
pub(crate) fn cmp_keys(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_i64()
            .unwrap_or_default()
            .cmp(&y.as_i64().unwrap_or_default()),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// The hash cells of a normalised row. `json_texts` receives the canonical
/// text of json cells so the borrowed cells can point into it.
pub(crate) fn json_texts(schema: &Schema, row: &Row) -> Vec<Option<String>> {
    schema
        .columns
        .iter()
        .map(|c| match (c.kind, row.get(&c.name)) {
            (ColumnType::Json, Some(v)) if !v.is_null() => Some(canonical_json(v)),
            _ => None,
        })
        .collect()
}

pub(crate) fn cells<'a>(
    schema: &'a Schema,
    row: &'a Row,
    json: &'a [Option<String>],
) -> impl Iterator<Item = Cell<'a>> + 'a {
    schema.columns.iter().zip(json).map(move |(c, j)| {
        let v = row.get(&c.name).unwrap_or(&Value::Null);
        match (c.kind, v) {
            (_, Value::Null) => Cell::Null,
            (ColumnType::String, Value::String(s)) => Cell::Str(s),
            (ColumnType::Integer, Value::Number(n)) => Cell::Int(n.as_i64().unwrap_or_default()),
            (ColumnType::Float, Value::Number(n)) => Cell::Float(n.as_f64().unwrap_or_default()),
            (ColumnType::Boolean, Value::Bool(b)) => Cell::Bool(*b),
            (ColumnType::Json, _) => Cell::Json(j.as_deref().unwrap_or("null")),
            // Normalised rows never get here; hash something distinct anyway.
            _ => Cell::Json("\u{0}invalid"),
        }
    })
}

/// A problem with one line of `rows.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line number.
    pub line: usize,
    /// The column concerned, if the problem is about one.
    pub column: Option<String>,
    pub message: String,
}

impl RowError {
    /// `path:line: column `c`: message`.
    pub fn display_with(&self, path: &str) -> String {
        match &self.column {
            Some(c) => format!("{path}:{}: column `{c}`: {}", self.line, self.message),
            None => format!("{path}:{}: {}", self.line, self.message),
        }
    }
}

/// Validates every line of `text` against `schema`; returns the normalised
/// rows sorted by key, or every problem found.
pub fn parse_rows(schema: &Schema, text: &str) -> Result<Vec<Row>, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let err = |column: Option<&str>, message: String| RowError {
            line: line_no,
            column: column.map(str::to_string),
            message,
        };
        let obj = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(other) => {
                errors.push(err(
                    None,
                    format!("expected a JSON object, found {}", describe(&other)),
                ));
                continue;
            }
            Err(e) => {
                errors.push(err(None, format!("invalid JSON: {e}")));
                continue;
            }
        };
        let before = errors.len();
        for name in obj.keys() {
            if schema.column(name).is_none() {
                let known: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
                errors.push(err(
                    Some(name),
                    format!(
                        "unknown column (dataset.yaml declares: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut row = Map::new();
        for col in &schema.columns {
            let value = obj.get(&col.name).unwrap_or(&Value::Null);
            match normalise(col, value) {
                Ok(v) => {
                    row.insert(col.name.clone(), v);
                }
                Err(e) => errors.push(err(Some(&col.name), e.to_string())),
            }
        }
        if errors.len() > before {
            continue;
        }
        let key = schema.key_text(&row);
        if let Some(first) = seen.get(&key) {
            errors.push(err(
                Some(&schema.key),
                format!("duplicate key `{key}` (first used on line {first})"),
            ));
            continue;
        }
        seen.insert(key, line_no);
        rows.push(row);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    sort_rows(schema, &mut rows);
    Ok(rows)
}

pub(crate) fn sort_rows(schema: &Schema, rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        cmp_keys(
            a.get(&schema.key).unwrap_or(&Value::Null),
            b.get(&schema.key).unwrap_or(&Value::Null),
        )
    });
}

/// Checks one value against its column and returns its normal form.
fn normalise(col: &Column, value: &Value) -> Result<Value, ValueError> {
    if value.is_null() {
        return if col.required {
            Err(ValueError::Missing(col.kind.as_str()))
        } else {
            Ok(Value::Null)
        };
    }
    let wrong = || {
        Err(ValueError::WrongType {
            expected: col.kind.as_str(),
            found: describe(value),
        })
    };
    match col.kind {
        ColumnType::String => match value {
            Value::String(_) => Ok(value.clone()),
            _ => wrong(),
        },
        ColumnType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => wrong(),
        },
        ColumnType::Integer => match value {
            Value::Number(n) if n.is_i64() => Ok(value.clone()),
            Value::Number(n) if n.is_u64() => Err(ValueError::IntegerTooLarge(n.clone())),
            _ => wrong(),
        },
        ColumnType::Float => match value {
            Value::Number(n) => {
                let f = n
                    .as_f64()
                    .ok_or_else(|| ValueError::NotANumber(n.clone()))?;
                let exact = match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => f as i64 == i && (f as i128) == i128::from(i),
                    (None, Some(u)) => (f as u128) == u128::from(u),
                    _ => true,
                };
                if !exact {
                    return Err(ValueError::InexactFloat(n.clone()));
                }
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| ValueError::NotFinite(n.clone()))
            }
            _ => wrong(),
        },
        ColumnType::Json => Ok(value.clone()),
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    let short = if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    };
    let kind = match v {
        Value::Null => return "null".to_string(),
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind} {short}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::dataset::ColumnSpec;

    pub(crate) fn spec(cols: &[(&str, ColumnType, bool)], key: &str) -> DatasetSpec {
        DatasetSpec {
            description: None,
            key: key.to_string(),
            columns: cols
                .iter()
                .map(|(n, k, r)| {
                    (
                        n.to_string(),
                        ColumnSpec {
                            kind: *k,
                            required: *r,
                            description: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn capitals() -> Schema {
        Schema::from_spec(&spec(
            &[
                ("id", ColumnType::String, true),
                ("country", ColumnType::String, true),
                ("pop", ColumnType::Integer, false),
            ],
            "id",
        ))
        .expect("schema")
    }

    #[test]
    fn key_first_then_by_name() {
        let s = Schema::from_spec(&spec(
            &[
                ("a", ColumnType::Float, true),
                ("z", ColumnType::Integer, true),
            ],
            "z",
        ))
        .expect("schema");
        let names: Vec<_> = s.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["z", "a"]);
    }

    #[test]
    fn key_must_be_required_string_or_integer() {
        let e = Schema::from_spec(&spec(&[("k", ColumnType::Float, true)], "k"));
        assert!(e.is_err());
        let e = Schema::from_spec(&spec(&[("k", ColumnType::String, false)], "k"));
        assert!(e.is_err());
        let e = Schema::from_spec(&spec(&[("k", ColumnType::String, true)], "x"));
        assert!(e.is_err());
    }

    #[test]
    fn reports_every_bad_line_with_column() {
        let text = concat!(
            "{\"id\": \"a\", \"country\": \"A\"}\n",
            "\n",
            "{\"id\": \"b\", \"country\": 5}\n",
            "not json\n",
            "{\"id\": \"c\", \"country\": \"C\", \"extra\": 1}\n",
            "{\"id\": \"a\", \"country\": \"again\"}\n",
            "{\"id\": \"d\"}\n",
            "{\"id\": \"e\", \"country\": \"E\", \"pop\": 1.5}\n",
            "[1]\n",
        );
        let errs = parse_rows(&capitals(), text).expect_err("invalid");
        let got: Vec<(usize, Option<&str>)> =
            errs.iter().map(|e| (e.line, e.column.as_deref())).collect();
        assert_eq!(
            got,
            [
                (3, Some("country")),
                (4, None),
                (5, Some("extra")),
                (6, Some("id")),
                (7, Some("country")),
                (8, Some("pop")),
                (9, None),
            ]
        );
        assert!(errs[0].message.contains("expected string, found integer 5"));
        assert!(errs[3].message.contains("first used on line 1"));
    }

    #[test]
    fn rows_are_normalised_and_sorted_by_key() {
        let s = Schema::from_spec(&spec(
            &[
                ("n", ColumnType::Integer, true),
                ("f", ColumnType::Float, false),
            ],
            "n",
        ))
        .expect("schema");
        let rows = parse_rows(&s, "{\"n\": 10, \"f\": 2}\n{\"n\": 9}\n").expect("rows");
        assert_eq!(rows[0]["n"], 9);
        assert_eq!(rows[0]["f"], Value::Null);
        assert!(rows[1]["f"].is_f64());
        assert_eq!(rows[1]["f"].as_f64(), Some(2.0));
    }

    #[test]
    fn huge_integers_are_refused() {
        let s = Schema::from_spec(&spec(
            &[
                ("n", ColumnType::Integer, true),
                ("f", ColumnType::Float, true),
            ],
            "n",
        ))
        .expect("schema");
        let errs = parse_rows(
            &s,
            "{\"n\": 18446744073709551615, \"f\": 1}\n{\"n\": 1, \"f\": 9007199254740993}\n",
        )
        .expect_err("invalid");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[1].column.as_deref(), Some("f"));
    }
}
