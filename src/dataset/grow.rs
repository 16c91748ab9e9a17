//! `dataset grow NAME --from-reviews`: reviewed production calls become
//! rows of dataset v(n+1), committed on a new branch.
//!
//! Everything is read from one commit (the base, default HEAD) and written
//! as one new commit on a new branch; the working tree, the base branch and
//! the existing snapshots are never touched. Steps:
//!
//! 1. The base's `rows.jsonl` must have the content of the latest snapshot
//!    (and the working tree's must equal the base's): a hand edit since the
//!    last snapshot is refused, since v(n+1) would carry it unreviewed.
//! 2. Each decided call (`accept` or `correct`) of a suite that uses the
//!    dataset maps back to a row: the bound variables through the inverse
//!    of the suite's `vars` ([`crate::binding::inverse_vars`]), the expected
//!    answer (the output when accepted, the correction's text otherwise)
//!    into the one column the suite's assertions read that is not an input,
//!    the correction's `columns` as given, and the provenance columns.
//! 3. Each row gets a stable key: its value is `rv-` and 16 hex digits of
//!    the sha256 of the canonical JSON of its input columns (an integer key
//!    column gets the first 52 bits), so the same inputs give the same key.
//! 4. Rows whose key already exists with the same content, and calls already
//!    in the dataset (by `source_request_id`), are reported as duplicates and
//!    skipped; the same key with different content (two reviewers correcting
//!    the same inputs differently, or a correction of an existing row) is a
//!    conflict: reported, and nothing is written unless `skip_conflicts`.
//! 5. Provenance columns ([`PROVENANCE`]) are declared in `dataset.yaml`
//!    (added as optional strings when missing), the rows are appended to
//!    `rows.jsonl`, v(n+1) is encoded as `dataset snapshot` would, every
//!    suite naming `NAME@vK` is moved to `NAME@v(n+1)`, and all of it is
//!    committed on the branch with a message listing each row's source.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::rows::parse_rows;
use super::store::{self, LOCK_FILE, ROWS_FILE, SPEC_FILE, content_hash, load_lock, load_schema};
use super::{DatasetError, Row, canonical_json, dataset_dir};
use crate::project::{LoadOptions, Project};
use crate::repo::{FileSource, GitRepo, WorkTree};
use crate::spec::dataset::ColumnType;

/// The provenance columns every grown row carries.
pub const PROVENANCE: &[(&str, &str)] = &[
    (
        "source_request_id",
        "The production call this row was reviewed from.",
    ),
    (
        "source_prompt_version",
        "The prompt version (git blob) that served the call.",
    ),
    ("reviewer", "Who accepted or corrected the call."),
    (
        "reviewed_at",
        "When the decision was taken (RFC 3339, UTC).",
    ),
];

/// A decided call, as `dataset grow` needs it.
#[derive(Debug, Clone)]
pub struct ReviewedCall {
    pub request_id: String,
    pub suite: Option<String>,
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
    /// The bound variables of the call.
    pub variables: Map<String, Value>,
    pub output: String,
    pub reviewer: String,
    pub decided_at: DateTime<Utc>,
    /// None: accepted (the output is the expected answer).
    pub expected: Option<String>,
    pub columns: Map<String, Value>,
    /// Where the decision was read from (a queue folder), for messages.
    pub origin: String,
}

/// What to grow.
#[derive(Debug, Clone)]
pub struct GrowOptions {
    pub name: String,
    /// The ref the branch starts from.
    pub base: String,
    /// The branch to create (default `dataset/<name>-v<N>`).
    pub branch: Option<String>,
    /// Commit even when conflicts were found (without the conflicting rows).
    pub skip_conflicts: bool,
}

/// A grown row and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrownRow {
    pub key: String,
    pub request_id: String,
    pub reviewer: String,
    pub suite: String,
    pub kind: &'static str,
}

/// Two sources that want different rows under one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    pub key: String,
    /// Request ids (or `existing row`) that disagree.
    pub sources: Vec<String>,
    pub message: String,
}

/// What `dataset grow` did (or would refuse).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrowReport {
    pub name: String,
    pub from_version: u32,
    pub to_version: Option<u32>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub added: Vec<GrownRow>,
    /// Request ids skipped as duplicates (already in the dataset, or the
    /// same row as another reviewed call), with the reason.
    pub duplicates: Vec<(String, String)>,
    pub conflicts: Vec<Conflict>,
    /// Decided calls of other suites/datasets, or labelled / discarded.
    pub ignored: usize,
    pub suites_moved: Vec<String>,
    pub provenance_declared: bool,
}

/// Why a grow is refused.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error("{0}")]
    Project(String),
    #[error(
        "{path} was edited since the last snapshot v{version} (its content is not the snapshot's); \
         run `promptgate dataset snapshot {name}` and commit, or revert the edit, before growing from reviews"
    )]
    EditedSinceSnapshot {
        name: String,
        path: String,
        version: u32,
    },
    #[error("dataset `{0}` has no snapshot yet: run `promptgate dataset snapshot {0}` first")]
    NoSnapshot(String),
    #[error("review of request `{request_id}` (suite `{suite}`): {message}; nothing written")]
    Unmappable {
        request_id: String,
        suite: String,
        message: String,
    },
    #[error("{} conflict(s), nothing written (--skip-conflicts commits the other rows):\n{}", .0.len(), render_conflicts(.0))]
    Conflicts(Vec<Conflict>),
    #[error("no reviewed call of a suite using dataset `{0}` to add")]
    Nothing(String),
    #[error("branch {0} exists already; pass another --branch")]
    BranchExists(String),
}

impl GrowError {
    /// About the reviews or the data (exit 1), not about being unable to run.
    pub fn is_invalid_data(&self) -> bool {
        !matches!(self, GrowError::Repo(_) | GrowError::Project(_))
    }
}

fn render_conflicts(c: &[Conflict]) -> String {
    c.iter()
        .map(|c| {
            format!(
                "  key {}: {} ({})",
                c.key,
                c.message,
                c.sources.join(" vs ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How one suite's calls map back to rows.
struct SuiteMap {
    prompt: String,
    inputs: BTreeMap<String, String>,
    /// The column an accepted output or `expected` text goes into.
    expected_column: Result<String, String>,
}

fn suite_maps(project: &Project, name: &str) -> Result<BTreeMap<String, SuiteMap>, GrowError> {
    let ds = project
        .datasets
        .get(name)
        .ok_or_else(|| GrowError::Project(format!("dataset `{name}` is not defined")))?;
    let columns: BTreeMap<String, bool> = ds
        .spec
        .columns
        .iter()
        .map(|(c, s)| (c.clone(), s.required))
        .collect();
    let mut out = BTreeMap::new();
    for (suite_name, e) in &project.evals {
        if e.dataset.name != name {
            continue;
        }
        let prompt = project
            .prompt(&e.suite.prompt)
            .map_err(|err| GrowError::Project(err.to_string()))?;
        let inverse = crate::binding::inverse_vars(&e.suite.vars, &prompt.prompt.inputs, &columns);
        let inputs: BTreeSet<&String> = inverse.columns.values().collect();
        let mut read = BTreeSet::new();
        for a in &e.assertions {
            if let Ok(c) = crate::eval::assertions::CompiledAssertion::compile(a) {
                read.extend(c.columns_read());
            }
        }
        let candidates: Vec<String> = read
            .into_iter()
            .filter(|c| !inputs.contains(c) && columns.contains_key(c) && *c != ds.spec.key)
            .collect();
        let expected_column = match candidates.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "the assertions of suite `{suite_name}` read no dataset column besides the inputs, so there is no column for the expected answer; correct with columns instead"
            )),
            many => Err(format!(
                "the assertions of suite `{suite_name}` read several columns ({}); name each in the correction's columns",
                many.join(", ")
            )),
        };
        out.insert(
            suite_name.clone(),
            SuiteMap {
                prompt: e.suite.prompt.clone(),
                inputs: inverse.columns,
                expected_column,
            },
        );
    }
    Ok(out)
}

/// The stable key of a row: a hash of its input columns.
fn stable_key(kind: ColumnType, inputs: &Map<String, Value>) -> Value {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(canonical_json(&Value::Object(inputs.clone())).as_bytes());
    match kind {
        ColumnType::Integer => {
            let n = u64::from_be_bytes([
                digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6],
                digest[7],
            ]) >> 12;
            Value::from(n as i64)
        }
        _ => Value::String(format!("rv-{}", &hex::encode(digest)[..16])),
    }
}

/// Builds the row of one reviewed call.
fn row_of(
    call: &ReviewedCall,
    suite: &str,
    map: &SuiteMap,
    spec: &crate::spec::dataset::DatasetSpec,
) -> Result<(Row, Map<String, Value>), GrowError> {
    let fail = |message: String| GrowError::Unmappable {
        request_id: call.request_id.clone(),
        suite: suite.to_string(),
        message,
    };
    let mut row = Map::new();
    let mut inputs = Map::new();
    for (var, column) in &map.inputs {
        let v = call.variables.get(var).cloned().unwrap_or(Value::Null);
        if let Some(prev) = inputs.get(column)
            && *prev != v
        {
            return Err(fail(format!(
                "variables map to column `{column}` with different values ({prev} and {v}); the suite's vars are ambiguous (see `promptgate validate`)"
            )));
        }
        inputs.insert(column.clone(), v);
    }
    row.extend(inputs.clone());
    let expected = call
        .expected
        .clone()
        .or_else(|| call.columns.is_empty().then(|| call.output.clone()));
    if let Some(text) = expected {
        let column = map.expected_column.clone().map_err(&fail)?;
        row.insert(column, Value::String(text));
    }
    for (c, v) in &call.columns {
        if !spec.columns.contains_key(c) || PROVENANCE.iter().any(|(p, _)| p == c) || *c == spec.key
        {
            return Err(fail(format!(
                "the correction sets column `{c}`, which dataset has not as a correctable column (columns: {})",
                spec.columns.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        row.insert(c.clone(), v.clone());
    }
    let key_kind = spec
        .columns
        .get(&spec.key)
        .map_or(ColumnType::String, |c| c.kind);
    row.insert(spec.key.clone(), stable_key(key_kind, &inputs));
    let prov = [
        call.request_id.clone(),
        call.prompt_version.clone().unwrap_or_default(),
        call.reviewer.clone(),
        call.decided_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ];
    for ((c, _), v) in PROVENANCE.iter().zip(prov) {
        row.insert((*c).to_string(), Value::String(v));
    }
    Ok((row, inputs))
}

/// `dataset.yaml` with the provenance columns declared, or None when they are.
fn declare_provenance(text: &str, spec: &crate::spec::dataset::DatasetSpec) -> Option<String> {
    let missing: Vec<&(&str, &str)> = PROVENANCE
        .iter()
        .filter(|(c, _)| !spec.columns.contains_key(*c))
        .collect();
    if missing.is_empty() {
        return None;
    }
    // Append under `columns:` when it is the last top-level key, keeping the
    // file's comments and layout; otherwise rewrite it.
    let last_top = text
        .lines()
        .rfind(|l| !l.starts_with([' ', '#', '\t']) && !l.trim().is_empty());
    let indent = text
        .lines()
        .skip_while(|l| !l.starts_with("columns:"))
        .nth(1)
        .map(|l| l.len() - l.trim_start().len())
        .filter(|n| *n > 0)
        .unwrap_or(2);
    if last_top.is_some_and(|l| l.trim_end() == "columns:") {
        let pad = " ".repeat(indent);
        let mut out = text.trim_end_matches('\n').to_string();
        out.push('\n');
        for (c, d) in missing {
            out.push_str(&format!(
                "{pad}{c}:\n{pad}{pad}type: string\n{pad}{pad}required: false\n{pad}{pad}description: \"{d}\"\n"
            ));
        }
        return Some(out);
    }
    let mut spec = spec.clone();
    for (c, d) in missing {
        spec.columns.insert(
            (*c).to_string(),
            crate::spec::dataset::ColumnSpec {
                kind: ColumnType::String,
                required: false,
                description: Some((*d).to_string()),
            },
        );
    }
    serde_yaml_ng::to_string(&spec)
        .ok()
        .map(|y| format!("# yaml-language-server: $schema=../../schema/dataset.schema.json\n{y}"))
}

/// Moves `dataset: NAME@vK` to `NAME@v<to>` in a suite file's text.
fn move_suite(text: &str, name: &str, to: u32) -> Option<String> {
    let re = regex::Regex::new(&format!(
        r#"(?m)^(dataset:\s*["']?){}@v\d+(["']?\s*(#.*)?)$"#,
        regex::escape(name)
    ))
    .ok()?;
    let out = re.replace(text, format!("${{1}}{name}@v{to}${{2}}").as_str());
    (out != text).then(|| out.into_owned())
}

/// Grows the dataset from `calls`; see the module docs.
pub fn grow(
    git: &GitRepo,
    calls: &[ReviewedCall],
    opts: &GrowOptions,
) -> Result<GrowReport, GrowError> {
    let name = &opts.name;
    let dir = dataset_dir(name)?;
    let base = git.resolve(&opts.base)?;
    let tree = git.tree_at(&base.to_string())?;
    let project = Project::load(&tree, &LoadOptions { resolve_ref: None })
        .map_err(|e| GrowError::Project(format!("reading {}: {e}", opts.base)))?;
    let (spec, schema) = load_schema(&tree, name)?;
    let lock = load_lock(&tree, name)?;
    let latest = lock
        .latest()
        .ok_or_else(|| GrowError::NoSnapshot(name.clone()))?;
    let problems = store::verify_snapshots(&tree, name, &lock)?;
    if !problems.is_empty() {
        return Err(DatasetError::Integrity(problems).into());
    }
    let rows_path = format!("{dir}/{ROWS_FILE}");
    let rows_text = tree.read_string(&rows_path)?.unwrap_or_default();
    let edited = || GrowError::EditedSinceSnapshot {
        name: name.clone(),
        path: rows_path.clone(),
        version: latest.version,
    };
    let existing = parse_rows(&schema, &rows_text).map_err(|_| edited())?;
    if content_hash(&schema, &existing) != latest.content_sha256 {
        return Err(edited());
    }
    if let Some(root) = git.workdir() {
        let work = WorkTree::new(root).read(&rows_path)?;
        if work.as_deref().is_some_and(|w| w != rows_text.as_bytes()) {
            return Err(edited());
        }
    }

    let maps = suite_maps(&project, name)?;
    let mut report = GrowReport {
        name: name.clone(),
        from_version: latest.version,
        to_version: None,
        branch: None,
        commit: None,
        added: Vec::new(),
        duplicates: Vec::new(),
        conflicts: Vec::new(),
        ignored: 0,
        suites_moved: Vec::new(),
        provenance_declared: false,
    };
    // Existing rows by key and the calls already grown.
    let mut by_key: HashMap<String, (String, Row)> = existing
        .iter()
        .map(|r| (schema.key_text(r), ("existing row".to_string(), r.clone())))
        .collect();
    let grown: BTreeSet<&str> = existing
        .iter()
        .filter_map(|r| r.get(PROVENANCE[0].0).and_then(Value::as_str))
        .collect();
    // The same call decided in two queues.
    let mut seen_calls: HashMap<&str, &ReviewedCall> = HashMap::new();
    let mut new_rows: BTreeMap<String, (Row, &ReviewedCall, String)> = BTreeMap::new();
    let mut conflicted: BTreeSet<String> = BTreeSet::new();
    for call in calls {
        let suite = match call.suite.as_deref() {
            Some(s) if maps.contains_key(s) => s.to_string(),
            Some(_) => {
                report.ignored += 1;
                continue;
            }
            None => match maps
                .iter()
                .find(|(_, m)| call.prompt_id.as_deref() == Some(m.prompt.as_str()))
            {
                Some((s, _)) => s.clone(),
                None => {
                    report.ignored += 1;
                    continue;
                }
            },
        };
        if grown.contains(call.request_id.as_str()) {
            report
                .duplicates
                .push((call.request_id.clone(), "already in the dataset".into()));
            continue;
        }
        if let Some(prev) = seen_calls.insert(&call.request_id, call) {
            if prev.expected != call.expected || prev.columns != call.columns {
                report.conflicts.push(Conflict {
                    key: call.request_id.clone(),
                    sources: vec![
                        format!("{} in {}", prev.reviewer, prev.origin),
                        format!("{} in {}", call.reviewer, call.origin),
                    ],
                    message: "the same call was decided differently".into(),
                });
                conflicted.insert(call.request_id.clone());
            } else {
                report
                    .duplicates
                    .push((call.request_id.clone(), "decided twice the same way".into()));
            }
            continue;
        }
        let (row, _) = row_of(call, &suite, &maps[&suite], &spec)?;
        let key = schema.key_text(&row);
        let content = |r: &Row| {
            let mut r = r.clone();
            for (p, _) in PROVENANCE {
                r.remove(*p);
            }
            r.retain(|_, v| !v.is_null());
            canonical_json(&Value::Object(r))
        };
        if let Some((src, other)) = by_key.get(&key) {
            if content(other) == content(&row) {
                report.duplicates.push((
                    call.request_id.clone(),
                    format!("same row as {src} (key {key})"),
                ));
            } else {
                report.conflicts.push(Conflict {
                    key: key.clone(),
                    sources: vec![
                        src.clone(),
                        format!("{} by {}", call.request_id, call.reviewer),
                    ],
                    message: "the same inputs with a different expected answer".into(),
                });
                conflicted.insert(key.clone());
            }
            continue;
        }
        by_key.insert(
            key.clone(),
            (
                format!("{} by {}", call.request_id, call.reviewer),
                row.clone(),
            ),
        );
        new_rows.insert(key, (row, call, suite));
    }
    new_rows.retain(|k, (_, c, _)| !conflicted.contains(k) && !conflicted.contains(&c.request_id));
    if !report.conflicts.is_empty() && !opts.skip_conflicts {
        return Err(GrowError::Conflicts(report.conflicts));
    }
    if new_rows.is_empty() {
        return Err(GrowError::Nothing(name.clone()));
    }

    // dataset.yaml with the provenance columns, and the schema it gives.
    let spec_path = format!("{dir}/{SPEC_FILE}");
    let spec_text = tree.read_string(&spec_path)?.unwrap_or_default();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let new_spec_text = declare_provenance(&spec_text, &spec);
    report.provenance_declared = new_spec_text.is_some();
    let source: Box<dyn FileSource> = Box::new(Overlay {
        base: &tree,
        files: new_spec_text
            .iter()
            .map(|t| (spec_path.clone(), t.as_bytes().to_vec()))
            .collect(),
    });
    let (_, new_schema) = load_schema(source.as_ref(), name)?;
    if let Some(t) = new_spec_text {
        files.push((spec_path, t.into_bytes()));
    }

    let mut text = rows_text.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let mut message_lines = Vec::new();
    for (key, (row, call, suite)) in &new_rows {
        let ordered: Map<String, Value> = new_schema
            .columns
            .iter()
            .filter_map(|c| row.get(&c.name).map(|v| (c.name.clone(), v.clone())))
            .collect();
        text.push_str(&serde_json::to_string(&ordered).unwrap_or_default());
        text.push('\n');
        let kind = if call.expected.is_none() && call.columns.is_empty() {
            "accepted"
        } else {
            "corrected"
        };
        report.added.push(GrownRow {
            key: key.clone(),
            request_id: call.request_id.clone(),
            reviewer: call.reviewer.clone(),
            suite: suite.clone(),
            kind,
        });
        message_lines.push(format!(
            "- {key}: request {} ({suite}, prompt version {}), {kind} by {} at {}",
            call.request_id,
            call.prompt_version
                .as_deref()
                .map_or("-", |v| &v[..v.len().min(12)]),
            call.reviewer,
            call.decided_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    let all = parse_rows(&new_schema, &text).map_err(|errors| DatasetError::InvalidRows {
        path: rows_path.clone(),
        errors,
    })?;
    let hash = content_hash(&new_schema, &all);
    let next = store::next_version(&new_schema, &all, &lock, name, hash)?;
    let to = next.locked.version;
    files.push((rows_path, text.into_bytes()));
    files.push((format!("{dir}/{}", next.locked.file), next.bytes));
    files.push((format!("{dir}/{LOCK_FILE}"), next.lock_text.into_bytes()));
    for (suite_name, e) in &project.evals {
        if e.dataset.name != *name {
            continue;
        }
        if let Some(t) = tree.read_string(&e.path)?
            && let Some(moved) = move_suite(&t, name, to)
        {
            files.push((e.path.clone(), moved.into_bytes()));
            report.suites_moved.push(suite_name.clone());
        }
    }

    let branch_name = opts
        .branch
        .clone()
        .unwrap_or_else(|| format!("dataset/{name}-v{to}"));
    let branch = git.branch_refname(&branch_name)?;
    if git.resolve(&branch).is_ok() {
        return Err(GrowError::BranchExists(branch_name));
    }
    let new_tree = git.tree_with_files(base, &files)?;
    let message = format!(
        "dataset {name}: v{to} from {} reviewed call(s)\n\n{} row(s) added to {name}@v{} -> v{to}; suites moved: {}.\n\n{}\n",
        report.added.len(),
        report.added.len(),
        latest.version,
        if report.suites_moved.is_empty() {
            "none".to_string()
        } else {
            report.suites_moved.join(", ")
        },
        message_lines.join("\n")
    );
    git.create_branch(&branch, base, &format!("promptgate dataset grow {name}"))?;
    let sig = git.signature()?;
    let done = git.commit_on_branch(&branch, base, new_tree, &message, &sig)?;
    report.to_version = Some(to);
    report.branch = Some(branch_name);
    report.commit = Some(done.commit.to_string());
    Ok(report)
}

/// A file source with some files replaced (the new dataset.yaml).
struct Overlay<'a> {
    base: &'a dyn FileSource,
    files: Vec<(String, Vec<u8>)>,
}

impl FileSource for Overlay<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, crate::repo::RepoError> {
        match self.files.iter().find(|(p, _)| p == path) {
            Some((_, b)) => Ok(Some(b.clone())),
            None => self.base.read(path),
        }
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, crate::repo::RepoError> {
        self.base.list(dir)
    }
    fn blob_id(&self, path: &str) -> Result<Option<String>, crate::repo::RepoError> {
        self.base.blob_id(path)
    }
    fn commit(&self) -> Option<git2::Oid> {
        self.base.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_move_to_the_new_version_and_nothing_else_changes() {
        let t = "prompt: capital\ndataset: capitals@v1\n# dataset: capitals@v1 stays\n";
        assert_eq!(
            move_suite(t, "capitals", 2).unwrap(),
            "prompt: capital\ndataset: capitals@v2\n# dataset: capitals@v1 stays\n"
        );
        assert!(move_suite(t, "other", 2).is_none());
        assert_eq!(
            move_suite("dataset: \"capitals@v3\" # pinned\n", "capitals", 4).unwrap(),
            "dataset: \"capitals@v4\" # pinned\n"
        );
    }

    #[test]
    fn the_key_is_a_function_of_the_inputs_only() {
        let a: Map<String, Value> = serde_json::from_str(r#"{"country":"France"}"#).unwrap();
        let b: Map<String, Value> = serde_json::from_str(r#"{"country":"Spain"}"#).unwrap();
        assert_eq!(
            stable_key(ColumnType::String, &a),
            stable_key(ColumnType::String, &a)
        );
        assert_ne!(
            stable_key(ColumnType::String, &a),
            stable_key(ColumnType::String, &b)
        );
        assert!(
            stable_key(ColumnType::Integer, &a)
                .as_i64()
                .is_some_and(|n| n >= 0)
        );
    }

    #[test]
    fn provenance_is_appended_under_columns_keeping_comments() {
        let text = "# a comment\nkey: id\ncolumns:\n  id:\n    type: string\n  country:\n    type: string\n";
        let spec: crate::spec::dataset::DatasetSpec = serde_yaml_ng::from_str(text).unwrap();
        let out = declare_provenance(text, &spec).unwrap();
        assert!(out.starts_with("# a comment\n"));
        let grown: crate::spec::dataset::DatasetSpec = serde_yaml_ng::from_str(&out).unwrap();
        for (c, _) in PROVENANCE {
            assert!(!grown.columns[*c].required, "{c}");
        }
        assert!(declare_provenance(&out, &grown).is_none());
    }
}
