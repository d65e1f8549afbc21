//! Which advisors a process uses: the template advisor always, a model in
//! front of it when one is configured and can be used. Built once per
//! process, so that the model's circuit breaker remembers failures from one
//! daemon scan to the next.

use std::sync::Arc;

use super::StoreBudget;
use crate::config::{ConfigError, LlmConfig, LlmProvider, Loaded};
use crate::exposition;
use crate::remediate::Advisor;
use crate::remediate::llm::{self, Budget, BudgetLimits, ProviderKind, ProviderSettings};
use crate::remediate::llm_advisor::{AdvisorSettings, LlmAdvisor};
use crate::remediate::templates::{Catalog, TemplateAdvisor};
use crate::store::ModelLedger;

/// What the configuration asks for, before anything is built.
pub enum ModelChoice {
    /// `llm.provider = "template"`: nothing is ever sent.
    Template,
    /// A provider that needs a key, without one: the template advisor answers
    /// and nothing is sent.
    MissingKey(LlmProvider),
    Model(Box<ProviderSettings>),
}

impl ModelChoice {
    pub fn of(loaded: &Loaded) -> Self {
        let llm = &loaded.config.llm;
        let kind = match llm.provider {
            LlmProvider::Template => return ModelChoice::Template,
            LlmProvider::Gemini => ProviderKind::Gemini,
            LlmProvider::OpenAi => ProviderKind::OpenAi,
            LlmProvider::Anthropic => ProviderKind::Anthropic,
        };
        let api_key = loaded.secrets.llm_api_key.as_ref().map(|s| s.value.clone());
        // Local OpenAI-compatible servers (Ollama, llama.cpp) need no key.
        let key_optional = kind == ProviderKind::OpenAi && llm.base_url.is_some();
        if api_key.is_none() && !key_optional {
            return ModelChoice::MissingKey(llm.provider);
        }
        ModelChoice::Model(Box::new(ProviderSettings {
            base_url: llm.base_url.clone(),
            model: llm.model.clone(),
            api_key,
            timeout_secs: llm.timeout_secs,
            max_attempts: llm.max_attempts,
            breaker_failures: llm.breaker_failures,
            breaker_cooldown_secs: llm.breaker_cooldown_secs,
            openai_auth: llm.openai_auth,
            allow_plain_http: llm.allow_plain_http,
            ..ProviderSettings::new(kind)
        }))
    }

    /// One line for `draco config check`; builds the provider (no request is
    /// made) so that a setting that cannot work is reported now.
    pub fn describe(&self) -> Result<String, ConfigError> {
        Ok(match self {
            ModelChoice::Template => "template (local; nothing is sent anywhere)".to_owned(),
            ModelChoice::MissingKey(provider) => format!(
                "template: llm.provider = {} needs an API key (DRACO_LLM_API_KEY or llm.api_key_file); nothing is sent",
                provider.as_str()
            ),
            ModelChoice::Model(settings) => {
                let budget = Arc::new(llm::InMemoryBudget::new(BudgetLimits::default()));
                let provider = build(settings, budget)?;
                format!(
                    "{}:{} at {}, with the template advisor as fallback",
                    provider.name(),
                    provider.model(),
                    settings
                        .base_url
                        .as_deref()
                        .unwrap_or("the provider's public endpoint")
                )
            }
        })
    }
}

fn build(
    settings: &ProviderSettings,
    budget: Arc<dyn Budget>,
) -> Result<Box<dyn llm::ChatProvider>, ConfigError> {
    llm::build(settings, budget).map_err(|e| ConfigError::Value {
        key: "llm".into(),
        message: e.to_string(),
    })
}

pub struct Advisors {
    pub template: TemplateAdvisor,
    pub model: Option<LlmAdvisor>,
}

impl Advisors {
    /// `budget` keeps the model's daily budget (in memory in tests;
    /// [`Advisors::with_store_budget`] keeps it in the database).
    pub fn new(
        catalog: Catalog,
        loaded: &Loaded,
        budget: impl FnOnce(BudgetLimits) -> Arc<dyn Budget>,
    ) -> Result<Self, ConfigError> {
        let template = TemplateAdvisor::new(catalog);
        let model = match ModelChoice::of(loaded) {
            ModelChoice::Template => None,
            ModelChoice::MissingKey(provider) => {
                tracing::warn!(
                    provider = provider.as_str(),
                    "no API key (DRACO_LLM_API_KEY or llm.api_key_file): the template advisor answers and nothing is sent"
                );
                None
            }
            ModelChoice::Model(settings) => {
                let llm = &loaded.config.llm;
                let provider = build(&settings, budget(limits(llm)))?;
                Some(LlmAdvisor::new(
                    provider,
                    template.catalog().clone(),
                    AdvisorSettings {
                        max_output_tokens: llm.max_output_tokens,
                        temperature: 0.0,
                        price_per_million_input_usd: llm.price_per_million_input_usd,
                        price_per_million_output_usd: llm.price_per_million_output_usd,
                    },
                ))
            }
        };
        Ok(Self { template, model })
    }

    /// The advisors of a process whose model budget is kept in `ledger` (the
    /// database: limits hold across restarts and replicas). The model's
    /// request counters start at 0, so their rates are defined before the
    /// first call.
    pub fn with_store_budget(
        catalog: Catalog,
        loaded: &Loaded,
        ledger: impl ModelLedger + 'static,
    ) -> Result<Self, ConfigError> {
        let advisors = Self::new(catalog, loaded, |limits| {
            Arc::new(StoreBudget::new(ledger, limits))
        })?;
        if let Some(model) = &advisors.model {
            for outcome in ["ok", "retried", "error"] {
                metrics::counter!(
                    exposition::PROVIDER_REQUESTS_TOTAL,
                    "provider" => model.provider_name().to_owned(),
                    "outcome" => outcome
                )
                .absolute(0);
            }
        }
        Ok(advisors)
    }

    /// The advisor asked first, and the one that answers when it is refused.
    pub fn chain(&self) -> (&dyn Advisor, Option<&dyn Advisor>) {
        match &self.model {
            Some(model) => (model, Some(&self.template)),
            None => (&self.template, None),
        }
    }
}

fn limits(llm: &LlmConfig) -> BudgetLimits {
    BudgetLimits {
        max_requests_per_day: Some(llm.max_requests_per_day),
        max_tokens_per_day: Some(llm.max_tokens_per_day),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn credentials_in_a_base_url_are_refused_by_the_check_without_being_shown() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("draco.toml");
        std::fs::write(
            &path,
            "[llm]\nbase_url = \"https://user:sk-live-4f9c2b7e1d@models.example.com/v1\"\nprovider = \"openai\"\nmodel = \"m\"\n",
        )
        .expect("the config is written");
        let env = HashMap::from([("DRACO_LLM_API_KEY".to_owned(), "k".to_owned())]);
        let loaded = crate::config::load(Some(&path), &env).expect("the loader accepts it");
        let error = ModelChoice::of(&loaded)
            .describe()
            .expect_err("the advisor check refuses it")
            .to_string();
        assert!(!error.contains("4f9c2b7e1d"), "{error}");
    }
}
