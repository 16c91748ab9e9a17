//! The production [`ModelCaller`]: one [`ModelClient`] per configured model,
//! sharing the process's connection pool.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use super::call::{CallFailure, ModelCall, ModelCaller, ModelReply};
use crate::provider::{ErrorKind, ModelClient, ProviderError};
use crate::spec::config::Config;

pub struct ProviderCaller {
    clients: BTreeMap<String, ModelClient>,
}

impl ProviderCaller {
    /// A client for every model of the config.
    pub fn new(config: &Config) -> Result<ProviderCaller, ProviderError> {
        let mut clients = BTreeMap::new();
        for key in config.models.keys() {
            clients.insert(key.clone(), ModelClient::from_config(config, key)?);
        }
        Ok(ProviderCaller { clients })
    }
}

impl ModelCaller for ProviderCaller {
    fn call<'a>(&'a self, call: &'a ModelCall) -> BoxFuture<'a, Result<ModelReply, CallFailure>> {
        Box::pin(async move {
            let Some(client) = self.clients.get(&call.model) else {
                return Err(CallFailure::Case(format!(
                    "model `{}` is not configured",
                    call.model
                )));
            };
            match client.chat_messages(&call.messages, &call.params).await {
                Ok(c) => Ok(ModelReply {
                    content: c.content,
                    input_tokens: c.input_tokens,
                    output_tokens: c.output_tokens,
                    latency_ms: c.latency_ms as f64,
                    cost: c.cost,
                    cached: false,
                }),
                // Retries are done by then: a provider nobody can connect to
                // fails every case the same way, so the run stops.
                Err(e) if e.kind() == ErrorKind::Connect => {
                    Err(CallFailure::Unreachable(e.to_string()))
                }
                Err(e) => Err(CallFailure::Case(e.to_string())),
            }
        })
    }
}
