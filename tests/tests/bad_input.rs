//! Bad input of every kind — frames, world files, requests — gets a clear error and
//! changes nothing: the sessions, the world and the event log stay as they were, and a
//! running session is undisturbed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sesco_e2e::{ALICE, Cluster, alive, text};
use sesco_proto::codec;
use sesco_proto::message::{Credentials, Hello, Message, Request, Role};
use sesco_proto::node::ProcessLaunch;
use sesco_proto::session::{CpuReservation, Reservation};
use sesco_proto::{ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, SessionId};

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

fn message(m: &Message) -> Vec<u8> {
    frame(&codec::encode(m).unwrap())
}

fn hello(version: u32, credentials: Credentials) -> Message {
    Message::Hello(Hello {
        version,
        role: Role::Client,
        credentials,
        agent: "bad-input test".into(),
    })
}

fn admin_hello(cluster: &Cluster) -> Message {
    let password = std::fs::read_to_string(cluster.admin_password_file()).unwrap();
    hello(
        PROTOCOL_VERSION,
        Credentials::Password {
            user: "admin".into(),
            password: password.trim().into(),
        },
    )
}

/// Reads frames until the server closes the connection; returns them.
fn read_until_closed(stream: &mut TcpStream) -> Vec<Message> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("the server closes the connection");
    let mut messages = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        messages.push(codec::decode(&rest[4..4 + len]).expect("the server sends good frames"));
        rest = &rest[4 + len..];
    }
    messages
}

/// Reads `count` frames.
fn read_frames(stream: &mut TcpStream, count: usize) -> Vec<Message> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (0..count)
        .map(|_| {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).expect("a frame header");
            let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
            stream.read_exact(&mut payload).expect("a frame");
            codec::decode(&payload).expect("the server sends good frames")
        })
        .collect()
}

/// Sends `bytes` on a fresh connection and expects a fatal error with `code`, then the
/// end of the connection.
fn expect_refused(cluster: &Cluster, bytes: &[u8], code: ErrorCode) {
    let mut stream = TcpStream::connect(&cluster.addr).unwrap();
    stream.write_all(bytes).unwrap();
    let messages = read_until_closed(&mut stream);
    match messages.last() {
        Some(Message::Fatal(error)) => assert_eq!(error.code, code, "{error:?}"),
        other => panic!("expected a fatal {code:?} frame, got {other:?} (all: {messages:?})"),
    }
}

#[test]
fn bad_frames_get_an_error_frame_and_a_closed_connection_and_change_nothing() {
    let cluster = Cluster::start();
    let session = cluster.request(ALICE, &["encoder"]);
    let pid = session["processes"][0]["pid"].as_u64().unwrap() as u32;
    let before = cluster.snapshot();

    // A length over the limit: refused before the payload is read.
    expect_refused(
        &cluster,
        &((MAX_FRAME_BYTES as u32) + 1).to_be_bytes(),
        ErrorCode::FrameTooLarge,
    );
    // Bytes that decode to no message.
    expect_refused(&cluster, &frame(&[0xff; 64]), ErrorCode::BadFrame);
    // A message followed by trailing bytes inside its frame.
    let mut padded = codec::encode(&admin_hello(&cluster)).unwrap();
    padded.extend_from_slice(&[0, 0, 0]);
    expect_refused(&cluster, &frame(&padded), ErrorCode::BadFrame);
    // Another protocol version.
    expect_refused(
        &cluster,
        &message(&hello(
            PROTOCOL_VERSION + 1,
            Credentials::Token { token: "x".into() },
        )),
        ErrorCode::VersionMismatch,
    );
    // A first frame that is not a hello.
    expect_refused(
        &cluster,
        &message(&Message::Request {
            id: 1,
            body: Request::ListNodes,
        }),
        ErrorCode::BadFrame,
    );
    // Wrong credentials, and credentials that do not fit the role.
    expect_refused(
        &cluster,
        &message(&hello(
            PROTOCOL_VERSION,
            Credentials::Password {
                user: "admin".into(),
                password: "wrong".into(),
            },
        )),
        ErrorCode::Unauthenticated,
    );
    expect_refused(
        &cluster,
        &message(&hello(
            PROTOCOL_VERSION,
            Credentials::Cluster {
                node: "node-a".into(),
                key: "forged".into(),
            },
        )),
        ErrorCode::Unauthenticated,
    );
    // Garbage after a good handshake, on an admin's connection.
    let mut bytes = message(&admin_hello(&cluster));
    bytes.extend_from_slice(&frame(&[0xfe; 7]));
    let mut stream = TcpStream::connect(&cluster.addr).unwrap();
    stream.write_all(&bytes).unwrap();
    let messages = read_until_closed(&mut stream);
    assert!(
        matches!(messages.first(), Some(Message::Welcome(_))),
        "{messages:?}"
    );
    assert!(
        matches!(messages.last(), Some(Message::Fatal(e)) if e.code == ErrorCode::BadFrame),
        "{messages:?}"
    );
    // A request the role may not send: refused, the connection stays usable.
    let launch = ProcessLaunch {
        session: SessionId(1),
        process: 0,
        process_name: "x".into(),
        unix_account: "root".into(),
        argv: vec!["/bin/sh".into()],
        env: Default::default(),
        reservation: Reservation {
            cpu: CpuReservation::Bandwidth { cpus: 1.0 },
            memory_max_bytes: 1 << 30,
            memory_min_bytes: 0,
            pids_max: 10,
            net: Vec::new(),
            io: Vec::new(),
        },
        setpoint: Default::default(),
    };
    let mut bytes = message(&admin_hello(&cluster));
    bytes.extend_from_slice(&message(&Message::Request {
        id: 7,
        body: Request::StartProcess(launch),
    }));
    bytes.extend_from_slice(&message(&Message::Request {
        id: 8,
        body: Request::ListNodes,
    }));
    let mut stream = TcpStream::connect(&cluster.addr).unwrap();
    stream.write_all(&bytes).unwrap();
    let messages = read_frames(&mut stream, 3);
    assert!(
        messages.iter().any(
            |m| matches!(m, Message::Failure { id: 7, error } if error.code == ErrorCode::Forbidden)
        ),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, Message::Reply { id: 8, .. })),
        "the connection must stay usable after a refused request: {messages:?}"
    );

    // Nothing changed, and the running session was not disturbed.
    assert_eq!(cluster.snapshot(), before);
    assert!(alive(pid));
}

/// Applies `text` as a world file; expects a refusal naming `location` and `reason`.
fn expect_world_refused(cluster: &Cluster, name: &str, text_: &str, location: &str, reason: &str) {
    let path = cluster.dir.path().join(name);
    std::fs::write(&path, text_).unwrap();
    let out = cluster.arq_as_admin(&["admin", "apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success(), "{name} was applied: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected_location = format!("{}{location}", path.display());
    assert!(
        stderr.contains(&expected_location),
        "{name}: no `{expected_location}` in:\n{stderr}"
    );
    assert!(
        stderr.contains(reason),
        "{name}: no `{reason}` in:\n{stderr}"
    );
    assert!(stderr.contains("nothing changed"), "{name}:\n{stderr}");
}

const GROUP: &str = "[[groups]]\nname = \"admins\"\n\n";
const ADMIN: &str = "[[users]]\nname = \"admin\"\nunix_account = \"sesco-admin\"\ngroup = \"admins\"\nadmin = true\n\n";

#[test]
fn malformed_world_files_are_refused_with_file_line_and_reason_and_change_nothing() {
    let cluster = Cluster::start();
    let before = cluster.snapshot();
    expect_world_refused(
        &cluster,
        "syntax.toml",
        &format!("{GROUP}[[users]\nname = 1\n"),
        ":4:",
        "unclosed array table",
    );
    expect_world_refused(
        &cluster,
        "unknown-field.toml",
        &format!("{GROUP}{ADMIN}[[nodes]]\nname = \"n1\"\ncolour = \"red\"\n"),
        ":12:",
        "unknown field `colour`",
    );
    expect_world_refused(
        &cluster,
        "wrong-type.toml",
        &format!("[[groups]]\nname = \"admins\"\npriority = \"high\"\n\n{ADMIN}"),
        ":3:",
        "invalid type",
    );
    expect_world_refused(
        &cluster,
        "unknown-group.toml",
        &format!(
            "{GROUP}{ADMIN}[[users]]\nname = \"eve\"\nunix_account = \"sesco-eve\"\ngroup = \"hackers\"\n"
        ),
        ":13:",
        "no group named 'hackers'",
    );
    expect_world_refused(
        &cluster,
        "root-account.toml",
        &format!(
            "{GROUP}{ADMIN}[[users]]\nname = \"eve\"\nunix_account = \"root\"\ngroup = \"admins\"\n"
        ),
        ":12:",
        "never run as root",
    );
    let app = "[[applications]]\nname = \"rt\"\n[[applications.variants]]\nname = \"v\"\ncpu_class = \"deadline\"\n[[applications.variants.processes]]\nname = \"p\"\ncommand = [\"true\"]\ncpu = 2.0\nmemory_mb = 8\n";
    expect_world_refused(
        &cluster,
        "deadline-over-one-cpu.toml",
        &format!("{GROUP}{ADMIN}{app}"),
        ":18:",
        "a deadline process needs at most one CPU",
    );
    let tiny = "[[applications]]\nname = \"tiny\"\n[[applications.variants]]\nname = \"v\"\n[[applications.variants.processes]]\nname = \"p\"\ncommand = [\"true\"]\ncpu = 0.0005\nmemory_mb = 8\n";
    expect_world_refused(
        &cluster,
        "cpu-below-enforceable-share.toml",
        &format!("{GROUP}{ADMIN}{tiny}"),
        ":17:",
        "below the smallest share the kernel enforces",
    );
    expect_world_refused(
        &cluster,
        "no-admin.toml",
        &format!(
            "{GROUP}[[users]]\nname = \"admin\"\nunix_account = \"sesco-admin\"\ngroup = \"admins\"\n"
        ),
        "",
        "would remove the admin rights of 'admin'",
    );
    let out = cluster.arq_as_admin(&["admin", "apply", "-f", "/nonexistent/world.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/world.toml"));
    assert_eq!(cluster.snapshot(), before);
}

#[test]
fn bad_session_requests_are_refused_clearly_and_create_nothing() {
    let cluster = Cluster::start();
    let before = cluster.snapshot();
    for (args, expected) in [
        (
            vec!["request", "nosuchapp"],
            "no application named 'nosuchapp'",
        ),
        (
            vec!["request", "encoder", "--variant", "av1"],
            "has no variant 'av1' (it has: h264, vp9)",
        ),
        (
            vec!["request", "encoder", "--min", "colour=red"],
            "has no dimension 'colour'",
        ),
        (
            vec!["request", "encoder", "--min", "frame_rate=60fps"],
            "has no level '60fps'",
        ),
        (
            vec!["request", "encoder", "--min", "frame_rate"],
            "--min takes DIMENSION=LEVEL",
        ),
        (vec!["show", "999"], "no session 999"),
        (vec!["terminate", "999"], "no session 999"),
    ] {
        let out = cluster.arq(ALICE, &args);
        assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?}: no `{expected}` in:\n{stderr}"
        );
    }
    let out = cluster.arq(ALICE, &["request", "encoder", "--bogus-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus-flag"));
    assert_eq!(cluster.snapshot(), before);
}
