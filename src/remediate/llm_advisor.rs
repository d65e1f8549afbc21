//! The model advisor: asks a language model which template fixes a finding
//! and with which parameters, in one structured answer.
//!
//! The model only ever sees the redacted finding and Draco's own text (the
//! versioned prompt in `prompts/`, the catalogue of candidate templates and
//! the answer schema). Its answer is a choice, not a change: the pipeline
//! restores it locally, renders the template (which re-checks every
//! parameter), runs the safety checks, and falls back to the template
//! advisor if any of that fails.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::llm::{ChatProvider, ChatRequest, ChatResponse, Usage};
use super::templates::{Catalog, Template, environment, parameter_value};
use super::{AdviceError, AdviceRequest, AdviceUsage, Advisor, ModelNotes, Recommendation, Risk};
use crate::domain::FindingKind;
use crate::redact::Redacted;

const SYSTEM_PROMPT: &str = include_str!("prompts/remediation.system.md");
const USER_PROMPT: &str = include_str!("prompts/remediation.user.md");
/// Bumped by hand when the answer's meaning changes; the content hash
/// below changes with every edit of the prompt files anyway.
const PROMPT_NAME: &str = "remediation-v1";
const SCHEMA_NAME: &str = "draco_remediation";
/// Bounds on the free text a model may return.
const MAX_STEPS: usize = 20;
const MAX_TEXT: usize = 2_000;

/// `remediation-v1+<8 hex digits of the prompt files' hash>`: answers cached
/// under one version are never reused under another.
pub fn prompt_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let digest = Sha256::new()
            .chain_update(SYSTEM_PROMPT)
            .chain_update([0u8])
            .chain_update(USER_PROMPT)
            .finalize();
        format!("{PROMPT_NAME}+{}", &hex::encode(digest)[..8])
    })
}

/// Knobs of the advisor, from `[llm]` in the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvisorSettings {
    pub max_output_tokens: u32,
    pub temperature: f32,
    pub price_per_million_input_usd: f64,
    pub price_per_million_output_usd: f64,
}

#[derive(Debug)]
pub struct LlmAdvisor {
    provider: Box<dyn ChatProvider>,
    catalog: Arc<Catalog>,
    settings: AdvisorSettings,
    name: String,
}

impl LlmAdvisor {
    pub fn new(
        provider: Box<dyn ChatProvider>,
        catalog: Arc<Catalog>,
        settings: AdvisorSettings,
    ) -> Self {
        let name = format!("{}:{}", provider.name(), provider.model());
        Self {
            provider,
            catalog,
            settings,
            name,
        }
    }

    /// The provider's name (`gemini`, `openai`, `anthropic`), as metrics label it.
    pub fn provider_name(&self) -> &str {
        self.provider.name()
    }

    /// The request for one finding: Draco's prompt around the redacted finding.
    pub fn chat_request(
        &self,
        request: &Redacted<AdviceRequest>,
    ) -> Result<Redacted<ChatRequest>, AdviceError> {
        let kind_name = &request.get().kind;
        let candidates = kind_name
            .parse::<FindingKind>()
            .map(|kind| self.catalog.candidates(kind))
            .unwrap_or_default();
        if candidates.is_empty() {
            return Err(AdviceError::NoTemplate(kind_name.clone()));
        }
        let finding = request.to_json()?;
        let prompt = render_prompt(&finding, &candidates)?;
        let schema = answer_schema(&candidates);
        // Everything but the finding is Draco's own text; the finding is the redacted one.
        Ok(request.embed(|_| ChatRequest {
            system: SYSTEM_PROMPT.to_owned(),
            prompt,
            schema_name: SCHEMA_NAME.to_owned(),
            schema,
            max_output_tokens: self.settings.max_output_tokens,
            temperature: self.settings.temperature,
        }))
    }

    fn usage(&self, response: &ChatResponse) -> AdviceUsage {
        self.usage_of(response.provider, &response.model, response.usage)
    }

    fn usage_of(&self, provider: &str, model: &str, usage: Usage) -> AdviceUsage {
        AdviceUsage {
            provider: provider.to_owned(),
            model: model.to_owned(),
            prompt_version: prompt_version().to_owned(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            estimated_cost_usd: usage.estimated_cost_usd(
                self.settings.price_per_million_input_usd,
                self.settings.price_per_million_output_usd,
            ),
            cached: false,
        }
    }
}

fn render_prompt(finding: &Value, candidates: &[&Template]) -> Result<String, AdviceError> {
    let templates: Vec<Value> = candidates
        .iter()
        .map(|t| {
            let parameters: Vec<Value> = t
                .parameters
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name,
                        "choice": p.choice,
                        "pattern": p.pattern.as_str(),
                        "suggested": parameter_value(finding, p).ok(),
                    })
                })
                .collect();
            json!({
                "id": t.id,
                "risk": t.risk.as_str(),
                "changes": t.changes.trim(),
                "blast_radius": t.blast_radius.trim(),
                "parameters": parameters,
            })
        })
        .collect();
    let pretty = serde_json::to_string_pretty(finding)?;
    let render_error = |message: String| AdviceError::Render {
        template: "prompts/remediation.user.md".into(),
        message,
    };
    let env = environment().map_err(render_error)?;
    env.render_str(
        USER_PROMPT,
        minijinja::Value::from(minijinja::value::Serde(
            json!({ "finding": pretty, "templates": templates }),
        )),
    )
    .map_err(|e| render_error(format!("{e:#}")))
}

/// One schema in the subset all three providers accept: every property
/// required, no additional properties, parameters as a list of name/value
/// pairs (OpenAI's strict mode allows no free-form maps).
pub fn answer_schema(candidates: &[&Template]) -> Value {
    let ids: Vec<&str> = candidates.iter().map(|t| t.id.as_str()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "risk", "template_id", "parameters", "steps", "rollback", "confidence"],
        "properties": {
            "summary": { "type": "string", "description": "One sentence: what the change does and why." },
            "risk": { "type": "string", "enum": ["low", "medium", "high"] },
            "template_id": { "type": "string", "enum": ids },
            "parameters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "value"],
                    "properties": {
                        "name": { "type": "string" },
                        "value": { "type": "string" }
                    }
                }
            },
            "steps": { "type": "array", "items": { "type": "string" }, "description": "What the reviewer should check, in order." },
            "rollback": { "type": "string" },
            "confidence": { "type": "number", "description": "From 0 to 1." }
        }
    })
}

#[derive(Debug)]
struct Answer {
    summary: String,
    risk: Risk,
    template_id: String,
    parameters: Vec<NamedValue>,
    steps: Vec<String>,
    rollback: String,
    confidence: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedValue {
    name: String,
    value: String,
}

/// Reads the structured answer; anything off-schema is refused here, before
/// the template even sees it.
fn parse_answer(json: Value) -> Result<Answer, String> {
    let Value::Object(mut fields) = json else {
        return Err("the answer is not a JSON object".into());
    };
    let expected = [
        "summary",
        "risk",
        "template_id",
        "parameters",
        "steps",
        "rollback",
        "confidence",
    ];
    if let Some(extra) = fields.keys().find(|k| !expected.contains(&k.as_str())) {
        return Err(format!("unexpected field `{extra}`"));
    }
    // Field by field, so that the reason names the field that was wrong.
    fn take<T: serde::de::DeserializeOwned>(
        fields: &mut serde_json::Map<String, Value>,
        name: &str,
    ) -> Result<T, String> {
        let value = fields
            .remove(name)
            .ok_or_else(|| format!("missing field `{name}`"))?;
        serde_json::from_value(value).map_err(|e| format!("`{name}`: {e}"))
    }
    let answer = Answer {
        summary: take(&mut fields, "summary")?,
        risk: take(&mut fields, "risk")?,
        template_id: take(&mut fields, "template_id")?,
        parameters: take(&mut fields, "parameters")?,
        steps: take(&mut fields, "steps")?,
        rollback: take(&mut fields, "rollback")?,
        confidence: take(&mut fields, "confidence")?,
    };
    if !(0.0..=1.0).contains(&answer.confidence) {
        return Err(format!("confidence {} is not in [0, 1]", answer.confidence));
    }
    if answer.steps.len() > MAX_STEPS {
        return Err(format!("{} steps, at most {MAX_STEPS}", answer.steps.len()));
    }
    let texts = std::iter::once(&answer.summary)
        .chain(std::iter::once(&answer.rollback))
        .chain(&answer.steps);
    if texts.into_iter().any(|t| t.len() > MAX_TEXT) {
        return Err(format!("a text field is longer than {MAX_TEXT} bytes"));
    }
    Ok(answer)
}

#[async_trait]
impl Advisor for LlmAdvisor {
    fn name(&self) -> &str {
        &self.name
    }

    fn cache_key(&self) -> Option<String> {
        Some(format!("{}|{}", prompt_version(), self.name))
    }

    async fn recommend(
        &self,
        request: &Redacted<AdviceRequest>,
    ) -> Result<Recommendation, AdviceError> {
        let chat = self.chat_request(request)?;
        let response = match self.provider.complete(&chat).await {
            Ok(response) => response,
            Err(source) => {
                let usage = source.billed_usage().map(|billed| {
                    Box::new(self.usage_of(self.provider.name(), self.provider.model(), billed))
                });
                return Err(AdviceError::Model { source, usage });
            }
        };
        let usage = self.usage(&response);
        let answer = parse_answer(response.json).map_err(|message| AdviceError::Answer {
            message,
            usage: Some(Box::new(usage.clone())),
        })?;
        let mut parameters = BTreeMap::new();
        for p in answer.parameters {
            if parameters.insert(p.name.clone(), p.value).is_some() {
                return Err(AdviceError::Answer {
                    message: format!("parameter `{}` is given twice", p.name),
                    usage: Some(Box::new(usage)),
                });
            }
        }
        Ok(Recommendation {
            advisor: self.name.clone(),
            template_id: answer.template_id,
            parameters,
            rationale: None,
            notes: Some(ModelNotes {
                summary: answer.summary,
                risk: answer.risk,
                steps: answer.steps,
                rollback: answer.rollback,
                confidence: answer.confidence,
            }),
            usage: Some(usage),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(extra: Value) -> Value {
        let mut base = json!({
            "summary": "Revoke the rule",
            "risk": "low",
            "template_id": "sg_open_admin_port",
            "parameters": [{"name": "group_id", "value": "sg-0123456789abcdef0"}],
            "steps": ["Check who uses SSH"],
            "rollback": "Re-add the rule",
            "confidence": 0.9
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
            base.extend(extra);
        }
        base
    }

    #[test]
    fn answers_off_the_schema_are_refused_with_the_reason() {
        assert!(parse_answer(answer(json!({}))).is_ok());
        let cases = [
            (json!({"confidence": 1.5}), "confidence"),
            (json!({"risk": "none"}), "risk"),
            (json!({"extra": 1}), "extra"),
            (json!({"steps": "one string"}), "steps"),
        ];
        for (patch, expected) in cases {
            let err = parse_answer(answer(patch.clone())).unwrap_err();
            assert!(err.contains(expected), "{patch}: {err}");
        }
        let mut missing = answer(json!({}));
        missing.as_object_mut().unwrap().remove("template_id");
        assert!(parse_answer(missing).unwrap_err().contains("template_id"));
    }

    #[test]
    fn the_schema_offers_only_the_kinds_candidates_and_requires_every_field() {
        let catalog = Catalog::builtin().unwrap();
        let candidates = catalog.candidates(FindingKind::EbsDefaultEncryptionOff);
        let schema = answer_schema(&candidates);
        let ids = schema["properties"]["template_id"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(ids[0], "ebs_default_encryption_off");
        assert!(ids.len() >= 2, "{ids:?}");
        let required = schema["required"].as_array().unwrap().len();
        let properties = schema["properties"].as_object().unwrap().len();
        assert_eq!(required, properties);
    }

    #[test]
    fn the_prompt_version_names_the_prompt_and_its_hash() {
        let v = prompt_version();
        assert!(v.starts_with("remediation-v1+") && v.len() == "remediation-v1+".len() + 8);
    }
}
