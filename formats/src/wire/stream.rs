//! Frames over `std::io` streams.

use super::{encode, FrameError, MAX_FRAME};
use serde::Serialize;
use std::io::{self, BufRead, Write};

/// Read the next frame's bytes (without the ending zero) into `buf`. `Ok(false)` at a clean end
/// of stream (between frames); a stream that ends inside a frame is an
/// [`io::ErrorKind::UnexpectedEof`] error naming how many bytes it had; a frame longer than
/// [`MAX_FRAME`] is an [`io::ErrorKind::InvalidData`] error (the rest of it is skipped, so the
/// next read starts at the next frame).
pub fn read_frame(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            if buf.is_empty() && !too_long {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ended inside a frame, after {} bytes", buf.len()),
            ));
        }
        let (take, done) = match avail.iter().position(|&b| b == 0) {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_FRAME {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        r.consume(if done { take + 1 } else { take });
        if done {
            if too_long {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    FrameError::TooLong { max: MAX_FRAME },
                ));
            }
            return Ok(true);
        }
    }
}

/// Write `msg` as one frame and flush.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let frame = encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    w.write_all(&frame)?;
    w.flush()
}
