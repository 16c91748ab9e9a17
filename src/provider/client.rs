//! [`ModelClient`]: one model of `promptgate.yaml` bound to its provider,
//! default parameters, price and timeouts; the entry point for callers.
//!
//! Invariants: a `ModelClient` is immutable and cheap to clone (the provider
//! is shared behind an `Arc`), so many tokio tasks may call it concurrently;
//! all clients of a process share one connection pool per connect timeout.
//! Cost is always computed from the model's [`Price`] with the upstream's
//! reported usage (zero tokens when the upstream reported none).

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use super::dialect::{Dialect, HttpProvider};
use super::http::{Endpoint, Secret, Upstream};
use super::ollama::Ollama;
use super::openai::OpenAi;
use super::retry::RetryPolicy;
use super::{
    CallOptions, ChatEvent, ChatRequest, ChatResponse, EventStream, Provider, ProviderError,
    StreamAccumulator, ToolCall,
};
use crate::spec::config::{Config, Price, ProviderConfig, ProviderKind, Timeouts};
use crate::template::ChatMessage;

/// The outcome of one call, with usage and cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Wall time of the whole call, retries included.
    pub latency_ms: u64,
    /// Time to the first streamed event; `None` for a non-streaming call.
    pub ttft_ms: Option<u64>,
    pub cost: f64,
    /// The model name the upstream reported (else the configured name).
    pub model: String,
    pub finish_reason: Option<String>,
}

/// A rendered message as the JSON object providers carry.
pub fn message_json(m: &ChatMessage) -> Value {
    serde_json::json!({"role": m.role, "content": m.content})
}

/// Rendered messages as the JSON objects providers carry.
pub fn messages_json(messages: &[ChatMessage]) -> Vec<Value> {
    messages.iter().map(message_json).collect()
}

/// Builds the provider `name` of the config. `connect_ms` selects the
/// shared HTTP client; the API key is read from `api_key_env` now.
pub fn provider_from_config(
    name: &str,
    cfg: &ProviderConfig,
    connect_ms: u64,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let api_key = match &cfg.api_key_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                return Err(ProviderError::Config(format!(
                    "provider `{name}`: environment variable `{var}` (its api_key_env) is not set"
                )));
            }
        },
    };
    provider_with_key(name, cfg, connect_ms, api_key)
}

/// [`provider_from_config`] with the API key given directly (`api_key_env`
/// is ignored). The key is sent as `Authorization: Bearer` and never shown.
pub fn provider_with_key(
    name: &str,
    cfg: &ProviderConfig,
    connect_ms: u64,
    api_key: Option<String>,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let url = match cfg.kind {
        ProviderKind::Ollama => Ollama::chat_url_for(&cfg.base_url),
        ProviderKind::Openai => OpenAi::chat_url_for(&cfg.base_url),
    };
    let endpoint = Endpoint {
        provider: name.to_string(),
        upstream: Upstream::for_url(name, &url, connect_ms)?,
        url,
        api_key: api_key.map(|k| Secret(Arc::from(k.as_str()))),
        connect_ms,
        policy: RetryPolicy::new(cfg.max_retries),
    };
    Ok(match cfg.kind {
        ProviderKind::Ollama => Arc::new(HttpProvider::<Ollama>::new(endpoint)),
        ProviderKind::Openai => Arc::new(HttpProvider::<OpenAi>::new(endpoint)),
    })
}

/// Merges call parameters over defaults key by key; an `options` object is
/// merged one level deep.
pub fn merge_params(
    defaults: &Map<String, Value>,
    over: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = defaults.clone();
    for (k, v) in over {
        match (out.get_mut(k), v) {
            (Some(Value::Object(base)), Value::Object(extra)) if k == "options" => {
                for (ok, ov) in extra {
                    base.insert(ok.clone(), ov.clone());
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// One configured model, ready to call.
#[derive(Debug, Clone)]
pub struct ModelClient {
    model_key: String,
    model_name: String,
    provider: Arc<dyn Provider>,
    params: Map<String, Value>,
    price: Price,
    timeouts: Timeouts,
}

impl ModelClient {
    /// The client of `model_key` (a key of `models` in `promptgate.yaml`).
    pub fn from_config(config: &Config, model_key: &str) -> Result<ModelClient, ProviderError> {
        let model = config.models.get(model_key).ok_or_else(|| {
            ProviderError::Config(format!("unknown model `{model_key}` (not in `models`)"))
        })?;
        let pcfg = config.providers.get(&model.provider).ok_or_else(|| {
            ProviderError::Config(format!(
                "model `{model_key}`: unknown provider `{}` (not in `providers`)",
                model.provider
            ))
        })?;
        let timeouts = model.timeouts.unwrap_or(pcfg.timeouts);
        let provider = provider_from_config(&model.provider, pcfg, timeouts.connect_ms)?;
        Ok(ModelClient {
            model_key: model_key.to_string(),
            model_name: model.name.clone(),
            provider,
            params: model.params.clone(),
            price: model.price,
            timeouts,
        })
    }

    /// A client from parts (tests, or callers that build providers themselves).
    pub fn new(
        model_key: impl Into<String>,
        model_name: impl Into<String>,
        provider: Arc<dyn Provider>,
        params: Map<String, Value>,
        price: Price,
        timeouts: Timeouts,
    ) -> ModelClient {
        ModelClient {
            model_key: model_key.into(),
            model_name: model_name.into(),
            provider,
            params,
            price,
            timeouts,
        }
    }

    pub fn model_key(&self) -> &str {
        &self.model_key
    }
    /// The name the upstream knows.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }
    /// The model's default parameters.
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }
    pub fn price(&self) -> Price {
        self.price
    }
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The request for `messages` with `params` over the model's defaults.
    pub fn request(&self, messages: &[Value], params: &Map<String, Value>) -> ChatRequest {
        ChatRequest {
            model: self.model_name.clone(),
            messages: messages.to_vec(),
            params: merge_params(&self.params, params),
        }
    }

    fn options(&self) -> CallOptions {
        CallOptions {
            timeouts: self.timeouts,
        }
    }

    fn completion(&self, r: ChatResponse, latency_ms: u64, ttft_ms: Option<u64>) -> Completion {
        let usage = r.usage.unwrap_or_default();
        Completion {
            cost: self.price.cost(
                usage.input_tokens,
                usage.output_tokens,
                latency_ms as f64 / 1000.0,
            ),
            content: r.content,
            tool_calls: r.tool_calls,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            latency_ms,
            ttft_ms,
            model: r.model.unwrap_or_else(|| self.model_name.clone()),
            finish_reason: r.finish_reason,
        }
    }

    /// One non-streaming call.
    pub async fn chat(
        &self,
        messages: &[Value],
        params: &Map<String, Value>,
    ) -> Result<Completion, ProviderError> {
        let req = self.request(messages, params);
        let start = Instant::now();
        let r = self.provider.chat(&req, self.options()).await?;
        Ok(self.completion(r, start.elapsed().as_millis() as u64, None))
    }

    /// [`ModelClient::chat`] for rendered template messages.
    pub async fn chat_messages(
        &self,
        messages: &[ChatMessage],
        params: &Map<String, Value>,
    ) -> Result<Completion, ProviderError> {
        self.chat(&messages_json(messages), params).await
    }

    /// A streaming call: the raw event stream.
    pub async fn chat_stream(
        &self,
        messages: &[Value],
        params: &Map<String, Value>,
    ) -> Result<EventStream, ProviderError> {
        let req = self.request(messages, params);
        self.provider.chat_stream(&req, self.options()).await
    }

    /// A streaming call collected into a [`Completion`] with its time to
    /// first token.
    pub async fn chat_streamed(
        &self,
        messages: &[Value],
        params: &Map<String, Value>,
    ) -> Result<Completion, ProviderError> {
        let start = Instant::now();
        let mut stream = self.chat_stream(messages, params).await?;
        let mut acc = StreamAccumulator::new();
        let mut ttft = None;
        while let Some(ev) = stream.next().await {
            let ev = ev?;
            if ttft.is_none() && !matches!(ev, ChatEvent::Done { .. }) {
                ttft = Some(start.elapsed().as_millis() as u64);
            }
            acc.push(&ev);
        }
        if !acc.is_done() {
            return Err(ProviderError::Transport {
                provider: self.provider.name().to_string(),
                url: self.provider.chat_url().to_string(),
                message: "the stream ended without a final event".into(),
            });
        }
        Ok(self.completion(acc.finish(), start.elapsed().as_millis() as u64, ttft))
    }
}
