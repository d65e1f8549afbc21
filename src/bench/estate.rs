//! `draco bench estate`: a flood of findings, end to end. A generated
//! estate (accounts × regions × instances, a share of its resources bad) is
//! written as fixture files, and the real application scans it on a fresh
//! data directory with the local change-request repository, until every
//! finding has its change request: how many findings, how many change
//! requests each scan opened and queued, and how long each scan took.
//!
//! What it answers: a first scan of a large estate opens at most
//! `gitops.max_new_per_scan` change requests (or groups), queues the rest,
//! and stays fast; the later scans drain the queue; a re-scan with nothing
//! new is quick. Nothing leaves the machine: fixtures, SQLite and a bare git
//! repository in a scratch directory, the template advisor.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use super::cost::Rng;
use crate::compose::{App, SourceChoice};
use crate::gitops::config::Grouping;
use crate::sources::fixtures::FixtureSet;

/// The estate to generate.
#[derive(Debug, Clone, Serialize)]
pub struct EstateSpec {
    pub accounts: usize,
    pub regions: usize,
    /// Running instances per account and region, each with an attached root
    /// volume; one security group per 25 instances.
    pub instances: usize,
    /// Share of resources made bad, in percent: instances allowing IMDSv1,
    /// unencrypted volumes, security groups open to the world on SSH, and as
    /// many unattached volumes again.
    pub bad_percent: f64,
    pub seed: u64,
}

/// The regions the generator spreads over, in order.
const REGIONS: [&str; 8] = super::AWS_REGIONS;

/// Instances per security group.
const INSTANCES_PER_GROUP: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum EstateError {
    #[error("--regions must be from 1 to {max}", max = REGIONS.len())]
    Regions,
    #[error("cannot write the estate's fixtures: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot set up Draco on the scratch directory: {0}")]
    Setup(String),
    #[error("scan {scan} failed: {message}")]
    Scan { scan: usize, message: String },
}

/// One scan of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ScanFigures {
    pub scan: usize,
    pub seconds: f64,
    pub findings_detected: usize,
    /// Findings that got a change request this scan (joined or opened).
    pub findings_given_change_requests: usize,
    /// Distinct change requests (branches) opened or added to this scan.
    pub change_requests: usize,
    pub queued: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EstateReport {
    pub spec: EstateSpec,
    pub group: Grouping,
    pub max_new_per_scan: u32,
    /// Resources in the generated estate (instances, volumes, groups).
    pub resources: usize,
    pub scans: Vec<ScanFigures>,
    /// Scans until no finding was left queued (or the cap was reached).
    pub drained: bool,
    /// The scan after the queue drained: nothing new to open.
    pub rescan_seconds: Option<f64>,
}

/// Writes the estate as fixtures under `dir` (`cost.csv`, and
/// `ec2/<account>/<region>.json` as the EC2 `Describe*` members). Returns
/// the number of resources.
pub fn write_estate(spec: &EstateSpec, dir: &Path) -> Result<usize, EstateError> {
    if spec.regions == 0 || spec.regions > REGIONS.len() {
        return Err(EstateError::Regions);
    }
    let mut rng = Rng(spec.seed);
    let bad = spec.bad_percent / 100.0;
    let mut resources = 0;
    std::fs::write(
        dir.join("cost.csv"),
        "date,account_id,service,amount_usd,estimated\n",
    )?;
    for a in 0..spec.accounts {
        let account = account_id(a);
        std::fs::create_dir_all(dir.join("ec2").join(&account))?;
        for region in REGIONS.iter().take(spec.regions) {
            let groups: Vec<String> = (0..spec.instances.div_ceil(INSTANCES_PER_GROUP))
                .map(|_| aws_id(&mut rng, "sg"))
                .collect();
            let mut inventory = json!({
                "SecurityGroups": [], "Volumes": [], "Snapshots": [], "Addresses": [],
                "Reservations": [{ "Instances": [] }],
            });
            let mut instances = Vec::new();
            let mut volumes = Vec::new();
            for i in 0..spec.instances {
                let id = aws_id(&mut rng, "i");
                let group = &groups[i / INSTANCES_PER_GROUP];
                let tokens = if rng.unit() < bad {
                    "optional"
                } else {
                    "required"
                };
                instances.push(json!({
                    "InstanceId": id, "InstanceType": "m6i.large",
                    "State": { "Code": 16, "Name": "running" },
                    "LaunchTime": "2026-03-02T09:13:00Z", "PrivateIpAddress": "10.20.1.15",
                    "SecurityGroups": [{ "GroupId": group, "GroupName": format!("app-{group}") }],
                    "MetadataOptions": { "HttpTokens": tokens, "HttpEndpoint": "enabled", "State": "applied" },
                    "Tags": [{ "Key": "Name", "Value": format!("app-{i}") }],
                }));
                let root = aws_id(&mut rng, "vol");
                volumes.push(volume(&root, region, rng.unit() >= bad, Some(&id)));
                if rng.unit() < bad {
                    let spare = aws_id(&mut rng, "vol");
                    volumes.push(volume(&spare, region, true, None));
                }
            }
            let groups: Vec<Value> = groups
                .iter()
                .map(|id| {
                    let cidr = if rng.unit() < bad {
                        "0.0.0.0/0"
                    } else {
                        "10.0.0.0/8"
                    };
                    json!({
                        "GroupId": id, "GroupName": format!("app-{id}"), "VpcId": "vpc-04c2e8a1f6b3d9e57",
                        "OwnerId": account,
                        "IpPermissions": [{ "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                            "IpRanges": [{ "CidrIp": cidr }], "Ipv6Ranges": [] }],
                        "Tags": [],
                    })
                })
                .collect();
            resources += instances.len() + volumes.len() + groups.len();
            inventory["Reservations"][0]["Instances"] = Value::Array(instances);
            inventory["Volumes"] = Value::Array(volumes);
            inventory["SecurityGroups"] = Value::Array(groups);
            std::fs::write(
                dir.join("ec2")
                    .join(&account)
                    .join(format!("{region}.json")),
                inventory.to_string(),
            )?;
        }
    }
    Ok(resources)
}

/// The generated estate's `index`th account id (12 digits).
fn account_id(index: usize) -> String {
    format!("{:012}", 100_000_000_000 + index as u64 * 7_919)
}

/// Service names the generated cost series are spread over, in order; a
/// series beyond them all in one account takes a numbered copy.
const SERVICES: [&str; 12] = [
    "Amazon Elastic Compute Cloud - Compute",
    "Amazon Simple Storage Service",
    "Amazon Relational Database Service",
    "AWS Lambda",
    "Amazon CloudWatch",
    "Amazon DynamoDB",
    "Amazon Virtual Private Cloud",
    "AWS Key Management Service",
    "Amazon Elastic Container Service",
    "Amazon Simple Queue Service",
    "Amazon CloudFront",
    "AWS Backup",
];

/// Daily cost series to generate alongside an estate.
#[derive(Debug, Clone, Serialize)]
pub struct CostSpec {
    /// Accounts the series are spread over (round-robin), as numbered by
    /// [`write_estate`].
    pub accounts: usize,
    /// Distinct (account, service) series.
    pub series: usize,
    /// Days per series, ending on `last_day`.
    pub days: usize,
    pub last_day: chrono::NaiveDate,
    pub seed: u64,
}

/// Replaces `dir/cost.csv` with `spec.series` daily series of
/// `spec.days` days each: a level from $1 to $500 a day, weekly seasonality
/// (weekends lower), ±5 % noise. Returns the rows written.
pub fn write_costs(spec: &CostSpec, dir: &Path) -> Result<usize, EstateError> {
    use std::io::Write as _;
    let accounts = spec.accounts.max(1);
    let mut rng = Rng(spec.seed ^ 0xC057);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("cost.csv"))?);
    writeln!(out, "date,account_id,service,amount_usd,estimated")?;
    let first = spec
        .last_day
        .checked_sub_days(chrono::Days::new(spec.days.saturating_sub(1) as u64))
        .unwrap_or(spec.last_day);
    let mut rows = 0;
    for i in 0..spec.series {
        let account = account_id(i % accounts);
        let n = i / accounts;
        let service = match SERVICES.get(n) {
            Some(name) => (*name).to_owned(),
            None => format!("{} {}", SERVICES[n % SERVICES.len()], n / SERVICES.len()),
        };
        let level = 1.0 + rng.unit() * 499.0;
        for d in 0..spec.days {
            let Some(day) = first.checked_add_days(chrono::Days::new(d as u64)) else {
                break;
            };
            let weekend = matches!(
                chrono::Datelike::weekday(&day),
                chrono::Weekday::Sat | chrono::Weekday::Sun
            );
            let season = if weekend { 0.8 } else { 1.0 };
            let amount = level * season * (0.95 + rng.unit() * 0.1);
            writeln!(out, "{day},{account},{service},{amount:.4},false")?;
            rows += 1;
        }
    }
    out.flush()?;
    Ok(rows)
}

/// An id of AWS's shape: the prefix and 17 hex digits.
fn aws_id(rng: &mut Rng, prefix: &str) -> String {
    format!("{prefix}-0{:016x}", rng.next_u64())
}

fn volume(id: &str, region: &str, encrypted: bool, attached_to: Option<&str>) -> Value {
    let attachments = attached_to.map_or_else(Vec::new, |instance| {
        vec![json!({ "InstanceId": instance, "Device": "/dev/xvda", "State": "attached" })]
    });
    json!({
        "VolumeId": id, "Size": 100, "VolumeType": "gp3", "Encrypted": encrypted,
        "State": if attached_to.is_some() { "in-use" } else { "available" },
        "CreateTime": "2026-05-20T08:30:00Z", "AvailabilityZone": format!("{region}a"),
        "Attachments": attachments, "Tags": [],
    })
}

/// Scans the estate written in `dir/fixtures` with a fresh data directory
/// in `dir/data`, up to `max_scans` times or until nothing is queued, then
/// once more.
pub async fn measure(
    spec: &EstateSpec,
    dir: &Path,
    group: Grouping,
    max_new_per_scan: u32,
    max_scans: usize,
) -> Result<EstateReport, EstateError> {
    let fixtures = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures)?;
    let resources = write_estate(spec, &fixtures)?;
    let env: HashMap<String, String> = [
        (
            "DRACO_GITOPS_MAX_NEW_PER_SCAN",
            max_new_per_scan.to_string(),
        ),
        (
            "DRACO_GITOPS_GROUP",
            match group {
                Grouping::Finding => "finding",
                Grouping::KindAccountRegion => "kind-account-region",
            }
            .to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let loaded = crate::config::load(None, &env).map_err(|e| EstateError::Setup(e.to_string()))?;
    let app = App::build(
        loaded,
        dir.join("data"),
        SourceChoice::Fixtures(FixtureSet::Directory(fixtures)),
    )
    .await
    .map_err(|e| EstateError::Setup(e.to_string()))?;
    let mut scans = Vec::new();
    let mut drained = false;
    for scan in 1..=max_scans {
        let figures = timed_scan(&app, scan).await?;
        drained = figures.queued == 0;
        scans.push(figures);
        if drained {
            break;
        }
    }
    let rescan_seconds = if drained {
        Some(timed_scan(&app, scans.len() + 1).await?.seconds)
    } else {
        None
    };
    Ok(EstateReport {
        spec: spec.clone(),
        group,
        max_new_per_scan,
        resources,
        scans,
        drained,
        rescan_seconds,
    })
}

async fn timed_scan(app: &App, scan: usize) -> Result<ScanFigures, EstateError> {
    let started = Instant::now();
    let report = app
        .scan(chrono::Utc::now())
        .await
        .map_err(|e| EstateError::Scan {
            scan,
            message: e.to_string(),
        })?;
    let mut branches: Vec<&str> = report
        .change_requests_opened
        .iter()
        .map(|o| o.branch.as_str())
        .collect();
    branches.sort_unstable();
    branches.dedup();
    Ok(ScanFigures {
        scan,
        seconds: started.elapsed().as_secs_f64(),
        findings_detected: report.findings_detected,
        findings_given_change_requests: report.change_requests_opened.len(),
        change_requests: branches.len(),
        queued: report.change_requests_queued.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estate_has_the_resources_and_roughly_the_bad_share_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = EstateSpec {
            accounts: 2,
            regions: 2,
            instances: 200,
            bad_percent: 10.0,
            seed: 7,
        };
        let resources = write_estate(&spec, dir.path()).expect("written");
        // 800 instances, 800 root volumes, 32 groups, about 80 extra volumes.
        assert!((1_650..1_800).contains(&resources), "{resources}");
        let text = std::fs::read_to_string(dir.path().join("ec2/100000000000/us-east-1.json"))
            .expect("inventory");
        let optional = text.matches("\"optional\"").count();
        assert!(
            (5..40).contains(&optional),
            "{optional} of 200 instances allow IMDSv1"
        );
        assert_eq!(
            write_estate(&spec, tempfile::tempdir().expect("tempdir").path()).expect("again"),
            resources,
            "seeded: the same estate"
        );
    }

    #[test]
    fn the_cost_series_have_one_row_per_series_and_day_and_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let last_day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
        let spec = CostSpec {
            accounts: 3,
            series: 40,
            days: 30,
            last_day,
            seed: 1,
        };
        assert_eq!(write_costs(&spec, dir.path()).expect("written"), 1_200);
        let bytes = std::fs::read(dir.path().join("cost.csv")).expect("cost.csv");
        let points =
            crate::sources::fixtures::parse_cost_csv(&bytes, "cost.csv").expect("it parses");
        assert_eq!(points.len(), 1_200);
        let series: std::collections::BTreeSet<(String, String)> = points
            .iter()
            .map(|p| (p.account.to_string(), p.service.clone()))
            .collect();
        assert_eq!(series.len(), 40, "distinct (account, service) series");
        assert!(points.iter().all(|p| p.day <= last_day));
    }
}
