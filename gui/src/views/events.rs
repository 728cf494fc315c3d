//! The event log: every step of every visible session's life and of the cluster's.

use arq::proto::event::Event;
use egui::{RichText, TextEdit, Ui};

use crate::model::Model;
use crate::views::table;
use crate::widgets::{self, MUTED};

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

impl EventsView {
    pub fn ui(&mut self, ui: &mut Ui, model: &Model) {
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.label(RichText::new("Event log").size(22.0).strong());
            ui.add_space(16.0);
            let label = ui.label("Filter");
            ui.add(
                TextEdit::singleline(&mut self.filter)
                    .id(table::search_id("events"))
                    .hint_text("text, node, or session number")
                    .desired_width(260.0),
            )
            .labelled_by(label.id)
            .on_hover_text("Ctrl+F");
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
        ui.horizontal(|ui| {
            for (title, width) in [
                ("Time (UTC)", 64.0),
                ("#", 52.0),
                ("Session", 60.0),
                ("Node", 90.0),
            ] {
                ui.add_sized(
                    [width, ui.text_style_height(&egui::TextStyle::Body)],
                    egui::Label::new(RichText::new(title).strong()),
                );
            }
            ui.label(RichText::new("What happened").strong());
        });
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for e in shown {
                    widgets::event_line(
                        ui,
                        e,
                        &[
                            (e.seq.to_string(), 52.0),
                            (e.session.map_or(String::new(), |s| s.to_string()), 60.0),
                            (e.node.clone().unwrap_or_default(), 90.0),
                        ],
                    );
                }
            });
    }
}
