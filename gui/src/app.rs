//! The app: sign-in, then the main window with its navigation, views and status bar.

use arq::client::Credentials;
use egui::{RichText, Ui};

use crate::connection::{Command, Connection, LinkState, Outcome, SignIn, Update};
use crate::format;
use crate::model::Model;
use crate::views::admin_applications::ApplicationEditor;
use crate::views::admin_users::UsersView;
use crate::views::applications::ApplicationsView;
use crate::views::events::EventsView;
use crate::views::nodes::NodesView;
use crate::views::overview::OverviewView;
use crate::views::sessions::SessionsView;
use crate::views::signin::SignInForm;
use crate::views::world::WorldView;
use crate::widgets::{self, BAD, GOOD, MUTED, WARN};

/// The app's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// The cluster at a glance (admins; their first page).
    Overview,
    /// Browse applications and request sessions.
    Applications,
    /// Sessions, live, with their charts.
    Sessions,
    /// Nodes and their load (admins).
    Nodes,
    /// The event log.
    Events,
    /// Users and groups (admins).
    Users,
    /// Application definitions (admins).
    Definitions,
    /// Import and export the world file (admins).
    World,
}

impl View {
    pub fn title(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Applications => "Applications",
            Self::Sessions => "Sessions",
            Self::Nodes => "Nodes",
            Self::Events => "Events",
            Self::Users => "Users & groups",
            Self::Definitions => "Application definitions",
            Self::World => "World file",
        }
    }

    fn admin_only(self) -> bool {
        matches!(
            self,
            Self::Overview | Self::Nodes | Self::Users | Self::Definitions | Self::World
        )
    }

    /// Every page, in the order of their shortcuts.
    pub const ALL: [View; 8] = [
        View::Overview,
        View::Applications,
        View::Sessions,
        View::Events,
        View::Nodes,
        View::Users,
        View::Definitions,
        View::World,
    ];

    /// The page's keyboard shortcut: Ctrl and its number, Ctrl+1 to Ctrl+8.
    pub fn shortcut(self) -> egui::KeyboardShortcut {
        let keys = [
            egui::Key::Num1,
            egui::Key::Num2,
            egui::Key::Num3,
            egui::Key::Num4,
            egui::Key::Num5,
            egui::Key::Num6,
            egui::Key::Num7,
            egui::Key::Num8,
        ];
        let i = Self::ALL.iter().position(|v| *v == self).expect("listed");
        egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, keys[i])
    }

    /// The page's search box, for Ctrl+F.
    fn search(self) -> Option<&'static str> {
        match self {
            Self::Sessions => Some("sessions"),
            Self::Nodes => Some("nodes"),
            Self::Events => Some("events"),
            _ => None,
        }
    }
}

/// How the app starts.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub server: String,
    pub user: Option<String>,
    /// With `user`: sign in right away.
    pub password: Option<String>,
    pub view: Option<View>,
    /// Written once signed in and the first data has arrived, for scripts that drive the
    /// app.
    pub ready_file: Option<std::path::PathBuf>,
    /// Speak TLS to Sesco, trusting this authority.
    pub tls: Option<sesco_proto::transport::ClientTls>,
}

/// Something a view wants done beyond its own state.
pub enum Action {
    Send(Command),
    /// Ask first, then send.
    Confirm(Confirm),
    Goto(View),
    Notice(Notice),
    /// The Nodes page on this node.
    ShowNode(String),
    /// The Sessions page on this session.
    ShowSession(arq::proto::session::SessionId),
    /// The Sessions page filtered to one state.
    ShowSessionsIn(arq::proto::session::SessionState),
    /// The Nodes page filtered to one state.
    ShowNodesIn(arq::proto::node::NodeState),
}

pub struct Confirm {
    pub title: String,
    pub body: String,
    /// Lines shown under the body, e.g. what a world file changes.
    pub details: Vec<String>,
    /// The button that goes ahead, e.g. "End session".
    pub button: String,
    pub command: Command,
}

#[derive(Clone)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    pub at_ms: u64,
}

impl Notice {
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            error: false,
            at_ms: format::now_ms(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            error: true,
            at_ms: format::now_ms(),
        }
    }
}

/// A signed-in (or signing-in) connection and everything shown for it.
struct Signed {
    connection: Connection,
    server: String,
    user: String,
    admin: bool,
    /// False until Sesco accepted the credentials.
    accepted: bool,
    link: LinkState,
    model: Model,
    view: View,
    /// Whether the page was chosen at start; if not, admins open on the overview.
    view_chosen: bool,
    views: Views,
    confirm: Option<Confirm>,
    notice: Option<Notice>,
}

#[derive(Default)]
struct Views {
    overview: OverviewView,
    applications: ApplicationsView,
    sessions: SessionsView,
    nodes: NodesView,
    events: EventsView,
    users: UsersView,
    definitions: ApplicationEditor,
    world: WorldView,
}

pub struct SescoApp {
    signin: SignInForm,
    signed: Option<Signed>,
    start_view: Option<View>,
    ready_file: Option<std::path::PathBuf>,
    tls: Option<sesco_proto::transport::ClientTls>,
}

impl SescoApp {
    /// The app, signing in right away when the options carry a user and password.
    pub fn new(ctx: &egui::Context, options: StartOptions) -> Self {
        ctx.all_styles_mut(|style| {
            style.spacing.item_spacing = egui::vec2(8.0, 6.0);
            style.spacing.button_padding = egui::vec2(8.0, 3.0);
        });
        let mut app = Self {
            signin: SignInForm::new(&options.server, options.user.as_deref().unwrap_or("")),
            signed: None,
            start_view: options.view,
            ready_file: options.ready_file,
            tls: options.tls,
        };
        if let (Some(user), Some(password)) = (options.user, options.password) {
            app.sign_in(ctx, user, password);
        }
        app
    }

    fn sign_in(&mut self, ctx: &egui::Context, user: String, password: String) {
        let server = self.signin.server.trim().to_string();
        self.signin.error = None;
        self.signin.busy = true;
        let connection = Connection::start(
            SignIn {
                tls: self.tls.clone(),
                server: server.clone(),
                credentials: Credentials::Password {
                    user: user.clone(),
                    password,
                },
            },
            ctx.clone(),
        );
        self.signed = Some(Signed {
            connection,
            server,
            user,
            admin: false,
            accepted: false,
            link: LinkState::Connected,
            model: Model::default(),
            view: self.start_view.unwrap_or(View::Applications),
            view_chosen: self.start_view.is_some(),
            views: Views::default(),
            confirm: None,
            notice: None,
        });
    }

    fn sign_out(&mut self) {
        self.signed = None;
        self.signin.busy = false;
        self.signin.password.clear();
    }

    /// Whether the main window is showing (Sesco accepted the credentials).
    pub fn is_signed_in(&self) -> bool {
        self.signed.as_ref().is_some_and(|s| s.accepted)
    }

    /// The page showing, once signed in.
    pub fn view(&self) -> Option<View> {
        self.signed.as_ref().filter(|s| s.accepted).map(|s| s.view)
    }

    /// Whether the first full load from Sesco has arrived.
    pub fn is_loaded(&self) -> bool {
        self.signed.as_ref().is_some_and(|s| s.model.loaded)
    }

    /// Takes in everything the connection sent since the last frame.
    fn poll(&mut self) {
        let Some(signed) = &mut self.signed else {
            return;
        };
        for update in signed.connection.poll() {
            match update {
                Update::SignedIn {
                    user,
                    admin,
                    server,
                } => {
                    signed.accepted = true;
                    signed.user = user;
                    signed.admin = admin;
                    signed.server = server;
                    if signed.view.admin_only() && !admin {
                        signed.view = View::Applications;
                    }
                    if admin && !signed.view_chosen {
                        signed.view = View::Overview;
                    }
                    self.signin.busy = false;
                    self.signin.password.clear();
                }
                Update::SignInFailed(message) => {
                    self.signin.error = Some(message);
                    self.signin.busy = false;
                    self.signed = None;
                    return;
                }
                Update::Link(link) => signed.link = link,
                Update::Outcome(outcome) => {
                    let notice = describe(&outcome);
                    let views = &mut signed.views;
                    views.applications.on_outcome(&outcome);
                    views.sessions.on_outcome(&outcome);
                    views.users.on_outcome(&outcome);
                    views.definitions.on_outcome(&outcome);
                    views.world.on_outcome(&outcome);
                    if let Some(notice) = notice {
                        signed.notice = Some(notice);
                    }
                }
                data => signed.model.apply(&data),
            }
        }
    }

    /// Draws the whole window.
    pub fn show(&mut self, ui: &mut Ui) {
        self.poll();
        if self.is_loaded()
            && let Some(path) = self.ready_file.take()
            && let Err(e) = std::fs::write(&path, "ready\n")
        {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
        let signed_in = self.is_signed_in();
        if !signed_in {
            let mut submit = None;
            egui::CentralPanel::default().show(ui, |ui| {
                submit = self.signin.ui(ui);
            });
            if let Some((user, password)) = submit {
                self.sign_in(&ui.ctx().clone(), user, password);
            }
            return;
        }
        let mut sign_out = false;
        let signed = self.signed.as_mut().expect("signed in");
        let mut actions = Vec::new();
        if signed.confirm.is_none() {
            keyboard(ui.ctx(), signed);
        }
        egui::Panel::top("top_bar").show(ui, |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                ui.label(RichText::new("Sesco").heading().strong());
                ui.separator();
                ui.label(format!("{} on {}", signed.user, signed.server));
                if signed.admin {
                    ui.label(RichText::new("admin").color(WARN).strong());
                }
                ui.separator();
                match &signed.link {
                    LinkState::Connected => {
                        widgets::dot(ui, GOOD);
                        ui.label("connected");
                    }
                    LinkState::Reconnecting {
                        attempt,
                        last_error,
                    } => {
                        widgets::dot(ui, BAD);
                        ui.spinner();
                        let text = if *attempt == 0 {
                            "connection lost: reconnecting…".to_string()
                        } else {
                            format!("reconnecting (attempt {attempt})…")
                        };
                        ui.label(RichText::new(text).color(BAD))
                            .on_hover_text(last_error.clone());
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.button("Sign out").clicked() {
                        sign_out = true;
                    }
                    if ui
                        .button("Refresh")
                        .on_hover_text("Reload everything from Sesco now")
                        .clicked()
                    {
                        signed.connection.send(Command::Refresh);
                    }
                });
            });
            ui.add_space(4.0);
        });
        egui::Panel::bottom("status_bar").show(ui, |ui| {
            ui.horizontal(|ui| match &signed.notice {
                Some(notice) => {
                    let color = if notice.error {
                        BAD
                    } else {
                        ui.visuals().text_color()
                    };
                    ui.label(RichText::new(format::clock(notice.at_ms)).color(MUTED));
                    ui.label(RichText::new(&notice.text).color(color));
                }
                None => {
                    ui.label(RichText::new("Ready").color(MUTED));
                }
            });
        });
        egui::Panel::left("navigation")
            .resizable(false)
            .exact_size(190.0)
            .show(ui, |ui| {
                ui.add_space(8.0);
                if signed.admin {
                    nav_item(ui, &mut signed.view, View::Overview);
                    ui.add_space(6.0);
                }
                nav_heading(ui, "Work");
                for view in [View::Applications, View::Sessions, View::Events] {
                    nav_item(ui, &mut signed.view, view);
                }
                if signed.admin {
                    ui.add_space(10.0);
                    nav_heading(ui, "Administration");
                    for view in [View::Nodes, View::Users, View::Definitions, View::World] {
                        nav_item(ui, &mut signed.view, view);
                    }
                }
                ui.add_space(10.0);
                let live = signed
                    .model
                    .sessions
                    .values()
                    .filter(|s| s.state.is_live())
                    .count();
                ui.label(RichText::new(format!("{live} live sessions")).color(MUTED));
                let count = |state| {
                    signed
                        .model
                        .nodes
                        .iter()
                        .filter(|n| n.state == state)
                        .count()
                };
                let up = count(arq::proto::node::NodeState::Up);
                let lost = count(arq::proto::node::NodeState::Lost);
                ui.label(
                    RichText::new(format!("{up} of {} nodes up", signed.model.nodes.len()))
                        .color(MUTED),
                );
                if lost > 0 {
                    let text = RichText::new(if lost == 1 {
                        "1 node lost".to_string()
                    } else {
                        format!("{lost} nodes lost")
                    })
                    .color(BAD)
                    .strong();
                    if signed.admin {
                        if ui.link(text).on_hover_text("Show the lost nodes").clicked() {
                            actions.push(Action::ShowNodesIn(arq::proto::node::NodeState::Lost));
                        }
                    } else {
                        ui.label(text);
                    }
                }
            });
        egui::CentralPanel::default().show(ui, |ui| {
            if !signed.model.loaded {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Loading from Sesco…");
                });
                return;
            }
            let model = &signed.model;
            let views = &mut signed.views;
            match signed.view {
                View::Overview => views.overview.ui(ui, model, &mut actions),
                View::Applications => views.applications.ui(ui, model, &mut actions),
                View::Sessions => {
                    views
                        .sessions
                        .ui(ui, model, &signed.user, signed.admin, &mut actions)
                }
                View::Nodes => views.nodes.ui(ui, model, &mut actions),
                View::Events => views.events.ui(ui, model),
                View::Users => views.users.ui(ui, model, &mut actions),
                View::Definitions => views.definitions.ui(ui, model, &mut actions),
                View::World => views.world.ui(ui, &mut actions),
            }
        });
        for action in actions {
            match action {
                Action::Send(command) => signed.connection.send(command),
                Action::Confirm(confirm) => signed.confirm = Some(confirm),
                Action::Goto(view) => signed.view = view,
                Action::Notice(notice) => signed.notice = Some(notice),
                Action::ShowNode(name) => {
                    signed.views.nodes.select(&name);
                    signed.view = View::Nodes;
                }
                Action::ShowSession(id) => {
                    signed.views.sessions.select(id);
                    signed.view = View::Sessions;
                }
                Action::ShowSessionsIn(state) => {
                    signed.views.sessions.show_state(state);
                    signed.view = View::Sessions;
                }
                Action::ShowNodesIn(state) => {
                    signed.views.nodes.show_state(state);
                    signed.view = View::Nodes;
                }
            }
        }
        if let Some(confirm) = &signed.confirm {
            let answer = confirm_dialog(ui.ctx(), confirm);
            if let Some(go) = answer {
                let confirm = signed.confirm.take().expect("shown");
                if go {
                    match &confirm.command {
                        Command::Terminate(id) => signed.views.sessions.mark_ending(*id),
                        Command::ApplyWorld { .. } => signed.views.world.mark_applying(),
                        _ => {}
                    }
                    signed.connection.send(confirm.command);
                }
            }
        }
        if sign_out {
            self.sign_out();
        }
        // Charts and "… ago" columns move with time even without news from Sesco.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_secs(1));
    }
}

/// Asks a confirmation in a modal dialog: `Some(true)` when the user goes ahead (the
/// button, or Enter), `Some(false)` when she cancels (the button, Esc, or a click beside
/// the dialog), `None` while she has not answered.
pub fn confirm_dialog(ctx: &egui::Context, confirm: &Confirm) -> Option<bool> {
    let mut answer = None;
    let modal = egui::Modal::new(egui::Id::unique("sesco-confirm")).show(ctx, |ui| {
        ui.set_max_width(520.0);
        ui.label(RichText::new(&confirm.title).heading());
        ui.add_space(4.0);
        ui.label(&confirm.body);
        if !confirm.details.is_empty() {
            ui.add_space(4.0);
            egui::ScrollArea::vertical()
                .max_height(300.0)
                .auto_shrink([false, true])
                .show(ui, |ui| {
                    for line in &confirm.details {
                        let color = match line.chars().next() {
                            Some('+') => GOOD,
                            Some('-') => BAD,
                            Some('~') => WARN,
                            _ => ui.visuals().text_color(),
                        };
                        ui.add(
                            egui::Label::new(RichText::new(line).monospace().color(color)).wrap(),
                        );
                    }
                });
        }
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui
                .button(RichText::new(&confirm.button).color(BAD))
                .on_hover_text("Enter")
                .clicked()
            {
                answer = Some(true);
            }
            if ui.button("Cancel").on_hover_text("Esc").clicked() {
                answer = Some(false);
            }
        });
    });
    if answer.is_none() {
        if modal.should_close() {
            answer = Some(false);
        } else if ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Enter)) {
            answer = Some(true);
        }
    }
    answer
}

/// The window's shortcuts: Ctrl+1 … Ctrl+8 open a page, Ctrl+F focuses the page's
/// search.
fn keyboard(ctx: &egui::Context, signed: &mut Signed) {
    let admin = signed.admin;
    let find = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::F);
    let (page, find) = ctx.input_mut(|i| {
        let page = View::ALL
            .into_iter()
            .filter(|v| admin || !v.admin_only())
            .find(|v| i.consume_shortcut(&v.shortcut()));
        (page, i.consume_shortcut(&find))
    });
    if let Some(view) = page {
        signed.view = view;
    }
    if find && let Some(page) = signed.view.search() {
        ctx.memory_mut(|m| m.request_focus(crate::views::table::search_id(page)));
    }
}

fn nav_heading(ui: &mut Ui, text: &str) {
    ui.label(RichText::new(text.to_uppercase()).small().color(MUTED));
}

fn nav_item(ui: &mut Ui, current: &mut View, view: View) {
    let selected = *current == view;
    let text = RichText::new(view.title()).size(15.0);
    let shortcut = ui.ctx().format_shortcut(&view.shortcut());
    if ui
        .add_sized(
            [ui.available_width(), 26.0],
            egui::Button::selectable(selected, text),
        )
        .on_hover_text(shortcut)
        .clicked()
    {
        *current = view;
    }
}

/// The status-bar line for a command's answer.
fn describe(outcome: &Outcome) -> Option<Notice> {
    use arq::proto::session::AdmissionOutcome;
    Some(match outcome {
        Outcome::DryRun(_) => return None,
        Outcome::Requested(Ok(AdmissionOutcome::Admitted { session, .. })) => {
            Notice::info(format!(
                "Session {} admitted: {}/{} at {}",
                session.id, session.application, session.variant, session.setpoint
            ))
        }
        Outcome::Requested(Ok(AdmissionOutcome::Rejected { reason, .. })) => {
            Notice::error(format!("Request rejected: {reason}"))
        }
        Outcome::Requested(Err(e)) => Notice::error(format!("Request failed: {e}")),
        Outcome::Terminated(id, Ok(_)) => Notice::info(format!("Session {id} ended")),
        Outcome::Terminated(id, Err(e)) => {
            Notice::error(format!("Could not end session {id}: {e}"))
        }
        Outcome::Admin {
            what,
            result: Ok(()),
            ..
        } => Notice::info(capitalise(what)),
        Outcome::Admin {
            what,
            result: Err(e),
            ..
        } => Notice::error(format!("Could not {}: {e}", infinitive(what))),
        Outcome::WorldExported(Ok(_)) => Notice::info("World exported"),
        Outcome::WorldExported(Err(e)) => Notice::error(format!("Export failed: {e}")),
        Outcome::WorldApplied(Ok(())) => Notice::info("World applied"),
        Outcome::WorldApplied(Err(e)) => Notice::error(format!("Import failed: {e}")),
    })
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "saved user carol" → "save user carol".
fn infinitive(what: &str) -> String {
    for (past, present) in [("saved", "save"), ("deleted", "delete")] {
        if let Some(rest) = what.strip_prefix(past) {
            return format!("{present}{rest}");
        }
    }
    what.strip_prefix("set ")
        .map_or_else(|| what.to_string(), |rest| format!("set {rest}"))
}

impl eframe::App for SescoApp {
    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}
