//! A deterministic labelled corpus for the redactor: mixed application
//! logs, CloudTrail-like events, EC2 describe output, config dumps and
//! billing rows, with about 1% of bytes personal or secret, each labelled
//! with its exact byte span, and hard negatives that look close.
//!
//! What counts (the labelling rules the redactor is scored against):
//! - a standalone 12-digit number is an AWS account id (CLI output, ARNs,
//!   billing rows); the generator never emits other 12-digit numbers;
//! - four dot-separated numbers 0..=255 are an IPv4 address, so versions
//!   are written with three parts (`1.24.3`);
//! - `0.0.0.0`, `255.255.255.255` and `::` are rules, not data: unlabelled;
//! - a 40-character base64 string is an AWS secret key only after a key
//!   that says "secret"; SHA-1 hex under `commit` or `etag` is not;
//! - names are labelled only as values of person keys (tags, `Owner:`).
//!
//! Hard negatives: timestamps, dates, epoch seconds and milliseconds,
//! durations, prices, three-part versions, UUIDs, SHA hashes, `i-`, `sg-`,
//! `vol-`, `snap-`, `ami-`, `subnet-` ids, `AIDA…` principal ids, order
//! numbers, CIDR `0.0.0.0/0` and `::/0`, placeholders like `<EMAIL_1>`.

use std::fmt::Write as _;

use crate::redact::{PiiKind, Span};

pub mod credentials;

/// xorshift64*: small, seedable, good enough to vary test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(*self.pick(alphabet))).collect()
    }

    pub fn digits(&mut self, n: usize) -> String {
        self.chars(b"0123456789", n)
    }
}

const HEX: &[u8] = b"0123456789abcdef";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const FIRST: &[&str] = &[
    "Jane", "John", "Amara", "Li", "Sofia", "Mateo", "Priya", "Olek", "Chloé", "Kwame",
];
const LAST: &[&str] = &[
    "Doe", "Smith", "Okafor", "Wei", "García", "Rossi", "Patel", "Nowak", "Martin", "Mensah",
];

/// Text with its labelled spans.
#[derive(Debug, Clone, Default)]
pub struct Labelled {
    pub text: String,
    pub spans: Vec<Span>,
}

impl Labelled {
    fn t(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn pii(&mut self, kind: PiiKind, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.spans.push(Span {
            start,
            end: self.text.len(),
            kind,
        });
    }

    /// Bytes inside labelled spans.
    pub fn pii_bytes(&self) -> usize {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }
}

/// One value of `kind`, as it would be written.
pub fn value(rng: &mut Rng, kind: PiiKind) -> String {
    match kind {
        PiiKind::Email => {
            let f = rng.pick(&[
                "jane.doe",
                "j.smith",
                "ops+alerts",
                "amara_okafor",
                "li.wei42",
                "billing",
            ]);
            let d = rng.pick(&[
                "example.com",
                "corp.example.io",
                "mail.example.co.uk",
                "example.org",
            ]);
            format!("{f}{}@{d}", rng.below(100))
        }
        PiiKind::Phone => phone(rng),
        PiiKind::Ipv4 => loop {
            let o: Vec<usize> = (0..4).map(|_| rng.below(256)).collect();
            if o[0] != 0 && o[0] != 255 {
                break format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]);
            }
        },
        PiiKind::Ipv6 => loop {
            let mut bits = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            if rng.chance(50) {
                // Many real addresses have a run of zero groups.
                bits &= !(0xFFFF_FFFF_FFFF_u128 << 32);
            }
            let s = std::net::Ipv6Addr::from(bits).to_string();
            if s.bytes().any(|b| b.is_ascii_digit()) && s.matches(':').count() >= 2 {
                break s;
            }
        },
        PiiKind::Mac => {
            let sep = if rng.chance(80) { ":" } else { "-" };
            let parts: Vec<String> = (0..6).map(|_| rng.chars(HEX, 2)).collect();
            let m = parts.join(sep);
            if rng.chance(30) { m.to_uppercase() } else { m }
        }
        PiiKind::AccountId => rng.digits(12),
        PiiKind::AwsAccessKey => {
            format!(
                "{}{}",
                rng.pick(&["AKIA", "ASIA"]),
                rng.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            )
        }
        PiiKind::AwsSecretKey => rng.chars(B64, 40),
        PiiKind::GithubToken => {
            if rng.chance(80) {
                format!(
                    "{}{}",
                    rng.pick(&["ghp_", "gho_", "ghs_"]),
                    rng.chars(ALNUM, 36)
                )
            } else {
                format!(
                    "github_pat_{}_{}",
                    rng.chars(ALNUM, 22),
                    rng.chars(ALNUM, 59)
                )
            }
        }
        PiiKind::SlackToken => format!(
            "{}-{}-{}-{}",
            rng.pick(&["xoxb", "xoxp"]),
            rng.digits(11),
            rng.digits(12),
            rng.chars(ALNUM, 24)
        ),
        PiiKind::GoogleApiKey => format!("AIza{}", rng.chars(B64URL, 35)),
        PiiKind::PrivateKey => {
            let body: Vec<String> = (0..4).map(|_| rng.chars(B64, 64)).collect();
            format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
                body.join("\n")
            )
        }
        PiiKind::Jwt => format!(
            "eyJ{}.eyJ{}.{}",
            rng.chars(B64URL, 30),
            rng.chars(B64URL, 60),
            rng.chars(B64URL, 43)
        ),
        PiiKind::UrlCredentials => format!(
            "{}:{}",
            rng.pick(&["app", "admin", "svc_etl"]),
            rng.chars(ALNUM, 14)
        ),
        PiiKind::CreditCard => card(rng),
        PiiKind::Ssn => format!(
            "{}-{:02}-{:04}",
            100 + rng.below(565),
            1 + rng.below(99),
            1 + rng.below(9999)
        ),
        PiiKind::Iban => iban(rng),
        PiiKind::OpenaiKey
        | PiiKind::AnthropicKey
        | PiiKind::TwilioKey
        | PiiKind::SendgridKey
        | PiiKind::StripeKey
        | PiiKind::ApiKey
        | PiiKind::Password
        | PiiKind::Secret => credentials::of_kind(rng, kind),
        PiiKind::Name => format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
    }
}

fn phone(rng: &mut Rng) -> String {
    let d = |rng: &mut Rng, n| rng.digits(n);
    match rng.below(9) {
        0 => format!("+1 ({}) {}-{}", 200 + rng.below(800), d(rng, 3), d(rng, 4)),
        1 => format!("+44 20 {} {}", d(rng, 4), d(rng, 4)),
        2 => format!("0{} {}", 100 + rng.below(900), d(rng, 7)),
        3 => format!("({}) {}-{}", 200 + rng.below(800), d(rng, 3), d(rng, 4)),
        4 => format!("{}-{}-{}", 200 + rng.below(800), d(rng, 3), d(rng, 4)),
        5 => format!("+49 30 {}", d(rng, 8)),
        6 => format!("07{} {}", d(rng, 3), d(rng, 6)),
        7 => format!("+1{}{}", 200 + rng.below(800), d(rng, 7)),
        _ => format!(
            "+33 {} {} {} {} {}",
            1 + rng.below(9),
            d(rng, 2),
            d(rng, 2),
            d(rng, 2),
            d(rng, 2)
        ),
    }
}

fn luhn_complete(rng: &mut Rng, prefix: &str, len: usize) -> String {
    let mut s = format!("{prefix}{}", rng.digits(len - prefix.len() - 1));
    let sum: u32 = s
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let v = u32::from(b - b'0');
            // The check digit goes last, so the rightmost payload digit doubles.
            if i % 2 == 0 {
                if v * 2 > 9 { v * 2 - 9 } else { v * 2 }
            } else {
                v
            }
        })
        .sum();
    let _ = write!(s, "{}", (10 - sum % 10) % 10);
    s
}

fn card(rng: &mut Rng) -> String {
    let (prefix, len) = *rng.pick(&[
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("37", 15),
        ("6011", 16),
        ("2221", 16),
    ]);
    let n = luhn_complete(rng, prefix, len);
    let sep = *rng.pick(&["", " ", "-"]);
    if sep.is_empty() {
        return n;
    }
    let cuts: &[usize] = if len == 15 { &[4, 10] } else { &[4, 8, 12] };
    let mut out = String::new();
    for (i, ch) in n.chars().enumerate() {
        if cuts.contains(&i) {
            out.push_str(sep);
        }
        out.push(ch);
    }
    out
}

fn iban(rng: &mut Rng) -> String {
    let (cc, bban) = match rng.below(4) {
        0 => (
            "GB",
            format!(
                "{}{}",
                rng.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                rng.digits(14)
            ),
        ),
        1 => ("DE", rng.digits(18)),
        2 => (
            "NL",
            format!(
                "{}{}",
                rng.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4),
                rng.digits(10)
            ),
        ),
        _ => ("FR", rng.digits(23)),
    };
    let mut rem = 0u32;
    for b in format!("{bban}{cc}00").bytes() {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            _ => (rem * 100 + u32::from(b - b'A') + 10) % 97,
        };
    }
    let compact = format!("{cc}{:02}{bban}", 98 - rem);
    if rng.chance(70) {
        return compact;
    }
    let chunks: Vec<String> = compact
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    chunks.join(" ")
}

fn ts(rng: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        rng.chars(HEX, 8),
        rng.chars(HEX, 4),
        rng.chars(HEX, 4),
        rng.chars(HEX, 4),
        rng.chars(HEX, 12)
    )
}

fn res_id(rng: &mut Rng, prefix: &str) -> String {
    let n = if rng.chance(80) { 17 } else { 8 };
    format!("{prefix}-{}", rng.chars(HEX, n))
}

/// Generates about `bytes` bytes from `seed`; the same seed gives the same corpus.
pub fn generate(seed: u64, bytes: usize) -> Labelled {
    let mut rng = Rng::new(seed);
    let mut doc = Labelled::default();
    while doc.text.len() < bytes {
        match rng.below(100) {
            0..=80 => app_log(&mut rng, &mut doc),
            81..=96 => billing(&mut rng, &mut doc),
            97 => cloudtrail(&mut rng, &mut doc),
            98 => ec2(&mut rng, &mut doc),
            _ => config(&mut rng, &mut doc),
        }
    }
    doc
}

fn app_log(rng: &mut Rng, doc: &mut Labelled) {
    let level = *rng.pick(&["INFO", "WARN", "ERROR", "DEBUG"]);
    let line = format!(
        "{} {level} [orders-api v1.{}.{}] req={} GET /api/v1/orders/ORD-{} status={} dur={}ms bytes={} price={}.{:02} trace={}",
        ts(rng),
        rng.below(30),
        rng.below(10),
        uuid(rng),
        rng.digits(10),
        *rng.pick(&[200, 201, 404, 500]),
        rng.below(5000),
        rng.below(1_000_000),
        rng.below(10_000),
        rng.below(100),
        rng.chars(HEX, 32),
    );
    doc.t(&line);
    if rng.chance(20) {
        let neg = rng.pick(&[
            " cidr=0.0.0.0/0",
            " cidr6=::/0",
            " prev=<EMAIL_1>",
            " at 10:30:45",
            " on 2026-11-25",
            " instance=i-0123456789abcdef0",
            " principal=AIDAJQABLZS4A3QDU576Q",
            " near=AKIAEXAMPLE",
        ]);
        doc.t(neg);
        let _ = write!(
            doc.text,
            " ts_ms=17{} epoch=17{}",
            rng.digits(11),
            rng.digits(8)
        );
    }
    if rng.chance(4) {
        inline_pii(rng, doc);
    }
    doc.t("\n");
}

/// One personal or secret value in a log line, in the way logs write it.
fn inline_pii(rng: &mut Rng, doc: &mut Labelled) {
    let kind = *rng.pick(&[
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ipv4,
        PiiKind::Ipv4,
        PiiKind::Ipv6,
        PiiKind::Mac,
        PiiKind::AccountId,
        PiiKind::AwsAccessKey,
        PiiKind::GithubToken,
        PiiKind::SlackToken,
        PiiKind::GoogleApiKey,
        PiiKind::Jwt,
        PiiKind::UrlCredentials,
        PiiKind::CreditCard,
        PiiKind::Ssn,
        PiiKind::Iban,
        PiiKind::Name,
        PiiKind::Name,
    ]);
    let v = value(rng, kind);
    match kind {
        PiiKind::Name => match rng.below(3) {
            0 => {
                doc.t(" Owner: ");
                doc.pii(kind, &v);
            }
            1 => {
                doc.t(" owner=");
                doc.pii(kind, &v.to_lowercase().replace(' ', "."));
            }
            _ => {
                doc.t(" tags={\"CreatedBy\": \"");
                doc.pii(kind, &v);
                doc.t("\"}");
            }
        },
        PiiKind::UrlCredentials => {
            doc.t(" upstream=https://");
            doc.pii(kind, &v);
            doc.t("@api.example.com/v1");
        }
        PiiKind::Jwt => {
            doc.t(" Authorization: Bearer ");
            doc.pii(kind, &v);
        }
        PiiKind::Phone => {
            doc.t(" phone=\"");
            doc.pii(kind, &v);
            doc.t("\"");
        }
        PiiKind::Email
        | PiiKind::Ipv4
        | PiiKind::Ipv6
        | PiiKind::AccountId
        | PiiKind::CreditCard
        | PiiKind::Ssn
            if rng.chance(40) =>
        {
            // Values in prose and structured punctuation, not only after `key=`.
            let (open, close) = *rng.pick(&[
                ("(", ")"),
                ("[", "]"),
                ("<", ">"),
                ("\"", "\","),
                (" ", "."),
                ("'", "'"),
            ]);
            let (open, close) = if kind == PiiKind::Ipv6 && open == "[" {
                ("[", "]:443")
            } else {
                (open, close)
            };
            doc.t(" seen ");
            doc.t(open);
            doc.pii(kind, &v);
            doc.t(close);
        }
        _ => {
            let key = match kind {
                PiiKind::Email => " email=",
                PiiKind::Ipv4 => " client=",
                PiiKind::Ipv6 => " client6=",
                PiiKind::Mac => " mac=",
                PiiKind::AccountId => " account ",
                PiiKind::AwsAccessKey => " key_id=",
                PiiKind::CreditCard => " card=",
                PiiKind::Ssn => " ssn=",
                PiiKind::Iban => " iban=",
                _ => " token=",
            };
            doc.t(key);
            doc.pii(kind, &v);
        }
    }
}

fn billing(rng: &mut Rng, doc: &mut Labelled) {
    let _ = write!(doc.text, "2026-11-{:02},", 1 + rng.below(28));
    if rng.chance(5) {
        let acct = rng.digits(12);
        doc.pii(PiiKind::AccountId, &acct);
    } else {
        doc.t("linked");
    }
    let line = format!(
        ",AmazonEC2,BoxUsage:t3.micro,us-east-1,{}.000,0.0104,{}.{:04},USD,INV-{},{}\n",
        rng.below(744),
        rng.below(9999),
        rng.below(10_000),
        rng.digits(9),
        rng.chars(HEX, 40),
    );
    doc.t(&line);
}

fn cloudtrail(rng: &mut Rng, doc: &mut Labelled) {
    let acct = rng.digits(12);
    let _ = write!(
        doc.text,
        "{{\"eventVersion\":\"1.08\",\"userIdentity\":{{\"type\":\"IAMUser\",\"principalId\":\"AIDA{}\",\"arn\":\"arn:aws:iam::",
        rng.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 17)
    );
    doc.pii(PiiKind::AccountId, &acct);
    doc.t(":user/svc-deploy\",\"accountId\":\"");
    doc.pii(PiiKind::AccountId, &acct);
    doc.t("\"");
    if rng.chance(25) {
        doc.t(",\"accessKeyId\":\"");
        let k = value(rng, PiiKind::AwsAccessKey);
        doc.pii(PiiKind::AwsAccessKey, &k);
        doc.t("\"");
    }
    let _ = write!(
        doc.text,
        "}},\"eventTime\":\"{}\",\"eventSource\":\"ec2.amazonaws.com\",\"eventName\":\"{}\",\"awsRegion\":\"us-east-1\",\"sourceIPAddress\":\"",
        ts(rng),
        rng.pick(&[
            "RunInstances",
            "DescribeInstances",
            "AuthorizeSecurityGroupIngress",
            "CreateSnapshot"
        ])
    );
    if rng.chance(30) {
        let ip = value(rng, PiiKind::Ipv4);
        doc.pii(PiiKind::Ipv4, &ip);
    } else {
        doc.t("ec2.amazonaws.com");
    }
    let _ = write!(
        doc.text,
        "\",\"userAgent\":\"aws-cli/2.{}.0 Python/3.11.{} Linux/6.1.{}\",\"requestParameters\":{{\"groupId\":\"{}\",\"ipPermissions\":{{\"items\":[{{\"ipProtocol\":\"tcp\",\"fromPort\":443,\"toPort\":443,\"ipRanges\":{{\"items\":[{{\"cidrIp\":\"0.0.0.0/0\"}}]}},\"ipv6Ranges\":{{\"items\":[{{\"cidrIpv6\":\"::/0\"}}]}}}}]}},\"snapshotId\":\"{}\",\"volumeId\":\"{}\"}},\"responseElements\":null,\"requestID\":\"{}\",\"eventID\":\"{}\",\"readOnly\":false,\"eventType\":\"AwsApiCall\",\"managementEvent\":true,\"recipientAccountId\":\"",
        rng.below(20),
        rng.below(9),
        rng.below(100),
        res_id(rng, "sg"),
        res_id(rng, "snap"),
        res_id(rng, "vol"),
        uuid(rng),
        uuid(rng),
    );
    doc.pii(PiiKind::AccountId, &acct);
    doc.t("\",\"eventCategory\":\"Management\",\"tlsDetails\":{\"tlsVersion\":\"TLSv1.3\",\"cipherSuite\":\"TLS_AES_128_GCM_SHA256\",\"clientProvidedHostHeader\":\"ec2.us-east-1.amazonaws.com\"}}\n");
}

fn ec2(rng: &mut Rng, doc: &mut Labelled) {
    let _ = write!(
        doc.text,
        "{{\n  \"Reservations\": [\n    {{\n      \"Instances\": [\n        {{\n          \"InstanceId\": \"{}\",\n          \"ImageId\": \"{}\",\n          \"InstanceType\": \"m5.large\",\n          \"LaunchTime\": \"{}\",\n          \"SubnetId\": \"{}\",\n          \"VpcId\": \"{}\",\n          \"PrivateIpAddress\": \"",
        res_id(rng, "i"),
        res_id(rng, "ami"),
        ts(rng),
        res_id(rng, "subnet"),
        res_id(rng, "vpc"),
    );
    let ip = value(rng, PiiKind::Ipv4);
    doc.pii(PiiKind::Ipv4, &ip);
    doc.t(
        "\",\n          \"NetworkInterfaces\": [\n            {\n              \"MacAddress\": \"",
    );
    let mac = value(rng, PiiKind::Mac);
    doc.pii(PiiKind::Mac, &mac);
    doc.t("\",\n              \"Ipv6Addresses\": [");
    if rng.chance(40) {
        doc.t("{\"Ipv6Address\": \"");
        let v6 = value(rng, PiiKind::Ipv6);
        doc.pii(PiiKind::Ipv6, &v6);
        doc.t("\"}");
    }
    let _ = write!(
        doc.text,
        "]\n            }}\n          ],\n          \"SecurityGroups\": [{{\"GroupId\": \"{}\", \"GroupName\": \"web\"}}],\n          \"BlockDeviceMappings\": [{{\"DeviceName\": \"/dev/xvda\", \"Ebs\": {{\"VolumeId\": \"{}\", \"AttachTime\": \"{}\", \"DeleteOnTermination\": true}}}}],\n          \"Monitoring\": {{\"State\": \"disabled\"}},\n          \"Tags\": [\n            {{\"Key\": \"Name\", \"Value\": \"web-{}\"}},\n            {{\"Key\": \"CostCenter\", \"Value\": \"CC-{}\"}}",
        res_id(rng, "sg"),
        res_id(rng, "vol"),
        ts(rng),
        rng.below(100),
        rng.digits(4),
    );
    if rng.chance(50) {
        let key = *rng.pick(&["Owner", "CreatedBy", "Contact"]);
        let _ = write!(
            doc.text,
            ",\n            {{\"Key\": \"{key}\", \"Value\": \""
        );
        let name = value(rng, PiiKind::Name);
        doc.pii(PiiKind::Name, &name);
        doc.t("\"}");
    }
    doc.t("\n          ]\n        }\n      ],\n      \"OwnerId\": \"");
    let acct = rng.digits(12);
    doc.pii(PiiKind::AccountId, &acct);
    let _ = writeln!(
        doc.text,
        "\",\n      \"ReservationId\": \"r-{}\"\n    }}\n  ]\n}}",
        rng.chars(HEX, 17)
    );
}

fn config(rng: &mut Rng, doc: &mut Labelled) {
    let _ = writeln!(doc.text, "# config dump {}\n[profile prod]", ts(rng));
    let kv = |doc: &mut Labelled, rng: &mut Rng, key: &str, kind: PiiKind| {
        doc.t(key);
        let v = value(rng, kind);
        doc.pii(kind, &v);
        doc.t("\n");
    };
    if rng.chance(50) {
        kv(doc, rng, "aws_access_key_id = ", PiiKind::AwsAccessKey);
        kv(doc, rng, "aws_secret_access_key = ", PiiKind::AwsSecretKey);
    }
    let _ = writeln!(
        doc.text,
        "region = eu-west-1\nversion = 2.{}.{}\ncommit = {}\netag = \"{}\"",
        rng.below(40),
        rng.below(9),
        rng.chars(HEX, 40),
        rng.chars(HEX, 40)
    );
    if rng.chance(40) {
        doc.t("DATABASE_URL=postgres://");
        let c = value(rng, PiiKind::UrlCredentials);
        doc.pii(PiiKind::UrlCredentials, &c);
        doc.t("@db.internal.example.com:5432/app\n");
    }
    match rng.below(6) {
        0 => kv(doc, rng, "OPENAI_API_KEY=", PiiKind::OpenaiKey),
        1 => kv(doc, rng, "DB_PASSWORD=", PiiKind::Password),
        2 => kv(doc, rng, "TWILIO_AUTH_TOKEN=", PiiKind::Secret),
        _ => {}
    }
    match rng.below(4) {
        0 => kv(doc, rng, "GITHUB_TOKEN=", PiiKind::GithubToken),
        1 => kv(doc, rng, "SLACK_BOT_TOKEN=", PiiKind::SlackToken),
        2 => kv(doc, rng, "GOOGLE_MAPS_API_KEY=", PiiKind::GoogleApiKey),
        _ => {
            doc.t("{\"SecretAccessKey\": \"");
            let s = value(rng, PiiKind::AwsSecretKey);
            doc.pii(PiiKind::AwsSecretKey, &s);
            doc.t("\", \"Expiration\": \"2026-11-25T12:00:00Z\"}\n");
        }
    }
    let _ = writeln!(
        doc.text,
        "image = registry.example.com/app@sha256:{}\ningress_cidr = 0.0.0.0/0\nipv6_cidr = ::/0",
        rng.chars(HEX, 64)
    );
    if rng.chance(15) {
        kv(doc, rng, "tls_key: |\n", PiiKind::PrivateKey);
    }
    if rng.chance(30) {
        kv(doc, rng, "maintainer: ", PiiKind::Name);
    }
    doc.t("\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_corpus_and_labels_point_at_values() {
        let a = generate(7, 50_000);
        let b = generate(7, 50_000);
        assert_eq!(a.text, b.text);
        assert!(!a.spans.is_empty());
        for s in &a.spans {
            assert!(a.text.is_char_boundary(s.start) && a.text.is_char_boundary(s.end));
        }
    }
}
