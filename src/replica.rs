//! This process's name among the replicas that share one database: what
//! holds a lease (`store::leases`) and claims a webhook delivery.

use std::sync::OnceLock;

/// `<host>-<pid>-<8 hex>`, fixed for the life of the process. The host is
/// `$HOSTNAME` (a Kubernetes pod's name) or the kernel's host name; the
/// random part tells a restarted process from the one it replaces, which
/// may have had the same host and process id (PID 1 in a container).
pub fn id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "draco".to_owned());
        let mut random = [0u8; 4];
        // Unique enough without: the host and pid already tell replicas apart.
        let _ = getrandom::fill(&mut random);
        format!("{host}-{}-{}", std::process::id(), hex::encode(random))
    })
}
