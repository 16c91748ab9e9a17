pub mod breaker;
pub mod metrics;
