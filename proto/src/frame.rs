//! Length-prefixed frames: a big-endian `u32` payload length, then the payload.

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{
    Decoder, FramedRead, FramedWrite, LengthDelimitedCodec, LengthDelimitedCodecError,
};

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

/// The length-delimited decoder, except that a stream ending after a frame's length but
/// before its payload is a truncated frame, not a clean end: the codec consumes the
/// length as soon as it has it, and would otherwise see an empty buffer at the end.
struct FrameDecoder {
    inner: LengthDelimitedCodec,
    /// A frame's length has been read and its payload has not been.
    inside_frame: bool,
}

impl Decoder for FrameDecoder {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        let before = buf.len();
        let frame = self.inner.decode(buf)?;
        if frame.is_some() {
            self.inside_frame = false;
        } else if buf.len() < before {
            self.inside_frame = true;
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() && !self.inside_frame => Ok(None),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the stream ended inside a frame",
            )),
        }
    }
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
    inner: FramedRead<R, FrameDecoder>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> Self {
        Self {
            inner: FramedRead::new(
                reader,
                FrameDecoder {
                    inner: length_codec(),
                    inside_frame: false,
                },
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Request;

    async fn read_all(bytes: &[u8]) -> Vec<Result<Option<Message>, FrameError>> {
        let mut reader = FrameReader::new(bytes);
        let mut out = Vec::new();
        loop {
            let next = reader.next().await;
            let last = !matches!(next, Ok(Some(_)));
            out.push(next);
            if last {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn a_stream_cut_after_a_frame_length_is_truncated_not_ended() {
        let payload = codec::encode(&Message::Request {
            id: 1,
            body: Request::ListNodes,
        })
        .unwrap();
        let mut whole = (payload.len() as u32).to_be_bytes().to_vec();
        whole.extend(&payload);

        let read = read_all(&whole).await;
        assert!(matches!(read[..], [Ok(Some(_)), Ok(None)]), "{read:?}");

        // The length alone, then the end: found by the frame decoder's fuzz target.
        for cut in [4, 5, whole.len() - 1] {
            let mut stream = whole.clone();
            stream.extend(&whole[..cut]);
            let read = read_all(&stream).await;
            assert!(
                matches!(read[..], [Ok(Some(_)), Err(FrameError::Io(_))]),
                "cut at {cut}: {read:?}"
            );
        }
    }
}
