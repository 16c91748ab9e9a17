//! The `drift:` section of `promptgate.yaml`: which windows of the request
//! log are compared, how often serve compares them, the false-discovery
//! rate, the practical thresholds, and what happens when drift is found.
//!
//! Windows and the schedule are parsed while the file is read (a malformed
//! one is an error at its line and column), so a [`DriftConfig`] that
//! exists is valid: no second validation step.
//!
//! ```yaml
//! drift:
//!   reference: first:2000          # the first 2000 calls of the stable version
//!   current: last:2000             # the latest 2000 calls
//!   schedule: 1h                   # serve's analyzer; `off` disables it
//!   fdr: 0.05
//!   min_rows: 200
//!   thresholds: { wasserstein: 0.1, jensen_shannon: 0.1, cohen_h: 0.1, auc: 0.55 }
//!   refusal_phrases: ["I'm sorry", "I cannot"]
//!   on_drift: alert                # or review
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::dataset::DatasetRef;

/// The `drift:` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// The window drift is measured against.
    #[serde(default = "default_reference")]
    pub reference: WindowSpec,
    /// The window that may have drifted.
    #[serde(default = "default_current")]
    pub current: WindowSpec,
    /// How often serve's analyzer compares the windows.
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    /// Benjamini-Hochberg false-discovery rate across a prompt's features.
    #[serde(default = "default_fdr")]
    pub fdr: f64,
    /// Fewer calls than this in a window (or observations of a feature) is
    /// "not enough data", never a pass.
    #[serde(default = "default_min_rows")]
    pub min_rows: u64,
    /// Text-derived features (lengths, JSON, refusals, content) are computed
    /// on a uniform sample of at most this many calls per window; columns
    /// (latency, tokens, cost, status, feedback) on every call.
    #[serde(default = "default_sample_rows")]
    pub sample_rows: u64,
    /// Language detection, the slowest feature, on at most this many calls
    /// per window (a subset of the text sample).
    #[serde(default = "default_language_rows")]
    pub language_rows: u64,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Case-insensitive phrases that mark an output as a refusal; replaces
    /// the defaults ([`DEFAULT_REFUSAL_PHRASES`]); `[]` turns refusal
    /// detection off. Checked when the file is read: a blank phrase, or a
    /// list too large to compile into one matcher, is refused there.
    #[serde(default, deserialize_with = "refusal_phrases")]
    pub refusal_phrases: Option<Vec<String>>,
    #[serde(default)]
    pub on_drift: OnDrift,
    /// Prompt ids (or `model:<name>` for pass-through traffic) to watch;
    /// empty: every prompt and model with traffic.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// URL POSTed with the drift report (JSON) when drift is found.
    #[serde(default)]
    pub webhook: Option<String>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            reference: default_reference(),
            current: default_current(),
            schedule: default_schedule(),
            fdr: default_fdr(),
            min_rows: default_min_rows(),
            sample_rows: default_sample_rows(),
            language_rows: default_language_rows(),
            thresholds: Thresholds::default(),
            refusal_phrases: None,
            on_drift: OnDrift::default(),
            prompts: Vec::new(),
            webhook: None,
        }
    }
}

/// Default size of the windows, in calls.
pub const DEFAULT_WINDOW_CALLS: u64 = 2000;

fn default_reference() -> WindowSpec {
    WindowSpec::First(DEFAULT_WINDOW_CALLS)
}
fn default_current() -> WindowSpec {
    WindowSpec::Last(DEFAULT_WINDOW_CALLS)
}
fn default_schedule() -> Schedule {
    Schedule(Some(Duration::from_secs(3600)))
}
fn default_fdr() -> f64 {
    0.05
}
fn default_min_rows() -> u64 {
    200
}
fn default_sample_rows() -> u64 {
    10_000
}
fn default_language_rows() -> u64 {
    1_000
}

/// Refusal phrases used when `refusal_phrases` is not set: the openings of
/// the common refusals of instruction-tuned models, matched anywhere in the
/// output, case-insensitively (curly apostrophes too).
pub const DEFAULT_REFUSAL_PHRASES: &[&str] = &[
    "I'm sorry, but",
    "I am sorry, but",
    "I'm sorry, I can't",
    "I cannot help with",
    "I can't help with",
    "I cannot assist with",
    "I can't assist with",
    "I cannot provide",
    "I can't provide",
    "I'm not able to",
    "I am not able to",
    "I'm unable to",
    "I am unable to",
    "As an AI",
    "I must decline",
    "I won't be able to",
];

fn refusal_phrases<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    use serde::de::Error;
    let phrases = Option::<Vec<String>>::deserialize(d)?;
    if let Some(list) = &phrases {
        for (i, p) in list.iter().enumerate() {
            if p.trim().is_empty() {
                return Err(D::Error::custom(format!(
                    "phrase {} is blank (it would match nothing; remove it)",
                    i + 1
                )));
            }
        }
        // The same matcher drift builds at run time: built here, it cannot
        // fail there.
        refusal_regex(list).map_err(D::Error::custom)?;
    }
    Ok(phrases)
}

/// The pattern that finds any of `phrases` in a text: case-insensitive,
/// whitespace-tolerant, a typographic apostrophe read as `'`. `None` when
/// no phrase is left after trimming (refusal detection off); an error when
/// the pattern is too large to compile.
pub fn refusal_regex<S: AsRef<str>>(phrases: &[S]) -> Result<Option<regex::Regex>, String> {
    let alternatives: Vec<String> = phrases
        .iter()
        .map(|p| p.as_ref().trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            // A run of whitespace in a phrase matches any run in the text.
            p.split_whitespace()
                .map(|w| regex::escape(w).replace('\'', "['\u{2019}]"))
                .collect::<Vec<_>>()
                .join(r"\s+")
        })
        .collect();
    if alternatives.is_empty() {
        return Ok(None);
    }
    let pattern = format!("(?i)(?:{})", alternatives.join("|"));
    regex::RegexBuilder::new(&pattern)
        .size_limit(1 << 24)
        .build()
        .map(Some)
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "the phrases are too many or too long: their matcher exceeds {} MiB",
                limit >> 20
            ),
            other => format!("refusal phrases: {other}"),
        })
}

/// Practical thresholds: a feature drifts only when its effect size reaches
/// its threshold (and its q-value is below `fdr`), so a very large window
/// does not flag a trivial shift.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Numeric features: Wasserstein-1 distance over the reference standard
    /// deviation.
    #[serde(default = "default_wasserstein")]
    pub wasserstein: f64,
    /// Categorical features: Jensen-Shannon distance (base 2).
    #[serde(default = "default_jensen_shannon")]
    pub jensen_shannon: f64,
    /// Proportions: |Cohen's h|.
    #[serde(default = "default_cohen_h")]
    pub cohen_h: f64,
    /// Text content: held-out AUC of the domain classifier.
    #[serde(default = "default_auc")]
    pub auc: f64,
}

fn default_wasserstein() -> f64 {
    0.1
}
fn default_jensen_shannon() -> f64 {
    0.1
}
fn default_cohen_h() -> f64 {
    0.1
}
fn default_auc() -> f64 {
    0.55
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            wasserstein: default_wasserstein(),
            jensen_shannon: default_jensen_shannon(),
            cohen_h: default_cohen_h(),
            auc: default_auc(),
        }
    }
}

/// What serve does when drift is found. Drift never rolls anything back:
/// it is not a regression verdict.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// A warning in the log and the webhook, if set.
    #[default]
    Alert,
    /// As `alert`, and sample calls of the drifted window go to the review queue.
    Review,
}

/// A window of the request log, as written in `promptgate.yaml` and on the
/// command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum WindowSpec {
    /// `first:N`: the first N calls served by the stable version of the
    /// prompt (the first N calls of the stable commit for pass-through models).
    First(u64),
    /// `last:N`: the latest N calls.
    Last(u64),
    /// `last:24h` (s, m, h, d): the calls of the last period.
    LastFor(Duration),
    /// `A..B`: calls at or after A and before B; each a UTC date
    /// `YYYY-MM-DD` (its midnight) or an RFC 3339 time; either may be empty.
    Range {
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    },
    /// `commit:SHA`: the calls served from this commit (a prefix of at least
    /// 7 hex digits).
    Commit(String),
    /// `dataset:NAME@vN`: the rows of a dataset version, columns named like
    /// the prompt's variables. Inputs only.
    Dataset(DatasetRef),
    /// `eval:SUITE`: the pinned dataset of an eval suite, through its
    /// variable mapping. Inputs only.
    Eval(String),
}

impl WindowSpec {
    /// Whether the window holds only inputs (a dataset, no model calls).
    pub fn inputs_only(&self) -> bool {
        matches!(self, WindowSpec::Dataset(_) | WindowSpec::Eval(_))
    }
}

/// A duration such as `30s`, `15m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 30m, 24h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (s, m, h, d)")),
    };
    if secs == 0 {
        return Err(format!("`{s}`: a duration must be positive"));
    }
    Ok(Duration::from_secs(secs))
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

fn parse_bound(s: &str) -> Result<Option<DateTime<Utc>>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| Some(d.and_time(chrono::NaiveTime::MIN).and_utc()))
        .map_err(|_| format!("`{s}` is neither a date YYYY-MM-DD nor an RFC 3339 time"))
}

fn parse_count(s: &str, whole: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "`{whole}`: the number of calls must be a positive integer"
        )),
    }
}

impl FromStr for WindowSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let help = "use first:N, last:N, last:24h, A..B (dates or RFC 3339 times), commit:SHA, dataset:NAME@vN or eval:SUITE";
        if let Some(rest) = s.strip_prefix("first:") {
            return parse_count(rest, s).map(WindowSpec::First);
        }
        if let Some(rest) = s.strip_prefix("last:") {
            if rest.chars().all(|c| c.is_ascii_digit()) {
                return parse_count(rest, s).map(WindowSpec::Last);
            }
            return parse_duration(rest)
                .map(WindowSpec::LastFor)
                .map_err(|e| format!("`{s}`: {e}"));
        }
        if let Some(rest) = s.strip_prefix("commit:") {
            if rest.len() < 7 || rest.len() > 64 || !rest.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("`{s}`: a commit is 7 to 64 hexadecimal digits"));
            }
            return Ok(WindowSpec::Commit(rest.to_ascii_lowercase()));
        }
        if let Some(rest) = s.strip_prefix("dataset:") {
            return rest.parse::<DatasetRef>().map(WindowSpec::Dataset);
        }
        if let Some(rest) = s.strip_prefix("eval:") {
            if rest.is_empty() || rest.contains(['/', '\\']) || rest.contains("..") {
                return Err(format!("`{s}`: not an eval suite name"));
            }
            return Ok(WindowSpec::Eval(rest.to_string()));
        }
        if let Some((a, b)) = s.split_once("..") {
            let from = parse_bound(a)?;
            let until = parse_bound(b)?;
            if let (Some(f), Some(u)) = (from, until)
                && f >= u
            {
                return Err(format!(
                    "`{s}`: the range is empty (start is not before end)"
                ));
            }
            return Ok(WindowSpec::Range { from, until });
        }
        Err(format!("`{s}` is not a window: {help}"))
    }
}

impl TryFrom<String> for WindowSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: &Option<DateTime<Utc>>| match t {
            None => String::new(),
            Some(t) if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        };
        match self {
            WindowSpec::First(n) => write!(f, "first:{n}"),
            WindowSpec::Last(n) => write!(f, "last:{n}"),
            WindowSpec::LastFor(d) => write!(f, "last:{}", format_duration(*d)),
            WindowSpec::Range { from, until } => write!(f, "{}..{}", time(from), time(until)),
            WindowSpec::Commit(c) => write!(f, "commit:{c}"),
            WindowSpec::Dataset(d) => write!(f, "dataset:{d}"),
            WindowSpec::Eval(s) => write!(f, "eval:{s}"),
        }
    }
}

impl From<WindowSpec> for String {
    fn from(w: WindowSpec) -> String {
        w.to_string()
    }
}

/// How often serve runs drift: a duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schedule(pub Option<Duration>);

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s == "off" {
            return Ok(Schedule(None));
        }
        parse_duration(&s)
            .map(|d| Schedule(Some(d)))
            .map_err(|e| format!("{e}, or `off`"))
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.0.map_or_else(|| "off".to_string(), format_duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FileKind, SourceFile};
    use proptest::prelude::*;

    #[test]
    fn windows_parse_in_every_documented_form() {
        let p = |s: &str| s.parse::<WindowSpec>();
        assert_eq!(p("first:500"), Ok(WindowSpec::First(500)));
        assert_eq!(p("last:2000"), Ok(WindowSpec::Last(2000)));
        assert_eq!(
            p("last:24h"),
            Ok(WindowSpec::LastFor(Duration::from_secs(86_400)))
        );
        let r = p("2026-11-01..2026-11-08").unwrap();
        assert_eq!(r.to_string(), "2026-11-01..2026-11-08");
        let open = p("2026-11-01T12:00:00+01:00..").unwrap();
        assert_eq!(open.to_string(), "2026-11-01T11:00:00Z..");
        assert_eq!(
            p("commit:ABCDEF1"),
            Ok(WindowSpec::Commit("abcdef1".into()))
        );
        assert!(matches!(p("dataset:faq@v2"), Ok(WindowSpec::Dataset(_))));
        assert_eq!(p("eval:smoke"), Ok(WindowSpec::Eval("smoke".into())));
        for bad in [
            "last:0",
            "first:x",
            "last:5w",
            "2026-11-08..2026-11-01",
            "2026-13-01..",
            "commit:xyz",
            "commit:abc",
            "dataset:faq",
            "yesterday",
            "eval:../x",
        ] {
            assert!(p(bad).is_err(), "{bad} parsed");
        }
    }

    proptest! {
        #[test]
        fn windows_round_trip_through_text(n in 1u64..1_000_000, secs in 1u64..10_000_000, which in 0usize..4) {
            let w = match which {
                0 => WindowSpec::First(n),
                1 => WindowSpec::Last(n),
                2 => WindowSpec::LastFor(Duration::from_secs(secs)),
                _ => WindowSpec::Range {
                    from: DateTime::from_timestamp(secs as i64, 0),
                    until: DateTime::from_timestamp(secs as i64 + n as i64, 0),
                },
            };
            prop_assert_eq!(w.to_string().parse::<WindowSpec>(), Ok(w));
        }

        #[test]
        fn window_parsing_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<WindowSpec>();
        }
    }

    fn config(drift: &str) -> Result<crate::spec::config::Config, Vec<crate::spec::Diagnostic>> {
        let text = format!(
            "version: 1\nproviders:\n  local: {{kind: ollama, base_url: \"http://127.0.0.1:1\"}}\nmodels:\n  m: {{provider: local, name: x}}\n{drift}"
        );
        SourceFile::new("promptgate.yaml", text).parse(FileKind::Config)
    }

    #[test]
    fn the_section_defaults_and_parses() {
        let c = config("").unwrap();
        assert_eq!(c.drift, None);
        let c = config(
            "drift:\n  current: last:24h\n  fdr: 0.1\n  on_drift: review\n  schedule: off\n",
        )
        .unwrap();
        let d = c.drift.unwrap();
        assert_eq!(d.current, WindowSpec::LastFor(Duration::from_secs(86_400)));
        assert_eq!(d.reference, WindowSpec::First(DEFAULT_WINDOW_CALLS));
        assert_eq!(d.fdr, 0.1);
        assert_eq!(d.on_drift, OnDrift::Review);
        assert_eq!(d.schedule, Schedule(None));
        assert_eq!(d.thresholds, Thresholds::default());
    }

    #[test]
    fn refusal_phrases_compile_into_one_matcher() {
        let r = refusal_regex(&["I'm sorry", "as an  AI"]).unwrap().unwrap();
        assert!(r.is_match("well, I\u{2019}M SORRY but"));
        assert!(r.is_match("As an\nai model"));
        assert!(!r.is_match("sorry"));
        assert!(refusal_regex(&[] as &[&str]).unwrap().is_none());
    }

    #[test]
    fn a_malformed_section_is_an_error_at_its_line() {
        let cases = [
            (
                "drift:\n  current: last:5w\n",
                7,
                "drift.current",
                "unknown unit",
            ),
            ("drift:\n  fdr: 1.5\n", 7, "drift.fdr", ""),
            ("drift:\n  on_drift: rollback\n", 7, "drift.on_drift", ""),
            (
                "drift:\n  thresholds: {auc: 2}\n",
                7,
                "drift.thresholds.auc",
                "",
            ),
            (
                "drift:\n  windw: last:5\n",
                7,
                "drift.windw",
                "unknown field",
            ),
            (
                "drift:\n  reference: 2026-11-08..2026-11-01\n",
                7,
                "drift.reference",
                "empty",
            ),
            (
                "drift:\n  schedule: sometimes\n",
                7,
                "drift.schedule",
                "off",
            ),
            (
                "drift:\n  fdr: 0.1\n  refusal_phrases:\n    - I'm sorry\n    - \"   \"\n",
                9,
                "drift.refusal_phrases",
                "phrase 2 is blank",
            ),
            (
                &format!(
                    "drift:\n  refusal_phrases: [{}]\n",
                    (0..2000)
                        .map(|i| format!("\"{i} I'm sorry {}\"", "ü".repeat(150)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                7,
                "drift.refusal_phrases",
                "too many or too long",
            ),
        ];
        for (section, line, field, needle) in cases {
            let errs = config(section).unwrap_err();
            let d = &errs[0];
            assert_eq!(
                (d.line, d.field.as_str()),
                (line, field),
                "{section}: {errs:?}"
            );
            assert!(d.message.contains(needle), "{section}: {}", d.message);
        }
    }
}
