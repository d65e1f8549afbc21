//! The audit log cannot be rewritten unnoticed: its events are keyed
//! (HMAC under a key the database holds only sealed), and its head is
//! anchored outside the database.

use crate::support::{Draco, describe, sqlite_rows, stderr};

fn sqlite(draco: &Draco, statements: &[String]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(draco.data_dir().join("draco.db"));
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
        for statement in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&pool)
                .await
                .expect("the attacker's statement");
        }
        pool.close().await;
    });
}

fn events(draco: &Draco) -> Vec<(i64, String, String, String, String, String, String)> {
    sqlite_rows(
        &draco.data_dir(),
        "SELECT seq, at, actor, action, subject, details, prev_hash FROM audit_events ORDER BY seq",
    )
}

fn verify_fails(draco: &Draco, expected: &str) {
    let out = draco.run(&["audit", "verify"]);
    assert!(
        !out.status.success(),
        "a rewritten log verified: {}",
        describe(&out)
    );
    let err = stderr(&out);
    assert!(err.contains(expected), "{err}");
}

#[test]
fn dropping_the_triggers_and_recomputing_the_hashes_no_longer_verifies() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let out = draco.ok(&["audit", "verify"]);
    assert!(out.contains("hash chain verified"), "{out}");
    // The attacker can write to the database but has not the master key:
    // they edit an event and re-chain everything after it, the only way
    // they can, with plain SHA-256.
    let rows = events(&draco);
    let from = rows.len() / 2;
    let mut prev = rows[from].6.clone();
    let mut statements = vec![
        "DROP TRIGGER audit_events_no_update".to_owned(),
        "DROP TRIGGER audit_events_no_delete".to_owned(),
    ];
    for (i, (seq, at, actor, action, subject, details, _)) in rows.iter().enumerate().skip(from) {
        let details: serde_json::Value = serde_json::from_str(details).expect("json");
        let action = if i == from {
            "change_request.merged"
        } else {
            action.as_str()
        };
        let hash = draco::audit::chain_hash(&prev, at, actor, action, subject, &details);
        statements.push(format!(
            "UPDATE audit_events SET action = '{action}', prev_hash = '{prev}', hash = '{hash}', keyed = 0 WHERE seq = {seq}"
        ));
        prev = hash;
    }
    sqlite(&draco, &statements);
    verify_fails(&draco, "not keyed but follows keyed events");
    // Claiming the recomputed rows are keyed does not help either.
    sqlite(&draco, &["UPDATE audit_events SET keyed = 1".to_owned()]);
    verify_fails(&draco, "does not match its hash");
}

#[test]
fn a_cut_tail_is_caught_by_the_anchor_outside_the_database() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    draco.ok(&["audit", "verify"]);
    let anchor = std::fs::read_to_string(draco.data_dir().join("audit.head")).expect("anchor");
    let rows = events(&draco);
    assert!(
        anchor.starts_with(&format!("{} ", rows.last().expect("events").0)),
        "{anchor}"
    );
    // The newest events deleted: every remaining link still holds.
    let last = rows.len() as i64;
    sqlite(
        &draco,
        &[
            "DROP TRIGGER audit_events_no_delete".to_owned(),
            format!("DELETE FROM audit_events WHERE seq > {}", last - 3),
        ],
    );
    verify_fails(&draco, "ends before the anchored event");
}

#[test]
fn a_merge_commit_anchors_the_log_even_without_the_anchor_file() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let id = draco.findings()[0]["id"].as_i64().expect("an id");
    draco.ok(&["approve", &id.to_string(), "--as", "Ada"]);
    let message = crate::support::git(
        &draco.repository(),
        &["log", "-1", "--format=%B", "refs/heads/main"],
    );
    let trailer = message
        .lines()
        .find_map(|l| l.strip_prefix("Draco-Audit-Head: "))
        .unwrap_or_else(|| panic!("no audit head in the merge commit:\n{message}"));
    let (seq, hash) = trailer.split_once(' ').expect("<seq> <hash>");
    let seq: i64 = seq.parse().expect("a sequence number");
    let rows = events(&draco);
    assert!(
        rows.iter().any(|r| r.0 == seq),
        "the anchored event is in the log"
    );
    assert_eq!(hash.len(), 64);
    draco.ok(&["audit", "verify"]);
    // The file anchor gone as well as the tail from the anchored event on:
    // the merge commit still tells.
    std::fs::remove_file(draco.data_dir().join("audit.head")).expect("remove the anchor");
    sqlite(
        &draco,
        &[
            "DROP TRIGGER audit_events_no_delete".to_owned(),
            format!("DELETE FROM audit_events WHERE seq >= {seq}"),
        ],
    );
    verify_fails(&draco, "a merge commit anchors event");
}
