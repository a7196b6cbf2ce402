//! A pod network for a [`crate::Node`]: a Linux bridge of the node's own
//! with a /24 of its own, wired to containerd through Debian's CNI plugins
//! (`containernetworking-plugins`: bridge, host-local, loopback), so pods
//! run without `hostNetwork`, as the `restricted` Pod Security profile
//! requires.
//!
//! The bridge has no uplink: pods reach the host only. The API server keeps
//! listening on 127.0.0.1; pods reach it at the bridge's gateway address,
//! which a nat `PREROUTING` rule sends on to 127.0.0.1 (`route_localnet` on
//! the bridge lets the kernel route to a loopback address from it). The host
//! reaches pods (the kubelet's probes) through the bridge's own route.
//!
//! Several nodes may run at once, in one test process or several: each
//! bridge is named after its node (`rcn<pid>-<n>`), takes the first
//! `10.88.N.0/24` no route of the machine uses (chosen under a machine-wide
//! lock), and its nat rules carry the node's name as a comment. Dropping the
//! network deletes its rules and its bridge (and with it the bridge's
//! sysctls); the veths go with the pods' network namespaces, which the node
//! unmounts before. What nodes of killed test processes left is swept when
//! the next node starts (with a pod network or not).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where Debian's `containernetworking-plugins` puts the plugins.
pub(crate) const CNI_BIN: &str = "/usr/lib/cni";
const IPTABLES: &str = "/usr/sbin/iptables";
const IP: &str = "/usr/sbin/ip";
/// Where libcni caches each attachment's result, whatever containerd 1.6's
/// config says; a DEL removes the entry.
pub(crate) const CNI_CACHE: &str = "/var/lib/cni";

/// A node's bridge, subnet and nat rules; removed on drop.
pub struct PodNetwork {
    /// The CNI network's name: the node's name.
    name: String,
    bridge: String,
    third_octet: u8,
    /// Arguments of each nat rule added (after `-t nat -A`).
    nat_rules: Vec<Vec<String>>,
}

impl PodNetwork {
    /// Create the bridge of node `node` (named `regcred-node-<pid>-<n>`),
    /// give it the first free `10.88.N.1/24`, and let pods reach the host's
    /// 127.0.0.1:`port` at that address for each of `host_ports`.
    pub(crate) fn create(node: &str, host_ports: &[u16]) -> anyhow::Result<Self> {
        for (path, package) in [
            (IPTABLES, "iptables"),
            (IP, "iproute2"),
            (&format!("{CNI_BIN}/bridge") as &str, "containernetworking-plugins"),
        ] {
            if !Path::new(path).is_file() {
                bail!("{path} not found: run `make tools` (hack/install-tools.sh installs Debian's {package})");
            }
        }
        let suffix = node.strip_prefix("regcred-node-").unwrap_or(node);
        let bridge = format!("rcn{suffix}");
        if bridge.len() > 15 {
            bail!("bridge name {bridge} is longer than Linux's 15 characters");
        }
        let mut network = Self {
            name: node.to_string(),
            bridge,
            third_octet: 0,
            nat_rules: Vec::new(),
        };
        // From here on, a failure drops `network`, which undoes what was done.
        // The subnet is taken once its route exists (the bridge up with its
        // address): until then, under the lock.
        crate::node::machine_lock(|| -> anyhow::Result<()> {
            network.third_octet = free_subnet()?;
            run(IP, &["link", "add", &network.bridge, "type", "bridge"])?;
            let gateway = format!("{}/24", network.gateway());
            run(IP, &["addr", "add", &gateway, "dev", &network.bridge])?;
            run(IP, &["link", "set", &network.bridge, "up"])?;
            Ok(())
        })??;
        let sysctl = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", network.bridge);
        std::fs::write(&sysctl, "1").with_context(|| format!("writing {sysctl}"))?;
        for port in host_ports {
            let rule: Vec<String> = [
                "PREROUTING",
                "-i",
                &network.bridge,
                "-d",
                &network.gateway().to_string(),
                "-p",
                "tcp",
                "--dport",
                &port.to_string(),
                "-m",
                "comment",
                "--comment",
                &network.name,
                "-j",
                "DNAT",
                "--to-destination",
                &format!("127.0.0.1:{port}"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut args = vec!["-w".to_string(), "-t".into(), "nat".into(), "-A".into()];
            args.extend(rule.iter().cloned());
            run(IPTABLES, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
            network.nat_rules.push(rule);
        }
        Ok(network)
    }

    /// The bridge's address: pods' default gateway, and where they reach
    /// the host's forwarded ports.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, self.third_octet, 1)
    }

    /// The pods' subnet, e.g. `10.88.3.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.88.{}.0/24", self.third_octet)
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The CNI network configuration (conflist) containerd loads: bridge +
    /// host-local, addresses recorded under `ipam_dir`.
    pub(crate) fn conflist(&self, ipam_dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": self.name,
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                // No uplink to masquerade to.
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.subnet(), "gateway": self.gateway().to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            }],
        })
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        for rule in &self.nat_rules {
            let mut args = vec!["-w", "-t", "nat", "-D"];
            args.extend(rule.iter().map(String::as_str));
            let _ = run(IPTABLES, &args);
        }
        let _ = run(IP, &["link", "del", &self.bridge]);
        remove_cni_cache(&self.name);
    }
}

/// The first `N` such that no route of the machine is in `10.88.N.0/24`.
fn free_subnet() -> anyhow::Result<u8> {
    let routes = output(IP, &["-o", "-4", "route", "show", "table", "all"])?;
    (0..=255u8)
        .find(|n| !routes.contains(&format!("10.88.{n}.")))
        .context("no free 10.88.N.0/24 for a pod network: 256 nodes running?")
}

/// libcni's cached results of network `name` (a DEL removes them; a killed
/// containerd never sent it).
fn remove_cni_cache(name: &str) {
    remove_cni_results(|entry| entry.starts_with(&format!("{name}-")));
}

/// libcni's cached results for the pods of the node whose directory is
/// `node_dir` (each names its pod's network namespace, which containerd
/// keeps under that directory; the loopback network's entries carry no
/// node name), e.g. before that directory is removed.
pub(crate) fn forget_pods(node_dir: &Path) {
    let marker = format!("\"{}/", node_dir.display());
    remove_cni_results(|entry| {
        std::fs::read_to_string(Path::new(CNI_CACHE).join("results").join(entry))
            .is_ok_and(|text| text.contains(&marker))
    });
}

fn remove_cni_results(matches: impl Fn(&str) -> bool) {
    let results = PathBuf::from(CNI_CACHE).join("results");
    for entry in std::fs::read_dir(&results).into_iter().flatten().flatten() {
        if matches(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Bridges, nat rules and cached CNI results of nodes whose test process is gone.
pub(crate) fn sweep_dead() {
    let dead = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(links) = output(IP, &["-o", "link", "show", "type", "bridge"]) {
        for line in links.lines() {
            let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else {
                continue;
            };
            if let Some(pid) = name.strip_prefix("rcn").and_then(|r| r.split('-').next())
                && dead(pid)
            {
                let _ = run(IP, &["link", "del", name]);
            }
        }
    }
    if let Ok(rules) = output(IPTABLES, &["-w", "-t", "nat", "-S", "PREROUTING"]) {
        for line in rules.lines() {
            let Some(rule) = line.strip_prefix("-A ") else { continue };
            let owner = rule
                .split_once("--comment ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|c| c.trim_matches('"').strip_prefix("regcred-node-"))
                .and_then(|rest| rest.split('-').next());
            if owner.is_some_and(dead) {
                let mut args = vec!["-w", "-t", "nat", "-D"];
                args.extend(rule.split_whitespace().map(|a| a.trim_matches('"')));
                let _ = run(IPTABLES, &args);
            }
        }
    }
    // Each result names its pod's network namespace, under its node's directory.
    let node_dirs = format!("\"{}/regcred-node-", std::env::temp_dir().display());
    remove_cni_results(|entry| {
        let text = std::fs::read_to_string(Path::new(CNI_CACHE).join("results").join(entry)).unwrap_or_default();
        text.split(&node_dirs)
            .skip(1)
            .filter_map(|rest| rest.split('-').next())
            .any(dead)
    });
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    output(program, args).map(|_| ())
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
