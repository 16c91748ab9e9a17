//! The file kinds of a promptgate repository: their serde types, their JSON
//! Schemas, and parsing that turns every problem into a [`Diagnostic`] with
//! file, line, column and field.
//!
//! Parsing a file goes in three steps, each reported with positions: YAML
//! syntax, then the JSON Schema (all violations at once), then the typed
//! serde structs. Cross-file checks live in [`crate::project`].

pub mod config;
pub mod dataset;
pub(crate) mod diagnostic;
pub mod drift;
pub(crate) mod eval;
pub(crate) mod prompt;
pub mod rollout;
pub(crate) mod span;

use std::sync::OnceLock;

use serde::de::DeserializeOwned;

pub(crate) use diagnostic::{Diagnostic, Severity};
use diagnostic::{escape_segment, pointer_to_field};
use span::{Pos, SpanIndex};

/// Every kind of file promptgate reads from a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Config,
    Rollout,
    Prompt,
    Dataset,
    DatasetLock,
    Eval,
}

impl FileKind {
    pub const ALL: [FileKind; 6] = [
        FileKind::Config,
        FileKind::Rollout,
        FileKind::Prompt,
        FileKind::Dataset,
        FileKind::DatasetLock,
        FileKind::Eval,
    ];

    /// Name of the schema file under `schema/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            FileKind::Config => "promptgate.schema.json",
            FileKind::Rollout => "rollout.schema.json",
            FileKind::Prompt => "prompt.schema.json",
            FileKind::Dataset => "dataset.schema.json",
            FileKind::DatasetLock => "dataset-lock.schema.json",
            FileKind::Eval => "eval.schema.json",
        }
    }

    /// The schema text, embedded so an installed binary needs no files.
    pub fn schema_text(self) -> &'static str {
        match self {
            FileKind::Config => include_str!("../../schema/promptgate.schema.json"),
            FileKind::Rollout => include_str!("../../schema/rollout.schema.json"),
            FileKind::Prompt => include_str!("../../schema/prompt.schema.json"),
            FileKind::Dataset => include_str!("../../schema/dataset.schema.json"),
            FileKind::DatasetLock => include_str!("../../schema/dataset-lock.schema.json"),
            FileKind::Eval => include_str!("../../schema/eval.schema.json"),
        }
    }

    fn validator(self) -> Option<&'static jsonschema::Validator> {
        static VALIDATORS: [OnceLock<Option<jsonschema::Validator>>; 6] =
            [const { OnceLock::new() }; 6];
        let slot = FileKind::ALL.iter().position(|k| *k == self).unwrap_or(0);
        VALIDATORS[slot]
            .get_or_init(|| {
                let schema: serde_json::Value = serde_json::from_str(self.schema_text()).ok()?;
                jsonschema::validator_for(&schema).ok()
            })
            .as_ref()
    }
}

/// The text of one file and the positions of its nodes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    spans: SpanIndex,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        SourceFile {
            path: path.into(),
            spans: SpanIndex::build(&text),
            text,
        }
    }

    /// A diagnostic at the value of `pointer` (a JSON pointer into the file).
    pub fn at_value(
        &self,
        severity: Severity,
        pointer: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.at(severity, self.spans.value(pointer), pointer, message.into())
    }

    /// A diagnostic at the key of `pointer`, for problems with the entry itself.
    pub fn at_key(
        &self,
        severity: Severity,
        pointer: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.at(severity, self.spans.key(pointer), pointer, message.into())
    }

    /// A diagnostic at an explicit position.
    pub fn at_pos(
        &self,
        severity: Severity,
        line: usize,
        column: usize,
        field: &str,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.path.clone(),
            line,
            column,
            field: field.to_string(),
            message,
            source_line: self.line_text(line),
        }
    }

    fn at(&self, severity: Severity, pos: Pos, pointer: &str, message: String) -> Diagnostic {
        self.at_pos(
            severity,
            pos.line,
            pos.column,
            &pointer_to_field(pointer),
            message,
        )
    }

    fn line_text(&self, line: usize) -> Option<String> {
        self.text
            .lines()
            .nth(line.checked_sub(1)?)
            .map(|l| l.trim_end().to_string())
    }

    /// Parses the file as `kind` into `T`, reporting every problem found.
    pub fn parse<T: DeserializeOwned>(&self, kind: FileKind) -> Result<T, Vec<Diagnostic>> {
        let value: serde_json::Value = match serde_yaml_ng::from_str(&self.text) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                return Err(vec![self.at_pos(
                    Severity::Error,
                    line,
                    column,
                    "",
                    format!("invalid YAML: {}", strip_location(&e.to_string())),
                )]);
            }
        };
        let schema_errors = self.schema_errors(kind, &value);
        if !schema_errors.is_empty() {
            return Err(schema_errors);
        }
        serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
            let pointer = path_to_pointer(e.path());
            vec![self.at_value(Severity::Error, &pointer, e.inner().to_string())]
        })
    }

    fn schema_errors(&self, kind: FileKind, value: &serde_json::Value) -> Vec<Diagnostic> {
        let Some(validator) = kind.validator() else {
            return vec![self.at_pos(
                Severity::Error,
                1,
                1,
                "",
                format!(
                    "internal error: schema {} does not compile",
                    kind.schema_file()
                ),
            )];
        };
        let mut out: Vec<Diagnostic> = Vec::new();
        for err in validator.iter_errors(value) {
            let pointer = err.instance_path().as_str().to_string();
            match err.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        let child = format!("{pointer}/{}", escape_segment(name));
                        out.push(self.at_key(
                            Severity::Error,
                            &child,
                            format!("unknown field `{name}`"),
                        ));
                    }
                }
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let name = property
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| property.to_string());
                    let mut d = self.at_key(
                        Severity::Error,
                        &pointer,
                        format!("missing required field `{name}`"),
                    );
                    d.field = pointer_to_field(&format!("{pointer}/{}", escape_segment(&name)));
                    out.push(d);
                }
                _ => out.push(self.at_value(Severity::Error, &pointer, err.to_string())),
            }
        }
        out.sort_by_key(|d| (d.line, d.column));
        out.dedup();
        out
    }
}

/// serde_yaml_ng appends " at line X column Y" to its messages; the
/// diagnostic already says where.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{}", escape_segment(key))),
            Segment::Enum { variant } => out.push_str(&format!("/{}", escape_segment(variant))),
            Segment::Unknown => {}
        }
    }
    out
}
