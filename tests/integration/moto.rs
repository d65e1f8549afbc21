//! A real AWS emulator for the tests: moto in server mode, installed into a
//! virtualenv on first use and started on a free loopback port per test.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::free_port;

/// The moto release the tests were written against.
const MOTO: &str = "moto[server]==5.2.5";

/// `moto_server` from `$MOTO_SERVER`, or from a virtualenv under the target dir,
/// created once per test run.
fn moto_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Ok(path) = std::env::var("MOTO_SERVER") {
                return PathBuf::from(path);
            }
            let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto-venv");
            let binary = venv.join("bin/moto_server");
            if !binary.exists() {
                let made = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .expect("python3 runs");
                assert!(
                    made.success(),
                    "cannot create a virtualenv at {}",
                    venv.display()
                );
                let installed = Command::new(venv.join("bin/pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check", MOTO])
                    .status()
                    .expect("pip runs");
                assert!(
                    installed.success(),
                    "cannot install {MOTO} (the tests need PyPI once, or MOTO_SERVER set)"
                );
            }
            binary
        })
        .clone()
}

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(moto_server_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Otherwise DescribeSnapshots lists ~1,300 foreign snapshots: moto ignores OwnerIds=self.
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if moto.get("/moto-api/").is_some() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto did not answer on {} within 30 s", moto.endpoint);
    }

    /// A bare HTTP/1.0 GET, enough to see whether the server is up.
    fn get(&self, path: &str) -> Option<String> {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        use std::io::Write;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.starts_with("HTTP/1.").then_some(response)
    }

    /// POSTs JSON to moto's own API (e.g. to queue Cost Explorer results).
    pub fn post_json(&self, path: &str, body: &str) {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect to moto");
        use std::io::Write;
        write!(
            stream,
            "POST {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write to moto");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read from moto");
        let status = response.split_whitespace().nth(1).unwrap_or_default();
        assert!(status.starts_with('2'), "moto refused {path}: {response}");
    }

    /// An SDK configuration pointing at this emulator, with throw-away credentials.
    pub async fn sdk(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// Environment for a `draco` process that should talk to this emulator only.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
