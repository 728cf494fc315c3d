//! Sign-in: the server's address and the user's credentials.

use egui::{RichText, TextEdit, Ui};

use crate::widgets::{BAD, MUTED};

pub struct SignInForm {
    pub server: String,
    pub user: String,
    pub password: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Waiting for Sesco's answer.
    pub busy: bool,
}

impl SignInForm {
    pub fn new(server: &str, user: &str) -> Self {
        Self {
            server: server.to_string(),
            user: user.to_string(),
            password: String::new(),
            error: None,
            busy: false,
        }
    }

    /// Draws the form; returns the user and password when the user signs in.
    pub fn ui(&mut self, ui: &mut Ui) -> Option<(String, String)> {
        let mut submit = false;
        ui.vertical_centered(|ui| {
            ui.add_space((ui.available_height() * 0.18).max(16.0));
            ui.label(RichText::new("Sesco").size(34.0).strong());
            ui.label(RichText::new("QoS sessions: request, watch, administer").color(MUTED));
            ui.add_space(18.0);
            egui::Frame::group(ui.style())
                .inner_margin(18.0)
                .show(ui, |ui| {
                    ui.set_width(380.0);
                    ui.label(RichText::new("Sign in to Sesco").heading());
                    ui.add_space(8.0);
                    ui.add_enabled_ui(!self.busy, |ui| {
                        egui::Grid::new("signin")
                            .num_columns(2)
                            .spacing([12.0, 10.0])
                            .show(ui, |ui| {
                                let label = ui.label("Server address");
                                ui.add(
                                    TextEdit::singleline(&mut self.server)
                                        .hint_text("host:7207")
                                        .desired_width(240.0),
                                )
                                .labelled_by(label.id);
                                ui.end_row();
                                let label = ui.label("User");
                                ui.add(TextEdit::singleline(&mut self.user).desired_width(240.0))
                                    .labelled_by(label.id);
                                ui.end_row();
                                let label = ui.label("Password");
                                let password = ui
                                    .add(
                                        TextEdit::singleline(&mut self.password)
                                            .password(true)
                                            .desired_width(240.0),
                                    )
                                    .labelled_by(label.id);
                                if password.lost_focus()
                                    && ui.input(|i| i.key_pressed(egui::Key::Enter))
                                {
                                    submit = true;
                                }
                                ui.end_row();
                            });
                    });
                    ui.add_space(10.0);
                    ui.horizontal(|ui| {
                        let ready = !self.busy
                            && !self.server.trim().is_empty()
                            && !self.user.trim().is_empty()
                            && !self.password.is_empty();
                        if ui
                            .add_enabled(
                                ready,
                                egui::Button::new("Sign in").min_size([90.0, 26.0].into()),
                            )
                            .clicked()
                        {
                            submit = true;
                        }
                        if self.busy {
                            ui.spinner();
                            ui.label("Signing in…");
                        }
                    });
                    if let Some(error) = &self.error {
                        ui.add_space(8.0);
                        ui.label(RichText::new(error).color(BAD));
                    }
                });
        });
        let ready = !self.busy && !self.user.trim().is_empty() && !self.password.is_empty();
        (submit && ready).then(|| {
            self.busy = true;
            (self.user.trim().to_string(), self.password.clone())
        })
    }
}
