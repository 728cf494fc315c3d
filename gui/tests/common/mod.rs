//! Plain data for the view tests: nodes and sessions as Sesco sends them, fed to the app's
//! model through the same updates the connection delivers.

#![allow(dead_code)]

use arq::proto::node::{NodeState, NodeView, ResourceLoad};
use arq::proto::session::{
    CpuReservation, DimensionLevel, ProcessState, ProcessUsage, ProcessView, Reservation,
    SessionId, SessionState, SessionView, SetPoint,
};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sesco_gui::connection::Update;
use sesco_gui::model::Model;

pub const MIB: u64 = 1024 * 1024;

/// A node with CPU and memory loads; `used` is `None` for a node that reports no use.
pub fn node(
    name: &str,
    state: NodeState,
    labels: &[&str],
    cpu: (f64, f64, Option<f64>),
    memory_mb: (f64, f64, Option<f64>),
    sessions: &[u64],
) -> NodeView {
    NodeView {
        name: name.into(),
        state,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        hardware: None,
        resources: vec![
            ResourceLoad {
                resource: format!("{name}/cpu"),
                capacity: cpu.0,
                reserved: cpu.1,
                used: cpu.2,
                unit: "CPUs".into(),
            },
            ResourceLoad {
                resource: format!("{name}/memory"),
                capacity: memory_mb.0,
                reserved: memory_mb.1,
                used: memory_mb.2,
                unit: "MiB".into(),
            },
        ],
        last_heartbeat_ms: (state == NodeState::Up).then(sesco_gui::format::now_ms),
        sessions: sessions.iter().map(|id| SessionId(*id)).collect(),
    }
}

/// A one-process session on `node`, reserving `cpus` and using half of it.
#[allow(clippy::too_many_arguments)]
pub fn session(
    id: u64,
    user: &str,
    application: &str,
    variant: &str,
    state: SessionState,
    node: &str,
    utility: f64,
    cpus: f64,
) -> SessionView {
    let live = state.is_live();
    SessionView {
        id: SessionId(id),
        user: user.into(),
        application: application.into(),
        variant: variant.into(),
        state,
        setpoint: SetPoint {
            levels: vec![DimensionLevel {
                dimension: "frame_rate".into(),
                level: "30fps".into(),
                index: 2,
                value: 30.0,
            }],
        },
        utility,
        weight: 1.0,
        minimum: Vec::new(),
        processes: vec![ProcessView {
            index: 0,
            name: "main".into(),
            node: node.into(),
            state: if live {
                ProcessState::Running
            } else {
                ProcessState::Exited
            },
            pid: live.then_some(1000 + id as u32),
            cgroups: Vec::new(),
            reservation: Reservation {
                cpu: CpuReservation::Bandwidth { cpus },
                memory_max_bytes: 64 * MIB,
                memory_min_bytes: 0,
                pids_max: 64,
                net: Vec::new(),
                io: Vec::new(),
            },
            exit: None,
            control_registered: true,
            usage: live.then_some(ProcessUsage {
                cpu_time_us: 1_000_000,
                cpu_rate: cpus / 2.0,
                throttled_us: 0,
                memory_current_bytes: 32 * MIB,
                memory_peak_bytes: 40 * MIB,
                oom_kills: 0,
            }),
            achieved: Vec::new(),
        }],
        created_ms: sesco_gui::format::now_ms() - 60_000 + id,
        ended_ms: (!live).then(sesco_gui::format::now_ms),
        end_reason: None,
    }
}

/// The model after Sesco sent these nodes and sessions.
pub fn model(nodes: Vec<NodeView>, sessions: Vec<SessionView>) -> Model {
    let mut model = Model::default();
    model.apply(&Update::Nodes(nodes));
    model.apply(&Update::Sessions {
        sessions,
        complete: true,
    });
    model
}

/// Which of `labels` are on screen, top to bottom (by where each first appears).
pub fn shown_in_order<S>(harness: &Harness<'_, S>, labels: &[String]) -> Vec<String> {
    let mut shown: Vec<(f32, String)> = labels
        .iter()
        .filter_map(|label| {
            harness
                .query_all_by_label(label)
                .map(|node| node.rect().top())
                .min_by(f32::total_cmp)
                .map(|top| (top, label.clone()))
        })
        .collect();
    shown.sort_by(|a, b| a.0.total_cmp(&b.0));
    shown.into_iter().map(|(_, label)| label).collect()
}
