//! The wire format of one call: one request frame and one response frame on one QUIC
//! bidirectional stream.
//!
//! ```text
//! request : [version u8][len u32 BE][payload: len bytes]                 then FIN
//! response: [version u8][status u8 ][len u32 BE][payload or UTF-8 error] then FIN
//! ```
//!
//! Compatibility contract: the first byte of every frame is the sender's protocol
//! version, in every version to come. A node reads that byte before anything else; on
//! a mismatch it answers (in its own version's format) with an error, and the caller,
//! seeing a response whose first byte is not its version, reports
//! [`super::TransportError::Version`] without trusting the rest.

/// The cluster protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest payload one frame may carry, either way (Raft snapshots travel here).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Request header length after the version byte: the payload length.
pub(crate) const REQUEST_LEN_BYTES: usize = 4;
/// Response header length after the version byte: status and payload length.
pub(crate) const RESPONSE_REST_BYTES: usize = 5;

/// The response status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// The payload is the handler's answer.
    Ok = 0,
    /// The payload is a UTF-8 explanation of why the call was not handled.
    Error = 1,
}

impl Status {
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Ok),
            1 => Some(Self::Error),
            _ => None,
        }
    }
}

/// The request header for a payload of `len` bytes (`len` ≤ [`MAX_FRAME_BYTES`]).
pub(crate) fn request_header(version: u8, len: usize) -> [u8; 1 + REQUEST_LEN_BYTES] {
    let [a, b, c, d] = frame_len(len).to_be_bytes();
    [version, a, b, c, d]
}

/// The response header for a payload of `len` bytes (`len` ≤ [`MAX_FRAME_BYTES`]).
pub(crate) fn response_header(
    version: u8,
    status: Status,
    len: usize,
) -> [u8; 1 + RESPONSE_REST_BYTES] {
    let [a, b, c, d] = frame_len(len).to_be_bytes();
    [version, status as u8, a, b, c, d]
}

/// Parses the request length that follows the version byte.
pub(crate) fn parse_request_len(bytes: [u8; REQUEST_LEN_BYTES]) -> Result<usize, String> {
    checked_len(u32::from_be_bytes(bytes))
}

/// Parses the status and length that follow a response's version byte.
pub(crate) fn parse_response_rest(
    bytes: [u8; RESPONSE_REST_BYTES],
) -> Result<(Status, usize), String> {
    let status = Status::from_byte(bytes[0])
        .ok_or_else(|| format!("unknown response status {}", bytes[0]))?;
    let len = checked_len(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))?;
    Ok((status, len))
}

/// The text a node answers a caller speaking another protocol version with.
pub(crate) fn version_mismatch_text(theirs: u8, ours: u8) -> String {
    format!("peer speaks cluster protocol v{theirs}, this node v{ours}")
}

fn checked_len(len: u32) -> Result<usize, String> {
    let len = len as usize;
    if len > MAX_FRAME_BYTES {
        return Err(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte limit"
        ));
    }
    Ok(len)
}

fn frame_len(len: usize) -> u32 {
    debug_assert!(len <= MAX_FRAME_BYTES, "callers check the frame limit");
    u32::try_from(len.min(MAX_FRAME_BYTES)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_is_version_then_big_endian_length() {
        assert_eq!(request_header(1, 0x0102_0304), [1, 1, 2, 3, 4]);
        assert_eq!(parse_request_len([1, 2, 3, 4]), Ok(0x0102_0304));
    }

    #[test]
    fn response_header_round_trips() {
        let h = response_header(1, Status::Error, 300);
        assert_eq!(h, [1, 1, 0, 0, 1, 44]);
        assert_eq!(
            parse_response_rest([h[1], h[2], h[3], h[4], h[5]]),
            Ok((Status::Error, 300))
        );
    }

    #[test]
    fn oversized_and_unknown_frames_are_rejected() {
        let too_big = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        assert!(parse_request_len(too_big).is_err());
        assert!(parse_response_rest([7, 0, 0, 0, 0]).is_err());
        assert_eq!(
            parse_request_len((MAX_FRAME_BYTES as u32).to_be_bytes()),
            Ok(MAX_FRAME_BYTES)
        );
    }

    #[test]
    fn mismatch_text_names_both_versions() {
        assert_eq!(
            version_mismatch_text(2, 1),
            "peer speaks cluster protocol v2, this node v1"
        );
    }
}
