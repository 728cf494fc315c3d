//! A connection after its handshake: request/reply multiplexing in both directions, and
//! pushed events.
//!
//! [`connect`] and [`accept`] perform the handshake; both end with a [`Peer`] handle
//! (clonable; sends requests, replies and events) and an [`Incoming`] receiver (requests
//! and events from the other side). A reader task and a writer task own the socket. When
//! the connection ends, every pending request fails with [`ErrorCode::Unavailable`] and
//! the receiver yields `None`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::PROTOCOL_VERSION;
use crate::error::{ErrorCode, ErrorReply};
use crate::event::Event;
use crate::frame::{FrameError, FrameReader, FrameWriter};
use crate::message::{Hello, Message, Reply, Request, RequestId, Welcome};

/// Outgoing frames queued per connection before senders wait.
const OUTGOING_QUEUE: usize = 1024;
/// Incoming requests and events queued before the reader waits.
const INCOMING_QUEUE: usize = 1024;

/// What the other side sent that is not a reply.
#[derive(Debug)]
pub enum Incoming {
    Request { id: RequestId, body: Request },
    Event(Event),
}

type PendingReplies = Mutex<HashMap<RequestId, oneshot::Sender<Result<Reply, ErrorReply>>>>;

struct Shared {
    out: mpsc::Sender<Message>,
    pending: PendingReplies,
    next_id: AtomicU64,
    closed: CancellationToken,
}

/// A handle on one established connection.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
}

fn closed_error() -> ErrorReply {
    ErrorReply::new(ErrorCode::Unavailable, "connection closed")
}

impl Peer {
    /// Sends a request and waits for its reply. A failure reply, a closed connection or
    /// an undeliverable request all come back as an [`ErrorReply`].
    pub async fn request(&self, body: Request) -> Result<Reply, ErrorReply> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .expect("pending replies lock")
            .insert(id, tx);
        if self
            .shared
            .out
            .send(Message::Request { id, body })
            .await
            .is_err()
        {
            self.forget(id);
            return Err(closed_error());
        }
        tokio::select! {
            biased;
            result = rx => result.unwrap_or_else(|_| Err(closed_error())),
            _ = self.shared.closed.cancelled() => {
                self.forget(id);
                Err(closed_error())
            }
        }
    }

    /// [`Peer::request`] bounded in time; on timeout the reply, if it comes, is dropped.
    pub async fn request_within(
        &self,
        body: Request,
        limit: Duration,
    ) -> Result<Reply, ErrorReply> {
        let name = body.name();
        match tokio::time::timeout(limit, self.request(body)).await {
            Ok(result) => result,
            Err(_) => Err(ErrorReply::new(
                ErrorCode::Timeout,
                format!("no reply to {name} within {} ms", limit.as_millis()),
            )),
        }
    }

    fn forget(&self, id: RequestId) {
        self.shared
            .pending
            .lock()
            .expect("pending replies lock")
            .remove(&id);
    }

    /// Answers request `id`.
    pub async fn reply(&self, id: RequestId, result: Result<Reply, ErrorReply>) {
        let message = match result {
            Ok(body) => Message::Reply { id, body },
            Err(error) => Message::Failure { id, error },
        };
        // A closed connection cannot be answered; the peer will retry.
        let _ = self.shared.out.send(message).await;
    }

    /// Pushes an event without waiting. Returns false when the peer is too slow to keep
    /// up (its queue is full) or gone.
    pub fn try_push_event(&self, event: Event) -> bool {
        self.shared.out.try_send(Message::Event(event)).is_ok()
    }

    /// Sends a fatal error (when given) and closes the connection.
    pub async fn close(&self, fatal: Option<ErrorReply>) {
        if let Some(error) = fatal {
            let _ = self.shared.out.send(Message::Fatal(error)).await;
        }
        self.shared.closed.cancel();
    }

    /// Resolves once the connection has ended, for whatever reason.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the peer refused the connection: {0}")]
    Refused(ErrorReply),
    #[error("the peer speaks protocol version {theirs}, this side speaks {ours}")]
    VersionMismatch { theirs: u32, ours: u32 },
    #[error("the peer closed the connection during the handshake")]
    Closed,
    #[error("unexpected first frame: {0}")]
    Unexpected(String),
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Opens a connection: sends `hello`, waits for the welcome.
pub async fn connect<S>(
    stream: S,
    hello: Hello,
    limit: Duration,
) -> Result<(Welcome, Peer, mpsc::Receiver<Incoming>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read);
    let mut writer = FrameWriter::new(write);
    let handshake = async {
        writer.send(&Message::Hello(hello)).await?;
        match reader.next().await? {
            Some(Message::Welcome(welcome)) => Ok(welcome),
            Some(Message::Fatal(error)) if error.code == ErrorCode::VersionMismatch => {
                Err(HandshakeError::Refused(error))
            }
            Some(Message::Fatal(error)) => Err(HandshakeError::Refused(error)),
            Some(other) => Err(HandshakeError::Unexpected(format!("{other:?}"))),
            None => Err(HandshakeError::Closed),
        }
    };
    let welcome = tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| HandshakeError::Timeout(limit))??;
    if welcome.version != PROTOCOL_VERSION {
        return Err(HandshakeError::VersionMismatch {
            theirs: welcome.version,
            ours: PROTOCOL_VERSION,
        });
    }
    let (peer, incoming) = spawn(reader, writer);
    Ok((welcome, peer, incoming))
}

/// A connection whose hello has been read and whose version matches, waiting for the
/// accepting side to authenticate it.
pub struct Greeted<S> {
    reader: FrameReader<tokio::io::ReadHalf<S>>,
    writer: FrameWriter<tokio::io::WriteHalf<S>>,
}

/// Reads the hello of an incoming connection. A bad first frame or another protocol
/// version gets a fatal error frame and the connection is closed.
pub async fn accept<S>(stream: S, limit: Duration) -> Result<(Hello, Greeted<S>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut greeted = Greeted {
        reader: FrameReader::new(read),
        writer: FrameWriter::new(write),
    };
    let first = match tokio::time::timeout(limit, greeted.reader.next()).await {
        Err(_) => {
            greeted
                .refuse(ErrorReply::new(
                    ErrorCode::BadFrame,
                    "no hello within the handshake time",
                ))
                .await;
            return Err(HandshakeError::Timeout(limit));
        }
        Ok(Err(e)) => {
            if let Some(reply) = e.to_reply() {
                greeted.refuse(reply).await;
            }
            return Err(e.into());
        }
        Ok(Ok(None)) => return Err(HandshakeError::Closed),
        Ok(Ok(Some(message))) => message,
    };
    let hello = match first {
        Message::Hello(hello) => hello,
        other => {
            let what = format!("{other:?}");
            greeted
                .refuse(ErrorReply::new(
                    ErrorCode::BadFrame,
                    "the first frame must be a hello",
                ))
                .await;
            return Err(HandshakeError::Unexpected(what));
        }
    };
    if hello.version != PROTOCOL_VERSION {
        greeted
            .refuse(ErrorReply::new(
                ErrorCode::VersionMismatch,
                format!(
                    "protocol version {} is not supported; this server speaks {}",
                    hello.version, PROTOCOL_VERSION
                ),
            ))
            .await;
        return Err(HandshakeError::VersionMismatch {
            theirs: hello.version,
            ours: PROTOCOL_VERSION,
        });
    }
    Ok((hello, greeted))
}

impl<S> Greeted<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    /// Accepts the connection.
    pub async fn welcome(
        mut self,
        welcome: Welcome,
    ) -> Result<(Peer, mpsc::Receiver<Incoming>), HandshakeError> {
        self.writer.send(&Message::Welcome(welcome)).await?;
        Ok(spawn(self.reader, self.writer))
    }

    /// Refuses the connection with an error frame, then closes it.
    pub async fn refuse(mut self, error: ErrorReply) {
        let _ = self.writer.send(&Message::Fatal(error)).await;
        let _ = self.writer.close().await;
    }
}

fn spawn<R, W>(reader: FrameReader<R>, writer: FrameWriter<W>) -> (Peer, mpsc::Receiver<Incoming>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
    let shared = Arc::new(Shared {
        out: out_tx,
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        closed: CancellationToken::new(),
    });
    tokio::spawn(write_loop(writer, out_rx, shared.closed.clone()));
    tokio::spawn(read_loop(reader, in_tx, shared.clone()));
    (Peer { shared }, in_rx)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FrameWriter<W>,
    mut out: mpsc::Receiver<Message>,
    closed: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            biased;
            message = out.recv() => message,
            _ = closed.cancelled() => {
                // Drain what was queued before the close (a fatal frame in particular).
                out.close();
                while let Some(message) = out.recv().await {
                    if writer.send(&message).await.is_err() {
                        break;
                    }
                }
                None
            }
        };
        let Some(message) = message else { break };
        let fatal = matches!(message, Message::Fatal(_));
        if let Err(e) = writer.send(&message).await {
            tracing::debug!(error = %e, "write failed; closing the connection");
            break;
        }
        if fatal {
            break;
        }
    }
    let _ = writer.close().await;
    closed.cancel();
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    incoming: mpsc::Sender<Incoming>,
    shared: Arc<Shared>,
) {
    loop {
        let next = tokio::select! {
            next = reader.next() => next,
            _ = shared.closed.cancelled() => break,
        };
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "bad frame; closing the connection");
                if let Some(reply) = e.to_reply() {
                    let _ = shared.out.try_send(Message::Fatal(reply));
                }
                break;
            }
        };
        match message {
            Message::Reply { id, body } => settle(&shared, id, Ok(body)),
            Message::Failure { id, error } => settle(&shared, id, Err(error)),
            Message::Request { id, body } => {
                if incoming.send(Incoming::Request { id, body }).await.is_err() {
                    break;
                }
            }
            Message::Event(event) => {
                if incoming.send(Incoming::Event(event)).await.is_err() {
                    break;
                }
            }
            Message::Fatal(error) => {
                tracing::debug!(%error, "the peer closed the connection with an error");
                break;
            }
            Message::Hello(_) | Message::Welcome(_) => {
                let _ = shared.out.try_send(Message::Fatal(ErrorReply::new(
                    ErrorCode::BadFrame,
                    "handshake frame after the handshake",
                )));
                break;
            }
        }
    }
    shared.closed.cancel();
    let pending: Vec<_> = shared
        .pending
        .lock()
        .expect("pending replies lock")
        .drain()
        .collect();
    for (_, tx) in pending {
        let _ = tx.send(Err(closed_error()));
    }
}

fn settle(shared: &Shared, id: RequestId, result: Result<Reply, ErrorReply>) {
    let waiter = shared
        .pending
        .lock()
        .expect("pending replies lock")
        .remove(&id);
    match waiter {
        Some(tx) => {
            let _ = tx.send(result);
        }
        None => tracing::debug!(id, "reply to an unknown or abandoned request"),
    }
}
