//! Network namespaces and veth pairs for "hosts" that exist only for one
//! test. Addresses come from the documentation ranges (192.0.2.0/24,
//! 2001:db8::/32), used only inside these namespaces.

use std::process::Command;

use crate::unique;

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A network namespace with `lo` up; deleted on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Self {
        let name = unique(&format!("mcpi-{tag}-"));
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, as `intercept.netns` wants it.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Whether the namespace still exists (for cleanup tests).
    pub fn exists(name: &str) -> bool {
        std::path::Path::new("/run/netns").join(name).exists()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair between two namespaces with one IPv4 and one IPv6 address on
/// each end (no DAD, so IPv6 is usable at once). Goes with the namespaces.
pub struct Veth {
    pub a_v4: String,
    pub b_v4: String,
    pub a_v6: String,
    pub b_v6: String,
}

impl Veth {
    /// Links `a` and `b`; `subnet` (0..=255) keeps pairs of one test apart.
    pub fn connect(a: &NetNs, b: &NetNs, subnet: u8) -> Self {
        let v = Self {
            a_v4: format!("192.0.2.{}", 2 * u16::from(subnet % 100) + 1),
            b_v4: format!("192.0.2.{}", 2 * u16::from(subnet % 100) + 2),
            a_v6: format!("2001:db8:{subnet:x}::1"),
            b_v6: format!("2001:db8:{subnet:x}::2"),
        };
        ip(&[
            "link",
            "add",
            "va",
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "netns",
            b.name(),
        ]);
        for (ns, dev, v4, v6) in [(a, "va", &v.a_v4, &v.a_v6), (b, "vb", &v.b_v4, &v.b_v6)] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        v
    }
}
