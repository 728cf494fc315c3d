//! The world file for admins: export it from Sesco, edit or load one, check it, apply it.

use std::path::Path;

use arq::proto::world::World;
use egui::{RichText, TextEdit, Ui};

use crate::app::{Action, Confirm, Notice};
use crate::connection::{Command, Failure, Outcome};
use crate::widgets::{self, GOOD, MUTED};

#[derive(Default)]
pub struct WorldView {
    text: String,
    path: String,
    /// Problems found here, before Sesco sees the file.
    local: Vec<String>,
    /// Whether `local` matches `text`.
    checked: bool,
    waiting: bool,
    server: Option<Failure>,
    applied: bool,
    /// The page opens on the world as Sesco has it; asked for once.
    exported_once: bool,
}

/// Everything wrong with a world file, by line or by path.
pub fn check_world(text: &str) -> Vec<String> {
    match toml::from_str::<World>(text) {
        Err(e) => vec![e.to_string().trim().to_string()],
        Ok(world) => match world.validate() {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        },
    }
}

impl WorldView {
    pub fn on_outcome(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::WorldExported(result) => {
                self.waiting = false;
                match result {
                    Ok(text) => {
                        self.text = text.clone();
                        self.checked = false;
                        self.server = None;
                        self.applied = false;
                    }
                    Err(e) => self.server = Some(e.clone()),
                }
            }
            Outcome::WorldApplied(result) => {
                self.waiting = false;
                self.server = result.clone().err();
                self.applied = result.is_ok();
            }
            _ => {}
        }
    }

    /// The apply was confirmed and sent.
    pub fn mark_applying(&mut self) {
        self.waiting = true;
    }

    pub fn ui(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        if !self.exported_once && self.text.is_empty() {
            self.exported_once = true;
            self.waiting = true;
            actions.push(Action::Send(Command::ExportWorld));
        }
        if !self.checked {
            self.local = if self.text.trim().is_empty() {
                Vec::new()
            } else {
                check_world(&self.text)
            };
            self.checked = true;
        }
        ui.add_space(6.0);
        ui.label(RichText::new("World file").size(22.0).strong());
        ui.label(
            RichText::new(
                "Users, groups, nodes and applications as one TOML file. Applying it replaces the \
                 whole world in one step; a file with problems changes nothing.",
            )
            .color(MUTED),
        );
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!self.waiting, egui::Button::new("Export from Sesco"))
                .clicked()
            {
                self.waiting = true;
                actions.push(Action::Send(Command::ExportWorld));
            }
            if ui
                .add_enabled(!self.text.is_empty(), egui::Button::new("Copy"))
                .clicked()
            {
                ui.ctx().copy_text(self.text.clone());
                actions.push(Action::Notice(Notice::info("World file copied")));
            }
            ui.separator();
            let label = ui.label("File path");
            ui.add(
                TextEdit::singleline(&mut self.path)
                    .hint_text("/etc/sesco/world.toml")
                    .desired_width(280.0),
            )
            .labelled_by(label.id);
            let has_path = !self.path.trim().is_empty();
            if ui
                .add_enabled(has_path, egui::Button::new("Load file"))
                .clicked()
            {
                let path = self.path.trim().to_string();
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        self.text = text;
                        self.checked = false;
                        self.server = None;
                        self.applied = false;
                        actions.push(Action::Notice(Notice::info(format!("Loaded {path}"))));
                    }
                    Err(e) => actions.push(Action::Notice(Notice::error(format!(
                        "Cannot read {path}: {e}"
                    )))),
                }
            }
            if ui
                .add_enabled(
                    has_path && !self.text.is_empty(),
                    egui::Button::new("Save to file"),
                )
                .clicked()
            {
                let path = self.path.trim().to_string();
                let notice = match std::fs::write(&path, &self.text) {
                    Ok(()) => Notice::info(format!("Saved {path}")),
                    Err(e) => Notice::error(format!("Cannot write {path}: {e}")),
                };
                actions.push(Action::Notice(notice));
            }
        });
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let ready = !self.waiting && !self.text.trim().is_empty() && self.local.is_empty();
            if ui
                .add_enabled(
                    ready,
                    egui::Button::new(RichText::new("Apply to Sesco").strong()),
                )
                .on_disabled_hover_text("Export or load a world file without problems first")
                .clicked()
            {
                let source = Path::new(self.path.trim())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "world.toml".into());
                actions.push(Action::Confirm(Confirm {
                    title: "Replace the world?".into(),
                    body: "Every user, group, node and application is replaced by this file. \
                           Running sessions keep running."
                        .into(),
                    button: "Apply".into(),
                    command: Command::ApplyWorld {
                        source,
                        toml: self.text.clone(),
                    },
                }));
            }
            if self.waiting {
                ui.spinner();
            } else if self.applied {
                ui.label(RichText::new("Applied.").color(GOOD));
            } else if !self.text.trim().is_empty() && self.local.is_empty() {
                ui.label(RichText::new("No problems found.").color(GOOD));
            }
        });
        widgets::problems(ui, "Problems in this file:", &self.local);
        if let Some(failure) = &self.server {
            widgets::problems(ui, "Sesco refused:", &failure.lines());
        }
        ui.add_space(4.0);
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let edit = ui
                    .add(
                        TextEdit::multiline(&mut self.text)
                            .code_editor()
                            .desired_width(f32::INFINITY)
                            .desired_rows(24)
                            .hint_text(
                                "Export the world from Sesco, load a file, or paste one here",
                            ),
                    )
                    .accessible_name("World TOML");
                if edit.changed() {
                    self.checked = false;
                    self.applied = false;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_world_is_clean_and_a_broken_one_says_where() {
        let demo = include_str!("../../../scripts/demo-world.toml");
        assert_eq!(check_world(demo), Vec::<String>::new());
        let broken = demo.replace("priority = 2.0", "priority = -2.0");
        let problems = check_world(&broken);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("groups[1].priority"),
            "{problems:?}"
        );
        let unparsable = check_world("[[users]]\nname = ");
        assert!(unparsable[0].contains("line 2"), "{unparsable:?}");
    }
}
