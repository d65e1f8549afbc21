//! Integration tests: one binary, one module per capability. They drive the
//! real `draco` binary on a fresh data directory, or the library through its
//! public API, on real SQLite files and a real git repository.

mod approval;
mod approvals_adversarial;
mod approvals_email;
mod approvals_github;
mod approvals_sms;
mod approvals_sms_github;
mod audit_chain;
mod aws;
mod bad_input;
mod credentials;
mod daemon;
mod dashboard;
mod demo;
mod deploy;
mod detect;
mod github;
mod github_attacks;
mod github_standin;
mod grouping;
mod harness;
mod keys;
mod llm_providers;
mod llm_resilience;
mod llm_support;
mod model_advice;
mod module_map;
mod moto;
mod nab;
mod output;
mod panics;
mod purge;
mod realworld_cost;
mod realworld_posture;
mod redact_props;
mod redaction;
mod replica_attacks;
mod replicas;
mod scans;
mod script_safety;
mod server;
mod state_files;
mod support;
mod telemetry;
