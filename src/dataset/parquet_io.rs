//! Rows <-> Parquet bytes (the snapshot format documented in
//! [`crate::dataset`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use super::canonical::{Cell, ContentHasher, canonical_json};
use super::rows::Schema;
use super::{DatasetError, Row};
use crate::spec::dataset::ColumnType;

pub(crate) const META_DATASET: &str = "promptgate.dataset";
pub(crate) const META_VERSION: &str = "promptgate.version";
pub(crate) const META_CONTENT: &str = "promptgate.content_sha256";
pub(crate) const META_SCHEMA: &str = "promptgate.schema";
const FORMAT: u32 = 1;
const ZSTD_LEVEL: i32 = 3;

/// What a snapshot says about itself.
pub(crate) struct SnapshotMeta {
    pub name: String,
    pub version: u32,
    pub content_sha256: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SchemaMeta {
    format: u32,
    #[serde(flatten)]
    schema: Schema,
}

fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Integer => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
    }
}

pub(crate) fn arrow_schema(schema: &Schema) -> ArrowSchema {
    ArrowSchema::new(
        schema
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.kind), !c.required))
            .collect::<Vec<_>>(),
    )
}

/// Encodes normalised rows (in key order) as a snapshot file.
pub(crate) fn write(
    schema: &Schema,
    rows: &[Row],
    meta: &SnapshotMeta,
    path: &str,
) -> Result<Vec<u8>, DatasetError> {
    let pq = |source| DatasetError::Parquet {
        path: path.to_string(),
        source,
    };
    let arrow = Arc::new(arrow_schema(schema));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.columns.len());
    for col in &schema.columns {
        let values = rows
            .iter()
            .map(|r| r.get(&col.name).unwrap_or(&Value::Null));
        let array: ArrayRef = match col.kind {
            ColumnType::String => {
                let mut b = StringBuilder::new();
                for v in values {
                    b.append_option(v.as_str());
                }
                Arc::new(b.finish())
            }
            ColumnType::Json => {
                let mut b = StringBuilder::new();
                for v in values {
                    b.append_option((!v.is_null()).then(|| canonical_json(v)));
                }
                Arc::new(b.finish())
            }
            ColumnType::Integer => {
                let mut b = Int64Builder::new();
                for v in values {
                    b.append_option(v.as_i64());
                }
                Arc::new(b.finish())
            }
            ColumnType::Float => {
                let mut b = Float64Builder::new();
                for v in values {
                    b.append_option(v.as_f64());
                }
                Arc::new(b.finish())
            }
            ColumnType::Boolean => {
                let mut b = BooleanBuilder::new();
                for v in values {
                    b.append_option(v.as_bool());
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(arrow.clone(), arrays).map_err(|e| DatasetError::Corrupt {
        path: path.to_string(),
        message: format!("building the record batch: {e}"),
    })?;
    let schema_json = serde_json::to_string(&SchemaMeta {
        format: FORMAT,
        schema: schema.clone(),
    })
    .map_err(|e| DatasetError::Corrupt {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).map_err(pq)?,
        ))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_DATASET.to_string(), meta.name.clone()),
            KeyValue::new(META_VERSION.to_string(), meta.version.to_string()),
            KeyValue::new(META_CONTENT.to_string(), meta.content_sha256.clone()),
            KeyValue::new(META_SCHEMA.to_string(), schema_json),
        ]))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), arrow, Some(props)).map_err(pq)?;
    writer.write(&batch).map_err(pq)?;
    writer.into_inner().map_err(pq)
}

/// A decoded snapshot file.
pub(crate) struct Decoded {
    pub schema: Schema,
    pub rows: Vec<Row>,
    /// Content hash recomputed from the decoded values.
    pub content_sha256: String,
    /// Key-value metadata of the file.
    pub metadata: HashMap<String, String>,
}

/// Decodes a snapshot file; checks its schema against its own metadata.
pub(crate) fn read(bytes: Vec<u8>, path: &str) -> Result<Decoded, DatasetError> {
    let corrupt = |message: String| DatasetError::Corrupt {
        path: path.to_string(),
        message,
    };
    let pq = |source| DatasetError::Parquet {
        path: path.to_string(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).map_err(pq)?;
    let metadata: HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    let schema_json = metadata
        .get(META_SCHEMA)
        .ok_or_else(|| corrupt(format!("no `{META_SCHEMA}` metadata")))?;
    let meta: SchemaMeta = serde_json::from_str(schema_json)
        .map_err(|e| corrupt(format!("`{META_SCHEMA}` metadata: {e}")))?;
    if meta.format != FORMAT {
        return Err(corrupt(format!(
            "snapshot format {} is not supported (this promptgate reads format {FORMAT})",
            meta.format
        )));
    }
    let schema = meta.schema;
    for col in &schema.columns {
        let field = builder
            .schema()
            .field_with_name(&col.name)
            .map_err(|_| corrupt(format!("column `{}` is missing", col.name)))?;
        if field.data_type() != &arrow_type(col.kind) {
            return Err(corrupt(format!(
                "column `{}` is {}, expected {} for a {} column",
                col.name,
                field.data_type(),
                arrow_type(col.kind),
                col.kind.as_str()
            )));
        }
    }
    let reader = builder.build().map_err(pq)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut hasher = ContentHasher::new(&schema.columns);
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(e.to_string()))?;
        let mut columns: Vec<&ArrayRef> = Vec::with_capacity(schema.columns.len());
        for col in &schema.columns {
            columns.push(
                batch
                    .column_by_name(&col.name)
                    .ok_or_else(|| corrupt(format!("column `{}` is missing", col.name)))?,
            );
        }
        for i in 0..batch.num_rows() {
            let mut row = Row::new();
            let mut cells: Vec<Cell<'_>> = Vec::with_capacity(columns.len());
            for (col, array) in schema.columns.iter().zip(&columns) {
                let (cell, value) = if array.is_null(i) {
                    if col.required {
                        return Err(corrupt(format!(
                            "null in required column `{}` (row {})",
                            col.name,
                            i + 1
                        )));
                    }
                    (Cell::Null, Value::Null)
                } else {
                    match col.kind {
                        ColumnType::String => {
                            let s = array.as_string::<i32>().value(i);
                            (Cell::Str(s), Value::String(s.to_string()))
                        }
                        ColumnType::Json => {
                            let s = array.as_string::<i32>().value(i);
                            let v: Value = serde_json::from_str(s).map_err(|e| {
                                corrupt(format!("column `{}` row {}: {e}", col.name, i + 1))
                            })?;
                            (Cell::Json(s), v)
                        }
                        ColumnType::Integer => {
                            let n = array.as_primitive::<Int64Type>().value(i);
                            (Cell::Int(n), Value::from(n))
                        }
                        ColumnType::Float => {
                            let f = array.as_primitive::<Float64Type>().value(i);
                            let v = serde_json::Number::from_f64(f)
                                .map(Value::Number)
                                .ok_or_else(|| {
                                    corrupt(format!("column `{}`: non-finite float", col.name))
                                })?;
                            (Cell::Float(f), v)
                        }
                        ColumnType::Boolean => {
                            let b = array.as_boolean().value(i);
                            (Cell::Bool(b), Value::Bool(b))
                        }
                    }
                };
                cells.push(cell);
                row.insert(col.name.clone(), value);
            }
            hasher.row(cells);
            rows.push(row);
        }
    }
    Ok(Decoded {
        schema,
        rows,
        content_sha256: hasher.finish(),
        metadata,
    })
}
