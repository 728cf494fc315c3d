//! Small pieces the views share: labelled fields, state colours, bars, problem lists.

use arq::proto::event::{Event, EventKind};
use arq::proto::session::SessionState;
use egui::{Color32, Response, RichText, TextEdit, Ui};

pub const GOOD: Color32 = Color32::from_rgb(0x3f, 0xb9, 0x50);
pub const WARN: Color32 = Color32::from_rgb(0xe3, 0xa0, 0x08);
pub const BAD: Color32 = Color32::from_rgb(0xe5, 0x48, 0x4d);
pub const MUTED: Color32 = Color32::from_rgb(0x8b, 0x94, 0x9e);

pub fn state_color(state: SessionState) -> Color32 {
    match state {
        SessionState::Running => GOOD,
        SessionState::Starting | SessionState::Restarting => WARN,
        SessionState::Failed => BAD,
        SessionState::Finished | SessionState::Terminated => MUTED,
    }
}

/// A session state in its colour.
pub fn state_label(ui: &mut Ui, state: SessionState) -> Response {
    ui.label(
        RichText::new(state.as_str())
            .color(state_color(state))
            .strong(),
    )
}

/// A filled dot, for connection and node states.
pub fn dot(ui: &mut Ui, color: Color32) {
    let size = ui.text_style_height(&egui::TextStyle::Body) * 0.6;
    let (rect, _) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), size / 2.0, color);
}

/// A grid row: the label, then a one-line text field named by it.
pub fn text_row(ui: &mut Ui, label: &str, text: &mut String, width: f32) -> Response {
    let label = ui.label(label);
    let response = ui
        .add(TextEdit::singleline(text).desired_width(width))
        .labelled_by(label.id);
    ui.end_row();
    response
}

/// A one-line text field that carries its accessible name itself (for table cells whose
/// visible label is the column header), outlined in red when `error` is set.
pub fn cell_edit(
    ui: &mut Ui,
    name: &str,
    text: &mut String,
    width: f32,
    error: Option<&str>,
) -> Response {
    let mut edit = TextEdit::singleline(text);
    if error.is_some() {
        edit = edit.background_color(BAD.gamma_multiply(0.35));
    }
    let height = ui.spacing().interact_size.y;
    let response = ui.add_sized([width, height], edit).accessible_name(name);
    match error {
        Some(error) => response.on_hover_text(error),
        None => response,
    }
}

/// A bar showing `value` out of `capacity`, with its numbers written on it.
pub fn load_bar(ui: &mut Ui, value: f64, capacity: f64, text: String) -> Response {
    let fraction = if capacity > 0.0 {
        (value / capacity).clamp(0.0, 1.0) as f32
    } else {
        0.0
    };
    let color = if fraction > 0.9 {
        BAD
    } else if fraction > 0.7 {
        WARN
    } else {
        GOOD
    };
    ui.add(
        egui::ProgressBar::new(fraction)
            .text(text)
            .fill(color.gamma_multiply(0.7))
            .desired_width(260.0),
    )
}

/// Problems, one a line, in red.
pub fn problems(ui: &mut Ui, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.0, BAD))
        .show(ui, |ui| {
            ui.label(RichText::new(title).color(BAD).strong());
            for line in lines {
                ui.label(RichText::new(line).color(BAD));
            }
        });
}

/// A heading with some space above it.
pub fn section(ui: &mut Ui, title: &str) {
    ui.add_space(8.0);
    ui.label(RichText::new(title).heading());
    ui.add_space(2.0);
}

/// Failures in red, admissions in green, degradations in amber, the rest plain.
pub fn event_color(kind: &EventKind, ui: &Ui) -> Color32 {
    use arq::proto::control::SetPointDirection;
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
        EventKind::SetPointSent {
            direction: SetPointDirection::Lower,
            ..
        } => WARN,
        EventKind::SessionAdmitted { .. } | EventKind::NodeUp { .. } => GOOD,
        _ => ui.visuals().text_color(),
    }
}

/// One event on one line or more: its time (the date on hover), `prefix` columns (e.g.
/// its session and node), then what happened, wrapped to the width that is left rather
/// than cut at the window's edge.
pub fn event_line(ui: &mut Ui, event: &Event, prefix: &[(String, f32)]) {
    ui.horizontal_top(|ui| {
        let height = ui.text_style_height(&egui::TextStyle::Body);
        ui.add_sized(
            [64.0, height],
            egui::Label::new(RichText::new(crate::format::clock(event.time_ms)).color(MUTED)),
        )
        .on_hover_text(crate::format::date_time(event.time_ms));
        for (text, width) in prefix {
            ui.add_sized([*width, height], egui::Label::new(text.as_str()).truncate());
        }
        let color = event_color(&event.kind, ui);
        ui.add(egui::Label::new(RichText::new(event.kind.to_string()).color(color)).wrap());
    });
}
