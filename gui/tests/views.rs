//! The app's views driven through their accessibility tree, against a real Sesco and Lrmd
//! (`sesco_e2e::Cluster`), with every outcome checked on the server through `arq`.
//!
//! The cluster tests need root and the workspace's binaries:
//! `cargo build --workspace --bins --examples` first.

use std::time::{Duration, Instant};

use arq::client::{Client, Credentials};
use arq::proto::message::SessionFilter;
use arq::proto::session::{SessionId, SessionState};
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::{Harness, SnapshotOptions};
use sesco_e2e::{ALICE, BOB, Cluster, free_port};
use sesco_gui::{SescoApp, StartOptions, View};

/// Long enough for a session to start on a loaded two-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn app(options: StartOptions) -> Harness<'static, SescoApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| SescoApp::new(&cc.egui_ctx, options))
}

fn signed_in_app(
    cluster: &Cluster,
    user: &str,
    password: &str,
    view: View,
) -> Harness<'static, SescoApp> {
    let mut harness = app(StartOptions {
        tls: None,
        server: cluster.addr.clone(),
        user: Some(user.into()),
        password: Some(password.into()),
        view: Some(view),
        ready_file: None,
    });
    wait(&mut harness, "signing in and the first load", |h| {
        h.state().is_loaded()
    });
    harness
}

fn admin_password(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.admin_password_file())
        .expect("Sesco wrote the admin password")
        .lines()
        .next()
        .unwrap()
        .to_string()
}

/// Steps the app (its connection works in the background) until `check` holds.
#[track_caller]
fn wait(
    harness: &mut Harness<'static, SescoApp>,
    what: &str,
    check: impl Fn(&Harness<'static, SescoApp>) -> bool,
) {
    let start = Instant::now();
    loop {
        harness.step();
        if check(harness) {
            // Let the frame settle (and run the accessibility check) before going on.
            harness.run_ok();
            return;
        }
        if start.elapsed() > PATIENCE {
            fail_with_screen(harness, what);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Fails the test, keeping what the app showed for whoever reads the failure.
#[track_caller]
fn fail_with_screen(harness: &mut Harness<'static, SescoApp>, what: &str) -> ! {
    let path = std::env::temp_dir().join(format!("sesco-gui-{}.png", what.replace(' ', "-")));
    let saved = match harness.render() {
        Ok(image) => image
            .save(&path)
            .map(|()| format!("the screen is in {}", path.display()))
            .unwrap_or_else(|e| format!("cannot save the screen: {e}")),
        Err(e) => format!("cannot render the screen: {e}"),
    };
    panic!("timed out after {PATIENCE:?} waiting for {what}; {saved}");
}

fn shows(harness: &Harness<'static, SescoApp>, text: &str) -> bool {
    harness.query_by_label_contains(text).is_some()
}

fn count(harness: &Harness<'static, SescoApp>, label: &str) -> usize {
    harness.query_all_by_label(label).count()
}

fn click(harness: &mut Harness<'static, SescoApp>, label: &str) {
    harness.get_by_label(label).scroll_to_me();
    harness.step();
    harness.get_by_label(label).click();
    harness.step();
    harness.step();
}

fn set_text(harness: &mut Harness<'static, SescoApp>, label: &str, text: &str) {
    harness.get_by_label(label).set_text_value_accesskit(text);
    harness.step();
    harness.step();
}

fn is_disabled(harness: &Harness<'static, SescoApp>, label: &str) -> bool {
    harness.get_by_label(label).accesskit_node().is_disabled()
}

/// Runs async client calls from a test, on one runtime that outlives the clients.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
        })
        .block_on(future)
}

fn client(cluster: &Cluster, user: &str, password: &str) -> Client {
    block_on(Client::connect(
        &cluster.addr,
        Credentials::Password {
            user: user.into(),
            password: password.into(),
        },
    ))
    .expect("signs in")
}

/// Waits until the server agrees, polling it through the client library while the app
/// runs.
#[track_caller]
fn wait_server<T>(
    harness: &mut Harness<'static, SescoApp>,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > PATIENCE {
            fail_with_screen(harness, what);
        }
        for _ in 0..4 {
            harness.step();
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

#[test]
fn an_unreachable_sesco_gets_a_clear_message() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut harness = app(StartOptions {
        tls: None,
        server: addr.clone(),
        ..StartOptions::default()
    });
    set_text(&mut harness, "User", "alice");
    set_text(&mut harness, "Password", "whatever-it-is");
    click(&mut harness, "Sign in");
    wait(&mut harness, "the sign-in error", |h| {
        shows(h, &format!("Cannot reach Sesco at {addr}"))
    });
    assert!(!harness.state().is_signed_in());
    // The form is usable again for a second try.
    assert!(!is_disabled(&harness, "Sign in"));
}

#[test]
fn the_sign_in_form_looks_right() {
    let mut harness = app(StartOptions {
        tls: None,
        server: "sesco.example:7207".into(),
        user: Some("alice".into()),
        ..StartOptions::default()
    });
    harness.run();
    harness.snapshot_options("sign_in", &SnapshotOptions::default());
}

#[test]
fn a_user_signs_in_checks_requests_watches_and_ends_a_session() {
    let cluster = Cluster::start();
    let (user, password) = ALICE;
    let mut harness = app(StartOptions {
        tls: None,
        server: cluster.addr.clone(),
        ..StartOptions::default()
    });

    // Wrong credentials: a clear refusal, and no sign-in.
    set_text(&mut harness, "User", user);
    set_text(&mut harness, "Password", "not-her-password");
    click(&mut harness, "Sign in");
    wait(&mut harness, "the refusal", |h| {
        shows(h, "Sesco refused the sign-in")
    });
    assert!(!harness.state().is_signed_in());

    set_text(&mut harness, "Password", password);
    click(&mut harness, "Sign in");
    wait(&mut harness, "the applications", |h| {
        h.state().is_loaded() && shows(h, "Request a session")
    });
    assert_eq!(harness.state().view(), Some(View::Applications));
    // Users see no administration.
    assert!(harness.query_by_label("Users & groups").is_none());
    // The first application is open, with its variants and levels.
    assert!(shows(&harness, "Variant h264"));
    assert_eq!(
        count(&harness, "1080p"),
        2,
        "both variants' levels are listed"
    );
    harness.remove_cursor();
    harness.step();
    // The page as it looks, but for the server's port, which changes with every run, and
    // what its width moves (the connection state).
    let address = harness.get_by_label_contains("alice on 127.0.0.1:").rect();
    harness.mask(egui::Rect::from_min_size(
        address.min - egui::vec2(2.0, 2.0),
        egui::vec2(360.0, address.height() + 4.0),
    ));
    harness.snapshot("user_applications");

    let alice = client(&cluster, user, password);

    // The request as chosen: a variant and a minimum level.
    click(&mut harness, "Variant");
    click(&mut harness, "vp9");
    click(&mut harness, "Minimum frame_rate");
    click(&mut harness, "at least 24fps");

    // A dry run says what would happen and changes nothing.
    click(&mut harness, "Check (dry run)");
    wait(&mut harness, "the dry run's answer", |h| {
        shows(h, "Would be admitted: encoder/vp9 at frame_rate=")
    });
    assert!(shows(&harness, "Process encoder on node-a"));
    let live = block_on(alice.list_sessions(SessionFilter::Live)).unwrap();
    assert!(live.is_empty(), "a dry run admitted {live:?}");

    // The real request.
    click(&mut harness, "Request session");
    wait(&mut harness, "the admission", |h| {
        shows(h, "Admitted as session")
    });
    let live = block_on(alice.list_sessions(SessionFilter::Live)).unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    let id = live[0].id;
    assert_eq!(live[0].application, "encoder");
    assert_eq!(live[0].variant, "vp9");
    assert!(
        live[0]
            .minimum
            .contains(&("frame_rate".to_string(), "24fps".to_string())),
        "{:?}",
        live[0].minimum
    );
    let frame_rate = live[0].setpoint.level("frame_rate").unwrap();
    assert!(frame_rate.index >= 2, "below the minimum: {frame_rate:?}");

    // It appears running in the sessions view, with its usage.
    click(&mut harness, "Open in Sessions");
    assert_eq!(harness.state().view(), Some(View::Sessions));
    let row = format!("Session {id}");
    wait(&mut harness, "the session running", |h| {
        h.query_by_label(&row).is_some() && count(h, "running") > 0
    });
    assert!(shows(&harness, &format!("Session {id} · encoder/")));
    assert!(harness.query_by_label("CPU (CPUs)").is_some());
    let shown = block_on(alice.show_session(id)).unwrap();
    assert_eq!(shown.state, SessionState::Running);

    // Ending it: asked, confirmed, and gone on the server.
    click(&mut harness, &format!("End session {id}"));
    assert!(shows(&harness, &format!("End session {id}?")));
    click(&mut harness, "End it");
    wait(&mut harness, "the session to end", |h| {
        h.query_by_label(&format!("End session {id}")).is_none()
            && shows(h, &format!("Session {id} ended"))
    });
    let ended = block_on(alice.show_session(id)).unwrap();
    assert_eq!(ended.state, SessionState::Terminated);
    assert!(
        block_on(alice.list_sessions(SessionFilter::Live))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_admin_adds_a_user_edits_priorities_and_an_application_and_sees_what_is_wrong() {
    let cluster = Cluster::start();
    let password = admin_password(&cluster);
    let admin = client(&cluster, "admin", &password);
    let mut harness = signed_in_app(&cluster, "admin", &password, View::Users);
    wait(&mut harness, "the users", |h| shows(h, "New user"));

    // A new user, who can then sign in.
    set_text(&mut harness, "User name", "carol");
    set_text(&mut harness, "Unix account", "sesco-carol");
    set_text(&mut harness, "Password", "carol-password-1");
    set_text(&mut harness, "User priority", "2.5");
    assert!(!is_disabled(&harness, "Save user"));
    click(&mut harness, "Save user");
    let carol = wait_server(&mut harness, "carol to exist", || {
        block_on(admin.list_users())
            .unwrap()
            .into_iter()
            .find(|u| u.name == "carol")
    });
    assert_eq!(carol.unix_account, "sesco-carol");
    assert_eq!(carol.group, "research");
    assert_eq!(carol.priority, 2.5);
    assert!(!carol.admin);
    // Her password is set right after she is saved.
    wait_server(&mut harness, "carol to sign in", || {
        block_on(Client::connect(
            &cluster.addr,
            Credentials::Password {
                user: "carol".into(),
                password: "carol-password-1".into(),
            },
        ))
        .ok()
    });
    wait(&mut harness, "carol in the table", |h| {
        h.query_by_label("carol").is_some()
    });

    // A bad user is explained before it is sent.
    click(&mut harness, "New user");
    set_text(&mut harness, "User name", "dave");
    set_text(&mut harness, "Unix account", "root");
    wait(&mut harness, "the problem", |h| {
        shows(h, "unix_account: session processes never run as root")
    });
    assert!(is_disabled(&harness, "Save user"));

    // A group's priority.
    click(&mut harness, "group students");
    set_text(&mut harness, "Group priority", "3");
    click(&mut harness, "Save group");
    wait_server(&mut harness, "the new priority", || {
        block_on(admin.list_groups())
            .unwrap()
            .into_iter()
            .find(|g| g.name == "students" && g.priority == 3.0)
    });

    // An application: change a level's utility and save.
    click(&mut harness, "Application definitions");
    wait(&mut harness, "the encoder's definition", |h| {
        shows(h, "Application encoder")
    });
    let utility = "Variant 1 dimension 1 level 4 utility";
    assert_eq!(
        harness.get_by_label(utility).value().as_deref(),
        Some("0.45")
    );
    set_text(&mut harness, utility, "0.5");
    click(&mut harness, "Save application");
    wait_server(&mut harness, "the saved utility", || {
        let apps = block_on(admin.list_applications()).unwrap();
        let level = &apps.iter().find(|a| a.name == "encoder")?.variants[0].dimensions[0].levels[3];
        (level.utility == 0.5).then_some(())
    });
    wait(&mut harness, "the save to be acknowledged", |h| {
        h.query_by_label("Saved").is_some()
    });

    // A bad one: the problem is named by its field, and nothing is sent.
    set_text(&mut harness, "Variant 1 process 1 CPU", "0");
    set_text(
        &mut harness,
        "Variant 2 dimension 2 level 1 utility",
        "lots",
    );
    wait(&mut harness, "the validation errors", |h| {
        shows(
            h,
            "variants[0].processes[0].cpu: must be a positive number, not 0",
        ) && shows(
            h,
            "variants[1].dimensions[1].levels[0].utility: 'lots' is not a number",
        )
    });
    assert!(is_disabled(&harness, "Save application"));
    let apps = block_on(admin.list_applications()).unwrap();
    let encoder = apps.iter().find(|a| a.name == "encoder").unwrap();
    assert_eq!(encoder.variants[0].processes[0].cpu, 0.05);
    click(&mut harness, "Revert");
    wait(&mut harness, "the problems to go", |h| {
        !shows(h, "Problems to fix before saving")
    });
}

#[test]
fn an_admin_sees_nodes_every_session_and_the_events_and_ends_a_users_session() {
    let cluster = Cluster::start();
    let bob_session = cluster.request(BOB, &["telemetry", "--variant", "batch"]);
    let id = SessionId(bob_session["id"].as_u64().unwrap());
    let password = admin_password(&cluster);
    let admin = client(&cluster, "admin", &password);
    // An application no node can carry, to see a rejection explained.
    let mut heavy = block_on(admin.list_applications())
        .unwrap()
        .into_iter()
        .find(|a| a.name == "telemetry")
        .unwrap();
    heavy.name = "heavy".into();
    heavy.variants.truncate(1);
    heavy.variants[0].cpu_class = arq::proto::world::CpuClass::Bandwidth;
    heavy.variants[0].processes[0].cpu = 512.0;
    block_on(admin.put_application(heavy)).unwrap();
    let mut harness = signed_in_app(&cluster, "admin", &password, View::Nodes);

    // The node in the table and in detail: its discovered hardware and what it carries.
    wait(&mut harness, "node-a with its load", |h| {
        count(h, "node-a") == 2
            && count(h, "cpu reserved") == 1
            && shows(h, &format!("{id} · bob telemetry/batch"))
    });
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(
        shows(&harness, &format!("{cpus} × ")),
        "the CPU count is shown"
    );

    // A dry run that cannot fit names the binding resource.
    click(&mut harness, "Applications");
    click(&mut harness, "heavy");
    click(&mut harness, "Check (dry run)");
    wait(&mut harness, "the rejection", |h| {
        shows(h, "Would be rejected")
    });
    assert!(shows(&harness, "Binding resources: node-a/cpu"));
    let live = block_on(admin.list_sessions(SessionFilter::Live)).unwrap();
    assert_eq!(live.len(), 1, "only bob's session: {live:?}");

    // The event log has the admission.
    click(&mut harness, "Events");
    wait(&mut harness, "the admission event", |h| {
        shows(h, "admitted telemetry/batch for bob")
    });

    // Every session, bob's included; the admin ends it.
    click(&mut harness, "Sessions");
    wait(&mut harness, "bob's session", |h| {
        h.query_by_label(&format!("Session {id}")).is_some() && count(h, "bob") > 0
    });
    click(&mut harness, &format!("End session {id}"));
    click(&mut harness, "End it");
    wait_server(&mut harness, "bob's session to end", || {
        let s = block_on(admin.show_session(id)).unwrap();
        (s.state == SessionState::Terminated).then_some(())
    });

    // The world file: exported, checked here before Sesco sees a broken one.
    click(&mut harness, "World file");
    wait(&mut harness, "the exported world", |h| {
        h.get_by_label("World TOML")
            .value()
            .is_some_and(|text| text.contains("[[applications]]"))
    });
    assert!(shows(&harness, "No problems found."));
    let text = harness.get_by_label("World TOML").value().unwrap();
    let broken = text.replacen("priority = 2.0", "priority = -2.0", 1);
    assert_ne!(broken, text, "the exported world has research's priority");
    set_text(&mut harness, "World TOML", &broken);
    wait(&mut harness, "the problem in the file", |h| {
        shows(h, "must be a positive number, not -2")
    });
    assert!(is_disabled(&harness, "Apply to Sesco"));
    click(&mut harness, "Export from Sesco");
    wait(&mut harness, "Sesco's world again", |h| {
        shows(h, "No problems found.")
    });
    assert_eq!(harness.get_by_label("World TOML").value().unwrap(), text);
}

#[test]
fn the_app_reconnects_by_itself_when_sesco_restarts() {
    let mut cluster = Cluster::start();
    let password = admin_password(&cluster);
    let mut harness = signed_in_app(&cluster, "admin", &password, View::Sessions);
    wait(&mut harness, "the connection", |h| {
        h.query_by_label("connected").is_some()
    });

    cluster.kill_sesco();
    wait(&mut harness, "the lost connection to show", |h| {
        shows(h, "reconnecting")
    });
    cluster.start_sesco();
    wait(&mut harness, "the connection to come back", |h| {
        h.query_by_label("connected").is_some()
    });

    // Live again: a session requested elsewhere appears by itself.
    let session = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let id = session["id"].as_u64().unwrap();
    wait(&mut harness, "the new session", |h| {
        h.query_by_label(&format!("Session {id}")).is_some()
    });
}
