//! Egress bandwidth per reservation and network interface.
//!
//! Each interface a reservation is limited on gets an HTB root qdisc (handle
//! [`QDISC_MAJOR`]`:`, `default 0` so that unclassified traffic passes unshaped) and the
//! reservation a leaf class `MAJOR:MINOR` with `rate = ceil =` its bandwidth: a
//! guarantee and a cap, as `cpu.max` is for CPU. Traffic reaches the class by its
//! `skb->priority`: HTB sends a packet whose priority names one of its leaf classes to
//! that class without any filter. An nftables table of the reservation's own
//! (`inet rk-MINOR`, one rule per interface in an `output` chain) sets that priority on
//! the reservation's packets, matching them by cgroup:
//!
//! - cgroup v1: `meta cgroup CLASSID`, the `net_cls.classid` written into the
//!   reservation's `net_cls` cgroup (which every socket its tasks open carries);
//! - cgroup v2: `socket cgroupv2 level N "PATH"`, the cgroup of the sending socket.
//!
//! This needs neither `cls_cgroup` nor `cls_fw` in the kernel (many kernels, this
//! team's among them, build neither), only HTB and nf_tables. The qdisc and classes are
//! driven through iproute2's `tc` and the rules through `nft`: HTB's rate tables,
//! burst and quantum computation and nft's resolution of a cgroup path to its id are
//! what those tools are the reference for, and no netlink crate covers HTB classes or
//! the `socket cgroupv2` expression. Shaping is egress only.
//!
//! Callers hold the host-wide lock ([`crate::hostwide`]) around every change.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RkError};
use crate::spec::NetLimit;

/// Major number of the HTB root qdisc rk puts on an interface (`4b52:`).
pub const QDISC_MAJOR: u16 = 0x4b52;

/// Smallest class minor rk hands out (below are left for an admin's own classes).
pub const FIRST_MINOR: u16 = 0x10;

/// How a reservation's packets are recognised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetMatch {
    /// cgroup v1: the reservation's `net_cls` directory; its `net_cls.classid` is set to
    /// the reservation's class and matched with `meta cgroup`.
    NetClsDir(PathBuf),
    /// cgroup v2: the reservation's path below the unified mount, and its depth.
    Cgroup2 {
        /// Path relative to `/sys/fs/cgroup`.
        path: String,
        /// Number of components.
        level: usize,
    },
}

/// The class id `MAJOR:MINOR` as the kernel stores it (and `net_cls.classid` takes it).
pub fn classid(minor: u16) -> u32 {
    (u32::from(QDISC_MAJOR) << 16) | u32::from(minor)
}

fn handle(minor: u16) -> String {
    format!("{QDISC_MAJOR:x}:{minor:x}")
}

/// Name of the reservation's nftables table (family `inet`).
pub fn table_name(minor: u16) -> String {
    format!("rk-{minor:x}")
}

fn net_error(what: impl Into<String>, detail: impl Into<String>) -> RkError {
    RkError::Net {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Runs a tool; its stderr becomes the error.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        net_error(
            format!("{program} {}", args.join(" ")),
            format!("cannot run {program} (is it installed?): {e}"),
        )
    })?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| net_error(program, format!("cannot write its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| net_error(program, e.to_string()))?;
    if !out.status.success() {
        return Err(net_error(
            format!("{program} {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tc(args: &[&str]) -> Result<String> {
    run("tc", args, None)
}

/// True when the interface exists (in this network namespace).
pub fn interface_exists(interface: &str) -> bool {
    Path::new("/sys/class/net").join(interface).exists()
}

/// The root qdisc of an interface: (kind, handle).
fn root_qdisc(interface: &str) -> Result<Option<(String, String)>> {
    let out = tc(&["-j", "qdisc", "show", "dev", interface, "root"])?;
    let parsed: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| net_error(format!("tc qdisc show dev {interface}"), e.to_string()))?;
    Ok(parsed.as_array().and_then(|a| a.first()).map(|q| {
        (
            q["kind"].as_str().unwrap_or_default().to_string(),
            q["handle"].as_str().unwrap_or_default().to_string(),
        )
    }))
}

fn is_ours(root: &Option<(String, String)>) -> bool {
    matches!(root, Some((kind, h)) if kind == "htb" && *h == format!("{QDISC_MAJOR:x}:"))
}

/// Minors of rk's classes on an interface (empty when rk's qdisc is not there).
pub fn classes(interface: &str) -> Result<Vec<u16>> {
    if !is_ours(&root_qdisc(interface)?) {
        return Ok(Vec::new());
    }
    let out = tc(&["class", "show", "dev", interface])?;
    let prefix = format!("{QDISC_MAJOR:x}:");
    Ok(out
        .lines()
        .filter_map(|l| {
            let id = l.strip_prefix("class htb ")?.split_whitespace().next()?;
            u16::from_str_radix(id.strip_prefix(&prefix)?, 16).ok()
        })
        .collect())
}

/// True when rk's qdisc sits on the interface.
pub fn has_qdisc(interface: &str) -> Result<bool> {
    Ok(is_ours(&root_qdisc(interface)?))
}

/// Names of rk's nftables tables.
pub fn tables() -> Result<Vec<String>> {
    let out = run("nft", &["list", "tables", "inet"], None)?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with("rk-"))
        .map(str::to_string)
        .collect())
}

/// Puts rk's HTB qdisc on the interface unless it is there. A root qdisc someone else
/// configured (any with a handle of its own) is never replaced.
fn ensure_qdisc(interface: &str) -> Result<()> {
    if !interface_exists(interface) {
        return Err(RkError::InvalidSpec(format!(
            "network interface {interface:?} does not exist"
        )));
    }
    let root = root_qdisc(interface)?;
    if is_ours(&root) {
        return Ok(());
    }
    if let Some((kind, h)) = &root
        && h != "0:"
    {
        return Err(net_error(
            format!("shaping {interface}"),
            format!(
                "its root qdisc is {kind} {h}, configured by someone else; rk will not replace it"
            ),
        ));
    }
    tc(&[
        "qdisc",
        "replace",
        "dev",
        interface,
        "root",
        "handle",
        &format!("{QDISC_MAJOR:x}:"),
        "htb",
        "default",
        "0",
    ])?;
    tracing::info!(interface, "HTB root qdisc installed");
    Ok(())
}

/// `tc class add|change` arguments for a leaf class of `bps` bits per second.
fn class_args<'a>(verb: &'a str, interface: &'a str, minor: u16, bps: u64) -> Vec<String> {
    let bytes_per_sec = bps / 8;
    // 10 ms of traffic, and never less than one GSO super-packet.
    let burst = (bytes_per_sec / 100).max(64 * 1024);
    [
        "class",
        verb,
        "dev",
        interface,
        "parent",
        &format!("{QDISC_MAJOR:x}:"),
        "classid",
        &handle(minor),
        "htb",
        "rate",
        &format!("{bps}bit"),
        "ceil",
        &format!("{bps}bit"),
        "burst",
        &format!("{burst}b"),
        "cburst",
        &format!("{burst}b"),
        // Quantum only shares spare bandwidth between classes, which rk's do not borrow;
        // a fixed one keeps the kernel from warning about rate/r2q.
        "quantum",
        "200000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn tc_owned(args: Vec<String>) -> Result<String> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    tc(&refs)
}

fn rules(minor: u16, matcher: &NetMatch, limits: &[NetLimit]) -> String {
    let select = match matcher {
        NetMatch::NetClsDir(_) => format!("meta cgroup {:#010x}", classid(minor)),
        NetMatch::Cgroup2 { path, level } => format!("socket cgroupv2 level {level} \"{path}\""),
    };
    let table = table_name(minor);
    let mut text = format!(
        "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n  chain egress {{\n    type filter hook output priority 0; policy accept;\n"
    );
    for l in limits {
        text.push_str(&format!(
            "    oifname \"{}\" {select} meta priority set {}\n",
            l.interface,
            handle(minor)
        ));
    }
    text.push_str("  }\n}\n");
    text
}

/// Picks a class minor no reservation holds (`taken`) and no interface of `limits`
/// has as a class, nor an nftables table uses.
pub fn free_minor(taken: &[u16], limits: &[NetLimit]) -> Result<u16> {
    let mut used: Vec<u16> = taken.to_vec();
    for l in limits {
        used.extend(classes(&l.interface)?);
    }
    let tables = tables()?;
    (FIRST_MINOR..u16::MAX)
        .find(|m| !used.contains(m) && !tables.contains(&table_name(*m)))
        .ok_or_else(|| net_error("allocating a traffic class", "every class number is in use"))
}

/// Sets up classes, classification and (v1) the classid for a new reservation. On
/// failure whatever was made is removed.
pub fn install(minor: u16, matcher: &NetMatch, limits: &[NetLimit]) -> Result<()> {
    let made = (|| -> Result<()> {
        if let NetMatch::NetClsDir(dir) = matcher {
            crate::backend::fs::write_knob(dir, "net_cls.classid", &classid(minor).to_string())?;
        }
        for l in limits {
            ensure_qdisc(&l.interface)?;
            tc_owned(class_args("add", &l.interface, minor, l.egress_bps))?;
        }
        run("nft", &["-f", "-"], Some(&rules(minor, matcher, limits)))?;
        Ok(())
    })();
    if let Err(e) = made {
        let _ = remove(minor, limits);
        return Err(e);
    }
    tracing::debug!(class = %handle(minor), "network classes installed");
    Ok(())
}

/// Resizes in place: classes on interfaces in both are changed (live, no packet
/// lost), new interfaces get a class, dropped ones lose theirs; the rules are replaced
/// in one nftables transaction.
pub fn resize(minor: u16, matcher: &NetMatch, old: &[NetLimit], new: &[NetLimit]) -> Result<()> {
    for l in new {
        match old.iter().find(|o| o.interface == l.interface) {
            Some(o) if o.egress_bps == l.egress_bps => {}
            Some(_) => {
                tc_owned(class_args("change", &l.interface, minor, l.egress_bps))?;
            }
            None => {
                ensure_qdisc(&l.interface)?;
                tc_owned(class_args("add", &l.interface, minor, l.egress_bps))?;
            }
        }
    }
    if new.is_empty() {
        delete_table(minor)?;
    } else {
        run("nft", &["-f", "-"], Some(&rules(minor, matcher, new)))?;
    }
    let dropped: Vec<NetLimit> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.interface == o.interface))
        .cloned()
        .collect();
    remove_classes(minor, &dropped)
}

fn delete_table(minor: u16) -> Result<()> {
    let table = table_name(minor);
    if tables()?.contains(&table) {
        run("nft", &["delete", "table", "inet", &table], None)?;
    }
    Ok(())
}

fn remove_classes(minor: u16, limits: &[NetLimit]) -> Result<()> {
    let mut first_error = None;
    for l in limits {
        if !interface_exists(&l.interface) {
            continue; // the interface went, and its qdisc and classes with it
        }
        let result = (|| -> Result<()> {
            let present = classes(&l.interface)?;
            if present.contains(&minor) {
                tc(&[
                    "class",
                    "del",
                    "dev",
                    &l.interface,
                    "classid",
                    &handle(minor),
                ])?;
            }
            if present.iter().all(|m| *m == minor) && has_qdisc(&l.interface)? {
                tc(&["qdisc", "del", "dev", &l.interface, "root"])?;
                tracing::info!(interface = %l.interface, "HTB root qdisc removed");
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, interface = %l.interface, "cannot remove a traffic class");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Removes the reservation's rules, classes and, with the last class, the qdisc.
pub fn remove(minor: u16, limits: &[NetLimit]) -> Result<()> {
    let table = delete_table(minor);
    let classes = remove_classes(minor, limits);
    table.and(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_cgroup_and_name_the_class() {
        let limits = vec![NetLimit {
            interface: "eth0".into(),
            egress_bps: 10_000_000,
        }];
        let v1 = rules(0x11, &NetMatch::NetClsDir("/x".into()), &limits);
        assert!(v1.contains("oifname \"eth0\" meta cgroup 0x4b520011 meta priority set 4b52:11"));
        let v2 = rules(
            0x11,
            &NetMatch::Cgroup2 {
                path: "sesco/a/r".into(),
                level: 3,
            },
            &limits,
        );
        assert!(v2.contains("socket cgroupv2 level 3 \"sesco/a/r\" meta priority set 4b52:11"));
        assert!(v2.starts_with("table inet rk-11\ndelete table inet rk-11\n"));
        assert_eq!(classid(0x11), 0x4b52_0011);
    }

    #[test]
    fn class_burst_covers_a_super_packet() {
        let args = class_args("add", "eth0", 0x10, 1_000_000);
        let burst = args.iter().position(|a| a == "burst").unwrap();
        assert_eq!(args[burst + 1], "65536b");
        let args = class_args("add", "eth0", 0x10, 10_000_000_000);
        let burst = args.iter().position(|a| a == "burst").unwrap();
        assert_eq!(args[burst + 1], "12500000b");
    }
}
