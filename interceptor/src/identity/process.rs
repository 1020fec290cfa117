//! Same-host callers named by the kernel (issue 23): what the capture saw
//! when the process connected ([`ProcessFacts`]), read as a person would
//! name it (user, systemd unit, container, pod), matched against the
//! `[[identity.process.rules]]`.
//!
//! Trust: the facts come from the kernel at connect(2), not from the
//! client, so a process cannot claim another's unit or user. They name the
//! opener of the socket: one passed on with SCM_RIGHTS still carries its
//! opener's record, an exec after connect keeps the old one, and root can
//! do anything (see docs/threat-model.md).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    config::{ProcessIdentity, ProcessRule, glob},
    conn::ProcessFacts,
};

/// The issuer of callers named by a process rule: `Mcp::User` ids read
/// `process|<subject>`. No OIDC issuer (an http(s) URL) or certificate
/// issuer DN (always `k=v`) can spell it.
pub const ISSUER: &str = "process";

/// Where a cgroup path puts a process: its systemd unit, and the container
/// and Kubernetes pod when it is in one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The innermost `.service` or `.scope` unit (`ai-agent.service`).
    pub unit: Option<String>,
    /// The container id (docker, containerd, CRI-O, podman).
    pub container: Option<String>,
    /// The Kubernetes pod UID.
    pub pod: Option<String>,
}

/// Runtime prefixes of systemd scope names that hold a container id.
const SCOPE_RUNTIMES: &[&str] = &["docker-", "cri-containerd-", "crio-", "libpod-"];

/// The unit, container and pod a cgroup v2 path names: systemd's
/// `/system.slice/ai-agent.service`, `.../docker-<id>.scope`,
/// `.../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`, and
/// the cgroupfs driver's `/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`.
pub fn placement(cgroup: &str) -> Placement {
    let mut out = Placement::default();
    let mut parent = "";
    for c in cgroup.split('/').filter(|c| !c.is_empty()) {
        if c.ends_with(".service") || c.ends_with(".scope") {
            out.unit = Some(c.to_string());
        }
        if let Some(id) = c.strip_suffix(".scope").and_then(|s| {
            SCOPE_RUNTIMES
                .iter()
                .find_map(|p| s.strip_prefix(p))
                .filter(|id| is_container_id(id))
        }) {
            out.container = Some(id.to_string());
        } else if is_container_id(c) && (parent == "docker" || out.pod.is_some()) {
            out.container = Some(c.to_string());
        }
        if let Some(pod) = pod_uid(c) {
            out.pod = Some(pod);
        }
        parent = c;
    }
    out
}

/// A container id: 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The pod UID in `kubepods-<qos>-pod<uid>.slice` (systemd driver, `-` of
/// the UID written `_`) or `pod<uid>` (cgroupfs driver).
fn pod_uid(c: &str) -> Option<String> {
    let raw = match c.strip_suffix(".slice") {
        Some(s) if s.starts_with("kubepods") => s.rsplit_once("-pod")?.1,
        Some(_) => return None,
        None => c.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(uid)
}

/// A same-host caller as identity, policy and the refusal name it: the
/// kernel's facts, the user name of its uid and its placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// What the kernel captured at connect time.
    pub facts: Arc<ProcessFacts>,
    /// The uid's user name; `None` when the system has no entry for it.
    pub user: Option<String>,
    /// Unit, container and pod, from the cgroup path.
    pub placement: Placement,
}

impl Seen {
    /// The facts with `user` as the uid's name.
    pub fn new(facts: Arc<ProcessFacts>, user: Option<String>) -> Self {
        let placement = facts
            .cgroup_path
            .as_deref()
            .map(placement)
            .unwrap_or_default();
        Self {
            facts,
            user,
            placement,
        }
    }

    /// Whether every condition `rule` sets holds for this process.
    pub fn matches(&self, rule: &ProcessRule) -> bool {
        let f = &self.facts;
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        eq(&rule.user, self.user.as_deref())
            && rule.uid.is_none_or(|u| u == f.uid)
            && eq(&rule.unit, self.placement.unit.as_deref())
            && eq(&rule.exe, f.exe_path.as_deref())
            && rule
                .cgroup
                .as_deref()
                .is_none_or(|g| f.cgroup_path.as_deref().is_some_and(|p| glob(g, p)))
            && rule.exe_sha256.as_deref().is_none_or(|h| {
                f.exe_sha256
                    .as_deref()
                    .is_some_and(|have| have.eq_ignore_ascii_case(h))
            })
    }

    /// The record policy and the refusal show: pid, uid, user, unit,
    /// cgroup, exe, its hash, container and pod (absent ones null).
    pub fn summary(&self) -> Value {
        let f = &self.facts;
        json!({
            "pid": f.pid,
            "uid": f.uid,
            "user": self.user,
            "comm": f.comm,
            "unit": self.placement.unit,
            "cgroup": f.cgroup_path,
            "exe": f.exe_path,
            "exe_sha256": f.exe_sha256,
            "container": self.placement.container,
            "pod": self.placement.pod,
        })
    }

    /// One line naming the process: `pid 42 (python3), user ci (uid
    /// 1001), unit ci.service, exe /usr/bin/python3`.
    pub fn describe(&self) -> String {
        let f = &self.facts;
        let user = self.user.as_deref().unwrap_or("?");
        let mut s = format!("pid {} ({}), user {user} (uid {})", f.pid, f.comm, f.uid);
        match (&self.placement.unit, &f.cgroup_path) {
            (Some(u), _) => s.push_str(&format!(", unit {u}")),
            (None, Some(c)) => s.push_str(&format!(", cgroup {c}")),
            (None, None) => {}
        }
        s.push_str(&format!(", exe {}", f.exe_path.as_deref().unwrap_or("?")));
        s
    }

    /// A rule that would admit this process and no process of another
    /// unit (or cgroup), user or executable: ready to paste into the
    /// config, subject named after the service or the user.
    pub fn suggested_rule(&self) -> String {
        let f = &self.facts;
        // A login session's or a container's scope changes with every
        // session or container: the cgroup pattern names those better.
        let service = self
            .placement
            .unit
            .clone()
            .filter(|u| u.ends_with(".service") && !u.starts_with("user@"));
        let subject = match (&service, &self.user) {
            (Some(u), _) => format!("svc:{}", u.trim_end_matches(".service")),
            (None, Some(n)) => format!("user:{n}"),
            (None, None) => format!("uid:{}", f.uid),
        };
        let rule = ProcessRule {
            subject,
            groups: Vec::new(),
            user: self.user.clone(),
            uid: self.user.is_none().then_some(f.uid),
            cgroup: if service.is_none() {
                f.cgroup_path.clone().filter(|c| c != "/")
            } else {
                None
            },
            unit: service,
            exe: f.exe_path.clone(),
            exe_sha256: None,
        };
        let body = toml::to_string(&rule).unwrap_or_default();
        format!("[[identity.process.rules]]\n{body}")
    }
}

/// uid -> user name, from the system's passwd through NSS
/// (`getpwuid_r`), kept `ttl`. NSS may ask a directory (sssd, LDAP) and
/// block, so a miss is looked up on tokio's blocking pool, never on a
/// runtime thread, and each uid at most once per `ttl`.
pub struct UserNames {
    ttl: Duration,
    names: Mutex<HashMap<u32, (Option<String>, Instant)>>,
}

/// The most uids kept; past it the cache starts again (a host has few).
const MAX_USERS: usize = 4096;

impl UserNames {
    /// An empty cache keeping names `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The name of `uid`, looked up when not known or older than the ttl.
    pub async fn name(&self, uid: u32) -> Option<String> {
        if let Some((n, at)) = self.lock().get(&uid)
            && at.elapsed() < self.ttl
        {
            return n.clone();
        }
        let found = tokio::task::spawn_blocking(move || lookup(uid))
            .await
            .ok()
            .flatten();
        let mut names = self.lock();
        if names.len() >= MAX_USERS {
            names.clear();
        }
        names.insert(uid, (found.clone(), Instant::now()));
        found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Option<String>, Instant)>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `getpwuid_r` (nix): `None` when the system has no such user or the
/// lookup failed.
fn lookup(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The rules of `[identity.process]` and the user-name cache they read.
pub struct ProcessRules {
    cfg: ProcessIdentity,
    users: UserNames,
}

impl ProcessRules {
    /// The rules of one config.
    pub fn new(cfg: &ProcessIdentity) -> Self {
        Self {
            cfg: cfg.clone(),
            users: UserNames::new(Duration::from_secs(cfg.user_cache_seconds)),
        }
    }

    /// The connecting process as identity names it.
    pub async fn seen(&self, facts: &Arc<ProcessFacts>) -> Seen {
        let user = self.users.name(facts.uid).await;
        Seen::new(facts.clone(), user)
    }

    /// The first rule admitting `seen`.
    pub fn admit(&self, seen: &Seen) -> Option<&ProcessRule> {
        self.cfg.rules.iter().find(|r| seen.matches(r))
    }
}

#[cfg(test)]
mod tests;
