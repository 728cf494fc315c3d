//! The overview, the sessions and nodes tables, the world editor and the confirm dialog,
//! drawn from plain data (what Sesco sends, fed through the model's own updates) and
//! driven through egui_kittest's accessibility tree with clicks, keys and typed text. No
//! Sesco is needed: what is tested is what the app draws from what it received.

mod common;

use arq::proto::node::NodeState;
use arq::proto::session::{SessionId, SessionState};
use common::{model, node, session, shown_in_order};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sesco_gui::app::{Action, Confirm, confirm_dialog};
use sesco_gui::connection::{Command, Outcome};
use sesco_gui::model::Model;
use sesco_gui::views::nodes::{NodeColumn, NodesView, amount};
use sesco_gui::views::overview::{OverviewView, cluster_totals};
use sesco_gui::views::sessions::SessionsView;
use sesco_gui::views::world::WorldView;

use SessionState::{Failed, Running, Starting, Terminated};

struct Page<V> {
    view: V,
    model: Model,
    actions: Vec<Action>,
}

fn page<V: 'static>(
    view: V,
    model: Model,
    draw: impl FnMut(&mut egui::Ui, &mut Page<V>) + 'static,
) -> Harness<'static, Page<V>> {
    let mut harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(
            draw,
            Page {
                view,
                model,
                actions: Vec::new(),
            },
        );
    // Pages may keep repainting (a spinner while Sesco answers): let them settle or not.
    harness.try_run().ok();
    harness
}

fn sessions_page(model: Model) -> Harness<'static, Page<SessionsView>> {
    page(SessionsView::default(), model, |ui, p| {
        p.view.ui(ui, &p.model, "admin", true, &mut p.actions)
    })
}

fn nodes_page(model: Model) -> Harness<'static, Page<NodesView>> {
    page(NodesView::default(), model, |ui, p| {
        p.view.ui(ui, &p.model, &mut p.actions)
    })
}

fn click<S>(harness: &mut Harness<'_, S>, label: &str) {
    harness.get_by_label(label).click();
    harness.run();
}

fn row_labels(ids: impl IntoIterator<Item = u64>) -> Vec<String> {
    ids.into_iter().map(|id| format!("Session {id}")).collect()
}

fn small_cluster() -> Model {
    model(
        vec![
            node(
                "n1",
                NodeState::Up,
                &["gpu"],
                (4.0, 1.5, Some(0.75)),
                (8192.0, 2048.0, Some(1024.0)),
                &[1, 2],
            ),
            node(
                "n2",
                NodeState::Up,
                &["edge"],
                (2.0, 0.25, Some(0.1)),
                (4096.0, 256.0, Some(300.0)),
                &[3],
            ),
            node(
                "n3",
                NodeState::Lost,
                &["gpu", "edge"],
                (8.0, 0.0, None),
                (16384.0, 0.0, None),
                &[],
            ),
            node(
                "n4",
                NodeState::Up,
                &[],
                (1.0, 0.6, Some(0.6)),
                (2048.0, 1024.0, Some(900.0)),
                &[4, 5],
            ),
        ],
        vec![
            session(1, "carol", "encoder", "h264", Running, "n1", 0.9, 0.5),
            session(2, "alice", "telemetry", "batch", Running, "n1", 0.4, 1.0),
            session(3, "bob", "encoder", "vp9", Starting, "n2", 0.2, 0.25),
            session(4, "alice", "encoder", "vp9", Running, "n4", 0.7, 0.35),
            session(5, "bob", "telemetry", "live", Running, "n4", 0.1, 0.25),
            session(6, "alice", "encoder", "h264", Failed, "n2", 0.0, 0.5),
            session(7, "dave", "encoder", "h264", Terminated, "n1", 0.0, 0.5),
        ],
    )
}

#[test]
fn the_sessions_table_sorts_by_a_column_and_filters_by_chips_and_search() {
    let mut harness = sessions_page(small_cluster());
    let all = row_labels(1..=7);
    // Live sessions, newest first.
    assert_eq!(shown_in_order(&harness, &all), row_labels([5, 4, 3, 2, 1]));

    // By user (ties in id order), then the other way.
    click(&mut harness, "Sort sessions by user");
    assert_eq!(shown_in_order(&harness, &all), row_labels([2, 4, 3, 5, 1]));
    click(&mut harness, "Sort sessions by user");
    assert_eq!(shown_in_order(&harness, &all), row_labels([1, 5, 3, 4, 2]));

    // By utility, lowest first.
    click(&mut harness, "Sort sessions by utility");
    assert_eq!(shown_in_order(&harness, &all), row_labels([5, 3, 2, 4, 1]));
    assert_eq!(
        harness.state().view.shown(),
        [5, 3, 2, 4, 1].map(SessionId),
        "the rows drawn are the rows computed"
    );

    // A state chip: only the running ones.
    click(&mut harness, "Filter state running");
    assert_eq!(shown_in_order(&harness, &all), row_labels([5, 2, 4, 1]));
    assert!(harness.query_by_label("state: running  ×").is_some());

    // Clicking a user in the table adds her chip (chips of two fields must both hold).
    harness
        .get_all_by_label("alice")
        .next()
        .expect("alice's row")
        .click();
    harness.run();
    assert_eq!(shown_in_order(&harness, &all), row_labels([2, 4]));

    // The search narrows further: alice's running encoder only.
    harness
        .get_by_label("Search")
        .set_text_value_accesskit("ENCODER");
    harness.run();
    assert_eq!(shown_in_order(&harness, &all), row_labels([4]));

    // Removing the chips and the search brings the rest back; ended ones on request.
    click(&mut harness, "Clear filters");
    harness.get_by_label("Search").set_text_value_accesskit("");
    harness.run();
    assert_eq!(shown_in_order(&harness, &all).len(), 5);
    click(&mut harness, "Show ended sessions");
    click(&mut harness, "Sort sessions by session");
    assert_eq!(shown_in_order(&harness, &all), row_labels(1..=7));
    click(&mut harness, "Filter state failed");
    assert_eq!(shown_in_order(&harness, &all), row_labels([6]));
}

#[test]
fn the_sessions_table_moves_with_home_end_and_page_keys_and_links_to_nodes() {
    let sessions = (1..=300)
        .map(|id| {
            session(
                id,
                "alice",
                "encoder",
                "h264",
                Running,
                &format!("n{}", id % 7),
                0.5,
                0.1,
            )
        })
        .collect();
    let mut harness = sessions_page(model(Vec::new(), sessions));
    // The newest is selected first.
    assert_eq!(harness.state().view.selected(), Some(SessionId(300)));
    harness.key_press(egui::Key::End);
    harness.run();
    assert_eq!(harness.state().view.selected(), Some(SessionId(1)));
    assert!(
        harness.query_by_label("Session 1").is_some(),
        "the table scrolled to the last row"
    );
    assert!(
        harness.query_by_label("Session 300").is_none(),
        "rows out of view are not laid out"
    );
    harness.key_press(egui::Key::Home);
    harness.run();
    assert_eq!(harness.state().view.selected(), Some(SessionId(300)));
    harness.key_press(egui::Key::PageDown);
    harness.run();
    let after_page = harness.state().view.selected().unwrap().0;
    assert!(
        after_page < 300 - 5,
        "a page is more than a few rows: at {after_page}"
    );
    harness.key_press(egui::Key::PageUp);
    harness.run();
    assert_eq!(harness.state().view.selected(), Some(SessionId(300)));

    // A session's node is a link to the node.
    harness.state_mut().actions.clear();
    harness.get_all_by_label("n6").next().unwrap().click();
    harness.run();
    assert!(
        harness
            .state()
            .actions
            .iter()
            .any(|a| matches!(a, Action::ShowNode(n) if n == "n6")),
        "clicking the node asks for the node's page"
    );
}

#[test]
fn the_nodes_table_sorts_by_load_and_filters_by_state_label_and_search() {
    let mut harness = nodes_page(small_cluster());
    let all: Vec<String> = ["n1", "n2", "n3", "n4"].map(String::from).to_vec();
    assert_eq!(shown_in_order(&harness, &all), all, "in name order");

    click(&mut harness, "Sort nodes by cpu reserved");
    assert_eq!(harness.state().view.sort.column, NodeColumn::CpuReserved);
    assert_eq!(shown_in_order(&harness, &all), ["n3", "n2", "n4", "n1"]);
    click(&mut harness, "Sort nodes by cpu reserved");
    assert_eq!(shown_in_order(&harness, &all), ["n1", "n4", "n2", "n3"]);
    click(&mut harness, "Sort nodes by memory used");
    // n3 reports no use: it comes before every measured node.
    assert_eq!(shown_in_order(&harness, &all), ["n3", "n2", "n4", "n1"]);

    click(&mut harness, "Filter label gpu");
    assert_eq!(shown_in_order(&harness, &all), ["n3", "n1"]);
    click(&mut harness, "Filter state up");
    assert_eq!(shown_in_order(&harness, &all), ["n1"]);
    click(&mut harness, "Clear filters");
    harness
        .get_by_label("Search")
        .set_text_value_accesskit("edge");
    harness.run();
    assert_eq!(shown_in_order(&harness, &all), ["n3", "n2"]);

    // The selected node's details list its sessions, each a link to the session.
    harness.get_by_label("Search").set_text_value_accesskit("");
    harness.run();
    harness.get_all_by_label("n4").next().unwrap().click();
    harness.run();
    assert_eq!(harness.state().view.selected(), Some("n4"));
    click(&mut harness, "5 · bob telemetry/live");
    assert!(
        harness
            .state()
            .actions
            .iter()
            .any(|a| matches!(a, Action::ShowSession(SessionId(5)))),
    );
}

#[test]
fn the_overview_figures_are_the_sums_of_the_nodes_and_sessions() {
    let model = small_cluster();
    // The sums, computed here from the plain data.
    let (mut cpu, mut memory) = ([0.0f64; 3], [0.0f64; 3]);
    for n in &model.nodes {
        for r in &n.resources {
            let total = if r.resource.ends_with("/cpu") {
                &mut cpu
            } else {
                &mut memory
            };
            total[0] += r.capacity;
            total[1] += r.reserved;
            total[2] += r.used.unwrap_or(0.0);
        }
    }
    assert_eq!(cpu[0], 15.0);
    let totals = cluster_totals(&model.nodes);
    assert_eq!(totals.len(), 2);
    assert_eq!(totals[0].kind, "cpu");
    assert_eq!(
        [totals[0].capacity, totals[0].reserved, totals[0].used],
        cpu
    );
    assert_eq!(
        [totals[1].capacity, totals[1].reserved, totals[1].used],
        memory
    );
    assert_eq!(totals[0].reporting, 3, "the lost node reports no use");

    let mut harness = page(OverviewView, model, |ui, p| {
        p.view.ui(ui, &p.model, &mut p.actions)
    });
    for value in cpu {
        let text = amount(value, "CPUs");
        assert!(harness.query_by_label(&text).is_some(), "{text} is shown");
    }
    for value in memory {
        let text = amount(value, "MiB");
        assert!(harness.query_by_label(&text).is_some(), "{text} is shown");
    }
    // Live sessions' utility: 0.9 + 0.4 + 0.2 + 0.7 + 0.1.
    assert!(harness.query_by_label("2.30").is_some());
    for text in [
        "4 running",
        "1 starting",
        "1 failed",
        "1 terminated",
        "3 up",
        "1 lost",
    ] {
        assert!(harness.query_by_label(text).is_some(), "{text} is shown");
    }
    // The lost node is named, and a link to it.
    click(&mut harness, "n3");
    assert!(
        harness
            .state()
            .actions
            .iter()
            .any(|a| matches!(a, Action::ShowNode(n) if n == "n3"))
    );
    click(&mut harness, "4 running");
    assert!(
        harness
            .state()
            .actions
            .iter()
            .any(|a| matches!(a, Action::ShowSessionsIn(Running)))
    );
}

/// Types `text` into the focused widget one key at a time, a frame per key.
fn type_by_key<S>(harness: &mut Harness<'_, S>, text: &str) {
    for c in text.chars() {
        if c == '\n' {
            harness.key_press(egui::Key::Enter);
        } else {
            harness.event(egui::Event::Text(c.to_string()));
        }
        harness.run();
    }
}

const DEMO_WORLD: &str = include_str!("../../scripts/demo-world.toml");

#[test]
fn the_world_editor_keeps_every_typed_character_and_shows_the_diff_before_applying() {
    let mut harness = page(WorldView::default(), Model::default(), |ui, p| {
        p.view.ui(ui, &mut p.actions)
    });
    // The page asked Sesco for its world; here is Sesco's answer.
    assert!(
        harness
            .state()
            .actions
            .iter()
            .any(|a| matches!(a, Action::Send(Command::ExportWorld)))
    );
    harness
        .state_mut()
        .view
        .on_outcome(&Outcome::WorldExported(Ok(DEMO_WORLD.to_string())));
    harness.run();

    // Typed at the end of the file: the check flips between problems and none with
    // almost every key ("[", "[[nodes]]", "reserve_cpus = 1.", …).
    let typed = "\n[[nodes]]\nname = \"n9\"\nlabels = [\"gpu\"]\nreserve_cpus = 1.0\n";
    harness.get_by_label("World TOML").focus();
    harness.run();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::End);
    harness.run();
    type_by_key(&mut harness, typed);
    let text = harness.state().view.text();
    assert!(
        text == format!("{DEMO_WORLD}{typed}"),
        "typed {typed:?} after the exported world; the editor has {:?} after it",
        text.strip_prefix(DEMO_WORLD).unwrap_or(text)
    );
    assert!(harness.get_by_label("World TOML").is_focused());

    // Applying asks first, with what changes entry by entry.
    harness.state_mut().actions.clear();
    click(&mut harness, "Apply to Sesco");
    let actions = &harness.state().actions;
    let Some(Action::Confirm(confirm)) = actions.first() else {
        panic!("applying asks first");
    };
    assert_eq!(confirm.details, ["+ node n9"]);
    let Command::ApplyWorld { toml, .. } = &confirm.command else {
        panic!("the confirmed command applies the world");
    };
    assert_eq!(*toml, format!("{DEMO_WORLD}{typed}"));
}

fn confirm_harness() -> Harness<'static, (Confirm, Option<bool>)> {
    let confirm = Confirm {
        title: "End session 7?".into(),
        body: "It stops now.".into(),
        details: Vec::new(),
        button: "End it".into(),
        command: Command::Terminate(SessionId(7)),
    };
    let mut harness = Harness::builder().with_size([800.0, 600.0]).build_ui_state(
        |ui, (confirm, answer): &mut (Confirm, Option<bool>)| {
            if answer.is_none() {
                *answer = confirm_dialog(ui.ctx(), confirm);
            }
        },
        (confirm, None),
    );
    harness.run();
    harness
}

#[test]
fn esc_cancels_a_confirm_dialog_and_enter_confirms_it() {
    let mut harness = confirm_harness();
    assert!(harness.query_by_label("End session 7?").is_some());
    assert_eq!(
        harness.state().1,
        None,
        "no answer without a key or a click"
    );
    harness.key_press(egui::Key::Escape);
    harness.run();
    assert_eq!(harness.state().1, Some(false), "Esc cancels");

    let mut harness = confirm_harness();
    harness.key_press(egui::Key::Enter);
    harness.run();
    assert_eq!(harness.state().1, Some(true), "Enter confirms");

    let mut harness = confirm_harness();
    click(&mut harness, "Cancel");
    assert_eq!(harness.state().1, Some(false));
}

#[test]
fn the_event_log_moves_with_home_end_and_page_keys() {
    use arq::proto::event::{Event, EventKind};
    let mut model = Model::default();
    let events = (1..=300)
        .map(|seq| Event {
            seq,
            time_ms: 1_700_000_000_000 + seq * 1000,
            session: None,
            node: Some(format!("node{seq}")),
            kind: EventKind::NodeUp {
                cpus: 2,
                memory_bytes: 1 << 30,
            },
        })
        .collect();
    model.apply(&sesco_gui::connection::Update::Events(events));
    let mut harness = page(
        sesco_gui::views::events::EventsView::default(),
        model,
        |ui, p| p.view.ui(ui, &p.model),
    );
    let on_screen = |h: &Harness<'_, Page<_>>, label: &str| {
        let top = h.get_by_label(label).rect().top();
        (0.0..800.0).contains(&top)
    };
    // Newest first.
    assert!(on_screen(&harness, "node300"));
    assert!(!on_screen(&harness, "node1"));
    harness.key_press(egui::Key::End);
    harness.run();
    assert!(on_screen(&harness, "node1"), "End shows the oldest event");
    assert!(!on_screen(&harness, "node300"));
    harness.key_press(egui::Key::Home);
    harness.run();
    assert!(
        on_screen(&harness, "node300"),
        "Home shows the newest again"
    );
    harness.key_press(egui::Key::PageDown);
    harness.run();
    assert!(
        !on_screen(&harness, "node300"),
        "a page down scrolls it away"
    );
    harness.key_press(egui::Key::PageUp);
    harness.run();
    assert!(on_screen(&harness, "node300"));
}
