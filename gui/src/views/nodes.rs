//! Nodes: a table of state, labels and load against capacity — sortable, filtered by
//! chips and a search, laid out only for the rows in view — and the selected node's
//! discovered hardware, sessions and charts. Only the selected node's charts are drawn.

use arq::proto::node::{NodeState, NodeView, ResourceLoad};
use egui::{RichText, Ui};

use crate::app::Action;
use crate::charts;
use crate::format;
use crate::model::{Model, NODE_STATES};
use crate::views::table::{self, Field, Filter, Sort};
use crate::widgets::{self, BAD, GOOD, MUTED, WARN};

/// The nodes table's columns, for sorting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeColumn {
    Name,
    State,
    Labels,
    CpuReserved,
    CpuUsed,
    MemoryReserved,
    MemoryUsed,
    Sessions,
    Heartbeat,
}

#[derive(Debug, Clone, PartialEq)]
struct ShownFor {
    revision: u64,
    filter: Filter,
    sort: Sort<NodeColumn>,
}

pub struct NodesView {
    selected: Option<String>,
    pub filter: Filter,
    pub sort: Sort<NodeColumn>,
    shown: Vec<usize>,
    shown_for: Option<ShownFor>,
    reveal: bool,
}

impl Default for NodesView {
    fn default() -> Self {
        Self {
            selected: None,
            filter: Filter::default(),
            sort: Sort {
                column: NodeColumn::Name,
                descending: false,
            },
            shown: Vec::new(),
            shown_for: None,
            reveal: false,
        }
    }
}

pub fn state_color(state: NodeState) -> egui::Color32 {
    match state {
        NodeState::Up => GOOD,
        NodeState::Unknown => WARN,
        NodeState::Lost => BAD,
    }
}

/// A node's load of one resource kind (`cpu`, `memory`).
pub fn load<'n>(node: &'n NodeView, kind: &str) -> Option<&'n ResourceLoad> {
    node.resources
        .iter()
        .find(|r| r.resource.rsplit('/').next() == Some(kind))
}

/// An amount in its unit: MiB as MiB or GiB, the rest with two decimals.
pub fn amount(value: f64, unit: &str) -> String {
    if unit == "MiB" {
        format::mib(value)
    } else {
        format!("{value:.2} {unit}")
    }
}

fn search_text(node: &NodeView) -> String {
    let host = node.hardware.as_ref().map_or("", |h| h.hostname.as_str());
    format!(
        "{} {} {} {}",
        node.name,
        node.state,
        node.labels.join(" "),
        host
    )
    .to_lowercase()
}

/// The rows a filter and sort give, as indices into `model.nodes`.
pub fn nodes_shown(model: &Model, filter: &Filter, sort: Sort<NodeColumn>) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..model.nodes.len())
        .filter(|&i| {
            let node = &model.nodes[i];
            filter.admits(
                |field, value| match field {
                    Field::State => node.state.to_string() == value,
                    Field::Label => node.labels.iter().any(|l| l == value),
                    Field::Node => node.name == value,
                    Field::User | Field::Application => false,
                },
                || search_text(node),
            )
        })
        .collect();
    let nodes = &model.nodes;
    let number = |node: &NodeView| -> f64 {
        let of = |kind: &str, used: bool| {
            load(node, kind).map_or(-1.0, |r| {
                if used {
                    r.used.unwrap_or(-1.0)
                } else {
                    r.reserved
                }
            })
        };
        match sort.column {
            NodeColumn::CpuReserved => of("cpu", false),
            NodeColumn::CpuUsed => of("cpu", true),
            NodeColumn::MemoryReserved => of("memory", false),
            NodeColumn::MemoryUsed => of("memory", true),
            NodeColumn::Sessions => node.sessions.len() as f64,
            NodeColumn::Heartbeat => node.last_heartbeat_ms.map_or(-1.0, |t| t as f64),
            _ => 0.0,
        }
    };
    // `model.nodes` is in name order, which breaks every tie.
    match sort.column {
        NodeColumn::Name => {}
        NodeColumn::State => rows.sort_by_key(|&i| nodes[i].state.to_string()),
        NodeColumn::Labels => rows.sort_by_cached_key(|&i| nodes[i].labels.join(",")),
        _ => rows.sort_by(|&a, &b| number(&nodes[a]).total_cmp(&number(&nodes[b]))),
    }
    if sort.descending {
        rows.reverse();
    }
    rows
}

impl NodesView {
    /// Selects a node and scrolls the table to it (a link from elsewhere).
    pub fn select(&mut self, name: &str) {
        self.selected = Some(name.to_string());
        self.reveal = true;
    }

    /// Shows only the nodes in `state` (a link from the overview).
    pub fn show_state(&mut self, state: NodeState) {
        self.filter.chips.retain(|c| c.field != Field::State);
        self.filter.add(Field::State, &state.to_string());
    }

    /// The names of the nodes shown, in the table's order.
    pub fn shown<'m>(&self, model: &'m Model) -> Vec<&'m str> {
        self.shown
            .iter()
            .filter_map(|&i| model.nodes.get(i).map(|n| n.name.as_str()))
            .collect()
    }

    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    fn refresh(&mut self, model: &Model) {
        let wanted = ShownFor {
            revision: model.revision,
            filter: self.filter.clone(),
            sort: self.sort,
        };
        if self.shown_for.as_ref() != Some(&wanted) {
            self.shown = nodes_shown(model, &self.filter, self.sort);
            self.shown_for = Some(wanted);
        }
    }

    pub fn ui(&mut self, ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
        let now = format::now_ms();
        self.refresh(model);
        // The selection follows the filter: a node filtered out is not shown in detail.
        if self
            .selected
            .as_deref()
            .is_none_or(|name| !self.shown.iter().any(|&i| model.nodes[i].name == name))
        {
            self.selected = self.shown.first().map(|&i| model.nodes[i].name.clone());
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.label(RichText::new("Nodes").size(22.0).strong());
            ui.add_space(16.0);
            table::search_box(ui, "nodes", &mut self.filter.search, "name, label, host…");
        });
        if model.nodes.is_empty() {
            ui.label(
                RichText::new("No node has registered and none is declared in the world.")
                    .color(MUTED),
            );
            return;
        }
        ui.horizontal_wrapped(|ui| {
            let names: Vec<(String, usize)> = NODE_STATES
                .iter()
                .zip(model.summary.nodes_by_state)
                .filter(|(_, count)| *count > 0)
                .map(|(state, count)| (state.to_string(), count))
                .collect();
            table::toggle_chips(
                ui,
                &mut self.filter,
                Field::State,
                names.iter().map(|(n, c)| (n.as_str(), *c)),
            );
            if !model.summary.labels.is_empty() {
                ui.separator();
                // The most common labels; any other is one search away.
                let common = model.summary.labels.iter().take(12);
                table::toggle_chips(
                    ui,
                    &mut self.filter,
                    Field::Label,
                    common.map(|(l, n)| (l.as_str(), *n)),
                );
            }
            ui.separator();
            table::active_chips(ui, &mut self.filter);
            table::shown_count(ui, self.shown.len(), model.nodes.len(), "nodes");
        });
        ui.add_space(2.0);
        let table_height = (ui.available_height() * 0.45).max(140.0);
        let index = self
            .selected
            .as_deref()
            .and_then(|name| self.shown.iter().position(|&i| model.nodes[i].name == name));
        let mut scroll_to = self.reveal.then_some(index).flatten();
        self.reveal = false;
        if let Some(i) = table::navigate(ui, index, self.shown.len(), table::rows_in(table_height))
        {
            self.selected = Some(model.nodes[self.shown[i]].name.clone());
            scroll_to = Some(i);
        }
        self.table(ui, model, table_height, scroll_to, now);
        ui.separator();
        egui::ScrollArea::vertical()
            .id_salt("node_details")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                match self.selected.as_deref().and_then(|n| model.node(n)) {
                    Some(node) => node_card(ui, model, node, now, actions),
                    None => {
                        ui.label(RichText::new("Select a node to see its details.").color(MUTED));
                    }
                }
            });
    }

    fn table(
        &mut self,
        ui: &mut Ui,
        model: &Model,
        height: f32,
        scroll_to: Option<usize>,
        now: u64,
    ) {
        let columns = [
            (120.0, 60.0, true),
            (70.0, 50.0, false),
            (120.0, 40.0, true),
            (130.0, 60.0, false),
            (80.0, 50.0, false),
            (150.0, 60.0, false),
            (90.0, 50.0, false),
            (70.0, 40.0, false),
            (90.0, 70.0, false),
        ];
        let sort = &mut self.sort;
        table::builder(ui, "nodes_table", height, scroll_to, &columns, 8)
            .header(table::HEADER_HEIGHT, |mut header| {
                table::sort_headers(
                    &mut header,
                    sort,
                    &[
                        (NodeColumn::Name, "Node"),
                        (NodeColumn::State, "State"),
                        (NodeColumn::Labels, "Labels"),
                        (NodeColumn::CpuReserved, "CPU reserved"),
                        (NodeColumn::CpuUsed, "CPU used"),
                        (NodeColumn::MemoryReserved, "Memory reserved"),
                        (NodeColumn::MemoryUsed, "Memory used"),
                        (NodeColumn::Sessions, "Sessions"),
                        (NodeColumn::Heartbeat, "Heartbeat"),
                    ],
                    "nodes",
                );
            })
            .body(|body| {
                body.rows(table::ROW_HEIGHT, self.shown.len(), |mut row| {
                    let Some(node) = model.nodes.get(self.shown[row.index()]) else {
                        return;
                    };
                    let selected = self.selected.as_deref() == Some(node.name.as_str());
                    row.set_selected(selected);
                    row.col(|ui| {
                        if ui.selectable_label(selected, &node.name).clicked() {
                            self.selected = Some(node.name.clone());
                        }
                    });
                    row.col(|ui| {
                        widgets::dot(ui, state_color(node.state));
                        ui.label(
                            RichText::new(node.state.to_string()).color(state_color(node.state)),
                        );
                    });
                    row.col(|ui| {
                        for label in &node.labels {
                            if ui
                                .add(egui::Button::new(label.as_str()).frame(false))
                                .on_hover_text("Filter by this label")
                                .clicked()
                            {
                                self.filter.add(Field::Label, label);
                            }
                        }
                    });
                    for (kind, used) in [
                        ("cpu", false),
                        ("cpu", true),
                        ("memory", false),
                        ("memory", true),
                    ] {
                        row.col(|ui| match load(node, kind) {
                            Some(r) if !used => {
                                ui.label(format!(
                                    "{} / {}",
                                    amount(r.reserved, &r.unit),
                                    amount(r.capacity, &r.unit)
                                ));
                            }
                            Some(r) => {
                                ui.label(r.used.map_or("—".into(), |u| amount(u, &r.unit)));
                            }
                            None => {
                                ui.label("—");
                            }
                        });
                    }
                    row.col(|ui| {
                        ui.label(node.sessions.len().to_string());
                    });
                    row.col(|ui| {
                        ui.label(
                            node.last_heartbeat_ms
                                .map_or("never".into(), |ms| format::ago(ms, now)),
                        );
                    });
                    if row.response().clicked() {
                        self.selected = Some(node.name.clone());
                    }
                });
            });
    }
}

fn node_card(ui: &mut Ui, model: &Model, node: &NodeView, now: u64, actions: &mut Vec<Action>) {
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
                                let text = match model.sessions.get(id) {
                                    Some(s) => {
                                        format!("{id} · {} {}/{}", s.user, s.application, s.variant)
                                    }
                                    None => id.to_string(),
                                };
                                if ui.link(text).on_hover_text("Show this session").clicked() {
                                    actions.push(Action::ShowSession(*id));
                                }
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
