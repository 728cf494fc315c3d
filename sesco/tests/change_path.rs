//! Sesco's change path without root: a real coordinator (its committer, its SQLite
//! database in a temporary directory, its connection handlers) and in-process Lrmds and
//! control ports that speak the real protocol over in-memory pipes. They answer as a
//! real Lrmd would, without starting processes, and record what they were asked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sesco::config::ServeConfig;
use sesco::coordinator::{Coordinator, Principal};
use sesco_proto::PROTOCOL_VERSION;
use sesco_proto::control::SetPointAck;
use sesco_proto::message::{AdminRequest, Credentials, Hello, Reply, Request, Role};
use sesco_proto::node::{Hardware, NodeRegistration, ProcessStarted};
use sesco_proto::peer::{self, Incoming, Peer};
use sesco_proto::session::{AdmissionOutcome, SessionRequest, SessionState};
use sesco_proto::{ErrorCode, ErrorReply, SessionId};

const LIMIT: Duration = Duration::from_secs(10);

/// What an in-process Lrmd or control port was asked, in order, with when.
type Log = Arc<Mutex<Vec<(Instant, String)>>>;

struct Fixture {
    coordinator: Arc<Coordinator>,
    _dir: tempfile::TempDir,
    cluster_key: String,
    lrmd_log: Log,
    nodes: Vec<Peer>,
    ports: Vec<Peer>,
}

fn world(nodes: &[&str]) -> String {
    let mut world = String::from(
        r#"
[[groups]]
name = "admins"
priority = 1.0
description = "Administrators"

[[groups]]
name = "heavy"
priority = 4.0
description = "Weighs four times"

[[groups]]
name = "light"
priority = 1.0
description = "Weighs once"

[[users]]
name = "admin"
unix_account = "sesco-admin"
group = "admins"
admin = true

[[users]]
name = "hera"
unix_account = "sesco-hera"
group = "heavy"

[[users]]
name = "lux"
unix_account = "sesco-lux"
group = "light"
"#,
    );
    for node in nodes {
        world.push_str(&format!(
            "\n[[nodes]]\nname = \"{node}\"\nreserve_cpus = 0.0\nreserve_memory_mb = 0\n"
        ));
    }
    // One process of 0.5 CPU at low, 1.0 at high; `pinned` runs on node-b only, and
    // `broken` names a program the in-process Lrmds refuse to start. `wide` needs 1.5
    // CPU on node-a, at its only set-point.
    let two_levels = r#"
  { name = "low", value = 1, utility = 0.2 },
  { name = "high", value = 2, utility = 0.6, cpu_scale = 2.0 },"#;
    let one_level = r#"{ name = "full", value = 1, utility = 1.0 }"#;
    for (name, command, cpu, node, levels) in [
        ("probe", "probe", 0.5, "", two_levels),
        ("pinned", "probe", 0.5, "node-b", two_levels),
        ("broken", "no-such-program", 0.5, "", two_levels),
        ("wide", "probe", 1.5, "node-a", one_level),
    ] {
        let node = if node.is_empty() {
            String::new()
        } else {
            format!("node = {{ name = \"{node}\" }}\n")
        };
        world.push_str(&format!(
            r#"
[[applications]]
name = "{name}"

[[applications.variants]]
name = "only"

[[applications.variants.processes]]
name = "main"
command = ["{command}"]
cpu = {cpu}
memory_mb = 16
{node}
[[applications.variants.dimensions]]
name = "quality"
levels = [{levels}]
"#
        ));
    }
    world
}

fn hardware() -> Hardware {
    Hardware {
        hostname: "in-process".into(),
        kernel: "none".into(),
        cpu_model: "none".into(),
        cpus: 2,
        memory_bytes: 4 << 30,
        rt_runtime_us: 1_000_000,
        rt_period_us: 1_000_000,
        cgroup_mode: "unified".into(),
        ..Hardware::default()
    }
}

fn admin() -> Principal {
    Principal::User {
        name: "admin".into(),
        admin: true,
    }
}

impl Fixture {
    async fn start(nodes: &[&str], ack_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            node_timeout: Duration::from_secs(3600),
            heartbeat: Duration::from_secs(3600),
            ack_timeout,
            node_request_timeout: Duration::from_secs(5),
            token_ttl: Duration::from_secs(3600),
            advertise: "127.0.0.1:7207".into(),
            max_connections: 64,
            max_sessions_per_user: 64,
        };
        let coordinator = Coordinator::open(config.clone()).expect("the coordinator opens");
        tokio::spawn(coordinator.clone().write_events());
        let cluster_key = std::fs::read_to_string(config.cluster_key_path())
            .unwrap()
            .trim()
            .to_string();
        let reply = coordinator
            .admin(
                &admin(),
                AdminRequest::ApplyWorld {
                    source: "test.toml".into(),
                    toml: world(nodes),
                },
            )
            .await;
        assert!(matches!(reply, Ok(Reply::Done)), "{reply:?}");
        let mut fixture = Fixture {
            coordinator,
            _dir: dir,
            cluster_key,
            lrmd_log: Log::default(),
            nodes: Vec::new(),
            ports: Vec::new(),
        };
        for node in nodes {
            fixture.connect_lrmd(node).await;
        }
        fixture
    }

    async fn connect(
        &self,
        role: Role,
        credentials: Credentials,
    ) -> (Peer, tokio::sync::mpsc::Receiver<Incoming>) {
        let (client, server) = tokio::io::duplex(256 * 1024);
        tokio::spawn(sesco::server::connection(self.coordinator.clone(), server));
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role,
            credentials,
            agent: "in-process test peer".into(),
        };
        let (_, peer, incoming) = peer::connect(client, hello, LIMIT).await.expect("welcomed");
        (peer, incoming)
    }

    /// An Lrmd that answers as a real one would: a start gets a pid (unless its program
    /// does not exist), a resize or a stop is done.
    async fn connect_lrmd(&mut self, node: &str) {
        let (peer, mut incoming) = self
            .connect(
                Role::Lrmd,
                Credentials::Cluster {
                    node: node.into(),
                    key: self.cluster_key.clone(),
                },
            )
            .await;
        let (log, answering, name) = (self.lrmd_log.clone(), peer.clone(), node.to_string());
        tokio::spawn(async move {
            let mut next_pid = 1000;
            while let Some(Incoming::Request { id, body }) = incoming.recv().await {
                let (what, answer) = match &body {
                    Request::StartProcess(launch) if launch.argv[0] == "no-such-program" => (
                        format!("start {} {name} refused", launch.session),
                        Err(ErrorReply::new(
                            ErrorCode::Invalid,
                            "no-such-program: no such file or directory",
                        )),
                    ),
                    Request::StartProcess(launch) => {
                        next_pid += 1;
                        let env = serde_json::to_string(&launch.env).unwrap();
                        (
                            format!("start {} {name} {env}", launch.session),
                            Ok(Reply::ProcessStarted(ProcessStarted {
                                pid: next_pid,
                                cgroups: Vec::new(),
                                scratch_dir: String::new(),
                                already_running: false,
                            })),
                        )
                    }
                    Request::AlterReservation(change) => (
                        format!(
                            "alter {} {name} {:.3}",
                            change.session,
                            change.reservation.cpu.cpus()
                        ),
                        Ok(Reply::Done),
                    ),
                    Request::StopSession(stop) => {
                        (format!("stop {} {name}", stop.session), Ok(Reply::Done))
                    }
                    other => (format!("{} {name}", other.name()), Ok(Reply::Done)),
                };
                log.lock().unwrap().push((Instant::now(), what));
                answering.reply(id, answer).await;
            }
        });
        let reply = peer
            .request(Request::RegisterNode(NodeRegistration {
                hardware: hardware(),
                running: Vec::new(),
                exited: Vec::new(),
                lrmd_version: "in-process".into(),
            }))
            .await;
        assert!(matches!(reply, Ok(Reply::NodeAccepted(_))), "{reply:?}");
        self.nodes.push(peer);
    }

    /// Registers session `id`'s control port with the token its Lrmd was given; it acks
    /// every set-point unless `silent`, and logs what it was told.
    async fn control_port(&mut self, id: SessionId, silent: bool) -> Log {
        let token = self
            .lrmd_log
            .lock()
            .unwrap()
            .iter()
            .find_map(|(_, l)| {
                let rest = l.strip_prefix(&format!("start {id} "))?;
                let env: serde_json::Value = serde_json::from_str(rest.split_once(' ')?.1).ok()?;
                Some(env["SESCO_SESSION_TOKEN"].as_str()?.to_string())
            })
            .expect("the session was started with a token");
        let (peer, mut incoming) = self
            .connect(
                Role::App,
                Credentials::Session {
                    session: id,
                    process: 0,
                    token,
                },
            )
            .await;
        let log = Log::default();
        let (told, answering) = (log.clone(), peer.clone());
        tokio::spawn(async move {
            while let Some(Incoming::Request { id, body }) = incoming.recv().await {
                if let Request::ApplySetPoint(change) = body {
                    told.lock()
                        .unwrap()
                        .push((Instant::now(), format!("{:?}", change.direction)));
                    if !silent {
                        let ack = SetPointAck {
                            sequence: change.sequence,
                        };
                        answering.reply(id, Ok(Reply::SetPointAck(ack))).await;
                    }
                }
            }
        });
        self.ports.push(peer);
        log
    }

    async fn request(&self, user: &str, application: &str) -> Result<AdmissionOutcome, ErrorReply> {
        self.coordinator
            .request_session(user, request(application))
            .await
    }

    fn setpoint(&self, id: SessionId) -> Vec<u32> {
        self.coordinator.state().sessions[&id].setpoint.clone()
    }

    /// What memory holds of the sessions: ids, set-points, hera's count, node-a's load.
    fn memory(&self) -> (Vec<SessionId>, Vec<Vec<u32>>, usize, Option<f64>) {
        let state = self.coordinator.state();
        (
            state.sessions.keys().copied().collect(),
            state
                .sessions
                .values()
                .map(|s| s.setpoint.clone())
                .collect(),
            state.held_by("hera"),
            state.load_on("node-a").map(|l| l.reserved_cpu),
        )
    }

    fn lrmd_lines(&self) -> Vec<String> {
        self.lrmd_log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }
}

fn request(application: &str) -> SessionRequest {
    SessionRequest {
        application: application.into(),
        variant: None,
        minimum: Vec::new(),
        dry_run: false,
        request_key: None,
    }
}

fn admitted(outcome: &Result<AdmissionOutcome, ErrorReply>) -> Option<SessionId> {
    match outcome {
        Ok(AdmissionOutcome::Admitted { session, .. }) => Some(session.id),
        _ => None,
    }
}

/// Waits until `check` holds, at most [`LIMIT`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_decided_in_one_round_get_their_own_outcomes_in_weight_order() {
    // node-a: 2 CPUs. `wide` holds 1.5 of them and cannot be lowered: the room left
    // holds one more session, at its lowest set-point (0.5 CPU).
    let fixture = Fixture::start(&["node-a"], Duration::from_secs(2)).await;
    let wide = fixture.request("hera", "wide").await;
    let wide = admitted(&wide).expect("wide is admitted");

    // A keyed request's key is looked up in the store before its round is decided:
    // with the store held here, the committer waits on it, and the four requests sent
    // meanwhile queue for the next round. The light user's come first, then the heavy
    // user's.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let holder = {
        let c = fixture.coordinator.clone();
        std::thread::spawn(move || {
            let _store = c.store();
            held_tx.send(()).unwrap();
            let _ = released.recv();
        })
    };
    held.recv().unwrap();
    let blocked = {
        let c = fixture.coordinator.clone();
        let mut keyed = request("pinned");
        keyed.request_key = Some("once".into());
        tokio::spawn(async move { c.request_session("lux", keyed).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut queued = Vec::new();
    for user in ["lux", "lux", "hera", "hera"] {
        let c = fixture.coordinator.clone();
        queued.push((
            user,
            tokio::spawn(async move { c.request_session(user, request("probe")).await }),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send(()).unwrap();
    holder.join().unwrap();

    // The keyed one asked for a node that is not there.
    let blocked = blocked.await.unwrap();
    assert!(
        matches!(blocked, Ok(AdmissionOutcome::Rejected { .. })),
        "{blocked:?}"
    );
    let mut outcomes = Vec::new();
    for (user, task) in queued {
        outcomes.push((user, task.await.unwrap()));
    }
    // Decided together, heaviest first: the heavy user's first request takes the room,
    // although both of the light user's came before it; every other one is rejected,
    // naming the resource it lacks.
    let won: Vec<(usize, &str)> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, (_, o))| admitted(o).is_some())
        .map(|(i, (u, _))| (i, *u))
        .collect();
    assert_eq!(won, [(2, "hera")], "{outcomes:#?}");
    for (user, outcome) in &outcomes {
        match outcome {
            Ok(AdmissionOutcome::Rejected { binding, .. }) => {
                assert_eq!(binding, &["node-a/cpu".to_string()], "{user}: {outcome:?}")
            }
            Ok(AdmissionOutcome::Admitted { .. }) => {}
            Err(e) => panic!("{user}: {e}"),
        }
    }
    // Nothing is promised beyond the node.
    let state = fixture.coordinator.state();
    assert_eq!(state.sessions.len(), 2);
    assert!(state.sessions.contains_key(&wide));
    let reserved = state.load_on("node-a").unwrap().reserved_cpu;
    assert!((reserved - 2.0).abs() < 1e-9, "{reserved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_application_that_never_acks_holds_up_no_unrelated_admission() {
    let ack_timeout = Duration::from_secs(5);
    let mut fixture = Fixture::start(&["node-a", "node-b"], ack_timeout).await;
    // A silent session on node-a, at high.
    let silent = fixture.request("lux", "probe").await;
    let silent = admitted(&silent).unwrap();
    let on = fixture.coordinator.state().sessions[&silent].processes[0]
        .node
        .clone();
    let told = fixture.control_port(silent, true).await;
    until("the silent port to be registered and told", || {
        !told.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(on, "node-a", "the roomiest node comes first, then by name");

    // A newcomer that needs the silent session's room waits for its ack (up to the bound)...
    let c = fixture.coordinator.clone();
    let related_started = Instant::now();
    let related = tokio::spawn(async move { c.request_session("hera", request("wide")).await });
    until("the silent session to be told to lower", || {
        told.lock().unwrap().iter().any(|(_, d)| d == "Lower")
    })
    .await;
    // ...while one pinned to the other node is decided, started and answered at once.
    let unrelated_started = Instant::now();
    let unrelated = fixture.request("hera", "pinned").await;
    let unrelated_took = unrelated_started.elapsed();
    assert!(admitted(&unrelated).is_some(), "{unrelated:?}");
    assert!(
        !related.is_finished(),
        "the related admission should still wait for the silent application"
    );
    println!("an unrelated admission took {unrelated_took:?} while another waited for an ack");
    assert!(
        unrelated_took < ack_timeout / 2,
        "the unrelated admission waited for the silent application: {unrelated_took:?}"
    );
    let related = related.await.unwrap();
    assert!(admitted(&related).is_some(), "{related:?}");
    assert!(related_started.elapsed() >= ack_timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_launch_releases_its_room_and_restores_the_set_points_it_changed() {
    let mut fixture = Fixture::start(&["node-a"], Duration::from_secs(2)).await;
    let a = fixture.request("lux", "probe").await;
    let a = admitted(&a).unwrap();
    let b = fixture.request("lux", "probe").await;
    let b = admitted(&b).unwrap();
    let told_a = fixture.control_port(a, false).await;
    let told_b = fixture.control_port(b, false).await;
    until("both ports told", || {
        !told_a.lock().unwrap().is_empty() && !told_b.lock().unwrap().is_empty()
    })
    .await;
    let before = (fixture.setpoint(a), fixture.setpoint(b));
    let load_before = fixture
        .coordinator
        .state()
        .load_on("node-a")
        .unwrap()
        .reserved_cpu;

    // The newcomer's room is made by lowering a running session; then its start fails.
    let broken = fixture.request("hera", "broken").await;
    let Err(error) = broken else {
        panic!("a session whose process cannot start is not admitted: {broken:?}")
    };
    assert_eq!(error.code, ErrorCode::Unavailable, "{error}");
    assert!(error.message.contains("could not start"), "{error}");

    // Its room is released and whoever was lowered for it is raised back.
    let lowered: Vec<SessionId> = [a, b]
        .into_iter()
        .filter(|id| {
            fixture
                .lrmd_lines()
                .contains(&format!("alter {id} node-a 0.500"))
        })
        .collect();
    assert!(!lowered.is_empty(), "{:#?}", fixture.lrmd_lines());
    until("the set-points to be restored", || {
        (fixture.setpoint(a), fixture.setpoint(b)) == before
    })
    .await;
    until("the reservations to be restored", || {
        (fixture
            .coordinator
            .state()
            .load_on("node-a")
            .unwrap()
            .reserved_cpu
            - load_before)
            .abs()
            < 1e-9
    })
    .await;
    assert_eq!(
        fixture.coordinator.state().sessions.len(),
        2,
        "the failed session is not live"
    );
    let ended = fixture
        .coordinator
        .visible_session(&admin(), SessionId(3))
        .unwrap();
    assert_eq!(ended.state, SessionState::Failed);
    // Lowered sessions were told before they shrank and grown before they were told.
    for id in lowered {
        let told = if id == a { &told_a } else { &told_b };
        let directions: Vec<String> = told
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| d.clone())
            .collect();
        assert_eq!(directions, ["Initial", "Lower", "Raise"], "{id}");
    }
    // The room is really free: a session that fits now is admitted at once.
    let again = fixture.request("hera", "probe").await;
    assert!(admitted(&again).is_some(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_write_fails_the_request_and_changes_nothing_in_memory() {
    let fixture = Fixture::start(&["node-a"], Duration::from_secs(2)).await;
    let a = fixture.request("lux", "probe").await;
    let a = admitted(&a).unwrap();
    let before = fixture.setpoint(a);
    {
        // The database may not grow beyond what it holds now.
        let store = fixture.coordinator.store();
        let pages = store.page_count().unwrap();
        store.limit_pages(pages).unwrap();
    }
    // Requests are admitted while their records fit in the pages there are; the first
    // whose record does not fit fails, and leaves memory as it was just before it.
    let mut admitted_before = 0;
    let (error, before_failure) = loop {
        let snapshot = fixture.memory();
        let outcome = fixture.request("hera", "probe").await;
        match outcome {
            Err(error) => break (error, snapshot),
            Ok(AdmissionOutcome::Admitted { session, .. }) => {
                admitted_before += 1;
                assert!(admitted_before < 64, "the database never filled up");
                // Make room for the next attempt.
                fixture
                    .coordinator
                    .terminate_session(&admin(), session.id)
                    .await
                    .unwrap();
            }
            Ok(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(error.code, ErrorCode::Unavailable, "{error}");
    assert!(error.message.contains("could not be written"), "{error}");
    let failed_id = {
        assert_eq!(
            fixture.memory(),
            before_failure,
            "memory ran ahead of the store"
        );
        let state = fixture.coordinator.state();
        assert_eq!(state.sessions[&a].setpoint, before);
        SessionId(2 + admitted_before)
    };
    assert!(
        !fixture
            .lrmd_lines()
            .iter()
            .any(|l| l.starts_with(&format!("start {failed_id} "))),
        "nothing was started for the refused request: {:#?}",
        fixture.lrmd_lines()
    );
    // Once the database may grow again, the same request is admitted, under the id the
    // failed one would have had (it was never used).
    fixture.coordinator.store().limit_pages(1 << 30).unwrap();
    let admitted_now = fixture.request("hera", "probe").await;
    assert_eq!(admitted(&admitted_now), Some(failed_id), "{admitted_now:?}");
}
