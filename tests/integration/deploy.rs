//! The deployment files in `deploy/` (issue 15) stay true to the code: the
//! systemd unit verifies, every YAML file parses and carries what a
//! hardened deployment needs, secrets reach Draco as files, every key in the
//! shipped configurations is one `draco config check` accepts, and the
//! Dockerfile builds the way Cargo.toml allows and runs as non-root with a
//! health check the binary answers itself.
//!
//! YAML is read by PyYAML (no YAML crate is in the tree): `YAML_PYTHON`
//! names a Python that has it (`.ci/run` points it at moto's virtualenv,
//! where moto put it), else `python3`. `systemd-analyze` comes with
//! Debian's `systemd`, which `.ci/run` installs when it is missing. Either
//! missing prints `skipped: …` and passes, except under `CI=true`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{BIN, Draco, describe, free_port};

/// The secrets Draco reads from the environment (src/config.rs
/// `SECRET_VARIABLES`): none may be set to a literal in a deploy file.
const SECRET_VARIABLES: [&str; 9] = [
    "DRACO_LLM_API_KEY",
    "DRACO_GITHUB_TOKEN",
    "DRACO_GITHUB_APP_PRIVATE_KEY",
    "DRACO_GITHUB_WEBHOOK_SECRET",
    "DRACO_TWILIO_AUTH_TOKEN",
    "DRACO_SMTP_PASSWORD",
    "DRACO_SENDGRID_API_KEY",
    "DRACO_DATABASE_PASSWORD",
    "DRACO_MASTER_KEY",
];

/// Dummy secrets for `draco config check`: the shipped configurations name
/// files that exist only where they are deployed, and the environment wins
/// over a `*_file` key without reading it.
const DUMMY_SECRETS: [(&str, &str); 4] = [
    ("DRACO_DATABASE_PASSWORD", "dummy-database-password"),
    // 32 bytes of zeros, base64.
    (
        "DRACO_MASTER_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ),
    (
        "DRACO_GITHUB_TOKEN",
        "github_pat_dummy_for_the_config_check",
    ),
    (
        "DRACO_GITHUB_WEBHOOK_SECRET",
        "dummy-webhook-secret-0123456789",
    ),
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Passes with a `skipped:` line off CI; fails under `CI=true`, where the
/// check must run.
fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "under CI=true this check must run: {why}"
    );
    eprintln!("skipped: {why}");
}

/// A Python with PyYAML, or why there is none.
fn yaml_python() -> Result<String, String> {
    let python = std::env::var("YAML_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    match Command::new(&python)
        .args(["-c", "import yaml"])
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(python),
        Ok(_) => Err(format!(
            "{python} has no PyYAML (pip install PyYAML, or set YAML_PYTHON)"
        )),
        Err(e) => Err(format!("cannot run {python}: {e}")),
    }
}

/// Every document of a YAML file, as JSON values (PyYAML's safe loader).
fn yaml_documents(python: &str, path: &Path) -> Vec<Value> {
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             with open(sys.argv[1]) as f:\n    \
             print(json.dumps([d for d in yaml.safe_load_all(f) if d is not None]))",
        ])
        .arg(path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{} does not parse as YAML: {}",
        path.display(),
        describe(&out)
    );
    serde_json::from_slice(&out.stdout).expect("PyYAML's documents as JSON")
}

fn yaml_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("deploy/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            into.push(path);
        }
    }
}

/// The one document of `deploy/k8s/<name>`.
fn manifest(python: &str, name: &str) -> Value {
    let mut docs = yaml_documents(python, &deploy_dir().join("k8s").join(name));
    assert_eq!(docs.len(), 1, "{name} holds one object");
    docs.remove(0)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

#[test]
fn every_yaml_file_in_deploy_parses() {
    let python = match yaml_python() {
        Ok(python) => python,
        Err(why) => return skip(&why),
    };
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    assert!(files.len() >= 8, "deploy/ has its YAML files: {files:?}");
    for file in files {
        let docs = yaml_documents(&python, &file);
        assert!(!docs.is_empty(), "{} is empty", file.display());
        if file.parent().is_some_and(|p| p.ends_with("k8s")) {
            for doc in &docs {
                for field in ["/apiVersion", "/kind", "/metadata/name"] {
                    str_at(doc, field);
                }
            }
        }
    }
}

#[test]
fn the_deployment_runs_two_hardened_replicas_probed_on_the_health_port() {
    let python = match yaml_python() {
        Ok(python) => python,
        Err(why) => return skip(&why),
    };
    let deployment = manifest(&python, "deployment.yaml");
    assert_eq!(str_at(&deployment, "/kind"), "Deployment");
    assert_eq!(deployment.pointer("/spec/replicas"), Some(&Value::from(2)));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let draco = &containers[0];

    let ports: Vec<(&str, i64)> = draco["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default(),
                p["containerPort"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(ports.contains(&("http", 8080)) && ports.contains(&("health", 8081)));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(draco[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(draco[probe]["httpGet"]["port"], "health", "{probe}");
    }
    assert!(draco["resources"]["requests"]["memory"].is_string());
    assert!(draco["resources"]["limits"]["memory"].is_string());

    let security = &draco["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    // Secrets as a mounted Secret, never as literal environment values.
    for var in draco["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default();
        assert!(
            !SECRET_VARIABLES.contains(&name) || var.get("value").is_none(),
            "{name} is set to a literal"
        );
    }
    let volumes = pod["volumes"].as_array().expect("volumes");
    let secret = volumes
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a Secret volume");
    assert_eq!(secret["secret"]["secretName"], "draco-secrets");
    let mounts = draco["volumeMounts"].as_array().expect("volume mounts");
    let data = mounts
        .iter()
        .find(|m| m["mountPath"] == "/var/lib/draco")
        .expect("the data directory is a volume (the root filesystem is read-only)");
    let data_volume = volumes
        .iter()
        .find(|v| v["name"] == data["name"])
        .expect("the data volume is declared");
    assert!(
        data_volume.get("emptyDir").is_some() || data_volume.get("persistentVolumeClaim").is_some()
    );

    // Longer than the default server.shutdown_grace_secs (10 s).
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30) > 10);
}

#[test]
fn the_other_manifests_limit_disruption_traffic_and_credentials() {
    let python = match yaml_python() {
        Ok(python) => python,
        Err(why) => return skip(&why),
    };
    let pdb = manifest(&python, "pdb.yaml");
    assert_eq!(str_at(&pdb, "/kind"), "PodDisruptionBudget");
    assert_eq!(pdb.pointer("/spec/minAvailable"), Some(&Value::from(1)));

    let policy = manifest(&python, "networkpolicy.yaml");
    assert_eq!(str_at(&policy, "/kind"), "NetworkPolicy");
    let types: BTreeSet<&str> = policy["spec"]["policyTypes"]
        .as_array()
        .expect("policyTypes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        types.contains("Egress") && types.contains("Ingress"),
        "{types:?}"
    );
    let egress_ports: BTreeSet<i64> = policy["spec"]["egress"]
        .as_array()
        .expect("egress rules")
        .iter()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(
        egress_ports,
        BTreeSet::from([53, 443, 5432]),
        "egress is DNS, HTTPS to the providers and PostgreSQL only"
    );
    let ingress_ports: BTreeSet<i64> = policy["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(ingress_ports, BTreeSet::from([8080, 8081]));

    let account = manifest(&python, "serviceaccount.yaml");
    assert!(
        str_at(
            &account,
            "/metadata/annotations/eks.amazonaws.com~1role-arn"
        )
        .starts_with("arn:aws:iam::")
    );

    let service = manifest(&python, "service.yaml");
    assert_eq!(str_at(&service, "/spec/ports/0/targetPort"), "http");

    // The example Secret holds placeholders only, outside the directory
    // `kubectl apply -f deploy/k8s/` reads.
    let example = manifest(&python, "example/secret.example.yaml");
    let data = example["stringData"].as_object().expect("stringData");
    assert_eq!(data.len(), 4);
    for (key, value) in data {
        assert_eq!(value, "REPLACE_ME", "{key} is a placeholder");
    }
    assert!(!deploy_dir().join("k8s/secret.example.yaml").exists());
}

#[test]
fn compose_passes_secrets_as_files_and_waits_for_a_healthy_database() {
    let python = match yaml_python() {
        Ok(python) => python,
        Err(why) => return skip(&why),
    };
    let compose = yaml_documents(&python, &deploy_dir().join("compose.yaml")).remove(0);
    let services = compose["services"].as_object().expect("services");
    assert!(services["postgres"]["healthcheck"]["test"].is_array());
    let draco = &services["draco"];
    assert_eq!(
        draco["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    assert_eq!(draco["build"]["dockerfile"], "deploy/Dockerfile");
    let wanted = [
        "db-password",
        "master-key",
        "github-token",
        "github-webhook-secret",
    ];
    let given: Vec<&str> = draco["secrets"]
        .as_array()
        .expect("draco's secrets")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(given, wanted);
    for name in wanted {
        let file = compose["secrets"][name]["file"]
            .as_str()
            .unwrap_or_else(|| panic!("secret {name} is a file"));
        assert!(file.starts_with("./secrets/"), "{name}: {file}");
    }
    // deploy/secrets/ is where those files go, and git ignores them.
    assert!(
        read(&deploy_dir().join("secrets/.gitignore"))
            .lines()
            .any(|l| l == "*")
    );
    for (name, service) in services {
        for (key, value) in service["environment"].as_object().into_iter().flatten() {
            assert!(
                !SECRET_VARIABLES.contains(&key.as_str()) && key != "POSTGRES_PASSWORD",
                "{name}: {key} would put a secret in the environment ({value})"
            );
        }
    }
}

/// `draco config check` on `config` with the dummy secrets, asserting it passes.
fn config_check_passes(config: &Path) {
    let draco = Draco::new();
    let mut command = draco.command();
    for (name, value) in DUMMY_SECRETS {
        command.env(name, value);
    }
    let out = command
        .arg("--config")
        .arg(config)
        .args(["config", "check"])
        .output()
        .expect("draco runs");
    assert!(
        out.status.success(),
        "draco config check --config {}: {}",
        config.display(),
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("# configuration is valid"), "{stdout}");
    assert!(stdout.contains("backend = \"github\""), "{stdout}");
}

#[test]
fn the_shipped_configurations_pass_draco_config_check() {
    config_check_passes(&deploy_dir().join("compose/draco.toml"));

    let python = match yaml_python() {
        Ok(python) => python,
        Err(why) => return skip(&why),
    };
    let configmap = manifest(&python, "configmap.yaml");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let toml = dir.path().join("draco.toml");
    std::fs::write(&toml, str_at(&configmap, "/data/draco.toml")).expect("write draco.toml");
    config_check_passes(&toml);
}

/// The unit's `Environment=` lines, commented-out ones included (they are
/// the documented way to add PostgreSQL and GitHub).
fn unit_environment(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter_map(|line| {
            line.trim_start_matches('#')
                .strip_prefix("Environment=")
                .and_then(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_its_variables_are_known_to_draco() {
    let unit = read(&deploy_dir().join("systemd/draco.service"));
    let directives: BTreeSet<&str> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for wanted in [
        "ExecStart=/usr/local/bin/draco --data-dir /var/lib/draco run",
        "DynamicUser=yes",
        "StateDirectory=draco",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "UMask=0077",
        "Restart=on-failure",
    ] {
        assert!(directives.contains(wanted), "the unit lacks {wanted}");
    }
    let stop: u64 = directives
        .iter()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop > 10,
        "TimeoutStopSec must exceed server.shutdown_grace_secs (10)"
    );

    // Every credential is read through a *_file variable from
    // $CREDENTIALS_DIRECTORY (%d); the variables are ones Draco knows,
    // which `config check` proves with the credentials as files.
    let credentials = tempfile::tempdir().expect("a temporary directory");
    let environment = unit_environment(&unit);
    assert!(environment.len() >= 5, "{environment:?}");
    let draco = Draco::new();
    let mut command = draco.command();
    command
        .env(
            "DRACO_DATABASE_URL",
            "postgres://draco@127.0.0.1:5432/draco",
        )
        .env("DRACO_GITOPS_BACKEND", "github")
        .env("DRACO_GITOPS_GITHUB_REPOSITORY", "acme/cloud-remediations");
    for (name, value) in &environment {
        if name == "DRACO_CONFIG" {
            continue;
        }
        assert!(!SECRET_VARIABLES.contains(&name.as_str()), "{name} literal");
        let file = value
            .strip_prefix("%d/")
            .unwrap_or_else(|| panic!("{name} names a credential under %d: {value}"));
        assert!(
            unit.contains(&format!("LoadCredential={file}:")),
            "{name} reads credential {file}, which the unit loads"
        );
        let content = if file == "master-key" {
            DUMMY_SECRETS[1].1
        } else {
            "dummy-credential-0123456789abcdef"
        };
        let path = credentials.path().join(file);
        std::fs::write(&path, content).expect("write a dummy credential");
        command.env(name, path);
    }
    let out = command
        .args(["config", "check"])
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("# configuration is valid"), "{stdout}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return skip("no systemd-analyze (Debian package systemd)");
    }
    // `verify` insists that ExecStart's binary exists: point it at the one
    // just built, in a copy of the unit under the same name.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let unit = read(&deploy_dir().join("systemd/draco.service")).replace(
        "ExecStart=/usr/local/bin/draco ",
        &format!("ExecStart={BIN} "),
    );
    let path = dir.path().join("draco.service");
    std::fs::write(&path, unit).expect("write the unit copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !stderr.contains("draco.service"),
        "systemd-analyze warns about the unit: {stderr}"
    );
}

/// The Dockerfile's stages: `(base image, instructions)` from each `FROM`,
/// with `\`-continued lines joined and comments dropped.
fn dockerfile_stages() -> Vec<(String, Vec<String>)> {
    let text = read(&deploy_dir().join("Dockerfile"));
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for instruction in joined.into_iter().filter(|i| !i.trim().is_empty()) {
        if let Some(from) = instruction.strip_prefix("FROM ") {
            let image = from.split_whitespace().next().unwrap_or_default();
            stages.push((image.to_owned(), Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push(instruction);
        }
    }
    stages
}

#[test]
fn the_dockerfile_builds_locked_with_real_features_and_runs_as_non_root() {
    let manifest: toml::Table = toml::from_str(&read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
    ))
    .expect("Cargo.toml parses");
    let features: BTreeSet<String> = manifest
        .get("features")
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let rust_version = manifest["package"]["rust-version"]
        .as_str()
        .expect("rust-version");

    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let (builder, build) = &stages[0];
    assert!(
        builder.starts_with(&format!("rust:{rust_version}")),
        "the build image {builder} is Rust {rust_version}, as Cargo.toml's rust-version"
    );
    let builds: Vec<&String> = build.iter().filter(|i| i.contains("cargo build")).collect();
    assert!(!builds.is_empty(), "the build stage runs cargo build");
    for instruction in builds {
        for command in instruction
            .split("&&")
            .filter(|c| c.contains("cargo build"))
        {
            let words: Vec<&str> = command.split_whitespace().collect();
            assert!(
                words.contains(&"--locked") && words.contains(&"--release"),
                "{command}"
            );
            for (i, word) in words.iter().enumerate() {
                let named = match *word {
                    "--features" | "-F" => words.get(i + 1).copied().unwrap_or_default(),
                    w => w.strip_prefix("--features=").unwrap_or(""),
                };
                for feature in named.split([',', ' ']).filter(|f| !f.is_empty()) {
                    assert!(
                        features.contains(feature),
                        "no feature {feature} in Cargo.toml"
                    );
                }
            }
        }
    }

    let (runtime, run) = stages.last().expect("a runtime stage");
    assert!(runtime.starts_with("gcr.io/distroless/"), "{runtime}");
    let user = run
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("the runtime stage names its user");
    let uid = user.split(':').next().unwrap_or_default().trim();
    assert!(
        uid != "root" && uid != "0" && !uid.is_empty(),
        "USER {user}"
    );
    assert!(
        !run.iter().any(|i| i.starts_with("RUN ")),
        "no shell at run time"
    );
    let healthcheck = run
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    assert!(
        healthcheck
            .contains(r#"CMD ["draco", "healthcheck", "--url", "http://127.0.0.1:8081/healthz"]"#),
        "{healthcheck}"
    );
    assert!(run.iter().any(|i| i == r#"ENTRYPOINT ["draco"]"#));
    assert!(run.iter().any(|i| i == r#"CMD ["run"]"#));
    assert!(
        run.iter()
            .any(|i| i.starts_with("EXPOSE ") && i.contains("8080") && i.contains("8081"))
    );
    assert!(run.iter().any(|i| i.starts_with("VOLUME ")));
}

#[test]
fn draco_healthcheck_exits_0_on_a_live_daemon_and_1_on_a_dead_one() {
    let draco = Draco::new();
    let (main, health) = (free_port(), free_port());
    let mut child = draco
        .command_on_demo_fixtures()
        .env("DRACO_SERVER_LISTEN", format!("127.0.0.1:{main}"))
        .env("DRACO_SERVER_HEALTH_LISTEN", format!("127.0.0.1:{health}"))
        .args(["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let url = format!("http://127.0.0.1:{health}/healthz");
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let out = draco
            .command()
            .args(["healthcheck", "--url", &url])
            .output()
            .expect("draco runs");
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().expect("exits").code(), Some(0));
    assert_eq!(healthy.status.code(), Some(0), "{}", describe(&healthy));

    // The daemon is gone: the same probe fails with exit 1 (Docker's
    // "unhealthy"; 2 is reserved there) and says why.
    let dead = draco
        .command()
        .args(["healthcheck", "--url", &url])
        .output()
        .expect("draco runs");
    assert_eq!(dead.status.code(), Some(1), "{}", describe(&dead));
    assert!(String::from_utf8_lossy(&dead.stderr).contains("cannot connect"));
}
