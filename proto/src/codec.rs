//! The payload codec: serde over bincode 2, kept behind this one module so it can be
//! swapped without touching the message types.

use serde::{Serialize, de::DeserializeOwned};

use crate::MAX_FRAME_BYTES;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("undecodable payload: {0}")]
    Decode(String),
    #[error("payload has {trailing} trailing bytes after the message")]
    TrailingBytes { trailing: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes one value into a payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly one value from a payload; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::TrailingBytes {
            trailing: payload.len() - used,
        });
    }
    Ok(value)
}
