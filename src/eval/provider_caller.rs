//! The production [`ModelCaller`]: one [`ModelClient`] per configured model,
//! sharing the process's connection pool.
//!
//! Clients are keyed by (model key, upstream identity), so one caller can
//! serve two versions of promptgate.yaml (the base and head of `check`)
//! even when both name a model `small` but point it elsewhere.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use super::call::{CallFailure, ModelCall, ModelCaller, ModelReply};
use super::runner::upstream_id;
use crate::provider::{ErrorKind, ModelClient, ProviderError};
use crate::spec::config::Config;

pub struct ProviderCaller {
    clients: BTreeMap<(String, String), ModelClient>,
}

impl ProviderCaller {
    /// A client for every model of the config.
    pub fn new(config: &Config) -> Result<ProviderCaller, ProviderError> {
        Self::for_configs(&[config])
    }

    /// A client for every model of every config; where two configs define
    /// the same model at the same upstream, the first one's settings (price,
    /// timeouts) win.
    pub fn for_configs(configs: &[&Config]) -> Result<ProviderCaller, ProviderError> {
        let mut clients = BTreeMap::new();
        for config in configs {
            for key in config.models.keys() {
                let Some(upstream) = upstream_id(config, key) else {
                    continue;
                };
                if let std::collections::btree_map::Entry::Vacant(e) =
                    clients.entry((key.clone(), upstream))
                {
                    e.insert(ModelClient::from_config(config, key)?);
                }
            }
        }
        Ok(ProviderCaller { clients })
    }
}

impl ModelCaller for ProviderCaller {
    fn call<'a>(&'a self, call: &'a ModelCall) -> BoxFuture<'a, Result<ModelReply, CallFailure>> {
        Box::pin(async move {
            let key = (call.model.clone(), call.upstream.clone());
            let Some(client) = self.clients.get(&key) else {
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
