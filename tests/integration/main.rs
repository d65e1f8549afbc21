//! Integration tests: one binary, one module per capability. They drive the
//! real `draco` binary on a fresh data directory, or the library through its
//! public API, on real SQLite files and a real git repository.

mod approval;
mod aws;
mod bad_input;
mod daemon;
mod demo;
mod detect;
mod llm_providers;
mod llm_resilience;
mod llm_support;
mod model_advice;
mod moto;
mod nab;
mod realworld_cost;
mod redact_props;
mod redaction;
mod support;
