//! Frames on real sockets: good traffic, and every kind of bad frame.

use std::time::Duration;

use sesco_proto::error::ErrorCode;
use sesco_proto::frame::{FrameError, FrameReader, FrameWriter};
use sesco_proto::message::{Credentials, Hello, Identity, Message, Reply, Request, Role, Welcome};
use sesco_proto::peer::{self, HandshakeError, Incoming};
use sesco_proto::{MAX_FRAME_BYTES, PROTOCOL_VERSION, SessionId, codec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(5);

fn hello(version: u32) -> Hello {
    Hello {
        version,
        role: Role::Client,
        credentials: Credentials::Password {
            user: "alice".into(),
            password: "secret".into(),
        },
        agent: "test".into(),
    }
}

fn welcome() -> Welcome {
    Welcome {
        version: PROTOCOL_VERSION,
        identity: Identity::User {
            name: "alice".into(),
            admin: false,
            token: "t".into(),
            token_expires_ms: 0,
        },
        server: "test".into(),
    }
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), server.unwrap().0)
}

/// Reads what the server sends back after a bad frame: one fatal frame, then end of stream.
async fn expect_fatal_then_close(stream: TcpStream, code: ErrorCode) {
    let mut reader = FrameReader::new(stream);
    match tokio::time::timeout(LIMIT, reader.next()).await.unwrap() {
        Ok(Some(Message::Fatal(error))) => assert_eq!(error.code, code, "{error:?}"),
        other => panic!("expected a fatal {code:?} frame, got {other:?}"),
    }
    match tokio::time::timeout(LIMIT, reader.next()).await.unwrap() {
        Ok(None) | Err(FrameError::Io(_)) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
}

#[tokio::test]
async fn every_message_survives_a_round_trip() {
    let messages = vec![
        Message::Hello(hello(PROTOCOL_VERSION)),
        Message::Welcome(welcome()),
        Message::Request {
            id: 7,
            body: Request::ShowSession(SessionId(42)),
        },
        Message::Reply {
            id: 7,
            body: Reply::Done,
        },
    ];
    for message in messages {
        let payload = codec::encode(&message).unwrap();
        let back: Message = codec::decode(&payload).unwrap();
        assert_eq!(back, message);
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut payload = codec::encode(&Message::Reply {
        id: 1,
        body: Reply::Done,
    })
    .unwrap();
    payload.push(0);
    let err = codec::decode::<Message>(&payload).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
}

#[test]
fn credentials_never_print_their_secrets() {
    let shown = format!("{:?}", hello(1));
    assert!(!shown.contains("secret"), "{shown}");
}

#[tokio::test]
async fn handshake_then_requests_both_ways() {
    let (client, server) = pair().await;
    let server_side = tokio::spawn(async move {
        let (hello, greeted) = peer::accept(server, LIMIT).await.unwrap();
        assert_eq!(hello.role, Role::Client);
        let (peer, mut incoming) = greeted.welcome(welcome()).await.unwrap();
        // Answer one request, then ask one of our own.
        match incoming.recv().await.unwrap() {
            Incoming::Request { id, body } => {
                assert_eq!(body, Request::ListNodes);
                peer.reply(id, Ok(Reply::Nodes(Vec::new()))).await;
            }
            other => panic!("unexpected {other:?}"),
        }
        peer.request(Request::ListApplications).await
    });
    let (welcome, peer, mut incoming) = peer::connect(client, hello(PROTOCOL_VERSION), LIMIT)
        .await
        .unwrap();
    assert!(matches!(welcome.identity, Identity::User { .. }));
    assert_eq!(
        peer.request(Request::ListNodes).await.unwrap(),
        Reply::Nodes(Vec::new())
    );
    match incoming.recv().await.unwrap() {
        Incoming::Request { id, body } => {
            assert_eq!(body, Request::ListApplications);
            peer.reply(id, Ok(Reply::Applications(Vec::new()))).await;
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        server_side.await.unwrap().unwrap(),
        Reply::Applications(Vec::new())
    );
}

#[tokio::test]
async fn another_protocol_version_is_refused_with_an_error_frame() {
    let (client, server) = pair().await;
    let server_side = tokio::spawn(async move { peer::accept(server, LIMIT).await.map(|_| ()) });
    let err = peer::connect(client, hello(PROTOCOL_VERSION + 1), LIMIT)
        .await
        .err()
        .expect("the handshake must fail");
    match err {
        HandshakeError::Refused(reply) => assert_eq!(reply.code, ErrorCode::VersionMismatch),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        server_side.await.unwrap(),
        Err(HandshakeError::VersionMismatch { .. })
    ));
}

#[tokio::test]
async fn an_oversized_frame_gets_an_error_frame_and_a_closed_connection() {
    let (mut client, server) = pair().await;
    let server_side = tokio::spawn(async move { peer::accept(server, LIMIT).await.map(|_| ()) });
    // Announce a frame one byte over the limit; send only the header.
    client
        .write_all(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    assert!(matches!(
        server_side.await.unwrap(),
        Err(HandshakeError::Frame(FrameError::TooLarge { .. }))
    ));
    expect_fatal_then_close(client, ErrorCode::FrameTooLarge).await;
}

#[tokio::test]
async fn an_undecodable_frame_gets_an_error_frame_and_a_closed_connection() {
    let (mut client, server) = pair().await;
    let server_side = tokio::spawn(async move { peer::accept(server, LIMIT).await.map(|_| ()) });
    let garbage = [0xffu8; 16];
    client
        .write_all(&(garbage.len() as u32).to_be_bytes())
        .await
        .unwrap();
    client.write_all(&garbage).await.unwrap();
    assert!(matches!(
        server_side.await.unwrap(),
        Err(HandshakeError::Frame(FrameError::Codec(_)))
    ));
    expect_fatal_then_close(client, ErrorCode::BadFrame).await;
}

#[tokio::test]
async fn a_first_frame_that_is_not_a_hello_is_refused() {
    let (client, server) = pair().await;
    let server_side = tokio::spawn(async move { peer::accept(server, LIMIT).await.map(|_| ()) });
    let (read, write) = client.into_split();
    let mut writer = FrameWriter::new(write);
    writer
        .send(&Message::Request {
            id: 1,
            body: Request::ListNodes,
        })
        .await
        .unwrap();
    assert!(matches!(
        server_side.await.unwrap(),
        Err(HandshakeError::Unexpected(_))
    ));
    let mut reader = FrameReader::new(read);
    match reader.next().await.unwrap() {
        Some(Message::Fatal(error)) => assert_eq!(error.code, ErrorCode::BadFrame),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn garbage_after_the_handshake_closes_the_connection_and_fails_pending_requests() {
    let (client, server) = pair().await;
    let server_side = tokio::spawn(async move {
        let (_, greeted) = peer::accept(server, LIMIT).await.unwrap();
        let (peer, mut incoming) = greeted.welcome(welcome()).await.unwrap();
        // The client's garbage must end the stream of incoming requests.
        assert!(incoming.recv().await.is_none());
        peer.closed().await;
    });
    let (read, write) = client.into_split();
    let mut writer = FrameWriter::new(write);
    writer
        .send(&Message::Hello(hello(PROTOCOL_VERSION)))
        .await
        .unwrap();
    let mut reader = FrameReader::new(read);
    assert!(matches!(
        reader.next().await.unwrap(),
        Some(Message::Welcome(_))
    ));
    // A length-prefixed frame of bytes that decode to no message.
    let mut raw = writer.into_inner();
    raw.write_all(&3u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[0xfe, 0xfe, 0xfe]).await.unwrap();
    match reader.next().await.unwrap() {
        Some(Message::Fatal(error)) => assert_eq!(error.code, ErrorCode::BadFrame),
        other => panic!("unexpected {other:?}"),
    }
    tokio::time::timeout(LIMIT, server_side)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_pending_request_fails_when_the_peer_goes_away() {
    let (client, server) = pair().await;
    let server_side = tokio::spawn(async move {
        let (_, greeted) = peer::accept(server, LIMIT).await.unwrap();
        let (peer, mut incoming) = greeted.welcome(welcome()).await.unwrap();
        // Receive the request, then drop the connection without answering.
        let _ = incoming.recv().await;
        peer.close(None).await;
    });
    let (_, peer, _incoming) = peer::connect(client, hello(PROTOCOL_VERSION), LIMIT)
        .await
        .unwrap();
    let err = tokio::time::timeout(LIMIT, peer.request(Request::ListNodes))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    server_side.await.unwrap();
}

#[tokio::test]
async fn a_peer_that_sends_nothing_is_dropped_after_the_handshake_time() {
    let (mut client, server) = pair().await;
    let result = peer::accept(server, Duration::from_millis(200)).await;
    assert!(matches!(result, Err(HandshakeError::Timeout(_))));
    let mut buf = Vec::new();
    // The server sent its error frame and closed: reading reaches end of stream.
    tokio::time::timeout(LIMIT, client.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(!buf.is_empty());
}
