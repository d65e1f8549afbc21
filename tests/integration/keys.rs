//! Secrets at rest: the approval key sealed in the database under the
//! master key, and `draco keys rotate`.

use crate::support::{Draco, describe, sqlite_rows, stderr};

/// The sealed rows exactly as stored (the database is read directly).
fn sealed_rows(draco: &Draco) -> Vec<(String, String, Vec<u8>, Vec<u8>)> {
    sqlite_rows(
        &draco.data_dir(),
        "SELECT name, key_id, nonce, ciphertext FROM sealed_secrets ORDER BY name",
    )
}

#[test]
fn the_approval_key_is_sealed_and_rotation_re_seals_it_under_a_new_key() {
    let draco = Draco::new();
    draco.ok(&["demo"]);
    let data = draco.data_dir();
    assert!(data.join("master.key").exists());
    assert!(
        !data.join("approval.key").exists(),
        "no key in clear beside the database"
    );
    let before = sealed_rows(&draco);
    let names: Vec<&str> = before.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["approval_key", "audit_key"]);

    // Rotating the data directory's key re-seals and replaces master.key.
    let old_key = std::fs::read_to_string(data.join("master.key")).expect("key");
    let out = draco.ok(&["keys", "rotate"]);
    assert!(out.contains("Re-sealed 2 secrets"), "{out}");
    let new_key = std::fs::read_to_string(data.join("master.key")).expect("key");
    assert_ne!(old_key, new_key);
    assert!(!data.join("master.key.new").exists());
    let after = sealed_rows(&draco);
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(new.1, old.1, "another key id");
        assert_ne!(new.3, old.3, "sealed anew");
    }
    // The rotated key opens them: the next run works as before, and the
    // audit chain (keyed under the same audit key, re-sealed) verifies.
    draco.ok(&["demo"]);
    draco.ok(&["audit", "verify"]);

    // A wrong key: a clear error naming both key ids, and nothing changed.
    let wrong = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
    let new_file = draco.path("next.key");
    let out = draco
        .command()
        .env("DRACO_MASTER_KEY", wrong)
        .args(["keys", "rotate", "--new-key-file"])
        .arg(&new_file)
        .output()
        .expect("runs");
    assert!(!out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("was sealed with master key"), "{err}");
    assert!(!err.contains(wrong), "the key is never printed: {err}");
    assert_eq!(sealed_rows(&draco), after, "nothing overwritten");
    let out = draco
        .command()
        .env("DRACO_MASTER_KEY", wrong)
        .arg("demo")
        .output()
        .expect("runs");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("was sealed with master key"),
        "{}",
        describe(&out)
    );

    // A configured key: rotate into the file named, then use it.
    let current = new_key.trim().to_owned();
    let out = draco
        .command()
        .env("DRACO_MASTER_KEY", &current)
        .args(["keys", "rotate", "--new-key-file"])
        .arg(&new_file)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", describe(&out));
    let next = std::fs::read_to_string(&new_file).expect("the new key was written");
    let out = draco
        .command()
        .env("DRACO_MASTER_KEY", next.trim())
        .arg("demo")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", describe(&out));
}
