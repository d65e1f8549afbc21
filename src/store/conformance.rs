//! The store's conformance suite: every test here runs against SQLite (a
//! file in a temporary directory) and against PostgreSQL (a throwaway
//! database on the server `DRACO_TEST_POSTGRES_URL` names, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`, dropped afterwards).
//!
//! Without a PostgreSQL server the PostgreSQL half prints that it was
//! skipped and why; under `CI=true` it fails instead, so CI always runs it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde_json::json;

use super::approvals::{ChangeRequestRef, Verdict, Vote, VoteOutcome};
use super::postgres::ScratchDatabase;
use super::{
    Coverage, DatabaseStore, DecisionSubject, PostgresStore, Recorded, SqliteStore, StoreError,
    timestamp,
};
use crate::domain::{AccountId, Finding, FindingId, FindingKind, Fingerprint, Severity};
use crate::gitops::OpenedChangeRequest;
use crate::sources::CostPoint;

/// A throwaway database for one test, or `None` (with a message) when no
/// PostgreSQL server answers, unless `CI=true`: then it panics, so that CI
/// cannot skip the suite.
pub(crate) struct TestDatabase;

impl TestDatabase {
    pub(crate) async fn create() -> Option<ScratchDatabase> {
        ScratchDatabase::for_test("draco_test", "the PostgreSQL conformance suite").await
    }
}

/// One instance of the suite per backend: `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = crate::store::SqliteStore::open(&dir.path().join("draco.db"))
                        .await
                        .expect("open");
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDatabase::create().await else { return };
                    let store = crate::store::PostgresStore::connect(db.url())
                        .await
                        .expect("connect and migrate");
                    super::$name(std::sync::Arc::new(store.clone())).await;
                    store.close().await;
                }
            )*
        }
    };
}

conformance!(
    only_covered_regions_resolve_findings,
    a_decision_subject_tells_no_finding_from_no_change_request,
    findings_round_trip_and_are_deduplicated_by_fingerprint,
    cost_points_are_upserted_and_read_back,
    the_model_ledger_adds_up_usage,
    a_delivery_is_stored_once_processed_once_and_a_redelivery_is_a_duplicate,
    concurrent_copies_of_one_delivery_store_it_once,
    concurrent_audit_appends_keep_one_chain,
    concurrent_votes_claim_the_decision_exactly_once,
    a_scan_and_an_approval_at_the_same_moment_both_hold,
    scans_are_serialised_by_the_scan_lock,
    a_change_request_goes_from_proposal_to_verified_merge,
    outside_changes_failures_and_withdrawals_are_recorded,
    asks_codes_links_and_limits_work_as_on_every_backend,
    scans_are_listed_and_abandoned_ones_interrupted,
    sealed_secrets_are_stored_once_and_re_sealed_only_as_read,
    text_with_a_nul_is_stored_on_both_backends,
    a_lease_has_one_holder_until_it_expires_or_is_released,
    concurrent_claims_of_a_free_lease_have_one_winner,
    a_delivery_is_claimed_by_one_replica_until_its_claim_runs_out,
    concurrent_code_checks_stay_within_the_lockout_and_an_ask_is_spent_once,
    retention_removes_only_what_is_old_and_finished_and_runs_once,
    a_purged_finding_leaves_no_trace_and_the_keyed_chain_still_verifies,
    purging_everything_empties_every_table_but_the_chain_and_the_keys,
    a_tombstone_is_written_once,
);

type Shared = Arc<dyn DatabaseStore>;

fn finding(resource: &str, region: &str, severity: Severity) -> Finding {
    Finding {
        kind: FindingKind::EbsUnencrypted,
        severity,
        title: resource.into(),
        resource: resource.into(),
        account: AccountId::parse("123456789012").expect("valid"),
        region: Some(region.into()),
        expected: None,
        actual: None,
        impact_usd_monthly: None,
        evidence: json!({}),
        fingerprint: Fingerprint::of(&[resource, region]),
    }
}

fn covering(regions: &[&str]) -> Coverage {
    Coverage {
        cost: false,
        regions: regions
            .iter()
            .map(|r| ("123456789012".to_owned(), (*r).to_owned()))
            .collect(),
    }
}

fn verify_chain(events: &[crate::audit::AuditEvent]) {
    crate::audit::verify(events, None, None).expect("the audit chain verifies");
}

/// A finding with an open change request on `branch` at commit `head`.
async fn proposed(store: &Shared, resource: &str, branch: &str, head: &str) -> FindingId {
    let now = Utc::now();
    let scan = store.begin_scan("test", now).await.expect("scan");
    let outcome = store
        .record_findings(
            scan,
            &[finding(resource, "us-east-1", Severity::Critical)],
            &covering(&["us-east-1"]),
            now,
        )
        .await
        .expect("record");
    let id = outcome.new[0];
    let opened = OpenedChangeRequest {
        branch: branch.into(),
        head_commit: head.into(),
        location: format!("https://github.example/o/r/pull/{}", id.get()),
        created: true,
    };
    store
        .record_change_request(id, "github", &opened, now)
        .await
        .expect("change request");
    id
}

async fn only_covered_regions_resolve_findings(store: Shared) {
    let now = Utc::now();
    let scan = store.begin_scan("test", now).await.expect("scan");
    let both = [
        finding("vol-a", "us-east-1", Severity::Medium),
        finding("vol-b", "eu-west-1", Severity::Medium),
    ];
    let outcome = store
        .record_findings(scan, &both, &covering(&["us-east-1", "eu-west-1"]), now)
        .await
        .expect("record");
    assert_eq!(outcome.new.len(), 2);

    // eu-west-1 failed to scan: its finding is neither seen nor resolved.
    let scan = store.begin_scan("test", now).await.expect("scan");
    let outcome = store
        .record_findings(scan, &both[..1], &covering(&["us-east-1"]), now)
        .await
        .expect("record");
    assert!(outcome.resolved.is_empty(), "{outcome:?}");

    // Scanned and gone: resolved.
    let scan = store.begin_scan("test", now).await.expect("scan");
    let outcome = store
        .record_findings(
            scan,
            &both[..1],
            &covering(&["us-east-1", "eu-west-1"]),
            now,
        )
        .await
        .expect("record");
    assert_eq!(outcome.resolved.len(), 1);
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

async fn a_decision_subject_tells_no_finding_from_no_change_request(store: Shared) {
    let now = Utc::now();
    assert_eq!(
        store
            .decision_subject(FindingId::new(1))
            .await
            .expect("read"),
        DecisionSubject::NoFinding
    );
    let scan = store.begin_scan("test", now).await.expect("scan");
    let outcome = store
        .record_findings(
            scan,
            &[finding("vol-a", "us-east-1", Severity::Medium)],
            &covering(&["us-east-1"]),
            now,
        )
        .await
        .expect("record");
    let id = outcome.new[0];
    assert_eq!(
        store.decision_subject(id).await.expect("read"),
        DecisionSubject::NoChangeRequest
    );
    let opened = OpenedChangeRequest {
        branch: "draco/a".into(),
        head_commit: "c0ffee".into(),
        location: "here".into(),
        created: true,
    };
    let cr = store
        .record_change_request(id, "local-git", &opened, now)
        .await
        .expect("change request");
    match store.decision_subject(id).await.expect("read") {
        DecisionSubject::ChangeRequest(subject) => {
            assert_eq!((subject.id, subject.finding_id), (cr, id));
            assert_eq!(subject.branch, "draco/a");
            // Stored as text, read back as the same instant (to the microsecond).
            assert_eq!(timestamp(subject.opened_at), timestamp(now));
            assert_eq!(subject.decided_at, None);
        }
        other => panic!("{other:?}"),
    }
}

async fn findings_round_trip_and_are_deduplicated_by_fingerprint(store: Shared) {
    let now = Utc::now();
    let mut costly = finding("i-0abc", "eu-west-1", Severity::High);
    costly.kind = FindingKind::CostSpike;
    costly.expected = Some(12.5);
    costly.actual = Some(90.25);
    costly.impact_usd_monthly = Some(2_347.5);
    costly.evidence = json!({"service": "Amazon EC2", "days": [1, 2], "note": "ünïcode ✓"});
    let mut global = finding("root-account", "x", Severity::Critical);
    global.region = None;
    let scan = store.begin_scan("test", now).await.expect("scan");
    let coverage = Coverage {
        cost: true,
        regions: HashSet::from([("123456789012".to_owned(), "eu-west-1".to_owned())]),
    };
    let first = store
        .record_findings(scan, &[costly.clone(), global.clone()], &coverage, now)
        .await
        .expect("record");
    assert_eq!(first.new.len(), 2);
    let again = store
        .record_findings(scan, &[costly.clone(), global.clone()], &coverage, now)
        .await
        .expect("record");
    assert!(again.new.is_empty(), "{again:?}");
    assert_eq!(again.unchanged.len(), 2, "{again:?}");
    let stored = store.findings().await.expect("findings");
    assert_eq!(stored.len(), 2);
    let read = store
        .finding(first.new[0])
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read.finding, costly);
    let read = store
        .finding(first.new[1])
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read.finding.region, None);
}

async fn cost_points_are_upserted_and_read_back(store: Shared) {
    let account = AccountId::parse("123456789012").expect("valid");
    let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
    let point = |d, service: &str, amount_usd, estimated| CostPoint {
        day: day(d),
        account: account.clone(),
        service: service.into(),
        amount_usd,
        estimated,
    };
    let points = [
        point(1, "Amazon EC2", 10.0, false),
        point(1, "AWS Lambda", 0.5, false),
        point(2, "Amazon EC2", 11.0, true),
    ];
    assert_eq!(store.save_cost_points(&points).await.expect("save"), 3);
    // The same again changes nothing; a restated estimate changes one.
    assert_eq!(store.save_cost_points(&points).await.expect("save"), 0);
    let restated = [point(2, "Amazon EC2", 11.75, false)];
    assert_eq!(store.save_cost_points(&restated).await.expect("save"), 1);
    let read = store.cost_points_since(day(1)).await.expect("read");
    // Ordered by day, then account, then service, bytewise on both backends.
    let order: Vec<(u32, &str)> = read
        .iter()
        .map(|p| (chrono::Datelike::day(&p.day), p.service.as_str()))
        .collect();
    assert_eq!(
        order,
        [(1, "AWS Lambda"), (1, "Amazon EC2"), (2, "Amazon EC2")]
    );
    assert_eq!(read[2].amount_usd, 11.75);
    assert!(!read[2].estimated);
}

async fn the_model_ledger_adds_up_usage(store: Shared) {
    let day = NaiveDate::from_ymd_opt(2026, 12, 5).expect("date");
    assert_eq!(store.llm_usage("gemini", day).await.expect("read"), (0, 0));
    store
        .add_llm_usage("gemini", day, 100, 20)
        .await
        .expect("add");
    store.add_llm_usage("gemini", day, 5, 1).await.expect("add");
    assert_eq!(
        store.llm_usage("gemini", day).await.expect("read"),
        (2, 126)
    );
    // A provider reporting absurd counts saturates instead of failing the
    // call (PostgreSQL refuses a bigint overflow, SQLite turns it to a float).
    store
        .add_llm_usage("openai", day, u64::MAX, u64::MAX)
        .await
        .expect("add");
    store
        .add_llm_usage("openai", day, u64::MAX / 2, 7)
        .await
        .expect("add past the largest count");
    assert_eq!(
        store.llm_usage("openai", day).await.expect("read"),
        (2, 2 * (i64::MAX as u64))
    );
}

async fn a_delivery_is_stored_once_processed_once_and_a_redelivery_is_a_duplicate(store: Shared) {
    let at = Utc::now();
    let body = br#"{"action":"closed"}"#;
    let first = store
        .record_delivery("github", "d-1", "pull_request", body, at)
        .await
        .expect("record");
    let Recorded::New(id) = first else {
        panic!("{first:?}")
    };
    // GitHub's "Redeliver" sends the same X-GitHub-Delivery again.
    assert_eq!(
        store
            .record_delivery("github", "d-1", "pull_request", b"{}", at)
            .await
            .expect("record"),
        Recorded::Duplicate
    );
    // The same id from another provider is another delivery.
    assert!(matches!(
        store
            .record_delivery("twilio", "d-1", "sms", b"x", at)
            .await
            .expect("record"),
        Recorded::New(_)
    ));
    let pending = store.pending_deliveries(10).await.expect("pending");
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].id, id);
    assert_eq!(pending[0].body, body, "the body exactly as received");
    assert_eq!(pending[0].event, "pull_request");
    assert_eq!(timestamp(pending[0].received_at), timestamp(at));

    assert!(
        store
            .mark_delivery_processed(id, "closed", at)
            .await
            .expect("mark")
    );
    assert!(
        !store
            .mark_delivery_processed(id, "again", at)
            .await
            .expect("mark"),
        "processed at most once"
    );
    let pending = store.pending_deliveries(10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].provider, "twilio");
}

async fn concurrent_copies_of_one_delivery_store_it_once(store: Shared) {
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .record_delivery("github", "same", "ping", b"{}", Utc::now())
                    .await
            })
        })
        .collect();
    let mut new = 0;
    for copy in copies {
        if matches!(copy.await.expect("task").expect("record"), Recorded::New(_)) {
            new += 1;
        }
    }
    assert_eq!(new, 1);
}

async fn concurrent_audit_appends_keep_one_chain(store: Shared) {
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..25 {
                    store
                        .audit(
                            "test",
                            "test.event",
                            &format!("w{w}"),
                            &json!({ "i": i }),
                            Utc::now(),
                        )
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let events = store.audit_events(None).await.expect("read");
    assert_eq!(events.len(), 100);
    verify_chain(&events);
}

async fn concurrent_votes_claim_the_decision_exactly_once(store: Shared) {
    proposed(&store, "vol-q", "draco/q", "head-1").await;
    let cr = ChangeRequestRef {
        backend: "github".into(),
        branch: "draco/q".into(),
        head_commit: "head-1".into(),
    };
    let names: Vec<String> = (0..6).map(|i| format!("approver-{i}")).collect();
    let voters: Vec<_> = names
        .iter()
        .cloned()
        .map(|name| {
            let store = Arc::clone(&store);
            let cr = cr.clone();
            let names = names.clone();
            tokio::spawn(async move {
                let eligible: Vec<&str> = names.iter().map(String::as_str).collect();
                let vote = Vote {
                    approver: &name,
                    channel: "cli",
                    verdict: Verdict::Approve,
                    reason: None,
                    message: None,
                    ask: None,
                    at: Utc::now(),
                };
                store.cast_vote(&cr, &vote, 3, &eligible).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for voter in voters {
        outcomes.push(voter.await.expect("task").expect("vote"));
    }
    let decided = outcomes
        .iter()
        .filter(|o| matches!(o, VoteOutcome::Decided(_)))
        .count();
    assert_eq!(decided, 1, "{outcomes:?}");
    let counted: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            VoteOutcome::Counted { have, .. } => Some(*have),
            _ => None,
        })
        .collect();
    assert_eq!(
        counted.len(),
        2,
        "two counted before the third decided: {outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, VoteOutcome::Stale))
            .count(),
        3,
        "{outcomes:?}"
    );
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

async fn a_scan_and_an_approval_at_the_same_moment_both_hold(store: Shared) {
    let id = proposed(&store, "vol-s", "draco/s", "head-s").await;
    let cr = ChangeRequestRef {
        backend: "github".into(),
        branch: "draco/s".into(),
        head_commit: "head-s".into(),
    };
    for round in 0..5 {
        let scanning = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let now = Utc::now();
                let scan = store.begin_scan("test", now).await?;
                let many: Vec<Finding> = (0..40)
                    .map(|i| finding(&format!("vol-{round}-{i}"), "eu-west-1", Severity::Low))
                    .collect();
                store
                    .record_findings(scan, &many, &covering(&["eu-west-1"]), now)
                    .await
            })
        };
        let approving = {
            let store = Arc::clone(&store);
            let cr = cr.clone();
            tokio::spawn(async move {
                let approver = format!("approver-{round}");
                let vote = Vote {
                    approver: &approver,
                    channel: "cli",
                    verdict: Verdict::Approve,
                    reason: None,
                    message: None,
                    ask: None,
                    at: Utc::now(),
                };
                store
                    .cast_vote(
                        &cr,
                        &vote,
                        5,
                        &[
                            "approver-0",
                            "approver-1",
                            "approver-2",
                            "approver-3",
                            "approver-4",
                        ],
                    )
                    .await
            })
        };
        let scanned = scanning.await.expect("task").expect("scan recorded");
        assert_eq!(scanned.new.len(), 40);
        let voted = approving.await.expect("task").expect("vote recorded");
        if round < 4 {
            assert_eq!(
                voted,
                VoteOutcome::Counted {
                    have: round + 1,
                    need: 5
                }
            );
        } else {
            assert!(matches!(voted, VoteOutcome::Decided(_)), "{voted:?}");
        }
    }
    assert_eq!(store.findings().await.expect("findings").len(), 201);
    let approvals = store
        .approvals("github", "draco/s")
        .await
        .expect("approvals");
    assert_eq!(approvals.len(), 5);
    let cr = store
        .change_request_for_finding(id)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(cr.state, crate::domain::ChangeRequestState::Approved);
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

async fn scans_are_serialised_by_the_scan_lock(store: Shared) {
    let held = store.lock_scans(Duration::ZERO).await.expect("free");
    match store.lock_scans(Duration::from_millis(300)).await {
        Err(StoreError::ScanBusy { .. }) => {}
        other => panic!("a second scan ran beside the first: {other:?}"),
    }
    drop(held);
    // Released at once (PostgreSQL: the connection holding it closes).
    let again = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match store.lock_scans(Duration::from_secs(2)).await {
                Ok(lock) => break lock,
                Err(StoreError::ScanBusy { .. }) => continue,
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await
    .expect("released");
    drop(again);
}

fn proposal() -> crate::remediate::Proposal {
    crate::remediate::Proposal {
        advisor: "template".into(),
        template_id: "ebs-encrypt".into(),
        summary: "Encrypt the volume".into(),
        risk: crate::remediate::Risk::Low,
        changes: "Snapshots and re-creates it encrypted.".into(),
        blast_radius: "One volume".into(),
        format: crate::remediate::Format::AwsCli,
        body: "#!/usr/bin/env bash\necho 'encrypt'\n".into(),
        rollback: "#!/usr/bin/env bash\ntrue\n".into(),
        advice: None,
    }
}

fn reference(branch: &str, head: &str) -> ChangeRequestRef {
    ChangeRequestRef {
        backend: "github".into(),
        branch: branch.into(),
        head_commit: head.into(),
    }
}

async fn a_change_request_goes_from_proposal_to_verified_merge(store: Shared) {
    use crate::domain::{ChangeRequestState, DecisionRecord, FindingStatus};
    let now = Utc::now();
    let id = proposed(&store, "vol-m", "draco/m", "head-1").await;
    store
        .save_proposal(id, &proposal(), now)
        .await
        .expect("save");
    assert_eq!(
        store.proposal(id).await.expect("read").expect("present"),
        proposal()
    );
    // Brought up to date once, then a stale update changes nothing.
    assert!(
        store
            .update_change_request(id, "head-1", "head-2", now)
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_change_request(id, "head-1", "head-3", now)
            .await
            .expect("update")
    );
    let on_branch = store
        .change_requests_on_branch("github", "draco/m")
        .await
        .expect("branch");
    assert_eq!(on_branch.len(), 1);
    assert_eq!(on_branch[0].head_commit, "head-2");
    let cr = on_branch[0].id;
    let decision = DecisionRecord {
        approve: true,
        by: "alice".into(),
        channel: "cli".into(),
        at: now,
        reason: None,
    };
    // A claim on the old head loses; on the current one it wins once.
    assert!(
        !store
            .claim_decision(cr, "head-1", &decision)
            .await
            .expect("claim")
    );
    assert!(
        store
            .claim_decision(cr, "head-2", &decision)
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim_decision(cr, "head-2", &decision)
            .await
            .expect("claim")
    );
    store
        .complete_decision(cr, Some("merge-1"), now)
        .await
        .expect("complete");
    let merged = store
        .change_request_for_finding(id)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(merged.state, ChangeRequestState::Merged);
    assert_eq!(merged.decision().expect("decided").by, "alice");
    let to_verify = store.merged_to_verify().await.expect("to verify");
    assert_eq!(to_verify.len(), 1);
    store
        .mark_verified("github", "draco/m", "head-2", true, now)
        .await
        .expect("verify");
    assert!(
        store
            .merged_to_verify()
            .await
            .expect("to verify")
            .is_empty()
    );
    let finding = store.finding(id).await.expect("read").expect("present");
    assert_ne!(finding.status, FindingStatus::Open);
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

async fn outside_changes_failures_and_withdrawals_are_recorded(store: Shared) {
    use crate::domain::ChangeRequestState;
    use crate::store::OutsideChange;
    let now = Utc::now();
    let pushed = proposed(&store, "vol-p", "draco/p", "head-p").await;
    let changed = store
        .record_outside_change(
            "github",
            "draco/p",
            Some(pushed.get() as u64),
            &OutsideChange::Pushed {
                head: "theirs".into(),
            },
            "mallory",
            now,
        )
        .await
        .expect("outside");
    assert_eq!(changed, [pushed]);
    let cr = store
        .change_request_for_finding(pushed)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(cr.state, ChangeRequestState::Superseded);
    // Another pull request number on the same branch changes nothing.
    let changed = store
        .record_outside_change(
            "github",
            "draco/p",
            Some(999_999),
            &OutsideChange::Closed,
            "mallory",
            now,
        )
        .await
        .expect("outside");
    assert!(changed.is_empty());

    let failing = proposed(&store, "vol-f", "draco/f", "head-f").await;
    let cr = store
        .change_request_for_finding(failing)
        .await
        .expect("read")
        .expect("present");
    store
        .fail_change_request(cr.id, "the merge was refused", now)
        .await
        .expect("fail");
    let cr = store
        .change_request_for_finding(failing)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(cr.state, ChangeRequestState::Failed);
    let again: Vec<FindingId> = store
        .findings_without_change_request()
        .await
        .expect("to propose")
        .iter()
        .map(|f| f.id)
        .collect();
    assert!(again.contains(&failing), "{again:?}");
    assert!(
        store
            .withdraw_change_request(failing, "resolved by itself", now)
            .await
            .expect("withdraw")
    );
    assert!(
        !store
            .withdraw_change_request(failing, "again", now)
            .await
            .expect("withdraw")
    );
    // Proposing vol-f scanned us-east-1 without vol-p: vol-p resolved, and
    // its superseded change request is left to withdraw.
    let resolved: Vec<FindingId> = store
        .change_requests_of_resolved_findings()
        .await
        .expect("read")
        .iter()
        .map(|c| c.finding_id)
        .collect();
    assert_eq!(resolved, [pushed]);
    assert_eq!(store.change_requests().await.expect("all").len(), 2);
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

async fn asks_codes_links_and_limits_work_as_on_every_backend(store: Shared) {
    use crate::store::approvals::{AskDelivery, AskState, LinkAction, NewAsk};
    let now = Utc::now();
    let later = now + chrono::Duration::hours(72);
    proposed(&store, "vol-a", "draco/a", "head-a").await;
    let cr = reference("draco/a", "head-a");
    let sms = NewAsk {
        change_request: &cr,
        approver: "alice",
        channel: "sms",
        code_digest: Some("code-digest".into()),
        approve_digest: None,
        reject_digest: None,
        delivery: AskDelivery::Queued,
        expires_at: later,
        at: now,
    };
    let sms_id = store.record_ask(&sms).await.expect("ask").expect("new");
    assert_eq!(
        store.record_ask(&sms).await.expect("ask"),
        None,
        "asked once"
    );
    let mail = NewAsk {
        channel: "email",
        code_digest: None,
        approve_digest: Some("approve-digest".into()),
        reject_digest: Some("reject-digest".into()),
        ..sms.clone()
    };
    let mail_id = store.record_ask(&mail).await.expect("ask").expect("new");
    store
        .mark_ask_delivery(sms_id, AskDelivery::Sent, Some("SM123"), None, now)
        .await
        .expect("sent");
    assert_eq!(
        store
            .ask_by_code("alice", "code-digest")
            .await
            .expect("read")
            .expect("found")
            .id,
        sms_id
    );
    assert!(
        store
            .ask_by_code("bob", "code-digest")
            .await
            .expect("read")
            .is_none()
    );
    let (ask, action) = store
        .ask_by_link("reject-digest")
        .await
        .expect("read")
        .expect("found");
    assert_eq!((ask.id, action), (mail_id, LinkAction::Reject));
    let (_, action) = store
        .ask_by_link("approve-digest")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(action, LinkAction::Approve);
    assert!(
        store
            .mark_awaiting_approval(&cr, &["alice".into()], now)
            .await
            .expect("awaiting")
    );
    assert_eq!(
        store
            .messages_sent_since("alice", now)
            .await
            .expect("count"),
        1
    );
    // A reminder re-arms the ask with fresh digests: the old code stops working.
    assert!(
        store
            .arm_ask(
                sms_id,
                AskDelivery::Sent,
                Some("new-code".into()),
                None,
                None,
                true,
                now
            )
            .await
            .expect("arm")
    );
    // A second replica reminding the same ask at once: it lost the claim.
    assert!(
        !store
            .arm_ask(
                sms_id,
                AskDelivery::Sent,
                Some("other-code".into()),
                None,
                None,
                true,
                now
            )
            .await
            .expect("arm")
    );
    assert!(
        store
            .ask_by_code("alice", "code-digest")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(store.pending_asks().await.expect("pending").len(), 2);

    // The vote through the ask uses it up.
    let vote = Vote {
        approver: "alice",
        channel: "sms",
        verdict: Verdict::Approve,
        reason: None,
        message: Some("YES 123456"),
        ask: Some(sms_id),
        at: now,
    };
    assert_eq!(
        store
            .cast_vote(&cr, &vote, 2, &["alice", "bob"])
            .await
            .expect("vote"),
        VoteOutcome::Counted { have: 1, need: 2 }
    );
    assert_eq!(
        store
            .cast_vote(&cr, &vote, 2, &["alice", "bob"])
            .await
            .expect("vote"),
        VoteOutcome::AskSpent
    );
    let asks = store.asks("github", "draco/a").await.expect("asks");
    assert_eq!(
        asks.iter().find(|a| a.id == sms_id).expect("sms").state,
        AskState::Used
    );
    // A dismissed review withdraws a counted approval.
    assert!(
        store
            .withdraw_vote(&cr, "alice", "sms", now)
            .await
            .expect("withdraw")
    );
    assert!(
        !store
            .withdraw_vote(&cr, "alice", "sms", now)
            .await
            .expect("withdraw")
    );

    // Lockouts, opt-outs, replays, dismissed reviews.
    let hour_ago = now - chrono::Duration::hours(1);
    for n in 1..=3 {
        assert_eq!(
            store
                .record_wrong_code("alice", "sms", hour_ago, now)
                .await
                .expect("wrong"),
            n
        );
    }
    assert_eq!(
        store
            .wrong_codes_since("alice", hour_ago)
            .await
            .expect("count"),
        3
    );
    assert_eq!(
        store
            .wrong_codes_since("bob", hour_ago)
            .await
            .expect("count"),
        0
    );
    store
        .set_opt_out("+15005550006", "+1500•••0006", true, now)
        .await
        .expect("stop");
    assert!(store.is_opted_out("+15005550006").await.expect("read"));
    store
        .set_opt_out("+15005550006", "+1500•••0006", false, now)
        .await
        .expect("start");
    assert!(!store.is_opted_out("+15005550006").await.expect("read"));
    assert!(store.first_sighting("sid-hash", now).await.expect("first"));
    assert!(!store.first_sighting("sid-hash", now).await.expect("again"));
    // A message whose handling failed is forgotten, so Twilio's retry of
    // it is handled rather than refused as a replay.
    store.forget_sighting("sid-hash").await.expect("forget");
    assert!(store.first_sighting("sid-hash", now).await.expect("retry"));
    assert!(!store.first_sighting("sid-hash", now).await.expect("replay"));
    store
        .record_dismissed_review(u64::MAX, now)
        .await
        .expect("dismissed");
    assert!(store.is_review_dismissed(u64::MAX).await.expect("read"));
    assert!(!store.is_review_dismissed(7).await.expect("read"));
    store
        .audit_refusal(
            "+1500•••0006",
            "approval.refused",
            "finding:1",
            &json!({"why": "test"}),
            now,
        )
        .await
        .expect("refusal");

    // Nobody decided in time.
    let covered = store
        .expire_change_request(&cr, "nobody decided within 72 hours", now)
        .await
        .expect("expire");
    assert_eq!(covered.len(), 1);
    assert!(store.pending_asks().await.expect("pending").is_empty());
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

async fn scans_are_listed_and_abandoned_ones_interrupted(store: Shared) {
    use crate::store::ScanStatus;
    let now = Utc::now();
    let done = store.begin_scan("fixtures", now).await.expect("scan");
    store
        .finish_scan(done, ScanStatus::Ok, &json!({"findings": 0}), now)
        .await
        .expect("finish");
    let left = store.begin_scan("fixtures", now).await.expect("scan");
    let interrupted = store.interrupt_abandoned_scans(now).await.expect("repair");
    assert_eq!(interrupted, [left]);
    let scans = store.scans(10).await.expect("scans");
    assert_eq!(scans.len(), 2);
    assert_eq!(scans[0].id, left, "newest first");
    assert_eq!(scans[0].status, ScanStatus::Interrupted);
    assert_eq!(scans[1].status, ScanStatus::Ok);
    let recommendation = crate::remediate::Recommendation {
        advisor: "gemini".into(),
        template_id: "ebs-encrypt".into(),
        parameters: [("volume_id".to_owned(), "vol-1".to_owned())].into(),
        rationale: Some("⟦PERSON_1⟧ owns it".into()),
        notes: None,
        usage: None,
    };
    assert!(
        store
            .cached_advice("k", "fp")
            .await
            .expect("read")
            .is_none()
    );
    store
        .cache_advice("k", "fp", &recommendation, now)
        .await
        .expect("cache");
    assert_eq!(
        store.cached_advice("k", "fp").await.expect("read"),
        Some(recommendation)
    );
}

async fn sealed_secrets_are_stored_once_and_re_sealed_only_as_read(store: Shared) {
    use crate::seal::MasterKey;
    let key = Arc::new(MasterKey::generate().expect("key"));
    // Replicas creating the same secret at once: exactly one is stored.
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let (store, key) = (Arc::clone(&store), Arc::clone(&key));
            tokio::spawn(async move {
                let sealed = key.seal("approval_key", &[i; 32]).expect("seal");
                store
                    .seal_if_absent("approval_key", &sealed, Utc::now())
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for racer in racers {
        if racer.await.expect("task").expect("store") {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    let before = store.all_sealed().await.expect("read");
    assert_eq!(before.len(), 1);
    let kept = key.open("approval_key", &before[0].1).expect("opens");
    let new = MasterKey::generate().expect("key");
    let after = vec![(
        "approval_key".to_owned(),
        new.seal("approval_key", &kept).expect("seal"),
    )];
    // Re-sealing from a stale read changes nothing.
    let stale = vec![(
        "approval_key".to_owned(),
        key.seal("approval_key", &kept).expect("seal"),
    )];
    assert!(
        !store
            .reseal_all(&stale, &after, Utc::now())
            .await
            .expect("reseal")
    );
    assert_eq!(store.all_sealed().await.expect("read"), before);
    assert!(
        store
            .reseal_all(&before, &after, Utc::now())
            .await
            .expect("reseal")
    );
    let read = store
        .sealed("approval_key")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read.key_id, new.id());
    assert_eq!(
        new.open("approval_key", &read).expect("opens").as_slice(),
        kept.as_slice()
    );
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

async fn text_with_a_nul_is_stored_on_both_backends(store: Shared) {
    // PostgreSQL's text refuses U+0000; a review body or an SMS may hold one.
    let id = proposed(&store, "vol-n", "draco/n", "head-n").await;
    let cr = ChangeRequestRef {
        backend: "github".into(),
        branch: "draco/n".into(),
        head_commit: "head-n".into(),
    };
    // Approver names are checked printable by the directory; the reason and
    // the message are whatever the sender wrote.
    let vote = Vote {
        approver: "mallory",
        channel: "github",
        verdict: Verdict::Reject,
        reason: Some("no\0 way"),
        message: Some("REJECT\0"),
        ask: None,
        at: Utc::now(),
    };
    let outcome = store
        .cast_vote(&cr, &vote, 1, &["mallory"])
        .await
        .expect("stored despite the NUL");
    assert!(matches!(outcome, VoteOutcome::Decided(_)), "{outcome:?}");
    let cr = store
        .change_request_for_finding(id)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(cr.reason.as_deref(), Some("no\u{FFFD} way"));
    let delivery = match store
        .record_delivery("github", "d-nul", "pull_request_review", b"{}", Utc::now())
        .await
        .expect("record")
    {
        Recorded::New(id) => id,
        other => panic!("{other:?}"),
    };
    assert!(
        store
            .mark_delivery_processed(delivery, "refused: \0", Utc::now())
            .await
            .expect("marked")
    );
    verify_chain(&store.audit_events(None).await.expect("audit"));
}

/// Values planted in a finding, its change request, its votes and its
/// audit events: none may survive its purge.
const PLANTED: [&str; 3] = [
    "ada.purge@example.org",
    "+15557012345",
    "vol-0purgeme0planted",
];

fn keyed(store: &Shared) -> crate::audit::AuditKey {
    store.install_audit_key(crate::audit::AuditKey::from_bytes([5; 32]));
    crate::audit::AuditKey::from_bytes([5; 32])
}

async fn verify_keyed(store: &Shared, key: &crate::audit::AuditKey) {
    let events = store.audit_events(None).await.expect("audit");
    crate::audit::verify(&events, Some(key), None).expect("the keyed chain verifies");
}

async fn retention_removes_only_what_is_old_and_finished_and_runs_once(store: Shared) {
    use crate::store::retention::{RetentionConfig, enforce};
    let key = keyed(&store);
    let now = Utc::now();
    let old = now - chrono::TimeDelta::days(500);
    let region = covering(&["us-east-1"]);
    // A resolved finding (old), an open one (old), a resolved one whose
    // change request still waits for a decision (old).
    let scan = store.begin_scan("test", old).await.expect("scan");
    let findings = [
        finding("vol-gone", "us-east-1", Severity::Low),
        finding("vol-open", "us-east-1", Severity::Low),
        finding("vol-waiting", "us-east-1", Severity::Low),
    ];
    let ids = store
        .record_findings(scan, &findings, &region, old)
        .await
        .expect("record")
        .new;
    let opened = OpenedChangeRequest {
        branch: "draco/waiting".into(),
        head_commit: "h1".into(),
        location: "https://github.example/o/r/pull/9".into(),
        created: true,
    };
    store
        .record_change_request(ids[2], "github", &opened, old)
        .await
        .expect("change request");
    let scan = store.begin_scan("test", old).await.expect("scan");
    store
        .record_findings(scan, &findings[1..2], &region, old)
        .await
        .expect("resolve two");
    // A scan no finding refers to.
    let lonely = store.begin_scan("test", old).await.expect("scan");
    store
        .finish_scan(lonely, super::ScanStatus::Ok, &json!({}), old)
        .await
        .expect("finish");
    let old_day = old.date_naive();
    let day = |d: NaiveDate| CostPoint {
        account: AccountId::parse("123456789012").expect("valid"),
        service: "EC2".into(),
        day: d,
        amount_usd: 1.0,
        estimated: false,
    };
    store
        .save_cost_points(&[day(old_day), day(now.date_naive())])
        .await
        .expect("cost");
    for (delivery, at, processed) in [
        ("old-done", old, true),
        ("old-pending", old, false),
        ("new-done", now, true),
    ] {
        let Recorded::New(id) = store
            .record_delivery("github", delivery, "ping", b"{}", at)
            .await
            .expect("delivery")
        else {
            panic!("new")
        };
        if processed {
            store
                .mark_delivery_processed(id, "ok", at)
                .await
                .expect("processed");
        }
    }
    let policy = RetentionConfig {
        scans_days: 180,
        cost_points_days: 400,
        webhook_deliveries_days: 30,
        audit_payload_days: 365,
    };
    let report = enforce(&*store, &policy.cutoffs(now), now)
        .await
        .expect("enforce");
    assert_eq!(report.findings, 1, "{report:?}");
    assert_eq!(
        report.scans, 1,
        "only the scan nothing refers to: {report:?}"
    );
    assert_eq!(report.cost_points, 1, "{report:?}");
    assert_eq!(report.webhook_deliveries, 1, "{report:?}");
    assert!(report.audit_payloads > 5, "{report:?}");
    let left: Vec<FindingId> = store
        .findings()
        .await
        .expect("findings")
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(left, vec![ids[1], ids[2]]);
    assert_eq!(
        store.pending_deliveries(10).await.expect("pending").len(),
        1
    );
    verify_keyed(&store, &key).await;
    let events = store.audit_events(Some("retention")).await.expect("audit");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details["findings"], 1);
    // Again: nothing left to do, nothing written.
    let again = enforce(&*store, &policy.cutoffs(now), now)
        .await
        .expect("again");
    assert!(!again.changed(), "{again:?}");
    assert_eq!(
        store
            .audit_events(Some("retention"))
            .await
            .expect("audit")
            .len(),
        1
    );
    verify_keyed(&store, &key).await;
}

async fn a_purged_finding_leaves_no_trace_and_the_keyed_chain_still_verifies(store: Shared) {
    let key = keyed(&store);
    let now = Utc::now();
    let [email, phone, resource] = PLANTED;
    let scan = store.begin_scan("test", now).await.expect("scan");
    let mut planted = finding(resource, "us-east-1", Severity::High);
    planted.evidence = json!({ "owner": email, "contact": phone });
    let ids = store
        .record_findings(
            scan,
            &[planted, finding("vol-kept", "us-east-1", Severity::Low)],
            &covering(&["us-east-1"]),
            now,
        )
        .await
        .expect("record")
        .new;
    let (id, kept) = (ids[0], ids[1]);
    store
        .finish_scan(
            scan,
            super::ScanStatus::Partial,
            &json!({"failures": [{"finding_id": id.get(), "error": resource}]}),
            now,
        )
        .await
        .expect("finish");
    store
        .save_proposal(id, &proposal(), now)
        .await
        .expect("proposal");
    let opened = OpenedChangeRequest {
        branch: "draco/purged".into(),
        head_commit: "head-1".into(),
        location: "https://github.example/o/r/pull/7".into(),
        created: true,
    };
    store
        .record_change_request(id, "github", &opened, now)
        .await
        .expect("cr");
    let cr = reference("draco/purged", "head-1");
    let vote = Vote {
        approver: email,
        channel: "sms",
        verdict: Verdict::Approve,
        reason: None,
        message: Some(phone),
        ask: None,
        at: now,
    };
    store
        .cast_vote(&cr, &vote, 2, &[email])
        .await
        .expect("vote");
    store
        .audit(
            email,
            "note",
            &format!("finding:{id}"),
            &json!({ "phone": phone }),
            now,
        )
        .await
        .expect("audit");
    store
        .record_delivery(
            "github",
            "d-1",
            "pull_request",
            format!("{{\"html_url\":\"https://github.example/o/r/pull/7\",\"by\":\"{email}\"}}")
                .as_bytes(),
            now,
        )
        .await
        .expect("delivery");
    store
        .record_delivery(
            "github",
            "d-2",
            "pull_request",
            b"{\"html_url\":\"https://github.example/o/r/pull/70\"}",
            now,
        )
        .await
        .expect("delivery");
    let scope = store
        .purge_scope(id)
        .await
        .expect("scope")
        .expect("a finding");
    assert_eq!(
        scope.change_request.as_ref().map(|c| c.branch.as_str()),
        Some("draco/purged")
    );
    assert!(scope.sharing_branch.is_empty());
    let before = store.dump_text().await.expect("dump").join("\n");
    assert!(PLANTED.iter().all(|v| before.contains(v)), "planted");

    let report = store.purge_findings(&[id], now).await.expect("purge");
    assert!(report.audit_tombstoned >= 3, "{report:?}");
    assert_eq!(report.audit_kept, 0, "{report:?}");
    store.compact().await.expect("compact");
    let after = store.dump_text().await.expect("dump");
    for value in PLANTED {
        let found: Vec<&String> = after.iter().filter(|t| t.contains(value)).collect();
        assert!(found.is_empty(), "{value} survived the purge: {found:?}");
    }
    assert!(store.finding(id).await.expect("read").is_none());
    assert!(
        store.finding(kept).await.expect("read").is_some(),
        "another finding kept"
    );
    assert_eq!(
        store.pending_deliveries(10).await.expect("pending").len(),
        1,
        "the other pull request's delivery kept"
    );
    verify_keyed(&store, &key).await;
    let purge = store
        .audit_events(Some(&format!("finding:{id}")))
        .await
        .expect("audit");
    let last = purge.last().expect("the purge event");
    assert_eq!(
        (last.action.as_str(), &last.details),
        ("purge", &json!({ "finding": id.get() }))
    );
    // Purging again: nothing there.
    assert!(store.purge_scope(id).await.expect("scope").is_none());
}

async fn purging_everything_empties_every_table_but_the_chain_and_the_keys(store: Shared) {
    let key = keyed(&store);
    let now = Utc::now();
    proposed(&store, PLANTED[2], "draco/all", "h").await;
    store
        .seal_if_absent(
            "audit_key",
            &crate::seal::Sealed {
                key_id: "k".into(),
                nonce: vec![1],
                ciphertext: vec![2],
            },
            now,
        )
        .await
        .expect("seal");
    store
        .set_opt_out(PLANTED[1], "+1555…45", true, now)
        .await
        .expect("opt out");
    let report = store.purge_all(now).await.expect("purge");
    assert!(report.rows > 0 && report.audit_tombstoned > 0, "{report:?}");
    store.compact().await.expect("compact");
    for table in store.tables().await.expect("tables") {
        if crate::store::purge::KEPT_TABLES.contains(&table.as_str()) {
            continue;
        }
        let dump = store.dump_text().await.expect("dump");
        assert!(
            !dump.iter().any(|t| t.starts_with(&format!("{table}: "))),
            "{table} still has rows"
        );
    }
    let dump = store.dump_text().await.expect("dump").join("\n");
    assert!(
        !dump.contains(PLANTED[1]) && !dump.contains(PLANTED[2]),
        "{dump}"
    );
    assert_eq!(
        store.all_sealed().await.expect("sealed").len(),
        1,
        "keys kept"
    );
    verify_keyed(&store, &key).await;
}

async fn a_tombstone_is_written_once(store: Shared) {
    let key = keyed(&store);
    let now = Utc::now();
    store
        .audit("ada", "note", "finding:1", &json!({"x": 1}), now)
        .await
        .expect("audit");
    let report = store.purge_all(now).await.expect("purge");
    assert_eq!(report.audit_tombstoned, 1, "{report:?}");
    // A second tombstone of the same event, or any other update or delete, is refused.
    let again = crate::store::retention::RetentionStore::tombstone_audit_payloads(
        &*store,
        now + chrono::TimeDelta::days(1),
        now + chrono::TimeDelta::days(1),
    )
    .await
    .expect("tombstone");
    assert_eq!(again.0, 1, "only the purge event itself was left");
    verify_keyed(&store, &key).await;
}

/// Backend-specific behaviour the suite above cannot share.
mod backend_specific {
    use super::*;

    #[tokio::test]
    async fn postgres_refuses_a_database_migrated_by_a_newer_draco() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = PostgresStore::connect(db.url()).await.expect("migrate");
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (9999, 'from the future', TRUE, '\\x00', 1)",
        )
        .execute(&store.pool)
        .await
        .expect("a future migration");
        store.close().await;
        match PostgresStore::connect(db.url()).await {
            Err(StoreError::Newer { found, known, .. }) => {
                assert_eq!(found, 9999);
                assert!(known < 9999);
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a newer schema was taken"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_migrating_at_once_all_start_and_migrate_once() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url().clone();
                tokio::spawn(async move { PostgresStore::connect(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(start.await.expect("task").expect("every replica starts"));
        }
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&stores[0].pool)
            .await
            .expect("count");
        assert_eq!(applied, migrations() as i64);
        for store in stores {
            store.close().await;
        }
    }

    /// Statements someone with write access to the database could try on
    /// a tombstoned event (seq 1) and an intact one (seq 2): each must be
    /// refused by the triggers.
    fn forbidden() -> Vec<&'static str> {
        vec![
            "UPDATE audit_events SET subject = 'finding:9' WHERE seq = 1",
            "UPDATE audit_events SET details = '{\"purged\":\"x\"}', purged_at = 'y' WHERE seq = 1",
            "UPDATE audit_events SET actor = 'purged', details = '{\"purged\":\"t\"}', purged_at = 't', action = 'x' WHERE seq = 2",
            "UPDATE audit_events SET actor = 'someone' WHERE seq = 2",
            "UPDATE audit_events SET actor = 'purged', details = '{\"purged\":\"t\",\"more\":1}', purged_at = 't' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 2",
        ]
    }

    async fn tombstoned_log(store: &Shared) {
        store.install_audit_key(crate::audit::AuditKey::from_bytes([5; 32]));
        let now = Utc::now();
        store
            .audit("ada", "note", "finding:1", &json!({"x": 1}), now)
            .await
            .expect("audit");
        store
            .audit("bob", "note", "finding:2", &json!({"x": 2}), now)
            .await
            .expect("audit");
        crate::store::retention::RetentionStore::tombstone_audit_payloads(
            &**store,
            now + chrono::TimeDelta::microseconds(1),
            now,
        )
        .await
        .expect("tombstone");
        // seq 1 and 2 tombstoned; 3 appended intact.
        store
            .audit("eve", "note", "finding:3", &json!({"x": 3}), now)
            .await
            .expect("audit");
    }

    #[tokio::test]
    async fn sqlite_triggers_allow_only_the_tombstone_update() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("draco.db");
        let store: Shared = Arc::new(SqliteStore::open(&path).await.expect("open"));
        tombstoned_log(&store).await;
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
        )
        .await
        .expect("open");
        for statement in forbidden() {
            let statement = statement.replace("seq = 2", "seq = 3");
            let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&pool)
                .await;
            let error = refused.expect_err(&statement).to_string();
            assert!(error.contains("append-only"), "{statement}: {error}");
        }
        // The one update allowed: the tombstone, exactly.
        sqlx::raw_sql("UPDATE audit_events SET actor = 'purged', details = '{\"purged\":\"t\"}', purged_at = 't' WHERE seq = 3")
            .execute(&pool)
            .await
            .expect("a tombstone");
        pool.close().await;
    }

    #[tokio::test]
    async fn postgres_triggers_allow_only_the_tombstone_update() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let pg = PostgresStore::connect(db.url()).await.expect("migrate");
        let store: Shared = Arc::new(pg.clone());
        tombstoned_log(&store).await;
        for statement in forbidden().into_iter().chain(["TRUNCATE audit_events"]) {
            let statement = statement.replace("seq = 2", "seq = 3");
            let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&pg.pool)
                .await;
            let error = refused.expect_err(&statement).to_string();
            assert!(error.contains("append-only"), "{statement}: {error}");
        }
        sqlx::raw_sql("UPDATE audit_events SET actor = 'purged', details = '{\"purged\":\"t\"}', purged_at = 't' WHERE seq = 3")
            .execute(&pg.pool)
            .await
            .expect("a tombstone");
        pg.close().await;
    }

    /// sqlx applies a migration whose version is below one already applied
    /// (the gap 0009 / PostgreSQL 0004 left for the lease and outbox work):
    /// numbering does not have to be applied in order.
    #[tokio::test]
    async fn a_migration_filling_a_gap_is_applied_after_a_later_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let migrations = dir.path().join("migrations");
        std::fs::create_dir(&migrations).expect("dir");
        std::fs::write(migrations.join("0001_a.sql"), "CREATE TABLE a (x INTEGER);")
            .expect("write");
        std::fs::write(migrations.join("0003_c.sql"), "CREATE TABLE c (x INTEGER);")
            .expect("write");
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("gap.db"))
                .create_if_missing(true),
        )
        .await
        .expect("open");
        sqlx::migrate::Migrator::new(migrations.as_path())
            .await
            .expect("read")
            .run(&pool)
            .await
            .expect("with a gap");
        std::fs::write(migrations.join("0002_b.sql"), "CREATE TABLE b (x INTEGER);")
            .expect("write");
        sqlx::migrate::Migrator::new(migrations.as_path())
            .await
            .expect("read")
            .run(&pool)
            .await
            .expect("the gap filled later");
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .expect("applied");
        assert_eq!(applied, vec![1, 2, 3]);
        pool.close().await;
    }

    /// How many PostgreSQL migrations this build has (the files in
    /// `migrations/postgres/`, as `sqlx::migrate!` embeds them).
    fn migrations() -> usize {
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .expect("the migrations directory")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count()
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_a_clear_error_without_the_password() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("postgres://draco@127.0.0.1:{port}/draco");
        let location = super::super::DatabaseLocation::resolve(
            Some(&url),
            Some(secrecy::SecretString::from("pa55-word")),
            ".".as_ref(),
        )
        .expect("valid");
        let super::super::DatabaseLocation::Postgres(url) = location else {
            panic!("postgres")
        };
        let error = match PostgresStore::connect(&url).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("connected to nothing"),
        };
        assert!(error.contains("cannot connect to the database"), "{error}");
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        assert!(!error.contains("pa55-word"), "{error}");
    }

    #[tokio::test]
    async fn sqlite_opens_its_file_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("draco.db");
        let store = SqliteStore::open(&path).await.expect("open");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        store.close().await;
    }
}

async fn a_lease_has_one_holder_until_it_expires_or_is_released(store: Shared) {
    use super::LeaseState;
    let t0 = Utc::now();
    let ttl = chrono::TimeDelta::seconds(30);
    assert_eq!(
        store
            .acquire_lease("scan", "a", t0, t0 + ttl)
            .await
            .expect("take"),
        LeaseState::Held { taken_from: None },
        "a free lease is taken"
    );
    // Another replica before the expiry: told who holds it, until when.
    match store
        .acquire_lease("scan", "b", t0 + ttl / 2, t0 + ttl / 2 + ttl)
        .await
        .expect("try")
    {
        LeaseState::HeldBy { holder, until } => {
            assert_eq!(holder, "a");
            assert_eq!(timestamp(until), timestamp(t0 + ttl));
        }
        other => panic!("b took a held lease: {other:?}"),
    }
    // Leases of other jobs are separate.
    assert!(matches!(
        store
            .acquire_lease("approvals", "b", t0, t0 + ttl)
            .await
            .expect("take"),
        LeaseState::Held { .. }
    ));
    // The holder renews: the expiry moves on, b still waits.
    let t1 = t0 + ttl / 2;
    assert!(matches!(
        store
            .acquire_lease("scan", "a", t1, t1 + ttl)
            .await
            .expect("renew"),
        LeaseState::Held { taken_from: None }
    ));
    assert!(
        matches!(
            store
                .acquire_lease("scan", "b", t0 + ttl + ttl / 4, t0 + ttl * 2)
                .await
                .expect("try"),
            LeaseState::HeldBy { .. }
        ),
        "a renewed lease does not expire at its first expiry"
    );
    // a stops renewing (it died): once expired, b takes it over, naming a.
    let t2 = t1 + ttl;
    assert_eq!(
        store
            .acquire_lease("scan", "b", t2, t2 + ttl)
            .await
            .expect("take over"),
        LeaseState::Held {
            taken_from: Some("a".into())
        }
    );
    // a comes back (a stall, not a death): it is told it lost the lease.
    assert!(matches!(
        store.acquire_lease("scan", "a", t2, t2 + ttl).await.expect("try"),
        LeaseState::HeldBy { ref holder, .. } if holder == "b"
    ));
    // Released by another replica: nothing changes.
    store.release_lease("scan", "a").await.expect("release");
    assert!(matches!(
        store
            .acquire_lease("scan", "a", t2, t2 + ttl)
            .await
            .expect("try"),
        LeaseState::HeldBy { .. }
    ));
    // Released by its holder: free at once, and not a takeover.
    store.release_lease("scan", "b").await.expect("release");
    assert_eq!(
        store
            .acquire_lease("scan", "a", t2, t2 + ttl)
            .await
            .expect("take"),
        LeaseState::Held { taken_from: None }
    );
}

async fn concurrent_claims_of_a_free_lease_have_one_winner(store: Shared) {
    let now = Utc::now();
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .acquire_lease(
                        "retention",
                        &format!("replica-{i}"),
                        now,
                        now + chrono::TimeDelta::seconds(30),
                    )
                    .await
                    .expect("try")
            })
        })
        .collect();
    let mut winners = 0;
    for claim in claims {
        if matches!(claim.await.expect("task"), super::LeaseState::Held { .. }) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one replica holds the lease");
}

async fn a_delivery_is_claimed_by_one_replica_until_its_claim_runs_out(store: Shared) {
    let at = Utc::now();
    for id in ["d-1", "d-2", "d-3"] {
        store
            .record_delivery("github", id, "pull_request", b"{}", at)
            .await
            .expect("record");
    }
    let claim = chrono::TimeDelta::minutes(5);
    // Two replicas claim at once: each delivery goes to one of them.
    let (a, b) = tokio::join!(
        store.claim_deliveries("a", 10, at, at + claim),
        store.claim_deliveries("b", 10, at, at + claim),
    );
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    let mut ids: Vec<i64> = a.iter().chain(&b).map(|d| d.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every delivery claimed");
    assert_eq!(a.len() + b.len(), 3, "none claimed twice: {a:?} {b:?}");
    for id in &ids {
        store
            .mark_delivery_processed(*id, "done", at)
            .await
            .expect("mark");
    }
    // One replica's claim: the other gets nothing while it runs; the
    // claimant takes its own claims again (a failed round's retry).
    for id in ["d-4", "d-5"] {
        store
            .record_delivery("github", id, "pull_request", b"{}", at)
            .await
            .expect("record");
    }
    let first = store
        .claim_deliveries("a", 10, at, at + claim)
        .await
        .expect("claim");
    assert_eq!(first.len(), 2);
    assert!(first[0].id < first[1].id, "oldest first");
    let later = at + chrono::TimeDelta::minutes(1);
    assert!(
        store
            .claim_deliveries("b", 10, later, later + claim)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        store
            .claim_deliveries("a", 10, later, later + claim)
            .await
            .expect("claim")
            .len(),
        2
    );
    // Processed ones are never claimed again; the rest go to the other
    // replica once the claim has run out (its claimant died).
    assert!(
        store
            .mark_delivery_processed(first[0].id, "done", later)
            .await
            .expect("mark")
    );
    let expiry = later + claim;
    let taken = store
        .claim_deliveries("b", 10, expiry, expiry + claim)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1, "the unprocessed one: {taken:?}");
    assert_eq!(taken[0].id, first[1].id);
    // Given up (b shuts down): a takes it at once.
    assert_eq!(store.release_claims("b").await.expect("release"), 1);
    assert_eq!(
        store
            .claim_deliveries("a", 10, expiry, expiry + claim)
            .await
            .expect("claim")
            .len(),
        1
    );
}

/// Replicas checking codes for one approver at the same moment: at most
/// `limit` checks get through the lockout, a right code gives its check
/// back, and an ask is spent by one of several concurrent uses.
async fn concurrent_code_checks_stay_within_the_lockout_and_an_ask_is_spent_once(store: Shared) {
    use crate::store::approvals::{AskDelivery, NewAsk};
    let now = Utc::now();
    let hour_ago = now - chrono::Duration::hours(1);
    let checks: Vec<_> = (0..12)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .reserve_code_check("alice", "sms", hour_ago, 5, now)
                    .await
                    .expect("reserve")
            })
        })
        .collect();
    let mut reserved = Vec::new();
    for check in checks {
        if let Some((id, _)) = check.await.expect("task") {
            reserved.push(id);
        }
    }
    assert_eq!(
        reserved.len(),
        5,
        "the limit holds across concurrent checks"
    );
    assert_eq!(
        store
            .wrong_codes_since("alice", hour_ago)
            .await
            .expect("count"),
        5
    );
    store
        .withdraw_wrong_code(reserved[0])
        .await
        .expect("a right code gives its check back");
    assert!(
        store
            .reserve_code_check("alice", "sms", hour_ago, 5, now)
            .await
            .expect("reserve")
            .is_some()
    );
    assert!(
        store
            .reserve_code_check("bob", "sms", hour_ago, 5, now)
            .await
            .expect("reserve")
            .is_some(),
        "another approver has a count of their own"
    );

    proposed(&store, "vol-s", "draco/s", "head-s").await;
    let cr = reference("draco/s", "head-s");
    let ask = store
        .record_ask(&NewAsk {
            change_request: &cr,
            approver: "alice",
            channel: "sms",
            code_digest: Some("spend-digest".into()),
            approve_digest: None,
            reject_digest: None,
            delivery: AskDelivery::Queued,
            expires_at: now + chrono::Duration::hours(72),
            at: now,
        })
        .await
        .expect("ask")
        .expect("new");
    let spends: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.spend_ask(ask, "alice", now).await.expect("spend") })
        })
        .collect();
    let mut spent = 0;
    for spend in spends {
        if spend.await.expect("task") {
            spent += 1;
        }
    }
    assert_eq!(spent, 1, "an ask is spent once");
}
