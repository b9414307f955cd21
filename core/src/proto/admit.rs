//! Admission: the first bytes on the first stream of a connection to an arsync that listens
//! (`arsync serve`, or a server started by `--bootstrap=quic`), before the merkle session
//! begins on the same stream.
//!
//! The client says who it is (a bearer token), what it wants (`module/path`) and how the
//! server should run (the argument words a remote shell would have passed after `--server`);
//! the server answers with one [`AdmitReply`]: admitted, or refused with an rsync exit code and
//! a message for the user. Layout in `docs/QUIC_AND_SERVE.md`, "Admission".
//!
//! Owns the byte layout and its bounds only. Checking the token, resolving the module and
//! parsing the arguments is the server's business; TLS already authenticated the server.

use super::wire::{bound, DecodeError, WireReader, WireWriter};

/// The request's first four bytes.
pub const REQUEST_MAGIC: [u8; 4] = *b"ASQ1";
/// The reply's first four bytes.
pub const REPLY_MAGIC: [u8; 4] = *b"ASR1";
/// The largest request body.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The largest reply body.
pub const MAX_REPLY: usize = 4 * 1024;
/// The most argument words a request carries.
pub const MAX_ARGS: usize = 256;
/// The longest token (issue 19: an OIDC access token is a JWT of a few kilobytes).
pub const MAX_TOKEN: usize = 8 * 1024;
/// The longest target (`module/path`).
pub const MAX_TARGET: usize = 4096;

/// What a client asks of a listening arsync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmitRequest {
    /// The bearer token, empty when the client has none (mutual TLS, or an open module).
    pub token: String,
    /// `module/path` for `arsync serve`; empty for a bootstrap server (its paths are fixed).
    pub target: String,
    /// The words after `--server` (`["--sender", "-logDtpr", "."]`); the target is appended by
    /// the server after resolving it.
    pub args: Vec<String>,
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitReply {
    /// Go ahead: the session follows on this stream.
    Admitted,
    /// Refused, with the rsync exit code the client should end with and why.
    Refused {
        /// rsync exit code (5 for authentication, 1 or 3 for bad paths or options, …).
        code: u8,
        /// For the user.
        message: String,
    },
}

/// Whether a decode needs more bytes or produced a value and how many bytes it consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// Not enough bytes yet: at least this many in all are needed.
    NeedAtLeast(usize),
    /// The value, and the bytes it took.
    Done(T, usize),
}

fn header_len(buf: &[u8], magic: &[u8; 4], max: usize) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 8 {
        // Refuse a wrong magic as soon as it shows, not after a length that never comes.
        let n = buf.len().min(4);
        if buf[..n] != magic[..n] {
            return Err(DecodeError::invalid(
                "admission magic",
                "not an arsync peer",
            ));
        }
        return Ok(None);
    }
    if buf[..4] != magic[..] {
        return Err(DecodeError::invalid(
            "admission magic",
            "not an arsync peer",
        ));
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    bound(u64::from(len), max as u64, "admission length")?;
    Ok(Some(len as usize))
}

fn utf8(b: &[u8], what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
}

impl AdmitRequest {
    /// Append the encoded request to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        let mut w = WireWriter::new(&mut body);
        w.bytes16(self.token.as_bytes());
        w.bytes16(self.target.as_bytes());
        w.u16(self.args.len().min(MAX_ARGS) as u16);
        for a in self.args.iter().take(MAX_ARGS) {
            w.bytes16(a.as_bytes());
        }
        out.extend_from_slice(&REQUEST_MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }

    /// Decode a request from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<AdmitRequest>, DecodeError> {
        let Some(len) = header_len(buf, &REQUEST_MAGIC, MAX_REQUEST)? else {
            return Ok(Decoded::NeedAtLeast(8));
        };
        if buf.len() < 8 + len {
            return Ok(Decoded::NeedAtLeast(8 + len));
        }
        let mut r = WireReader::new(&buf[8..8 + len]);
        let token = utf8(r.bytes16(MAX_TOKEN, "token")?, "token")?;
        let target = utf8(r.bytes16(MAX_TARGET, "target")?, "target")?;
        let n = r.u16("argument count")?;
        bound(u64::from(n), MAX_ARGS as u64, "argument count")?;
        let mut args = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            args.push(utf8(r.bytes16(MAX_TARGET, "argument")?, "argument")?);
        }
        r.finish()?;
        Ok(Decoded::Done(
            AdmitRequest {
                token,
                target,
                args,
            },
            8 + len,
        ))
    }
}

impl AdmitReply {
    /// Append the encoded reply to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        let mut w = WireWriter::new(&mut body);
        match self {
            AdmitReply::Admitted => {
                w.u8(0);
                w.bytes16(b"");
            }
            AdmitReply::Refused { code, message } => {
                w.u8((*code).max(1));
                let m = message.as_bytes();
                // Cut at a character boundary so the reply stays UTF-8 and within bounds.
                let mut end = m.len().min(MAX_REPLY - 3);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                w.bytes16(&m[..end]);
            }
        }
        out.extend_from_slice(&REPLY_MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }

    /// Decode a reply from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<AdmitReply>, DecodeError> {
        let Some(len) = header_len(buf, &REPLY_MAGIC, MAX_REPLY)? else {
            return Ok(Decoded::NeedAtLeast(8));
        };
        if buf.len() < 8 + len {
            return Ok(Decoded::NeedAtLeast(8 + len));
        }
        let mut r = WireReader::new(&buf[8..8 + len]);
        let code = r.u8("admission status")?;
        let message = utf8(r.bytes16(MAX_REPLY, "message")?, "message")?;
        r.finish()?;
        let reply = if code == 0 {
            AdmitReply::Admitted
        } else {
            AdmitReply::Refused { code, message }
        };
        Ok(Decoded::Done(reply, 8 + len))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_round_trip_and_every_prefix_asks_for_more() {
        let req = AdmitRequest {
            token: "arsync_00ff".into(),
            target: "data/sub dir".into(),
            args: vec!["--sender".into(), "-logDtpr".into(), ".".into()],
        };
        let mut b = Vec::new();
        req.encode(&mut b);
        b.extend_from_slice(b"session bytes");
        for cut in 0..b.len() - 13 {
            assert!(matches!(
                AdmitRequest::decode(&b[..cut]).unwrap(),
                Decoded::NeedAtLeast(n) if n > cut
            ));
        }
        assert_eq!(
            AdmitRequest::decode(&b).unwrap(),
            Decoded::Done(req, b.len() - 13)
        );
    }

    #[test]
    fn reply_round_trip() {
        for reply in [
            AdmitReply::Admitted,
            AdmitReply::Refused {
                code: 5,
                message: "token expired".into(),
            },
        ] {
            let mut b = Vec::new();
            reply.encode(&mut b);
            assert_eq!(
                AdmitReply::decode(&b).unwrap(),
                Decoded::Done(reply, b.len())
            );
        }
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let reply = AdmitReply::Refused {
            code: 1,
            message: "é".repeat(MAX_REPLY),
        };
        let mut b = Vec::new();
        reply.encode(&mut b);
        let Decoded::Done(AdmitReply::Refused { message, .. }, _) = AdmitReply::decode(&b).unwrap()
        else {
            panic!("not refused");
        };
        assert!(message.len() < MAX_REPLY && message.starts_with('é'));
    }

    #[test]
    fn hostile_input_is_refused_not_trusted() {
        // Wrong magic, at once.
        assert!(AdmitRequest::decode(b"SSH-").is_err());
        assert!(AdmitRequest::decode(b"A").is_ok());
        assert!(AdmitRequest::decode(b"X").is_err());
        // Oversize length.
        let mut b = REQUEST_MAGIC.to_vec();
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(AdmitRequest::decode(&b).is_err());
        // Too many arguments.
        let mut body = Vec::new();
        let mut w = WireWriter::new(&mut body);
        w.bytes16(b"");
        w.bytes16(b"");
        w.u16(MAX_ARGS as u16 + 1);
        let mut b = REQUEST_MAGIC.to_vec();
        b.extend_from_slice(&(body.len() as u32).to_be_bytes());
        b.extend_from_slice(&body);
        assert!(AdmitRequest::decode(&b).is_err());
        // A count larger than what follows, and trailing bytes inside the body.
        for body in [
            vec![0, 0, 0, 0, 0, 3, 0, 1, b'x'],
            vec![0, 0, 0, 0, 0, 0, 9],
        ] {
            let mut b = REQUEST_MAGIC.to_vec();
            b.extend_from_slice(&(body.len() as u32).to_be_bytes());
            b.extend_from_slice(&body);
            assert!(AdmitRequest::decode(&b).is_err(), "{body:?}");
        }
        // Not UTF-8.
        let body = vec![0, 1, 0xff, 0, 0, 0, 0];
        let mut b = REQUEST_MAGIC.to_vec();
        b.extend_from_slice(&(body.len() as u32).to_be_bytes());
        b.extend_from_slice(&body);
        assert!(AdmitRequest::decode(&b).is_err());
    }
}
