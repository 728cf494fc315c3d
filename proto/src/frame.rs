//! Length-prefixed frames: a big-endian `u32` payload length, then the payload.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec, LengthDelimitedCodecError};

use crate::MAX_FRAME_BYTES;
use crate::codec::{self, CodecError};
use crate::error::{ErrorCode, ErrorReply};
use crate::message::Message;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The error frame to send the peer before closing, when the fault is the peer's.
    pub fn to_reply(&self) -> Option<ErrorReply> {
        match self {
            Self::TooLarge { limit } => Some(ErrorReply::new(
                ErrorCode::FrameTooLarge,
                format!("frame larger than the {limit}-byte limit"),
            )),
            Self::Codec(e) => Some(ErrorReply::new(ErrorCode::BadFrame, e.to_string())),
            Self::Io(_) => None,
        }
    }
}

fn length_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

fn classify(e: std::io::Error) -> FrameError {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>())
    {
        FrameError::TooLarge {
            limit: MAX_FRAME_BYTES,
        }
    } else {
        FrameError::Io(e)
    }
}

/// Reads whole messages from a byte stream.
pub struct FrameReader<R> {
    inner: FramedRead<R, LengthDelimitedCodec>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> Self {
        Self {
            inner: FramedRead::new(reader, length_codec()),
        }
    }

    /// The next message, or `None` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Message>, FrameError> {
        match self.inner.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(classify(e)),
            Some(Ok(payload)) => Ok(Some(codec::decode(&payload)?)),
        }
    }
}

/// Writes whole messages to a byte stream.
pub struct FrameWriter<W> {
    inner: FramedWrite<W, LengthDelimitedCodec>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(writer: W) -> Self {
        Self {
            inner: FramedWrite::new(writer, length_codec()),
        }
    }

    /// Encodes and sends one message. A message over the limit is not sent.
    pub async fn send(&mut self, message: &Message) -> Result<(), FrameError> {
        let payload = codec::encode(message)?;
        if payload.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge {
                limit: MAX_FRAME_BYTES,
            });
        }
        self.inner
            .send(bytes::Bytes::from(payload))
            .await
            .map_err(classify)
    }

    /// The underlying writer, for tests that need to send raw bytes.
    pub fn into_inner(self) -> W {
        self.inner.into_inner()
    }

    /// Flushes and shuts the write half down.
    pub async fn close(&mut self) -> Result<(), FrameError> {
        SinkExt::<bytes::Bytes>::close(&mut self.inner)
            .await
            .map_err(FrameError::Io)
    }
}
