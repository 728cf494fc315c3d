//! Sessions, live: a table of state, node, set-point, utility, reservation and usage —
//! sortable, filtered by chips and a search, laid out only for the rows in view — and the
//! selected session's details with charts of CPU and memory over time; ending a session.
//! Users see their own, admins every one.

use arq::proto::session::{ProcessState, SessionId, SessionState, SessionView};
use egui::{RichText, Ui};

use crate::app::{Action, Confirm};
use crate::charts;
use crate::connection::{Command, Outcome};
use crate::format;
use crate::model::{Model, SESSION_STATES};
use crate::views::table::{self, Field, Filter, Sort};
use crate::widgets::{self, BAD, MUTED};

/// The sessions table's columns, for sorting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionColumn {
    Id,
    User,
    Application,
    State,
    Node,
    SetPoint,
    Utility,
    CpuReserved,
    CpuUsed,
    MemoryUsed,
    Age,
}

/// Everything the shown rows depend on besides the data.
#[derive(Debug, Clone, PartialEq)]
struct ShownFor {
    revision: u64,
    filter: Filter,
    sort: Sort<SessionColumn>,
    show_ended: bool,
    only_mine: bool,
    admin: bool,
    me: String,
}

pub struct SessionsView {
    selected: Option<SessionId>,
    pub show_ended: bool,
    only_mine: bool,
    /// Sessions whose end was asked for and not yet answered.
    ending: Vec<SessionId>,
    pub filter: Filter,
    pub sort: Sort<SessionColumn>,
    /// The rows shown, filtered and sorted, and what they were computed for.
    shown: Vec<SessionId>,
    shown_for: Option<ShownFor>,
    /// Scroll the table to the selected row on the next frame.
    reveal: bool,
}

impl Default for SessionsView {
    fn default() -> Self {
        Self {
            selected: None,
            show_ended: false,
            only_mine: false,
            ending: Vec::new(),
            filter: Filter::default(),
            // Newest first.
            sort: Sort {
                column: SessionColumn::Id,
                descending: true,
            },
            shown: Vec::new(),
            shown_for: None,
            reveal: false,
        }
    }
}

/// The nodes a session's processes run on, in process order, without repeats.
pub fn nodes_of(session: &SessionView) -> Vec<&str> {
    let mut nodes: Vec<&str> = Vec::new();
    for p in &session.processes {
        if !p.node.is_empty() && !nodes.contains(&p.node.as_str()) {
            nodes.push(&p.node);
        }
    }
    nodes
}

fn node_of(session: &SessionView) -> String {
    let nodes = nodes_of(session);
    if nodes.is_empty() {
        "—".into()
    } else {
        nodes.join(", ")
    }
}

/// A cell's value as a link that adds a filter chip.
fn chip_link(ui: &mut Ui, text: &str, hint: &str) -> egui::Response {
    ui.add(egui::Button::new(text).frame(false))
        .on_hover_text(hint)
}

/// What the search looks in: number, user, application, variant, state, nodes, set-point.
fn search_text(s: &SessionView) -> String {
    format!(
        "session {} {} {}/{} {} {} {}",
        s.id,
        s.user,
        s.application,
        s.variant,
        s.state,
        node_of(s),
        s.setpoint
    )
    .to_lowercase()
}

/// The rows a filter and sort give, as session ids.
pub fn sessions_shown(
    model: &Model,
    filter: &Filter,
    sort: Sort<SessionColumn>,
    keep: impl Fn(&SessionView) -> bool,
) -> Vec<SessionId> {
    let now = format::now_ms();
    let mut rows: Vec<&SessionView> = model
        .sessions
        .values()
        .filter(|s| keep(s))
        .filter(|s| {
            filter.admits(
                |field, value| match field {
                    Field::State => s.state.as_str() == value,
                    Field::User => s.user == value,
                    Field::Application => s.application == value,
                    Field::Node => nodes_of(s).contains(&value),
                    Field::Label => false,
                },
                || search_text(s),
            )
        })
        .collect();
    // Ties (and the id column) in id order, so that the order is total and stable.
    rows.sort_by_key(|s| s.id);
    let number = |s: &SessionView| -> f64 {
        let sample = charts::session_sample(s, now);
        match sort.column {
            SessionColumn::Utility => s.utility,
            SessionColumn::CpuReserved => sample.cpu_reserved,
            SessionColumn::CpuUsed => sample.cpu_used.unwrap_or(-1.0),
            SessionColumn::MemoryUsed => sample.memory_used.unwrap_or(-1.0),
            SessionColumn::Age => s.ended_ms.unwrap_or(now).saturating_sub(s.created_ms) as f64,
            _ => 0.0,
        }
    };
    match sort.column {
        SessionColumn::Id => {}
        SessionColumn::User => rows.sort_by(|a, b| a.user.cmp(&b.user)),
        SessionColumn::Application => {
            rows.sort_by(|a, b| (&a.application, &a.variant).cmp(&(&b.application, &b.variant)))
        }
        SessionColumn::State => rows.sort_by_key(|s| s.state.as_str()),
        SessionColumn::Node => rows.sort_by_cached_key(|s| node_of(s)),
        SessionColumn::SetPoint => rows.sort_by_cached_key(|s| s.setpoint.to_string()),
        _ => {
            let mut keyed: Vec<(f64, &SessionView)> =
                rows.iter().map(|s| (number(s), *s)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows = keyed.into_iter().map(|(_, s)| s).collect();
        }
    }
    if sort.descending {
        rows.reverse();
    }
    rows.into_iter().map(|s| s.id).collect()
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
            self.select(session.id);
        }
    }

    /// Selects a session and scrolls the table to it (a link from elsewhere).
    pub fn select(&mut self, id: SessionId) {
        self.selected = Some(id);
        self.reveal = true;
    }

    /// Shows only the sessions in `state` (a link from the overview).
    pub fn show_state(&mut self, state: SessionState) {
        self.filter.chips.retain(|c| c.field != Field::State);
        self.filter.add(Field::State, state.as_str());
        if !state.is_live() {
            self.show_ended = true;
        }
    }

    /// The sessions shown, in the table's order.
    pub fn shown(&self) -> &[SessionId] {
        &self.shown
    }

    pub fn selected(&self) -> Option<SessionId> {
        self.selected
    }

    fn refresh(&mut self, model: &Model, me: &str, admin: bool) {
        let wanted = ShownFor {
            revision: model.revision,
            filter: self.filter.clone(),
            sort: self.sort,
            show_ended: self.show_ended,
            only_mine: self.only_mine,
            admin,
            me: me.to_string(),
        };
        if self.shown_for.as_ref() == Some(&wanted) {
            return;
        }
        let (show_ended, only_mine) = (self.show_ended, admin && self.only_mine);
        self.shown = sessions_shown(model, &self.filter, self.sort, |s| {
            (show_ended || s.state.is_live()) && (!only_mine || s.user == me)
        });
        self.shown_for = Some(wanted);
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
        self.refresh(model, me, admin);
        // The selection follows the filter: a session filtered out is not shown in detail.
        let mut index = self
            .selected
            .and_then(|id| self.shown.iter().position(|s| *s == id));
        if index.is_none() {
            self.selected = self.shown.first().copied();
            index = self.selected.map(|_| 0);
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(if admin { "All sessions" } else { "My sessions" })
                    .size(22.0)
                    .strong(),
            );
            ui.add_space(16.0);
            table::search_box(
                ui,
                "sessions",
                &mut self.filter.search,
                "user, application, node, set-point…",
            );
            ui.checkbox(&mut self.show_ended, "Show ended sessions");
            if admin {
                ui.checkbox(&mut self.only_mine, "Only mine");
            }
        });
        ui.horizontal_wrapped(|ui| {
            let values = SESSION_STATES
                .iter()
                .zip(model.summary.sessions_by_state)
                .filter(|(state, count)| *count > 0 && (self.show_ended || state.is_live()))
                .map(|(state, count)| (state.as_str(), count));
            table::toggle_chips(ui, &mut self.filter, Field::State, values);
            ui.separator();
            table::active_chips(ui, &mut self.filter);
            table::shown_count(ui, self.shown.len(), model.sessions.len(), "sessions");
        });
        ui.add_space(2.0);
        if self.shown.is_empty() {
            ui.label(
                RichText::new(
                    if !self.filter.chips.is_empty() || !self.filter.search.is_empty() {
                        "No session matches the filters."
                    } else if self.show_ended {
                        "No sessions yet. Request one under Applications."
                    } else {
                        "No live sessions. Request one under Applications."
                    },
                )
                .color(MUTED),
            );
        }
        let table_height = (ui.available_height() * 0.5).max(140.0);
        let mut scroll_to = self.reveal.then_some(index).flatten();
        self.reveal = false;
        if let Some(i) = table::navigate(ui, index, self.shown.len(), table::rows_in(table_height))
        {
            self.selected = Some(self.shown[i]);
            scroll_to = Some(i);
        }
        self.table(ui, model, table_height, scroll_to, now, admin, actions);
        ui.separator();
        let selected = self.selected.and_then(|id| model.sessions.get(&id));
        egui::ScrollArea::vertical()
            .id_salt("session_details")
            .auto_shrink([false, false])
            .show(ui, |ui| match selected {
                Some(session) => self.details(ui, model, session, now, admin, actions),
                None => {
                    ui.label(RichText::new("Select a session to see its details.").color(MUTED));
                }
            });
    }

    #[allow(clippy::too_many_arguments)]
    fn table(
        &mut self,
        ui: &mut Ui,
        model: &Model,
        height: f32,
        scroll_to: Option<usize>,
        now: u64,
        admin: bool,
        actions: &mut Vec<Action>,
    ) {
        let columns = [
            (84.0, 60.0, false),
            (80.0, 40.0, true),
            (140.0, 60.0, true),
            (76.0, 50.0, false),
            (90.0, 40.0, true),
            (120.0, 80.0, true),
            (56.0, 40.0, false),
            (84.0, 50.0, false),
            (70.0, 50.0, false),
            (84.0, 50.0, false),
            (76.0, 50.0, false),
            (64.0, 40.0, false),
        ];
        let sort = &mut self.sort;
        table::builder(ui, "sessions_table", height, scroll_to, &columns, 5)
            .header(table::HEADER_HEIGHT, |mut header| {
                table::sort_headers(
                    &mut header,
                    sort,
                    &[
                        (SessionColumn::Id, "Session"),
                        (SessionColumn::User, "User"),
                        (SessionColumn::Application, "Application"),
                        (SessionColumn::State, "State"),
                        (SessionColumn::Node, "Node"),
                        (SessionColumn::SetPoint, "Set-point"),
                        (SessionColumn::Utility, "Utility"),
                        (SessionColumn::CpuReserved, "CPU reserved"),
                        (SessionColumn::CpuUsed, "CPU used"),
                        (SessionColumn::MemoryUsed, "Memory used"),
                        (SessionColumn::Age, "Age"),
                    ],
                    "sessions",
                );
                header.col(|_| {});
            })
            .body(|body| {
                body.rows(table::ROW_HEIGHT, self.shown.len(), |mut row| {
                    let Some(s) = model.sessions.get(&self.shown[row.index()]) else {
                        return;
                    };
                    row.set_selected(self.selected == Some(s.id));
                    let sample = charts::session_sample(s, now);
                    row.col(|ui| {
                        if ui
                            .selectable_label(
                                self.selected == Some(s.id),
                                format!("Session {}", s.id),
                            )
                            .clicked()
                        {
                            self.selected = Some(s.id);
                        }
                    });
                    row.col(|ui| {
                        if chip_link(ui, &s.user, "Filter by this user").clicked() {
                            self.filter.add(Field::User, &s.user);
                        }
                    });
                    row.col(|ui| {
                        if chip_link(
                            ui,
                            &format!("{}/{}", s.application, s.variant),
                            "Filter by this application",
                        )
                        .clicked()
                        {
                            self.filter.add(Field::Application, &s.application);
                        }
                    });
                    row.col(|ui| {
                        widgets::state_label(ui, s.state);
                    });
                    row.col(|ui| {
                        for node in nodes_of(s) {
                            if admin {
                                if ui.link(node).on_hover_text("Show this node").clicked() {
                                    actions.push(Action::ShowNode(node.to_string()));
                                }
                            } else {
                                ui.label(node);
                            }
                        }
                    });
                    row.col(|ui| {
                        ui.label(s.setpoint.to_string());
                    });
                    row.col(|ui| {
                        ui.label(format!("{:.2}", s.utility));
                    });
                    if s.state.is_live() {
                        row.col(|ui| {
                            ui.label(format::cpus(sample.cpu_reserved));
                        });
                        row.col(|ui| {
                            ui.label(sample.cpu_used.map_or("—".into(), format::cpus));
                        });
                        row.col(|ui| {
                            ui.label(sample.memory_used.map_or("—".into(), format::mib));
                        });
                    } else {
                        for _ in 0..3 {
                            row.col(|ui| {
                                ui.label("—");
                            });
                        }
                    }
                    row.col(|ui| {
                        let end = s.ended_ms.unwrap_or(now);
                        ui.label(format::duration(end.saturating_sub(s.created_ms)));
                    });
                    row.col(|ui| {
                        self.end_button(ui, s, "End", format!("End session {}", s.id), actions);
                    });
                    if row.response().clicked() {
                        self.selected = Some(s.id);
                    }
                });
            });
    }

    /// A session's end was confirmed and sent.
    pub fn mark_ending(&mut self, id: SessionId) {
        self.ending.push(id);
    }

    fn end_button(
        &mut self,
        ui: &mut Ui,
        s: &SessionView,
        text: &str,
        name: String,
        actions: &mut Vec<Action>,
    ) {
        if !s.state.is_live() {
            return;
        }
        if self.ending.contains(&s.id) {
            ui.spinner();
            ui.label("ending…");
            return;
        }
        if ui
            .button(RichText::new(text).color(BAD))
            .accessible_name(name)
            .clicked()
        {
            actions.push(Action::Confirm(Confirm {
                details: Vec::new(),
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
        admin: bool,
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
            if admin {
                for node in nodes_of(s) {
                    if ui
                        .link(format!("on {node}"))
                        .on_hover_text("Show this node")
                        .clicked()
                    {
                        actions.push(Action::ShowNode(node.to_string()));
                    }
                }
            }
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
            self.end_button(
                ui,
                s,
                "End this session",
                "End this session".into(),
                actions,
            );
        }
        widgets::section(ui, "Events of this session");
        let events: Vec<_> = model.session_events(s.id).collect();
        if events.is_empty() {
            ui.label(RichText::new("No events recorded yet.").color(MUTED));
        }
        for event in events.iter().rev().take(50) {
            widgets::event_line(ui, event, &[]);
        }
    }
}
