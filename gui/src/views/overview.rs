//! The cluster at a glance, the admin's first page: capacity, reserved and used per
//! resource kind summed over every node's loads, the total utility and its trend, sessions
//! by state, nodes up and lost, and the latest rejections and degradations.

use arq::proto::control::SetPointDirection;
use arq::proto::event::{Event, EventKind};
use arq::proto::node::NodeState;
use egui::{RichText, Ui};
use egui_plot::{Line, PlotPoints};

use crate::app::Action;
use crate::charts;
use crate::format;
pub use crate::model::{KindTotal, cluster_totals};
use crate::model::{Model, SESSION_STATES};
use crate::views::nodes::{amount, state_color};
use crate::views::table::thousands;
use crate::widgets::{self, BAD, MUTED};

/// How many lost nodes are named one by one; the rest are one click away.
const LOST_LISTED: usize = 40;
/// How many rejections and degradations are listed.
const RECENT: usize = 8;

/// A set-point lowered by Q-RAM: a session degraded to make room or to follow a change.
pub fn is_degradation(event: &Event) -> bool {
    matches!(
        event.kind,
        EventKind::SetPointSent {
            direction: SetPointDirection::Lower,
            ..
        }
    )
}

pub fn is_rejection(event: &Event) -> bool {
    matches!(event.kind, EventKind::SessionRejected { .. })
}

#[derive(Default)]
pub struct OverviewView;

impl OverviewView {
    pub fn ui(&mut self, ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
        let now = format::now_ms();
        ui.add_space(6.0);
        ui.label(RichText::new("Cluster overview").size(22.0).strong());
        ui.add_space(4.0);
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| nodes(ui, model, actions));
                    ui.add_space(40.0);
                    ui.vertical(|ui| sessions_by_state(ui, model, actions));
                });
                resources(ui, model);
                utility(ui, model, now);
                recent(ui, model, actions);
            });
    }
}

fn resources(ui: &mut Ui, model: &Model) {
    widgets::section(ui, "Resources");
    let totals = &model.summary.resources;
    if totals.is_empty() {
        ui.label(RichText::new("No node reports any resource.").color(MUTED));
        return;
    }
    egui::Grid::new("cluster_resources")
        .num_columns(4)
        .spacing([14.0, 6.0])
        .show(ui, |ui| {
            for title in ["Resource", "Capacity", "Reserved", "Used"] {
                ui.label(RichText::new(title).strong());
            }
            ui.end_row();
            for t in totals {
                ui.label(&t.kind);
                ui.label(amount(t.capacity, &t.unit))
                    .on_hover_text(format!("summed over {} nodes", thousands(t.nodes)));
                ui.label(amount(t.reserved, &t.unit));
                if t.reporting > 0 {
                    ui.label(amount(t.used, &t.unit)).on_hover_text(format!(
                        "measured on {} of {} nodes",
                        thousands(t.reporting),
                        thousands(t.nodes)
                    ));
                } else {
                    ui.label("—");
                }
                ui.end_row();
                ui.label("");
                let percent = |v: f64| {
                    if t.capacity > 0.0 {
                        format!("{:.0} %", 100.0 * v / t.capacity)
                    } else {
                        "—".into()
                    }
                };
                ui.label("");
                widgets::load_bar(ui, t.reserved, t.capacity, percent(t.reserved))
                    .on_hover_text(format!("{} reserved", t.kind));
                if t.reporting > 0 {
                    widgets::load_bar(ui, t.used, t.capacity, percent(t.used))
                        .on_hover_text(format!("{} used", t.kind));
                }
                ui.end_row();
            }
        });
}

fn utility(ui: &mut Ui, model: &Model, now: u64) {
    widgets::section(ui, "Total utility");
    let (total, weighted) = (model.summary.utility, model.summary.weighted_utility);
    let samples: Vec<&(u64, f64)> = model.usage.utility_samples().collect();
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("{total:.2}")).size(20.0).strong())
            .on_hover_text("The sum of the live sessions' utility");
        ui.label(RichText::new(format!("weighted {weighted:.2}")).color(MUTED))
            .on_hover_text("Each session's utility times its weight: what Q-RAM maximises");
        if let Some((since, first)) = samples.first() {
            let change = total - first;
            ui.label(
                RichText::new(format!(
                    "{change:+.2} in the last {}",
                    format::duration(now.saturating_sub(*since))
                ))
                .color(MUTED),
            )
            .on_hover_text("Since this window first saw the sessions");
        }
    });
    let points: Vec<[f64; 2]> = samples
        .iter()
        .map(|(t, u)| [-(now.saturating_sub(*t) as f64) / 1000.0, *u])
        .collect();
    let top = points.iter().map(|p| p[1]).fold(0.0, f64::max);
    let width = ui.available_width().min(720.0);
    charts::time_plot("cluster_utility", 120.0, top * 1.2)
        .width(width)
        .show(ui, |plot| {
            plot.line(Line::new("total utility", PlotPoints::new(points)));
        });
}

fn sessions_by_state(ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
    widgets::section(ui, "Sessions by state");
    ui.horizontal_wrapped(|ui| {
        for (state, count) in SESSION_STATES.iter().zip(model.summary.sessions_by_state) {
            let text = RichText::new(format!("{} {state}", thousands(count)))
                .color(widgets::state_color(*state));
            if ui
                .link(text)
                .on_hover_text(format!("Show the {state} sessions"))
                .clicked()
            {
                actions.push(Action::ShowSessionsIn(*state));
            }
        }
    });
}

fn nodes(ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
    widgets::section(ui, "Nodes");
    let count = |state| model.summary.nodes_in(state);
    let (up, lost, unknown) = (
        count(NodeState::Up),
        count(NodeState::Lost),
        count(NodeState::Unknown),
    );
    ui.horizontal_wrapped(|ui| {
        for (state, n) in [
            (NodeState::Up, up),
            (NodeState::Lost, lost),
            (NodeState::Unknown, unknown),
        ] {
            let text = RichText::new(format!("{} {state}", thousands(n))).color(state_color(state));
            let text = if state == NodeState::Lost && n > 0 {
                text.strong()
            } else {
                text
            };
            if ui
                .link(text)
                .on_hover_text(format!("Show the {state} nodes"))
                .clicked()
            {
                actions.push(Action::ShowNodesIn(state));
            }
        }
    });
    if lost == 0 {
        return;
    }
    ui.add_space(2.0);
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Lost:").color(BAD));
        for node in model
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Lost)
            .take(LOST_LISTED)
        {
            if ui
                .link(RichText::new(&node.name).color(BAD))
                .on_hover_text(match node.last_heartbeat_ms {
                    Some(ms) => format!("last heartbeat {}", format::date_time(ms)),
                    None => "never heartbeat".into(),
                })
                .clicked()
            {
                actions.push(Action::ShowNode(node.name.clone()));
            }
        }
        if lost > LOST_LISTED
            && ui
                .link(format!("and {} more", thousands(lost - LOST_LISTED)))
                .clicked()
        {
            actions.push(Action::ShowNodesIn(NodeState::Lost));
        }
    });
}

fn recent(ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
    for (title, keep, none) in [
        (
            "Recent rejections",
            is_rejection as fn(&Event) -> bool,
            "No rejection among the events loaded.",
        ),
        (
            "Recent degradations (set-points lowered)",
            is_degradation,
            "No set-point was lowered among the events loaded.",
        ),
    ] {
        widgets::section(ui, title);
        let events: Vec<&Event> = model
            .events
            .iter()
            .rev()
            .filter(|e| keep(e))
            .take(RECENT)
            .collect();
        if events.is_empty() {
            ui.label(RichText::new(none).color(MUTED));
        }
        for event in events {
            ui.horizontal_top(|ui| {
                if let Some(id) = event.session
                    && ui
                        .link(format!("Session {id}"))
                        .on_hover_text("Show this session")
                        .clicked()
                {
                    actions.push(Action::ShowSession(id));
                }
                widgets::event_line(ui, event, &[]);
            });
        }
    }
}
