//! Applications for users: browse variants, QoS dimensions and levels; request a session
//! after seeing what Sesco would do (a dry run).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use arq::proto::session::{AdmissionOutcome, SessionRequest};
use arq::proto::world::{ApplicationDef, VariantDef};
use egui::{ComboBox, RichText, Ui};

use crate::app::{Action, View};
use crate::connection::{Command, Failure, Outcome};
use crate::model::Model;
use crate::widgets::{self, BAD, GOOD, MUTED};

/// An answer being waited for, or the last one.
#[derive(Default)]
pub enum Pending<T> {
    #[default]
    Idle,
    Waiting,
    Done(Result<T, Failure>),
}

#[derive(Default)]
pub struct ApplicationsView {
    selected: Option<String>,
    /// `None`: any variant.
    variant: Option<String>,
    /// Minimum level per dimension; dimensions not here have no minimum.
    minimum: BTreeMap<String, String>,
    dry_run: Pending<AdmissionOutcome>,
    request: Pending<AdmissionOutcome>,
}

/// A key that makes a retried request harmless, unique to this click.
fn request_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "gui-{}-{}-{}",
        std::process::id(),
        crate::format::now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The dimensions to offer minimums for: the chosen variant's, or for "any" every
/// dimension name with the levels of the first variant that has it.
fn dimensions_for<'a>(
    app: &'a ApplicationDef,
    variant: Option<&str>,
) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for v in app
        .variants
        .iter()
        .filter(|v| variant.is_none_or(|name| v.name == name))
    {
        for d in &v.dimensions {
            if !out.iter().any(|(name, _)| *name == d.name) {
                out.push((&d.name, d.levels.iter().map(|l| l.name.as_str()).collect()));
            }
        }
    }
    out
}

impl ApplicationsView {
    pub fn on_outcome(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::DryRun(result) => self.dry_run = Pending::Done(result.clone()),
            Outcome::Requested(result) => self.request = Pending::Done(result.clone()),
            _ => {}
        }
    }

    fn form_changed(&mut self) {
        self.dry_run = Pending::Idle;
        self.request = Pending::Idle;
    }

    fn session_request(&self, application: &str) -> SessionRequest {
        SessionRequest {
            application: application.to_string(),
            variant: self.variant.clone(),
            minimum: self
                .minimum
                .iter()
                .map(|(d, l)| (d.clone(), l.clone()))
                .collect(),
            dry_run: false,
            request_key: None,
        }
    }

    pub fn ui(&mut self, ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
        if self
            .selected
            .as_ref()
            .is_none_or(|name| model.application(name).is_none())
        {
            self.selected = model.applications.first().map(|a| a.name.clone());
            self.form_changed();
        }
        egui::Panel::left("application_list")
            .resizable(false)
            .exact_size(220.0)
            .show(ui, |ui| {
                ui.add_space(6.0);
                ui.label(RichText::new("Applications").heading());
                ui.add_space(4.0);
                if model.applications.is_empty() {
                    ui.label(RichText::new("No applications are defined yet.").color(MUTED));
                }
                egui::ScrollArea::vertical().show(ui, |ui| {
                    for app in &model.applications {
                        let selected = self.selected.as_deref() == Some(app.name.as_str());
                        let response = ui.add_sized(
                            [ui.available_width(), 24.0],
                            egui::Button::selectable(selected, RichText::new(&app.name).strong()),
                        );
                        if response.clicked() && !selected {
                            self.selected = Some(app.name.clone());
                            self.variant = None;
                            self.minimum.clear();
                            self.form_changed();
                        }
                        if !app.description.is_empty() {
                            ui.label(RichText::new(&app.description).small().color(MUTED));
                        }
                        ui.add_space(4.0);
                    }
                });
            });
        let Some(app) = self.selected.as_deref().and_then(|n| model.application(n)) else {
            return;
        };
        let app = app.clone();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.add_space(6.0);
                ui.label(RichText::new(&app.name).size(22.0).strong());
                if !app.description.is_empty() {
                    ui.label(&app.description);
                }
                self.request_form(ui, &app, actions);
                widgets::section(ui, "Variants");
                for variant in &app.variants {
                    variant_details(ui, variant);
                }
            });
    }

    fn request_form(&mut self, ui: &mut Ui, app: &ApplicationDef, actions: &mut Vec<Action>) {
        widgets::section(ui, "Request a session");
        let mut changed = false;
        egui::Frame::group(ui.style())
            .inner_margin(10.0)
            .show(ui, |ui| {
                egui::Grid::new("request_form")
                    .num_columns(2)
                    .spacing([12.0, 8.0])
                    .show(ui, |ui| {
                        let label = ui.label("Variant");
                        let shown = self.variant.clone().unwrap_or_else(|| "Any variant".into());
                        ComboBox::from_id_salt("request_variant")
                            .selected_text(shown)
                            .width(220.0)
                            .show_ui(ui, |ui| {
                                changed |= ui
                                    .selectable_value(&mut self.variant, None, "Any variant")
                                    .changed();
                                for v in &app.variants {
                                    changed |= ui
                                        .selectable_value(
                                            &mut self.variant,
                                            Some(v.name.clone()),
                                            v.name.as_str(),
                                        )
                                        .changed();
                                }
                            })
                            .response
                            .labelled_by(label.id);
                        ui.end_row();
                        for (dimension, levels) in dimensions_for(app, self.variant.as_deref()) {
                            let label = ui.label(format!("Minimum {dimension}"));
                            let current = self.minimum.get(dimension).cloned();
                            let mut chosen = current.clone();
                            ComboBox::from_id_salt(("request_minimum", dimension))
                                .selected_text(
                                    current.clone().unwrap_or_else(|| "no minimum".into()),
                                )
                                .width(220.0)
                                .show_ui(ui, |ui| {
                                    ui.selectable_value(&mut chosen, None, "no minimum");
                                    for level in levels {
                                        ui.selectable_value(
                                            &mut chosen,
                                            Some(level.to_string()),
                                            format!("at least {level}"),
                                        );
                                    }
                                })
                                .response
                                .labelled_by(label.id);
                            if chosen != current {
                                changed = true;
                                match chosen {
                                    Some(level) => {
                                        self.minimum.insert(dimension.to_string(), level);
                                    }
                                    None => {
                                        self.minimum.remove(dimension);
                                    }
                                }
                            }
                            ui.end_row();
                        }
                    });
                // Minimums of dimensions the chosen variant lacks no longer apply.
                let offered: Vec<String> = dimensions_for(app, self.variant.as_deref())
                    .into_iter()
                    .map(|(d, _)| d.to_string())
                    .collect();
                self.minimum.retain(|d, _| offered.contains(d));
                if changed {
                    self.form_changed();
                }
                ui.add_space(6.0);
                ui.horizontal(|ui| {
                    let waiting = matches!(self.dry_run, Pending::Waiting)
                        || matches!(self.request, Pending::Waiting);
                    if ui
                        .add_enabled(!waiting, egui::Button::new("Check (dry run)"))
                        .on_hover_text("Ask Sesco what it would do, changing nothing")
                        .clicked()
                    {
                        self.dry_run = Pending::Waiting;
                        self.request = Pending::Idle;
                        actions.push(Action::Send(Command::DryRun(
                            self.session_request(&app.name),
                        )));
                    }
                    if ui
                        .add_enabled(
                            !waiting,
                            egui::Button::new(RichText::new("Request session").strong()),
                        )
                        .clicked()
                    {
                        self.request = Pending::Waiting;
                        let mut request = self.session_request(&app.name);
                        request.request_key = Some(request_key());
                        actions.push(Action::Send(Command::Request(request)));
                    }
                    if waiting {
                        ui.spinner();
                        ui.label("Asking Sesco…");
                    }
                });
                match &self.request {
                    Pending::Done(result) => {
                        ui.add_space(6.0);
                        outcome_box(ui, result, false, actions);
                    }
                    _ => {
                        if let Pending::Done(result) = &self.dry_run {
                            ui.add_space(6.0);
                            outcome_box(ui, result, true, actions);
                        }
                    }
                }
            });
    }
}

/// What Sesco did, or would do, with a request.
fn outcome_box(
    ui: &mut Ui,
    result: &Result<AdmissionOutcome, Failure>,
    dry_run: bool,
    actions: &mut Vec<Action>,
) {
    let (color, lines): (_, Vec<String>) = match result {
        Ok(AdmissionOutcome::Admitted {
            session,
            shifts,
            shadow_prices,
        }) => {
            let mut lines = vec![if dry_run {
                format!(
                    "Would be admitted: {}/{} at {} (utility {:.2})",
                    session.application, session.variant, session.setpoint, session.utility
                )
            } else {
                format!(
                    "Admitted as session {}: {}/{} at {} (utility {:.2})",
                    session.id,
                    session.application,
                    session.variant,
                    session.setpoint,
                    session.utility
                )
            }];
            for p in &session.processes {
                lines.push(format!(
                    "Process {} on {}: {}",
                    p.name,
                    if p.node.is_empty() { "?" } else { &p.node },
                    p.reservation
                ));
            }
            for shift in shifts {
                lines.push(format!(
                    "Session {} {} from {} to {}",
                    shift.session,
                    if dry_run { "would move" } else { "moves" },
                    shift.from,
                    shift.to
                ));
            }
            let scarce: Vec<String> = shadow_prices
                .iter()
                .filter(|p| p.price > 1e-9)
                .map(|p| format!("{} ({:.3})", p.resource, p.price))
                .collect();
            if !scarce.is_empty() {
                lines.push(format!("Scarce resources: {}", scarce.join(", ")));
            }
            (GOOD, lines)
        }
        Ok(AdmissionOutcome::Rejected { binding, reason }) => {
            let mut lines = vec![format!(
                "{}: {reason}",
                if dry_run {
                    "Would be rejected"
                } else {
                    "Rejected"
                }
            )];
            if !binding.is_empty() {
                lines.push(format!("Binding resources: {}", binding.join(", ")));
            }
            (BAD, lines)
        }
        Err(failure) => (BAD, vec![format!("Sesco could not answer: {failure}")]),
    };
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.5, color))
        .inner_margin(8.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            for (i, line) in lines.iter().enumerate() {
                if i == 0 {
                    ui.label(RichText::new(line).color(color).strong());
                } else {
                    ui.label(line);
                }
            }
            if !dry_run
                && matches!(result, Ok(AdmissionOutcome::Admitted { .. }))
                && ui.button("Open in Sessions").clicked()
            {
                actions.push(Action::Goto(View::Sessions));
            }
        });
}

/// A variant's processes and QoS dimensions with their levels.
fn variant_details(ui: &mut Ui, variant: &VariantDef) {
    egui::CollapsingHeader::new(RichText::new(format!("Variant {}", variant.name)).strong())
        .id_salt(("variant", &variant.name))
        .default_open(true)
        .show(ui, |ui| {
            if !variant.description.is_empty() {
                ui.label(&variant.description);
            }
            ui.label(
                RichText::new(format!(
                    "CPU class {}{} · restart {} · {} set-points",
                    variant.cpu_class,
                    if variant.cpu_class == arq::proto::world::CpuClass::Deadline {
                        format!(" (every {} ms)", variant.deadline_period_ms)
                    } else {
                        String::new()
                    },
                    variant.restart.mode,
                    variant.setpoint_count()
                ))
                .color(MUTED),
            );
            egui::Grid::new(("processes", &variant.name))
                .striped(true)
                .num_columns(4)
                .spacing([16.0, 4.0])
                .show(ui, |ui| {
                    for title in ["Process", "Base CPU", "Base memory", "Runs on"] {
                        ui.label(RichText::new(title).strong());
                    }
                    ui.end_row();
                    for p in &variant.processes {
                        ui.label(&p.name);
                        ui.label(format!("{} CPUs", p.cpu));
                        ui.label(format!("{} MiB", p.memory_mb));
                        ui.label(node_requirement(&p.node));
                        ui.end_row();
                    }
                });
            for dimension in &variant.dimensions {
                ui.add_space(4.0);
                ui.label(
                    RichText::new(format!(
                        "{}{}",
                        dimension.name,
                        if dimension.unit.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", dimension.unit)
                        }
                    ))
                    .strong(),
                );
                egui::Grid::new(("levels", &variant.name, &dimension.name))
                    .striped(true)
                    .num_columns(5)
                    .spacing([16.0, 2.0])
                    .show(ui, |ui| {
                        for title in ["Level", "Value", "Utility", "CPU ×", "Memory ×"] {
                            ui.label(RichText::new(title).color(MUTED));
                        }
                        ui.end_row();
                        for level in &dimension.levels {
                            ui.label(&level.name);
                            ui.label(format!("{}", level.value));
                            ui.label(format!("{:.2}", level.utility));
                            ui.label(format!("{}", level.cpu_scale));
                            ui.label(format!("{}", level.memory_scale));
                            ui.end_row();
                        }
                    });
            }
        });
}

/// "any node", "node-a", "labels gpu, ssd · ≥ 4 CPUs".
pub fn node_requirement(req: &arq::proto::world::NodeRequirement) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &req.name {
        parts.push(name.clone());
    }
    if !req.labels.is_empty() {
        parts.push(format!("labels {}", req.labels.join(", ")));
    }
    if req.min_cpus > 0 {
        parts.push(format!("at least {} CPUs", req.min_cpus));
    }
    if parts.is_empty() {
        "any node".into()
    } else {
        parts.join(" · ")
    }
}
