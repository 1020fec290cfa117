//! A fleet on one machine: a hub namespace holding moto (S3 and DynamoDB
//! on one endpoint) at [`HUB_IP`], and one namespace per host, each linked
//! to the hub by its own veth pair and routed to [`HUB_IP`] through it, so
//! every host reaches the same endpoint by the same URL and no host
//! reaches another. Each host runs an MCP server (`mcp-peer`) on
//! 127.0.0.1:8080 and an agent in front of it, on the shared policy
//! bundle ([`SOURCE`]), approvals table ([`TABLE`]) and audit bucket
//! (prefix `fleet`). Callers are named by the kernel: root is
//! `svc:caller`; root on the admin socket is the approver `ops-alice`
//! (groups oncall, security). Everything is removed on drop (the
//! namespaces take their links with them).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{
    Agent, NetNs, Proc,
    bundle::{aws_cli, aws_env, ok, output_text, publish},
    peer,
    s3::{BUCKET, KEY_ID, SECRET, boto_in, moto_on},
    wait_for,
    world::admin_cli,
};

/// The AWS APIs' address, the same from every host.
pub const HUB_IP: &str = "10.77.255.1";
/// moto's port on the hub.
pub const MOTO: u16 = 9000;
/// The MCP server's URL on every host (steered to its agent).
pub const URL: &str = "http://127.0.0.1:8080/mcp";
/// The bundle poll interval, seconds.
pub const POLL: u64 = 2;
/// The approvals and grants table.
pub const TABLE: &str = "mcpi-fleet";
/// Where bundles are published.
pub const SOURCE: &str = "s3://audit-e2e/policy/";
const PORT: &str = "[[intercept.ports]]\nport = 8080\n";

/// Every host's policy: the session, echo, `add` held for one on-call
/// approver, `lookup_customer` in retry mode, `query` under a grant.
pub const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("add-needs-oncall")
@approval("oncall")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "add" };

@id("lookup-in-retry-mode")
@approval("oncall")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "lookup_customer" };

@id("query-under-grant")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "query" && !context.grants.isEmpty() };
"#;

/// `policy test` cases every bundle must pass before it is published.
pub const CASES: &str = "[[case]]\nname = \"query needs a grant\"\nsubject = \"svc:caller\"\n\
    method = \"tools/call\"\ntool = \"query\"\nexpect = \"deny\"\n";

/// The hub, its hosts, and the publisher's signing key.
pub struct Fleet {
    /// Where moto runs.
    pub hub: NetNs,
    /// One namespace per host, linked to the hub only.
    pub hosts: Vec<NetNs>,
    root: PathBuf,
    /// The bundle signer's public key (hex), pinned by every agent.
    pub public: String,
    moto: Option<Proc>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Host `i`'s name (0-based `i`): host01, host02, ...
pub fn host_name(i: usize) -> String {
    format!("host{:02}", i + 1)
}

impl Fleet {
    /// A hub and `n` hosts (at most 250), their files under `root`.
    pub fn new(tag: &str, n: usize, root: &Path) -> Self {
        assert!(n <= 250);
        let hub = NetNs::new(&format!("{tag}h"));
        hub.ip(&["addr", "add", &format!("{HUB_IP}/32"), "dev", "lo"]);
        let hosts = (0..n).map(|i| Self::link(&hub, tag, i)).collect();
        Self {
            hub,
            hosts,
            root: root.to_path_buf(),
            public: String::new(),
            moto: None,
        }
    }

    fn link(hub: &NetNs, tag: &str, i: usize) -> NetNs {
        let host = NetNs::new(&format!("{tag}{i}"));
        let dev = format!("f{i}");
        let (name, peer) = (hub.name(), host.name());
        ip(&[
            "link", "add", &dev, "netns", name, "type", "veth", "peer", "name", "tohub", "netns",
            peer,
        ]);
        hub.ip(&["addr", "add", &format!("10.77.{i}.1/24"), "dev", &dev]);
        hub.ip(&["link", "set", &dev, "up"]);
        host.ip(&["addr", "add", &format!("10.77.{i}.2/24"), "dev", "tohub"]);
        host.ip(&["link", "set", "tohub", "up"]);
        let via = format!("10.77.{i}.1");
        host.ip(&["route", "add", &format!("{HUB_IP}/32"), "via", &via]);
        host
    }

    /// `http://HUB_IP:MOTO`.
    pub fn endpoint() -> String {
        format!("http://{HUB_IP}:{MOTO}")
    }

    /// moto on every address of the hub with the test bucket and the
    /// approvals table made, and a bundle signing key.
    pub fn start_aws(&mut self) {
        let hub = Some(self.hub.name());
        self.moto = Some(moto_on(hub, "0.0.0.0", MOTO, &self.root, "fleet"));
        self.create_table();
        let key = self.root.join("signer.key");
        let keygen = aws_cli(
            self.hosts[0].name(),
            &["policy", "keygen", key.to_str().unwrap()],
        );
        self.public = ok(keygen).trim().to_string();
        let publisher = format!(
            "{PORT}[identity]\nallow_anonymous = true\n[audit]\ndir = \"{}\"\n\
             [audit.s3]\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\n\
             [policy]\nbundle_keys = [\"{}\"]\n",
            self.root.join("publisher-audit").display(),
            Self::endpoint(),
            self.public
        );
        std::fs::write(self.root.join("publisher.toml"), publisher).unwrap();
    }

    /// Runs a boto3 snippet in the hub with `s3`, `bucket` and `ddb` (a
    /// DynamoDB client) defined; its stdout.
    pub fn aws(&self, code: &str) -> String {
        let prelude = format!(
            "ddb = boto3.client('dynamodb', endpoint_url='http://127.0.0.1:{MOTO}', \
             region_name='us-east-1', aws_access_key_id='{KEY_ID}', \
             aws_secret_access_key='{SECRET}')\n"
        );
        boto_in(Some(self.hub.name()), MOTO, &(prelude + code))
    }

    /// The approvals and grants table, as deploy/aws/fleet.yaml declares it.
    fn create_table(&self) {
        self.aws(&format!(
            "S = lambda n, t='S': {{'AttributeName': n, 'AttributeType': t}}\n\
             K = lambda n, t: {{'AttributeName': n, 'KeyType': t}}\n\
             P = {{'ProjectionType': 'ALL'}}\n\
             ddb.create_table(TableName='{TABLE}', BillingMode='PAY_PER_REQUEST',\n\
             \x20 AttributeDefinitions=[S('pk'), S('sk'), S('kind'), S('order'), S('digest'), S('created_us', 'N')],\n\
             \x20 KeySchema=[K('pk', 'HASH'), K('sk', 'RANGE')],\n\
             \x20 GlobalSecondaryIndexes=[\n\
             \x20   {{'IndexName': 'by_kind', 'KeySchema': [K('kind', 'HASH'), K('order', 'RANGE')], 'Projection': P}},\n\
             \x20   {{'IndexName': 'by_digest', 'KeySchema': [K('digest', 'HASH'), K('created_us', 'RANGE')], 'Projection': P}}])\n\
             ddb.update_time_to_live(TableName='{TABLE}', TimeToLiveSpecification={{'Enabled': True, 'AttributeName': 'ttl'}})\n"
        ));
    }

    /// Publishes `policy` as bundle `version` (after its `cases`, a
    /// `policy test` file), from host 1.
    pub fn publish(&self, version: &str, policy: &str, cases: &str) {
        let out = publish(
            self.hosts[0].name(),
            &self.root,
            version,
            policy,
            cases,
            SOURCE,
        );
        assert!(
            out.status.success(),
            "publish {version}: {}",
            output_text(&out)
        );
    }

    /// Host `i`'s home directory (config, admin socket, audit).
    pub fn home(&self, i: usize) -> PathBuf {
        self.root.join(host_name(i))
    }

    /// Host `i`: its MCP server and its agent (ready).
    pub fn start(&self, i: usize) -> (Proc, Agent) {
        let (ns, home, aws) = (&self.hosts[i], self.home(i), Self::endpoint());
        std::fs::create_dir_all(&home).unwrap();
        let server = peer::server(ns.name(), "127.0.0.1:8080", &home);
        let tables = format!(
            "{PORT}[policy]\nsource = \"{SOURCE}\"\nbundle_keys = [\"{}\"]\n\
             reload_poll_seconds = {POLL}\n",
            self.public
        );
        let audit = format!(
            "host = \"{}\"\nheartbeat_seconds = 5\n[audit.s3]\nbucket = \"{BUCKET}\"\n\
             prefix = \"fleet\"\nendpoint = \"{aws}\"\nmax_retry_backoff_ms = 500\n",
            host_name(i)
        );
        let sections = format!(
            "[identity.process]\n[[identity.process.rules]]\nuid = 0\nsubject = \"svc:caller\"\n\
             [approvals]\nstore = \"dynamodb://{TABLE}\"\nhold_timeout_seconds = 60\n\
             keepalive_seconds = 1\ngrant_groups = [\"security\"]\n\
             [approvals.dynamodb]\nregion = \"us-east-1\"\nendpoint = \"{aws}\"\npoll_ms = 250\n\
             [admin]\nsocket = \"{}\"\n[[admin.local_users]]\nuser = \"root\"\n\
             subject = \"ops-alice\"\ngroups = [\"oncall\", \"security\"]\n",
            home.join("admin.sock").display()
        );
        let agent = Agent::start_full(ns, &home, "", &tables, &audit, &sections, aws_env());
        (server, agent)
    }

    /// Every host, started in parallel.
    pub fn start_all(&self) -> Vec<(Proc, Agent)> {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..self.hosts.len())
                .map(|i| s.spawn(move || self.start(i)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// `mcp-interceptor <args>` on host `i`'s admin socket, as root (the
    /// approver ops-alice): (succeeded, output).
    pub fn admin(&self, i: usize, args: &[&str]) -> (bool, String) {
        admin_cli(&self.home(i), args)
    }

    /// Like [`Fleet::admin`] with `--json`, which must succeed.
    pub fn admin_json(&self, i: usize, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (ok, out) = self.admin(i, &a);
        assert!(ok, "{} {args:?}: {out}", host_name(i));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The id of the pending approval of `tool` as host `i` lists it.
    pub fn pending_on(&self, i: usize, tool: &str) -> String {
        wait_for(
            &format!("a pending {tool} approval listed by {}", host_name(i)),
            Duration::from_secs(15),
            || {
                let v = self.admin_json(i, &["approvals", "list"]);
                v["approvals"].as_array()?.iter().find_map(|a| {
                    (a["status"] == "pending" && a.to_string().contains(tool))
                        .then(|| a["id"].as_str().unwrap().to_string())
                })
            },
        )
    }

    /// Grants `svc:caller` (the kernel-named caller) `tool` for ten
    /// minutes through host `i`'s admin socket: (succeeded, output).
    pub fn grant(&self, i: usize, tool: &str, reason: &str) -> (bool, String) {
        let args = [
            "grants",
            "add",
            "--subject",
            "svc:caller",
            "--issuer",
            "process",
            "--tool",
            tool,
            "--ttl",
            "10m",
            "--reason",
            reason,
        ];
        self.admin(i, &args)
    }

    /// Approves `id` through host `i`'s admin socket.
    pub fn approve_on(&self, i: usize, id: &str) {
        let args = ["approvals", "approve", id, "--reason", "fleet"];
        let (ok, out) = self.admin(i, &args);
        assert!(ok, "approve {id} on {}: {out}", host_name(i));
    }
}
