//! The client APIs' request shapes: parsing a client body into a
//! [`ClientRequest`]. Answers are encoded for the client by
//! [`crate::provider::encode`].
//!
//! Fields this layer does not know stay in [`ClientRequest::params`] and
//! reach the upstream through the provider's `build_body`, so `tools`,
//! `tool_choice`, `response_format`, Ollama `options`/`format`/`keep_alive`
//! pass through intact.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use crate::provider::ChatApi;

/// A chat request as a client sent it, in a form independent of its API.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    pub api: ChatApi,
    pub model: String,
    pub messages: Vec<Value>,
    pub stream: bool,
    /// The `variables` extra field.
    pub variables: Option<Map<String, Value>>,
    /// The `user` field (OpenAI), the user id for sticky routing.
    pub user: Option<String>,
    /// Everything else, passed to the upstream.
    pub params: Map<String, Value>,
}

/// Keys of `/api/generate` with no chat equivalent; dropped.
const GENERATE_ONLY: &[&str] = &["raw", "template", "context", "suffix"];

fn take_str(body: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(key, "must be a string")),
    }
}

/// Parses a client body of `api`.
pub fn parse_request(api: ChatApi, bytes: &[u8]) -> Result<ClientRequest, ApiError> {
    let mut body: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not a JSON object: {e}"),
        )
        .in_api(api)
    })?;
    parse_map(api, &mut body).map_err(|e| e.in_api(api))
}

fn parse_map(api: ChatApi, body: &mut Map<String, Value>) -> Result<ClientRequest, ApiError> {
    let model = take_str(body, "model")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::field("model", "is required"))?;
    let stream = match body.remove("stream") {
        None | Some(Value::Null) => api.is_ollama(), // Ollama streams by default.
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ApiError::field("stream", "must be a boolean")),
    };
    let variables = match body.remove("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(ApiError::field("variables", "must be an object")),
    };
    let user = match body.get("user") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(ApiError::field("user", "must be a string")),
    };
    let messages = match api {
        ChatApi::OpenAi | ChatApi::OllamaChat => match body.remove("messages") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ms)) => {
                for (i, m) in ms.iter().enumerate() {
                    if !m.is_object() || !m.get("role").is_some_and(Value::is_string) {
                        return Err(ApiError::field(
                            format!("messages[{i}]"),
                            "must be an object with a string `role`",
                        ));
                    }
                }
                ms
            }
            Some(_) => return Err(ApiError::field("messages", "must be an array")),
        },
        ChatApi::OllamaGenerate => {
            let prompt = take_str(body, "prompt")?.unwrap_or_default();
            let system = take_str(body, "system")?;
            let images = body.remove("images");
            for k in GENERATE_ONLY {
                body.remove(*k);
            }
            let mut ms = Vec::with_capacity(2);
            if let Some(s) = system {
                ms.push(json!({"role": "system", "content": s}));
            }
            let mut user = json!({"role": "user", "content": prompt});
            if let Some(images) = images {
                user["images"] = images;
            }
            ms.push(user);
            ms
        }
    };
    body.remove("stream_options");
    Ok(ClientRequest {
        api,
        model,
        messages,
        stream,
        variables,
        user,
        params: std::mem::take(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_becomes_chat_messages_and_keeps_options() {
        let r = parse_request(
            ChatApi::OllamaGenerate,
            br#"{"model":"m","prompt":"hi","system":"be brief","options":{"num_ctx":512},"raw":true}"#,
        )
        .unwrap();
        assert!(r.stream, "Ollama streams by default");
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[1]["content"], "hi");
        assert_eq!(r.params["options"]["num_ctx"], 512);
        assert!(!r.params.contains_key("raw"));
    }

    fn json_leaf() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z \\u{e9}\\\"]{0,12}".prop_map(Value::String),
        ]
    }

    proptest::proptest! {
        /// Whatever extra fields a client sends reach `params` unchanged
        /// (that is how tools, response_format and options pass through),
        /// and the fields the proxy consumes never do.
        #[test]
        fn unknown_fields_pass_through_unchanged(
            extra in proptest::collection::btree_map("x_[a-z]{1,8}", json_leaf(), 0..6),
            nested in json_leaf(),
            stream in proptest::option::of(proptest::bool::ANY),
            ollama in proptest::bool::ANY,
        ) {
            let api = if ollama { ChatApi::OllamaChat } else { ChatApi::OpenAi };
            let mut body = Map::new();
            body.insert("model".into(), json!("prompt:p"));
            body.insert("messages".into(), json!([{"role": "user", "content": "hi"}]));
            body.insert("variables".into(), json!({"a": 1}));
            body.insert("options".into(), json!({"nested": nested.clone()}));
            if let Some(s) = stream {
                body.insert("stream".into(), json!(s));
            }
            for (k, v) in &extra {
                body.insert(k.clone(), v.clone());
            }
            let r = parse_request(api, Value::Object(body).to_string().as_bytes()).unwrap();
            proptest::prop_assert_eq!(r.stream, stream.unwrap_or(ollama));
            proptest::prop_assert_eq!(r.variables, Some(json!({"a": 1}).as_object().unwrap().clone()));
            proptest::prop_assert_eq!(&r.params["options"], &json!({"nested": nested}));
            for (k, v) in &extra {
                proptest::prop_assert_eq!(&r.params[k], v);
            }
            for consumed in ["model", "messages", "variables", "stream"] {
                proptest::prop_assert!(!r.params.contains_key(consumed));
            }
            proptest::prop_assert_eq!(r.params.len(), extra.len() + 1);
        }

        /// Arbitrary bytes are an error, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            for d in [ChatApi::OpenAi, ChatApi::OllamaChat, ChatApi::OllamaGenerate] {
                let _ = parse_request(d, &bytes);
            }
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let e = parse_request(ChatApi::OpenAi, br#"{"model": 3}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("model"));
        let e = parse_request(ChatApi::OpenAi, br#"{"model":"m","messages":[1]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("messages[0]"));
        let e = parse_request(ChatApi::OpenAi, br#"{"model":"m","variables":[]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("variables"));
        assert!(parse_request(ChatApi::OpenAi, b"not json").is_err());
    }
}
