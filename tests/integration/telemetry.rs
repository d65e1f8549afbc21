//! No telemetry, proven: every address Draco tries to reach is traced with
//! `strace -f` (`connect`, `sendto`, `sendmsg`, `sendmmsg`: every way a
//! process can name a destination on a socket) and checked.
//!
//! - With no provider configured, `draco demo` and then `draco run` inside
//!   a network namespace with no route out may reach nothing but loopback,
//!   AF_UNIX and AF_NETLINK sockets; DNS to any resolver, even on
//!   loopback, is a failure. The trace must show the loopback health
//!   request made in the same namespace (so strace did see connects), and a
//!   control run with a model pointed at 10.255.255.1 must be caught (so
//!   the check can fail).
//! - With GitHub, Twilio and a model configured (stand-ins on loopback),
//!   `draco run --scan-on-start` contacts exactly those three addresses.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::approvals_sms::TwilioStandIn;
use crate::github::{TOKEN, github_env};
use crate::github_standin::StandIn;
use crate::model_advice::{KEY, Model, stand_in};
use crate::support::{
    BIN, Draco, demo_fixtures, describe, ensure_tool, free_port, network_namespace,
};

/// The system calls that name a destination: a socket's peer is set by
/// `connect`, or given with each datagram by the three send calls.
const TRACED: &str = "trace=connect,sendto,sendmsg,sendmmsg";

/// One socket address a traced process named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contact {
    syscall: String,
    /// `AF_INET`, `AF_UNIX`, …, or `?` when strace showed no address.
    family: String,
    /// For `AF_INET` and `AF_INET6`.
    addr: Option<SocketAddr>,
    line: String,
}

impl Contact {
    /// Loopback (127.0.0.0/8, ::1, and IPv4-mapped loopback) but not DNS,
    /// or a local socket family. Anything strace could not show is not.
    fn is_local(&self) -> bool {
        match self.family.as_str() {
            // AF_UNSPEC on `connect` dissolves a socket's association.
            "AF_UNIX" | "AF_LOCAL" | "AF_NETLINK" | "AF_UNSPEC" => true,
            "AF_INET" | "AF_INET6" => self.addr.is_some_and(|a| {
                let loopback = match a.ip() {
                    IpAddr::V4(v4) => v4.is_loopback(),
                    IpAddr::V6(v6) => {
                        v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                    }
                };
                loopback && a.port() != 53
            }),
            _ => false,
        }
    }
}

/// The text after `key` up to the next `"`, for `key` ending in a quote.
fn quoted_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// The number in `htons(N)` after `key`.
fn port_after(text: &str, key: &str) -> Option<u16> {
    let start = text.find(key)? + key.len();
    let len = text[start..].find(')')?;
    text[start..start + len].parse().ok()
}

/// Every socket address named by a traced call in strace's output (`-f`:
/// each line starts with the pid). Lines of other calls, exits and signals
/// are skipped; a `<... resumed>` line repeats no address (strace prints
/// the arguments before a call blocks). A traced call whose address strace
/// printed as a bare pointer is kept with family `?`.
fn contacts(trace: &str) -> Vec<Contact> {
    let mut found = Vec::new();
    for line in trace.lines() {
        let call = line
            .trim_start_matches(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .trim_start();
        let Some((syscall, args)) = call.split_once('(') else {
            continue;
        };
        if !["connect", "sendto", "sendmsg", "sendmmsg"].contains(&syscall) {
            continue;
        }
        let mut named = false;
        for (at, _) in args.match_indices("sa_family=") {
            named = true;
            let rest = &args[at + "sa_family=".len()..];
            let family: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let addr = match family.as_str() {
                "AF_INET" => quoted_after(rest, "inet_addr(\"")
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .zip(port_after(rest, "sin_port=htons("))
                    .map(|(ip, port)| SocketAddr::new(ip, port)),
                "AF_INET6" => quoted_after(rest, "inet_pton(AF_INET6, \"")
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .zip(port_after(rest, "sin6_port=htons("))
                    .map(|(ip, port)| SocketAddr::new(ip, port)),
                _ => None,
            };
            found.push(Contact {
                syscall: syscall.to_owned(),
                family,
                addr,
                line: line.to_owned(),
            });
        }
        // `connect` always names an address; the send calls only on an
        // unconnected socket (`NULL`, `msg_name=NULL`).
        if !named && syscall == "connect" {
            found.push(Contact {
                syscall: syscall.to_owned(),
                family: "?".to_owned(),
                addr: None,
                line: line.to_owned(),
            });
        }
    }
    found
}

fn foreign(contacts: &[Contact]) -> Vec<&Contact> {
    contacts.iter().filter(|c| !c.is_local()).collect()
}

#[test]
fn the_trace_parser_tells_loopback_and_local_sockets_from_the_rest() {
    let trace = r#"101 connect(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
101 connect(4, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
102 sendto(5, [{nlmsg_len=20, nlmsg_type=RTM_GETLINK}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20
102 sendto(6, "GET / HTTP/1.1\r\n", 16, MSG_NOSIGNAL, NULL, 0) = 16
103 connect(7, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>
103 <... connect resumed>) = 0
104 connect(8, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("10.255.255.1")}, 16) = -1 ENETUNREACH (Network is unreachable)
104 connect(9, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0
105 sendmmsg(9, [{msg_hdr={msg_name={sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:4860:4860::8888", &sin6_addr), sin6_scope_id=0}, msg_namelen=28}}], 1, 0) = 1
106 connect(10, 0x7ffd5a3c1e20, 16) = -1 EFAULT (Bad address)
107 connect(11, {sa_family=AF_INET6, sin6_port=htons(8443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0
101 +++ exited with 0 +++
"#;
    let all = contacts(trace);
    assert_eq!(all.len(), 9, "{all:#?}");
    let bad: Vec<String> = foreign(&all)
        .iter()
        .map(|c| {
            c.addr
                .map_or_else(|| c.family.clone(), |a| format!("{} {a}", c.syscall))
        })
        .collect();
    assert_eq!(
        bad,
        [
            "connect 10.255.255.1:80",
            "connect 127.0.0.53:53",
            "sendmmsg [2001:4860:4860::8888]:53",
            "?",
        ]
    );
}

/// `strace` and `ip` (to bring the namespace's loopback up) are here, and a
/// network namespace can be made; `None` when the test is skipped.
fn tracing_in_a_namespace() -> Option<Command> {
    if !(ensure_tool("strace", "-V", "strace") && ensure_tool("ip", "-V", "iproute2")) {
        return None;
    }
    network_namespace()
}

/// In the namespace: loopback up, `draco demo`, then `draco run
/// --scan-on-start` for a few seconds, a `GET /healthz` to it over
/// loopback, SIGTERM. Prints `health: <status line>` and `daemon exit: N`.
const IN_NAMESPACE: &str = r#"
set -u
draco=$1; data=$2; port=$3
ip link set lo up || { echo "cannot bring the loopback up" >&2; exit 90; }
"$draco" --data-dir "$data" demo >/dev/null || { echo "draco demo failed" >&2; exit 91; }
"$draco" --data-dir "$data" run --scan-on-start &
daemon=$!
health=""
for _ in $(seq 1 600); do
  health=$( { exec 3<>"/dev/tcp/127.0.0.1/$port" &&
    printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
    IFS= read -r line <&3 && printf '%s' "$line"; } 2>/dev/null ) && break
  sleep 0.05
done
echo "health: $health"
sleep 4
kill -TERM "$daemon"
for _ in $(seq 1 400); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
kill -KILL "$daemon" 2>/dev/null
wait "$daemon"
echo "daemon exit: $?"
"#;

/// Runs [`IN_NAMESPACE`] under `strace -f` in a new network namespace with
/// `env` added to a clean Draco environment (demo fixtures as the source,
/// the server on `127.0.0.1:port`). Returns stdout, the whole output for
/// messages, and the contacts traced.
fn demo_and_daemon_traced(
    namespace: Command,
    draco: &Draco,
    env: &[(&str, &str)],
) -> (String, String, Vec<Contact>) {
    let port = free_port();
    let trace = draco.path("strace.log");
    let mut cmd = namespace;
    cmd.arg("strace")
        .args(["-f", "-e", TRACED, "-o"])
        .arg(&trace)
        .args(["bash", "-c", IN_NAMESPACE, "bash", BIN])
        .arg(draco.data_dir())
        .arg(port.to_string());
    for (key, _) in std::env::vars() {
        if key.starts_with("DRACO_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("DRACO_LOG", "warn")
        .env("DRACO_CONFIG", draco.path("approvers.toml"))
        .env("DRACO_SOURCE_KIND", "fixtures")
        .env("DRACO_SOURCE_FIXTURES_DIR", demo_fixtures())
        .env("DRACO_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("DRACO_SERVER_SHUTDOWN_GRACE_SECS", "5")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = cmd.output().expect("unshare runs");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        format!(
            "{}\n--- trace ({} lines)\n{}",
            describe(&out),
            text.lines().count(),
            text.lines().take(200).collect::<Vec<_>>().join("\n")
        ),
        contacts(&text),
    )
}

#[test]
fn demo_and_daemon_without_providers_reach_nothing_but_loopback() {
    let Some(namespace) = tracing_in_a_namespace() else {
        return;
    };
    let draco = Draco::new();
    let (stdout, output, contacts) = demo_and_daemon_traced(namespace, &draco, &[]);
    assert!(
        stdout.contains("health: HTTP/1.1 200"),
        "the daemon answered its health request in the namespace: {output}"
    );
    assert!(
        stdout.contains("daemon exit: 0"),
        "the daemon stopped cleanly: {output}"
    );
    assert_eq!(
        draco.findings().len(),
        crate::support::PLANTED.len(),
        "demo and daemon scanned: {output}"
    );
    // Not vacuous: the health request's loopback connect is in the trace.
    assert!(
        contacts
            .iter()
            .any(|c| c.syscall == "connect" && c.addr.is_some_and(|a| a.ip().is_loopback())),
        "strace saw no loopback connect, so it could not have seen others: {contacts:#?}\n{output}"
    );
    let foreign = foreign(&contacts);
    assert!(
        foreign.is_empty(),
        "contacts beyond loopback: {foreign:#?}\n{output}"
    );
}

#[test]
fn the_telemetry_check_catches_a_binary_that_reaches_out() {
    let Some(namespace) = tracing_in_a_namespace() else {
        return;
    };
    let draco = Draco::new();
    // A model "provider" at a private address: nothing routes there in the
    // namespace, but the attempt is made, traced and must be caught.
    let (_, output, contacts) = demo_and_daemon_traced(
        namespace,
        &draco,
        &[
            ("DRACO_LLM_PROVIDER", "openai"),
            ("DRACO_LLM_BASE_URL", "http://10.255.255.1/v1"),
            ("DRACO_LLM_MODEL", "control"),
            ("DRACO_LLM_API_KEY", "control-key"),
            ("DRACO_LLM_MAX_ATTEMPTS", "1"),
            ("DRACO_LLM_TIMEOUT_SECS", "1"),
        ],
    );
    let caught: BTreeSet<String> = foreign(&contacts)
        .iter()
        .filter_map(|c| c.addr.map(|a| a.to_string()))
        .collect();
    assert_eq!(
        caught,
        BTreeSet::from(["10.255.255.1:80".to_owned()]),
        "{contacts:#?}\n{output}"
    );
}

/// The pid of a process whose parent is `parent` (from `/proc/*/stat`).
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: the name may hold spaces and parentheses.
            let after_name = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
}

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-for-tests-0123";

fn providers_config(path: &Path, port: u16, twilio: &str) {
    std::fs::write(
        path,
        format!(
            r#"
[source]
kind = "fixtures"
fixtures_dir = {fixtures:?}

[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
shutdown_grace_secs = 5

[twilio]
api_url = "{twilio}"
account_sid = "{ACCOUNT_SID}"
from = "+15550001111"

[approval]
notify = ["sms"]
quorum = {{ critical = 1, high = 1, medium = 1, low = 1 }}

[[approvers]]
name = "Ada Lovelace"
phone = "+15551234567"
"#,
            fixtures = demo_fixtures().display().to_string(),
        ),
    )
    .expect("write the configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_providers_contacts_exactly_the_configured_addresses() {
    if !ensure_tool("strace", "-V", "strace") {
        return;
    }
    let github = StandIn::start(TOKEN).await;
    let twilio = TwilioStandIn::start().await;
    let model = stand_in(Model::Diligent).await;
    let draco = Draco::new();
    let port = free_port();
    let config = draco.path("draco.toml");
    providers_config(&config, port, &twilio.url());
    let trace = draco.path("strace.log");

    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-e", TRACED, "-o"])
        .arg(&trace)
        .arg(BIN)
        .arg("--data-dir")
        .arg(draco.data_dir())
        .args(["run", "--scan-on-start"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("DRACO_") {
            cmd.env_remove(key);
        }
    }
    let model_url = format!("{}/v1", model.uri());
    cmd.envs(github_env(&github))
        .env("DRACO_LOG", "warn")
        .env("DRACO_CONFIG", &config)
        .env("DRACO_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("DRACO_LLM_PROVIDER", "openai")
        .env("DRACO_LLM_BASE_URL", &model_url)
        .env("DRACO_LLM_MODEL", "gpt-4.1-mini")
        .env("DRACO_LLM_API_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut strace = cmd.spawn().expect("strace starts");

    // Until the scan has asked the model, opened pull requests and texted
    // the approver, and a few seconds more.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let asked = !model
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty();
        if asked && !github.pulls().is_empty() && !twilio.sent().is_empty() {
            break;
        }
        if Instant::now() > deadline || strace.try_wait().ok().flatten().is_some() {
            let _ = strace.kill();
            let out = strace.wait_with_output().expect("output");
            panic!(
                "the daemon did not use all three providers: model {asked}, pulls {}, texts {}\n{}",
                github.pulls().len(),
                twilio.sent().len(),
                describe(&out)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGTERM to the daemon itself: strace, signalled, would detach and
    // leave it running untraced.
    let daemon = child_of(strace.id()).expect("the daemon runs under strace");
    let signalled = Command::new("kill")
        .args(["-TERM", &daemon.to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let out = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while strace.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = strace.kill();
        strace.wait_with_output().expect("output")
    })
    .await
    .expect("the waiting thread");
    let text = std::fs::read_to_string(&trace).expect("the trace");
    let all = contacts(&text);

    let configured: BTreeSet<SocketAddr> = [github.addr, twilio.addr, *model.address()].into();
    let contacted: BTreeSet<SocketAddr> = all.iter().filter_map(|c| c.addr).collect();
    assert_eq!(
        contacted,
        configured,
        "addresses contacted (left) and configured (right): GitHub {}, Twilio {}, model {}\n{}",
        github.addr,
        twilio.addr,
        model.address(),
        describe(&out)
    );
    let unexplained: Vec<&Contact> = all
        .iter()
        .filter(|c| c.addr.is_none() && !c.is_local())
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:#?}");
}
