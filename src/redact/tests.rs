//! Behaviour of the public API: consistency, restore, JSON walk.

use super::*;
use serde_json::json;

#[test]
fn same_value_gets_the_same_placeholder() {
    let r = Redactor::default();
    let (red, vault) = r.redact_text("a@b.io wrote to c@d.io, then a@b.io again");
    assert_eq!(
        red.get(),
        "<EMAIL_1> wrote to <EMAIL_2>, then <EMAIL_1> again"
    );
    assert_eq!(vault.len(), 2);
}

#[test]
fn restore_puts_values_back_and_flags_invented_placeholders() {
    let r = Redactor::default();
    let (red, vault) = r.redact_text("host 10.1.2.3 in 123456789012");
    let answer = format!("{} and <EMAIL_9>", red.get());
    let restored = vault.restore(&answer);
    assert_eq!(restored.text, "host 10.1.2.3 in 123456789012 and <EMAIL_9>");
    assert_eq!(restored.unknown_placeholders, vec!["<EMAIL_9>"]);
}

#[test]
fn json_keys_are_kept_and_tag_names_redacted() {
    let r = Redactor::default();
    let value = json!({
        "Tags": [{"Key": "CreatedBy", "Value": "Jane Doe"}, {"Key": "Name", "Value": "web"}],
        "tags": {"Owner": "jane@example.com", "Contact": "Jane Doe"},
        "arn": "arn:aws:iam::123456789012:role/x",
        "cidr": "0.0.0.0/0",
        "cidr6": "::/0",
    });
    let (red, _) = r.redact(&value).expect("plain JSON redacts");
    assert_eq!(
        red.get(),
        &json!({
            "Tags": [{"Key": "CreatedBy", "Value": "<NAME_1>"}, {"Key": "Name", "Value": "web"}],
            "tags": {"Owner": "<EMAIL_1>", "Contact": "<NAME_1>"},
            "arn": "arn:aws:iam::<ACCOUNT_ID_1>:role/x",
            "cidr": "0.0.0.0/0",
            "cidr6": "::/0",
        })
    );
}

#[test]
fn json_secret_keys_and_configured_person_keys() {
    let r = Redactor::new(&["TeamLead".to_owned()]);
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let value = json!({
        "Credentials": {"AccessKeyId": "ASIAIOSFODNN7EXAMPLE", "SecretAccessKey": secret},
        "etag": "0123456789abcdef0123456789abcdef01234567",
        "teamlead": "Ann Lee",
        "note": "Owner: Bob Stone",
    });
    let (red, vault) = r.redact(&value).expect("plain JSON redacts");
    assert_eq!(
        red.get(),
        &json!({
            "Credentials": {"AccessKeyId": "<AWS_ACCESS_KEY_1>", "SecretAccessKey": "<AWS_SECRET_KEY_1>"},
            "etag": "0123456789abcdef0123456789abcdef01234567",
            "teamlead": "<NAME_2>",
            "note": "Owner: <NAME_1>",
        })
    );
    let back = vault.restore(&red.to_json().expect("serialises").to_string());
    assert!(back.text.contains(secret) && back.text.contains("Bob Stone"));
}

#[test]
fn spans_are_byte_offsets_with_snake_case_kinds() {
    let r = Redactor::default();
    let text = "é owner=jane.doe ip=10.0.0.1";
    let spans = r.spans(text);
    let json: Vec<String> = spans
        .iter()
        .map(|s| serde_json::to_string(s).expect("span serialises"))
        .collect();
    assert_eq!(
        json,
        vec![
            r#"{"start":9,"end":17,"kind":"name"}"#,
            r#"{"start":21,"end":29,"kind":"ipv4"}"#
        ]
    );
}

#[test]
fn redacting_twice_changes_nothing_more() {
    let r = Redactor::default();
    let (once, _) =
        r.redact_text("Owner: Jane Doe, mail jane@x.io, phone +1 (555) 010-0000, ip ::1");
    let (twice, vault) = r.redact_text(once.get());
    assert_eq!(once.get(), twice.get());
    assert!(vault.is_empty());
}

#[test]
fn keys_that_are_data_and_lists_of_people_are_redacted_too() {
    let r = Redactor::default();
    let value = json!({
        "tags": {"jane.doe@corp.example": "on-call", "Name": "web"},
        "owners": ["Jane Doe", "Li Wei"],
    });
    let (red, vault) = r.redact(&value).unwrap();
    assert_eq!(
        red.get(),
        &json!({
            "tags": {"<EMAIL_1>": "on-call", "Name": "web"},
            "owners": ["<NAME_1>", "<NAME_2>"],
        })
    );
    let restored: serde_json::Value =
        serde_json::from_str(&vault.restore(&red.get().to_string()).text).unwrap();
    assert_eq!(restored, value);
}

#[test]
fn a_long_non_ascii_name_is_cut_on_a_character_boundary() {
    let r = Redactor::default();
    for text in [
        format!("owner: \"a{}\"", "é".repeat(100)),
        format!("{{\"Owner\": \"{}\"}}", "日".repeat(50)),
    ] {
        let (red, vault) = r.redact_text(&text);
        assert!(!vault.is_empty(), "{text}");
        assert_eq!(vault.restore(red.get()).text, text);
    }
}

#[test]
fn mask_hides_every_value_the_vault_holds() {
    let r = Redactor::default();
    let (_, vault) = r.redact_text("jane@corp.example and jane@corp.example.org from 10.0.0.1");
    assert_eq!(
        vault.mask("value `jane@corp.example.org` does not match; 10.0.0.1 neither"),
        "value `<EMAIL_2>` does not match; <IPV4_1> neither"
    );
}

#[test]
fn json_values_under_secret_keys_are_redacted_whole() {
    let r = Redactor::default();
    let value = json!({
        "client_secret": "Zq8vT2mW5xL9pK3r",
        "Tags": [{"Key": "DB_PASSWORD", "Value": "pa ss@word.io"}],
        "headers": {"Authorization": "Bearer abcdEFGH1234ijkl5678"},
        "NextToken": "eyJ2IjoxLCJrIjoiYWJjIn0abcdefgh",
        "token": "${{ secrets.TOKEN }}",
    });
    let (red, _) = r.redact(&value).expect("plain JSON redacts");
    assert_eq!(
        red.get(),
        &json!({
            "client_secret": "<SECRET_1>",
            "Tags": [{"Key": "DB_PASSWORD", "Value": "<PASSWORD_1>"}],
            "headers": {"Authorization": "<SECRET_2>"},
            "NextToken": "eyJ2IjoxLCJrIjoiYWJjIn0abcdefgh",
            "token": "${{ secrets.TOKEN }}",
        })
    );
}

#[test]
fn a_short_lower_case_value_with_an_underscore_under_a_secret_key_is_a_secret() {
    let r = Redactor::default();
    // Found by the property test: a password that happens to be lower case.
    let (out, _) = r
        .redact(&json!({"client_secret": "pil_brhg"}))
        .expect("redact");
    assert_ne!(out.get()["client_secret"], "pil_brhg", "{:?}", out.get());
    // A mode or a resource name stays readable.
    for kept in ["required", "my-db-creds"] {
        let (out, _) = r.redact(&json!({"client_secret": kept})).expect("redact");
        assert_eq!(out.get()["client_secret"], kept);
    }
}
