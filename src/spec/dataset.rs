//! `datasets/<name>/dataset.yaml` (columns and key) and `dataset.lock`
//! (the immutable Parquet snapshots, pinned by content hash).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// Column whose value identifies a row across versions.
    pub key: String,
    /// Columns by name (Parquet snapshots store them in this order, key first).
    pub columns: BTreeMap<String, ColumnSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Integer,
    Float,
    Boolean,
    /// Any JSON value, stored as its canonical JSON text.
    Json,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Boolean => "boolean",
            ColumnType::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    #[serde(rename = "type")]
    pub kind: ColumnType,
    #[serde(default = "default_true")]
    pub required: bool,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_true() -> bool {
    true
}

/// `dataset.lock`: every snapshot ever taken, oldest first.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DatasetLock {
    #[serde(default)]
    pub versions: Vec<LockedVersion>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedVersion {
    pub version: u32,
    pub rows: u64,
    /// sha256 of the canonical row content (not of the Parquet bytes, which
    /// depend on the writer's version).
    pub content_sha256: String,
    /// sha256 of the snapshot file as written; a mismatch means it was changed.
    pub file_sha256: String,
    pub file: String,
    pub created: String,
}

impl DatasetLock {
    pub fn get(&self, version: u32) -> Option<&LockedVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn latest(&self) -> Option<&LockedVersion> {
        self.versions.iter().max_by_key(|v| v.version)
    }
}

/// `name@vN` as written in an eval suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRef {
    pub name: String,
    pub version: u32,
}

impl std::str::FromStr for DatasetRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, version) = s
            .split_once('@')
            .ok_or_else(|| format!("`{s}` is not of the form name@vN"))?;
        let version = version
            .strip_prefix('v')
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("`{s}`: version must be v1, v2, ..."))?;
        if !super::prompt::is_valid_id(name) {
            return Err(format!("`{name}` is not a valid dataset name"));
        }
        Ok(DatasetRef {
            name: name.to_string(),
            version,
        })
    }
}

impl std::fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@v{}", self.name, self.version)
    }
}
