//! The providers and the mock-llm server: wire formats, streams, retries, timeouts.

mod mock_llm_answers;
mod mock_llm_binary;
mod recorded_responses;
mod upstream_calls;
