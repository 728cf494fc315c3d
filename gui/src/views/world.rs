//! The world file for admins: export it from Sesco, edit or load one, check it, see what
//! it changes against Sesco's world, apply it.
//!
//! The editor's widget id is fixed: an automatic id would depend on how many widgets come
//! before it, and the problem list above it comes and goes as the text is checked, which
//! used to move the focus away in the middle of typing.

use std::path::Path;

use arq::proto::world::World;
use egui::{Id, RichText, TextEdit, Ui};
use serde::Serialize;

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
    /// Sesco's world as last exported (or applied from here), to diff against.
    sesco_world: Option<String>,
    /// The text being applied, which becomes Sesco's world when the apply succeeds.
    applying: Option<String>,
}

/// The editor's id: fixed, so that nothing drawn around it can change it.
pub fn editor_id() -> Id {
    Id::unique("sesco-world-toml-editor")
}

/// One entry of the world that a new world file adds, removes or changes.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldChange {
    /// `group`, `user`, `node` or `application`.
    pub section: &'static str,
    pub name: String,
    pub what: ChangeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    Added,
    Removed,
    /// The fields that differ, `field: old -> new` (or just `field` for long values).
    Changed(Vec<String>),
}

impl std::fmt::Display for WorldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.what {
            ChangeKind::Added => write!(f, "+ {} {}", self.section, self.name),
            ChangeKind::Removed => write!(f, "- {} {}", self.section, self.name),
            ChangeKind::Changed(fields) => {
                write!(f, "~ {} {}: {}", self.section, self.name, fields.join("; "))
            }
        }
    }
}

/// A field's value in a diff line: scalars as written, tables and lists by their size.
fn short(value: &toml::Value) -> String {
    match value {
        toml::Value::Array(items) => format!("[{} entries]", items.len()),
        toml::Value::Table(table) => format!("{{{} fields}}", table.len()),
        scalar => scalar.to_string(),
    }
}

/// The fields of two entries that differ.
fn field_changes<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let table = |entry: &T| match toml::Value::try_from(entry) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::value::Table::new(),
    };
    let (old, new) = (table(old), table(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| match (old.get(key), new.get(key)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!("{key}: {} -> {}", short(a), short(b))),
            (None, Some(b)) => Some(format!("{key}: set to {}", short(b))),
            (Some(_), None) => Some(format!("{key}: removed")),
            (None, None) => None,
        })
        .collect()
}

fn section_changes<T: Serialize + PartialEq>(
    section: &'static str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    changes: &mut Vec<WorldChange>,
) {
    for entry in new {
        match old.iter().find(|o| name(o) == name(entry)) {
            None => changes.push(WorldChange {
                section,
                name: name(entry).to_string(),
                what: ChangeKind::Added,
            }),
            Some(before) if before != entry => changes.push(WorldChange {
                section,
                name: name(entry).to_string(),
                what: ChangeKind::Changed(field_changes(before, entry)),
            }),
            Some(_) => {}
        }
    }
    for entry in old {
        if !new.iter().any(|n| name(n) == name(entry)) {
            changes.push(WorldChange {
                section,
                name: name(entry).to_string(),
                what: ChangeKind::Removed,
            });
        }
    }
}

/// What applying `new` over `old` adds, removes and changes, entry by entry (entries are
/// matched by name), in the file's order: groups, users, nodes, applications.
pub fn world_diff(old: &World, new: &World) -> Vec<WorldChange> {
    let mut changes = Vec::new();
    section_changes("group", &old.groups, &new.groups, |g| &g.name, &mut changes);
    section_changes("user", &old.users, &new.users, |u| &u.name, &mut changes);
    section_changes("node", &old.nodes, &new.nodes, |n| &n.name, &mut changes);
    section_changes(
        "application",
        &old.applications,
        &new.applications,
        |a| &a.name,
        &mut changes,
    );
    changes
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
                        self.sesco_world = Some(text.clone());
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
                let applied = self.applying.take();
                if result.is_ok() {
                    self.sesco_world = applied;
                }
            }
            _ => {}
        }
    }

    /// The apply was confirmed and sent.
    pub fn mark_applying(&mut self) {
        self.waiting = true;
        self.applying = Some(self.text.clone());
    }

    /// The text in the editor.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The diff lines shown before applying: against Sesco's world when it is known.
    fn diff_lines(&self) -> Vec<String> {
        let Ok(new) = toml::from_str::<World>(&self.text) else {
            return Vec::new();
        };
        let Some(old) = self
            .sesco_world
            .as_deref()
            .and_then(|text| toml::from_str::<World>(text).ok())
        else {
            return vec![
                "Sesco's current world is not known here (export it first to see \
                         what changes)."
                    .into(),
            ];
        };
        let changes = world_diff(&old, &new);
        if changes.is_empty() {
            return vec!["No entry changes: the file is Sesco's world as it is.".into()];
        }
        changes.iter().map(ToString::to_string).collect()
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
                           Running sessions keep running. Against Sesco's world (+ added, \
                           - removed, ~ changed):"
                        .into(),
                    details: self.diff_lines(),
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
                            .id(editor_id())
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

    #[test]
    fn the_diff_names_each_entry_added_removed_or_changed_and_its_fields() {
        let demo = include_str!("../../../scripts/demo-world.toml");
        let old: World = toml::from_str(demo).unwrap();
        assert_eq!(world_diff(&old, &old), Vec::new());
        let text = demo
            .replace("reserve_cpus = 0.1", "reserve_cpus = 1.0")
            .replace(
                "[[groups]]\nname = \"students\"\npriority = 1.0\ndescription = \"Students\"\n",
                "",
            )
            .replace("group = \"students\"", "group = \"research\"")
            + "\n[[nodes]]\nname = \"node-b\"\n";
        let new: World = toml::from_str(&text).unwrap();
        let lines: Vec<String> = world_diff(&old, &new)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "- group students",
                "~ user bob: group: \"students\" -> \"research\"",
                "~ node node-a: reserve_cpus: 0.1 -> 1.0",
                "+ node node-b",
            ],
        );
    }
}
