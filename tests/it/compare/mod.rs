//! `promptgate compare`: candidates over `mock-llm`s (mocks, not models:
//! their `quality` sets how often a rule answer is kept) and over the real
//! model, the reports it writes, and the response cache.

mod mock_matrix;
mod production;
mod real_model;
