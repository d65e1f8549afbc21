//! The AWS sources against a real emulator (moto) and, for failure paths
//! moto cannot produce, loopback stand-ins that answer in AWS's wire format.

use std::collections::BTreeSet;
use std::process::Output;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, InstanceMetadataOptionsRequest,
    InstanceType, IpPermission, IpRange, Ipv6Range, LaunchPermission,
    LaunchPermissionModifications, PermissionGroup, VolumeType,
};
use regex::Regex;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, header_regex, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::moto::Moto;
use crate::support::{Draco, describe, git};

const ACCOUNT: &str = "123456789012";

fn run_with(draco: &Draco, env: &[(&'static str, String)], args: &[&str]) -> Output {
    let mut cmd = draco.command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("draco runs")
}

fn write_config(draco: &Draco, text: &str) -> String {
    let path = draco.path("draco.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn scan_json(draco: &Draco, env: &[(&'static str, String)], config: &str) -> Value {
    let out = run_with(
        draco,
        env,
        &["--config", config, "scan", "--once", "--json"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).expect("scan --json is JSON")
}

fn current(findings: &Value) -> BTreeSet<(String, String)> {
    findings
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["status"] != "resolved")
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["resource"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

const POSTURE_CONFIG: &str = r#"
[source]
kind = "aws"

[aws]
regions = ["us-east-1", "eu-west-1"]

[detect.posture]
unattached_volume_min_age_days = 0
orphaned_snapshot_min_age_days = 0
stopped_instance_min_days = 0
"#;

fn world(protocol: &str, from: Option<i32>, to: Option<i32>) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(protocol)
        .set_from_port(from)
        .set_to_port(to)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build()
}

/// Launches one instance with an encrypted root volume, so roots do not add findings.
async fn launch(
    ec2: &aws_sdk_ec2::Client,
    itype: InstanceType,
    group: &str,
    tokens: HttpTokensState,
) -> String {
    let out = ec2
        .run_instances()
        .image_id("ami-12345678")
        .min_count(1)
        .max_count(1)
        .instance_type(itype)
        .security_group_ids(group)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(tokens)
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(8)
                        .encrypted(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("RunInstances");
    out.instances()[0]
        .instance_id()
        .unwrap_or_default()
        .to_owned()
}

async fn group(ec2: &aws_sdk_ec2::Client, name: &str, rules: Vec<IpPermission>) -> String {
    let id = ec2
        .create_security_group()
        .group_name(name)
        .description(name)
        .send()
        .await
        .expect("CreateSecurityGroup")
        .group_id()
        .unwrap_or_default()
        .to_owned();
    if !rules.is_empty() {
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .set_ip_permissions(Some(rules))
            .send()
            .await
            .expect("AuthorizeSecurityGroupIngress");
    }
    id
}

async fn volume(ec2: &aws_sdk_ec2::Client, size: i32, encrypted: bool) -> String {
    ec2.create_volume()
        .availability_zone("us-east-1a")
        .size(size)
        .volume_type(VolumeType::Gp3)
        .encrypted(encrypted)
        .send()
        .await
        .expect("CreateVolume")
        .volume_id()
        .unwrap_or_default()
        .to_owned()
}

async fn snapshot(ec2: &aws_sdk_ec2::Client, volume: &str) -> String {
    ec2.create_snapshot()
        .volume_id(volume)
        .send()
        .await
        .expect("CreateSnapshot")
        .snapshot_id()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_scan_finds_exactly_the_planted_problems_and_resolves_a_fixed_one() {
    let moto = Moto::start();
    let sdk = moto.sdk("us-east-1").await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);

    let ssh = group(&ec2, "ssh-open", vec![world("tcp", Some(22), Some(22))]).await;
    let db = group(&ec2, "db-open", vec![world("tcp", Some(5432), Some(5432))]).await;
    // All traffic and SSH on one group: reported once, as sg_open_all.
    let all = group(
        &ec2,
        "all-open",
        vec![world("-1", None, None), world("tcp", Some(22), Some(22))],
    )
    .await;
    let quiet = group(&ec2, "quiet", vec![]).await;
    // RDP to every global IPv6 address (2000::/3) in two halves, and to half of IPv4 (not the world).
    let halves = group(
        &ec2,
        "rdp-halves",
        vec![
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(3389)
                .to_port(3389)
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("2000::/4").build())
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("3000::/4").build())
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/1").build())
                .build(),
        ],
    )
    .await;

    let imdsv1 = launch(
        &ec2,
        InstanceType::T3Micro,
        &quiet,
        HttpTokensState::Optional,
    )
    .await;
    let exposed = launch(&ec2, InstanceType::T3Micro, &ssh, HttpTokensState::Required).await;
    let old = launch(
        &ec2,
        InstanceType::M4Large,
        &quiet,
        HttpTokensState::Required,
    )
    .await;
    let stopped = launch(
        &ec2,
        InstanceType::T3Micro,
        &quiet,
        HttpTokensState::Required,
    )
    .await;
    ec2.stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .expect("StopInstances");

    let unencrypted = volume(&ec2, 8, false).await;
    ec2.attach_volume()
        .volume_id(&unencrypted)
        .instance_id(&old)
        .device("/dev/sdf")
        .send()
        .await
        .expect("AttachVolume");
    let idle = volume(&ec2, 20, true).await;
    let public_snapshot = snapshot(&ec2, &idle).await;
    ec2.modify_snapshot_attribute()
        .snapshot_id(&public_snapshot)
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        // The OperationType/GroupNames form: moto ignores the structured one.
        .operation_type(aws_sdk_ec2::types::OperationType::Add)
        .group_names("all")
        .send()
        .await
        .expect("ModifySnapshotAttribute");
    let temporary = volume(&ec2, 10, true).await;
    let orphan = snapshot(&ec2, &temporary).await;
    ec2.delete_volume()
        .volume_id(&temporary)
        .send()
        .await
        .expect("DeleteVolume");
    let allocation = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .expect("AllocateAddress")
        .allocation_id()
        .unwrap_or_default()
        .to_owned();
    let image = ec2
        .create_image()
        .instance_id(&old)
        .name("draco-test-image")
        .send()
        .await
        .expect("CreateImage")
        .image_id()
        .unwrap_or_default()
        .to_owned();
    ec2.modify_image_attribute()
        .image_id(&image)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .add(
                    LaunchPermission::builder()
                        .group(PermissionGroup::All)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("ModifyImageAttribute");
    // eu-west-1 has encryption by default on: it contributes no finding.
    let eu = aws_sdk_ec2::Client::new(&moto.sdk("eu-west-1").await);
    eu.enable_ebs_encryption_by_default()
        .send()
        .await
        .expect("EnableEbsEncryptionByDefault");

    let draco = Draco::new();
    let config = write_config(&draco, POSTURE_CONFIG);
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["scan_errors"], json!([]), "{report:#}");
    assert_eq!(report["scan"]["regions_scanned"], 2);
    // Every kind got a rendered, syntactically valid remediation.
    assert_eq!(report["scan"]["failures"], json!([]), "{report:#}");
    assert_eq!(
        report["scan"]["change_requests_opened"]
            .as_array()
            .map(Vec::len),
        Some(15)
    );
    for opened in report["scan"]["change_requests_opened"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let branch = opened["branch"].as_str().unwrap_or_default();
        let files = git(
            &draco.repository(),
            &["ls-tree", "-r", "--name-only", branch],
        );
        for file in files.lines().filter(|f| f.ends_with(".sh")) {
            let script = git(&draco.repository(), &["show", &format!("{branch}:{file}")]);
            let check = std::process::Command::new("bash")
                .args(["-n", "-c", &script])
                .output()
                .expect("bash");
            assert!(
                check.status.success(),
                "{branch}:{file} is not valid shell:\n{script}"
            );
        }
    }

    let expected: BTreeSet<(String, String)> = [
        ("sg_open_admin_port", ssh.as_str()),
        ("sg_open_admin_port", halves.as_str()),
        ("sg_open_db_port", db.as_str()),
        ("sg_open_all", all.as_str()),
        ("ebs_unencrypted", unencrypted.as_str()),
        ("ebs_default_encryption_off", "ebs-encryption-by-default"),
        ("ebs_unattached", idle.as_str()),
        ("snapshot_public", public_snapshot.as_str()),
        ("snapshot_orphaned", orphan.as_str()),
        ("eip_unassociated", allocation.as_str()),
        ("imdsv1_allowed", imdsv1.as_str()),
        ("instance_public_exposed", exposed.as_str()),
        ("instance_stopped_long", stopped.as_str()),
        ("ami_public", image.as_str()),
        ("instance_previous_generation", old.as_str()),
    ]
    .into_iter()
    .map(|(k, r)| (k.to_owned(), r.to_owned()))
    .collect();
    let findings: Value = serde_json::from_str(&draco.ok(&["findings", "--json"])).expect("json");
    assert_eq!(current(&findings), expected, "{findings:#}");
    for f in findings.as_array().into_iter().flatten() {
        assert_eq!(f["account"], ACCOUNT);
        assert_eq!(f["region"], "us-east-1", "{f}");
    }
    // The evidence names the ranges that opened RDP to the world: the IPv6 halves only.
    let rdp = findings
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["resource"] == halves.as_str())
        .and_then(|f| f["id"].as_i64())
        .expect("the rdp-halves finding");
    let shown: Value =
        serde_json::from_str(&draco.ok(&["show", &rdp.to_string(), "--json"])).expect("json");
    assert_eq!(
        shown["evidence"]["open_rules"][0]["cidrs"],
        json!(["2000::/4", "3000::/4"]),
        "{shown:#}"
    );
    let previous = findings
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["kind"] == "instance_previous_generation")
        .cloned()
        .unwrap_or_default();
    assert!(
        previous["title"]
            .as_str()
            .unwrap_or_default()
            .contains("m7i.large"),
        "{previous}"
    );

    // Fix the SSH exposure; the group finding and the instance exposure resolve.
    ec2.revoke_security_group_ingress()
        .group_id(&ssh)
        .ip_permissions(world("tcp", Some(22), Some(22)))
        .send()
        .await
        .expect("RevokeSecurityGroupIngress");
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(
        report["scan"]["outcome"]["resolved"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{report:#}"
    );
    let findings: Value = serde_json::from_str(&draco.ok(&["findings", "--json"])).expect("json");
    let mut still = expected.clone();
    still.remove(&("sg_open_admin_port".to_owned(), ssh.clone()));
    still.remove(&("instance_public_exposed".to_owned(), exposed.clone()));
    assert_eq!(current(&findings), still);
}

fn ce_page(days: &[(&str, bool)], token: Option<&str>) -> Value {
    let results: Vec<Value> = days
        .iter()
        .map(|(day, estimated)| {
            let start = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("day");
            let end = start + chrono::Duration::days(1);
            json!({
                "TimePeriod": { "Start": day, "End": end.to_string() },
                "Total": {},
                "Groups": [
                    { "Keys": [ACCOUNT, "Amazon Elastic Compute Cloud - Compute"], "Metrics": { "UnblendedCost": { "Amount": "120.5012", "Unit": "USD" } } },
                    { "Keys": [ACCOUNT, "Amazon Simple Storage Service"], "Metrics": { "UnblendedCost": { "Amount": "14.25", "Unit": "USD" } } }
                ],
                "Estimated": estimated
            })
        })
        .collect();
    let mut page = json!({
        "GroupDefinitions": [ { "Type": "DIMENSION", "Key": "LINKED_ACCOUNT" }, { "Type": "DIMENSION", "Key": "SERVICE" } ],
        "ResultsByTime": results,
        "DimensionValueAttributes": []
    });
    if let Some(token) = token {
        page["NextPageToken"] = json!(token);
    }
    page
}

const COST_ONLY_CONFIG: &str = r#"
[source]
kind = "aws"

[aws]
regions = ["us-east-1"]

[aws.cost]
initial_days = 30
"#;

async fn stored_cost(draco: &Draco) -> Vec<(String, String, f64, bool)> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(draco.data_dir().join("draco.db"))
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("open db");
    let rows = sqlx::query_as(
        "SELECT day, service, amount_usd, estimated FROM cost_points ORDER BY day, service",
    )
    .fetch_all(&pool)
    .await
    .expect("query");
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn cost_explorer_pages_are_followed_counted_and_fetched_incrementally() {
    let moto = Moto::start();
    let results = json!({ "results": [
        ce_page(&[("2026-11-20", false), ("2026-11-21", false)], Some("page-2")),
        ce_page(&[("2026-11-22", false), ("2026-11-23", true)], None),
    ]});
    moto.post_json(
        "/moto-api/static/ce/cost-and-usage-results",
        &results.to_string(),
    );

    let draco = Draco::new();
    let config = write_config(&draco, COST_ONLY_CONFIG);
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["cost_requests"], 2, "{report:#}");
    assert_eq!(report["scan"]["cost_points"], 8);
    assert_eq!(report["scan"]["scan_errors"], json!([]));

    let stored = stored_cost(&draco).await;
    assert_eq!(stored.len(), 8);
    assert!(
        stored
            .iter()
            .all(|(day, _, _, estimated)| *estimated == (day == "2026-11-23")),
        "{stored:?}"
    );
    assert_eq!(
        stored[0],
        (
            "2026-11-20".into(),
            "Amazon Elastic Compute Cloud - Compute".into(),
            120.5012,
            false
        )
    );

    // The next scan asks only for the restated tail, in one request, and loses nothing.
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["cost_requests"], 1, "{report:#}");
    assert_eq!(stored_cost(&draco).await.len(), 8);
    let human = run_with(
        &draco,
        &moto.env(),
        &["--config", &config, "scan", "--once"],
    );
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("1 Cost Explorer request(s)"),
        "{}",
        describe(&human)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cost_explorer_credits_stay_negative_and_residues_round_as_in_the_csv() {
    let moto = Moto::start();
    let mut page = ce_page(&[("2026-11-20", false)], None);
    page["ResultsByTime"][0]["Groups"][0]["Metrics"]["UnblendedCost"]["Amount"] =
        json!("-0.0000000092");
    page["ResultsByTime"][0]["Groups"][1]["Metrics"]["UnblendedCost"]["Amount"] = json!("-3.5");
    moto.post_json(
        "/moto-api/static/ce/cost-and-usage-results",
        &json!({ "results": [page] }).to_string(),
    );
    let draco = Draco::new();
    let config = write_config(&draco, COST_ONLY_CONFIG);
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["status"], "ok", "{report:#}");
    let amounts: Vec<f64> = stored_cost(&draco).await.into_iter().map(|r| r.2).collect();
    assert_eq!(amounts, vec![0.0, -3.5]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_finite_cost_explorer_amount_fails_the_cost_half_only() {
    let moto = Moto::start();
    let mut page = ce_page(&[("2026-11-20", false)], None);
    page["ResultsByTime"][0]["Groups"][1]["Metrics"]["UnblendedCost"]["Amount"] = json!("NaN");
    moto.post_json(
        "/moto-api/static/ce/cost-and-usage-results",
        &json!({ "results": [page] }).to_string(),
    );
    let draco = Draco::new();
    let config = write_config(&draco, COST_ONLY_CONFIG);
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["status"], "partial", "{report:#}");
    assert_eq!(report["scan"]["cost_points"], 0, "{report:#}");
    assert_eq!(report["scan"]["regions_scanned"], 1, "{report:#}");
    assert!(
        report["scan"]["scan_errors"].to_string().contains("`NaN`"),
        "{report:#}"
    );
    assert!(stored_cost(&draco).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_cap_stops_cost_explorer_and_keeps_nothing_partial() {
    let moto = Moto::start();
    let results = json!({ "results": [
        ce_page(&[("2026-11-20", false)], Some("page-2")),
        ce_page(&[("2026-11-21", false)], None),
    ]});
    moto.post_json(
        "/moto-api/static/ce/cost-and-usage-results",
        &results.to_string(),
    );
    let draco = Draco::new();
    let config = write_config(&draco, &format!("{COST_ONLY_CONFIG}max_requests = 1\n"));
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["status"], "partial");
    assert_eq!(report["scan"]["cost_requests"], 1);
    let errors = report["scan"]["scan_errors"].to_string();
    assert!(errors.contains("max_requests = 1"), "{errors}");
    assert!(stored_cost(&draco).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_region_and_a_malformed_role_fail_alone() {
    let moto = Moto::start();
    let draco = Draco::new();
    let config = write_config(
        &draco,
        r#"
[source]
kind = "aws"

[aws]
regions = ["us-east-1", "mars-north-1"]

[[aws.accounts]]
id = "123456789012"

[[aws.accounts]]
id = "210987654321"
role_arn = "arn:aws:iam::oops"

[aws.cost]
enabled = false
"#,
    );
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["status"], "partial");
    assert_eq!(
        report["scan"]["regions_scanned"], 1,
        "us-east-1 was still scanned: {report:#}"
    );
    let errors = report["scan"]["scan_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors.iter().any(|e| {
        e["account"] == ACCOUNT
            && e["region"] == "mars-north-1"
            && e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not a region enabled")
    }));
    assert!(errors.iter().any(|e| {
        e["account"] == "210987654321"
            && e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not an IAM role ARN")
    }));
    let human = run_with(
        &draco,
        &moto.env(),
        &["--config", &config, "scan", "--once"],
    );
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("account 210987654321, region -, sts: role_arn `arn:aws:iam::oops`"),
        "{text}"
    );
}

/// Cost Explorer's JSON protocol: throttled once, then the documented answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_cost_explorer_is_retried() {
    let moto = Moto::start();
    let ce = MockServer::start().await;
    let target = "AWSInsightsIndexService.GetCostAndUsage";
    Mock::given(method("POST"))
        .and(header("x-amz-target", target))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_string(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&ce)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", target))
        .and(header_regex(
            "authorization",
            "^AWS4-HMAC-SHA256 Credential=testing/[0-9]{8}/us-east-1/ce/aws4_request",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_string(ce_page(&[("2026-11-20", false)], None).to_string()),
        )
        .with_priority(2)
        .expect(1)
        .mount(&ce)
        .await;

    let draco = Draco::new();
    let config = write_config(&draco, COST_ONLY_CONFIG);
    let mut env = moto.env();
    env.push(("AWS_ENDPOINT_URL_COST_EXPLORER", ce.uri()));
    let report = scan_json(&draco, &env, &config);
    assert_eq!(report["scan"]["scan_errors"], json!([]), "{report:#}");
    assert_eq!(report["scan"]["cost_points"], 2);
    // Retries are the SDK's; the operator is billed per request Draco sends.
    assert_eq!(report["scan"]["cost_requests"], 1);
}

fn ec2_xml(action: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>{body}</{action}Response>"#
    )
}

/// EC2's query protocol: one region answers UnauthorizedOperation, the other empty inventories.
#[tokio::test(flavor = "multi_thread")]
async fn a_region_without_permission_is_reported_and_the_rest_scanned() {
    let moto = Moto::start();
    let ec2 = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_regex("authorization", "/eu-west-1/ec2/aws4_request"))
        .respond_with(ResponseTemplate::new(403).insert_header("content-type", "text/xml;charset=UTF-8").set_body_string(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>b6f6f6f6-0000-4000-8000-000000000000</RequestID></Response>"#,
        ))
        .with_priority(1)
        .mount(&ec2)
        .await;
    let empty = [
        (
            "DescribeRegions",
            "<regionInfo><item><regionName>us-east-1</regionName><regionEndpoint>ec2.us-east-1.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item><item><regionName>eu-west-1</regionName><regionEndpoint>ec2.eu-west-1.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item></regionInfo>",
        ),
        ("DescribeSecurityGroups", "<securityGroupInfo/>"),
        ("DescribeVolumes", "<volumeSet/>"),
        ("DescribeSnapshots", "<snapshotSet/>"),
        ("DescribeAddresses", "<addressesSet/>"),
        ("DescribeInstances", "<reservationSet/>"),
        ("DescribeImages", "<imagesSet/>"),
        (
            "GetEbsEncryptionByDefault",
            "<ebsEncryptionByDefault>true</ebsEncryptionByDefault><sseType>sse-ebs</sseType>",
        ),
    ];
    for (action, body) in empty {
        Mock::given(method("POST"))
            .and(body_string_contains(format!("Action={action}&")))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/xml;charset=UTF-8")
                    .set_body_string(ec2_xml(action, body)),
            )
            .with_priority(2)
            .mount(&ec2)
            .await;
    }

    let draco = Draco::new();
    let config = write_config(
        &draco,
        "[source]\nkind = \"aws\"\n\n[aws]\nregions = [\"us-east-1\", \"eu-west-1\"]\nmax_attempts = 2\n\n[aws.cost]\nenabled = false\n",
    );
    let mut env = moto.env();
    env.push(("AWS_ENDPOINT_URL_EC2", ec2.uri()));
    let report = scan_json(&draco, &env, &config);
    assert_eq!(report["scan"]["regions_scanned"], 1, "{report:#}");
    let errors = report["scan"]["scan_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["account"], ACCOUNT);
    assert_eq!(errors[0]["region"], "eu-west-1");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("UnauthorizedOperation"),
        "{errors:#?}"
    );
}

/// `deploy/iam-policy.json` grants exactly the calls `src/sources/` makes.
/// Call sites name their client `ec2`, `ce` or `sts`, which is what this reads.
#[test]
fn the_iam_policy_lists_exactly_the_operations_draco_calls() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let call = Regex::new(r"\b(ec2|ce|sts)\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)").expect("regex");
    let mut used = BTreeSet::new();
    let mut stack = vec![root.join("src/sources")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/sources") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                for caps in call.captures_iter(&text) {
                    if &caps[2] == "clone" {
                        continue;
                    }
                    let operation: String = caps[2]
                        .split('_')
                        .map(|w| {
                            let mut chars = w.chars();
                            chars
                                .next()
                                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                                .unwrap_or_default()
                        })
                        .collect();
                    used.insert(format!("{}:{operation}", &caps[1]));
                }
            }
        }
    }
    assert!(
        used.len() >= 10,
        "the call-site scan found too little: {used:?}"
    );
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/iam-policy.json")).expect("policy"),
    )
    .expect("policy is JSON");
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    assert_eq!(granted, used);
}

/// STS's query protocol: the credentials have expired.
#[tokio::test(flavor = "multi_thread")]
async fn expired_credentials_are_reported_for_their_account() {
    let moto = Moto::start();
    let sts = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=GetCallerIdentity"))
        .respond_with(ResponseTemplate::new(400).insert_header("content-type", "text/xml").set_body_string(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message></Error><RequestId>4b0b6a3e-0000-4000-8000-000000000000</RequestId></ErrorResponse>"#,
        ))
        .mount(&sts)
        .await;
    let draco = Draco::new();
    let config = write_config(
        &draco,
        "[source]\nkind = \"aws\"\n\n[aws]\nregions = [\"us-east-1\"]\n\n[[aws.accounts]]\nid = \"123456789012\"\n\n[aws.cost]\nenabled = false\n",
    );
    let mut env = moto.env();
    env.push(("AWS_ENDPOINT_URL_STS", sts.uri()));
    let report = scan_json(&draco, &env, &config);
    assert_eq!(report["scan"]["status"], "partial");
    assert_eq!(report["scan"]["regions_scanned"], 0);
    let errors = report["scan"]["scan_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["account"], ACCOUNT);
    assert_eq!(errors[0]["service"], "sts");
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ExpiredToken") && message.contains("expired"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_grouping_adds_one_series_per_tag_value() {
    let moto = Moto::start();
    let mut by_tag = ce_page(&[("2026-11-20", false)], None);
    by_tag["GroupDefinitions"][1] = json!({ "Type": "TAG", "Key": "team" });
    by_tag["ResultsByTime"][0]["Groups"] = json!([
        { "Keys": [ACCOUNT, "team$payments"], "Metrics": { "UnblendedCost": { "Amount": "99.5", "Unit": "USD" } } },
        { "Keys": [ACCOUNT, "team$"], "Metrics": { "UnblendedCost": { "Amount": "35.25", "Unit": "USD" } } }
    ]);
    let results = json!({ "results": [ce_page(&[("2026-11-20", false)], None), by_tag] });
    moto.post_json(
        "/moto-api/static/ce/cost-and-usage-results",
        &results.to_string(),
    );
    let draco = Draco::new();
    let config = write_config(
        &draco,
        &format!("{COST_ONLY_CONFIG}group_by_tag = \"team\"\n"),
    );
    let report = scan_json(&draco, &moto.env(), &config);
    assert_eq!(report["scan"]["cost_requests"], 2, "{report:#}");
    let series: Vec<String> = stored_cost(&draco)
        .await
        .into_iter()
        .map(|(_, s, _, _)| s)
        .collect();
    assert_eq!(
        series,
        vec![
            "Amazon Elastic Compute Cloud - Compute",
            "Amazon Simple Storage Service",
            "tag:team=(untagged)",
            "tag:team=payments"
        ]
    );
}
