//! Binding the values a caller supplies to a prompt's declared inputs: the
//! one place that decides what a prompt's templates see. `render` (values
//! from `--var`), `eval` and therefore `check` (a dataset row through the
//! suite's `vars`) and `serve` (a request's `variables` and its last user
//! message) all bind through [`bind`], so one prompt renders the same
//! messages in every command.
//!
//! Invariants:
//! - Every declared input is bound: the supplied value (type-checked), else
//!   its `default`, else none (`null`) when it is optional. A template
//!   never meets an undefined declared input, so `{% if tone %}` works for
//!   an optional `tone` everywhere, and a missing required input is an
//!   error before anything renders.
//! - A supplied `null` (a JSON `null`, an empty dataset cell) counts as not
//!   supplied.
//! - A name the prompt does not declare is an error, never silently ignored.
//! - The `input` convention: when the prompt declares `input` and the
//!   supplied values do not set it, the text of the conversation's last user
//!   message fills it ([`Supplied::last_user_message`], chat requests to
//!   `serve`).
//! - Errors name the input; callers say where the value came from (`--var`,
//!   a dataset row and column, `variables.<name>`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::spec::prompt::InputSpec;

/// The input a chat request's last user message fills.
pub const INPUT_VARIABLE: &str = "input";

/// Why values do not bind to a prompt's inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("prompt `{prompt}` declares no input `{name}` (inputs: {declared})")]
    Undeclared {
        prompt: String,
        name: String,
        declared: String,
    },
    #[error("input `{name}` must be of type {expected}, got {found}")]
    WrongType {
        name: String,
        expected: &'static str,
        found: String,
    },
    #[error("required input `{name}` of prompt `{prompt}` is missing")]
    Missing { prompt: String, name: String },
}

impl BindError {
    /// The input (or undeclared name) the error is about.
    pub fn input(&self) -> &str {
        match self {
            BindError::Undeclared { name, .. }
            | BindError::WrongType { name, .. }
            | BindError::Missing { name, .. } => name,
        }
    }
}

/// What a caller supplies for one rendering.
#[derive(Debug, Clone, Default)]
pub struct Supplied {
    /// Values by input name.
    pub values: Map<String, Value>,
    /// The text of the conversation's last user message, which fills a
    /// declared `input` that `values` does not set.
    pub last_user_message: Option<String>,
}

impl Supplied {
    pub fn values(values: Map<String, Value>) -> Supplied {
        Supplied {
            values,
            last_user_message: None,
        }
    }
}

/// Every declared input with its value: what the templates render with.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub values: Map<String, Value>,
    /// Whether `input` came from the last user message.
    pub input_from_chat: bool,
}

/// Whether the `input` convention applies: the prompt declares `input` and
/// `values` does not set it. A chat request's last user message then fills
/// it, and the turns around that message stay in the conversation.
pub fn takes_chat_input(
    declared: &BTreeMap<String, InputSpec>,
    values: &Map<String, Value>,
) -> bool {
    declared.contains_key(INPUT_VARIABLE) && values.get(INPUT_VARIABLE).is_none_or(Value::is_null)
}

/// Binds `supplied` to the inputs `declared` by prompt `prompt`.
pub fn bind(
    prompt: &str,
    declared: &BTreeMap<String, InputSpec>,
    supplied: Supplied,
) -> Result<Bound, BindError> {
    let Supplied {
        mut values,
        last_user_message,
    } = supplied;
    if let Some(name) = values.keys().find(|k| !declared.contains_key(*k)) {
        return Err(BindError::Undeclared {
            prompt: prompt.to_string(),
            name: name.clone(),
            declared: declared.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    let mut input_from_chat = false;
    if takes_chat_input(declared, &values)
        && let Some(text) = last_user_message
    {
        values.insert(INPUT_VARIABLE.to_string(), Value::String(text));
        input_from_chat = true;
    }
    let mut bound = Map::with_capacity(declared.len());
    for (name, spec) in declared {
        let value = match values.remove(name).filter(|v| !v.is_null()) {
            Some(v) if !spec.kind.accepts(&v) => {
                return Err(BindError::WrongType {
                    name: name.clone(),
                    expected: spec.kind.as_str(),
                    found: short_json(&v),
                });
            }
            Some(v) => v,
            None if spec.required => {
                return Err(BindError::Missing {
                    prompt: prompt.to_string(),
                    name: name.clone(),
                });
            }
            None => spec.default.clone().unwrap_or(Value::Null),
        };
        bound.insert(name.clone(), value);
    }
    Ok(Bound {
        values: bound,
        input_from_chat,
    })
}

/// A value as JSON, cut to a length an error message can carry.
fn short_json(v: &Value) -> String {
    const MAX: usize = 60;
    let text = v.to_string();
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// The inverse of a suite's `vars`: which dataset column each bound
/// variable of a logged call fills (`dataset grow`). A variable the suite
/// maps takes its column; one it does not map takes the same-named column
/// when the dataset has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InverseVars {
    /// Variable -> column, for every variable that has a column.
    pub columns: BTreeMap<String, String>,
    /// Why the mapping back is not one value per column: each a message
    /// naming the column and the variables.
    pub ambiguities: Vec<String>,
}

/// The inverse of `vars` for a prompt declaring `declared` and a dataset
/// with `columns` (name -> required). Ambiguous: two variables feeding one
/// column (a call whose two values differ has no single row).
pub fn inverse_vars(
    vars: &BTreeMap<String, String>,
    declared: &BTreeMap<String, InputSpec>,
    columns: &BTreeMap<String, bool>,
) -> InverseVars {
    let mut out = InverseVars::default();
    for name in declared.keys() {
        let column = vars.get(name).cloned().unwrap_or_else(|| name.clone());
        if columns.contains_key(&column) {
            out.columns.insert(name.clone(), column);
        }
    }
    let mut by_column: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (v, c) in &out.columns {
        by_column.entry(c.as_str()).or_default().push(v.as_str());
    }
    for (c, vs) in by_column {
        if vs.len() > 1 {
            out.ambiguities.push(format!(
                "column `{c}` feeds variables {}: a call whose values differ maps back to no single row",
                vs.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(" and ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::prompt::InputType;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn the_inverse_of_vars_names_each_column_and_reports_two_variables_on_one() {
        let declared: BTreeMap<String, InputSpec> = [
            ("country".to_string(), spec(InputType::String, true, None)),
            ("city".to_string(), spec(InputType::String, false, None)),
            ("tone".to_string(), spec(InputType::String, false, None)),
        ]
        .into();
        let columns: BTreeMap<String, bool> =
            [("land".to_string(), true), ("tone".to_string(), false)].into();
        let vars: BTreeMap<String, String> = [("country".to_string(), "land".to_string())].into();
        let inv = inverse_vars(&vars, &declared, &columns);
        assert_eq!(inv.columns.get("country").map(String::as_str), Some("land"));
        assert_eq!(inv.columns.get("tone").map(String::as_str), Some("tone"));
        assert!(!inv.columns.contains_key("city"), "no column named city");
        assert!(inv.ambiguities.is_empty());
        let both: BTreeMap<String, String> = [
            ("country".to_string(), "land".to_string()),
            ("city".to_string(), "land".to_string()),
        ]
        .into();
        let inv = inverse_vars(&both, &declared, &columns);
        assert_eq!(inv.ambiguities.len(), 1);
        assert!(
            inv.ambiguities[0].contains("`land`"),
            "{:?}",
            inv.ambiguities
        );
    }

    fn spec(kind: InputType, required: bool, default: Option<Value>) -> InputSpec {
        InputSpec {
            kind,
            required,
            default,
            description: None,
        }
    }

    fn declared() -> BTreeMap<String, InputSpec> {
        BTreeMap::from([
            ("input".to_string(), spec(InputType::String, true, None)),
            ("tone".to_string(), spec(InputType::String, false, None)),
            (
                "limit".to_string(),
                spec(InputType::Integer, false, Some(json!(3))),
            ),
        ])
    }

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn optional_inputs_are_none_and_defaults_fill_in() {
        let b = bind(
            "p",
            &declared(),
            Supplied::values(values(json!({"input": "hi"}))),
        )
        .unwrap();
        assert_eq!(
            Value::Object(b.values),
            json!({"input": "hi", "tone": null, "limit": 3})
        );
        assert!(!b.input_from_chat);
        // A supplied null is not supplied.
        let b = bind(
            "p",
            &declared(),
            Supplied::values(values(json!({"input": "hi", "tone": null, "limit": 7}))),
        )
        .unwrap();
        assert_eq!(b.values["tone"], Value::Null);
        assert_eq!(b.values["limit"], 7);
    }

    #[test]
    fn errors_name_the_input() {
        let err = bind("p", &declared(), Supplied::default()).unwrap_err();
        assert_eq!(err.input(), "input");
        assert_eq!(
            err.to_string(),
            "required input `input` of prompt `p` is missing"
        );
        let err = bind(
            "p",
            &declared(),
            Supplied::values(values(json!({"input": "a", "limit": "many"}))),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "input `limit` must be of type integer, got \"many\""
        );
        let err = bind(
            "p",
            &declared(),
            Supplied::values(values(json!({"input": "a", "colour": "red"}))),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompt `p` declares no input `colour` (inputs: input, limit, tone)"
        );
    }

    #[test]
    fn the_last_user_message_fills_input_only_when_unset() {
        let chat = |vals: Value| Supplied {
            values: values(vals),
            last_user_message: Some("from chat".into()),
        };
        let b = bind("p", &declared(), chat(json!({"tone": "dry"}))).unwrap();
        assert_eq!(b.values["input"], "from chat");
        assert_eq!(b.values["tone"], "dry");
        assert!(b.input_from_chat);
        let b = bind("p", &declared(), chat(json!({"input": "given"}))).unwrap();
        assert_eq!(b.values["input"], "given");
        assert!(!b.input_from_chat);
        // A prompt without `input` ignores the conversation.
        let mut no_input = declared();
        no_input.remove("input");
        let b = bind("p", &no_input, chat(json!({}))).unwrap();
        assert!(!b.input_from_chat);
        assert!(!b.values.contains_key("input"));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let err = bind(
            "p",
            &declared(),
            Supplied::values(values(json!({"input": "a", "limit": "x".repeat(500)}))),
        )
        .unwrap_err();
        assert!(err.to_string().len() < 150, "{err}");
        assert!(err.to_string().ends_with("..."), "{err}");
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z]{0,5}".prop_map(Value::from),
            Just(json!([1, "two"])),
            Just(json!({"k": 1})),
        ]
    }

    fn any_kind() -> impl Strategy<Value = InputType> {
        prop_oneof![
            Just(InputType::String),
            Just(InputType::Integer),
            Just(InputType::Number),
            Just(InputType::Boolean),
            Just(InputType::Array),
            Just(InputType::Object),
        ]
    }

    proptest! {
        /// Binding succeeds exactly when every supplied name is declared,
        /// every supplied non-null value has its input's type and every
        /// required input is supplied; then every declared input is bound,
        /// to the supplied value, else the default, else null.
        #[test]
        fn binding_is_total_over_declared_inputs(
            decl in prop::collection::btree_map("[a-d]", (any_kind(), any::<bool>()), 0..4),
            supplied in prop::collection::btree_map("[a-f]", any_value(), 0..5),
        ) {
            let declared: BTreeMap<String, InputSpec> = decl
                .iter()
                .map(|(k, (kind, required))| (k.clone(), spec(*kind, *required, None)))
                .collect();
            let values: Map<String, Value> = supplied.clone().into_iter().collect();
            let expect_ok = supplied.keys().all(|k| declared.contains_key(k))
                && declared.iter().all(|(name, s)| match supplied.get(name) {
                    Some(v) if !v.is_null() => s.kind.accepts(v),
                    _ => !s.required,
                });
            match bind("p", &declared, Supplied::values(values)) {
                Ok(b) => {
                    prop_assert!(expect_ok);
                    prop_assert_eq!(b.values.len(), declared.len());
                    for name in declared.keys() {
                        let want = supplied.get(name).cloned().unwrap_or(Value::Null);
                        prop_assert_eq!(&b.values[name], &want);
                    }
                }
                Err(e) => {
                    prop_assert!(!expect_ok, "{}", e);
                }
            }
        }
    }
}
