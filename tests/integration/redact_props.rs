//! Property and robustness tests through the public API: planted values of
//! every kind never survive redaction, and restore undoes redaction exactly.

use draco::bench::redact_corpus::credentials::samples;
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
        PiiKind::Password => format!("DB_PASSWORD={v}"),
        PiiKind::Secret => format!("api_key: \"{v}\""),
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

/// Whether a piece of `secret` longer than four bytes is in `output`
/// outside placeholders (and was not in `input` outside the secret).
fn survives(secret: &str, input: &str, output: &str) -> Option<String> {
    let around = input.replace(secret, " ");
    let left = draco_placeholders_removed(output);
    secret
        .as_bytes()
        .windows(5)
        .filter_map(|w| std::str::from_utf8(w).ok())
        .find(|piece| left.contains(piece) && !around.contains(piece))
        .map(str::to_owned)
}

fn draco_placeholders_removed(text: &str) -> String {
    let re = regex::Regex::new(r"<[A-Z][A-Z0-9_]*_[0-9]+>").expect("regex");
    re.replace_all(text, " ").into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Keys of every generated format (GitHub's stateless `ghs_` tokens,
    /// `sk-proj-`, `sk-ant-api03-`, SendGrid, Twilio, values after
    /// `*_TOKEN=` …), planted in env, YAML, JSON, header, flag and prose
    /// shapes, never leave a piece longer than four bytes, and restore
    /// gives the text back.
    #[test]
    fn generated_keys_of_every_format_never_survive(seed in any::<u64>(), note in filler()) {
        let r = Redactor::default();
        for sample in samples(seed, 1) {
            for doc in &sample.docs {
                let text = format!("{note}\n{}{note}", doc.text);
                let shift = note.len() + 1;
                let (red, vault) = r.redact_text(&text);
                for label in &doc.spans {
                    let secret = &text[label.start + shift..label.end + shift];
                    let left = survives(secret, &text, red.get());
                    prop_assert!(left.is_none(), "{}: {left:?} of {secret:?} survived in {:?}", sample.format.name, red.get());
                }
                prop_assert_eq!(&vault.restore(red.get()).text, &text);
            }
        }
    }

    /// The same keys as JSON values under secret-like keys, through the JSON walk.
    #[test]
    fn generated_keys_never_survive_under_json_keys(seed in any::<u64>()) {
        let r = Redactor::default();
        let mut rng = Rng::new(seed);
        for key in ["client_secret", "apiKey", "DB_PASSWORD", "Authorization", "token"] {
            for sample in samples(rng.next_u64(), 1) {
                for doc in &sample.docs {
                    let Some(label) = doc.spans.first() else { continue };
                    let secret = &doc.text[label.start..label.end];
                    let value = if key == "Authorization" { format!("Bearer {secret}") } else { secret.to_owned() };
                    let json = json!({ key: value, "Tags": [{"Key": "DB_PASSWORD", "Value": secret}] });
                    let (red, _) = r.redact(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let out = red.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?.to_string();
                    let input = json.to_string();
                    let escaped = serde_json::to_string(secret).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let escaped = escaped.trim_matches('"');
                    let left = survives(escaped, &input, &out);
                    prop_assert!(left.is_none(), "{key}/{}: {left:?} survived in {out}", sample.format.name);
                }
            }
        }
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
        "sk-",
        "ghs_",
        "SG.",
        "Bearer ",
        "token=",
        "password: ",
        "x-api-key: ",
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
