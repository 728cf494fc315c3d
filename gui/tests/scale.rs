//! The app at cluster size: 5,000 nodes and 50,000 sessions, built here from plain data
//! and fed through the model's own updates, drawn by the real views.
//!
//! It checks that the tables draw only the rows in view and that sorting and filtering
//! still give the right rows at that size; it prints the time a frame takes (the egui pass
//! that lays out the page, and the same with kittest's wgpu renderer drawing it on the
//! software adapter). The times are a measurement, not a pass mark: the machine is shared
//! and a test build is unoptimised. Run it alone to read them:
//! `cargo nextest run -p sesco-gui --test scale --no-capture`.

mod common;

use std::time::{Duration, Instant};

use arq::proto::node::NodeState;
use arq::proto::session::{SessionId, SessionState};
use common::{model, node, session};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sesco_gui::app::Action;
use sesco_gui::model::Model;
use sesco_gui::views::nodes::NodesView;
use sesco_gui::views::overview::OverviewView;
use sesco_gui::views::sessions::SessionsView;
use sesco_gui::views::table::Field;

const NODES: usize = 5_000;
const SESSIONS: usize = 50_000;
/// Ten sessions a node, at both sizes.
const PER_NODE: usize = SESSIONS / NODES;
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn cluster(nodes: usize) -> Model {
    let sessions = nodes * PER_NODE;
    let nodes = (0..nodes)
        .map(|i| {
            let state = if i % 97 == 0 {
                NodeState::Lost
            } else {
                NodeState::Up
            };
            let sessions: Vec<u64> = (0..PER_NODE)
                .map(|k| (i * PER_NODE + k + 1) as u64)
                .collect();
            let reserved = 0.1 * sessions.len() as f64;
            node(
                &format!("n{i:04}"),
                state,
                if i % 3 == 0 { &["gpu"] } else { &["edge"] },
                (16.0, reserved, Some(reserved * 0.6)),
                (65536.0, 640.0, Some(320.0 + i as f64 % 100.0)),
                &sessions,
            )
        })
        .collect();
    let sessions = (1..=sessions as u64)
        .map(|id| {
            let state = match id % 50 {
                0 => SessionState::Failed,
                1 => SessionState::Starting,
                _ => SessionState::Running,
            };
            let node = (id as usize - 1) / PER_NODE;
            session(
                id,
                USERS[id as usize % USERS.len()],
                if id % 2 == 0 { "encoder" } else { "telemetry" },
                "h264",
                state,
                &format!("n{node:04}"),
                (id % 100) as f64 / 100.0,
                0.1,
            )
        })
        .collect();
    model(nodes, sessions)
}

struct Page<V> {
    view: V,
    model: Model,
    actions: Vec<Action>,
}

/// Frames of one page: `(mean egui pass, mean pass + wgpu render)`.
fn frame_times<S>(harness: &mut Harness<'_, S>, frames: u32) -> (Duration, Duration) {
    // The first frame sorts and filters; the ones measured redraw as the window does
    // every second (usage moves the "… ago" columns and the charts).
    harness.step();
    let start = Instant::now();
    for _ in 0..frames {
        harness.step();
    }
    let pass = start.elapsed() / frames;
    let start = Instant::now();
    for _ in 0..frames {
        harness.step();
        harness
            .render()
            .expect("kittest's wgpu renderer draws the page");
    }
    (pass, start.elapsed() / frames)
}

#[test]
fn five_thousand_nodes_and_fifty_thousand_sessions_draw_and_stay_correct() {
    let start = Instant::now();
    let model = cluster(NODES);
    println!(
        "model of {NODES} nodes and {SESSIONS} sessions built in {:?}",
        start.elapsed()
    );
    let size = [1280.0, 800.0];

    let mut sessions = Harness::builder().with_size(size).wgpu().build_ui_state(
        |ui, p: &mut Page<SessionsView>| p.view.ui(ui, &p.model, "admin", true, &mut p.actions),
        Page {
            view: SessionsView::default(),
            model,
            actions: Vec::new(),
        },
    );
    let start = Instant::now();
    sessions.step();
    println!(
        "sessions: first frame (filter and sort 50,000) {:?}",
        start.elapsed()
    );
    // Live sessions, newest first; only the rows in view are laid out.
    let live = SESSIONS - SESSIONS / 50;
    assert_eq!(sessions.state().view.shown().len(), live);
    assert_eq!(
        sessions.state().view.shown()[0],
        SessionId(SESSIONS as u64 - 1)
    );
    let laid_out = sessions.query_all_by_label_contains("Session ").count();
    assert!(
        laid_out < 60,
        "{laid_out} session rows laid out for one screen"
    );
    let (pass, rendered) = frame_times(&mut sessions, 20);
    println!("sessions table: {pass:?} per egui pass, {rendered:?} with the wgpu render");

    // Sorting and filtering at this size.
    sessions.state_mut().view.filter.add(Field::User, "carol");
    sessions.state_mut().view.filter.search = "encoder".into();
    let start = Instant::now();
    sessions.step();
    println!("sessions: filter to carol's encoders {:?}", start.elapsed());
    let shown = sessions.state().view.shown().to_vec();
    assert!(!shown.is_empty());
    for id in &shown {
        let s = &sessions.state().model.sessions[id];
        assert_eq!(
            (s.user.as_str(), s.application.as_str()),
            ("carol", "encoder")
        );
        assert!(s.state.is_live());
    }
    let expected = (1..=SESSIONS as u64)
        .filter(|id| id % 5 == 2 && id % 2 == 0 && !matches!(id % 50, 0))
        .count();
    assert_eq!(shown.len(), expected);

    let model = std::mem::take(&mut sessions.state_mut().model);
    drop(sessions);
    let mut nodes = Harness::builder().with_size(size).wgpu().build_ui_state(
        |ui, p: &mut Page<NodesView>| p.view.ui(ui, &p.model, &mut p.actions),
        Page {
            view: NodesView::default(),
            model,
            actions: Vec::new(),
        },
    );
    nodes.step();
    assert_eq!(nodes.state().view.shown(&nodes.state().model).len(), NODES);
    let (pass, rendered) = frame_times(&mut nodes, 20);
    println!("nodes table: {pass:?} per egui pass, {rendered:?} with the wgpu render");
    nodes.state_mut().view.show_state(NodeState::Lost);
    nodes.step();
    let lost = nodes.state().view.shown(&nodes.state().model).len();
    assert_eq!(lost, NODES.div_ceil(97));

    let model = std::mem::take(&mut nodes.state_mut().model);
    drop(nodes);
    let mut overview = Harness::builder().with_size(size).wgpu().build_ui_state(
        |ui, p: &mut Page<OverviewView>| p.view.ui(ui, &p.model, &mut p.actions),
        Page {
            view: OverviewView,
            model,
            actions: Vec::new(),
        },
    );
    overview.step();
    assert!(overview.query_by_label("80000.00 CPUs").is_some());
    let (pass, rendered) = frame_times(&mut overview, 10);
    println!("overview: {pass:?} per egui pass, {rendered:?} with the wgpu render");
}

/// The sessions page's frame in a plain egui context, without kittest: the layout pass
/// and its tessellation into triangles (what the app's renderer is given), mean of
/// `frames`.
fn plain_frame(nodes: usize, frames: u32) -> Duration {
    let model = cluster(nodes);
    let mut view = SessionsView::default();
    let mut actions = Vec::new();
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1280.0, 800.0),
        )),
        ..Default::default()
    };
    let mut frame = || {
        let mut output = ctx.run_ui(input(), |ui| {
            egui::CentralPanel::default()
                .show(ui, |ui| view.ui(ui, &model, "admin", true, &mut actions));
        });
        // No renderer takes the font atlas here.
        output.textures_delta.clear();
        ctx.tessellate(output.shapes, output.pixels_per_point)
    };
    frame();
    let start = Instant::now();
    for _ in 0..frames {
        frame();
    }
    start.elapsed() / frames
}

/// The three pages' frame times for a cluster of `nodes` nodes (ten sessions each).
fn page_times(nodes: usize, frames: u32) -> [(Duration, Duration); 3] {
    let size = [1280.0, 800.0];
    let mut model = cluster(nodes);
    let mut times = [(Duration::ZERO, Duration::ZERO); 3];
    let mut harness = Harness::builder().with_size(size).wgpu().build_ui_state(
        |ui, p: &mut Page<SessionsView>| p.view.ui(ui, &p.model, "admin", true, &mut p.actions),
        Page {
            view: SessionsView::default(),
            model,
            actions: Vec::new(),
        },
    );
    times[0] = frame_times(&mut harness, frames);
    model = std::mem::take(&mut harness.state_mut().model);
    drop(harness);
    let mut harness = Harness::builder().with_size(size).wgpu().build_ui_state(
        |ui, p: &mut Page<NodesView>| p.view.ui(ui, &p.model, &mut p.actions),
        Page {
            view: NodesView::default(),
            model,
            actions: Vec::new(),
        },
    );
    times[1] = frame_times(&mut harness, frames);
    model = std::mem::take(&mut harness.state_mut().model);
    drop(harness);
    let mut harness = Harness::builder().with_size(size).wgpu().build_ui_state(
        |ui, p: &mut Page<OverviewView>| p.view.ui(ui, &p.model, &mut p.actions),
        Page {
            view: OverviewView,
            model,
            actions: Vec::new(),
        },
    );
    times[2] = frame_times(&mut harness, frames);
    times
}

/// A frame's cost at 5,000 nodes and 50,000 sessions against 50 nodes and 500 sessions,
/// in one run: the ratio says whether the cost grows with the cluster.
#[test]
fn a_frame_costs_about_the_same_at_fifty_nodes_and_at_five_thousand() {
    let small = page_times(50, 20);
    let large = page_times(NODES, 20);
    println!("frame times, 1280x800 (egui pass | pass + wgpu render on the software adapter):");
    for (i, page) in ["sessions", "nodes", "overview"].into_iter().enumerate() {
        println!(
            "  {page:9} 50 nodes/500 sessions: {:>9.2?} | {:>9.2?};  5,000/50,000: {:>9.2?} | {:>9.2?};  pass ratio {:.2}",
            small[i].0,
            small[i].1,
            large[i].0,
            large[i].1,
            large[i].0.as_secs_f64() / small[i].0.as_secs_f64()
        );
    }
    let (small, large) = (plain_frame(50, 30), plain_frame(NODES, 30));
    println!(
        "  sessions page in a plain egui context (pass + tessellation): {small:.2?} at 500 sessions, {large:.2?} at 50,000; ratio {:.2}",
        large.as_secs_f64() / small.as_secs_f64()
    );
}
