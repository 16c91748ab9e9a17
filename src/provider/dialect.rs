//! What differs between the wire formats, behind one trait, so that the
//! HTTP provider (retries, timeouts, streaming, pass-through) is written
//! once for both.

use std::marker::PhantomData;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::error::DecodeError;
use super::http::{Endpoint, UpstreamResponse};
use super::{
    CallOptions, ChatApi, ChatRequest, ChatResponse, EventDecoder, EventStream, Provider,
    ProviderError,
};

/// One wire format: its URL, request body, response and stream decoding.
pub(crate) trait Dialect: std::fmt::Debug + Send + Sync + 'static {
    /// The client API that speaks this wire format.
    const API: ChatApi;
    /// The chat URL of a configured base URL.
    fn chat_url_for(base_url: &str) -> String;
    fn build_body(req: &ChatRequest, stream: bool) -> Value;
    fn parse_response(v: Value) -> Result<ChatResponse, DecodeError>;
    fn decoder() -> Box<dyn EventDecoder>;

    /// The wire body of `req` as bytes.
    fn body(req: &ChatRequest, stream: bool) -> Bytes {
        Bytes::from(Self::build_body(req, stream).to_string())
    }

    /// [`Dialect::parse_response`] of a body's bytes.
    fn parse_body(body: &[u8]) -> Result<ChatResponse, DecodeError> {
        Self::parse_response(serde_json::from_slice(body)?)
    }
}

/// A server speaking dialect `D`.
#[derive(Debug, Clone)]
pub(crate) struct HttpProvider<D> {
    pub(crate) endpoint: Endpoint,
    dialect: PhantomData<fn() -> D>,
}

impl<D: Dialect> HttpProvider<D> {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        HttpProvider {
            endpoint,
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect> Provider for HttpProvider<D> {
    fn name(&self) -> &str {
        &self.endpoint.provider
    }

    fn api(&self) -> ChatApi {
        D::API
    }

    fn chat_url(&self) -> &str {
        &self.endpoint.url
    }

    fn build_body(&self, req: &ChatRequest, stream: bool) -> Value {
        D::build_body(req, stream)
    }

    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        opts: CallOptions,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let bytes = self.endpoint.post_full(D::body(req, false), opts).await?;
            D::parse_body(&bytes).map_err(|e| self.endpoint.decode(e))
        })
    }

    fn chat_stream<'a>(
        &'a self,
        req: &'a ChatRequest,
        opts: CallOptions,
    ) -> BoxFuture<'a, Result<EventStream, ProviderError>> {
        Box::pin(async move {
            let body = D::body(req, true);
            self.endpoint.post_stream(body, opts, D::decoder).await
        })
    }

    fn send_raw<'a>(
        &'a self,
        body: Bytes,
        stream: bool,
        opts: CallOptions,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProviderError>> {
        Box::pin(self.endpoint.post_raw(body, stream, opts))
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, DecodeError> {
        D::parse_body(body)
    }

    fn stream_decoder(&self) -> Box<dyn EventDecoder> {
        D::decoder()
    }
}
