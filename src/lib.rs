//! Draco: a self-hosted cloud guardian. Scans cost and security posture,
//! redacts what must not leave the host, proposes remediations as change
//! requests and merges only what a human approved.
//!
//! The binary (`src/main.rs`) is a thin shell over [`app`]; tests and
//! benches use the modules directly.

pub mod advice;
pub mod app;
pub mod approve;
pub mod approvers;
pub mod audit;
pub mod bench;
pub mod channels;
pub mod chart;
pub mod cli;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod domain;
pub mod endpoint;
pub mod events;
pub mod exposition;
pub mod gitops;
pub mod healthcheck;
pub mod notify;
pub mod pipeline;
pub mod purge;
pub mod redact;
pub mod remediate;
pub mod replica;
pub mod report;
pub mod seal;
pub mod server;
pub mod sources;
pub mod store;
pub mod tools;
