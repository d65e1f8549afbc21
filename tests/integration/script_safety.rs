//! Cloud text never reaches a script as code (issue 10, item 9).
//!
//! Tag values, group names and descriptions are written by whoever can tag a
//! resource; a script built from them is approved by a human and then run.
//! Every hostile value below is planted where such text lands, the script is
//! rendered as Draco renders it, and then executed with bash against a fake
//! `aws` on `PATH` that records its argv: it must make exactly the calls the
//! same finding's script makes with a harmless value, and run nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use draco::detect::{self, DetectConfig};
use draco::domain::{Finding, FindingKind, has_unsafe_chars};
use draco::redact::Redactor;
use draco::remediate::safety::{self, LineKind};
use draco::remediate::templates::{Catalog, TemplateAdvisor};
use draco::remediate::{AdviceError, AdviceRequest, Advisor, Format, Proposal, Recommendation};
use draco::sources::fixtures::{FixtureSet, FixtureSource};
use draco::sources::{CostSource, CostWindow, PostureSource};
use serde_json::{Value, json};

use crate::support::{Draco, copy_tree, demo_fixtures, describe};

/// Values a tag, a group name or a description may hold, one per way of
/// adding a line, hiding one, or driving the reviewer's terminal.
const HOSTILE: &[&str] = &[
    // The issue's case: a newline and a backslash continuation.
    "web \\\naws iam create-user --user-name attacker",
    "web\naws iam create-user --user-name attacker",
    "web\\",
    "web\raws iam create-user --user-name attacker",
    "web\r\naws iam create-user --user-name attacker",
    "$(aws iam create-user --user-name attacker)",
    "`aws iam create-user --user-name attacker`",
    "web; aws iam create-user --user-name attacker",
    "web && aws iam create-user --user-name attacker",
    "web | aws iam create-user --user-name attacker",
    "x'; aws iam create-user --user-name attacker; echo '",
    "x\"; aws iam create-user --user-name attacker; echo \"",
    "${IFS}aws${IFS}iam${IFS}create-user",
    "web\u{2028}aws iam create-user --user-name attacker",
    "web\u{2029}aws iam create-user --user-name attacker",
    "web\u{85}aws iam create-user --user-name attacker",
    "web\u{b}aws iam create-user --user-name attacker",
    "web\u{c}aws iam create-user --user-name attacker",
    "web\u{0}aws iam create-user --user-name attacker",
    "\u{1b}[2K\u{1b}[1A\raws iam create-user --user-name attacker",
    "\u{1b}]0;pwned\u{7}web",
    "\u{9b}31mweb",
    "web\u{202e}resu-etaerc mai swa",
    "\u{2066}aws iam create-user\u{2069}",
    "w\u{200b}e\u{200d}b\u{feff}\u{e0041}",
    "\npython3 -c 'import os; os.system(\"aws iam create-user --user-name attacker\")'",
    "\nbash -c \"$(echo YXdzIGlhbSBjcmVhdGUtdXNlcgo= | base64 -d)\"",
    "\ncat <<EOF\naws iam create-user --user-name attacker\nEOF",
    "\necho pwned > pwned.txt",
    "x\n#!/bin/sh\naws iam create-user --user-name attacker",
    "\t\taws iam create-user --user-name attacker",
    "#",
    "Zürich グループ مجموعة",
];

/// A directory with a fake `aws` that records its argv, a `date`, and a
/// `BASH_ENV` that records any command not found on that `PATH`.
struct FakeShell {
    dir: tempfile::TempDir,
    bash: PathBuf,
}

/// One recorded `aws` call: its arguments.
type Call = Vec<String>;

impl FakeShell {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        let bash = ["/bin/bash", "/usr/bin/bash"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("bash is installed");
        let aws = format!(
            "#!{}\n{{ printf '%s\\037' \"$@\"; printf '\\036'; }} >> \"$AWS_LOG\"\ncase \"$2\" in\n  describe-volumes) echo available ;;\n  describe-instances) echo stopped ;;\n  describe-addresses) echo None ;;\n  create-snapshot|copy-snapshot|describe-snapshots) echo snap-0123456789abcdef0 ;;\n  create-image|describe-images) echo ami-0123456789abcdef0 ;;\n  create-volume) echo vol-0123456789abcdef0 ;;\nesac\n",
            bash.display()
        );
        write_executable(&bin.join("aws"), &aws);
        let date = ["/bin/date", "/usr/bin/date"]
            .iter()
            .find(|p| Path::new(p).exists())
            .expect("date is installed");
        std::os::unix::fs::symlink(date, bin.join("date")).expect("date link");
        std::fs::write(
            dir.path().join("bash_env"),
            "command_not_found_handle() { { printf '%s\\037' \"$@\"; printf '\\036'; } >> \"$UNEXPECTED_LOG\"; return 127; }\n",
        )
        .expect("bash_env");
        Self { dir, bash }
    }

    /// Runs a script in a fresh working directory; returns the `aws` calls
    /// it made, and panics if it ran anything else or wrote a file.
    fn run(&self, script: &str, what: &str) -> Vec<Call> {
        let work = tempfile::tempdir_in(self.dir.path()).expect("work dir");
        let path = work.path().join("remediation.sh");
        std::fs::write(&path, script).expect("script");
        let aws_log = self.dir.path().join("aws.log");
        let unexpected = self.dir.path().join("unexpected.log");
        let _ = std::fs::remove_file(&aws_log);
        let _ = std::fs::remove_file(&unexpected);
        let out = Command::new(&self.bash)
            .arg(&path)
            .current_dir(work.path())
            .env_clear()
            .env("PATH", self.dir.path().join("bin"))
            .env("BASH_ENV", self.dir.path().join("bash_env"))
            .env("AWS_LOG", &aws_log)
            .env("UNEXPECTED_LOG", &unexpected)
            .env("ALERT_EMAIL", "ops@example.com")
            .output()
            .expect("bash runs");
        let ran_else = std::fs::read_to_string(&unexpected).unwrap_or_default();
        assert!(
            ran_else.is_empty(),
            "{what}: the script ran `{}`\n{script}\n{}",
            ran_else.replace(['\u{1e}', '\u{1f}'], " "),
            describe(&out)
        );
        let files: Vec<_> = std::fs::read_dir(work.path())
            .expect("work dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            files,
            vec!["remediation.sh"],
            "{what}: the script wrote files\n{script}"
        );
        std::fs::read_to_string(&aws_log)
            .unwrap_or_default()
            .split('\u{1e}')
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.split('\u{1f}')
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }
}

#[test]
fn the_fake_shell_sees_every_call_and_every_other_command() {
    // The harness itself must be able to fail: what the scripts above are
    // checked for is seen when it happens.
    let shell = FakeShell::new();
    let calls = shell.run(
        "#!/usr/bin/env bash\n# a comment \\\naws iam create-user --user-name 'a b'\n",
        "harness",
    );
    assert_eq!(
        calls,
        vec![vec!["iam", "create-user", "--user-name", "a b"]]
    );
    for script in ["python3 -c 'print(1)'\n", "echo x > pwned.txt\n"] {
        let ran = std::panic::catch_unwind(|| shell.run(script, "harness"));
        assert!(ran.is_err(), "{script} went unnoticed");
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `service operation` of each call, which is what may not change.
fn operations(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| c.iter().take(2).cloned().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The demo's findings, as the scan detects them (neutralised).
async fn demo_findings() -> Vec<Finding> {
    let source = FixtureSource::new(FixtureSet::EmbeddedDemo);
    let now = Utc::now();
    let costs = source
        .daily_costs(CostWindow {
            last_stored_day: None,
            today: now.date_naive(),
        })
        .await
        .expect("demo costs");
    let posture = source.inventory().await.expect("demo inventory");
    detect::detect(
        &costs.points,
        &posture.inventories,
        &DetectConfig::default(),
        now,
    )
}

/// Plants `value` where outside text lands: the title, a Name tag in the
/// evidence, and for cost findings the series (a cost-allocation tag value).
fn plant(finding: &Finding, value: &str) -> Finding {
    let mut f = finding.clone();
    f.title = format!("{} {value}", f.title);
    if let Value::Object(map) = &mut f.evidence {
        map.insert("tags".into(), json!({ "Name": value, value: "key" }));
        if let Some(series) = map.get_mut("series").and_then(Value::as_object_mut) {
            series.insert("service".into(), json!(format!("tag:team={value}")));
        }
    }
    f
}

async fn render(catalog: &TemplateAdvisor, finding: &Finding) -> Result<Proposal, AdviceError> {
    render_request(catalog, AdviceRequest::from_finding(finding)).await
}

/// A request with the finding's text as it is, not neutralised (what
/// `AdviceRequest::from_finding` would do): only the template side stands.
fn raw_request(f: &Finding) -> AdviceRequest {
    AdviceRequest {
        kind: f.kind.as_str().to_owned(),
        fingerprint: f.fingerprint.to_string(),
        severity: f.severity.as_str().to_owned(),
        title: f.title.clone(),
        resource: f.resource.clone(),
        account: f.account.to_string(),
        region: f.region.clone(),
        expected: f.expected,
        actual: f.actual,
        impact_usd_monthly: f.impact_usd_monthly,
        evidence: f.evidence.clone(),
    }
}

async fn render_request(
    catalog: &TemplateAdvisor,
    request: AdviceRequest,
) -> Result<Proposal, AdviceError> {
    let (redacted, vault) = Redactor::default().redact(&request).expect("redact");
    let recommendation = catalog.recommend(&redacted).await?;
    let (restored, _) = recommendation.restore(&vault);
    catalog.catalog().render(&restored, &request)
}

/// Every line of a rendered script is a comment, a blank line or one of
/// its template's declared shapes, and nothing in it can move a line.
fn assert_only_declared_lines(catalog: &Catalog, proposal: &Proposal, what: &str) {
    let template = catalog.get(&proposal.template_id).expect("template");
    safety::check_proposal(proposal, template).unwrap_or_else(|e| panic!("{what}: {e}"));
    for text in [&proposal.body, &proposal.rollback, &proposal.summary] {
        for line in text.split('\n') {
            assert!(!has_unsafe_chars(line), "{what}: {line:?}");
        }
    }
    for line in safety::logical_lines(proposal.format, &proposal.body).expect("readable") {
        if let LineKind::Command(command) = line.kind {
            // Planted text may stand inside a quoted word, as data; never as a command.
            assert!(!command.starts_with("aws iam"), "{what}: {command}");
        }
    }
}

#[tokio::test]
async fn hostile_outside_text_adds_no_line_and_runs_no_call() {
    let advisor = TemplateAdvisor::new(Catalog::builtin().expect("templates"));
    let shell = FakeShell::new();
    let findings = demo_findings().await;
    assert!(findings.len() >= 8, "{}", findings.len());
    let (mut checked, mut refused) = (0, 0);
    for finding in &findings {
        let benign = render(&advisor, &plant(finding, "benign"))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", finding.kind));
        if benign.format != Format::AwsCli {
            continue;
        }
        let expected_body = operations(&shell.run(&benign.body, "benign body"));
        let expected_rollback = operations(&shell.run(&benign.rollback, "benign rollback"));
        assert!(
            !expected_body.is_empty() || finding.kind == FindingKind::CostNewService,
            "{}: {expected_body:?}",
            finding.kind
        );
        for value in HOSTILE {
            // As the scan stores it: neutralised where findings are built.
            let mut planted = plant(finding, value);
            planted.neutralise();
            let what = format!("{} with {value:?}", finding.kind);
            let proposal = match render(&advisor, &planted).await {
                Ok(p) => p,
                // A cost series is a parameter: a value its pattern refuses, or
                // one the denylist refuses even as data, gives no script at all.
                Err(AdviceError::Parameter { .. } | AdviceError::Unsafe(_))
                    if finding.kind.is_cost_anomaly() =>
                {
                    refused += 1;
                    continue;
                }
                Err(e) => panic!("{what}: {e}"),
            };
            assert_only_declared_lines(advisor.catalog(), &proposal, &what);
            let body = shell.run(&proposal.body, &what);
            assert_eq!(
                operations(&body),
                expected_body,
                "{what}\n{}",
                proposal.body
            );
            let rollback = shell.run(&proposal.rollback, &what);
            assert_eq!(operations(&rollback), expected_rollback, "{what}");
            checked += 1;

            // Defence in depth: the same finding *not* neutralised still
            // renders to declared lines only, or is refused.
            let raw = raw_request(&plant(finding, value));
            assert!(
                value.chars().all(|c| !has_unsafe_chars(&c.to_string()))
                    || raw.title.chars().any(|c| has_unsafe_chars(&c.to_string())),
                "{what}: the raw request was neutralised"
            );
            if let Ok(proposal) = render_request(&advisor, raw).await {
                assert_only_declared_lines(advisor.catalog(), &proposal, &what);
                assert_eq!(operations(&shell.run(&proposal.body, &what)), expected_body);
            }
        }
    }
    assert!(
        checked >= HOSTILE.len() * 5,
        "only {checked} scripts checked ({refused} refused)"
    );
}

#[tokio::test]
async fn the_issue_case_is_one_comment_line() {
    // A Name tag holding a newline and a backslash continuation once turned
    // the title comment into `aws iam create-user`, which then ran.
    let advisor = TemplateAdvisor::new(Catalog::builtin().expect("templates"));
    let findings = demo_findings().await;
    let sg = findings
        .iter()
        .find(|f| f.kind == FindingKind::SgOpenAdminPort)
        .expect("an open SSH group in the demo");
    let mut planted = plant(sg, "web \\\naws iam create-user --user-name attacker");
    planted.neutralise();
    assert!(!planted.title.contains('\n'), "{}", planted.title);
    let proposal = render(&advisor, &planted).await.expect("renders");
    let title_line = proposal
        .body
        .lines()
        .find(|l| l.contains("create-user"))
        .expect("the name is still shown");
    assert!(title_line.starts_with("# "), "{title_line}");
    assert!(
        title_line.ends_with("web \\\\naws iam create-user --user-name attacker"),
        "{title_line}"
    );
    let calls = FakeShell::new().run(&proposal.body, "issue case");
    assert!(
        calls
            .iter()
            .all(|c| c[..2] == ["ec2", "revoke-security-group-ingress"]),
        "{calls:?}"
    );
}

/// The demo fixtures with one hostile value (cycling through the list) in
/// every group name, Name tag and description.
fn hostile_fixtures(draco: &Draco) -> PathBuf {
    let dir = draco.path("fixtures");
    copy_tree(&demo_fixtures(), &dir);
    let mut next = 0;
    for account in std::fs::read_dir(dir.join("ec2")).expect("ec2 dir") {
        for file in std::fs::read_dir(account.expect("entry").path()).expect("account dir") {
            let path = file.expect("entry").path();
            let mut doc: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            plant_json(&mut doc, &mut next);
            std::fs::write(&path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
        }
    }
    dir
}

fn plant_json(value: &mut Value, next: &mut usize) {
    let mut hostile = || {
        *next += 1;
        HOSTILE[*next % HOSTILE.len()].to_owned()
    };
    match value {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get_mut("GroupName") {
                name.push_str(&hostile());
            }
            if let Some(Value::String(d)) = map.get_mut("Description") {
                d.push_str(&hostile());
            }
            if let Some(Value::Array(tags)) = map.get_mut("Tags") {
                for tag in tags.iter_mut() {
                    if tag["Key"] == "Name" {
                        tag["Value"] = json!(format!(
                            "{}{}",
                            tag["Value"].as_str().unwrap_or(""),
                            hostile()
                        ));
                    }
                }
                tags.push(json!({"Key": hostile(), "Value": hostile()}));
            }
            map.values_mut().for_each(|v| plant_json(v, next));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| plant_json(v, next)),
        _ => {}
    }
}

fn scan(draco: &Draco, fixtures: &Path) {
    let config = draco.path("draco.toml");
    std::fs::write(
        &config,
        format!("[source]\nkind = \"fixtures\"\nfixtures_dir = {fixtures:?}\n"),
    )
    .expect("config");
    let out = draco
        .command()
        .arg("--config")
        .arg(&config)
        .args(["scan", "--once"])
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
    for c in ['\u{1b}', '\r', '\u{2028}', '\u{202e}', '\u{9b}'] {
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(c),
            "U+{:04X} reached the terminal",
            u32::from(c)
        );
    }
}

/// Proposals by (kind, resource).
fn proposals(draco: &Draco) -> BTreeMap<(String, String), Value> {
    draco
        .findings()
        .into_iter()
        .map(|f| {
            let id = f["id"].as_i64().expect("id").to_string();
            let show: Value =
                serde_json::from_str(&draco.ok(&["show", &id, "--json"])).expect("show --json");
            let key = (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["resource"].as_str().unwrap_or_default().to_owned(),
            );
            (key, show)
        })
        .collect()
}

#[test]
fn a_scan_of_hostile_names_stores_and_shows_neutral_text_and_safe_scripts() {
    let clean = Draco::new();
    scan(&clean, &demo_fixtures());
    let hostile = Draco::new();
    scan(&hostile, &hostile_fixtures(&hostile));
    let shell = FakeShell::new();
    let expected = proposals(&clean);
    let got = proposals(&hostile);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same findings"
    );
    let mut planted_titles = 0;
    for (key, show) in &got {
        let what = format!("{key:?}");
        let title = show["title"].as_str().unwrap_or_default();
        assert!(!has_unsafe_chars(title), "{what}: {title:?}");
        if title.contains("aws iam") {
            planted_titles += 1;
        }
        let Some(body) = show["proposal"]["body"].as_str() else {
            panic!("{what}: no proposal: {show}");
        };
        let clean_body = expected[key]["proposal"]["body"]
            .as_str()
            .expect("clean body");
        if show["proposal"]["format"] == "terraform" {
            continue;
        }
        assert_eq!(
            operations(&shell.run(body, &what)),
            operations(&shell.run(clean_body, &what)),
            "{what}\n{body}"
        );
        // What a reviewer sees in the terminal.
        let id = show["id"].as_i64().unwrap_or(0);
        let text = hostile.ok(&["show", &id.to_string()]);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r'),
            "{what}: {text:?}"
        );
    }
    assert!(
        planted_titles >= 1,
        "no title carried a planted value: {got:#?}"
    );
    let table = hostile.ok(&["findings"]);
    assert!(!has_unsafe_chars(&table.replace('\n', "")), "{table:?}");
}

#[tokio::test]
async fn a_chosen_value_must_be_one_the_finding_mentions() {
    let catalog = Catalog::builtin().expect("templates");
    let findings = demo_findings().await;
    let spike = findings
        .iter()
        .find(|f| f.kind == FindingKind::CostSpike)
        .expect("a cost spike in the demo");
    let choose = |instance: &str| Recommendation {
        advisor: "model".into(),
        template_id: "ec2_stop_instance".into(),
        parameters: BTreeMap::from([
            ("instance_id".to_owned(), instance.to_owned()),
            ("region".to_owned(), "us-east-1".to_owned()),
        ]),
        rationale: None,
        notes: None,
        usage: None,
    };
    // The spike names no instance: a model cannot pick one.
    let request = AdviceRequest::from_finding(spike);
    let err = catalog
        .render(&choose("i-0123456789abcdef0"), &request)
        .expect_err("an instance the finding does not mention");
    assert!(err.to_string().contains("not mentioned"), "{err}");
    // Once the evidence names it (and its region), it may.
    let mut mentioned = spike.clone();
    mentioned.evidence["instances"] =
        json!([{ "instance_id": "i-0123456789abcdef0", "region": "us-east-1" }]);
    let request = AdviceRequest::from_finding(&mentioned);
    let proposal = catalog
        .render(&choose("i-0123456789abcdef0"), &request)
        .expect("a mentioned instance");
    assert!(
        proposal.body.contains("'i-0123456789abcdef0'"),
        "{}",
        proposal.body
    );
    // A longer id that merely contains a mentioned one is not mentioned.
    mentioned.evidence["instances"] = json!(["i-0123456789abcdef01"]);
    let request = AdviceRequest::from_finding(&mentioned);
    assert!(
        catalog
            .render(&choose("i-0123456789abcdef0"), &request)
            .is_err()
    );
    // A control character in a parameter is refused before anything else.
    let err = catalog
        .render(&choose("i-0123456789abcdef0\n"), &request)
        .expect_err("a newline in a parameter");
    assert!(err.to_string().contains("control"), "{err}");
}

#[tokio::test]
async fn terraform_gets_no_block_from_outside_text() {
    let catalog = Catalog::builtin().expect("templates");
    for value in HOSTILE.iter().chain(&[
        "\"\n}\nresource \"aws_iam_user\" \"x\" {\n  name = \"attacker\"",
        "${file(\"/etc/passwd\")}",
        "%{ for x in [1] }x%{ endfor }",
    ]) {
        for neutralised in [true, false] {
            let mut finding = Finding {
                kind: FindingKind::EbsDefaultEncryptionOff,
                severity: draco::domain::Severity::Medium,
                title: format!("EBS encryption by default is off {value}"),
                resource: "us-east-1".into(),
                account: draco::domain::AccountId::parse("123456789012").expect("account"),
                region: Some("us-east-1".into()),
                expected: None,
                actual: None,
                impact_usd_monthly: None,
                evidence: json!({ "tags": { "Name": value } }),
                fingerprint: draco::domain::Fingerprint::of(&["x"]),
            };
            if neutralised {
                finding.neutralise();
            }
            let request = AdviceRequest::from_finding(&finding);
            let recommendation = Recommendation {
                advisor: "model".into(),
                template_id: "ebs_default_encryption_terraform".into(),
                parameters: BTreeMap::from([("region".to_owned(), "us-east-1".to_owned())]),
                rationale: None,
                notes: None,
                usage: None,
            };
            let what = format!("{value:?}");
            let proposal = catalog.render(&recommendation, &request).expect(&what);
            assert_only_declared_lines(&catalog, &proposal, &what);
            let body: hcl::Body = hcl::parse(&proposal.body).expect("parses");
            let blocks: Vec<String> = body
                .blocks()
                .map(|b| format!("{} {:?}", b.identifier(), b.labels()))
                .collect();
            assert_eq!(blocks.len(), 2, "{what}: {blocks:?}\n{}", proposal.body);
            assert_eq!(body.attributes().count(), 0, "{what}");
        }
    }
}

/// One more region for the demo account with a resource for every posture
/// rule the demo leaves out, so that every template is rendered.
const EVERY_RULE_REGION: &str = r#"{
 "EbsEncryptionByDefault": false,
 "SecurityGroups": [
  {"GroupId": "sg-0aaaaaaaaaaaaaaa1", "GroupName": "all-open", "IpPermissions": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]},
  {"GroupId": "sg-0aaaaaaaaaaaaaaa2", "GroupName": "db-open", "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}
 ],
 "Volumes": [{"VolumeId": "vol-0aaaaaaaaaaaaaaa3", "Size": 50, "VolumeType": "gp3", "Encrypted": true, "State": "in-use", "CreateTime": "2025-01-01T00:00:00Z", "AvailabilityZone": "ap-southeast-2a", "Attachments": [{"InstanceId": "i-0aaaaaaaaaaaaaaa5"}]}],
 "Snapshots": [{"SnapshotId": "snap-0aaaaaaaaaaaaaaa4", "VolumeId": "vol-0ffffffffffffffff", "VolumeSize": 20, "StartTime": "2025-01-01T00:00:00Z", "Encrypted": true, "OwnerId": "402917364518", "Description": "old data", "CreateVolumePermissions": []}],
 "Reservations": [{"Instances": [
  {"InstanceId": "i-0aaaaaaaaaaaaaaa5", "InstanceType": "m4.large", "State": {"Code": 80, "Name": "stopped"}, "StateTransitionReason": "User initiated (2025-01-05 10:12:44 GMT)", "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-0aaaaaaaaaaaaaaa3"}}], "MetadataOptions": {"HttpTokens": "optional", "HttpEndpoint": "enabled"}, "SecurityGroups": [{"GroupId": "sg-0aaaaaaaaaaaaaaa1", "GroupName": "all-open"}]},
  {"InstanceId": "i-0aaaaaaaaaaaaaaa6", "InstanceType": "t3.micro", "State": {"Code": 16, "Name": "running"}, "PublicIpAddress": "203.0.113.10", "SecurityGroups": [{"GroupId": "sg-0aaaaaaaaaaaaaaa2", "GroupName": "db-open"}], "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"}}
 ]}],
 "Images": [{"ImageId": "ami-0aaaaaaaaaaaaaaa7", "Name": "golden", "Public": true, "CreationDate": "2025-01-01T00:00:00.000Z"}]
}"#;

#[tokio::test]
async fn every_template_renders_to_its_declared_lines_and_runs_only_aws() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&demo_fixtures(), dir.path());
    std::fs::write(
        dir.path().join("ec2/402917364518/ap-southeast-2.json"),
        EVERY_RULE_REGION,
    )
    .expect("extra region");
    let source = FixtureSource::new(FixtureSet::Directory(dir.path().to_owned()));
    let now = Utc::now();
    let costs = source
        .daily_costs(CostWindow {
            last_stored_day: None,
            today: now.date_naive(),
        })
        .await
        .expect("costs");
    let posture = source.inventory().await.expect("inventory");
    let findings = detect::detect(
        &costs.points,
        &posture.inventories,
        &DetectConfig::default(),
        now,
    );
    let catalog = Catalog::builtin().expect("templates");
    let shell = FakeShell::new();
    let mut rendered = std::collections::BTreeSet::new();
    for finding in &findings {
        let request = AdviceRequest::from_finding(finding);
        let json = serde_json::to_value(&request).expect("json");
        for template in catalog.candidates(finding.kind) {
            let Ok(parameters) = template
                .parameters
                .iter()
                .map(|p| {
                    Ok((
                        p.name.clone(),
                        draco::remediate::templates::parameter_value(&json, p)?,
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, String>>()
            else {
                // An alternative that does not fit this finding (no instance to stop).
                continue;
            };
            let recommendation = Recommendation {
                advisor: "test".into(),
                template_id: template.id.clone(),
                parameters,
                rationale: None,
                notes: None,
                usage: None,
            };
            let what = format!("{} for {}", template.id, finding.kind);
            let proposal = match catalog.render(&recommendation, &request) {
                Ok(p) => p,
                Err(AdviceError::Parameter { .. }) if !template.kinds.contains(&finding.kind) => {
                    continue;
                }
                Err(e) => panic!("{what}: {e}"),
            };
            assert_only_declared_lines(&catalog, &proposal, &what);
            if proposal.format == Format::AwsCli {
                for script in [&proposal.body, &proposal.rollback] {
                    for call in shell.run(script, &what) {
                        let command = call[..2].join(" ");
                        assert!(
                            template.allowed_commands.contains(&command),
                            "{what}: {command}"
                        );
                    }
                }
            }
            rendered.insert(template.id.clone());
        }
    }
    let all: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("remediation-templates"))
            .expect("templates dir")
            .filter_map(|e| {
                let path = e.ok()?.path();
                Some(path.file_stem()?.to_str()?.to_owned())
            })
            .collect();
    for id in &all {
        assert!(
            rendered.contains(id),
            "template {id} was never rendered: {rendered:?}"
        );
    }
}

/// A stand-in model (OpenAI Chat Completions wire format) that, whenever it
/// may, stops an instance the finding never mentions, and otherwise answers
/// the kind's own template with words full of escapes and line breaks.
struct Overreaching;

impl wiremock::Respond for Overreaching {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let ids: Vec<String> =
            body["response_format"]["json_schema"]["schema"]["properties"]["template_id"]["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        let prompt = body["messages"][1]["content"].as_str().unwrap_or_default();
        let (template_id, parameters) = if ids.iter().any(|id| id == "ec2_stop_instance") {
            (
                "ec2_stop_instance".to_owned(),
                json!([
                    {"name": "instance_id", "value": "i-0badc0ffee0ddf00d"},
                    {"name": "region", "value": "us-east-1"}
                ]),
            )
        } else {
            let own = ids.first().cloned().unwrap_or_default();
            let section = prompt
                .split("\n## ")
                .find(|s| s.starts_with(own.as_str()))
                .unwrap_or_default();
            let suggested: Vec<Value> = section
                .lines()
                .filter_map(|line| {
                    let line = line.trim_start().strip_prefix("- `")?;
                    let (name, rest) = line.split_once('`')?;
                    let value = rest.split_once("suggested `")?.1.strip_suffix('`')?;
                    Some(json!({"name": name, "value": value}))
                })
                .collect();
            (own, Value::Array(suggested))
        };
        let content = json!({
            "summary": "Fix it\n\u{1b}[2K\u{1b}[1Aaws iam create-user",
            "risk": "low",
            "template_id": template_id,
            "parameters": parameters,
            "steps": ["Check\u{202e}txet", "Merge\r\naws iam create-user"],
            "rollback": "Run the rollback\u{2028}script.",
            "confidence": 0.7
        });
        wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": 1_764_000_000,
            "model": "gpt-4.1-mini-2025-04-14",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content.to_string(), "refusal": null},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1020}
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_cannot_name_an_instance_the_finding_does_not_mention() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(Overreaching)
        .mount(&server)
        .await;
    let draco = Draco::new();
    let config = draco.path("draco.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"fixtures\"\nfixtures_dir = {:?}\n[llm]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"gpt-4.1-mini\"\nmax_attempts = 1\ntimeout_secs = 5\n",
            demo_fixtures(),
            server.uri()
        ),
    )
    .expect("config");
    let out = tokio::task::block_in_place(|| {
        draco
            .command()
            .arg("--config")
            .arg(&config)
            .args(["scan", "--once"])
            .env("DRACO_LLM_API_KEY", "sk-test-standin")
            .output()
            .expect("draco runs")
    });
    assert!(out.status.success(), "{}", describe(&out));
    let show = |kind: &str| -> Value {
        let id = draco.finding_id(kind).to_string();
        serde_json::from_str(&draco.ok(&["show", &id, "--json"])).expect("show --json")
    };
    // The spike names no instance: the model's choice is refused and the
    // template's own remediation used, with the reason recorded.
    let spike = show("cost_spike");
    let proposal = &spike["proposal"];
    assert_eq!(proposal["advisor"], "template", "{proposal}");
    assert_eq!(proposal["template_id"], "cost_spike", "{proposal}");
    let reason = proposal["advice"]["fallback_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("not mentioned"), "{reason}");
    assert!(
        !proposal["body"]
            .as_str()
            .unwrap_or_default()
            .contains("i-0badc0ffee0ddf00d")
    );
    // Where the model's answer is used, its words are stored neutralised.
    let snapshot = show("snapshot_public");
    let notes = &snapshot["proposal"]["advice"]["notes"];
    assert_eq!(
        snapshot["proposal"]["advisor"], "openai:gpt-4.1-mini",
        "{snapshot}"
    );
    assert_eq!(
        notes["summary"], "Fix it\\n\\u{1b}[2K\\u{1b}[1Aaws iam create-user",
        "{notes}"
    );
    assert_eq!(
        notes["steps"][1], "Merge\\r\\naws iam create-user",
        "{notes}"
    );
    let text = draco.ok(&["show", &draco.finding_id("snapshot_public").to_string()]);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "{text:?}"
    );
}
