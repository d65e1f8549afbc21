//! Model advice, wired in one place: which advisors a process uses
//! ([`ModelChoice`], [`Advisors`]: the template advisor always, a model in
//! front when one is configured and usable), the model's daily budget kept
//! in the database ([`StoreBudget`]), the advice cache, and how one finding
//! gets its proposal ([`Advice::propose`]: redact → the cache or the
//! advisor → restore locally → render and check → on any refusal the
//! fallback, the template advisor, with the reason recorded).
//!
//! The advisors themselves (the `Advisor` trait, the template advisor, the
//! model clients, the safety checks) are `remediate`'s; this module only
//! chooses, budgets, caches and falls back.

mod budget;
mod choice;
mod propose;

pub use budget::StoreBudget;
pub use choice::{Advisors, ModelChoice};
pub use propose::{Advice, ProposeError};

use crate::store::{AuditLog, ModelLedger};

/// What advice reads and writes in the store: the advice cache and model
/// usage ([`ModelLedger`]), and audit events ([`AuditLog`]).
pub trait AdviceStore: AuditLog + ModelLedger {}

impl<T: AuditLog + ModelLedger + ?Sized> AdviceStore for T {}
