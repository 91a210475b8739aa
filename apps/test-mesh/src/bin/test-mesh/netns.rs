//! Two network namespaces joined by a veth pair, for the `partition` scenario.
//!
//! Side A holds `10.213.<k>.1/24`, side B `10.213.<k>.2/24` (`k` from this process's id); these
//! addresses exist only inside the two namespaces, which have nothing else but their own loopback,
//! so no packet of the scenario can leave them. Cutting the pair sets both ends down; healing sets
//! them up again. Needs root (`ip netns`).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// The namespaces and their veth pair; [`Netns::remove`] deletes them (the pair goes with them).
#[derive(Debug)]
pub struct Netns {
    pub a: String,
    pub b: String,
    pub ip_a: IpAddr,
    pub ip_b: IpAddr,
    removed: bool,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed ({status})", args.join(" ")))
    }
}

impl Netns {
    /// Creates both namespaces (removing leftovers of a killed earlier run of the same pid).
    pub fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let k = (pid % 250) as u8 + 1;
        let netns = Netns {
            a: format!("p2pmesh-tm-{pid}-a"),
            b: format!("p2pmesh-tm-{pid}-b"),
            ip_a: IpAddr::V4(Ipv4Addr::new(10, 213, k, 1)),
            ip_b: IpAddr::V4(Ipv4Addr::new(10, 213, k, 2)),
            removed: false,
        };
        remove_stale();
        netns.build().inspect_err(|_| netns.remove_now())?;
        Ok(netns)
    }

    fn build(&self) -> Result<(), String> {
        let (a, b) = (self.a.as_str(), self.b.as_str());
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        for ns in [a, b] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns", b,
        ])?;
        ip(&[
            "-n",
            a,
            "addr",
            "add",
            &format!("{}/24", self.ip_a),
            "dev",
            "veth-a",
        ])?;
        ip(&[
            "-n",
            b,
            "addr",
            "add",
            &format!("{}/24", self.ip_b),
            "dev",
            "veth-b",
        ])?;
        self.heal()
    }

    /// Cuts the pair: both ends down.
    pub fn cut(&self) -> Result<(), String> {
        ip(&["-n", &self.a, "link", "set", "veth-a", "down"])?;
        ip(&["-n", &self.b, "link", "set", "veth-b", "down"])
    }

    /// Restores the pair: both ends up.
    pub fn heal(&self) -> Result<(), String> {
        ip(&["-n", &self.a, "link", "set", "veth-a", "up"])?;
        ip(&["-n", &self.b, "link", "set", "veth-b", "up"])
    }

    fn remove_now(&self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// Deletes both namespaces (their processes must be gone).
    pub fn remove(mut self) {
        self.remove_now();
        self.removed = true;
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.removed {
            self.remove_now();
        }
    }
}

/// Deletes namespaces left by test-mesh runs whose process is gone (killed with SIGKILL).
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("p2pmesh-tm-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Whether this process may create namespaces (is root and has `ip`).
pub fn available() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("the partition scenario needs root (ip netns)".into());
    }
    Command::new("ip")
        .arg("-V")
        .output()
        .map(|_| ())
        .map_err(|e| format!("the partition scenario needs iproute2's ip: {e}"))
}
