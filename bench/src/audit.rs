//! API requests by user, from the API server's audit log.
//!
//! `apiserver_request_total` has no user label, so it cannot tell the
//! operator's requests from the harness's. The benchmark's control plane
//! logs, at `Metadata` level, every request of the two users being measured
//! (the operator and the raw-floor client) and nothing else; a window of the
//! log is a byte range, taken after the system has settled.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The audit policy: `Metadata` for `users`, nothing for anyone else.
pub fn policy(users: &[&str]) -> String {
    let users = users.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived, ResponseStarted]\nrules:\n\
         - level: Metadata\n  users: [{users}]\n- level: None\n"
    )
}

/// kube-apiserver flags that write the log to `log` with `policy_file`.
pub fn apiserver_args(policy_file: &Path, log: &Path) -> Vec<String> {
    vec![
        format!("--audit-policy-file={}", policy_file.display()),
        format!("--audit-log-path={}", log.display()),
        "--audit-log-format=json".into(),
        // The default rotates at 100 MB, which would move windows' offsets.
        "--audit-log-maxsize=100000".into(),
        "--audit-log-mode=blocking".into(),
    ]
}

pub struct AuditLog {
    path: PathBuf,
}

/// Requests of one user in one window, by `verb resource[/subresource]`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub total: u64,
    /// Answered 409 Conflict (a stale resourceVersion, or a create of something that exists).
    pub conflicts: u64,
    pub by_verb_resource: BTreeMap<String, u64>,
}

impl Counts {
    /// create, update, patch and delete of `resource` (no subresources).
    pub fn writes(&self, resource: &str) -> u64 {
        ["create", "update", "patch", "delete", "deletecollection"]
            .iter()
            .map(|v| self.get(v, resource))
            .sum()
    }

    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.by_verb_resource
            .get(&format!("{verb} {resource}"))
            .copied()
            .unwrap_or(0)
    }

    /// The largest entries, for the table's notes.
    pub fn summary(&self, top: usize) -> String {
        if self.total == 0 {
            return "none".into();
        }
        let mut v: Vec<_> = self.by_verb_resource.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .take(top)
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl AuditLog {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The current end of the log: one end of a window.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// `user`'s requests logged between two marks.
    pub fn count(&self, from: u64, to: u64, user: &str) -> anyhow::Result<Counts> {
        let mut out = Counts::default();
        if to <= from {
            return Ok(out);
        }
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::with_capacity((to - from) as usize);
        f.take(to - from).read_to_end(&mut buf)?;
        for line in buf.split(|b| *b == b'\n') {
            let Ok(ev) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if ev["user"]["username"] != user {
                continue;
            }
            let verb = ev["verb"].as_str().unwrap_or("?");
            let obj = &ev["objectRef"];
            let resource = match (obj["resource"].as_str(), obj["subresource"].as_str()) {
                (Some(r), Some(s)) => format!("{r}/{s}"),
                (Some(r), None) => r.to_string(),
                _ => ev["requestURI"].as_str().unwrap_or("?").to_string(),
            };
            out.total += 1;
            if ev["responseStatus"]["code"] == 409 {
                out.conflicts += 1;
            }
            *out.by_verb_resource.entry(format!("{verb} {resource}")).or_default() += 1;
        }
        Ok(out)
    }
}
