//! The AWS sources: Cost Explorer for daily cost, EC2 for posture.
//!
//! Credentials and endpoints come the AWS way: `aws-config`'s default chain
//! (environment, profile, SSO, IMDS, web identity), `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>`, and per account an optional role to assume.
//! Retries use the SDK's adaptive mode; every call has a timeout.
//!
//! A failing account or region does not stop the scan: it becomes a
//! [`ScanError`], and what it would have produced is neither reported nor
//! resolved this time.

mod cost;
mod ec2;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{
    CostFetch, CostSource, CostWindow, PostureScan, PostureSource, ScanError, SourceError,
};
use crate::domain::AccountId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Regions to scan; empty means every region enabled in each account.
    pub regions: Vec<String>,
    /// Accounts to scan; empty means the account of the default credentials.
    pub accounts: Vec<AwsAccount>,
    /// Account-regions scanned at once.
    pub concurrency: usize,
    /// Attempts per call, including the first (adaptive retry mode).
    pub max_attempts: u32,
    /// Timeout of one call, all attempts included.
    pub timeout_secs: u64,
    pub cost: AwsCostConfig,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            regions: Vec::new(),
            accounts: Vec::new(),
            concurrency: 4,
            max_attempts: 5,
            timeout_secs: 60,
            cost: AwsCostConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsAccount {
    pub id: String,
    /// Role to assume in this account, e.g. `arn:aws:iam::123456789012:role/DracoReadOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CostMetric {
    #[default]
    UnblendedCost,
    AmortizedCost,
    NetUnblendedCost,
}

impl CostMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            CostMetric::UnblendedCost => "UnblendedCost",
            CostMetric::AmortizedCost => "AmortizedCost",
            CostMetric::NetUnblendedCost => "NetUnblendedCost",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsCostConfig {
    pub enabled: bool,
    pub metric: CostMetric,
    /// Also fetch cost per value of this tag (series named `tag:<key>=<value>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by_tag: Option<String>,
    /// The last stored days fetched again on each scan, because AWS restates them.
    pub restate_days: i64,
    /// Days fetched on the first scan.
    pub initial_days: i64,
    /// Each Cost Explorer request costs money ($0.01): a scan stops here.
    pub max_requests: u32,
    /// Role to assume for Cost Explorer (usually in the management account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl Default for AwsCostConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            metric: CostMetric::UnblendedCost,
            group_by_tag: None,
            restate_days: 3,
            initial_days: 120,
            max_requests: 20,
            role_arn: None,
            external_id: None,
        }
    }
}

/// Checks what can be checked without calling AWS.
pub fn validate(config: &AwsConfig) -> Result<(), String> {
    for (i, account) in config.accounts.iter().enumerate() {
        // The value is not shown: it may be something pasted into the wrong key.
        AccountId::parse(&account.id).map_err(|_| {
            format!(
                "aws.accounts entry {}: `id` is not an AWS account id (expected exactly 12 digits)",
                i + 1
            )
        })?;
    }
    if config.concurrency == 0 || config.max_attempts == 0 || config.timeout_secs == 0 {
        return Err(
            "aws.concurrency, aws.max_attempts and aws.timeout_secs must be at least 1".into(),
        );
    }
    if config.cost.restate_days < 0 || config.cost.initial_days < 1 || config.cost.max_requests == 0
    {
        return Err("aws.cost: restate_days must be ≥ 0, initial_days and max_requests ≥ 1".into());
    }
    Ok(())
}

/// The AWS source: one object serves both cost and posture.
pub struct AwsSource {
    config: AwsConfig,
    base: SdkConfig,
}

/// Credentials and settings for one account.
pub(crate) struct Session {
    pub account: AccountId,
    pub sdk: SdkConfig,
}

impl AwsSource {
    /// Loads the default chain once. Nothing is called yet: failures show up
    /// per account and region during the scan.
    pub async fn new(config: AwsConfig) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(config.timeout_secs.min(30)))
            .operation_timeout(Duration::from_secs(config.timeout_secs))
            .build();
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(RegionProviderChain::default_provider().or_else(Region::new("us-east-1")))
            .retry_config(RetryConfig::adaptive().with_max_attempts(config.max_attempts))
            .timeout_config(timeouts)
            .load()
            .await;
        Self { config, base }
    }

    /// The configuration with credentials of `role_arn` assumed from the default chain.
    async fn assume(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: Option<&str>,
    ) -> SdkConfig {
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name(session_name.unwrap_or("draco"))
            .configure(&self.base);
        if let Some(external_id) = external_id {
            builder = builder.external_id(external_id);
        }
        let provider = builder.build().await;
        self.base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build()
    }

    /// One session per configured account (or the caller's own account),
    /// each checked with `sts:GetCallerIdentity` so a bad role fails once, clearly.
    async fn sessions(&self) -> (Vec<Session>, Vec<ScanError>) {
        let mut sessions = Vec::new();
        let mut errors = Vec::new();
        if self.config.accounts.is_empty() {
            match caller_account(&self.base).await {
                Ok(account) => sessions.push(Session {
                    account,
                    sdk: self.base.clone(),
                }),
                Err(message) => errors.push(ScanError {
                    account: None,
                    region: None,
                    service: "sts",
                    message,
                }),
            }
            return (sessions, errors);
        }
        for account in &self.config.accounts {
            let Ok(id) = AccountId::parse(&account.id) else {
                continue; // refused when the config was loaded
            };
            let error = |message: String| ScanError {
                account: Some(id.clone()),
                region: None,
                service: "sts",
                message,
            };
            let sdk = match &account.role_arn {
                None => self.base.clone(),
                Some(arn) => {
                    if let Err(message) = check_role_arn(arn, &id) {
                        errors.push(error(message));
                        continue;
                    }
                    self.assume(
                        arn,
                        account.external_id.as_deref(),
                        account.session_name.as_deref(),
                    )
                    .await
                }
            };
            match caller_account(&sdk).await {
                Ok(actual) if actual == id => sessions.push(Session { account: id, sdk }),
                Ok(actual) => errors.push(error(format!(
                    "the credentials belong to account {actual}, not {id}; set role_arn for this account"
                ))),
                Err(message) => errors.push(error(message)),
            }
        }
        (sessions, errors)
    }
}

static ROLE_ARN: &str =
    r"^arn:aws(?:-cn|-us-gov)?:iam::([0-9]{12}):role/[A-Za-z0-9+=,.@_/-]{1,512}$";

/// A role ARN is `arn:<partition>:iam::<account>:role/<path/name>` in the same account.
pub fn check_role_arn(arn: &str, account: &AccountId) -> Result<(), String> {
    let pattern = Regex::new(ROLE_ARN).expect("the role ARN pattern is a valid regex");
    let Some(caps) = pattern.captures(arn) else {
        return Err(format!(
            "role_arn `{arn}` is not an IAM role ARN (expected arn:aws:iam::<12 digits>:role/<name>)"
        ));
    };
    if &caps[1] != account.as_str() {
        return Err(format!(
            "role_arn `{arn}` is in account {}, not {account}",
            &caps[1]
        ));
    }
    Ok(())
}

async fn caller_account(sdk: &SdkConfig) -> Result<AccountId, String> {
    let sts = aws_sdk_sts::Client::new(sdk);
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| sdk_error("GetCallerIdentity", &e))?;
    let account = identity.account().unwrap_or_default();
    AccountId::parse(account).map_err(|e| format!("GetCallerIdentity returned {e}"))
}

/// `Operation: Code: message`, or the whole error chain when AWS sent no code
/// (timeouts, connection failures, credential errors).
pub(crate) fn sdk_error<E, R>(
    operation: &str,
    error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{operation}: {code}: {message}"),
        (Some(code), None) => format!("{operation}: {code}"),
        _ => format!(
            "{operation}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(error)
        ),
    }
}

#[async_trait]
impl CostSource for AwsSource {
    fn describe(&self) -> String {
        "aws".to_owned()
    }

    async fn daily_costs(&self, window: CostWindow) -> Result<CostFetch, SourceError> {
        if !self.config.cost.enabled {
            return Ok(CostFetch {
                complete: false,
                ..CostFetch::default()
            });
        }
        let sdk = match &self.config.cost.role_arn {
            Some(arn) => {
                self.assume(arn, self.config.cost.external_id.as_deref(), None)
                    .await
            }
            None => self.base.clone(),
        };
        Ok(cost::fetch(&sdk, &self.config.cost, window).await)
    }
}

#[async_trait]
impl PostureSource for AwsSource {
    fn describe(&self) -> String {
        "aws".to_owned()
    }

    async fn inventory(&self) -> Result<PostureScan, SourceError> {
        let (sessions, mut errors) = self.sessions().await;
        let mut scan = ec2::scan(&sessions, &self.config.regions, self.config.concurrency).await;
        errors.append(&mut scan.errors);
        scan.errors = errors;
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked_for_shape_and_account() {
        let account = AccountId::parse("123456789012").unwrap();
        assert!(check_role_arn("arn:aws:iam::123456789012:role/DracoReadOnly", &account).is_ok());
        assert!(check_role_arn("arn:aws:iam::123456789012:role/path/to/Draco", &account).is_ok());
        let err = check_role_arn("arn:aws:iam::12345:role/x", &account).unwrap_err();
        assert!(err.contains("not an IAM role ARN"), "{err}");
        let err = check_role_arn("arn:aws:iam::999999999999:role/x", &account).unwrap_err();
        assert!(err.contains("not 123456789012"), "{err}");
    }
}
