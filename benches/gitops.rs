//! Opening local change requests: `cargo bench --bench gitops`.
//! Target (issue 12): at most 2 ms per change request, so a first scan of a
//! large estate (thousands of findings) is not spent spawning git: each
//! open writes its blobs, tree, commit and branch in-process.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use draco::gitops::local::LocalGit;
use draco::gitops::{ChangeFile, ChangeRequests, NewChangeRequest};
use draco::redact::Redactor;

/// A change request shaped like the scan's: a script, its rollback, the
/// evidence and a description of a few kilobytes.
fn request(n: u64) -> NewChangeRequest {
    let dir = format!("remediations/sg_open_admin_port-{n:012x}");
    NewChangeRequest {
        branch: format!("draco/sg-open-admin-port-{n:012x}"),
        title: format!("[draco] Revoke internet ingress to 22 on sg-{n:017x}"),
        body: "A description of a few kilobytes.\n".repeat(80),
        files: vec![
            ChangeFile {
                path: format!("{dir}/remediation.sh"),
                contents: format!(
                    "#!/usr/bin/env bash\nset -euo pipefail\naws ec2 revoke-security-group-ingress --group-id sg-{n:017x} --protocol tcp --port 22 --cidr 0.0.0.0/0\n"
                ),
                executable: true,
            },
            ChangeFile {
                path: format!("{dir}/rollback.sh"),
                contents: format!(
                    "#!/usr/bin/env bash\nset -euo pipefail\naws ec2 authorize-security-group-ingress --group-id sg-{n:017x} --protocol tcp --port 22 --cidr 0.0.0.0/0\n"
                ),
                executable: true,
            },
            ChangeFile {
                path: format!("{dir}/EVIDENCE.md"),
                contents: format!("# evidence {n}\n{}", "- a fact\n".repeat(60)),
                executable: false,
            },
        ],
        labels: vec!["draco:high".to_owned()],
        chart: None,
    }
}

fn open(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let git = runtime
        .block_on(LocalGit::open_or_init(&dir.path().join("remediations.git")))
        .expect("the repository");
    let redactor = Redactor::default();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("local_change_requests");
    group.throughput(Throughput::Elements(1));
    group.sample_size(50);
    group.bench_function("open_one", |b| {
        b.iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let request = redactor.publishable(&request(n), &[]).expect("publishable");
            let opened = runtime.block_on(git.open(&request)).expect("opened");
            assert!(opened.created);
        });
    });
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
