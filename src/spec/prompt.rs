//! `prompts/<id>.yaml`: one prompt: model, params, declared inputs and the
//! message templates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    /// Must equal the file stem; `[a-z0-9][a-z0-9_-]*`.
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Key into `models` of promptgate.yaml.
    pub model: String,
    /// Overrides the model's default params key by key.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    pub messages: Vec<MessageTemplate>,
    #[serde(default)]
    pub output: OutputSpec,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Array => "array",
            InputType::Object => "object",
        }
    }

    /// Whether a JSON value is acceptable for an input of this type.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match self {
            InputType::String => value.is_string(),
            InputType::Integer => value.is_i64() || value.is_u64(),
            InputType::Number => value.is_number(),
            InputType::Boolean => value.is_boolean(),
            InputType::Array => matches!(value, Value::Array(_)),
            InputType::Object => matches!(value, Value::Object(_)),
        }
    }
}

/// One declared input. Required unless it is marked `required: false` or
/// has a `default`; a missing optional input without a default is none.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "RawInputSpec")]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub kind: InputType,
    pub required: bool,
    /// The value a missing optional input takes; of type `kind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `inputs.<name>` as written; [`InputSpec`] once checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputSpec {
    #[serde(default, rename = "type")]
    kind: InputType,
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    default: Option<serde_json::Value>,
    #[serde(default)]
    description: Option<String>,
}

/// Why an input's declaration is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum InputSpecError {
    #[error("`default` {value} is not of type {}", kind.as_str())]
    DefaultType {
        value: serde_json::Value,
        kind: InputType,
    },
    #[error("an input with a `default` is optional: remove `required: true`")]
    RequiredWithDefault,
}

impl TryFrom<RawInputSpec> for InputSpec {
    type Error = InputSpecError;

    fn try_from(raw: RawInputSpec) -> Result<InputSpec, InputSpecError> {
        let default = match raw.default {
            // `default: null` is the same as no default.
            Some(serde_json::Value::Null) | None => None,
            Some(value) if !raw.kind.accepts(&value) => {
                return Err(InputSpecError::DefaultType {
                    value,
                    kind: raw.kind,
                });
            }
            Some(v) => Some(v),
        };
        if default.is_some() && raw.required == Some(true) {
            return Err(InputSpecError::RequiredWithDefault);
        }
        Ok(InputSpec {
            kind: raw.kind,
            required: raw.required.unwrap_or(default.is_none()),
            default,
            description: raw.description,
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message; `content` is a Jinja template over the prompt's inputs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    #[serde(default)]
    pub format: OutputFormat,
    /// JSON Schema the output must satisfy when `format: json`.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
}

/// Whether a prompt or dataset id is a plain name: no path separators, no
/// `..`, nothing a path join could escape with.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && id.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FileKind, SourceFile};

    fn parse(inputs: &str) -> Result<Prompt, String> {
        let text = format!(
            "id: p\nmodel: m\ninputs:\n{inputs}messages:\n  - role: user\n    content: hi\n"
        );
        SourceFile::new("prompts/p.yaml", text)
            .parse::<Prompt>(FileKind::Prompt)
            .map_err(|d| {
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    #[test]
    fn a_default_makes_an_input_optional_and_must_have_its_type() {
        let p = parse("  tone: {type: string, default: neutral}\n  n: {type: integer}\n").unwrap();
        assert!(!p.inputs["tone"].required);
        assert_eq!(p.inputs["tone"].default, Some(serde_json::json!("neutral")));
        assert!(p.inputs["n"].required);
        let err = parse("  n: {type: integer, default: many}\n").unwrap_err();
        assert!(err.contains("prompts/p.yaml:4:"), "{err}");
        assert!(
            err.contains("`default` \"many\" is not of type integer"),
            "{err}"
        );
        let err = parse("  n: {type: integer, required: true, default: 3}\n").unwrap_err();
        assert!(err.contains("remove `required: true`"), "{err}");
        assert!(parse("  n: {type: integer, colour: red}\n").is_err());
    }
}
