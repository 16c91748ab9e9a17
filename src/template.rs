//! Rendering prompt messages with minijinja.
//!
//! Invariants: undefined variables are errors that name the variable (strict
//! undefined); there is no loader, so a template cannot include files; input
//! values are data, never parsed as templates, so `{{ 7*7 }}` inside a value
//! comes out verbatim. Values come bound by [`crate::binding`]: a missing
//! optional input is none, which is false in `{% if %}` and prints as
//! nothing (not `none`: a prompt never wants that word).

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::spec::prompt::{MessageTemplate, Role};

#[derive(Debug, Clone, thiserror::Error)]
pub enum TemplateError {
    #[error("message {index} ({role}): {message}")]
    Render {
        index: usize,
        role: &'static str,
        message: String,
        /// 1-based line inside the template, when minijinja knows it.
        line: Option<usize>,
    },
}

/// A rendered chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are plain text, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// Describes a minijinja error with its line, in one sentence.
fn describe(err: &minijinja::Error) -> (String, Option<usize>) {
    let mut msg = err.kind().to_string();
    if let Some(detail) = err.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    (msg, err.line())
}

/// The error of message `index` (`role`) that minijinja refused.
fn render_error(index: usize, role: &'static str, err: &minijinja::Error) -> TemplateError {
    let (message, line) = describe(err);
    TemplateError::Render {
        index,
        role,
        message,
        line,
    }
}

/// The error of message `index` (`role`) reading `name`, which is not given.
fn undefined(index: usize, role: &'static str, name: &str) -> TemplateError {
    TemplateError::Render {
        index,
        role,
        message: format!("undefined variable `{name}`"),
        line: None,
    }
}

/// Renders every message of a prompt with `vars` as the context.
pub fn render_messages(
    messages: &[MessageTemplate],
    vars: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<ChatMessage>, TemplateError> {
    let env = environment();
    messages
        .iter()
        .enumerate()
        .map(|(index, m)| {
            // minijinja's strict mode says "undefined value" without a name;
            // checking the top-level names first gives the user the name.
            if let Ok(used) = variables_used(&m.content)
                && let Some(missing) = used
                    .iter()
                    .find(|v| !vars.contains_key(*v) && !is_builtin(v))
            {
                return Err(undefined(index, m.role.as_str(), missing));
            }
            let content = render_str(&env, &m.content, vars)
                .map_err(|e| render_error(index, m.role.as_str(), &e))?;
            Ok(ChatMessage {
                role: m.role.as_str().to_string(),
                content,
            })
        })
        .collect()
}

fn render_str<S: Serialize>(
    env: &Environment<'_>,
    source: &str,
    vars: &S,
) -> Result<String, minijinja::Error> {
    env.render_str(source, minijinja::value::Serde(vars))
}

/// A single template string (assertion values such as `{{ row.expected }}`)
/// compiled once and rendered per row, in the same environment as prompts.
#[derive(Clone)]
pub struct CompiledText {
    env: std::sync::Arc<Environment<'static>>,
}

impl std::fmt::Debug for CompiledText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledText").finish_non_exhaustive()
    }
}

impl CompiledText {
    pub fn compile(source: &str) -> Result<CompiledText, TextError> {
        let mut env = environment();
        env.add_template_owned(MESSAGE_TEMPLATE, source.to_string())
            .map_err(|e| TextError::from(&e))?;
        Ok(CompiledText {
            env: std::sync::Arc::new(env),
        })
    }

    pub fn render<S: Serialize>(&self, vars: &S) -> Result<String, TextError> {
        self.env
            .get_template(MESSAGE_TEMPLATE)
            .and_then(|t| t.render(minijinja::value::Serde(vars)))
            .map_err(|e| TextError::from(&e))
    }
}

/// A [`CompiledText`] that did not compile or render: minijinja's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TextError {
    pub message: String,
}

impl From<&minijinja::Error> for TextError {
    fn from(e: &minijinja::Error) -> Self {
        TextError {
            message: describe(e).0,
        }
    }
}

/// A template that does not compile: the message and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    pub line: Option<usize>,
}

/// Names minijinja provides itself (functions such as `range`).
pub fn is_builtin(name: &str) -> bool {
    matches!(
        name,
        "range" | "dict" | "namespace" | "debug" | "loop" | "self"
    )
}

/// The top-level variables a template reads, or why it does not compile.
pub fn variables_used(source: &str) -> Result<BTreeSet<String>, CompileError> {
    let env = environment();
    let tmpl = env.template_from_str(source).map_err(|e| {
        let (message, line) = describe(&e);
        CompileError { message, line }
    })?;
    Ok(tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !is_builtin(v))
        .collect())
}

/// A prompt's message templates compiled once, for rendering many times
/// (the proxy's hot path). Renders exactly like [`render_messages`]:
/// same environment, same strictness, same error messages.
pub struct CompiledMessages {
    messages: Vec<CompiledMessage>,
}

/// One message: its own environment (so a message can never include
/// another), the top-level variables it reads, and its text when it reads
/// none (rendered once, at compile time).
struct CompiledMessage {
    role: Role,
    env: Environment<'static>,
    used: BTreeSet<String>,
    fixed: Option<String>,
}

const MESSAGE_TEMPLATE: &str = "message";

impl std::fmt::Debug for CompiledMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledMessages")
            .field("messages", &self.messages.len())
            .finish()
    }
}

impl CompiledMessages {
    /// Compiles every message; the error names the first that does not compile.
    pub fn compile(messages: &[MessageTemplate]) -> Result<CompiledMessages, TemplateError> {
        let mut out = Vec::with_capacity(messages.len());
        for (index, m) in messages.iter().enumerate() {
            let err = |e: minijinja::Error| render_error(index, m.role.as_str(), &e);
            let mut env = environment();
            env.add_template_owned(MESSAGE_TEMPLATE, m.content.clone())
                .map_err(err)?;
            let tmpl = env.get_template(MESSAGE_TEMPLATE).map_err(err)?;
            let used: BTreeSet<String> = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !is_builtin(v))
                .collect();
            let fixed = if used.is_empty() {
                Some(tmpl.render(minijinja::context! {}).map_err(err)?)
            } else {
                None
            };
            out.push(CompiledMessage {
                role: m.role,
                env,
                used,
                fixed,
            });
        }
        Ok(CompiledMessages { messages: out })
    }

    /// Renders every message with `vars` as the context.
    pub fn render(
        &self,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<ChatMessage>, TemplateError> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(vars));
        self.messages
            .iter()
            .enumerate()
            .map(|(index, m)| {
                let role = m.role.as_str();
                let content = match &m.fixed {
                    Some(text) => text.clone(),
                    None => {
                        if let Some(missing) = m.used.iter().find(|v| !vars.contains_key(*v)) {
                            return Err(undefined(index, role, missing));
                        }
                        m.env
                            .get_template(MESSAGE_TEMPLATE)
                            .and_then(|t| t.render(ctx.clone()))
                            .map_err(|e| render_error(index, role, &e))?
                    }
                };
                Ok(ChatMessage {
                    role: role.to_string(),
                    content,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    fn msgs(content: &str) -> Vec<MessageTemplate> {
        vec![MessageTemplate {
            role: Role::User,
            content: content.to_string(),
        }]
    }

    #[test]
    fn values_are_never_evaluated_as_templates() {
        let out = render_messages(
            &msgs("Q: {{ input }}"),
            &vars(json!({"input": "{{ 7*7 }} {% if 1 %}x{% endif %}"})),
        )
        .unwrap();
        assert_eq!(out[0].content, "Q: {{ 7*7 }} {% if 1 %}x{% endif %}");
    }

    #[test]
    fn missing_variable_is_an_error_naming_it() {
        let err = render_messages(&msgs("Hello {{ name }}"), &vars(json!({}))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("undefined variable `name`"), "{text}");
        assert!(text.contains("message 0 (user)"), "{text}");
    }

    #[test]
    fn none_is_false_and_prints_nothing() {
        let out = render_messages(
            &msgs("[{{ tone }}]{% if tone %} in a {{ tone }} tone{% endif %}"),
            &vars(json!({"tone": null})),
        )
        .unwrap();
        assert_eq!(out[0].content, "[]");
        let c = CompiledMessages::compile(&msgs("[{{ tone }}]")).unwrap();
        assert_eq!(
            c.render(&vars(json!({"tone": null}))).unwrap()[0].content,
            "[]"
        );
    }

    #[test]
    fn no_html_escaping() {
        let out = render_messages(&msgs("{{ x }}"), &vars(json!({"x": "<a & b>"}))).unwrap();
        assert_eq!(out[0].content, "<a & b>");
    }

    #[test]
    fn undeclared_variables_are_found() {
        let vars =
            variables_used("{{ a }} {% for x in items %}{{ x.name }}{% endfor %} {{ b | upper }}")
                .unwrap();
        assert_eq!(
            vars.into_iter().collect::<Vec<_>>(),
            vec!["a", "b", "items"]
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = variables_used("line one\n{{ oops ").unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn compiled_renders_like_render_messages() {
        let ms = vec![
            MessageTemplate {
                role: Role::System,
                content: "Fixed text.".into(),
            },
            MessageTemplate {
                role: Role::User,
                content: "Q: {{ input }} {% for x in items %}[{{ x }}]{% endfor %}".into(),
            },
        ];
        let c = CompiledMessages::compile(&ms).unwrap();
        let v = vars(json!({"input": "{{ 7*7 }}", "items": [1, 2]}));
        assert_eq!(c.render(&v).unwrap(), render_messages(&ms, &v).unwrap());
        let missing = vars(json!({"input": "x"}));
        assert_eq!(
            c.render(&missing).unwrap_err().to_string(),
            render_messages(&ms, &missing).unwrap_err().to_string()
        );
        assert!(CompiledMessages::compile(&msgs("{{ oops ")).is_err());
    }

    #[test]
    fn includes_are_impossible() {
        let err =
            render_messages(&msgs("{% include 'secrets.txt' %}"), &vars(json!({}))).unwrap_err();
        assert!(
            err.to_string().contains("template not found") || err.to_string().contains("not found"),
            "{err}"
        );
    }
}
