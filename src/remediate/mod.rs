//! Proposes a remediation for a finding.
//!
//! Advisors only ever see a [`Redacted`] request; the pipeline restores the
//! real values locally once the proposal is back.

pub mod llm;
pub mod llm_advisor;
pub mod pattern;
pub mod safety;
pub mod templates;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{Finding, neutralise};
use crate::redact::{Redacted, Vault};

/// What an advisor is told about a finding. Plain strings on purpose: after
/// redaction an account id is `<ACCOUNT_ID_1>`, which no `AccountId` would accept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdviceRequest {
    pub kind: String,
    /// Hash of the finding's identity; carries no personal data.
    pub fingerprint: String,
    pub severity: String,
    pub title: String,
    pub resource: String,
    pub account: String,
    pub region: Option<String>,
    pub expected: Option<f64>,
    pub actual: Option<f64>,
    pub impact_usd_monthly: Option<f64>,
    pub evidence: serde_json::Value,
}

impl AdviceRequest {
    /// The request for a finding, its outside text neutralised
    /// ([`Finding::neutralise`]) again: a finding stored before neutralising
    /// existed is remediated with the same guarantee as a new one.
    pub fn from_finding(finding: &Finding) -> Self {
        let mut f = finding.clone();
        f.neutralise();
        Self {
            kind: f.kind.as_str().to_owned(),
            fingerprint: f.fingerprint.to_string(),
            severity: f.severity.as_str().to_owned(),
            title: f.title,
            resource: f.resource,
            account: f.account.to_string(),
            region: f.region,
            expected: f.expected,
            actual: f.actual,
            impact_usd_monthly: f.impact_usd_monthly,
            evidence: f.evidence,
        }
    }
}

/// How the remediation is expressed, which decides the file it is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    AwsCli,
    Terraform,
}

impl Format {
    pub fn file_extension(self) -> &'static str {
        match self {
            Format::AwsCli => "sh",
            Format::Terraform => "tf",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// A proposed change, ready to be put in a change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Which advisor produced it (`template`, later a model name).
    pub advisor: String,
    pub template_id: String,
    pub summary: String,
    pub risk: Risk,
    /// What applying it changes, in one or two sentences.
    pub changes: String,
    pub blast_radius: String,
    pub format: Format,
    pub body: String,
    pub rollback: String,
    /// How the proposal came about: which model, what it cost, why the
    /// fallback ran. `None` for proposals stored before it was recorded.
    #[serde(default)]
    pub advice: Option<AdviceRecord>,
}

/// What a model added on top of its template choice, restored locally and
/// shown to the reviewer. Never executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelNotes {
    pub summary: String,
    pub risk: Risk,
    pub steps: Vec<String>,
    pub rollback: String,
    /// The model's own confidence, in [0, 1].
    pub confidence: f64,
}

/// Tokens and money one model answer cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdviceUsage {
    pub provider: String,
    pub model: String,
    pub prompt_version: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub estimated_cost_usd: f64,
    /// Served from the answer cache: nothing was sent this time.
    pub cached: bool,
}

/// Recorded with every proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdviceRecord {
    /// The advisor whose choice was rendered (`template` after a fallback).
    pub advisor: String,
    /// Why the configured model's answer was not used.
    pub fallback_reason: Option<String>,
    /// Usage of the model call, also when its answer was then refused.
    pub usage: Option<AdviceUsage>,
    pub notes: Option<ModelNotes>,
    /// What the redactor replaced in the request before any advisor saw it,
    /// per kind (`EMAIL` → 2); never the values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub redacted: std::collections::BTreeMap<String, u32>,
}

/// An advisor's answer: which template to use, with which parameters. It is
/// never executed as is: the pipeline restores the placeholders locally, then
/// [`templates::Catalog::render`] checks every parameter against the template's
/// declaration and renders the change from the real finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub advisor: String,
    pub template_id: String,
    pub parameters: BTreeMap<String, String>,
    /// Free text from the advisor, shown to the reviewer.
    pub rationale: Option<String>,
    #[serde(default)]
    pub notes: Option<ModelNotes>,
    #[serde(default)]
    pub usage: Option<AdviceUsage>,
}

impl Recommendation {
    /// Puts the real values back, locally. Returns the placeholders the
    /// advisor invented (not issued by this vault), which are left as they are.
    pub fn restore(self, vault: &Vault) -> (Recommendation, Vec<String>) {
        let mut unknown = Vec::new();
        let mut restore = |text: String| {
            let restored = vault.restore(&text);
            unknown.extend(restored.unknown_placeholders);
            restored.text
        };
        // Parameters stay as given: rendering refuses one that holds a
        // control character rather than guessing what was meant.
        let parameters = self
            .parameters
            .into_iter()
            .map(|(k, v)| (k, restore(v)))
            .collect();
        // A model's words are outside text too: shown to the reviewer and
        // stored, so neutralised like a tag value.
        let mut restore_text = |text: String| neutralise(&restore(text)).into_owned();
        let rationale = self.rationale.map(&mut restore_text);
        let notes = self.notes.map(|n| ModelNotes {
            summary: restore_text(n.summary),
            steps: n.steps.into_iter().map(&mut restore_text).collect(),
            rollback: restore_text(n.rollback),
            ..n
        });
        let recommendation = Recommendation {
            parameters,
            rationale,
            notes,
            ..self
        };
        (recommendation, unknown)
    }
}

impl AdviceError {
    /// Takes out the usage of a model call that was billed although its
    /// answer is not used.
    pub fn take_billed_usage(&mut self) -> Option<AdviceUsage> {
        match self {
            AdviceError::Answer { usage, .. } | AdviceError::Model { usage, .. } => {
                usage.take().map(|u| *u)
            }
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdviceError {
    #[error("no remediation template for finding kind `{0}`")]
    NoTemplate(String),
    #[error("template `{template}`: parameter `{parameter}`: {message}")]
    Parameter {
        template: String,
        parameter: String,
        message: String,
    },
    #[error("unknown template `{0}`")]
    UnknownTemplate(String),
    #[error("template `{template}` failed to render: {message}")]
    Render { template: String, message: String },
    #[error("cannot read the redacted request: {0}")]
    Request(#[from] serde_json::Error),
    #[error("template `{template}` does not apply to finding kind `{kind}`")]
    NotApplicable { template: String, kind: String },
    #[error("model: {source}")]
    Model {
        source: llm::LlmError,
        /// Tokens billed although the call failed (a refusal, a cut-off answer).
        usage: Option<Box<AdviceUsage>>,
    },
    #[error("the model's answer does not fit the schema: {message}")]
    Answer {
        message: String,
        /// The call was billed all the same.
        usage: Option<Box<AdviceUsage>>,
    },
    #[error("refused by the safety check: {0}")]
    Unsafe(#[from] safety::SafetyError),
}

#[async_trait]
pub trait Advisor: Send + Sync {
    fn name(&self) -> &str;
    /// Identifies answers that can be reused for an unchanged finding
    /// (prompt version, provider, model); `None` for advisors that cost nothing.
    fn cache_key(&self) -> Option<String> {
        None
    }
    async fn recommend(
        &self,
        request: &Redacted<AdviceRequest>,
    ) -> Result<Recommendation, AdviceError>;
}
