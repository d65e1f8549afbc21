//! A bug met while handling one finding fails that finding, not the scan,
//! and the next scan runs as usual.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use draco::detect::DetectConfig;
use draco::gitops::local::LocalGit;
use draco::pipeline::Pipeline;
use draco::redact::{Redacted, Redactor};
use draco::remediate::templates::{Catalog, TemplateAdvisor};
use draco::remediate::{AdviceError, AdviceRequest, Advisor, Recommendation};
use draco::sources::fixtures::{FixtureSet, FixtureSource};
use draco::store::{AuditLog, ScanStatus, ScanStore, SqliteStore};

/// The template advisor, except that it panics on unattached volumes.
struct PanicsOnVolumes(TemplateAdvisor);

#[async_trait]
impl Advisor for PanicsOnVolumes {
    fn name(&self) -> &str {
        "panics-on-volumes"
    }

    async fn recommend(
        &self,
        request: &Redacted<AdviceRequest>,
    ) -> Result<Recommendation, AdviceError> {
        if request.get().kind == "ebs_unattached" {
            panic!("a bug in an advisor");
        }
        self.0.recommend(request).await
    }
}

#[tokio::test]
async fn a_panic_on_one_finding_fails_that_finding_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("draco.db"))
        .await
        .unwrap();
    let git = LocalGit::open_or_init(&dir.path().join("remediations.git"))
        .await
        .unwrap();
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let advisor = PanicsOnVolumes(TemplateAdvisor::new(Arc::clone(&catalog)));
    let fallback = TemplateAdvisor::new(Arc::clone(&catalog));
    let source = FixtureSource::new(FixtureSet::EmbeddedDemo);
    let detect = DetectConfig::default();
    let redactor = Redactor::new(&[]);
    let pipeline = Pipeline {
        cost: &source,
        posture: &source,
        detect: &detect,
        redactor: &redactor,
        advisor: &advisor,
        fallback: Some(&fallback),
        catalog: &catalog,
        change_requests: &git,
        publish_redact: &[],
        max_new_per_scan: 20,
        group: draco::gitops::config::Grouping::Finding,
        store: &store,
    };

    let report = pipeline.scan(Utc::now()).await.expect("the scan completes");
    assert_eq!(report.status, ScanStatus::Partial);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(
        report.failures[0].error.contains("internal error")
            && report.failures[0].error.contains("a bug in an advisor"),
        "{:?}",
        report.failures
    );
    assert_eq!(report.change_requests_opened.len(), 7);
    let failed = report.failures[0].finding_id;
    let audit = store
        .audit_events(Some(&format!("finding:{failed}")))
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.action == "remediation.failed"));

    // The process is still fine: the next scan runs and retries the finding.
    let again = pipeline.scan(Utc::now()).await.expect("the next scan runs");
    assert_eq!(again.failures.len(), 1);
    assert_eq!(
        again.change_requests_opened.len(),
        0,
        "nothing opened twice"
    );
    assert_eq!(store.scans(10).await.unwrap().len(), 2);
}
