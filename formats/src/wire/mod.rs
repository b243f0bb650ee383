//! The planner <-> runtime channel: [postcard](https://docs.rs/postcard) messages, each
//! [COBS](https://en.wikipedia.org/wiki/Consistent_Overhead_Byte_Stuffing)-encoded and ended by
//! a zero byte, over any byte stream (a pipe to `sintra-rt serve`, ssh, TCP).
//!
//! COBS removes every zero from the encoded message, so the zero byte marks frame ends without
//! ambiguity: a reader that meets garbage drops one frame and is in step again at the next zero.
//!
//! The session: the planner sends [`Request::Hello`] first; the runtime answers
//! [`Response::Hello`] (protocol version, runtime version, target, chosen ISA, CPU features,
//! cores, RAM). Then requests, each answered by progress messages and one final response. See
//! [`messages`] for the compatibility rules.

pub mod messages;
#[cfg(test)]
mod tests;

pub use messages::*;

use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version of the messages in [`messages`]. Bump it on any change to their encoding
/// (appending an enum variant included): the planner refuses a runtime with another version
/// and says both numbers.
/// 2: `BenchResult::load`. 3: speculative decoding's messages. 4: `Hello::cpu_model` and
/// `Hello::kernel` (a fleet's devices are told apart by their hardware fingerprint).
/// 5: `ErrorKind::Refused`, and a TCP connection opens with [`AUTH_PREFIX`] and the token.
/// 6: `Hello::gpu`.
pub const PROTOCOL_VERSION: u32 = 6;

/// The first bytes a client sends on a TCP connection to `sintra-rt serve --listen`, before
/// any frame: this prefix, the token (empty when the runtime needs none), `\n`; at most
/// [`MAX_AUTH_LINE`] bytes. The runtime reads nothing else until the line checks out.
pub const AUTH_PREFIX: &str = "SINTRA-AUTH ";
/// Longest authentication line, newline included.
pub const MAX_AUTH_LINE: usize = 512;

/// The largest frame either side accepts (a perplexity text travels in one frame).
pub const MAX_FRAME: usize = 16 << 20;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not valid COBS.
    #[error("malformed frame of {len} bytes: not valid cobs")]
    Cobs { len: usize },
    /// The decoded bytes are not the message expected.
    #[error("malformed frame of {len} bytes: {problem}")]
    Message {
        len: usize,
        problem: postcard::Error,
    },
    /// The message decoded but bytes were left over.
    #[error("malformed frame of {len} bytes: {extra} bytes after the message")]
    Trailing { len: usize, extra: usize },
    /// The frame is longer than [`MAX_FRAME`].
    #[error("frame of more than {max} bytes (the limit)")]
    TooLong { max: usize },
    /// The message could not be encoded (a bug: every message type encodes).
    #[error("message could not be encoded: {0}")]
    Encode(postcard::Error),
}

/// `msg` as one frame: COBS-encoded postcard, ending with the zero byte.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let frame = postcard::to_allocvec_cobs(msg).map_err(FrameError::Encode)?;
    if frame.len() > MAX_FRAME {
        return Err(FrameError::TooLong { max: MAX_FRAME });
    }
    Ok(frame)
}

/// Decode one frame (with or without its ending zero byte). The whole frame must be one
/// message: trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let frame = frame.strip_suffix(&[0]).unwrap_or(frame);
    let len = frame.len();
    if len > MAX_FRAME {
        return Err(FrameError::TooLong { max: MAX_FRAME });
    }
    let raw = cobs_decode(frame)?;
    let (msg, rest) = postcard::take_from_bytes::<T>(&raw)
        .map_err(|problem| FrameError::Message { len, problem })?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing {
            len,
            extra: rest.len(),
        });
    }
    Ok(msg)
}

fn cobs_decode(frame: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = frame.len();
    if frame.contains(&0) {
        return Err(FrameError::Cobs { len });
    }
    let mut raw = frame.to_vec();
    let n = cobs::decode_in_place(&mut raw).map_err(|_| FrameError::Cobs { len })?;
    raw.truncate(n);
    Ok(raw)
}

/// The protocol version of a [`Response::Hello`] frame, read from its first two fields only
/// (variant 0, then the version), so that a planner can name the version of a runtime whose
/// `Hello` has another shape. `None` if the frame is not a `Hello`.
pub fn hello_protocol_version(frame: &[u8]) -> Option<u32> {
    let frame = frame.strip_suffix(&[0]).unwrap_or(frame);
    let raw = cobs_decode(frame).ok()?;
    let (variant, rest) = postcard::take_from_bytes::<u32>(&raw).ok()?;
    if variant != 0 {
        return None;
    }
    postcard::take_from_bytes::<u32>(rest).ok().map(|(v, _)| v)
}

#[cfg(feature = "std")]
mod stream;
#[cfg(feature = "std")]
pub use stream::{read_frame, write_frame};
