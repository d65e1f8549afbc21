//! Property and robustness tests through the public API: planted values of
//! every kind never survive redaction, and restore undoes redaction exactly.

use draco::bench::redact_corpus::{Rng, value};
use draco::redact::{PiiKind, Redactor};
use proptest::prelude::*;
use serde_json::json;

/// Filler words that cannot form any kind on their own or with a neighbour
/// (letters without digits, and punctuation that ends tokens).
fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "the", "instance", "was", "stopped", "by", "policy", "cost", "is", "high", "ok", ",",
            ".", ";", "(", ")", "\n", "–", "é", "region", "bucket",
        ]),
        0..12,
    )
    .prop_map(|w| w.join(" "))
}

/// How a planted value is introduced: names and AWS secret keys are only
/// recognised after a key, the rest anywhere.
fn planted(kind: PiiKind, v: &str) -> String {
    match kind {
        PiiKind::Name => format!("Owner: {v}"),
        PiiKind::AwsSecretKey => format!("aws_secret_access_key = {v}"),
        PiiKind::UrlCredentials => format!("https://{v}@db.example.com/x"),
        _ => v.to_owned(),
    }
}

fn kinds() -> impl Strategy<Value = PiiKind> {
    prop::sample::select(PiiKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn planted_values_never_survive_in_text(
        seed in any::<u64>(),
        picks in prop::collection::vec((kinds(), filler()), 1..6),
        tail in filler(),
    ) {
        let mut rng = Rng::new(seed);
        let mut text = String::new();
        let mut values = Vec::new();
        for (kind, before) in &picks {
            let v = value(&mut rng, *kind);
            text.push_str(before);
            text.push(' ');
            text.push_str(&planted(*kind, &v));
            text.push(' ');
            values.push(v);
        }
        text.push_str(&tail);
        let r = Redactor::default();
        let (red, vault) = r.redact_text(&text);
        for v in &values {
            prop_assert!(!red.get().contains(v.as_str()), "{v:?} survived in {:?}", red.get());
        }
        let back = vault.restore(red.get());
        prop_assert_eq!(&back.text, &text);
        prop_assert!(back.unknown_placeholders.is_empty());
    }

    #[test]
    fn planted_values_never_survive_in_json(seed in any::<u64>(), kind in kinds(), note in filler()) {
        let mut rng = Rng::new(seed);
        let v = value(&mut rng, kind);
        let doc = json!({
            "Tags": [{"Key": "Owner", "Value": v}],
            "SecretAccessKey": if kind == PiiKind::AwsSecretKey { v.clone() } else { "x".to_owned() },
            "detail": {"message": format!("{note} {} {note}", planted(kind, &v)), "list": [planted(kind, &v), 3, null]},
        });
        let r = Redactor::default();
        let (red, vault) = r.redact(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let out = red.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?.to_string();
        let escaped = serde_json::to_string(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!out.contains(escaped.trim_matches('"')), "{v:?} survived in {out}");
        // Restore string by string: a restored value may hold characters
        // (newlines in a key) that must be escaped again inside JSON text.
        let mut restored = red.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        restore_strings(&mut restored, &vault);
        prop_assert_eq!(restored, doc);
    }
}

fn restore_strings(v: &mut serde_json::Value, vault: &draco::redact::Vault) {
    match v {
        serde_json::Value::String(s) => *s = vault.restore(s).text,
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| restore_strings(x, vault)),
        serde_json::Value::Object(m) => m.values_mut().for_each(|x| restore_strings(x, vault)),
        _ => {}
    }
}

/// Near-misses of every kind, 1 MiB each: nothing is found, and nothing
/// panics. (The time this takes is measured by the bench, not asserted.)
#[test]
fn near_miss_inputs_find_nothing() {
    const N: usize = 1 << 20;
    let r = Redactor::default();
    for unit in [
        "1234567890",
        "1 ",
        "123-",
        "1.2.",
        "@",
        "a@b",
        "a.",
        "AKIA",
        "eyJ.",
        "ab:",
        "a://",
        "Owner: ",
        "secret=",
        "GB82 ",
        "+1 ",
        "4111 ",
        "::",
        "xoxb-",
        "ghp_",
        "AIza",
        "1.2.3.4.",
    ] {
        let text = unit.repeat(N / unit.len());
        let spans = r.spans(&text);
        assert!(
            spans
                .iter()
                .all(|s| s.kind == PiiKind::Name && unit == "Owner: "),
            "{unit:?} gave {:?}",
            spans.iter().take(3).collect::<Vec<_>>()
        );
    }
}

#[test]
fn unterminated_private_key_is_redacted_to_the_end_of_its_body() {
    let r = Redactor::default();
    let text = format!(
        "key: -----BEGIN PRIVATE KEY-----\n{}\nthen prose.",
        "QUJD".repeat(300)
    );
    let (red, _) = r.redact_text(&text);
    assert_eq!(red.get(), "key: <PRIVATE_KEY_1> prose.");
}
