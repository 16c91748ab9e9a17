//! The features of one window of one prompt (or pass-through model): what
//! every call contributes, accumulated compactly so a million calls fit.
//!
//! Two kinds of input per call:
//! * [`ColumnsView`], every call of the window: status, latency, time to
//!   first token, tokens, cost, upstream model, online verdict, feedback;
//! * [`TextView`], the calls of the text sample: variables, rendered
//!   messages, output, online scores (lengths, words, language, JSON,
//!   refusals, content, assertion scores).
//!
//! Feature names are `<group>.<what>`: `input.<variable>.chars`,
//! `output.refusal`, `ops.latency_ms`, `feedback.score`, ... Which test a
//! feature gets is decided in [`super::analysis`] from its data kind.

use std::collections::BTreeMap;

use serde_json::Value;

use super::text::{self, RefusalMatcher};
use crate::eval::assertions::parse_json_output;
use crate::stats::domain::Docs;

/// At most this many distinct values of a string variable are counted; a
/// variable with more is not low-cardinality and gets no `value` feature.
pub const MAX_TRACKED_VALUES: usize = 64;
/// Variables tracked per prompt (a prompt declares a handful; this bounds
/// memory when logs hold something unexpected).
const MAX_VARIABLES: usize = 32;
/// Online assertion keys tracked per prompt.
const MAX_ASSERTIONS: usize = 32;
/// Request ids kept per window as review candidates.
pub const MAX_REVIEW_IDS: usize = 1000;

/// What a feature describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureGroup {
    Input,
    Output,
    Operations,
    Feedback,
}

impl FeatureGroup {
    pub fn of(name: &str) -> FeatureGroup {
        match name.split('.').next() {
            Some("input") => FeatureGroup::Input,
            Some("output") => FeatureGroup::Output,
            Some("feedback") => FeatureGroup::Feedback,
            _ => FeatureGroup::Operations,
        }
    }
}

/// The observations of one feature in one window.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureData {
    Numeric(Vec<f64>),
    Categorical {
        counts: BTreeMap<String, u64>,
        /// More than [`MAX_TRACKED_VALUES`] distinct values were seen.
        overflow: bool,
    },
    Binary {
        yes: u64,
        n: u64,
    },
    /// Hashed n-grams of each text.
    Text(Docs),
}

impl FeatureData {
    /// Observations.
    pub fn len(&self) -> u64 {
        match self {
            FeatureData::Numeric(v) => v.len() as u64,
            FeatureData::Categorical { counts, .. } => counts.values().sum(),
            FeatureData::Binary { n, .. } => *n,
            FeatureData::Text(d) => d.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn empty_like(&self) -> FeatureData {
        match self {
            FeatureData::Numeric(_) => FeatureData::Numeric(Vec::new()),
            FeatureData::Categorical { .. } => FeatureData::Categorical {
                counts: BTreeMap::new(),
                overflow: false,
            },
            FeatureData::Binary { .. } => FeatureData::Binary { yes: 0, n: 0 },
            FeatureData::Text(_) => FeatureData::Text(Docs::new()),
        }
    }

    fn merge(&mut self, other: FeatureData) {
        match (self, other) {
            (FeatureData::Numeric(a), FeatureData::Numeric(b)) => a.extend(b),
            (
                FeatureData::Categorical { counts, overflow },
                FeatureData::Categorical {
                    counts: b,
                    overflow: ob,
                },
            ) => {
                *overflow |= ob;
                for (k, v) in b {
                    *counts.entry(k).or_insert(0) += v;
                }
                if counts.len() > MAX_TRACKED_VALUES {
                    *overflow = true;
                }
            }
            (FeatureData::Binary { yes, n }, FeatureData::Binary { yes: y, n: m }) => {
                *yes += y;
                *n += m;
            }
            (FeatureData::Text(a), FeatureData::Text(b)) => {
                for i in 0..b.len() {
                    a.push(b.key(i), b.get(i).iter().copied());
                }
            }
            // Same name, different kind (a variable that changed type):
            // keep the first kind.
            _ => {}
        }
    }

    /// An empty window's data of the same kind as `self`.
    pub fn empty_of(other: &FeatureData) -> FeatureData {
        other.empty_like()
    }
}

fn binary(map: &mut BTreeMap<String, FeatureData>, name: String, yes: bool) {
    if let FeatureData::Binary { yes: y, n } = map
        .entry(name)
        .or_insert(FeatureData::Binary { yes: 0, n: 0 })
    {
        *y += u64::from(yes);
        *n += 1;
    }
}

fn numeric(map: &mut BTreeMap<String, FeatureData>, name: String, v: f64) {
    if !v.is_finite() {
        return;
    }
    if let FeatureData::Numeric(values) = map
        .entry(name)
        .or_insert_with(|| FeatureData::Numeric(Vec::new()))
    {
        values.push(v);
    }
}

fn categorical(map: &mut BTreeMap<String, FeatureData>, name: String, value: &str) {
    if let FeatureData::Categorical { counts, overflow } =
        map.entry(name).or_insert_with(|| FeatureData::Categorical {
            counts: BTreeMap::new(),
            overflow: false,
        })
    {
        if let Some(c) = counts.get_mut(value) {
            *c += 1;
        } else if counts.len() < MAX_TRACKED_VALUES {
            counts.insert(value.to_string(), 1);
        } else {
            *overflow = true;
        }
    }
}

fn text_doc(map: &mut BTreeMap<String, FeatureData>, name: String, key: u64, ids: &[u32]) {
    if let FeatureData::Text(docs) = map
        .entry(name)
        .or_insert_with(|| FeatureData::Text(Docs::new()))
    {
        docs.push(key, ids.iter().copied());
    }
}

/// A stable 64-bit hash of a request id: the sampling draw and the
/// domain classifier's split key of the call. Fixed across runs and
/// platforms.
pub fn id_hash(request_id: &str) -> u64 {
    // splitmix64's finaliser: a bijection with full avalanche, applied after
    // every eight bytes, so structured ids (`ref-00000001`, UUIDs) spread.
    fn mix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
    let bytes = request_id.as_bytes();
    let mut h: u64 = mix(bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    let mut w = [0u8; 8];
    w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h ^ u64::from_le_bytes(w))
}

/// A hasher for keys that are already [`id_hash`]es: passes them through.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map keyed by [`id_hash`]es.
pub type IdMap<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<PassThroughHasher>>;

/// The hash as a uniform draw in `0..1`.
pub fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// What is known about a prompt's output before looking at traffic.
#[derive(Debug, Clone, Default)]
pub struct OutputSpec {
    /// `Some(true)` when the prompt declares `output.format: json`; `None`
    /// for pass-through models and unknown prompts: JSON features are
    /// reported when most reference outputs are JSON.
    pub json: Option<bool>,
    /// The prompt's `output.schema`, compiled.
    pub schema: Option<std::sync::Arc<jsonschema::Validator>>,
}

/// How calls turn into features: built once per run.
#[derive(Debug, Clone)]
pub struct Extractor {
    pub refusal: RefusalMatcher,
}

impl Extractor {
    pub fn new(settings: &crate::spec::drift::DriftConfig) -> Result<Extractor, String> {
        let refusal = match &settings.refusal_phrases {
            Some(p) => RefusalMatcher::new(p)?,
            None => RefusalMatcher::new(crate::spec::drift::DEFAULT_REFUSAL_PHRASES)?,
        };
        Ok(Extractor { refusal })
    }
}

/// Feedback on a call: its latest score and label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedbackView<'a> {
    pub score: f64,
    pub label: Option<&'a str>,
}

/// The columns of one call, for every call of a window.
#[derive(Debug, Clone, Copy)]
pub struct ColumnsView<'a> {
    pub status: &'a str,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    pub upstream_model: &'a str,
    pub online_pass: Option<bool>,
    pub feedback: Option<FeedbackView<'a>>,
}

/// The text columns of one sampled call.
#[derive(Debug, Clone, Copy)]
pub struct TextView<'a> {
    pub request_id: &'a str,
    pub status: &'a str,
    /// JSON object text of the prompt's variables.
    pub variables: &'a str,
    /// JSON array text of the rendered messages; for a prompt call whose
    /// `history_turns` was logged, not read (empty).
    pub messages: &'a str,
    /// The logged `history_turns` column (files written before it: `None`,
    /// and the turns are counted in `messages`).
    pub history_turns: Option<u32>,
    pub output: &'a str,
    /// JSON object text `{assertion: score}`.
    pub online_scores: &'a str,
    /// Whether this call is in the language sample.
    pub detect_language: bool,
}

/// Whether a group is a prompt (inputs are its variables) or a pass-through
/// model (the input is the last user message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Prompt,
    Model,
}

/// Everything one window of one group contributes to the analysis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowFeatures {
    /// Calls in the window.
    pub calls: u64,
    /// Calls whose text was read.
    pub sampled: u64,
    /// Time range of the calls (microseconds since the epoch).
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// Text-derived features by name.
    pub features: BTreeMap<String, FeatureData>,
    /// Column features, accumulated in typed fields (every call of a
    /// million-call window passes here); see [`Self::all_features`].
    pub columns: ColumnFeatures,
    /// Some request ids of the text sample (review candidates).
    pub sample_ids: Vec<String>,
    pub(crate) variables: usize,
    pub(crate) assertions: usize,
}

fn is_ok(status: &str) -> bool {
    status == "ok"
}

/// A call that counts for operations: a client that went away says
/// nothing about the upstream.
fn counts_for_operations(status: &str) -> bool {
    status != "client_closed"
}

impl WindowFeatures {
    pub fn new() -> WindowFeatures {
        WindowFeatures::default()
    }

    /// A window of `calls` calls whose features were computed elsewhere
    /// (every call in the sample).
    pub fn from_features(calls: u64, features: BTreeMap<String, FeatureData>) -> WindowFeatures {
        WindowFeatures {
            calls,
            sampled: calls,
            features,
            ..WindowFeatures::default()
        }
    }

    /// Notes a call's time.
    pub fn push_time(&mut self, ts_micros: i64) {
        self.first_ts = Some(self.first_ts.map_or(ts_micros, |t| t.min(ts_micros)));
        self.last_ts = Some(self.last_ts.map_or(ts_micros, |t| t.max(ts_micros)));
    }

    /// Adds the column features of one call.
    pub fn push_columns(&mut self, c: &ColumnsView<'_>) {
        self.calls += 1;
        self.columns.push(c);
    }

    /// Every feature: the text features and the column features together.
    pub fn all_features(&self) -> BTreeMap<String, FeatureData> {
        let mut out = self.features.clone();
        self.columns.add_to(&mut out, self.calls);
        out
    }

    /// Adds the text features of one sampled call.
    pub fn push_text(
        &mut self,
        ex: &Extractor,
        kind: GroupKind,
        output_spec: &OutputSpec,
        t: &TextView<'_>,
    ) {
        self.sampled += 1;
        let key = id_hash(t.request_id);
        if self.sample_ids.len() < MAX_REVIEW_IDS && !t.request_id.is_empty() {
            self.sample_ids.push(t.request_id.to_string());
        }
        match kind {
            GroupKind::Prompt => {
                if let Some(turns) = t
                    .history_turns
                    .or_else(|| crate::logstore::history_turns(t.messages))
                {
                    numeric(
                        &mut self.features,
                        "input.history_turns".into(),
                        turns as f64,
                    );
                }
                self.push_variables(t.variables, t.detect_language, key);
            }
            GroupKind::Model => {
                let messages = parse_messages(t.messages);
                if let Some(m) = &messages {
                    let turns = m.iter().filter(|m| m.role == "assistant").count();
                    numeric(
                        &mut self.features,
                        "input.history_turns".into(),
                        turns as f64,
                    );
                }
                let last_user = messages
                    .as_ref()
                    .and_then(|m| m.iter().rev().find(|m| m.role == "user"))
                    .map(|m| m.text.as_str())
                    .unwrap_or("");
                self.push_string("input.last_user", last_user, t.detect_language, key);
            }
        }
        if is_ok(t.status) {
            self.push_output(ex, output_spec, t, key);
        }
    }

    /// Adds the inputs of one dataset row (a window of an eval dataset:
    /// inputs only, no call).
    pub fn push_inputs(
        &mut self,
        variables: &serde_json::Map<String, Value>,
        detect_language: bool,
        key: u64,
    ) {
        self.calls += 1;
        self.sampled += 1;
        for (name, value) in variables {
            self.push_variable(name, value, detect_language, key);
        }
    }

    fn push_variables(&mut self, variables: &str, detect_language: bool, key: u64) {
        let Ok(map) = serde_json::from_str::<serde_json::Map<String, Value>>(variables) else {
            return;
        };
        for (name, value) in &map {
            self.push_variable(name, value, detect_language, key);
        }
    }

    fn push_variable(&mut self, name: &str, value: &Value, detect_language: bool, key: u64) {
        let prefix = format!("input.{name}");
        if !self.features.contains_key(&format!("{prefix}.missing")) {
            if self.variables >= MAX_VARIABLES {
                return;
            }
            self.variables += 1;
        }
        let f = &mut self.features;
        binary(f, format!("{prefix}.missing"), value.is_null());
        match value {
            Value::String(s) => {
                categorical(f, format!("{prefix}.value"), s);
                self.push_string(&prefix, s, detect_language, key);
            }
            Value::Number(n) => {
                if let Some(v) = n.as_f64() {
                    numeric(f, format!("{prefix}.value"), v);
                }
            }
            Value::Bool(b) => binary(f, format!("{prefix}.value"), *b),
            Value::Array(items) => numeric(f, format!("{prefix}.items"), items.len() as f64),
            Value::Object(_) => numeric(
                f,
                format!("{prefix}.chars"),
                value.to_string().chars().count() as f64,
            ),
            Value::Null => {}
        }
    }

    fn push_string(&mut self, prefix: &str, s: &str, detect_language: bool, key: u64) {
        let mut ids = Vec::new();
        let stats = text::scan(s, Some(&mut ids));
        let f = &mut self.features;
        numeric(f, format!("{prefix}.chars"), stats.chars as f64);
        numeric(f, format!("{prefix}.words"), stats.words as f64);
        if detect_language {
            categorical(f, format!("{prefix}.language"), text::language(s));
        }
        text_doc(f, format!("{prefix}.content"), key, &ids);
    }

    fn push_output(&mut self, ex: &Extractor, spec: &OutputSpec, t: &TextView<'_>, key: u64) {
        let mut ids = Vec::new();
        let stats = text::scan(t.output, Some(&mut ids));
        let f = &mut self.features;
        numeric(f, "output.chars".into(), stats.chars as f64);
        numeric(f, "output.words".into(), stats.words as f64);
        if t.detect_language {
            categorical(f, "output.language".into(), text::language(t.output));
        }
        text_doc(f, "output.content".into(), key, &ids);
        binary(f, "output.refusal".into(), ex.refusal.is_refusal(t.output));
        if spec.json != Some(false) {
            let parsed = parse_json_output(t.output).ok();
            binary(f, "output.json_valid".into(), parsed.is_some());
            if let Some(schema) = &spec.schema {
                let valid = parsed.as_ref().is_some_and(|v| schema.is_valid(v));
                binary(f, "output.schema_valid".into(), valid);
            }
        }
        if t.online_scores.len() > 2
            && let Ok(scores) =
                serde_json::from_str::<serde_json::Map<String, Value>>(t.online_scores)
        {
            for (key, score) in scores {
                let name = format!("output.assertion.{key}");
                if !f.contains_key(&name) {
                    if self.assertions >= MAX_ASSERTIONS {
                        continue;
                    }
                    self.assertions += 1;
                }
                if let Some(s) = score.as_f64() {
                    numeric(f, name, s);
                }
            }
        }
    }

    /// Adds another part of the same window (read by another thread).
    pub fn merge(&mut self, other: WindowFeatures) {
        self.calls += other.calls;
        self.sampled += other.sampled;
        if let Some(t) = other.first_ts {
            self.push_time(t);
        }
        if let Some(t) = other.last_ts {
            self.push_time(t);
        }
        for (name, data) in other.features {
            match self.features.get_mut(&name) {
                Some(mine) => mine.merge(data),
                None => {
                    self.features.insert(name, data);
                }
            }
        }
        let room = MAX_REVIEW_IDS.saturating_sub(self.sample_ids.len());
        self.sample_ids
            .extend(other.sample_ids.into_iter().take(room));
        self.columns.merge(other.columns);
        self.variables = self.variables.max(other.variables);
        self.assertions = self.assertions.max(other.assertions);
    }
}

/// The column features of a window, in typed fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnFeatures {
    /// (yes, n) pairs.
    errors: (u64, u64),
    timeouts: (u64, u64),
    online_pass: (u64, u64),
    with_feedback: u64,
    cost: Vec<f64>,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    prompt_tokens: Vec<f64>,
    output_tokens: Vec<f64>,
    feedback_score: Vec<f64>,
    upstream_model: BTreeMap<String, u64>,
    feedback_label: BTreeMap<String, u64>,
}

fn count_in(map: &mut BTreeMap<String, u64>, key: &str) {
    let room = map.len() < MAX_TRACKED_VALUES;
    match map.get_mut(key) {
        Some(c) => *c += 1,
        None if room => {
            map.insert(key.to_string(), 1);
        }
        None => {}
    }
}

fn push_finite(v: &mut Vec<f64>, x: f64) {
    if x.is_finite() {
        v.push(x);
    }
}

impl ColumnFeatures {
    fn push(&mut self, c: &ColumnsView<'_>) {
        let ok = is_ok(c.status);
        if counts_for_operations(c.status) {
            self.errors.0 += u64::from(!ok);
            self.errors.1 += 1;
            self.timeouts.0 += u64::from(c.status == "timeout");
            self.timeouts.1 += 1;
            push_finite(&mut self.cost, c.cost);
        }
        if ok {
            push_finite(&mut self.latency, c.latency_ms);
            if let Some(t) = c.ttft_ms {
                push_finite(&mut self.ttft, t);
            }
            self.prompt_tokens.push(c.input_tokens as f64);
            self.output_tokens.push(c.output_tokens as f64);
            if !c.upstream_model.is_empty() {
                count_in(&mut self.upstream_model, c.upstream_model);
            }
        }
        if let Some(p) = c.online_pass {
            self.online_pass.0 += u64::from(p);
            self.online_pass.1 += 1;
        }
        if let Some(fb) = c.feedback {
            self.with_feedback += 1;
            push_finite(&mut self.feedback_score, fb.score);
            count_in(&mut self.feedback_label, fb.label.unwrap_or("(none)"));
        }
    }

    fn merge(&mut self, o: ColumnFeatures) {
        for (a, b) in [
            (&mut self.errors, o.errors),
            (&mut self.timeouts, o.timeouts),
            (&mut self.online_pass, o.online_pass),
        ] {
            a.0 += b.0;
            a.1 += b.1;
        }
        self.with_feedback += o.with_feedback;
        for (a, b) in [
            (&mut self.cost, o.cost),
            (&mut self.latency, o.latency),
            (&mut self.ttft, o.ttft),
            (&mut self.prompt_tokens, o.prompt_tokens),
            (&mut self.output_tokens, o.output_tokens),
            (&mut self.feedback_score, o.feedback_score),
        ] {
            a.extend(b);
        }
        for (a, b) in [
            (&mut self.upstream_model, o.upstream_model),
            (&mut self.feedback_label, o.feedback_label),
        ] {
            for (k, v) in b {
                *a.entry(k).or_insert(0) += v;
            }
        }
    }

    /// The features of these columns, under their names; a feature no call
    /// had (no streams, no feedback, ...) is left out.
    fn add_to(&self, out: &mut BTreeMap<String, FeatureData>, calls: u64) {
        let mut binary = |name: &str, (yes, n): (u64, u64)| {
            if n > 0 {
                out.insert(name.to_string(), FeatureData::Binary { yes, n });
            }
        };
        binary("ops.error_rate", self.errors);
        binary("ops.timeout_rate", self.timeouts);
        binary("output.online_pass", self.online_pass);
        binary("feedback.share", (self.with_feedback, calls));
        for (name, v) in [
            ("ops.cost_per_call", &self.cost),
            ("ops.latency_ms", &self.latency),
            ("ops.ttft_ms", &self.ttft),
            ("input.prompt_tokens", &self.prompt_tokens),
            ("output.tokens", &self.output_tokens),
            ("feedback.score", &self.feedback_score),
        ] {
            if !v.is_empty() {
                out.insert(name.to_string(), FeatureData::Numeric(v.clone()));
            }
        }
        for (name, m) in [
            ("ops.upstream_model", &self.upstream_model),
            ("feedback.label", &self.feedback_label),
        ] {
            if !m.is_empty() {
                out.insert(
                    name.to_string(),
                    FeatureData::Categorical {
                        counts: m.clone(),
                        overflow: false,
                    },
                );
            }
        }
    }
}

/// One rendered message: its role and its text content.
struct Message {
    role: String,
    text: String,
}

fn parse_messages(text: &str) -> Option<Vec<Message>> {
    let values: Vec<Value> = serde_json::from_str(text).ok()?;
    Some(
        values
            .into_iter()
            .map(|m| Message {
                role: m
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                text: m
                    .get("content")
                    .and_then(crate::provider::content_text)
                    .unwrap_or_default(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> Extractor {
        Extractor::new(&crate::spec::drift::DriftConfig::default()).unwrap()
    }

    fn text_view<'a>(vars: &'a str, messages: &'a str, output: &'a str) -> TextView<'a> {
        TextView {
            request_id: "r1",
            status: "ok",
            variables: vars,
            messages,
            output,
            online_scores: r#"{"short":1.0,"json":0.0}"#,
            history_turns: None,
            detect_language: true,
        }
    }

    #[test]
    fn a_prompt_call_yields_input_output_and_assertion_features() {
        let mut w = WindowFeatures::new();
        w.push_text(
            &ex(),
            GroupKind::Prompt,
            &OutputSpec {
                json: Some(true),
                schema: None,
            },
            &text_view(
                r#"{"question":"What is the capital of France today?","n":3,"strict":true,"note":null}"#,
                r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"q"}]"#,
                "I'm sorry, but I cannot answer that question today, because the information you are looking for is not available to me at the moment.",
            ),
        );
        let f = &w.features;
        assert_eq!(f["input.question.words"], FeatureData::Numeric(vec![7.0]));
        assert_eq!(f["input.question.chars"], FeatureData::Numeric(vec![36.0]));
        assert_eq!(f["input.n.value"], FeatureData::Numeric(vec![3.0]));
        assert_eq!(
            f["input.strict.value"],
            FeatureData::Binary { yes: 1, n: 1 }
        );
        assert_eq!(
            f["input.note.missing"],
            FeatureData::Binary { yes: 1, n: 1 }
        );
        assert_eq!(f["input.history_turns"], FeatureData::Numeric(vec![1.0]));
        assert_eq!(f["output.refusal"], FeatureData::Binary { yes: 1, n: 1 });
        assert_eq!(f["output.json_valid"], FeatureData::Binary { yes: 0, n: 1 });
        assert_eq!(f["output.assertion.json"], FeatureData::Numeric(vec![0.0]));
        assert!(
            matches!(&f["output.language"], FeatureData::Categorical { counts, .. } if counts.contains_key("eng"))
        );
        assert_eq!(w.sample_ids, vec!["r1".to_string()]);
    }

    #[test]
    fn logged_history_turns_give_the_features_of_the_messages() {
        let messages = r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]"#;
        let (e, spec) = (ex(), OutputSpec::default());
        let mut from_text = WindowFeatures::new();
        from_text.push_text(
            &e,
            GroupKind::Prompt,
            &spec,
            &text_view("{}", messages, "x"),
        );
        let mut from_column = WindowFeatures::new();
        from_column.push_text(
            &e,
            GroupKind::Prompt,
            &spec,
            &TextView {
                history_turns: crate::logstore::history_turns(messages),
                ..text_view("{}", "", "x")
            },
        );
        assert_eq!(
            from_text.features["input.history_turns"],
            FeatureData::Numeric(vec![1.0])
        );
        assert_eq!(from_column, from_text);
    }

    #[test]
    fn a_pass_through_call_reads_the_last_user_message() {
        let mut w = WindowFeatures::new();
        w.push_text(
            &ex(),
            GroupKind::Model,
            &OutputSpec::default(),
            &text_view(
                "{}",
                r#"[{"role":"user","content":"one two"},{"role":"assistant","content":"x"},{"role":"user","content":"three four five"}]"#,
                "{\"a\": 1}",
            ),
        );
        assert_eq!(
            w.features["input.last_user.words"],
            FeatureData::Numeric(vec![3.0])
        );
        assert_eq!(
            w.features["output.json_valid"],
            FeatureData::Binary { yes: 1, n: 1 }
        );
    }

    #[test]
    fn columns_count_operations_and_feedback() {
        let mut w = WindowFeatures::new();
        let base = ColumnsView {
            status: "ok",
            latency_ms: 100.0,
            ttft_ms: Some(10.0),
            input_tokens: 10,
            output_tokens: 20,
            cost: 0.001,
            upstream_model: "m",
            online_pass: Some(true),
            feedback: Some(FeedbackView {
                score: 1.0,
                label: Some("good"),
            }),
        };
        w.push_columns(&base);
        w.push_columns(&ColumnsView {
            status: "timeout",
            feedback: None,
            online_pass: None,
            ..base
        });
        w.push_columns(&ColumnsView {
            status: "client_closed",
            feedback: None,
            online_pass: None,
            ..base
        });
        let f = &w.all_features();
        assert_eq!(w.calls, 3);
        assert_eq!(f["ops.error_rate"], FeatureData::Binary { yes: 1, n: 2 });
        assert_eq!(f["ops.timeout_rate"], FeatureData::Binary { yes: 1, n: 2 });
        assert_eq!(f["ops.latency_ms"], FeatureData::Numeric(vec![100.0]));
        assert_eq!(f["feedback.share"], FeatureData::Binary { yes: 1, n: 3 });
        assert_eq!(
            f["output.online_pass"],
            FeatureData::Binary { yes: 1, n: 1 }
        );
    }

    #[test]
    fn merging_parts_equals_reading_them_together() {
        let e = ex();
        let spec = OutputSpec::default();
        let views = [
            text_view(r#"{"q":"a b"}"#, "[]", "x y z"),
            text_view(r#"{"q":"c"}"#, "[]", "{}"),
        ];
        let mut whole = WindowFeatures::new();
        for v in &views {
            whole.push_text(&e, GroupKind::Prompt, &spec, v);
        }
        let mut a = WindowFeatures::new();
        a.push_text(&e, GroupKind::Prompt, &spec, &views[0]);
        let mut b = WindowFeatures::new();
        b.push_text(&e, GroupKind::Prompt, &spec, &views[1]);
        a.merge(b);
        assert_eq!(a, whole);
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn request_id_hashes_do_not_collide() {
        let mut seen = std::collections::HashSet::new();
        for prefix in ["ref", "cur", "r7", "0190f3c2-7b1e-7a44-9c3e-"] {
            for i in 0..100_000 {
                assert!(
                    seen.insert(id_hash(&format!("{prefix}-{i:08}"))),
                    "{prefix}-{i}"
                );
            }
        }
    }
}
