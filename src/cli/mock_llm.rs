//! `promptgate mock-llm`: parses the flags into a [`MockConfig`] and serves
//! it; the server itself is `promptgate::mock_llm`.
//!
//! The first stdout line is the banner with the bound address, so callers
//! can pass `--listen 127.0.0.1:0` and read the port.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::ExitStatus;
use crate::mock_llm::{self, MockConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the banner prints it).
    #[arg(long, default_value = "127.0.0.1:11435")]
    pub listen: String,
    /// YAML list of `{pattern, answer}`: regex on the last user message ->
    /// answer template (`$1`, `${name}`). First match wins; no match echoes.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Delay between streamed chunks (one chunk per word), in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub token_delay_ms: u64,
    /// Probability (0..1) of answering HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Probability (0..1) that a matched rule's answer is kept; otherwise a
    /// fixed wrong answer replaces it. 1.0 = always right.
    #[arg(long, default_value_t = 1.0)]
    pub quality: f64,
    /// Seed of every random draw (combined with the request content).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let rules = match &args.rules {
        Some(p) => mock_llm::load_rules(p)?,
        None => Vec::new(),
    };
    let cfg = MockConfig {
        rules,
        latency: Duration::from_millis(args.latency_ms),
        token_delay: Duration::from_millis(args.token_delay_ms),
        error_rate: args.error_rate,
        quality: args.quality,
        seed: args.seed,
    };
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        super::out(&format!(
            "{}\n  rules: {}, latency {} ms, token delay {} ms, error rate {}, quality {}, seed {}\n",
            mock_llm::banner(addr),
            cfg.rules.len(),
            args.latency_ms,
            args.token_delay_ms,
            cfg.error_rate,
            cfg.quality,
            cfg.seed,
        ))?;
        tokio::select! {
            r = mock_llm::serve(listener, cfg) => r.context("serving")?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitStatus::Success)
    })
}
