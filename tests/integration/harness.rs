//! `spawn_app`: the whole application in this test process, on a fresh data
//! directory, serving HTTP on a free loopback port. Later tests (webhooks,
//! approval links) add their stand-ins to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use draco::compose::{App, SourceChoice};
use draco::config;
use draco::server;
use draco::sources::fixtures::FixtureSet;
use tempfile::TempDir;

pub struct TestApp {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    server: Option<server::Running>,
    _dir: TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("the server answers")
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.server.take() {
            running.shutdown().await.expect("the server stops cleanly");
        }
    }
}

/// The demo fixtures as the source, defaults for everything else (`env`
/// sets `DRACO_*` keys), no network beyond loopback.
pub async fn spawn_app(env: &[(&str, &str)]) -> TestApp {
    spawn_app_with(env, server::Limits::default()).await
}

/// [`spawn_app`] with the server's [`server::Limits`] set.
pub async fn spawn_app_with(env: &[(&str, &str)], limits: server::Limits) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let loaded = config::load(None, &env).expect("the test configuration loads");
    let app = App::build(
        loaded,
        dir.path().join("data"),
        SourceChoice::Fixtures(FixtureSet::EmbeddedDemo),
    )
    .await
    .expect("the application builds");
    let running = server::spawn_with(app.clone(), ([127, 0, 0, 1], 0).into(), limits)
        .await
        .expect("the server binds a loopback port");
    TestApp {
        addr: running.addr,
        app,
        http: reqwest::Client::new(),
        server: Some(running),
        _dir: dir,
    }
}
