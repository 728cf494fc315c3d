//! What Sesco knows and persists about one session, and how its set-point turns into
//! utility, demand and reservations.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sesco_proto::session::{
    CpuReservation, DimensionLevel, ExitStatus, IoReservation, NetReservation, ProcessState,
    ProcessUsage, ProcessView, Reservation, SessionId, SessionState, SessionView, SetPoint,
};
use sesco_proto::world::{CpuClass, VariantDef};

const MIB: f64 = 1024.0 * 1024.0;

/// One process of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The node it is placed on.
    pub node: String,
    pub pid: Option<u32>,
    pub cgroups: Vec<String>,
    /// The reservation the node enforces right now.
    pub reservation: Reservation,
    pub state: ProcessState,
    pub exit: Option<ExitStatus>,
    pub restarts: u32,
    /// The last set-point sequence the process acknowledged.
    pub acked_sequence: u64,
    pub usage: Option<ProcessUsage>,
    /// The QoS the application last reported achieving.
    #[serde(default)]
    pub achieved: Vec<(String, f64)>,
    /// SHA-256 (hex) of the token this process was started with: it proves membership
    /// of its session when it registers its control port.
    pub token_hash: String,
    /// When its current incarnation started (unix ms).
    pub started_ms: Option<u64>,
}

/// A session, as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user: String,
    pub application: String,
    /// The variant as it was when the session was admitted; later edits of the
    /// application do not change running sessions. Stored once, beside the record (see
    /// `Store::insert_session`), so that frequent record writes stay small.
    #[serde(skip_serializing, default = "unloaded_variant")]
    pub variant: Arc<VariantDef>,
    pub weight: f64,
    /// Lowest acceptable level index per dimension.
    pub minimum: Vec<u32>,
    /// Current level index per dimension.
    pub setpoint: Vec<u32>,
    pub processes: Vec<ProcessRecord>,
    pub state: SessionState,
    /// Increases with every set-point change.
    pub setpoint_sequence: u64,
    pub created_ms: u64,
    pub ended_ms: Option<u64>,
    pub end_reason: Option<String>,
    pub request_key: Option<String>,
}

/// Stands in for a record's variant between reading the record and reading its variant.
pub(crate) fn unloaded_variant() -> Arc<VariantDef> {
    Arc::new(VariantDef {
        name: String::new(),
        description: String::new(),
        cpu_class: Default::default(),
        deadline_period_ms: 0,
        restart: Default::default(),
        processes: Vec::new(),
        dimensions: Vec::new(),
    })
}

impl SessionRecord {
    /// The node each process runs on.
    pub fn placement(&self) -> Vec<String> {
        self.processes.iter().map(|p| p.node.clone()).collect()
    }

    /// A starting (or restarting) session is running once every process runs.
    pub fn mark_running_once_started(&mut self) {
        if matches!(
            self.state,
            SessionState::Starting | SessionState::Restarting
        ) && self
            .processes
            .iter()
            .all(|p| p.state == ProcessState::Running)
        {
            self.state = SessionState::Running;
        }
    }

    pub fn utility(&self) -> f64 {
        setpoint_utility(&self.variant, &self.setpoint)
    }

    pub fn setpoint_view(&self) -> SetPoint {
        setpoint_view(&self.variant, &self.setpoint)
    }

    pub fn view(&self, control_registered: impl Fn(u32) -> bool) -> SessionView {
        SessionView {
            id: self.id,
            user: self.user.clone(),
            application: self.application.clone(),
            variant: self.variant.name.clone(),
            state: self.state,
            setpoint: self.setpoint_view(),
            utility: self.utility(),
            weight: self.weight,
            minimum: self
                .variant
                .dimensions
                .iter()
                .zip(&self.minimum)
                .map(|(d, &l)| (d.name.clone(), d.levels[l as usize].name.clone()))
                .collect(),
            processes: self
                .processes
                .iter()
                .enumerate()
                .map(|(i, p)| ProcessView {
                    index: i as u32,
                    name: self.variant.processes[i].name.clone(),
                    node: p.node.clone(),
                    state: p.state,
                    pid: p.pid,
                    cgroups: p.cgroups.clone(),
                    reservation: p.reservation.clone(),
                    exit: p.exit,
                    control_registered: control_registered(i as u32),
                    usage: p.usage,
                    achieved: p.achieved.clone(),
                })
                .collect(),
            created_ms: self.created_ms,
            ended_ms: self.ended_ms,
            end_reason: self.end_reason.clone(),
        }
    }
}

/// Utility of a set-point: the sum of its levels' utilities.
pub fn setpoint_utility(variant: &VariantDef, setpoint: &[u32]) -> f64 {
    variant
        .dimensions
        .iter()
        .zip(setpoint)
        .map(|(d, &l)| d.levels[l as usize].utility)
        .sum()
}

/// Names of a set-point's levels.
pub fn setpoint_view(variant: &VariantDef, setpoint: &[u32]) -> SetPoint {
    SetPoint {
        levels: variant
            .dimensions
            .iter()
            .zip(setpoint)
            .map(|(d, &l)| DimensionLevel {
                dimension: d.name.clone(),
                level: d.levels[l as usize].name.clone(),
                index: l,
                value: d.levels[l as usize].value,
            })
            .collect(),
    }
}

/// The scales a set-point applies to every process's base demand: (cpu, memory).
pub fn setpoint_scales(variant: &VariantDef, setpoint: &[u32]) -> (f64, f64) {
    variant
        .dimensions
        .iter()
        .zip(setpoint)
        .fold((1.0, 1.0), |(cpu, mem), (d, &l)| {
            let level = &d.levels[l as usize];
            (cpu * level.cpu_scale, mem * level.memory_scale)
        })
}

/// CPU (in CPUs) and memory (MiB) that process `process` needs at `setpoint`.
pub fn process_demand(variant: &VariantDef, process: usize, setpoint: &[u32]) -> (f64, f64) {
    let (cpu_scale, mem_scale) = setpoint_scales(variant, setpoint);
    let def = &variant.processes[process];
    (def.cpu * cpu_scale, def.memory_mb * mem_scale)
}

/// The product of the net scales a set-point's levels apply to every process's egress.
pub fn setpoint_net_scale(variant: &VariantDef, setpoint: &[u32]) -> f64 {
    variant
        .dimensions
        .iter()
        .zip(setpoint)
        .map(|(d, &l)| d.levels[l as usize].net_scale)
        .product()
}

/// The reservation that backs process `process` at `setpoint`: the CPU share as a cap (or
/// a deadline reservation), memory both guaranteed and capped at the demand, egress
/// bandwidth at the demand (when the process declares any) and its I/O limits.
pub fn process_reservation(variant: &VariantDef, process: usize, setpoint: &[u32]) -> Reservation {
    let (cpus, memory_mb) = process_demand(variant, process, setpoint);
    let cpu = match variant.cpu_class {
        CpuClass::Bandwidth => CpuReservation::Bandwidth { cpus },
        CpuClass::Deadline => {
            let period_us = variant.deadline_period_ms * 1000;
            let runtime_us = ((cpus * period_us as f64).round() as u64).clamp(1, period_us);
            CpuReservation::Deadline {
                runtime_us,
                deadline_us: period_us,
                period_us,
            }
        }
    };
    let memory_bytes = (memory_mb * MIB).ceil() as u64;
    let def = &variant.processes[process];
    let net_mbps = def.net_mbps * setpoint_net_scale(variant, setpoint);
    let net = if net_mbps > 0.0 {
        vec![NetReservation {
            interface: def.net_interface.clone(),
            egress_mbps: net_mbps,
        }]
    } else {
        Vec::new()
    };
    let bytes = |mbps: Option<f64>| mbps.map(|m| ((m * 1e6).round() as u64).max(1));
    let io = def
        .io_device
        .iter()
        .map(|device| IoReservation {
            device: device.clone(),
            read_bytes_per_sec: bytes(def.io_read_mbps),
            write_bytes_per_sec: bytes(def.io_write_mbps),
            read_iops: def.io_read_iops,
            write_iops: def.io_write_iops,
        })
        .collect();
    Reservation {
        cpu,
        memory_max_bytes: memory_bytes,
        memory_min_bytes: memory_bytes,
        pids_max: def.pids_max,
        net,
        io,
    }
}

/// The processes of `variant` placed on `placement` (a node per process) at `setpoint`,
/// not started yet, with `restarts` restarts behind them.
pub fn pending_processes(
    variant: &VariantDef,
    placement: &[String],
    setpoint: &[u32],
    restarts: u32,
) -> Vec<ProcessRecord> {
    placement
        .iter()
        .enumerate()
        .map(|(i, node)| ProcessRecord {
            node: node.clone(),
            pid: None,
            cgroups: Vec::new(),
            reservation: process_reservation(variant, i, setpoint),
            state: ProcessState::Pending,
            exit: None,
            restarts,
            acked_sequence: 0,
            usage: None,
            achieved: Vec::new(),
            token_hash: String::new(),
            started_ms: None,
        })
        .collect()
}

/// Parses `dim=level,dim=level` into level indices over the variant's dimensions.
/// Dimensions not named get their lowest level.
pub fn parse_minimum(
    variant: &VariantDef,
    minimum: &[(String, String)],
) -> Result<Vec<u32>, String> {
    let mut levels = vec![0u32; variant.dimensions.len()];
    for (dimension, level) in minimum {
        let d = variant
            .dimensions
            .iter()
            .position(|d| &d.name == dimension)
            .ok_or_else(|| {
                format!(
                    "variant '{}' has no dimension '{dimension}' (it has: {})",
                    variant.name,
                    variant
                        .dimensions
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let l = variant.dimensions[d]
            .levels
            .iter()
            .position(|l| &l.name == level)
            .ok_or_else(|| {
                format!(
                    "dimension '{dimension}' has no level '{level}' (it has: {})",
                    variant.dimensions[d]
                        .levels
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        levels[d] = l as u32;
    }
    Ok(levels)
}

#[cfg(test)]
mod reservation_tests {
    use super::*;

    #[test]
    fn net_and_io_parts_follow_the_setpoint() {
        let variant: VariantDef = toml::from_str(
            r#"
name = "v"
[[processes]]
name = "sender"
command = ["send"]
cpu = 0.1
memory_mb = 8
net_mbps = 10
net_interface = "eth0"
io_device = "loop0"
io_write_mbps = 5
io_read_iops = 100
[[processes]]
name = "quiet"
command = ["idle"]
cpu = 0.1
memory_mb = 8
[[dimensions]]
name = "rate"
levels = [
  { name = "low", utility = 1, net_scale = 1 },
  { name = "high", utility = 2, net_scale = 5 },
]
"#,
        )
        .unwrap();
        let low = process_reservation(&variant, 0, &[0]);
        let high = process_reservation(&variant, 0, &[1]);
        assert_eq!(low.net.len(), 1);
        assert_eq!(low.net[0].interface, "eth0");
        assert!((low.net[0].egress_mbps - 10.0).abs() < 1e-9);
        assert!((high.net[0].egress_mbps - 50.0).abs() < 1e-9);
        assert_eq!(
            high.io,
            vec![IoReservation {
                device: "loop0".into(),
                read_bytes_per_sec: None,
                write_bytes_per_sec: Some(5_000_000),
                read_iops: Some(100),
                write_iops: None,
            }]
        );
        let quiet = process_reservation(&variant, 1, &[1]);
        assert!(quiet.net.is_empty() && quiet.io.is_empty());
    }
}
