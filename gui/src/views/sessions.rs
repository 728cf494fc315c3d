//! Sessions, live: state, node, set-point, utility, reservation and usage, with charts of
//! CPU and memory over time; ending a session. Users see their own, admins every one.

use arq::proto::session::{ProcessState, SessionId, SessionView};
use egui::{RichText, Ui};

use crate::app::{Action, Confirm};
use crate::charts;
use crate::connection::{Command, Outcome};
use crate::format;
use crate::model::Model;
use crate::widgets::{self, BAD, MUTED};

#[derive(Default)]
pub struct SessionsView {
    selected: Option<SessionId>,
    show_ended: bool,
    only_mine: bool,
    /// Sessions whose end was asked for and not yet answered.
    ending: Vec<SessionId>,
}

fn node_of(session: &SessionView) -> String {
    let mut nodes: Vec<&str> = session
        .processes
        .iter()
        .map(|p| p.node.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    nodes.dedup();
    if nodes.is_empty() {
        "—".into()
    } else {
        nodes.join(", ")
    }
}

impl SessionsView {
    pub fn on_outcome(&mut self, outcome: &Outcome) {
        if let Outcome::Terminated(id, _) = outcome {
            self.ending.retain(|e| e != id);
        }
        if let Outcome::Requested(Ok(arq::proto::session::AdmissionOutcome::Admitted {
            session,
            ..
        })) = outcome
        {
            self.selected = Some(session.id);
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut Ui,
        model: &Model,
        me: &str,
        admin: bool,
        actions: &mut Vec<Action>,
    ) {
        let now = format::now_ms();
        let shown: Vec<&SessionView> = model
            .sessions
            .values()
            .rev()
            .filter(|s| self.show_ended || s.state.is_live())
            .filter(|s| !(admin && self.only_mine) || s.user == me)
            .collect();
        if self
            .selected
            .is_none_or(|id| !model.sessions.contains_key(&id))
        {
            self.selected = shown.iter().find(|s| s.state.is_live()).map(|s| s.id);
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(if admin { "All sessions" } else { "My sessions" })
                    .size(22.0)
                    .strong(),
            );
            ui.add_space(16.0);
            ui.checkbox(&mut self.show_ended, "Show ended sessions");
            if admin {
                ui.checkbox(&mut self.only_mine, "Only mine");
            }
        });
        ui.add_space(4.0);
        if shown.is_empty() {
            ui.label(
                RichText::new(if self.show_ended {
                    "No sessions yet. Request one under Applications."
                } else {
                    "No live sessions. Request one under Applications."
                })
                .color(MUTED),
            );
        }
        let table_height = (ui.available_height() * 0.38).max(120.0);
        egui::ScrollArea::both()
            .id_salt("sessions_table")
            .max_height(table_height)
            .auto_shrink([false, true])
            .show(ui, |ui| {
                egui::Grid::new("sessions")
                    .striped(true)
                    .num_columns(12)
                    .spacing([14.0, 6.0])
                    .min_col_width(20.0)
                    .show(ui, |ui| {
                        for title in [
                            "Session",
                            "User",
                            "Application",
                            "State",
                            "Node",
                            "Set-point",
                            "Utility",
                            "CPU reserved",
                            "CPU used",
                            "Memory used",
                            "Age",
                            "",
                        ] {
                            ui.label(RichText::new(title).strong());
                        }
                        ui.end_row();
                        for s in &shown {
                            self.row(ui, s, now, actions);
                        }
                    });
            });
        ui.separator();
        let selected = self.selected.and_then(|id| model.sessions.get(&id));
        egui::ScrollArea::vertical()
            .id_salt("session_details")
            .auto_shrink([false, false])
            .show(ui, |ui| match selected {
                Some(session) => self.details(ui, model, session, now, actions),
                None => {
                    ui.label(RichText::new("Select a session to see its details.").color(MUTED));
                }
            });
    }

    fn row(&mut self, ui: &mut Ui, s: &SessionView, now: u64, actions: &mut Vec<Action>) {
        let sample = charts::session_sample(s, now);
        if ui
            .selectable_label(self.selected == Some(s.id), format!("Session {}", s.id))
            .clicked()
        {
            self.selected = Some(s.id);
        }
        ui.label(&s.user);
        ui.label(format!("{}/{}", s.application, s.variant));
        widgets::state_label(ui, s.state);
        ui.label(node_of(s));
        ui.label(s.setpoint.to_string());
        ui.label(format!("{:.2}", s.utility));
        if s.state.is_live() {
            ui.label(format::cpus(sample.cpu_reserved));
            ui.label(sample.cpu_used.map_or("—".into(), format::cpus));
            ui.label(sample.memory_used.map_or("—".into(), format::mib));
        } else {
            for _ in 0..3 {
                ui.label("—");
            }
        }
        let end = s.ended_ms.unwrap_or(now);
        ui.label(format::duration(end.saturating_sub(s.created_ms)));
        self.end_button(ui, s, format!("End session {}", s.id), actions);
        ui.end_row();
    }

    /// A session's end was confirmed and sent.
    pub fn mark_ending(&mut self, id: SessionId) {
        self.ending.push(id);
    }

    fn end_button(
        &mut self,
        ui: &mut Ui,
        s: &SessionView,
        text: String,
        actions: &mut Vec<Action>,
    ) {
        if !s.state.is_live() {
            ui.label("");
            return;
        }
        if self.ending.contains(&s.id) {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("ending…");
            });
            return;
        }
        if ui.button(RichText::new(text).color(BAD)).clicked() {
            actions.push(Action::Confirm(Confirm {
                title: format!("End session {}?", s.id),
                body: format!(
                    "{}/{} of {} stops now: its processes are killed and its reservation freed.",
                    s.application, s.variant, s.user
                ),
                button: "End it".into(),
                command: Command::Terminate(s.id),
            }));
        }
    }

    fn details(
        &mut self,
        ui: &mut Ui,
        model: &Model,
        s: &SessionView,
        now: u64,
        actions: &mut Vec<Action>,
    ) {
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!(
                    "Session {} · {}/{}",
                    s.id, s.application, s.variant
                ))
                .size(18.0)
                .strong(),
            );
            widgets::state_label(ui, s.state);
        });
        egui::Grid::new("session_facts")
            .num_columns(4)
            .spacing([16.0, 4.0])
            .show(ui, |ui| {
                let fact = |ui: &mut Ui, k: &str, v: String| {
                    ui.label(RichText::new(k).color(MUTED));
                    ui.label(v);
                };
                fact(ui, "User", s.user.clone());
                fact(ui, "Node", node_of(s));
                ui.end_row();
                fact(ui, "Set-point", s.setpoint.to_string());
                fact(
                    ui,
                    "Utility",
                    format!("{:.3} (weight {:.2})", s.utility, s.weight),
                );
                ui.end_row();
                let minimum = if s.minimum.is_empty() {
                    "none".to_string()
                } else {
                    s.minimum
                        .iter()
                        .map(|(d, l)| format!("{d}≥{l}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                fact(ui, "Minimum", minimum);
                fact(ui, "Started", format::date_time(s.created_ms));
                ui.end_row();
                if let Some(ended) = s.ended_ms {
                    fact(ui, "Ended", format::date_time(ended));
                    fact(ui, "Why", s.end_reason.clone().unwrap_or_default());
                    ui.end_row();
                }
            });
        widgets::section(ui, "Processes");
        egui::Grid::new("session_processes")
            .striped(true)
            .num_columns(8)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                for title in [
                    "Process",
                    "Node",
                    "PID",
                    "State",
                    "Reservation",
                    "CPU used",
                    "Memory (peak)",
                    "Control port",
                ] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                for p in &s.processes {
                    ui.label(&p.name);
                    ui.label(&p.node);
                    ui.label(p.pid.map_or("—".into(), |pid| pid.to_string()));
                    ui.label(match (p.state, p.exit) {
                        (ProcessState::Exited, Some(exit)) => format!("exited ({exit})"),
                        (state, _) => format!("{state:?}").to_lowercase(),
                    });
                    ui.label(p.reservation.to_string());
                    match p.usage {
                        Some(u) => {
                            ui.label(format::cpus(u.cpu_rate));
                            ui.label(format!(
                                "{} ({})",
                                format::bytes(u.memory_current_bytes),
                                format::bytes(u.memory_peak_bytes)
                            ));
                        }
                        None => {
                            ui.label("—");
                            ui.label("—");
                        }
                    }
                    ui.label(if p.control_registered {
                        "registered"
                    } else {
                        "not registered"
                    });
                    ui.end_row();
                }
            });
        if s.state.is_live() {
            widgets::section(ui, "Usage");
            let samples = model.usage.session_samples(s.id);
            charts::usage_charts(ui, &format!("session-{}", s.id), &samples, now, "limit");
            ui.add_space(6.0);
            self.end_button(ui, s, "End this session".into(), actions);
        }
        widgets::section(ui, "Events of this session");
        let events: Vec<_> = model.session_events(s.id).collect();
        if events.is_empty() {
            ui.label(RichText::new("No events recorded yet.").color(MUTED));
        }
        egui::Grid::new("session_events")
            .striped(true)
            .num_columns(2)
            .spacing([14.0, 2.0])
            .show(ui, |ui| {
                for event in events.iter().rev().take(50) {
                    ui.label(RichText::new(format::clock(event.time_ms)).color(MUTED));
                    ui.label(event.kind.to_string());
                    ui.end_row();
                }
            });
    }
}
