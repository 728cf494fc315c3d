//! Users and groups for admins: create, edit priorities and accounts, delete.

use arq::proto::world::{GroupDef, UserDef, World, check_name};
use egui::{ComboBox, RichText, TextEdit, Ui};

use crate::app::{Action, Confirm};
use crate::connection::{AdminTarget, Command, Failure, Outcome};
use crate::model::Model;
use crate::widgets::{self, MUTED, WARN};

/// The least length of a password Sesco accepts.
const MIN_PASSWORD_LEN: usize = 8;

#[derive(Default)]
struct UserForm {
    /// The user being edited; `None` for a new one.
    editing: Option<String>,
    name: String,
    unix_account: String,
    group: String,
    priority: String,
    admin: bool,
    password: String,
}

#[derive(Default)]
struct GroupForm {
    editing: Option<String>,
    name: String,
    priority: String,
    description: String,
}

#[derive(Default)]
pub struct UsersView {
    user: UserForm,
    group: GroupForm,
    user_waiting: bool,
    group_waiting: bool,
    /// What Sesco said about the last change.
    user_failure: Option<Failure>,
    group_failure: Option<Failure>,
}

fn failure_lines(failure: &Option<Failure>) -> Vec<String> {
    failure.as_ref().map(Failure::lines).unwrap_or_default()
}

impl UserForm {
    fn new_user(groups: &[GroupDef]) -> Self {
        Self {
            group: groups
                .iter()
                .find(|g| g.name != "admins")
                .or(groups.first())
                .map(|g| g.name.clone())
                .unwrap_or_default(),
            priority: "1".into(),
            ..Self::default()
        }
    }

    fn load(user: &UserDef) -> Self {
        Self {
            editing: Some(user.name.clone()),
            name: user.name.clone(),
            unix_account: user.unix_account.clone(),
            group: user.group.clone(),
            priority: user.priority.to_string(),
            admin: user.admin,
            password: String::new(),
        }
    }

    /// The user as entered, and everything wrong with it.
    fn check(&self, model: &Model) -> (UserDef, Vec<String>) {
        let mut problems = Vec::new();
        let priority = match self.priority.trim().parse::<f64>() {
            Ok(p) => p,
            Err(_) => {
                problems.push(format!(
                    "priority: '{}' is not a number",
                    self.priority.trim()
                ));
                1.0
            }
        };
        let user = UserDef {
            name: self.name.trim().to_string(),
            unix_account: self.unix_account.trim().to_string(),
            group: self.group.clone(),
            priority,
            admin: self.admin,
            password_hash: None,
        };
        let world = World {
            groups: model.groups.clone(),
            ..World::default()
        };
        if let Err(errors) = world.validate_user(&user) {
            problems.extend(errors.iter().map(|e| e.to_string()));
        }
        if self.editing.is_none() && model.users.iter().any(|u| u.name == user.name) {
            problems.push(format!("name: a user named '{}' exists already", user.name));
        }
        if !self.password.is_empty() && self.password.chars().count() < MIN_PASSWORD_LEN {
            problems.push(format!(
                "password: needs at least {MIN_PASSWORD_LEN} characters"
            ));
        }
        (user, problems)
    }
}

impl GroupForm {
    fn new_group() -> Self {
        Self {
            priority: "1".into(),
            ..Self::default()
        }
    }

    fn load(group: &GroupDef) -> Self {
        Self {
            editing: Some(group.name.clone()),
            name: group.name.clone(),
            priority: group.priority.to_string(),
            description: group.description.clone(),
        }
    }

    fn check(&self, model: &Model) -> (GroupDef, Vec<String>) {
        let mut problems = Vec::new();
        let name = self.name.trim().to_string();
        if let Err(reason) = check_name(&name) {
            problems.push(format!("name: {reason}"));
        }
        if self.editing.is_none() && model.groups.iter().any(|g| g.name == name) {
            problems.push(format!("name: a group named '{name}' exists already"));
        }
        let priority = match self.priority.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && p > 0.0 => p,
            Ok(p) => {
                problems.push(format!("priority: must be a positive number, not {p}"));
                1.0
            }
            Err(_) => {
                problems.push(format!(
                    "priority: '{}' is not a number",
                    self.priority.trim()
                ));
                1.0
            }
        };
        (
            GroupDef {
                name,
                priority,
                description: self.description.trim().to_string(),
            },
            problems,
        )
    }
}

impl UsersView {
    pub fn on_outcome(&mut self, outcome: &Outcome) {
        let Outcome::Admin {
            target,
            result,
            what,
        } = outcome
        else {
            return;
        };
        let deleted = result.is_ok() && what.starts_with("deleted");
        match target {
            AdminTarget::User | AdminTarget::Password => {
                self.user_waiting = false;
                self.user_failure = result.clone().err();
                if deleted {
                    self.user = UserForm::default();
                } else if result.is_ok() {
                    self.user.password.clear();
                    if self.user.editing.is_none() && !self.user.name.is_empty() {
                        self.user.editing = Some(self.user.name.trim().to_string());
                    }
                }
            }
            AdminTarget::Group => {
                self.group_waiting = false;
                self.group_failure = result.clone().err();
                if deleted {
                    self.group = GroupForm::default();
                } else if result.is_ok()
                    && self.group.editing.is_none()
                    && !self.group.name.is_empty()
                {
                    self.group.editing = Some(self.group.name.trim().to_string());
                }
            }
            AdminTarget::Application => {}
        }
    }

    pub fn ui(&mut self, ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
        if self.user.editing.is_none() && self.user.group.is_empty() {
            self.user = UserForm::new_user(&model.groups);
        }
        if self.group.editing.is_none() && self.group.priority.is_empty() {
            self.group = GroupForm::new_group();
        }
        ui.add_space(6.0);
        ui.label(RichText::new("Users & groups").size(22.0).strong());
        ui.label(
            RichText::new(
                "A session's weight in the allocation is its user's priority times its group's.",
            )
            .color(MUTED),
        );
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.columns(2, |cols| {
                    self.tables(&mut cols[0], model);
                    self.user_form(&mut cols[1], model, actions);
                    cols[1].add_space(16.0);
                    self.group_form(&mut cols[1], model, actions);
                });
            });
    }

    fn tables(&mut self, ui: &mut Ui, model: &Model) {
        widgets::section(ui, "Users");
        egui::Grid::new("users")
            .striped(true)
            .num_columns(5)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                for title in ["Name", "Account", "Group", "Priority", "Role"] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                for user in &model.users {
                    let selected = self.user.editing.as_deref() == Some(user.name.as_str());
                    if ui
                        .selectable_label(selected, &user.name)
                        .on_hover_text("Edit this user")
                        .clicked()
                    {
                        self.user = UserForm::load(user);
                        self.user_failure = None;
                    }
                    ui.label(&user.unix_account);
                    ui.label(&user.group);
                    ui.label(format!("{}", user.priority));
                    ui.label(if user.admin { "admin" } else { "user" });
                    ui.end_row();
                }
            });
        widgets::section(ui, "Groups");
        egui::Grid::new("groups")
            .striped(true)
            .num_columns(4)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                for title in ["Group", "Priority", "Members", "Description"] {
                    ui.label(RichText::new(title).strong());
                }
                ui.end_row();
                for group in &model.groups {
                    let selected = self.group.editing.as_deref() == Some(group.name.as_str());
                    if ui
                        .selectable_label(selected, format!("group {}", group.name))
                        .on_hover_text("Edit this group")
                        .clicked()
                    {
                        self.group = GroupForm::load(group);
                        self.group_failure = None;
                    }
                    ui.label(format!("{}", group.priority));
                    ui.label(
                        model
                            .users
                            .iter()
                            .filter(|u| u.group == group.name)
                            .count()
                            .to_string(),
                    );
                    ui.label(&group.description);
                    ui.end_row();
                }
            });
    }

    fn user_form(&mut self, ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
        let title = match &self.user.editing {
            Some(name) => format!("Edit user {name}"),
            None => "New user".to_string(),
        };
        widgets::section(ui, &title);
        let (user, problems) = self.user.check(model);
        // A form nobody has typed in yet is not wrong, only empty.
        let untouched = self.user.editing.is_none()
            && self.user.name.is_empty()
            && self.user.unix_account.is_empty();
        egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
            egui::Grid::new("user_form")
                .num_columns(2)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    if self.user.editing.is_none() {
                        widgets::text_row(ui, "User name", &mut self.user.name, 220.0);
                    }
                    widgets::text_row(ui, "Unix account", &mut self.user.unix_account, 220.0);
                    let label = ui.label("Group");
                    ComboBox::from_id_salt("user_group")
                        .selected_text(self.user.group.clone())
                        .width(220.0)
                        .show_ui(ui, |ui| {
                            for g in &model.groups {
                                ui.selectable_value(&mut self.user.group, g.name.clone(), &g.name);
                            }
                        })
                        .response
                        .labelled_by(label.id);
                    ui.end_row();
                    widgets::text_row(ui, "User priority", &mut self.user.priority, 80.0);
                    ui.label("");
                    ui.checkbox(&mut self.user.admin, "Administrator");
                    ui.end_row();
                    let label = ui.label(if self.user.editing.is_some() {
                        "New password"
                    } else {
                        "Password"
                    });
                    ui.add(
                        TextEdit::singleline(&mut self.user.password)
                            .password(true)
                            .hint_text(if self.user.editing.is_some() {
                                "leave empty to keep"
                            } else {
                                "needed to sign in"
                            })
                            .desired_width(220.0),
                    )
                    .labelled_by(label.id);
                    ui.end_row();
                });
            if !untouched {
                widgets::problems(ui, "Not valid yet:", &problems);
            }
            widgets::problems(ui, "Sesco refused:", &failure_lines(&self.user_failure));
            if self.user.editing.is_none() && self.user.password.is_empty() && !untouched {
                ui.label(
                    RichText::new("Without a password the user cannot sign in until one is set.")
                        .color(WARN),
                );
            }
            ui.horizontal(|ui| {
                let ready = problems.is_empty() && !self.user_waiting;
                if ui
                    .add_enabled(ready, egui::Button::new("Save user"))
                    .clicked()
                {
                    self.user_waiting = true;
                    self.user_failure = None;
                    let password = (!self.user.password.is_empty()).then(|| self.user.password.clone());
                    actions.push(Action::Send(Command::PutUser { user: user.clone(), password }));
                }
                if let Some(name) = self.user.editing.clone() {
                    if ui.button("Delete user").clicked() {
                        actions.push(Action::Confirm(Confirm {
                            details: Vec::new(),
                            title: format!("Delete user {name}?"),
                            body: format!(
                                "{name} can no longer sign in or request sessions. Their running sessions are not ended."
                            ),
                            button: "Delete".into(),
                            command: Command::DeleteUser(name),
                        }));
                    }
                    if ui.button("New user").clicked() {
                        self.user = UserForm::new_user(&model.groups);
                        self.user_failure = None;
                    }
                }
                if self.user_waiting {
                    ui.spinner();
                }
            });
        });
    }

    fn group_form(&mut self, ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
        let title = match &self.group.editing {
            Some(name) => format!("Edit group {name}"),
            None => "New group".to_string(),
        };
        widgets::section(ui, &title);
        let (group, problems) = self.group.check(model);
        let untouched = self.group.editing.is_none() && self.group.name.is_empty();
        egui::Frame::group(ui.style())
            .inner_margin(10.0)
            .show(ui, |ui| {
                egui::Grid::new("group_form")
                    .num_columns(2)
                    .spacing([12.0, 6.0])
                    .show(ui, |ui| {
                        if self.group.editing.is_none() {
                            widgets::text_row(ui, "Group name", &mut self.group.name, 220.0);
                        }
                        widgets::text_row(ui, "Group priority", &mut self.group.priority, 80.0);
                        widgets::text_row(ui, "Description", &mut self.group.description, 260.0);
                    });
                if !untouched {
                    widgets::problems(ui, "Not valid yet:", &problems);
                }
                widgets::problems(ui, "Sesco refused:", &failure_lines(&self.group_failure));
                ui.horizontal(|ui| {
                    let ready = problems.is_empty() && !self.group_waiting;
                    if ui
                        .add_enabled(ready, egui::Button::new("Save group"))
                        .clicked()
                    {
                        self.group_waiting = true;
                        self.group_failure = None;
                        actions.push(Action::Send(Command::PutGroup(group.clone())));
                    }
                    if let Some(name) = self.group.editing.clone() {
                        if ui.button("Delete group").clicked() {
                            actions.push(Action::Confirm(Confirm {
                                details: Vec::new(),
                                title: format!("Delete group {name}?"),
                                body: "Sesco refuses while users still belong to it.".into(),
                                button: "Delete".into(),
                                command: Command::DeleteGroup(name),
                            }));
                        }
                        if ui.button("New group").clicked() {
                            self.group = GroupForm::new_group();
                            self.group_failure = None;
                        }
                    }
                    if self.group_waiting {
                        ui.spinner();
                    }
                });
            });
    }
}
