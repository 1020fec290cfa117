//! A fleet on one machine: a hub namespace holding moto (S3 and DynamoDB
//! on one endpoint) at [`HUB_IP`], and one namespace per host, each linked
//! to the hub by its own veth pair and routed to [`HUB_IP`] through it, so
//! every host reaches the same endpoint by the same URL and no host
//! reaches another. Everything is removed on drop (the namespaces take
//! their links with them).

use std::{path::Path, process::Command, time::Duration};

use crate::{
    NetNs, Proc,
    s3::{KEY_ID, SECRET, boto_in, venv_bin},
};

/// The AWS APIs' address, the same from every host.
pub const HUB_IP: &str = "10.77.255.1";

/// The hub and its hosts.
pub struct Fleet {
    /// Where moto runs.
    pub hub: NetNs,
    /// One namespace per host, linked to the hub only.
    pub hosts: Vec<NetNs>,
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

impl Fleet {
    /// A hub and `n` hosts (at most 250).
    pub fn new(tag: &str, n: usize) -> Self {
        assert!(n <= 250);
        let hub = NetNs::new(&format!("{tag}h"));
        hub.ip(&["addr", "add", &format!("{HUB_IP}/32"), "dev", "lo"]);
        let mut hosts = Vec::with_capacity(n);
        for i in 0..n {
            let host = NetNs::new(&format!("{tag}{i}"));
            let dev = format!("f{i}");
            ip(&[
                "link",
                "add",
                &dev,
                "netns",
                hub.name(),
                "type",
                "veth",
                "peer",
                "name",
                "tohub",
                "netns",
                host.name(),
            ]);
            hub.ip(&["addr", "add", &format!("10.77.{i}.1/24"), "dev", &dev]);
            hub.ip(&["link", "set", &dev, "up"]);
            host.ip(&["addr", "add", &format!("10.77.{i}.2/24"), "dev", "tohub"]);
            host.ip(&["link", "set", "tohub", "up"]);
            host.ip(&[
                "route",
                "add",
                &format!("{HUB_IP}/32"),
                "via",
                &format!("10.77.{i}.1"),
            ]);
            hosts.push(host);
        }
        Self { hub, hosts }
    }

    /// `http://HUB_IP:port`.
    pub fn endpoint(port: u16) -> String {
        format!("http://{HUB_IP}:{port}")
    }

    /// moto on every address of the hub, with the test bucket made.
    pub fn moto(&self, port: u16, dir: &Path) -> Proc {
        let args = ["-H", "0.0.0.0", "-p", &port.to_string()].map(String::from);
        let mut p = Proc::spawn(
            "moto-fleet",
            Some(self.hub.name()),
            &venv_bin("moto_server"),
            &args,
            dir,
        );
        p.wait_for_output(
            &format!("Running on http://127.0.0.1:{port}"),
            Duration::from_secs(30),
        );
        boto_in(
            Some(self.hub.name()),
            port,
            "s3.create_bucket(Bucket=bucket)",
        );
        p
    }

    /// Runs a boto3 snippet in the hub with `ddb` (a DynamoDB client) as
    /// well as `s3` and `bucket` defined.
    pub fn aws(&self, port: u16, code: &str) -> String {
        let prelude = format!(
            "ddb = boto3.client('dynamodb', endpoint_url='http://127.0.0.1:{port}', \
             region_name='us-east-1', aws_access_key_id='{KEY_ID}', \
             aws_secret_access_key='{SECRET}')\n"
        );
        boto_in(Some(self.hub.name()), port, &(prelude + code))
    }
}
