//! Application definitions for admins: variants, processes (demands and node
//! requirements), QoS dimensions and their levels (values, utilities, scales), checked as
//! they are typed with the same rules Sesco applies, each problem named by its field.

use std::collections::{BTreeMap, HashMap};

use arq::proto::world::{
    ApplicationDef, CpuClass, DimensionDef, LevelDef, NodeRequirement, PathStep, ProcessDef,
    RestartMode, RestartPolicy, VariantDef, WorldError, display_path,
};
use egui::{ComboBox, RichText, Ui};

use crate::app::{Action, Confirm};
use crate::connection::{AdminTarget, Command, Failure, Outcome};
use crate::model::Model;
use crate::widgets::{self, BAD, GOOD, MUTED};

#[derive(Debug, Clone, Default, PartialEq)]
struct LevelForm {
    name: String,
    value: String,
    utility: String,
    cpu_scale: String,
    memory_scale: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct DimensionForm {
    name: String,
    unit: String,
    levels: Vec<LevelForm>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ProcessForm {
    name: String,
    /// argv, separated by spaces.
    command: String,
    /// `KEY=VALUE` pairs separated by spaces.
    env: String,
    cpu: String,
    memory_mb: String,
    pids_max: String,
    node_name: String,
    /// Comma-separated.
    node_labels: String,
    min_cpus: String,
}

#[derive(Debug, Clone, PartialEq)]
struct VariantForm {
    name: String,
    description: String,
    cpu_class: CpuClass,
    deadline_period_ms: String,
    restart: RestartMode,
    max_restarts: String,
    backoff_ms: String,
    processes: Vec<ProcessForm>,
    dimensions: Vec<DimensionForm>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct AppForm {
    name: String,
    description: String,
    variants: Vec<VariantForm>,
}

fn num(value: f64) -> String {
    format!("{value}")
}

impl LevelForm {
    fn load(l: &LevelDef) -> Self {
        Self {
            name: l.name.clone(),
            value: num(l.value),
            utility: num(l.utility),
            cpu_scale: num(l.cpu_scale),
            memory_scale: num(l.memory_scale),
        }
    }

    fn blank() -> Self {
        Self {
            value: "0".into(),
            utility: "0.1".into(),
            cpu_scale: "1".into(),
            memory_scale: "1".into(),
            ..Self::default()
        }
    }
}

impl ProcessForm {
    fn load(p: &ProcessDef) -> Self {
        Self {
            name: p.name.clone(),
            command: p.command.join(" "),
            env: p
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            cpu: num(p.cpu),
            memory_mb: num(p.memory_mb),
            pids_max: p.pids_max.to_string(),
            node_name: p.node.name.clone().unwrap_or_default(),
            node_labels: p.node.labels.join(", "),
            min_cpus: p.node.min_cpus.to_string(),
        }
    }

    fn blank() -> Self {
        Self {
            cpu: "0.1".into(),
            memory_mb: "64".into(),
            pids_max: "256".into(),
            min_cpus: "0".into(),
            ..Self::default()
        }
    }
}

impl VariantForm {
    fn load(v: &VariantDef) -> Self {
        Self {
            name: v.name.clone(),
            description: v.description.clone(),
            cpu_class: v.cpu_class,
            deadline_period_ms: v.deadline_period_ms.to_string(),
            restart: v.restart.mode,
            max_restarts: v.restart.max_restarts.to_string(),
            backoff_ms: v.restart.backoff_ms.to_string(),
            processes: v.processes.iter().map(ProcessForm::load).collect(),
            dimensions: v
                .dimensions
                .iter()
                .map(|d| DimensionForm {
                    name: d.name.clone(),
                    unit: d.unit.clone(),
                    levels: d.levels.iter().map(LevelForm::load).collect(),
                })
                .collect(),
        }
    }

    fn blank() -> Self {
        Self::load(&VariantDef {
            name: String::new(),
            description: String::new(),
            cpu_class: CpuClass::Bandwidth,
            deadline_period_ms: 10,
            restart: RestartPolicy::default(),
            processes: Vec::new(),
            dimensions: Vec::new(),
        })
        .with_process()
    }

    fn with_process(mut self) -> Self {
        self.processes.push(ProcessForm::blank());
        self
    }
}

impl AppForm {
    fn load(app: &ApplicationDef) -> Self {
        Self {
            name: app.name.clone(),
            description: app.description.clone(),
            variants: app.variants.iter().map(VariantForm::load).collect(),
        }
    }

    fn blank() -> Self {
        Self {
            variants: vec![VariantForm::blank()],
            ..Self::default()
        }
    }

    /// The application as entered, and every problem: fields that are not numbers, and
    /// everything [`ApplicationDef::validate`] finds.
    fn build(&self) -> (ApplicationDef, Vec<WorldError>) {
        let mut errors = Vec::new();
        let mut parse = Parser {
            path: Vec::new(),
            errors: &mut errors,
        };
        let variants = self
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| parse.variant(i, v))
            .collect();
        let app = ApplicationDef {
            name: self.name.trim().to_string(),
            description: self.description.trim().to_string(),
            variants,
        };
        if let Err(found) = app.validate() {
            errors.extend(found);
        }
        (app, errors)
    }
}

/// Turns the form's text into numbers, noting what does not parse (with a harmless
/// stand-in, so that validation does not report the same field twice).
struct Parser<'a> {
    path: Vec<PathStep>,
    errors: &'a mut Vec<WorldError>,
}

impl Parser<'_> {
    fn fail(&mut self, field: &str, reason: String) {
        let mut path = self.path.clone();
        path.push(PathStep::Key(field.into()));
        self.errors.push(WorldError { path, reason });
    }

    fn float(&mut self, field: &str, text: &str, stand_in: f64) -> f64 {
        match text.trim().parse::<f64>() {
            Ok(v) => v,
            Err(_) => {
                self.fail(field, format!("'{}' is not a number", text.trim()));
                stand_in
            }
        }
    }

    fn whole<T: std::str::FromStr>(&mut self, field: &str, text: &str, stand_in: T) -> T {
        match text.trim().parse::<T>() {
            Ok(v) => v,
            Err(_) => {
                self.fail(field, format!("'{}' is not a whole number", text.trim()));
                stand_in
            }
        }
    }

    fn within<R>(&mut self, steps: &[PathStep], f: impl FnOnce(&mut Self) -> R) -> R {
        let depth = self.path.len();
        self.path.extend_from_slice(steps);
        let r = f(self);
        self.path.truncate(depth);
        r
    }

    fn variant(&mut self, i: usize, v: &VariantForm) -> VariantDef {
        let steps = [PathStep::Key("variants".into()), PathStep::Index(i)];
        self.within(&steps, |p| {
            let deadline_period_ms = if v.cpu_class == CpuClass::Deadline {
                p.whole("deadline_period_ms", &v.deadline_period_ms, 10)
            } else {
                v.deadline_period_ms.trim().parse().unwrap_or(10)
            };
            let restart = p.within(&[PathStep::Key("restart".into())], |p| RestartPolicy {
                mode: v.restart,
                max_restarts: p.whole("max_restarts", &v.max_restarts, 3),
                backoff_ms: p.whole("backoff_ms", &v.backoff_ms, 500),
            });
            let processes = v
                .processes
                .iter()
                .enumerate()
                .map(|(j, proc)| {
                    p.within(
                        &[PathStep::Key("processes".into()), PathStep::Index(j)],
                        |p| p.process(proc),
                    )
                })
                .collect();
            let dimensions = v
                .dimensions
                .iter()
                .enumerate()
                .map(|(j, d)| {
                    p.within(
                        &[PathStep::Key("dimensions".into()), PathStep::Index(j)],
                        |p| DimensionDef {
                            name: d.name.trim().to_string(),
                            unit: d.unit.trim().to_string(),
                            levels: d
                                .levels
                                .iter()
                                .enumerate()
                                .map(|(k, l)| {
                                    p.within(
                                        &[PathStep::Key("levels".into()), PathStep::Index(k)],
                                        |p| LevelDef {
                                            name: l.name.trim().to_string(),
                                            value: p.float("value", &l.value, 0.0),
                                            utility: p.float("utility", &l.utility, 0.0),
                                            cpu_scale: p.float("cpu_scale", &l.cpu_scale, 1.0),
                                            memory_scale: p.float(
                                                "memory_scale",
                                                &l.memory_scale,
                                                1.0,
                                            ),
                                            net_scale: 1.0,
                                        },
                                    )
                                })
                                .collect(),
                        },
                    )
                })
                .collect();
            VariantDef {
                name: v.name.trim().to_string(),
                description: v.description.trim().to_string(),
                cpu_class: v.cpu_class,
                deadline_period_ms,
                restart,
                processes,
                dimensions,
            }
        })
    }

    fn process(&mut self, p: &ProcessForm) -> ProcessDef {
        let mut env = BTreeMap::new();
        for pair in p.env.split_whitespace() {
            match pair.split_once('=') {
                Some((k, v)) => {
                    env.insert(k.to_string(), v.to_string());
                }
                None => self.fail("env", format!("'{pair}' is not KEY=VALUE")),
            }
        }
        let node_name = p.node_name.trim();
        ProcessDef {
            name: p.name.trim().to_string(),
            command: p.command.split_whitespace().map(str::to_string).collect(),
            env,
            cpu: self.float("cpu", &p.cpu, 1.0),
            memory_mb: self.float("memory_mb", &p.memory_mb, 1.0),
            pids_max: self.whole("pids_max", &p.pids_max, 256),
            node: self.within(&[PathStep::Key("node".into())], |s| NodeRequirement {
                name: (!node_name.is_empty()).then(|| node_name.to_string()),
                labels: p
                    .node_labels
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
                min_cpus: if p.min_cpus.trim().is_empty() {
                    0
                } else {
                    s.whole("min_cpus", &p.min_cpus, 0)
                },
            }),
            net_mbps: 0.0,
            net_interface: String::new(),
            io_device: None,
            io_read_mbps: None,
            io_write_mbps: None,
            io_read_iops: None,
            io_write_iops: None,
        }
    }
}

/// Problems by the path of their field, for marking fields.
struct Marks(HashMap<String, String>);

impl Marks {
    fn new(errors: &[WorldError]) -> Self {
        let mut map: HashMap<String, String> = HashMap::new();
        for e in errors {
            let key = display_path(&e.path);
            map.entry(key)
                .and_modify(|r| {
                    r.push_str("; ");
                    r.push_str(&e.reason);
                })
                .or_insert_with(|| e.reason.clone());
        }
        Self(map)
    }

    fn at(&self, path: &str) -> Option<&str> {
        self.0.get(path).map(String::as_str)
    }
}

/// A small label, then a field named `name` for screen readers and tests.
fn field(
    ui: &mut Ui,
    visible: &str,
    name: String,
    text: &mut String,
    width: f32,
    marks: &Marks,
    path: String,
) {
    ui.label(RichText::new(visible).color(MUTED));
    widgets::cell_edit(ui, &name, text, width, marks.at(&path));
}

#[derive(Default)]
pub struct ApplicationEditor {
    /// The application being edited, as Sesco has it; `None` for a new one.
    origin: Option<ApplicationDef>,
    form: Option<AppForm>,
    waiting: bool,
    failure: Option<Failure>,
    saved: bool,
    /// A save Sesco accepted and the app has not reloaded yet.
    reloading: bool,
}

impl ApplicationEditor {
    pub fn on_outcome(&mut self, outcome: &Outcome) {
        let Outcome::Admin {
            target: AdminTarget::Application,
            result,
            what,
        } = outcome
        else {
            return;
        };
        self.waiting = false;
        self.failure = result.clone().err();
        if result.is_ok() {
            if what.starts_with("deleted") {
                self.origin = None;
                self.form = None;
            } else {
                self.saved = true;
                self.reloading = true;
                // Until the reload arrives, what was sent is what Sesco has.
                if let Some(form) = &self.form {
                    self.origin = Some(form.build().0);
                }
            }
        }
    }

    fn open(&mut self, app: Option<&ApplicationDef>) {
        self.origin = app.cloned();
        self.form = Some(app.map_or_else(AppForm::blank, AppForm::load));
        self.failure = None;
        self.saved = false;
        self.reloading = false;
    }

    pub fn ui(&mut self, ui: &mut Ui, model: &Model, actions: &mut Vec<Action>) {
        if self.form.is_none() {
            self.open(model.applications.first());
        }
        if self.reloading
            && let Some(origin) = &self.origin
            && model.application(&origin.name) == Some(origin)
        {
            self.reloading = false;
        }
        // Someone else changed the application while it was open here, unedited: show
        // theirs.
        if let (Some(origin), Some(form)) = (&self.origin, &self.form)
            && !self.waiting
            && !self.reloading
            && let Some(current) = model.application(&origin.name)
            && current != origin
            && form.build().0 == *origin
        {
            let current = current.clone();
            self.open(Some(&current));
        }
        egui::Panel::left("definition_list")
            .resizable(false)
            .exact_size(200.0)
            .show(ui, |ui| {
                ui.add_space(6.0);
                ui.label(RichText::new("Definitions").heading());
                ui.add_space(4.0);
                for app in &model.applications {
                    let selected = self.origin.as_ref().is_some_and(|o| o.name == app.name);
                    if ui
                        .add_sized(
                            [ui.available_width(), 24.0],
                            egui::Button::selectable(selected, format!("Edit {}", app.name)),
                        )
                        .clicked()
                    {
                        self.open(Some(app));
                    }
                }
                ui.add_space(8.0);
                if ui.button("New application").clicked() {
                    self.open(None);
                }
            });
        let Some(mut form) = self.form.take() else {
            return;
        };
        let (app, errors) = form.build();
        let marks = Marks::new(&errors);
        let dirty = self.origin.as_ref() != Some(&app);
        ui.add_space(6.0);
        ui.label(
            RichText::new(match &self.origin {
                Some(o) => format!("Application {}", o.name),
                None => "New application".into(),
            })
            .size(22.0)
            .strong(),
        );
        ui.horizontal(|ui| {
            if self.origin.is_none() {
                field(
                    ui,
                    "Name",
                    "Application name".into(),
                    &mut form.name,
                    160.0,
                    &marks,
                    "name".into(),
                );
            }
            ui.label(RichText::new("Description").color(MUTED));
            widgets::cell_edit(
                ui,
                "Application description",
                &mut form.description,
                420.0,
                None,
            );
        });
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let ready = errors.is_empty() && dirty && !self.waiting;
            if ui
                .add_enabled(
                    ready,
                    egui::Button::new(RichText::new("Save application").strong()),
                )
                .clicked()
            {
                self.waiting = true;
                self.saved = false;
                self.failure = None;
                actions.push(Action::Send(Command::PutApplication(app.clone())));
            }
            if let Some(origin) = &self.origin {
                if ui.add_enabled(dirty, egui::Button::new("Revert")).clicked() {
                    form = AppForm::load(origin);
                }
                if ui.button("Delete application").clicked() {
                    actions.push(Action::Confirm(Confirm {
                        details: Vec::new(),
                        title: format!("Delete application {}?", origin.name),
                        body: "Users can no longer request it. Running sessions of it are not \
                               ended."
                            .into(),
                        button: "Delete".into(),
                        command: Command::DeleteApplication(origin.name.clone()),
                    }));
                }
            }
            if self.waiting {
                ui.spinner();
            } else if !errors.is_empty() {
                ui.label(
                    RichText::new(format!(
                        "{} problem{}",
                        errors.len(),
                        if errors.len() == 1 { "" } else { "s" }
                    ))
                    .color(BAD),
                );
            } else if dirty {
                ui.label(RichText::new("Unsaved changes").color(MUTED));
            } else if self.saved {
                ui.label(RichText::new("Saved").color(GOOD));
            }
        });
        let mut lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        if let Some(failure) = &self.failure {
            lines.extend(failure.lines().iter().map(|l| format!("Sesco: {l}")));
        }
        if !lines.is_empty() {
            egui::ScrollArea::vertical()
                .id_salt("definition_problems")
                .max_height(110.0)
                .show(ui, |ui| {
                    widgets::problems(ui, "Problems to fix before saving:", &lines);
                });
        }
        ui.add_space(4.0);
        egui::ScrollArea::vertical()
            .id_salt("definition_form")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let mut remove_variant = None;
                for (i, variant) in form.variants.iter_mut().enumerate() {
                    if variant_editor(ui, i, variant, &marks) {
                        remove_variant = Some(i);
                    }
                }
                if let Some(i) = remove_variant {
                    form.variants.remove(i);
                }
                if ui.button("Add variant").clicked() {
                    form.variants.push(VariantForm::blank());
                }
                ui.add_space(16.0);
            });
        self.form = Some(form);
    }
}

/// One variant's fields; true when the admin asked to remove it.
fn variant_editor(ui: &mut Ui, i: usize, v: &mut VariantForm, marks: &Marks) -> bool {
    let n = i + 1;
    let base = format!("variants[{i}]");
    let mut remove = false;
    egui::Frame::group(ui.style())
        .inner_margin(8.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(format!("Variant {n}")).strong());
                field(
                    ui,
                    "Name",
                    format!("Variant {n} name"),
                    &mut v.name,
                    110.0,
                    marks,
                    format!("{base}.name"),
                );
                field(
                    ui,
                    "Description",
                    format!("Variant {n} description"),
                    &mut v.description,
                    260.0,
                    marks,
                    format!("{base}.description"),
                );
                if ui.button(format!("Remove variant {n}")).clicked() {
                    remove = true;
                }
            });
            ui.horizontal_wrapped(|ui| {
                let label = ui.label(RichText::new("CPU class").color(MUTED));
                ComboBox::from_id_salt(("cpu_class", i))
                    .selected_text(v.cpu_class.to_string())
                    .show_ui(ui, |ui| {
                        for class in [CpuClass::Bandwidth, CpuClass::Deadline] {
                            ui.selectable_value(&mut v.cpu_class, class, class.to_string());
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if v.cpu_class == CpuClass::Deadline {
                    field(
                        ui,
                        "Period (ms)",
                        format!("Variant {n} deadline period"),
                        &mut v.deadline_period_ms,
                        50.0,
                        marks,
                        format!("{base}.deadline_period_ms"),
                    );
                }
                let label = ui.label(RichText::new("Restart").color(MUTED));
                ComboBox::from_id_salt(("restart", i))
                    .selected_text(v.restart.to_string())
                    .show_ui(ui, |ui| {
                        for mode in [
                            RestartMode::Never,
                            RestartMode::OnFailure,
                            RestartMode::Always,
                        ] {
                            ui.selectable_value(&mut v.restart, mode, mode.to_string());
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if v.restart != RestartMode::Never {
                    field(
                        ui,
                        "at most",
                        format!("Variant {n} max restarts"),
                        &mut v.max_restarts,
                        40.0,
                        marks,
                        format!("{base}.restart.max_restarts"),
                    );
                    field(
                        ui,
                        "backoff (ms)",
                        format!("Variant {n} restart backoff"),
                        &mut v.backoff_ms,
                        60.0,
                        marks,
                        format!("{base}.restart.backoff_ms"),
                    );
                }
            });
            mark_line(ui, marks, &format!("{base}.processes"));
            let mut remove_process = None;
            for (j, p) in v.processes.iter_mut().enumerate() {
                let m = j + 1;
                let at = format!("{base}.processes[{j}]");
                let who = format!("Variant {n} process {m}");
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new(format!("Process {m}")).strong());
                    field(
                        ui,
                        "Name",
                        format!("{who} name"),
                        &mut p.name,
                        90.0,
                        marks,
                        format!("{at}.name"),
                    );
                    field(
                        ui,
                        "Command",
                        format!("{who} command"),
                        &mut p.command,
                        180.0,
                        marks,
                        format!("{at}.command"),
                    );
                    field(
                        ui,
                        "CPUs",
                        format!("{who} CPU"),
                        &mut p.cpu,
                        50.0,
                        marks,
                        format!("{at}.cpu"),
                    );
                    field(
                        ui,
                        "Memory (MiB)",
                        format!("{who} memory"),
                        &mut p.memory_mb,
                        50.0,
                        marks,
                        format!("{at}.memory_mb"),
                    );
                    field(
                        ui,
                        "PIDs",
                        format!("{who} pids"),
                        &mut p.pids_max,
                        40.0,
                        marks,
                        format!("{at}.pids_max"),
                    );
                });
                ui.horizontal_wrapped(|ui| {
                    ui.add_space(60.0);
                    field(
                        ui,
                        "Node",
                        format!("{who} node"),
                        &mut p.node_name,
                        80.0,
                        marks,
                        format!("{at}.node.name"),
                    );
                    field(
                        ui,
                        "Labels",
                        format!("{who} labels"),
                        &mut p.node_labels,
                        90.0,
                        marks,
                        format!("{at}.node.labels"),
                    );
                    field(
                        ui,
                        "Min CPUs",
                        format!("{who} min CPUs"),
                        &mut p.min_cpus,
                        30.0,
                        marks,
                        format!("{at}.node.min_cpus"),
                    );
                    field(
                        ui,
                        "Env",
                        format!("{who} environment"),
                        &mut p.env,
                        140.0,
                        marks,
                        format!("{at}.env"),
                    );
                    if ui
                        .button(format!("Remove process {m} of variant {n}"))
                        .clicked()
                    {
                        remove_process = Some(j);
                    }
                });
            }
            if let Some(j) = remove_process {
                v.processes.remove(j);
            }
            if ui.button(format!("Add process to variant {n}")).clicked() {
                v.processes.push(ProcessForm::blank());
            }
            ui.add_space(4.0);
            mark_line(ui, marks, &format!("{base}.dimensions"));
            let mut remove_dimension = None;
            for (j, d) in v.dimensions.iter_mut().enumerate() {
                let m = j + 1;
                let at = format!("{base}.dimensions[{j}]");
                let who = format!("Variant {n} dimension {m}");
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new(format!("QoS dimension {m}")).strong());
                    field(
                        ui,
                        "Name",
                        format!("{who} name"),
                        &mut d.name,
                        100.0,
                        marks,
                        format!("{at}.name"),
                    );
                    field(
                        ui,
                        "Unit",
                        format!("{who} unit"),
                        &mut d.unit,
                        50.0,
                        marks,
                        format!("{at}.unit"),
                    );
                    if ui
                        .button(format!("Remove dimension {m} of variant {n}"))
                        .clicked()
                    {
                        remove_dimension = Some(j);
                    }
                });
                mark_line(ui, marks, &format!("{at}.levels"));
                let mut remove_level = None;
                egui::Grid::new(("levels", i, j))
                    .num_columns(6)
                    .spacing([8.0, 3.0])
                    .show(ui, |ui| {
                        for title in ["Level", "Value", "Utility", "CPU ×", "Memory ×", ""] {
                            ui.label(RichText::new(title).color(MUTED));
                        }
                        ui.end_row();
                        for (k, l) in d.levels.iter_mut().enumerate() {
                            let lvl = format!("{at}.levels[{k}]");
                            let name = format!("{who} level {}", k + 1);
                            for (text, key, label, width) in [
                                (&mut l.name, "name", "name", 80.0),
                                (&mut l.value, "value", "value", 60.0),
                                (&mut l.utility, "utility", "utility", 60.0),
                                (&mut l.cpu_scale, "cpu_scale", "CPU scale", 50.0),
                                (&mut l.memory_scale, "memory_scale", "memory scale", 50.0),
                            ] {
                                let path = format!("{lvl}.{key}");
                                widgets::cell_edit(
                                    ui,
                                    &format!("{name} {label}"),
                                    text,
                                    width,
                                    marks.at(&path),
                                );
                            }
                            if ui.small_button(format!("Remove level {}", k + 1)).clicked() {
                                remove_level = Some(k);
                            }
                            ui.end_row();
                        }
                    });
                if let Some(k) = remove_level {
                    d.levels.remove(k);
                }
                if ui
                    .small_button(format!("Add level to dimension {m} of variant {n}"))
                    .clicked()
                {
                    d.levels.push(LevelForm::blank());
                }
            }
            if let Some(j) = remove_dimension {
                v.dimensions.remove(j);
            }
            if ui
                .button(format!("Add QoS dimension to variant {n}"))
                .clicked()
            {
                v.dimensions.push(DimensionForm {
                    levels: vec![LevelForm::blank()],
                    ..DimensionForm::default()
                });
            }
        });
    ui.add_space(6.0);
    remove
}

/// A problem about a whole list (e.g. "a variant needs at least one process"), in red.
fn mark_line(ui: &mut Ui, marks: &Marks, path: &str) {
    if let Some(reason) = marks.at(path) {
        ui.label(RichText::new(reason).color(BAD));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_encoder() -> ApplicationDef {
        let world: arq::proto::world::World =
            toml::from_str(include_str!("../../../scripts/demo-world.toml")).unwrap();
        world.applications.into_iter().next().unwrap()
    }

    #[test]
    fn a_loaded_application_builds_back_unchanged() {
        let app = demo_encoder();
        let (built, errors) = AppForm::load(&app).build();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(built, app);
    }

    #[test]
    fn fields_that_are_not_numbers_or_break_rules_are_named_by_path() {
        let mut form = AppForm::load(&demo_encoder());
        form.variants[0].processes[0].cpu = "lots".into();
        form.variants[1].processes[0].cpu = "0".into();
        form.variants[1].dimensions[0].levels[2].utility = "-1".into();
        let (_, errors) = form.build();
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "variants[0].processes[0].cpu: 'lots' is not a number",
                "variants[1].processes[0].cpu: must be a positive number, not 0",
                "variants[1].dimensions[0].levels[2].utility: must be zero or more, not -1",
            ]
        );
    }
}
