//! The event log: every step of every visible session's life and of the cluster's.

use arq::proto::event::{Event, EventKind};
use arq::proto::session::SessionState;
use egui::{RichText, TextEdit, Ui};

use crate::format;
use crate::model::Model;
use crate::widgets::{BAD, GOOD, MUTED};

/// The most rows drawn at once.
const ROWS: usize = 400;

#[derive(Default)]
pub struct EventsView {
    filter: String,
}

fn matches(event: &Event, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let needle = needle.to_lowercase();
    event.kind.to_string().to_lowercase().contains(&needle)
        || event
            .session
            .is_some_and(|s| format!("session {s}") == needle || s.to_string() == needle)
        || event
            .node
            .as_deref()
            .is_some_and(|n| n.to_lowercase().contains(&needle))
}

/// Failures in red, admissions in green, the rest plain.
fn tone(kind: &EventKind, ui: &Ui) -> egui::Color32 {
    match kind {
        EventKind::SessionRejected { .. }
        | EventKind::ProcessStartFailed { .. }
        | EventKind::CrashLoop { .. }
        | EventKind::NodeLost { .. }
        | EventKind::SetPointUnacknowledged { .. }
        | EventKind::SessionEnded {
            state: SessionState::Failed,
            ..
        } => BAD,
        EventKind::SessionAdmitted { .. } | EventKind::NodeUp { .. } => GOOD,
        _ => ui.visuals().text_color(),
    }
}

impl EventsView {
    pub fn ui(&mut self, ui: &mut Ui, model: &Model) {
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.label(RichText::new("Event log").size(22.0).strong());
            ui.add_space(16.0);
            let label = ui.label("Filter");
            ui.add(
                TextEdit::singleline(&mut self.filter)
                    .hint_text("text, node, or session number")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            if !self.filter.is_empty() && ui.button("Clear filter").clicked() {
                self.filter.clear();
            }
        });
        let shown: Vec<&Event> = model
            .events
            .iter()
            .rev()
            .filter(|e| matches(e, self.filter.trim()))
            .take(ROWS)
            .collect();
        ui.label(
            RichText::new(format!(
                "{} events shown (newest first) of {} loaded",
                shown.len(),
                model.events.len()
            ))
            .color(MUTED),
        );
        ui.add_space(4.0);
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                egui::Grid::new("events")
                    .striped(true)
                    .num_columns(5)
                    .spacing([14.0, 3.0])
                    .show(ui, |ui| {
                        for title in ["#", "Time (UTC)", "Session", "Node", "What happened"] {
                            ui.label(RichText::new(title).strong());
                        }
                        ui.end_row();
                        for e in shown {
                            ui.label(RichText::new(e.seq.to_string()).color(MUTED));
                            ui.label(format::clock(e.time_ms))
                                .on_hover_text(format::date_time(e.time_ms));
                            ui.label(e.session.map_or(String::new(), |s| s.to_string()));
                            ui.label(e.node.clone().unwrap_or_default());
                            ui.label(RichText::new(e.kind.to_string()).color(tone(&e.kind, ui)));
                            ui.end_row();
                        }
                    });
            });
    }
}
