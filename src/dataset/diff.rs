//! Row diffs between two versions, matched by the key column.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::rows::cmp_keys;
use super::store::read_snapshot;
use super::{DatasetError, Row};
use crate::repo::FileSource;
use crate::spec::dataset::DatasetRef;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueChange {
    pub old: Value,
    pub new: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangedRow {
    pub key: Value,
    /// Column -> old and new value (a column absent on one side is null).
    pub columns: BTreeMap<String, ValueChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowDiff {
    pub name: String,
    pub from: u32,
    pub to: u32,
    pub key: String,
    pub added: Vec<Row>,
    pub removed: Vec<Row>,
    pub changed: Vec<ChangedRow>,
    pub unchanged: usize,
}

/// Diffs `name@v<from>` and `name@v<to>` as read (and verified) from `source`.
pub fn diff_versions(
    source: &dyn FileSource,
    name: &str,
    from: u32,
    to: u32,
) -> Result<RowDiff, DatasetError> {
    let a = read_snapshot(
        source,
        &DatasetRef {
            name: name.to_string(),
            version: from,
        },
    )?;
    let b = read_snapshot(
        source,
        &DatasetRef {
            name: name.to_string(),
            version: to,
        },
    )?;
    let (added, removed, changed, unchanged) = diff_rows(&b.schema.key, &a.rows, &b.rows);
    Ok(RowDiff {
        name: name.to_string(),
        from,
        to,
        key: b.schema.key,
        added,
        removed,
        changed,
        unchanged,
    })
}

type Parts = (Vec<Row>, Vec<Row>, Vec<ChangedRow>, usize);

/// Added, removed and changed rows (each in key order) and the number of
/// unchanged ones. Keys are matched by their JSON text, so a key column
/// that changed type still matches `1` with `1`.
pub(crate) fn diff_rows(key: &str, old: &[Row], new: &[Row]) -> Parts {
    let key_of = |r: &Row| match r.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let old_by_key: HashMap<String, &Row> = old.iter().map(|r| (key_of(r), r)).collect();
    let new_keys: BTreeSet<String> = new.iter().map(key_of).collect();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut unchanged = 0;
    for row in new {
        let Some(before) = old_by_key.get(&key_of(row)) else {
            added.push(row.clone());
            continue;
        };
        let names: BTreeSet<&String> = before.keys().chain(row.keys()).collect();
        let mut columns = BTreeMap::new();
        for name in names {
            let o = before.get(name).unwrap_or(&Value::Null);
            let n = row.get(name).unwrap_or(&Value::Null);
            if o != n {
                columns.insert(
                    name.clone(),
                    ValueChange {
                        old: o.clone(),
                        new: n.clone(),
                    },
                );
            }
        }
        if columns.is_empty() {
            unchanged += 1;
        } else {
            changed.push(ChangedRow {
                key: row.get(key).cloned().unwrap_or(Value::Null),
                columns,
            });
        }
    }
    let mut removed: Vec<Row> = old
        .iter()
        .filter(|r| !new_keys.contains(&key_of(r)))
        .cloned()
        .collect();
    let by_key = |a: &Row, b: &Row| {
        cmp_keys(
            a.get(key).unwrap_or(&Value::Null),
            b.get(key).unwrap_or(&Value::Null),
        )
    };
    added.sort_by(by_key);
    removed.sort_by(by_key);
    changed.sort_by(|a, b| cmp_keys(&a.key, &b.key));
    (added, removed, changed, unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => Row::new(),
        }
    }

    #[test]
    fn added_removed_changed() {
        let old = vec![
            row(json!({"id": "a", "x": 1})),
            row(json!({"id": "b", "x": 2})),
            row(json!({"id": "c", "x": 3})),
        ];
        let new = vec![
            row(json!({"id": "a", "x": 1})),
            row(json!({"id": "c", "x": 30})),
            row(json!({"id": "d", "x": 4})),
        ];
        let (added, removed, changed, unchanged) = diff_rows("id", &old, &new);
        assert_eq!(added, vec![row(json!({"id": "d", "x": 4}))]);
        assert_eq!(removed, vec![row(json!({"id": "b", "x": 2}))]);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].key, json!("c"));
        assert_eq!(
            changed[0].columns["x"],
            ValueChange {
                old: json!(3),
                new: json!(30)
            }
        );
        assert_eq!(unchanged, 1);
    }
}
