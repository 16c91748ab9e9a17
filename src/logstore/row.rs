//! One request log row, its Arrow schema, and conversion to and from record
//! batches.
//!
//! Derived columns: `history_turns`, `output_chars` and `output_words` are
//! computed from the row's text when it is written (and when compaction
//! rewrites a file), so readers get lengths from small numeric columns
//! without decompressing the text. They were added after the first files
//! were written: they are nullable, and a file without them is read by
//! computing the same values from the text ([`history_turns`],
//! [`crate::words::scan`]).

use std::sync::{Arc, LazyLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt16Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which side of the rollout served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Stable,
    Canary,
    /// Plain model pass-through: no rollout applies.
    None,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Canary => "canary",
            Variant::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        match s {
            "stable" => Some(Variant::Stable),
            "canary" => Some(Variant::Canary),
            "none" => Some(Variant::None),
            _ => None,
        }
    }
}

/// Outcome of a proxied call. Unknown strings read from a file are kept as
/// [`RequestStatus::Other`] so newer writers do not break older readers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestStatus {
    Ok,
    Error,
    /// The client went away before the response was complete.
    ClientClosed,
    Timeout,
    Other(String),
}

impl RequestStatus {
    pub fn as_str(&self) -> &str {
        match self {
            RequestStatus::Ok => "ok",
            RequestStatus::Error => "error",
            RequestStatus::ClientClosed => "client_closed",
            RequestStatus::Timeout => "timeout",
            RequestStatus::Other(s) => s,
        }
    }
}

impl From<&str> for RequestStatus {
    fn from(s: &str) -> Self {
        match s {
            "ok" => RequestStatus::Ok,
            "error" => RequestStatus::Error,
            "client_closed" => RequestStatus::ClientClosed,
            "timeout" => RequestStatus::Timeout,
            other => RequestStatus::Other(other.to_string()),
        }
    }
}

impl Serialize for RequestStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(RequestStatus::from(s.as_str()))
    }
}

/// One proxied call. Text fields documented as JSON text hold serialized
/// JSON; the writer does not parse them except to redact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLogRow {
    pub request_id: String,
    /// UTC, stored with microsecond precision.
    pub ts: DateTime<Utc>,
    pub prompt_id: Option<String>,
    /// Git blob id of the prompt file served.
    pub prompt_version: Option<String>,
    pub git_ref: Option<String>,
    /// Commit of the state that served the request.
    pub commit: String,
    pub variant: Variant,
    /// Model key of promptgate.yaml.
    pub model: String,
    /// The model name the upstream knows.
    pub upstream_model: String,
    /// JSON object text.
    pub variables: String,
    /// Rendered messages, JSON array text.
    pub messages: String,
    pub output: String,
    pub status: RequestStatus,
    pub http_status: u16,
    pub error: Option<String>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    /// A hash of the user id, never the raw id.
    pub user_hash: Option<String>,
    pub stream: bool,
    pub online_pass: Option<bool>,
    /// JSON object text `{assertion: score}`.
    pub online_scores: String,
    pub replica: Option<String>,
}

/// The current time truncated to the microseconds the log stores.
pub fn now_micros() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

pub(crate) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

impl RequestLogRow {
    /// A row with the required identity fields and neutral values elsewhere;
    /// the proxy fills in the rest.
    pub fn new(request_id: impl Into<String>, ts: DateTime<Utc>) -> RequestLogRow {
        RequestLogRow {
            request_id: request_id.into(),
            ts: truncate_micros(ts),
            prompt_id: None,
            prompt_version: None,
            git_ref: None,
            commit: String::new(),
            variant: Variant::None,
            model: String::new(),
            upstream_model: String::new(),
            variables: "{}".to_string(),
            messages: "[]".to_string(),
            output: String::new(),
            status: RequestStatus::Ok,
            http_status: 200,
            error: None,
            latency_ms: 0.0,
            ttft_ms: None,
            input_tokens: 0,
            output_tokens: 0,
            cost: 0.0,
            user_hash: None,
            stream: false,
            online_pass: None,
            online_scores: "{}".to_string(),
            replica: None,
        }
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

static REQUEST_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("request_id", false),
        Field::new("ts", ts_type(), false),
        s("prompt_id", true),
        s("prompt_version", true),
        s("git_ref", true),
        s("commit", false),
        s("variant", false),
        s("model", false),
        s("upstream_model", false),
        s("variables", false),
        s("messages", false),
        s("output", false),
        s("status", false),
        Field::new("http_status", DataType::UInt16, false),
        s("error", true),
        Field::new("latency_ms", DataType::Float64, false),
        Field::new("ttft_ms", DataType::Float64, true),
        Field::new("input_tokens", DataType::UInt64, false),
        Field::new("output_tokens", DataType::UInt64, false),
        Field::new("cost", DataType::Float64, false),
        s("user_hash", true),
        Field::new("stream", DataType::Boolean, false),
        Field::new("online_pass", DataType::Boolean, true),
        s("online_scores", false),
        s("replica", true),
        // Derived at write time; absent from files written before them.
        Field::new(HISTORY_TURNS, DataType::UInt32, true),
        Field::new(OUTPUT_CHARS, DataType::UInt32, true),
        Field::new(OUTPUT_WORDS, DataType::UInt32, true),
    ]))
});

/// Column: assistant messages in the rendered messages (earlier turns of
/// the conversation); null when `messages` is not a JSON array.
pub const HISTORY_TURNS: &str = "history_turns";
/// Column: characters of `output` (Unicode scalar values).
pub const OUTPUT_CHARS: &str = "output_chars";
/// Column: words of `output`, as [`crate::words::scan`] counts them.
pub const OUTPUT_WORDS: &str = "output_words";

/// Assistant messages in a JSON array of messages (only the roles are
/// read); `None` when the text is not such an array.
pub fn history_turns(messages: &str) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Role<'a> {
        #[serde(borrow, default)]
        role: Option<std::borrow::Cow<'a, str>>,
    }
    let roles: Vec<Role<'_>> = serde_json::from_str(messages).ok()?;
    let n = roles
        .iter()
        .filter(|r| r.role.as_deref() == Some("assistant"))
        .count();
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The Arrow schema of request log files.
pub fn request_schema() -> SchemaRef {
    REQUEST_SCHEMA.clone()
}

/// Rows to one record batch with [`request_schema`].
pub fn rows_to_batch<'a>(
    rows: impl IntoIterator<Item = &'a RequestLogRow> + Clone,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let rows: Vec<&RequestLogRow> = rows.into_iter().collect();
    fn strs<'a>(rows: &[&'a RequestLogRow], f: impl Fn(&'a RequestLogRow) -> &'a str) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| f(r))))
    }
    fn opt_strs<'a>(
        rows: &[&'a RequestLogRow],
        f: impl Fn(&'a RequestLogRow) -> Option<&'a str>,
    ) -> ArrayRef {
        Arc::new(rows.iter().map(|r| f(r)).collect::<StringArray>())
    }
    let output: Vec<crate::words::TextStats> = rows
        .iter()
        .map(|r| crate::words::scan(&r.output, None))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        strs(&rows, |r| &r.request_id),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.ts.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ),
        opt_strs(&rows, |r| r.prompt_id.as_deref()),
        opt_strs(&rows, |r| r.prompt_version.as_deref()),
        opt_strs(&rows, |r| r.git_ref.as_deref()),
        strs(&rows, |r| &r.commit),
        strs(&rows, |r| r.variant.as_str()),
        strs(&rows, |r| &r.model),
        strs(&rows, |r| &r.upstream_model),
        strs(&rows, |r| &r.variables),
        strs(&rows, |r| &r.messages),
        strs(&rows, |r| &r.output),
        strs(&rows, |r| r.status.as_str()),
        Arc::new(UInt16Array::from_iter_values(
            rows.iter().map(|r| r.http_status),
        )),
        opt_strs(&rows, |r| r.error.as_deref()),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.latency_ms),
        )),
        Arc::new(rows.iter().map(|r| r.ttft_ms).collect::<Float64Array>()),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.input_tokens),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.output_tokens),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.cost))),
        opt_strs(&rows, |r| r.user_hash.as_deref()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.stream))
                .collect::<BooleanArray>(),
        ),
        Arc::new(rows.iter().map(|r| r.online_pass).collect::<BooleanArray>()),
        strs(&rows, |r| &r.online_scores),
        opt_strs(&rows, |r| r.replica.as_deref()),
        Arc::new(
            rows.iter()
                .map(|r| history_turns(&r.messages))
                .collect::<UInt32Array>(),
        ),
        Arc::new(UInt32Array::from_iter_values(
            output.iter().map(|t| saturate(t.chars)),
        )),
        Arc::new(UInt32Array::from_iter_values(
            output.iter().map(|t| saturate(t.words)),
        )),
    ];
    RecordBatch::try_new(request_schema(), columns)
}

/// Typed access to the columns of a batch read from a file, tolerating
/// missing nullable columns.
/// Why a record batch does not hold valid log rows (an unknown or damaged
/// file, not a bug of the reader).
#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    #[error("missing column `{0}`")]
    Missing(&'static str),
    #[error("column `{name}` is not {expected}")]
    WrongType {
        name: &'static str,
        expected: &'static str,
    },
    #[error("row {row}: `{name}` is null")]
    Null { name: &'static str, row: usize },
    #[error("row {row}: `{name}` out of range")]
    OutOfRange { name: &'static str, row: usize },
    #[error("row {row}: unknown variant `{value}`")]
    UnknownVariant { row: usize, value: String },
    /// The rows read back but do not encode in the current schema.
    #[error("{0}")]
    Encode(#[from] arrow_schema::ArrowError),
}

pub(crate) struct Columns<'b> {
    batch: &'b RecordBatch,
}

impl<'b> Columns<'b> {
    pub(crate) fn new(batch: &'b RecordBatch) -> Self {
        Columns { batch }
    }

    fn col(&self, name: &'static str) -> Option<&'b ArrayRef> {
        self.batch.column_by_name(name)
    }

    fn required(&self, name: &'static str) -> Result<&'b ArrayRef, ColumnError> {
        self.col(name).ok_or(ColumnError::Missing(name))
    }

    pub(crate) fn str(
        &self,
        name: &'static str,
    ) -> Result<impl Fn(usize) -> Option<&'b str>, ColumnError> {
        let a = self
            .required(name)?
            .as_string_opt::<i32>()
            .ok_or(ColumnError::WrongType {
                name,
                expected: "Utf8",
            })?;
        Ok(move |i: usize| a.is_valid(i).then(|| a.value(i)))
    }

    pub(crate) fn opt_str(
        &self,
        name: &'static str,
    ) -> Result<impl Fn(usize) -> Option<&'b str>, ColumnError> {
        let a = match self.col(name) {
            None => None,
            Some(c) => Some(c.as_string_opt::<i32>().ok_or(ColumnError::WrongType {
                name,
                expected: "Utf8",
            })?),
        };
        Ok(move |i: usize| a.and_then(|a| a.is_valid(i).then(|| a.value(i))))
    }

    pub(crate) fn ts(
        &self,
        name: &'static str,
    ) -> Result<impl Fn(usize) -> Option<i64>, ColumnError> {
        let a = self
            .required(name)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or(ColumnError::WrongType {
                name,
                expected: "Timestamp(Microsecond)",
            })?;
        Ok(move |i: usize| a.is_valid(i).then(|| a.value(i)))
    }

    pub(crate) fn f64(
        &self,
        name: &'static str,
        required: bool,
    ) -> Result<impl Fn(usize) -> Option<f64>, ColumnError> {
        let a = match self.col(name) {
            None if !required => None,
            None => return Err(ColumnError::Missing(name)),
            Some(c) => Some(
                c.as_primitive_opt::<Float64Type>()
                    .ok_or(ColumnError::WrongType {
                        name,
                        expected: "Float64",
                    })?,
            ),
        };
        Ok(move |i: usize| a.and_then(|a| a.is_valid(i).then(|| a.value(i))))
    }

    fn u64(&self, name: &'static str) -> Result<impl Fn(usize) -> Option<u64>, ColumnError> {
        let a = self
            .required(name)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or(ColumnError::WrongType {
                name,
                expected: "UInt64",
            })?;
        Ok(move |i: usize| a.is_valid(i).then(|| a.value(i)))
    }

    fn u16(&self, name: &'static str) -> Result<impl Fn(usize) -> Option<u16>, ColumnError> {
        let a = self
            .required(name)?
            .as_primitive_opt::<UInt16Type>()
            .ok_or(ColumnError::WrongType {
                name,
                expected: "UInt16",
            })?;
        Ok(move |i: usize| a.is_valid(i).then(|| a.value(i)))
    }

    pub(crate) fn bool(
        &self,
        name: &'static str,
        required: bool,
    ) -> Result<impl Fn(usize) -> Option<bool>, ColumnError> {
        let a = match self.col(name) {
            None if !required => None,
            None => return Err(ColumnError::Missing(name)),
            Some(c) => Some(c.as_boolean_opt().ok_or(ColumnError::WrongType {
                name,
                expected: "Boolean",
            })?),
        };
        Ok(move |i: usize| a.and_then(|a| a.is_valid(i).then(|| a.value(i))))
    }
}

pub(crate) fn need<T>(v: Option<T>, name: &'static str, row: usize) -> Result<T, ColumnError> {
    v.ok_or(ColumnError::Null { name, row })
}

/// A record batch read from a request log file back to rows.
pub fn rows_from_batch(batch: &RecordBatch) -> Result<Vec<RequestLogRow>, ColumnError> {
    let c = Columns::new(batch);
    let request_id = c.str("request_id")?;
    let ts = c.ts("ts")?;
    let prompt_id = c.opt_str("prompt_id")?;
    let prompt_version = c.opt_str("prompt_version")?;
    let git_ref = c.opt_str("git_ref")?;
    let commit = c.str("commit")?;
    let variant = c.str("variant")?;
    let model = c.str("model")?;
    let upstream_model = c.str("upstream_model")?;
    let variables = c.str("variables")?;
    let messages = c.str("messages")?;
    let output = c.str("output")?;
    let status = c.str("status")?;
    let http_status = c.u16("http_status")?;
    let error = c.opt_str("error")?;
    let latency_ms = c.f64("latency_ms", true)?;
    let ttft_ms = c.f64("ttft_ms", false)?;
    let input_tokens = c.u64("input_tokens")?;
    let output_tokens = c.u64("output_tokens")?;
    let cost = c.f64("cost", true)?;
    let user_hash = c.opt_str("user_hash")?;
    let stream = c.bool("stream", true)?;
    let online_pass = c.bool("online_pass", false)?;
    let online_scores = c.str("online_scores")?;
    let replica = c.opt_str("replica")?;
    let owned = |v: Option<&str>| v.map(str::to_string);
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let micros = need(ts(i), "ts", i)?;
        let variant_s = need(variant(i), "variant", i)?;
        rows.push(RequestLogRow {
            request_id: need(request_id(i), "request_id", i)?.to_string(),
            ts: DateTime::from_timestamp_micros(micros)
                .ok_or(ColumnError::OutOfRange { name: "ts", row: i })?,
            prompt_id: owned(prompt_id(i)),
            prompt_version: owned(prompt_version(i)),
            git_ref: owned(git_ref(i)),
            commit: need(commit(i), "commit", i)?.to_string(),
            variant: Variant::parse(variant_s).ok_or_else(|| ColumnError::UnknownVariant {
                row: i,
                value: variant_s.to_string(),
            })?,
            model: need(model(i), "model", i)?.to_string(),
            upstream_model: need(upstream_model(i), "upstream_model", i)?.to_string(),
            variables: need(variables(i), "variables", i)?.to_string(),
            messages: need(messages(i), "messages", i)?.to_string(),
            output: need(output(i), "output", i)?.to_string(),
            status: RequestStatus::from(need(status(i), "status", i)?),
            http_status: need(http_status(i), "http_status", i)?,
            error: owned(error(i)),
            latency_ms: need(latency_ms(i), "latency_ms", i)?,
            ttft_ms: ttft_ms(i),
            input_tokens: need(input_tokens(i), "input_tokens", i)?,
            output_tokens: need(output_tokens(i), "output_tokens", i)?,
            cost: need(cost(i), "cost", i)?,
            user_hash: owned(user_hash(i)),
            stream: need(stream(i), "stream", i)?,
            online_pass: online_pass(i),
            online_scores: need(online_scores(i), "online_scores", i)?.to_string(),
            replica: owned(replica(i)),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_through_a_batch() {
        let mut r = RequestLogRow::new("r1", Utc::now());
        r.prompt_id = Some("summarize".into());
        r.ttft_ms = Some(12.5);
        r.online_pass = Some(true);
        r.status = RequestStatus::Other("upstream_error".into());
        let mut r2 = RequestLogRow::new("r2", Utc::now());
        r2.variant = Variant::Canary;
        r2.stream = true;
        let batch = rows_to_batch([&r, &r2]).unwrap();
        assert_eq!(batch.schema(), request_schema());
        assert_eq!(rows_from_batch(&batch).unwrap(), vec![r, r2]);
    }

    fn derived(batch: &RecordBatch, name: &str) -> Vec<Option<u32>> {
        let a = batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<arrow_array::types::UInt32Type>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect()
    }

    #[test]
    fn the_length_columns_hold_what_drift_reads_from_the_text() {
        let cases = [
            (
                r#"[{"role":"system","content":"s"},{"role":"user","content":"q"}]"#,
                Some(0),
                "Hello, world! It's 2026.",
                24,
                5,
            ),
            (
                r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"assistant","content":[{"type":"text","text":"d"}]},{"role":"user","content":"e"}]"#,
                Some(2),
                "北京是首都 Tokyo",
                11,
                6,
            ),
            ("not json", None, "", 0, 0),
            (r#"{"role":"assistant"}"#, None, "ça va — très bien", 17, 4),
            ("[]", Some(0), "   ", 3, 0),
        ];
        let rows: Vec<RequestLogRow> = cases
            .iter()
            .enumerate()
            .map(|(i, (messages, _, output, _, _))| {
                let mut r = RequestLogRow::new(format!("r{i}"), Utc::now());
                r.messages = (*messages).to_string();
                r.output = (*output).to_string();
                r
            })
            .collect();
        let batch = rows_to_batch(&rows).unwrap();
        let turns = derived(&batch, HISTORY_TURNS);
        let chars = derived(&batch, OUTPUT_CHARS);
        let words = derived(&batch, OUTPUT_WORDS);
        for (i, (_, t, _, c, w)) in cases.iter().enumerate() {
            assert_eq!(
                (turns[i], chars[i], words[i]),
                (*t, Some(*c), Some(*w)),
                "case {i}"
            );
        }
        // Reading back ignores them: a row is its text, the columns follow.
        assert_eq!(rows_from_batch(&batch).unwrap(), rows);
    }

    proptest::proptest! {
        #[test]
        fn output_lengths_equal_the_scan_of_the_text(output in "\\PC{0,200}", turns in 0usize..4) {
            let mut r = RequestLogRow::new("r", Utc::now());
            r.output = output.clone();
            let messages: Vec<serde_json::Value> = (0..turns)
                .flat_map(|_| [
                    serde_json::json!({"role": "user", "content": "q"}),
                    serde_json::json!({"role": "assistant", "content": "a"}),
                ])
                .collect();
            r.messages = serde_json::Value::Array(messages).to_string();
            let batch = rows_to_batch([&r]).unwrap();
            let stats = crate::words::scan(&output, None);
            proptest::prop_assert_eq!(derived(&batch, OUTPUT_CHARS), vec![Some(stats.chars as u32)]);
            proptest::prop_assert_eq!(derived(&batch, OUTPUT_WORDS), vec![Some(stats.words as u32)]);
            proptest::prop_assert_eq!(derived(&batch, HISTORY_TURNS), vec![Some(turns as u32)]);
        }
    }
}
