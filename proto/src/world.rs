//! The world: users, groups, nodes, applications and their variants.
//!
//! These types are both the world file's schema (TOML, see `docs/world.md`) and what admin
//! requests carry on the wire. [`World::validate`] checks everything that the types
//! alone cannot, and names the offending field by its path so that a file loader can turn
//! it into a line number.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The smallest CPU share a reservation can enforce: 1 ms of CPU time per second.
pub const MIN_CPU_SHARE: f64 = 0.001;

/// The most set-points one variant may span (the product of its dimensions' level counts).
pub const MAX_SETPOINTS_PER_VARIANT: u64 = 1 << 20;

/// Everything Sesco knows that is not a running session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub groups: Vec<GroupDef>,
    #[serde(default)]
    pub users: Vec<UserDef>,
    #[serde(default)]
    pub nodes: Vec<NodeDef>,
    #[serde(default)]
    pub applications: Vec<ApplicationDef>,
}

fn one() -> f64 {
    1.0
}

/// A group of users sharing a priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    pub name: String,
    /// Multiplies the weight of every session of the group's users.
    #[serde(default = "one")]
    pub priority: f64,
    #[serde(default)]
    pub description: String,
}

/// A user, mapped to a unix account on the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDef {
    pub name: String,
    /// The account the user's session processes run as. Never root.
    pub unix_account: String,
    pub group: String,
    /// Multiplies the weight of the user's sessions.
    #[serde(default = "one")]
    pub priority: f64,
    #[serde(default)]
    pub admin: bool,
    /// Argon2 PHC string. Without one the user cannot sign in until an admin sets it.
    #[serde(default)]
    pub password_hash: Option<String>,
}

fn default_reserve_memory_mb() -> u64 {
    256
}

/// A node declared by an admin. Nodes may also register without being declared; they then
/// get the defaults below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    pub name: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// CPUs kept for the system, never promised to sessions.
    #[serde(default)]
    pub reserve_cpus: f64,
    /// Memory kept for the system, MiB.
    #[serde(default = "default_reserve_memory_mb")]
    pub reserve_memory_mb: u64,
}

impl NodeDef {
    /// The settings a node gets when it registers without being declared.
    pub fn undeclared(name: &str) -> Self {
        Self {
            name: name.to_string(),
            labels: Vec::new(),
            reserve_cpus: 0.0,
            reserve_memory_mb: default_reserve_memory_mb(),
        }
    }
}

/// An application: one or more variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub variants: Vec<VariantDef>,
}

/// How a variant's processes are scheduled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuClass {
    /// A capped share of CPU time (cgroup CPU bandwidth).
    #[default]
    Bandwidth,
    /// SCHED_DEADLINE: runtime = CPU share × period, every period.
    Deadline,
}

/// When a variant's failed processes are started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    #[default]
    Never,
    OnFailure,
    Always,
}

fn default_max_restarts() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    500
}

/// A variant's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default)]
    pub mode: RestartMode,
    /// Restarts allowed before the session is declared crash-looping and failed.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Delay before the first restart; doubles with each further one.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::Never,
            max_restarts: default_max_restarts(),
            backoff_ms: default_backoff_ms(),
        }
    }
}

fn default_deadline_period_ms() -> u64 {
    10
}

/// One way to run an application: its processes and its QoS dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub cpu_class: CpuClass,
    /// Period of the deadline reservation, for the deadline class.
    #[serde(default = "default_deadline_period_ms")]
    pub deadline_period_ms: u64,
    #[serde(default)]
    pub restart: RestartPolicy,
    pub processes: Vec<ProcessDef>,
    #[serde(default)]
    pub dimensions: Vec<DimensionDef>,
}

impl VariantDef {
    /// How many set-points the variant spans.
    pub fn setpoint_count(&self) -> u64 {
        self.dimensions
            .iter()
            .map(|d| d.levels.len() as u64)
            .try_fold(1u64, |acc, n| acc.checked_mul(n))
            .unwrap_or(u64::MAX)
    }
}

fn default_pids_max() -> u64 {
    256
}

/// Where a process may run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequirement {
    /// Only this node.
    #[serde(default)]
    pub name: Option<String>,
    /// Only nodes carrying every one of these labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Only nodes with at least this many CPUs.
    #[serde(default)]
    pub min_cpus: u32,
}

/// A process of a variant. Its demand at a set-point is its base demand times the product
/// of the chosen levels' scales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessDef {
    pub name: String,
    /// argv; the first element is the program.
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Base CPU demand, in CPUs.
    pub cpu: f64,
    /// Base memory demand, MiB.
    pub memory_mb: f64,
    #[serde(default = "default_pids_max")]
    pub pids_max: u64,
    #[serde(default)]
    pub node: NodeRequirement,
    /// Base egress bandwidth demand, Mbit/s (0: none reserved).
    #[serde(default)]
    pub net_mbps: f64,
    /// The interface the bandwidth is reserved on; empty means the node's default-route
    /// interface.
    #[serde(default)]
    pub net_interface: String,
    /// The block device (by name, e.g. `sda`, `loop0`) the I/O limits apply to.
    #[serde(default)]
    pub io_device: Option<String>,
    /// Read limit on `io_device`, MB/s (10^6 bytes per second).
    #[serde(default)]
    pub io_read_mbps: Option<f64>,
    /// Write limit on `io_device`, MB/s (10^6 bytes per second).
    #[serde(default)]
    pub io_write_mbps: Option<f64>,
    /// Read operations per second on `io_device`.
    #[serde(default)]
    pub io_read_iops: Option<u64>,
    /// Write operations per second on `io_device`.
    #[serde(default)]
    pub io_write_iops: Option<u64>,
}

/// A QoS dimension: levels from lowest to highest quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionDef {
    pub name: String,
    #[serde(default)]
    pub unit: String,
    pub levels: Vec<LevelDef>,
}

/// One level of a dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelDef {
    pub name: String,
    /// The level's numeric value, passed to the application (e.g. 30 for 30 fps).
    #[serde(default)]
    pub value: f64,
    /// The utility this level contributes; a set-point's utility is the sum over its levels.
    pub utility: f64,
    #[serde(default = "one")]
    pub cpu_scale: f64,
    #[serde(default = "one")]
    pub memory_scale: f64,
    #[serde(default = "one")]
    pub net_scale: f64,
}

/// One step of a path into the world, e.g. `applications[1].variants[0].name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// A field of the world that is not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct WorldError {
    pub path: Vec<PathStep>,
    pub reason: String,
}

impl fmt::Display for WorldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", display_path(&self.path), self.reason)
        }
    }
}

/// `applications[1].variants[0].name`
pub fn display_path(path: &[PathStep]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            PathStep::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathStep::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Collects errors while walking the world, tracking the current path.
struct Checker {
    path: Vec<PathStep>,
    errors: Vec<WorldError>,
}

impl Checker {
    fn new(path: Vec<PathStep>) -> Self {
        Self {
            path,
            errors: Vec::new(),
        }
    }

    fn at<R>(&mut self, step: PathStep, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(step);
        let r = f(self);
        self.path.pop();
        r
    }

    fn key<R>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.at(PathStep::Key(key.to_string()), f)
    }

    fn fail(&mut self, field: &str, reason: impl Into<String>) {
        let mut path = self.path.clone();
        if !field.is_empty() {
            path.push(PathStep::Key(field.to_string()));
        }
        self.errors.push(WorldError {
            path,
            reason: reason.into(),
        });
    }

    fn name(&mut self, field: &str, value: &str) {
        if let Err(reason) = check_name(value) {
            self.fail(field, reason);
        }
    }

    fn positive(&mut self, field: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.fail(field, format!("must be a positive number, not {value}"));
        }
    }

    fn non_negative(&mut self, field: &str, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.fail(field, format!("must be zero or more, not {value}"));
        }
    }

    /// Reports names that appear twice in `items`.
    fn unique<'a>(&mut self, list: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for (i, name) in names.enumerate() {
            if !seen.insert(name) {
                self.key(list, |c| {
                    c.at(PathStep::Index(i), |c| {
                        c.fail("name", format!("duplicate name '{name}'"))
                    })
                });
            }
        }
    }
}

/// Names of world objects: 1–64 characters of letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 64 {
        return Err(format!("'{name}' is longer than 64 characters"));
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let all_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !all_ok {
        return Err(format!(
            "'{name}' may hold only letters, digits, '.', '_' and '-', and must start with a letter or digit"
        ));
    }
    Ok(())
}

/// Unix account names as `useradd` accepts them, and never root.
fn check_unix_account(name: &str) -> Result<(), String> {
    if name == "root" {
        return Err("session processes never run as root".into());
    }
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!("'{name}' is not a valid unix account name"))
    }
}

impl World {
    /// Checks every rule the types cannot express. Returns every error found, not just
    /// the first.
    pub fn validate(&self) -> Result<(), Vec<WorldError>> {
        let mut c = Checker::new(Vec::new());
        c.unique("groups", self.groups.iter().map(|g| g.name.as_str()));
        c.unique("users", self.users.iter().map(|u| u.name.as_str()));
        c.unique("nodes", self.nodes.iter().map(|n| n.name.as_str()));
        c.unique(
            "applications",
            self.applications.iter().map(|a| a.name.as_str()),
        );
        let groups: HashSet<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        for (i, group) in self.groups.iter().enumerate() {
            c.key("groups", |c| {
                c.at(PathStep::Index(i), |c| {
                    c.name("name", &group.name);
                    c.positive("priority", group.priority);
                })
            });
        }
        for (i, user) in self.users.iter().enumerate() {
            c.key("users", |c| {
                c.at(PathStep::Index(i), |c| check_user(c, user, &groups))
            });
        }
        for (i, node) in self.nodes.iter().enumerate() {
            c.key("nodes", |c| {
                c.at(PathStep::Index(i), |c| {
                    c.name("name", &node.name);
                    c.non_negative("reserve_cpus", node.reserve_cpus);
                    for (j, label) in node.labels.iter().enumerate() {
                        if let Err(reason) = check_name(label) {
                            c.key("labels", |c| {
                                c.at(PathStep::Index(j), |c| c.fail("", reason))
                            });
                        }
                    }
                })
            });
        }
        for (i, app) in self.applications.iter().enumerate() {
            c.key("applications", |c| {
                c.at(PathStep::Index(i), |c| check_application(c, app))
            });
        }
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors)
        }
    }

    /// Checks one user against the groups of this world, with paths relative to the user.
    pub fn validate_user(&self, user: &UserDef) -> Result<(), Vec<WorldError>> {
        let groups: HashSet<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        let mut c = Checker::new(Vec::new());
        check_user(&mut c, user, &groups);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors)
        }
    }
}

fn check_user(c: &mut Checker, user: &UserDef, groups: &HashSet<&str>) {
    c.name("name", &user.name);
    if let Err(reason) = check_unix_account(&user.unix_account) {
        c.fail("unix_account", reason);
    }
    if !groups.contains(user.group.as_str()) {
        c.fail("group", format!("no group named '{}'", user.group));
    }
    c.positive("priority", user.priority);
    if let Some(hash) = &user.password_hash
        && !hash.starts_with("$argon2")
    {
        c.fail(
            "password_hash",
            "must be an argon2 PHC string ($argon2id$...)",
        );
    }
}

impl ApplicationDef {
    /// Checks one application on its own, with paths relative to the application.
    pub fn validate(&self) -> Result<(), Vec<WorldError>> {
        let mut c = Checker::new(Vec::new());
        check_application(&mut c, self);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors)
        }
    }
}

fn check_application(c: &mut Checker, app: &ApplicationDef) {
    c.name("name", &app.name);
    if app.variants.is_empty() {
        c.fail("variants", "an application needs at least one variant");
    }
    c.unique("variants", app.variants.iter().map(|v| v.name.as_str()));
    for (i, variant) in app.variants.iter().enumerate() {
        c.key("variants", |c| {
            c.at(PathStep::Index(i), |c| check_variant(c, variant))
        });
    }
}

/// Fails the `cpu` of the variant's process `i`.
fn fail_process_cpu(c: &mut Checker, i: usize, reason: String) {
    c.key("processes", |c| {
        c.at(PathStep::Index(i), |c| c.fail("cpu", reason))
    });
}

fn check_variant(c: &mut Checker, variant: &VariantDef) {
    c.name("name", &variant.name);
    if variant.processes.is_empty() {
        c.fail("processes", "a variant needs at least one process");
    }
    if variant.cpu_class == CpuClass::Deadline && !(1..=1000).contains(&variant.deadline_period_ms)
    {
        c.fail(
            "deadline_period_ms",
            format!(
                "must be between 1 and 1000 ms, not {}",
                variant.deadline_period_ms
            ),
        );
    }
    c.unique(
        "processes",
        variant.processes.iter().map(|p| p.name.as_str()),
    );
    c.unique(
        "dimensions",
        variant.dimensions.iter().map(|d| d.name.as_str()),
    );
    for (i, process) in variant.processes.iter().enumerate() {
        c.key("processes", |c| {
            c.at(PathStep::Index(i), |c| {
                c.name("name", &process.name);
                if process.command.is_empty() || process.command[0].is_empty() {
                    c.fail("command", "must name the program to run");
                }
                c.positive("cpu", process.cpu);
                c.positive("memory_mb", process.memory_mb);
                if process.pids_max == 0 {
                    c.fail("pids_max", "must allow at least one task");
                }
                for key in process.env.keys() {
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        c.fail("env", format!("'{key}' is not a valid variable name"));
                    }
                }
                check_process_net_io(c, process);
            })
        });
    }
    for (i, dimension) in variant.dimensions.iter().enumerate() {
        c.key("dimensions", |c| {
            c.at(PathStep::Index(i), |c| {
                c.name("name", &dimension.name);
                if dimension.levels.is_empty() {
                    c.fail("levels", "a dimension needs at least one level");
                }
                c.unique("levels", dimension.levels.iter().map(|l| l.name.as_str()));
                for (j, level) in dimension.levels.iter().enumerate() {
                    c.key("levels", |c| {
                        c.at(PathStep::Index(j), |c| {
                            c.name("name", &level.name);
                            c.non_negative("utility", level.utility);
                            c.positive("cpu_scale", level.cpu_scale);
                            c.positive("memory_scale", level.memory_scale);
                            c.positive("net_scale", level.net_scale);
                            if !level.value.is_finite() {
                                c.fail("value", "must be a finite number");
                            }
                        })
                    });
                }
            })
        });
    }
    // The kernel enforces no CPU share below a millisecond per second.
    let min_scale: f64 = variant
        .dimensions
        .iter()
        .map(|d| {
            d.levels
                .iter()
                .map(|l| l.cpu_scale)
                .fold(f64::INFINITY, f64::min)
        })
        .filter(|s| s.is_finite())
        .product();
    for (i, process) in variant.processes.iter().enumerate() {
        let least = process.cpu * min_scale;
        if least.is_finite() && least > 0.0 && least < MIN_CPU_SHARE {
            fail_process_cpu(
                c,
                i,
                format!(
                    "its lowest set-point needs {least} CPU, below the smallest share the kernel enforces ({MIN_CPU_SHARE})"
                ),
            );
        }
    }
    if variant.cpu_class == CpuClass::Deadline {
        // A deadline task runs on one CPU at a time: its share can never exceed one.
        let max_scale: f64 = variant
            .dimensions
            .iter()
            .map(|d| d.levels.iter().map(|l| l.cpu_scale).fold(0.0, f64::max))
            .product();
        for (i, process) in variant.processes.iter().enumerate() {
            let peak = process.cpu * max_scale;
            if peak > 1.0 {
                fail_process_cpu(
                    c,
                    i,
                    format!(
                        "a deadline process needs at most one CPU, but its highest set-point needs {peak:.2}"
                    ),
                );
            }
        }
    }
    let best: f64 = variant
        .dimensions
        .iter()
        .map(|d| d.levels.iter().map(|l| l.utility).fold(0.0, f64::max))
        .sum();
    if best <= 0.0 {
        c.fail(
            "dimensions",
            "no set-point brings any utility, so the variant would never be admitted: give some level a utility above 0",
        );
    }
    let count = variant.setpoint_count();
    if count > MAX_SETPOINTS_PER_VARIANT {
        c.fail(
            "dimensions",
            format!("spans {count} set-points; at most {MAX_SETPOINTS_PER_VARIANT} are allowed"),
        );
    }
}

/// Interface and block device names as the kernel shows them: 1–15 characters (the
/// kernel's `IFNAMSIZ` less one) of letters, digits, `.`, `_`, `-` and `:` (no `/`).
pub fn check_device_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a device name (1-15 letters, digits, '.', '_', '-' or ':')"
        ))
    }
}

fn check_process_net_io(c: &mut Checker, process: &ProcessDef) {
    c.non_negative("net_mbps", process.net_mbps);
    if !process.net_interface.is_empty()
        && let Err(reason) = check_device_name(&process.net_interface)
    {
        c.fail("net_interface", reason);
    }
    for (field, value) in [
        ("io_read_mbps", process.io_read_mbps),
        ("io_write_mbps", process.io_write_mbps),
    ] {
        if let Some(v) = value {
            c.positive(field, v);
            // The kernel takes whole bytes per second.
            if v.is_finite() && v * 1e6 > u64::MAX as f64 / 2.0 {
                c.fail(field, format!("{v} MB/s is out of range"));
            }
        }
    }
    for (field, value) in [
        ("io_read_iops", process.io_read_iops),
        ("io_write_iops", process.io_write_iops),
    ] {
        if value == Some(0) {
            c.fail(field, "must allow at least one operation per second");
        }
    }
    let limits = [
        process.io_read_mbps.is_some(),
        process.io_write_mbps.is_some(),
        process.io_read_iops.is_some(),
        process.io_write_iops.is_some(),
    ];
    match &process.io_device {
        Some(device) => {
            if let Err(reason) = check_device_name(device) {
                c.fail("io_device", reason);
            }
            if !limits.contains(&true) {
                c.fail(
                    "io_device",
                    "names a device but sets no limit (io_read_mbps, io_write_mbps, io_read_iops or io_write_iops)",
                );
            }
        }
        None => {
            if limits.contains(&true) {
                c.fail("io_device", "I/O limits need the device they apply to");
            }
        }
    }
}

impl fmt::Display for CpuClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bandwidth => "bandwidth",
            Self::Deadline => "deadline",
        })
    }
}

impl fmt::Display for RestartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Never => "never",
            Self::OnFailure => "on-failure",
            Self::Always => "always",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant_with(process: &str) -> Result<(), Vec<WorldError>> {
        let text = format!(
            r#"
name = "app"
[[variants]]
name = "v"
[[variants.processes]]
name = "p"
command = ["true"]
cpu = 0.1
memory_mb = 8
{process}
[[variants.dimensions]]
name = "rate"
[[variants.dimensions.levels]]
name = "low"
utility = 1
net_scale = 2
"#
        );
        let app: ApplicationDef = toml::from_str(&text).expect("parses");
        app.validate()
    }

    fn reasons(r: Result<(), Vec<WorldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn net_and_io_demands_are_accepted() {
        variant_with("net_mbps = 10\nnet_interface = \"eth0\"").unwrap();
        variant_with("io_device = \"loop0\"\nio_write_mbps = 5\nio_read_iops = 100").unwrap();
    }

    #[test]
    fn bad_net_and_io_demands_are_named() {
        let r = reasons(variant_with("net_mbps = -1"));
        assert!(r[0].contains("processes[0].net_mbps"), "{r:?}");
        let r = reasons(variant_with("net_interface = \"../eth0\""));
        assert!(r[0].contains("net_interface"), "{r:?}");
        let r = reasons(variant_with("io_write_mbps = 5"));
        assert!(
            r[0].contains("io_device: I/O limits need the device"),
            "{r:?}"
        );
        let r = reasons(variant_with("io_device = \"sda\""));
        assert!(r[0].contains("sets no limit"), "{r:?}");
        let r = reasons(variant_with("io_device = \"sda\"\nio_write_mbps = 0"));
        assert!(r[0].contains("io_write_mbps: must be a positive"), "{r:?}");
        let r = reasons(variant_with("io_device = \"sda\"\nio_read_iops = 0"));
        assert!(r[0].contains("io_read_iops"), "{r:?}");
        let r = reasons(variant_with("io_device = \"/dev/sda\"\nio_read_iops = 5"));
        assert!(r[0].contains("not a device name"), "{r:?}");
    }
}
