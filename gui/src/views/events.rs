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
    /// The list's scroll offset, its visible height and its content's height at the last
    /// frame, for Home / End / PageUp / PageDown.
    scroll: (f32, f32, f32),
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
        let mut area = egui::ScrollArea::vertical().auto_shrink([false, false]);
        if let Some(offset) = self.scroll_key(ui) {
            area = area.vertical_scroll_offset(offset);
        }
        let output = area.show(ui, |ui| {
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
        self.scroll = (
            output.state.clamped_offset().y,
            output.inner_rect.height(),
            output.content_size.y,
        );
    }

    /// Where Home, End, PageUp or PageDown moves the list, unless a text field has the
    /// keyboard.
    fn scroll_key(&self, ui: &Ui) -> Option<f32> {
        if ui.ctx().text_edit_focused() {
            return None;
        }
        let (offset, height, content) = self.scroll;
        let last = (content - height).max(0.0);
        let page = (height - 40.0).max(20.0);
        ui.input_mut(|i| {
            let mut pressed = |key| i.consume_key(egui::Modifiers::NONE, key);
            if pressed(egui::Key::Home) {
                Some(0.0)
            } else if pressed(egui::Key::End) {
                Some(last)
            } else if pressed(egui::Key::PageDown) {
                Some((offset + page).min(last))
            } else if pressed(egui::Key::PageUp) {
                Some((offset - page).max(0.0))
            } else {
                None
            }
        })
    }
}
