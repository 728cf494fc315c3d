//! The `control_port` target: an application's control port (`arq::ControlPort`) against
//! a stand-in Sesco on loopback that welcomes it, then sends the fuzzed bytes.
//!
//! # Input
//!
//! `[mode] [bytes]`: bit 0 of `mode` makes the application leave set-points
//! unacknowledged; bit 1 makes it report QoS. The bytes go to the port raw, after the
//! welcome: frames of requests (set-points, and requests a port must refuse), events,
//! replies, or garbage.
//!
//! # Checks
//!
//! - no panic, in the application's thread or the port's;
//! - every set-point the application sees was sent, and when it acknowledges, Sesco gets
//!   the ack of the newest one it sent;
//! - every request other than a set-point is refused as forbidden, while the connection
//!   lasts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arq::control::{ControlConfig, ControlPort};
use sesco_proto::codec;
use sesco_proto::frame::{FrameReader, FrameWriter};
use sesco_proto::message::{Credentials, Identity, Message, Reply, Request, Welcome};
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION, SessionId};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How long the application waits for set-points, and the stand-in for answers.
const WAIT: Duration = Duration::from_millis(10);

/// What the stand-in Sesco saw of one input's connection.
#[derive(Debug, Default)]
struct Seen {
    /// The set-points sent: request id and sequence.
    setpoints: Vec<(u64, u64)>,
    /// Ids of the other requests sent.
    others: Vec<u64>,
    replies: Vec<(u64, Result<Reply, ErrorReply>)>,
}

struct Job {
    input: u64,
    bytes: Vec<u8>,
    done: oneshot::Sender<Seen>,
}

struct StandIn {
    runtime: tokio::runtime::Runtime,
    jobs: Arc<Mutex<Option<Job>>>,
    inputs: AtomicU64,
}

fn stand_in() -> &'static StandIn {
    static STAND_IN: OnceLock<StandIn> = OnceLock::new();
    STAND_IN.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // SAFETY: set once, on the first input, before this process starts the threads
        // of the stand-in and of the ports; nothing else reads these variables.
        unsafe {
            std::env::set_var(arq::control::ENV_ADDR, &addr);
            std::env::set_var(arq::control::ENV_SESSION, "1");
            std::env::set_var(arq::control::ENV_PROCESS, "0");
            std::env::set_var(arq::control::ENV_TOKEN, "input");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(async { TcpListener::from_std(listener) })
            .expect("a loopback listener");
        let jobs: Arc<Mutex<Option<Job>>> = Arc::default();
        runtime.spawn(accept(listener, jobs.clone()));
        StandIn {
            runtime,
            jobs,
            inputs: AtomicU64::new(0),
        }
    })
}

async fn accept(listener: TcpListener, jobs: Arc<Mutex<Option<Job>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let _ = connection(stream, jobs).await;
        });
    }
}

/// One connection from a control port: the current input's first one runs the input;
/// any other (a port reconnecting after its input) is told its session is gone.
async fn connection(stream: TcpStream, jobs: Arc<Mutex<Option<Job>>>) -> Option<()> {
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let mut writer = FrameWriter::new(write);
    let Ok(Some(Message::Hello(hello))) = reader.next().await else {
        return None;
    };
    let Credentials::Session { token, .. } = &hello.credentials else {
        return None;
    };
    let input: u64 = token.strip_prefix("input-")?.parse().ok()?;
    let job = {
        let mut slot = jobs.lock().unwrap();
        match slot.as_ref() {
            Some(job) if job.input == input => slot.take(),
            _ => None,
        }
    };
    let Some(job) = job else {
        let _ = writer
            .send(&Message::Fatal(ErrorReply::new(
                ErrorCode::Unauthenticated,
                "no live session with that id and token",
            )))
            .await;
        return None;
    };
    writer
        .send(&Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            identity: Identity::App {
                session: SessionId(1),
                process: 0,
            },
            server: "fuzz".into(),
        }))
        .await
        .ok()?;
    let mut seen = Seen::default();
    // What the port will read: note the requests among whole frames.
    let mut rest = &job.bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        if rest.len() - 4 < len {
            break;
        }
        match codec::decode::<Message>(&rest[4..4 + len]) {
            Ok(Message::Request {
                id,
                body: Request::ApplySetPoint(change),
            }) => {
                seen.setpoints.push((id, change.sequence));
            }
            Ok(Message::Request { id, .. }) => seen.others.push(id),
            Ok(_) => {}
            Err(_) => break,
        }
        rest = &rest[4 + len..];
    }
    let mut raw = writer.into_inner();
    let _ = raw.write_all(&job.bytes).await;
    let _ = raw.flush().await;
    // Answers until the port closes (the application drops it after its last set-point).
    loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.next()).await {
            Ok(Ok(Some(Message::Reply { id, body }))) => {
                seen.replies.push((id, Ok(body)));
            }
            Ok(Ok(Some(Message::Failure { id, error }))) => {
                seen.replies.push((id, Err(error)));
            }
            Ok(Ok(Some(_))) => {}
            _ => break,
        }
    }
    let _ = job.done.send(seen);
    Some(())
}

pub fn check(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let stand_in = stand_in();
    let input = stand_in.inputs.fetch_add(1, Ordering::Relaxed);
    let (done, seen) = oneshot::channel();
    *stand_in.jobs.lock().unwrap() = Some(Job {
        input,
        bytes: bytes.to_vec(),
        done,
    });
    // From the environment, as an application's port is configured; each input's port
    // has a token of its own, by which the stand-in tells a late reconnection apart.
    let mut config = ControlConfig::from_env().expect("the stand-in's environment");
    config.token = format!("input-{input}");
    let port = ControlPort::register_with(config).expect("the port registers with the stand-in");
    if mode & 2 != 0 {
        port.report_qos(&[("frame_rate", 29.7)]);
    }
    let mut acked = Vec::new();
    while let Some(change) = port.next_setpoint(WAIT) {
        if mode & 1 == 0 {
            port.ack(&change);
            acked.push(change.sequence);
        }
    }
    drop(port);
    let seen = stand_in
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), seen).await })
        .expect("the stand-in finishes in time")
        .expect("the stand-in reports");
    let sent: Vec<u64> = seen.setpoints.iter().map(|(_, s)| *s).collect();
    for sequence in &acked {
        assert!(
            sent.contains(sequence),
            "the application saw set-point {sequence}, which was never sent"
        );
    }
    for (id, reply) in &seen.replies {
        match reply {
            Ok(Reply::SetPointAck(ack)) => {
                assert!(
                    seen.setpoints.contains(&(*id, ack.sequence)),
                    "ack {} of request {id}, which did not send it",
                    ack.sequence
                )
            }
            Err(e) if e.code == ErrorCode::Forbidden => {
                assert!(seen.others.contains(id), "a set-point was refused: {e}")
            }
            other => panic!("unexpected answer to request {id}: {other:?}"),
        }
    }
}
