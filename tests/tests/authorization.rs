//! Who may do what: every forbidden action of every role is refused with a clear error
//! and changes nothing.

use std::time::Duration;

use arq::client::{Client, ClientError, Credentials as UserCredentials};
use sesco_e2e::{ALICE, BOB, Cluster, ClusterOptions, IDLE_APPLICATION, alive, text};
use sesco_proto::message::{
    AdminRequest, Credentials, Hello, Identity, Reply, Request, Role, SessionFilter,
};
use sesco_proto::node::{NodeHeartbeat, SessionStop};
use sesco_proto::peer::{self, Incoming, Peer};
use sesco_proto::{ErrorCode, PROTOCOL_VERSION, SessionId};
use tokio::sync::mpsc;

/// Runs `arq` as `who` and expects it to fail with `message` on stderr.
fn refused(cluster: &Cluster, who: (&str, &str), args: &[&str], message: &str) {
    let out = cluster.arq(who, args);
    assert!(
        !out.status.success(),
        "{args:?} was allowed: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(message),
        "{args:?}: no `{message}` in {stderr}"
    );
}

async fn connect(
    cluster: &Cluster,
    role: Role,
    credentials: Credentials,
) -> Result<(Peer, mpsc::Receiver<Incoming>), peer::HandshakeError> {
    let stream = tokio::net::TcpStream::connect(cluster.client_addr())
        .await
        .unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role,
        credentials,
        agent: "authorization test".into(),
    };
    peer::connect(stream, hello, Duration::from_secs(10))
        .await
        .map(|(_, peer, incoming)| (peer, incoming))
}

fn code_of(result: Result<Reply, sesco_proto::ErrorReply>) -> ErrorCode {
    match result {
        Err(e) => e.code,
        Ok(reply) => panic!("allowed: {reply:?}"),
    }
}

#[test]
fn a_user_may_not_touch_the_world_or_other_users_sessions() {
    let cluster = Cluster::start();
    let alices = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let id = alices["id"].to_string();
    let pid = alices["processes"][0]["pid"].as_u64().unwrap() as u32;
    let world = cluster.dir.path().join("world.toml");
    std::fs::write(
        &world,
        std::fs::read_to_string(&cluster.options.world).unwrap(),
    )
    .unwrap();
    let before = cluster.snapshot();

    let admin_only = "only admins may change or export the world";
    refused(
        &cluster,
        BOB,
        &["admin", "apply", "-f", world.to_str().unwrap()],
        admin_only,
    );
    refused(&cluster, BOB, &["admin", "export"], admin_only);
    refused(
        &cluster,
        BOB,
        &["show", &id],
        &format!("session {id} belongs to another user"),
    );
    refused(
        &cluster,
        BOB,
        &["terminate", &id],
        &format!("session {id} belongs to another user"),
    );
    let new_password = cluster.dir.path().join("new-password");
    std::fs::write(&new_password, "bob-owns-alice-now").unwrap();
    refused(
        &cluster,
        BOB,
        &[
            "admin",
            "passwd",
            "alice",
            "--new-password-file",
            new_password.to_str().unwrap(),
        ],
        "only admins may set another user's password",
    );

    // What bob may list shows only what is his.
    let sessions = cluster.arq_json(BOB, &["ls", "--all"]);
    assert_eq!(sessions.as_array().unwrap().len(), 0, "{sessions}");
    let users = cluster.arq_json(BOB, &["admin", "users"]);
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    assert_eq!(users[0]["name"], "bob");
    assert!(
        users[0]["password_hash"].is_null(),
        "hashes never leave Sesco"
    );
    let events = cluster.arq_json(BOB, &["events", "--since", "0", "--limit", "1000"]);
    assert!(
        events.as_array().unwrap().is_empty(),
        "bob sees no event of alice's: {events}"
    );

    assert_eq!(cluster.snapshot(), before);
    assert!(alive(pid));
    // alice's password still works; an admin may end her session.
    assert!(cluster.arq(ALICE, &["ls"]).status.success());
    let out = cluster.arq_as_admin(&["terminate", &id]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_watcher_sees_only_its_own_sessions() {
    let cluster = Cluster::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut bob = runtime.block_on(cluster.sign_in(BOB)).unwrap();
    let (_, mut events) = runtime.block_on(bob.watch(None)).unwrap();
    let alices = cluster.request(ALICE, &["encoder"]);
    let bobs = cluster.request(BOB, &["telemetry", "--variant", "batch"]);
    let (alice_id, bob_id) = (alices["id"].as_u64().unwrap(), bobs["id"].as_u64().unwrap());
    let seen = runtime.block_on(async {
        let mut seen = Vec::new();
        // Collect until bob's own admission arrives, then a little longer.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
            let done = event.session == Some(SessionId(bob_id));
            seen.push(event);
            if done {
                let _ = tokio::time::timeout(Duration::from_millis(500), events.recv())
                    .await
                    .ok()
                    .flatten()
                    .map(|e| seen.push(e));
                break;
            }
        }
        seen
    });
    assert!(
        seen.iter().any(|e| e.session == Some(SessionId(bob_id))),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|e| e.session == Some(SessionId(bob_id))),
        "bob saw another's event: {seen:?}"
    );
    assert!(!seen.iter().any(|e| e.session == Some(SessionId(alice_id))));
}

#[test]
fn nodes_and_applications_may_only_speak_their_own_part() {
    let cluster = Cluster::start();
    // A session whose process registers no control port: this test speaks for it.
    cluster.add_to_world(IDLE_APPLICATION);
    let alices = cluster.request(ALICE, &["idle"]);
    let session = SessionId(alices["id"].as_u64().unwrap());
    let pid = alices["processes"][0]["pid"].as_u64().unwrap() as u32;
    let token = {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        environ
            .split(|b| *b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix("SESCO_SESSION_TOKEN=").map(str::to_string))
            .unwrap()
    };
    let key = std::fs::read_to_string(cluster.data_dir().join("cluster.key")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The receiver stays open: Sesco sends this port the session's initial set-point,
    // and a port that stops reading is a port that went away.
    let (app, _app_incoming) = runtime
        .block_on(connect(
            &cluster,
            Role::App,
            Credentials::Session {
                session,
                process: 0,
                token: token.clone(),
            },
        ))
        .unwrap();
    let before = cluster.snapshot();
    runtime.block_on(async {
        // An Lrmd (a second connection for a node that has not registered on it) may not
        // act as a client, nor send anything before registering.
        let (node, _node_incoming) = connect(
            &cluster,
            Role::Lrmd,
            Credentials::Cluster {
                node: "node-z".into(),
                key: key.trim().into(),
            },
        )
        .await
        .unwrap();
        let heartbeat = NodeHeartbeat {
            cpu_busy: 0.0,
            memory_available_bytes: 0,
            processes: Vec::new(),
        };
        assert_eq!(
            code_of(node.request(Request::Heartbeat(heartbeat)).await),
            ErrorCode::Conflict
        );
        for request in [
            Request::ListSessions(SessionFilter::All),
            Request::Admin(AdminRequest::ExportWorld),
            Request::TerminateSession(SessionId(1)),
        ] {
            assert_eq!(
                code_of(node.request(request).await),
                ErrorCode::Conflict,
                "before registering"
            );
        }
        // An application may only report its QoS.
        for request in [
            Request::ListSessions(SessionFilter::All),
            Request::TerminateSession(SessionId(1)),
            Request::Admin(AdminRequest::DeleteUser {
                name: "alice".into(),
            }),
            Request::StopSession(SessionStop {
                session: SessionId(1),
                reason: "x".into(),
            }),
            Request::Heartbeat(NodeHeartbeat {
                cpu_busy: 0.0,
                memory_available_bytes: 0,
                processes: Vec::new(),
            }),
        ] {
            assert_eq!(code_of(app.request(request).await), ErrorCode::Forbidden);
        }
        // A client may not speak for a node or an application.
        let (client, _client_incoming) = connect(
            &cluster,
            Role::Client,
            Credentials::Password {
                user: BOB.0.into(),
                password: BOB.1.into(),
            },
        )
        .await
        .unwrap();
        for request in [
            Request::Heartbeat(NodeHeartbeat {
                cpu_busy: 0.0,
                memory_available_bytes: 0,
                processes: Vec::new(),
            }),
            Request::StopSession(SessionStop {
                session: SessionId(1),
                reason: "x".into(),
            }),
        ] {
            assert_eq!(code_of(client.request(request).await), ErrorCode::Forbidden);
        }
        // Credentials that do not match their role, or are wrong, get no connection.
        for (role, credentials) in [
            (
                Role::Client,
                Credentials::Cluster {
                    node: "node-a".into(),
                    key: key.trim().into(),
                },
            ),
            (
                Role::Lrmd,
                Credentials::Password {
                    user: "admin".into(),
                    password: "x".into(),
                },
            ),
            (
                Role::Lrmd,
                Credentials::Cluster {
                    node: "node-a".into(),
                    key: "0".repeat(64),
                },
            ),
            (
                Role::App,
                Credentials::Session {
                    session: SessionId(1),
                    process: 0,
                    token: "0".repeat(64),
                },
            ),
            (
                Role::Client,
                Credentials::Password {
                    user: "nobody".into(),
                    password: "x".into(),
                },
            ),
        ] {
            match connect(&cluster, role, credentials).await {
                Err(peer::HandshakeError::Refused(e)) => {
                    assert_eq!(e.code, ErrorCode::Unauthenticated, "{e:?}")
                }
                Err(other) => panic!("expected a refusal, got {other}"),
                Ok(_) => panic!("connected as {role} with wrong credentials"),
            }
        }
    });
    assert_eq!(cluster.snapshot(), before);
    assert!(alive(pid));
}

#[test]
fn tokens_expire_and_a_password_change_revokes_them() {
    let cluster = Cluster::start_with(ClusterOptions {
        token_ttl: "2s",
        ..ClusterOptions::default()
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = |client: &Client| match client.identity() {
        Identity::User { token, .. } => token.clone(),
        other => panic!("{other:?}"),
    };
    let by_token = |token: String| {
        runtime.block_on(Client::connect(
            &cluster.client_addr(),
            UserCredentials::Token(token),
        ))
    };
    let alice = runtime.block_on(cluster.sign_in(ALICE)).unwrap();
    let first = token(&alice);
    assert!(by_token(first.clone()).is_ok(), "a fresh token signs in");
    std::thread::sleep(Duration::from_millis(2500));
    match by_token(first) {
        Err(ClientError::Handshake(peer::HandshakeError::Refused(e))) => {
            assert_eq!(e.code, ErrorCode::Unauthenticated);
            assert!(e.message.contains("expired"), "{e:?}");
        }
        other => panic!(
            "an expired token signed in: {:?}",
            other.map(|c| c.user().to_string())
        ),
    }
    // A new token, then the admin changes alice's password: the token is revoked.
    let again = runtime.block_on(cluster.sign_in(ALICE)).unwrap();
    let second = token(&again);
    let new_password = cluster.dir.path().join("new-password");
    std::fs::write(&new_password, "a-brand-new-password").unwrap();
    let out = cluster.arq_as_admin(&[
        "admin",
        "passwd",
        "alice",
        "--new-password-file",
        new_password.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    match by_token(second) {
        Err(ClientError::Handshake(peer::HandshakeError::Refused(e))) => {
            assert!(e.message.contains("revoked"), "{e:?}")
        }
        other => panic!(
            "a revoked token signed in: {:?}",
            other.map(|c| c.user().to_string())
        ),
    }
    refused(&cluster, ALICE, &["ls"], "wrong user name or password");
    assert!(
        cluster
            .arq(("alice", "a-brand-new-password"), &["ls"])
            .status
            .success()
    );
}

#[test]
fn repeated_wrong_passwords_are_throttled() {
    let cluster = Cluster::start();
    let before = cluster.snapshot();
    for _ in 0..5 {
        refused(
            &cluster,
            (BOB.0, "not-bobs-password"),
            &["ls"],
            "wrong user name or password",
        );
    }
    // Now even the right password waits; other users are not affected.
    refused(&cluster, BOB, &["ls"], "too many failed sign-ins for bob");
    assert!(cluster.arq(ALICE, &["ls"]).status.success());
    assert_eq!(cluster.snapshot(), before);
}
