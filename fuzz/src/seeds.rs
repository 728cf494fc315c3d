//! Seed inputs: well-formed messages of every kind, the demo world, the Q-RAM fixtures,
//! and inputs for the handlers that reach every request of every role.

use std::collections::BTreeMap;
use std::path::Path;

use sesco_proto::codec;
use sesco_proto::control::{QosReport, SetPointAck, SetPointChange, SetPointDirection};
use sesco_proto::event::{Event, EventKind};
use sesco_proto::message::{
    AdminRequest, Credentials, Hello, Identity, Message, Reply, Request, Role, SessionFilter,
    Welcome, WorldProblem,
};
use sesco_proto::node::{
    Hardware, NodeAccepted, NodeHeartbeat, NodeRegistration, NodeState, NodeView, ProcessExit,
    ProcessLaunch, ProcessStarted, ReservationChange, ResourceLoad, RunningProcess, SessionStop,
    SessionStopped,
};
use sesco_proto::session::{
    AdmissionOutcome, CpuReservation, DimensionLevel, ExitStatus, ProcessUsage, Reservation,
    SessionRequest, SessionState, SessionView, SetPoint,
};
use sesco_proto::world::{GroupDef, NodeDef, PathStep, UserDef, WorldError};
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION, SessionId};

use crate::handlers::{
    DEMO_WORLD, FLAG_NODE_A, Input, ROLE_ADMIN, ROLE_ADMIN_PASSWORD, ROLE_ALICE, ROLE_APP,
    ROLE_BOB, ROLE_LRMD, ROLE_RAW_HELLO,
};

const QRAM_FIXTURES: [(&str, &str); 4] = [
    (
        "bad_json.json",
        include_str!("../../sesco/tests/fixtures/qram/bad_json.json"),
    ),
    (
        "design_example.json",
        include_str!("../../sesco/tests/fixtures/qram/design_example.json"),
    ),
    (
        "required_too_big.json",
        include_str!("../../sesco/tests/fixtures/qram/required_too_big.json"),
    ),
    (
        "unknown_resource.json",
        include_str!("../../sesco/tests/fixtures/qram/unknown_resource.json"),
    ),
];

fn reservation() -> Reservation {
    Reservation {
        cpu: CpuReservation::Bandwidth { cpus: 0.25 },
        memory_max_bytes: 16 << 20,
        memory_min_bytes: 16 << 20,
        pids_max: 256,
        net: Vec::new(),
        io: Vec::new(),
    }
}

fn deadline_reservation() -> Reservation {
    Reservation {
        cpu: CpuReservation::Deadline {
            runtime_us: 500,
            deadline_us: 10_000,
            period_us: 10_000,
        },
        ..reservation()
    }
}

fn setpoint() -> SetPoint {
    SetPoint {
        levels: vec![
            DimensionLevel {
                dimension: "frame_rate".into(),
                level: "15fps".into(),
                index: 1,
                value: 15.0,
            },
            DimensionLevel {
                dimension: "resolution".into(),
                level: "480p".into(),
                index: 1,
                value: 480.0,
            },
        ],
    }
}

fn hardware() -> Hardware {
    Hardware {
        hostname: "fuzz-node".into(),
        kernel: "6.1".into(),
        cpu_model: "fuzz".into(),
        cpus: 2,
        memory_bytes: 4 << 30,
        rt_runtime_us: 950_000,
        rt_period_us: 1_000_000,
        cgroup_mode: "hybrid".into(),
        ..Default::default()
    }
}

fn exit(session: u64, pid: u32, code: i32) -> ProcessExit {
    ProcessExit {
        session: SessionId(session),
        process: 0,
        pid,
        status: ExitStatus {
            code: Some(code),
            signal: None,
        },
        oom_killed: false,
    }
}

fn session_request(variant: Option<&str>, minimum: &[(&str, &str)], dry_run: bool) -> Request {
    Request::RequestSession(SessionRequest {
        application: "encoder".into(),
        variant: variant.map(str::to_string),
        minimum: minimum
            .iter()
            .map(|(d, l)| (d.to_string(), l.to_string()))
            .collect(),
        dry_run,
        request_key: None,
    })
}

fn user(name: &str, group: &str, admin: bool) -> UserDef {
    UserDef {
        name: name.into(),
        unix_account: format!("sesco-{name}"),
        group: group.into(),
        priority: 1.5,
        admin,
        password_hash: None,
    }
}

fn demo_application(name: &str) -> sesco_proto::world::ApplicationDef {
    let world = sesco::world_file::parse_world("demo-world.toml", DEMO_WORLD)
        .expect("the demo world parses");
    let mut app = world.applications[0].clone();
    app.name = name.into();
    app
}

/// Requests a user's client sends.
pub fn client_requests() -> Vec<Request> {
    vec![
        session_request(None, &[], false),
        session_request(Some("h264"), &[("frame_rate", "15fps")], false),
        session_request(Some("vp9"), &[("resolution", "720p")], true),
        Request::RequestSession(SessionRequest {
            application: "telemetry".into(),
            variant: Some("realtime".into()),
            minimum: vec![("sample_rate".into(), "1kHz".into())],
            dry_run: false,
            request_key: Some("key-1".into()),
        }),
        Request::ListSessions(SessionFilter::Live),
        Request::ListSessions(SessionFilter::All),
        Request::ShowSession(SessionId(0)),
        Request::TerminateSession(SessionId(0)),
        Request::Watch { since_seq: Some(0) },
        Request::Watch { since_seq: None },
        Request::ListApplications,
        Request::ListUsers,
        Request::ListGroups,
        Request::ListNodes,
        Request::ListEvents {
            since_seq: 0,
            limit: 20,
        },
    ]
}

/// Requests an admin sends.
pub fn admin_requests() -> Vec<Request> {
    let bad_world = DEMO_WORLD.replace("group = \"students\"", "group = \"nobody\"");
    [
        AdminRequest::ApplyWorld {
            source: "demo-world.toml".into(),
            toml: DEMO_WORLD.into(),
        },
        AdminRequest::ApplyWorld {
            source: "bad.toml".into(),
            toml: bad_world,
        },
        AdminRequest::ApplyWorld {
            source: "syntax.toml".into(),
            toml: "[[groups]]\nname = = 1\n".into(),
        },
        AdminRequest::ExportWorld,
        AdminRequest::PutUser(user("carol", "students", false)),
        AdminRequest::PutUser(user("root", "nobody", true)),
        AdminRequest::DeleteUser { name: "bob".into() },
        AdminRequest::DeleteUser {
            name: "admin".into(),
        },
        AdminRequest::SetPassword {
            user: "alice".into(),
            password: "a-new-password".into(),
        },
        AdminRequest::SetPassword {
            user: "bob".into(),
            password: "short".into(),
        },
        AdminRequest::PutGroup(GroupDef {
            name: "guests".into(),
            priority: 0.5,
            description: "Guests".into(),
        }),
        AdminRequest::DeleteGroup {
            name: "students".into(),
        },
        AdminRequest::PutApplication(demo_application("encoder2")),
        AdminRequest::DeleteApplication {
            name: "telemetry".into(),
        },
        AdminRequest::PutNode(NodeDef {
            name: "node-b".into(),
            labels: vec!["demo".into()],
            reserve_cpus: 0.5,
            reserve_memory_mb: 128,
        }),
        AdminRequest::DeleteNode {
            name: "node-a".into(),
        },
    ]
    .into_iter()
    .map(Request::Admin)
    .collect()
}

/// Requests an Lrmd sends.
pub fn lrmd_requests() -> Vec<Request> {
    vec![
        Request::RegisterNode(NodeRegistration {
            hardware: hardware(),
            running: vec![RunningProcess {
                session: SessionId(0),
                process: 0,
                pid: 0,
                cgroups: vec!["/sesco/0/0".into()],
            }],
            exited: vec![exit(0, 0, 1)],
            lrmd_version: "0.1.0".into(),
        }),
        Request::Heartbeat(NodeHeartbeat {
            cpu_busy: 0.5,
            memory_available_bytes: 1 << 30,
            processes: vec![(
                SessionId(0),
                0,
                ProcessUsage {
                    cpu_time_us: 1000,
                    cpu_rate: 0.1,
                    throttled_us: 0,
                    memory_current_bytes: 1 << 20,
                    memory_peak_bytes: 2 << 20,
                    oom_kills: 0,
                },
            )],
        }),
        Request::ProcessExited(exit(0, 0, 0)),
        Request::ProcessExited(exit(0, 0, 137)),
    ]
}

/// Requests Sesco sends, which no peer may send it.
pub fn sesco_requests() -> Vec<Request> {
    vec![
        Request::StartProcess(ProcessLaunch {
            session: SessionId(0),
            process: 0,
            process_name: "encoder".into(),
            unix_account: "sesco-alice".into(),
            argv: vec!["encoder".into(), "--passes".into(), "4".into()],
            env: BTreeMap::from([("SESCO_SESSION_ID".into(), "0".into())]),
            reservation: reservation(),
            setpoint: setpoint(),
        }),
        Request::AlterReservation(ReservationChange {
            session: SessionId(0),
            process: 0,
            reservation: deadline_reservation(),
        }),
        Request::StopSession(SessionStop {
            session: SessionId(0),
            reason: "fuzz".into(),
        }),
        Request::ApplySetPoint(SetPointChange {
            session: SessionId(0),
            sequence: 2,
            direction: SetPointDirection::Lower,
            setpoint: setpoint(),
            reservation: reservation(),
        }),
    ]
}

/// Requests an application sends.
pub fn app_requests() -> Vec<Request> {
    vec![Request::ReportQos(QosReport {
        achieved: vec![("frame_rate".into(), 29.7), ("resolution".into(), 480.0)],
    })]
}

fn hello(version: u32, role: Role, credentials: Credentials) -> Message {
    Message::Hello(Hello {
        version,
        role,
        credentials,
        agent: "seed".into(),
    })
}

fn session_view() -> SessionView {
    SessionView {
        id: SessionId(3),
        user: "alice".into(),
        application: "encoder".into(),
        variant: "h264".into(),
        state: SessionState::Running,
        setpoint: setpoint(),
        utility: 0.5,
        weight: 2.0,
        minimum: vec![("frame_rate".into(), "10fps".into())],
        processes: Vec::new(),
        created_ms: 1,
        ended_ms: None,
        end_reason: None,
    }
}

/// Every kind of message, each once at least.
pub fn messages() -> Vec<Message> {
    let mut out = vec![
        hello(
            PROTOCOL_VERSION,
            Role::Client,
            Credentials::Password {
                user: "alice".into(),
                password: "alice-demo-password".into(),
            },
        ),
        hello(
            PROTOCOL_VERSION,
            Role::Client,
            Credentials::Token {
                token: "0123456789abcdef".into(),
            },
        ),
        hello(
            PROTOCOL_VERSION,
            Role::Lrmd,
            Credentials::Cluster {
                node: "node-a".into(),
                key: "not-the-key".into(),
            },
        ),
        hello(
            PROTOCOL_VERSION,
            Role::App,
            Credentials::Session {
                session: SessionId(1),
                process: 0,
                token: "not-the-token".into(),
            },
        ),
        hello(
            PROTOCOL_VERSION + 1,
            Role::Client,
            Credentials::Token { token: "t".into() },
        ),
        Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            identity: Identity::User {
                name: "alice".into(),
                admin: false,
                token: "t".into(),
                token_expires_ms: 10,
            },
            server: "sesco".into(),
        }),
        Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            identity: Identity::Node {
                name: "node-a".into(),
            },
            server: "sesco".into(),
        }),
        Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            identity: Identity::App {
                session: SessionId(1),
                process: 0,
            },
            server: "sesco".into(),
        }),
        Message::Fatal(ErrorReply::new(ErrorCode::FrameTooLarge, "too large")),
        Message::Failure {
            id: 3,
            error: ErrorReply::new(ErrorCode::Forbidden, "no"),
        },
        Message::Event(Event {
            seq: 1,
            time_ms: 2,
            session: Some(SessionId(1)),
            node: Some("node-a".into()),
            kind: EventKind::NodeLost { silent_ms: 5000 },
        }),
    ];
    let requests = client_requests()
        .into_iter()
        .chain(admin_requests())
        .chain(lrmd_requests())
        .chain(sesco_requests())
        .chain(app_requests());
    out.extend(
        requests
            .enumerate()
            .map(|(i, body)| Message::Request { id: i as u64, body }),
    );
    let replies = vec![
        Reply::Done,
        Reply::Admission(AdmissionOutcome::Admitted {
            session: Box::new(session_view()),
            shifts: Vec::new(),
            shadow_prices: Vec::new(),
        }),
        Reply::Admission(AdmissionOutcome::Rejected {
            binding: vec!["node-a/cpu".into()],
            reason: "full".into(),
        }),
        Reply::Session(session_view()),
        Reply::Sessions(vec![session_view()]),
        Reply::Applications(vec![demo_application("encoder")]),
        Reply::Users(vec![user("alice", "research", false)]),
        Reply::Groups(Vec::new()),
        Reply::Nodes(vec![NodeView {
            name: "node-a".into(),
            state: NodeState::Up,
            labels: Vec::new(),
            hardware: Some(hardware()),
            resources: vec![ResourceLoad {
                resource: "node-a/cpu".into(),
                capacity: 1.9,
                reserved: 0.25,
                used: Some(0.1),
                unit: "CPUs".into(),
            }],
            last_heartbeat_ms: Some(1),
            sessions: vec![SessionId(1)],
        }]),
        Reply::Events(Vec::new()),
        Reply::WorldToml(DEMO_WORLD.into()),
        Reply::WorldRejected(vec![WorldProblem {
            location: Some("w.toml:1:1".into()),
            error: WorldError {
                path: vec![PathStep::Key("users".into()), PathStep::Index(0)],
                reason: "bad".into(),
            },
        }]),
        Reply::NodeAccepted(NodeAccepted {
            expected: vec![(SessionId(1), 0)],
            heartbeat_ms: 1000,
        }),
        Reply::ProcessStarted(ProcessStarted {
            pid: 42,
            cgroups: vec!["/sesco/1/0".into()],
            scratch_dir: "/tmp/x".into(),
            already_running: false,
        }),
        Reply::SessionStopped(SessionStopped { killed: vec![42] }),
        Reply::SetPointAck(SetPointAck { sequence: 2 }),
    ];
    out.extend(
        replies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Message::Reply { id: i as u64, body }),
    );
    out
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Seeds of `frame_decoder`: a chunk-size byte, then one or more frames.
pub fn frame_decoder() -> Vec<Vec<u8>> {
    let messages = messages();
    let mut out: Vec<Vec<u8>> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut seed = vec![i as u8];
            seed.extend(frame(&codec::encode(m).unwrap()));
            seed
        })
        .collect();
    // Two frames in a row, an oversized length, a truncated frame, trailing bytes.
    let first = frame(&codec::encode(&messages[0]).unwrap());
    let mut two = vec![3];
    two.extend(&first);
    two.extend(frame(&codec::encode(&messages[1]).unwrap()));
    out.push(two);
    let mut oversized = vec![0];
    oversized.extend(((sesco_proto::MAX_FRAME_BYTES + 1) as u32).to_be_bytes());
    out.push(oversized);
    out.push([vec![1], first[..first.len() - 2].to_vec()].concat());
    let mut trailing = codec::encode(&messages[0]).unwrap();
    trailing.push(0);
    out.push([vec![2], frame(&trailing)].concat());
    out
}

fn encoded(requests: &[Request]) -> Vec<Vec<u8>> {
    requests.iter().map(|r| codec::encode(r).unwrap()).collect()
}

/// Seeds of `sesco_handlers`: every request from every role.
pub fn sesco_handlers() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let all: Vec<Request> = client_requests()
        .into_iter()
        .chain(admin_requests())
        .chain(lrmd_requests())
        .chain(sesco_requests())
        .chain(app_requests())
        .collect();
    for role in [ROLE_ADMIN, ROLE_ALICE, ROLE_BOB, ROLE_LRMD, ROLE_APP] {
        // Each request on its own, then all of them on one connection.
        for request in &all {
            out.push(Input::encode(
                role,
                0,
                &encoded(std::slice::from_ref(request)),
            ));
        }
        out.push(Input::encode(role, 0, &encoded(&all)));
    }
    out.push(Input::encode(
        ROLE_LRMD,
        FLAG_NODE_A,
        &encoded(&lrmd_requests()),
    ));
    // An application that answers set-points late, wrongly, or not at all.
    for mode in 1..4u8 {
        out.push(Input::encode(
            ROLE_APP,
            mode << 1,
            &encoded(&app_requests()),
        ));
    }
    // A session admitted while the node's Lrmd misbehaves.
    for mode in 1..4u8 {
        out.push(Input::encode(
            ROLE_LRMD,
            FLAG_NODE_A | (mode << 1),
            &encoded(&[
                lrmd_requests()[0].clone(),
                session_request(None, &[], false),
            ]),
        ));
    }
    // The admin signing in with a password.
    out.push(Input::encode(
        ROLE_ADMIN_PASSWORD,
        0,
        &encoded(&[Request::ListUsers]),
    ));
    // Hellos of every kind, good and bad, then a request; a bad frame after the hello.
    for message in messages().iter().take(11) {
        out.push(Input::encode(
            ROLE_RAW_HELLO,
            0,
            &[
                codec::encode(message).unwrap(),
                codec::encode(&Request::ListNodes).unwrap(),
            ],
        ));
    }
    out.push(Input::encode(ROLE_RAW_HELLO, 0, &[vec![0xff; 7]]));
    out.push(Input::encode(
        ROLE_ALICE,
        0,
        &[
            codec::encode(&Request::ListNodes).unwrap(),
            vec![0xff, 0x01],
        ],
    ));
    out
}

/// Seeds of `world_file`: the demo world and a few broken versions of it.
pub fn world_file() -> Vec<Vec<u8>> {
    vec![
        DEMO_WORLD.as_bytes().to_vec(),
        DEMO_WORLD
            .replace("group = \"students\"", "group = \"nobody\"")
            .into_bytes(),
        DEMO_WORLD.replace("cpu = 0.02", "cpu = 2.0").into_bytes(),
        DEMO_WORLD
            .replace("utility = 0.20", "utility = -1")
            .into_bytes(),
        b"[[groups]]\nname = = 1\n".to_vec(),
        b"[[users]]\nname = \"x\"\ncolour = \"blue\"\n".to_vec(),
    ]
}

/// Seeds of `qram_instance`: the fixtures of `sesco qram solve`.
pub fn qram_instance() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = QRAM_FIXTURES
        .iter()
        .map(|(_, text)| text.as_bytes().to_vec())
        .collect();
    out.push(
        br#"{"resources": [{"name": "n1/cpu", "capacity": 2.0}, {"name": "n1/mem", "capacity": 8192}],
 "sessions": [{"id": "s1", "weight": 1.0, "required": true,
               "setpoints": [{"utility": 0.2, "demand": {"n1/cpu": 0.25, "n1/mem": 256}},
                             {"utility": 0.9, "demand": {"n1/cpu": 1.0,  "n1/mem": 512}}]},
              {"id": "s2", "setpoints": [{"utility": 0.5, "demand": {"n1/cpu": 1.5}}]}]}"#
            .to_vec(),
    );
    out
}

/// Seeds of `control_port`: Sesco's side of a control port connection.
pub fn control_port() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, request) in sesco_requests()
        .into_iter()
        .chain(client_requests())
        .enumerate()
    {
        let message = Message::Request {
            id: i as u64,
            body: request,
        };
        out.push([vec![0], frame(&codec::encode(&message).unwrap())].concat());
    }
    let change = sesco_requests().pop().unwrap();
    let mut many = vec![1];
    for id in 0..4 {
        many.extend(frame(
            &codec::encode(&Message::Request {
                id,
                body: change.clone(),
            })
            .unwrap(),
        ));
    }
    out.push(many);
    for message in messages() {
        out.push([vec![2], frame(&codec::encode(&message).unwrap())].concat());
    }
    out
}

/// Seeds of `app_line`: every message of the application protocol, in both directions,
/// one per input and all in one stream, with bad lines among them.
pub fn app_line() -> Vec<Vec<u8>> {
    let lines: Vec<&[u8]> = vec![
        br#"{"type":"hello","versions":[1,2],"token":"0123abcd","agent":"seed"}"#,
        br#"{"type":"hello","versions":[1],"token":"t","colour":"blue"}"#,
        br#"{"type":"ack","sequence":3}"#,
        br#"{"type":"report","achieved":{"frame_rate":29.7,"resolution":720}}"#,
        br#"{"type":"ping","id":7}"#,
        br#"{"type":"welcome","version":2,"session":12,"process":0,"server":"lrmd 0.1.0"}"#,
        br#"{"type":"setpoint","sequence":4,"direction":"lower","levels":[{"dimension":"frame_rate","level":"24fps","index":2,"value":24.0}],"reservation":{"cpu_class":"bandwidth","cpus":0.25,"memory_max_bytes":16777216,"memory_min_bytes":8388608,"pids_max":64}}"#,
        br#"{"type":"setpoint","sequence":5,"direction":"raise","levels":[],"reservation":{"cpu_class":"deadline","cpus":0.1,"runtime_us":1000,"deadline_us":10000,"period_us":10000,"memory_max_bytes":1,"memory_min_bytes":0,"pids_max":1}}"#,
        br#"{"type":"pong","id":7,"sesco_connected":true}"#,
        br#"{"type":"sesco","connected":false}"#,
        br#"{"type":"error","code":"bad_line","message":"the line is not JSON","fatal":false}"#,
        br#"{"type":"ack","sequence":"three"}"#,
        b"not json",
        b"[1,2,3]",
        br#"{"type":"teleport"}"#,
    ];
    let mut out: Vec<Vec<u8>> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| [&[i as u8][..], line].concat())
        .collect();
    let mut stream = vec![3];
    for line in &lines {
        stream.extend_from_slice(line);
        stream.push(b'\n');
    }
    out.push(stream.clone());
    stream.extend(std::iter::repeat_n(
        b'x',
        sesco_proto::app::MAX_LINE_BYTES + 5,
    ));
    stream.extend_from_slice(b"\n{\"type\":\"ping\"}");
    out.push(stream);
    out
}

/// Writes every target's seeds under `dir/<target>/`.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    let targets: [(&str, Vec<Vec<u8>>); 6] = [
        ("frame_decoder", frame_decoder()),
        ("sesco_handlers", sesco_handlers()),
        ("world_file", world_file()),
        ("qram_instance", qram_instance()),
        ("control_port", control_port()),
        ("app_line", app_line()),
    ];
    for (target, seeds) in targets {
        let dir = dir.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
        }
    }
    Ok(())
}
