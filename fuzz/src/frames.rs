//! The frame decoder's checks: bytes through `codec::decode` and through `FrameReader`,
//! against an independent reading of the same bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sesco_proto::codec::{self, CodecError};
use sesco_proto::frame::{FrameError, FrameReader};
use sesco_proto::{MAX_FRAME_BYTES, Message};
use tokio::io::{AsyncRead, ReadBuf};

/// Checks one payload through the codec: a decoded message re-encodes to bytes that
/// decode to the same message, and any byte after a whole message is refused.
pub fn check_payload(payload: &[u8]) -> Result<Message, CodecError> {
    let result = codec::decode::<Message>(payload);
    if let Ok(message) = &result {
        let encoded = codec::encode(message).expect("a decoded message encodes");
        assert!(
            encoded.len() <= payload.len(),
            "the canonical encoding is never longer than what decoded"
        );
        let again: Message = codec::decode(&encoded).expect("an encoded message decodes");
        // Compared as bytes: messages hold floats, and NaN is not equal to itself.
        assert_eq!(
            codec::encode(&again).unwrap(),
            encoded,
            "encode → decode → encode changed the message"
        );
        let mut longer = payload.to_vec();
        longer.push(0);
        match codec::decode::<Message>(&longer) {
            Err(CodecError::TrailingBytes { trailing: 1 }) => {}
            other => panic!("a trailing byte was not refused: {other:?}"),
        }
    }
    result
}

/// What an independent reading of a byte stream expects of the frame reader, frame by
/// frame.
#[derive(Debug)]
enum Expected {
    Message,
    Undecodable,
    TooLarge,
    /// The stream ends inside a frame.
    Truncated,
    End,
}

fn expectations(bytes: &[u8]) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.is_empty() {
            out.push(Expected::End);
            return out;
        }
        if rest.len() < 4 {
            out.push(Expected::Truncated);
            return out;
        }
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        if len > MAX_FRAME_BYTES {
            out.push(Expected::TooLarge);
            return out;
        }
        if rest.len() - 4 < len {
            out.push(Expected::Truncated);
            return out;
        }
        let payload = &rest[4..4 + len];
        match check_payload(payload) {
            Ok(_) => out.push(Expected::Message),
            Err(_) => {
                out.push(Expected::Undecodable);
                return out;
            }
        }
        rest = &rest[4 + len..];
    }
}

/// A byte stream that hands out at most `chunk` bytes per read, to exercise frames split
/// across reads.
pub struct Trickle<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl<'a> Trickle<'a> {
    pub fn new(bytes: &'a [u8], chunk: usize) -> Self {
        Self {
            bytes,
            chunk: chunk.max(1),
        }
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.bytes.len()).min(buf.remaining());
        let (now, later) = self.bytes.split_at(n);
        buf.put_slice(now);
        self.bytes = later;
        Poll::Ready(Ok(()))
    }
}

/// Reads `bytes` as a stream of frames, `chunk` bytes at a time, and checks each outcome
/// against the independent reading.
pub async fn check_stream(bytes: &[u8], chunk: usize) {
    let expected = expectations(bytes);
    let mut reader = FrameReader::new(Trickle::new(bytes, chunk));
    for (i, want) in expected.iter().enumerate() {
        let got = reader.next().await;
        let ok = match (want, &got) {
            (Expected::Message, Ok(Some(_))) => true,
            (Expected::End, Ok(None)) => true,
            (Expected::TooLarge, Err(e @ FrameError::TooLarge { .. })) => e
                .to_reply()
                .is_some_and(|r| r.code == sesco_proto::ErrorCode::FrameTooLarge),
            (Expected::Undecodable, Err(e @ FrameError::Codec(_))) => e
                .to_reply()
                .is_some_and(|r| r.code == sesco_proto::ErrorCode::BadFrame),
            (Expected::Truncated, Err(FrameError::Io(_))) => true,
            _ => false,
        };
        assert!(
            ok,
            "frame {i}: expected {want:?}, the reader gave {got:?} (chunk {chunk})"
        );
        if !matches!(want, Expected::Message) {
            break;
        }
    }
}

/// The whole check of the `frame_decoder` target: the first byte chooses how many bytes
/// each read hands out; the rest is the stream, and also one bare payload.
pub fn check(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let _ = check_payload(stream);
    runtime().block_on(check_stream(stream, chunk as usize % 17 + 1));
}

/// One single-threaded runtime per fuzzing process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesco_proto::message::Request;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn whole_split_oversized_and_truncated_streams_are_read_as_expected() {
        let message = Message::Request {
            id: 7,
            body: Request::ListNodes,
        };
        let payload = codec::encode(&message).unwrap();
        let mut stream = frame(&payload);
        stream.extend(frame(&payload));
        for chunk in [1, 3, 17] {
            runtime().block_on(check_stream(&stream, chunk));
        }
        let mut oversized = stream.clone();
        oversized.extend(((MAX_FRAME_BYTES + 1) as u32).to_be_bytes());
        runtime().block_on(check_stream(&oversized, 5));
        runtime().block_on(check_stream(&stream[..stream.len() - 1], 2));
        let mut bad = stream.clone();
        bad.extend(frame(&[0xff, 0xff, 0xff]));
        runtime().block_on(check_stream(&bad, 4));
    }
}
