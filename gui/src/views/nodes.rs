//! Nodes: discovered hardware, state, and live utilisation against capacity.

use arq::proto::node::{NodeState, NodeView};
use egui::{RichText, Ui};

use crate::charts;
use crate::format;
use crate::model::Model;
use crate::widgets::{self, BAD, GOOD, MUTED, WARN};

#[derive(Default)]
pub struct NodesView;

fn state_color(state: NodeState) -> egui::Color32 {
    match state {
        NodeState::Up => GOOD,
        NodeState::Unknown => WARN,
        NodeState::Lost => BAD,
    }
}

impl NodesView {
    pub fn ui(&mut self, ui: &mut Ui, model: &Model) {
        let now = format::now_ms();
        ui.add_space(6.0);
        ui.label(RichText::new("Nodes").size(22.0).strong());
        if model.nodes.is_empty() {
            ui.label(
                RichText::new("No node has registered and none is declared in the world.")
                    .color(MUTED),
            );
        }
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for node in &model.nodes {
                    node_card(ui, model, node, now);
                    ui.add_space(8.0);
                }
            });
    }
}

fn node_card(ui: &mut Ui, model: &Model, node: &NodeView, now: u64) {
    egui::Frame::group(ui.style())
        .inner_margin(10.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.label(RichText::new(&node.name).size(18.0).strong());
                widgets::dot(ui, state_color(node.state));
                ui.label(RichText::new(node.state.to_string()).color(state_color(node.state)));
                if !node.labels.is_empty() {
                    ui.label(
                        RichText::new(format!("labels: {}", node.labels.join(", "))).color(MUTED),
                    );
                }
                if let Some(ms) = node.last_heartbeat_ms {
                    ui.label(
                        RichText::new(format!("heartbeat {}", format::ago(ms, now))).color(MUTED),
                    );
                }
            });
            ui.columns(2, |cols| {
                let ui = &mut cols[0];
                match &node.hardware {
                    Some(hw) => {
                        egui::Grid::new(("hardware", &node.name))
                            .num_columns(2)
                            .spacing([12.0, 3.0])
                            .show(ui, |ui| {
                                let mut fact = |k: &str, v: String| {
                                    ui.label(RichText::new(k).color(MUTED));
                                    ui.label(v);
                                    ui.end_row();
                                };
                                fact("Host", hw.hostname.clone());
                                fact("CPU", format!("{} × {}", hw.cpus, hw.cpu_model));
                                fact("Memory", format::bytes(hw.memory_bytes));
                                fact(
                                    "Real-time bound",
                                    format!(
                                        "{:.2} CPUs ({} of {} µs)",
                                        hw.schedulable_cpus(),
                                        hw.rt_runtime_us,
                                        hw.rt_period_us
                                    ),
                                );
                                fact("Kernel", hw.kernel.clone());
                                fact("cgroups", hw.cgroup_mode.clone());
                            });
                    }
                    None => {
                        ui.label(
                            RichText::new("Hardware not known: the node never registered.")
                                .color(MUTED),
                        );
                    }
                }
                let ui = &mut cols[1];
                egui::Grid::new(("resources", &node.name))
                    .num_columns(2)
                    .spacing([12.0, 6.0])
                    .show(ui, |ui| {
                        for r in &node.resources {
                            let kind = r.resource.rsplit('/').next().unwrap_or(&r.resource);
                            let amount = |v: f64| {
                                if r.unit == "MiB" {
                                    format::mib(v)
                                } else {
                                    format!("{v:.2} {}", r.unit)
                                }
                            };
                            ui.label(RichText::new(format!("{kind} reserved")).color(MUTED));
                            widgets::load_bar(
                                ui,
                                r.reserved,
                                r.capacity,
                                format!("{} of {}", amount(r.reserved), amount(r.capacity)),
                            );
                            ui.end_row();
                            if let Some(used) = r.used {
                                ui.label(RichText::new(format!("{kind} used")).color(MUTED));
                                widgets::load_bar(
                                    ui,
                                    used,
                                    r.capacity,
                                    format!("{} of {}", amount(used), amount(r.capacity)),
                                );
                                ui.end_row();
                            }
                        }
                        ui.label(RichText::new("Sessions").color(MUTED));
                        ui.vertical(|ui| {
                            if node.sessions.is_empty() {
                                ui.label("none");
                            }
                            for id in &node.sessions {
                                ui.label(match model.sessions.get(id) {
                                    Some(s) => {
                                        format!("{id} · {} {}/{}", s.user, s.application, s.variant)
                                    }
                                    None => id.to_string(),
                                });
                            }
                        });
                        ui.end_row();
                    });
            });
            if node.state == NodeState::Up {
                ui.add_space(4.0);
                let samples = model.usage.node_samples(&node.name);
                charts::usage_charts(
                    ui,
                    &format!("node-{}", node.name),
                    &samples,
                    now,
                    "reserved",
                );
            }
        });
}
