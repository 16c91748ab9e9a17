//! From a parsed client request to what goes upstream: the route (stable
//! or canary, the prompt, the model), the variables bound to the prompt's
//! inputs, and the rendered messages with the client's conversation around
//! them. Nothing here does I/O; every error is a 4xx naming the field.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::state::{ModelTarget, PreparedPrompt, ServingState};
use super::translate::ClientRequest;
use crate::binding::{self, BindError, INPUT_VARIABLE, Supplied};
use crate::logstore::Variant;
use crate::provider::{ChatRequest, content_text, merge_params, message_json};
use crate::template::ChatMessage;

/// Where a request goes.
pub struct Route {
    pub target: Arc<ModelTarget>,
    /// None for a pass-through model call.
    pub prompt: Option<Arc<PreparedPrompt>>,
    pub variant: Variant,
}

impl Route {
    /// `x-promptgate-version` of the answer.
    pub fn version(&self, state: &ServingState) -> HeaderValue {
        match &self.prompt {
            Some(p) => p.version.clone(),
            None => state.passthrough_version.clone(),
        }
    }
}

/// The upstream request of a routed call and the variables bound.
pub struct Prepared {
    pub request: ChatRequest,
    pub variables: Map<String, Value>,
}

/// The user id for sticky routing: the body's `user`, else the header the
/// canary names.
pub fn sticky_user(
    state: &ServingState,
    req: &ClientRequest,
    headers: &HeaderMap,
) -> Option<String> {
    if let Some(u) = &req.user {
        return Some(u.clone());
    }
    let name = state.canary.as_ref()?.sticky_header.as_ref()?;
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The route of `req`: `prompt:<id>` to the prompt of the variant drawn
/// for `user`, any other model name to that model of promptgate.yaml.
pub fn route(
    state: &ServingState,
    req: &ClientRequest,
    user: Option<&str>,
) -> Result<Route, ApiError> {
    let Some(id) = req.model.strip_prefix("prompt:") else {
        let target = state.models.get(&req.model).ok_or_else(|| {
            let known = state.models.keys().cloned().collect::<Vec<_>>().join(", ");
            ApiError::not_found(
                "model_not_found",
                format!(
                    "unknown model `{}`: use `prompt:<id>` or a model of promptgate.yaml ({known})",
                    req.model
                ),
            )
        })?;
        return Ok(Route {
            target: target.clone(),
            prompt: None,
            variant: Variant::None,
        });
    };
    let canary = state.canary.as_ref().filter(|c| {
        c.rule.covers(id) && c.rule.choose(id, user, rand::random::<f64>()) == Variant::Canary
    });
    let (prompt, variant) = match canary.and_then(|c| c.state.prompts.get(id)) {
        Some(p) => (p.clone(), Variant::Canary),
        None => {
            let p = state.stable.prompts.get(id).ok_or_else(|| {
                ApiError::not_found(
                    "prompt_not_found",
                    format!(
                        "unknown prompt `{id}` (serving: {})",
                        state.prompt_ids().join(", ")
                    ),
                )
            })?;
            (p.clone(), Variant::Stable)
        }
    };
    Ok(Route {
        target: prompt.target.clone(),
        prompt: Some(prompt),
        variant,
    })
}

/// The upstream request of `req` on `route`: a prompt's rendered messages
/// and its params under the client's, or a pass-through model call's
/// messages as sent with the model's params under the client's.
pub fn prepare(route: &Route, req: ClientRequest) -> Result<Prepared, ApiError> {
    let client = &route.target.client;
    let (messages, variables, params) = match &route.prompt {
        Some(p) => {
            let (messages, variables) = render(p, req.variables, req.messages)?;
            (messages, variables, merge_params(&p.params, &req.params))
        }
        None => (
            req.messages,
            req.variables.unwrap_or_default(),
            merge_params(client.params(), &req.params),
        ),
    };
    Ok(Prepared {
        request: ChatRequest {
            model: client.model_name().to_string(),
            messages,
            params,
        },
        variables,
    })
}

/// The messages sent upstream for a prompt, and the variables used. The
/// variables are bound by [`binding::bind`], as in `render` and `eval`; when
/// the last user message fills `input`, the turns before it stay as history
/// after the prompt's system messages and the turns after it (tool results)
/// follow the prompt's messages.
fn render(
    p: &PreparedPrompt,
    variables: Option<Map<String, Value>>,
    messages: Vec<Value>,
) -> Result<(Vec<Value>, Map<String, Value>), ApiError> {
    let values = variables.unwrap_or_default();
    let chat_input = binding::takes_chat_input(&p.inputs, &values);
    let last_user = chat_input
        .then(|| {
            messages
                .iter()
                .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .flatten();
    let last_user_message = last_user.map(|i| {
        messages[i]
            .get("content")
            .and_then(content_text)
            .unwrap_or_default()
    });
    let supplied = Supplied {
        values,
        last_user_message,
    };
    let bound =
        binding::bind(&p.id, &p.inputs, supplied).map_err(|e| bind_error(p, chat_input, e))?;
    let (history, tail) = match last_user {
        Some(i) if bound.input_from_chat => {
            let mut history = messages;
            let tail = history.split_off(i + 1);
            history.pop();
            (history, tail)
        }
        _ => (Vec::new(), messages),
    };
    let vars = bound.values;
    let rendered = p
        .templates
        .render(&vars)
        .map_err(|e| ApiError::field("variables", e.to_string()))?;
    Ok((around(&rendered, history, tail), vars))
}

/// The 400 of a binding error, naming `variables.<input>` (or `messages`
/// when the chat should have filled `input`).
fn bind_error(p: &PreparedPrompt, chat_input: bool, e: BindError) -> ApiError {
    match e {
        BindError::Missing { .. } if chat_input && e.input() == INPUT_VARIABLE => ApiError::field(
            "messages",
            format!(
                "prompt `{}` needs `variables.{INPUT_VARIABLE}` or a user message to fill `{INPUT_VARIABLE}`",
                p.id
            ),
        ),
        e => ApiError::field(format!("variables.{}", e.input()), e.to_string()),
    }
}

/// The prompt's leading system messages, the client's history, the rest
/// of the prompt's messages, then the client's turns after its last user
/// message.
fn around(rendered: &[ChatMessage], history: Vec<Value>, tail: Vec<Value>) -> Vec<Value> {
    let lead = rendered.iter().take_while(|m| m.role == "system").count();
    let mut out = Vec::with_capacity(rendered.len() + history.len() + tail.len());
    out.extend(rendered[..lead].iter().map(message_json));
    out.extend(history);
    out.extend(rendered[lead..].iter().map(message_json));
    out.extend(tail);
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::prompt::{InputSpec, InputType, MessageTemplate, Role};
    use crate::template::CompiledMessages;
    use serde_json::json;

    fn prompt() -> PreparedPrompt {
        let messages = vec![
            MessageTemplate {
                role: Role::System,
                content: "Be brief.".into(),
            },
            MessageTemplate {
                role: Role::User,
                content: "Q: {{ input }}".into(),
            },
        ];
        let config: crate::spec::config::Config = serde_yaml_ng::from_str(
            "version: 1\nproviders: {p: {kind: openai, base_url: 'http://127.0.0.1:9'}}\nmodels: {m: {provider: p, name: n}}\n",
        )
        .unwrap();
        let client = crate::provider::ModelClient::from_config(&config, "m").unwrap();
        let mut inputs = std::collections::BTreeMap::new();
        inputs.insert(
            "input".to_string(),
            InputSpec {
                kind: InputType::String,
                required: true,
                default: None,
                description: None,
            },
        );
        PreparedPrompt {
            id: "p".into(),
            blob: "b".into(),
            git_ref: "r".into(),
            commit: "c".into(),
            version: HeaderValue::from_static("c:b"),
            target: Arc::new(ModelTarget {
                key: "m".into(),
                client,
                upstream: "p".into(),
                breaker: super::super::breaker::CircuitBreaker::new(Default::default()),
            }),
            params: Map::new(),
            templates: Arc::new(CompiledMessages::compile(&messages).unwrap()),
            inputs,
            online: Default::default(),
        }
    }

    #[test]
    fn the_last_user_message_fills_input_between_history_and_tool_turns() {
        let msgs = vec![
            json!({"role": "user", "content": "earlier"}),
            json!({"role": "assistant", "content": "reply"}),
            json!({"role": "user", "content": [{"type": "text", "text": "now"}]}),
            json!({"role": "assistant", "tool_calls": [{"id": "c1"}]}),
            json!({"role": "tool", "tool_call_id": "c1", "content": "42"}),
        ];
        let (out, vars) = render(&prompt(), None, msgs).unwrap();
        assert_eq!(vars["input"], "now");
        let roles: Vec<&str> = out.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "assistant", "tool"]
        );
        assert_eq!(out[3]["content"], "Q: now");
        assert_eq!(out[1]["content"], "earlier");
    }

    #[test]
    fn variables_are_checked_against_the_declared_inputs() {
        let p = prompt();
        let err = render(&p, None, vec![json!({"role": "system", "content": "x"})]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("messages"));
        let vars = |v: serde_json::Value| v.as_object().cloned();
        let err = render(&p, vars(json!({"input": 1})), vec![]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("variables.input"));
        let err = render(&p, vars(json!({"input": "a", "extra": 1})), vec![]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("variables.extra"));
        // `variables` without `input` and no user message to fill it.
        let err = render(&p, vars(json!({})), vec![]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("messages"));
        let (out, _) = render(&p, vars(json!({"input": "{{ 7*7 }}"})), vec![]).unwrap();
        assert_eq!(out[1]["content"], "Q: {{ 7*7 }}");
    }

    #[test]
    fn variables_without_input_still_take_it_from_the_last_user_message() {
        let mut p = prompt();
        p.inputs.insert(
            "tone".to_string(),
            InputSpec {
                kind: InputType::String,
                required: false,
                default: None,
                description: None,
            },
        );
        let vars = json!({"tone": "dry"}).as_object().cloned();
        let msgs = vec![json!({"role": "user", "content": "hello"})];
        let (out, bound) = render(&p, vars, msgs).unwrap();
        assert_eq!(bound["input"], "hello");
        assert_eq!(bound["tone"], "dry");
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1]["content"], "Q: hello");
        // Without variables the optional input is bound to none.
        let msgs = vec![json!({"role": "user", "content": "hi"})];
        let (_, bound) = render(&p, None, msgs).unwrap();
        assert_eq!(bound["tone"], Value::Null);
    }
}
