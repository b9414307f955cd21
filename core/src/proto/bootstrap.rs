//! The SSH bootstrap's text lines: the offer a bootstrap server prints on its stdout
//! (`ARSYNC-BOOTSTRAP 1 quic ADDR PORT SHA256:FINGERPRINT TOKEN`), the `stdio` line a client
//! may answer with on the same channel, and the bounded line reader both ends use. Layout in
//! `docs/QUIC_AND_SERVE.md`, "SSH bootstrap".
//!
//! Owns the bytes and their bounds: [`BootstrapOffer::encode`] and [`BootstrapOffer::parse`]
//! (strict: one space between fields, exactly seven fields, every field checked),
//! [`LineReader`] (a line of at most a given length, fed a byte at a time so that nothing
//! after the line is consumed), [`bootstrap_command`] (the server command with
//! `--bootstrap=quic`) and [`server_addr_from_ssh_connection`]. Not here: reading or writing
//! the SSH channel, binding UDP, certificates and tokens (`arsync_auth`), or deciding what to
//! do with an offer (`crate::negotiate`).

use std::net::IpAddr;

use base64::Engine as _;

use super::wire::DecodeError;

/// The offer line's first field.
pub const TAG: &str = "ARSYNC-BOOTSTRAP";
/// The offer format's version (the second field).
pub const VERSION: &str = "1";
/// The only transport offered so far (the third field).
pub const PROTOCOL_QUIC: &str = "quic";
/// The longest offer line a client reads, without its newline.
pub const MAX_OFFER_LINE: usize = 512;
/// The longest line a bootstrap server reads from its client, without its newline.
pub const MAX_CONTROL_LINE: usize = 64;
/// The longest token an offer may carry (a one-time secret: far less than an admission
/// request allows, which must fit OIDC access tokens).
pub const MAX_TOKEN: usize = 256;
/// What a client writes on the SSH channel to have the session there instead of over QUIC.
pub const STDIO_LINE: &[u8] = b"stdio\n";
/// The word inserted after `--server` to start a bootstrap server.
pub const SERVER_FLAG: &str = "--bootstrap=quic";

/// The fingerprint's prefix: SHA-256 of the certificate (DER), unpadded standard base64.
const FINGERPRINT_PREFIX: &str = "SHA256:";

/// What a bootstrap server offers: where its QUIC endpoint is, which certificate it will show,
/// and the one-time token it expects.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapOffer {
    /// The server's address as it saw the SSH connection arrive (`SSH_CONNECTION`), if it
    /// could tell (`-` on the wire when not).
    pub addr: Option<IpAddr>,
    /// Its UDP port (never 0).
    pub port: u16,
    /// SHA-256 of its certificate (DER).
    pub fingerprint: [u8; 32],
    /// The one-time token: 1 to [`MAX_TOKEN`] visible ASCII characters.
    pub token: String,
}

impl std::fmt::Debug for BootstrapOffer {
    /// Everything but the token, which is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapOffer")
            .field("addr", &self.addr)
            .field("port", &self.port)
            .field("fingerprint", &fingerprint_text(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// `SHA256:` and the unpadded base64 of `digest`, as the offer (and `arsync_auth`) write it.
pub fn fingerprint_text(digest: &[u8; 32]) -> String {
    format!(
        "{FINGERPRINT_PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn invalid(what: &'static str, detail: impl std::fmt::Display) -> DecodeError {
    DecodeError::invalid(what, detail)
}

/// A token's characters: visible ASCII, no space.
fn token_ok(token: &str) -> bool {
    (1..=MAX_TOKEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

impl BootstrapOffer {
    /// The line, newline included. The caller makes the token (visible ASCII, at most
    /// [`MAX_TOKEN`] bytes) and a port other than 0; [`BootstrapOffer::parse`] refuses
    /// anything else.
    pub fn encode(&self) -> String {
        let addr = self.addr.map_or_else(|| "-".to_owned(), |a| a.to_string());
        format!(
            "{TAG} {VERSION} {PROTOCOL_QUIC} {addr} {} {} {}\n",
            self.port,
            fingerprint_text(&self.fingerprint),
            self.token
        )
    }

    /// Parse one line (without its newline): exactly `TAG VERSION quic ADDR PORT FINGERPRINT
    /// TOKEN`, one space between fields. ADDR is an IP address or `-`; PORT decimal digits,
    /// 1 to 65535; FINGERPRINT `SHA256:` and 43 base64 characters (32 bytes, canonical).
    pub fn parse(line: &[u8]) -> Result<BootstrapOffer, DecodeError> {
        if line.len() > MAX_OFFER_LINE {
            return Err(DecodeError::TooLarge {
                what: "bootstrap offer line",
                got: line.len() as u64,
                max: MAX_OFFER_LINE as u64,
            });
        }
        let text =
            std::str::from_utf8(line).map_err(|_| invalid("bootstrap offer", "not UTF-8"))?;
        let fields: Vec<&str> = text.split(' ').collect();
        let [tag, version, protocol, addr, port, fingerprint, token] = fields[..] else {
            return Err(invalid(
                "bootstrap offer",
                format!("{} fields, expected 7", fields.len()),
            ));
        };
        if tag != TAG {
            return Err(invalid("bootstrap tag", format!("{tag:?}")));
        }
        if version != VERSION {
            return Err(invalid("bootstrap version", format!("{version:?}")));
        }
        if protocol != PROTOCOL_QUIC {
            return Err(invalid("bootstrap transport", format!("{protocol:?}")));
        }
        let addr = match addr {
            "-" => None,
            a => Some(
                a.parse::<IpAddr>()
                    .map_err(|_| invalid("bootstrap address", format!("{a:?}")))?,
            ),
        };
        let port = parse_port(port)?;
        let fingerprint = parse_fingerprint(fingerprint)?;
        if !token_ok(token) {
            return Err(invalid(
                "bootstrap token",
                format!("{} bytes, or not visible ASCII", token.len()),
            ));
        }
        Ok(BootstrapOffer {
            addr,
            port,
            fingerprint,
            token: token.to_owned(),
        })
    }
}

fn parse_port(text: &str) -> Result<u16, DecodeError> {
    let bad = || invalid("bootstrap port", format!("{text:?}"));
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(bad()),
    }
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], DecodeError> {
    let bad = || invalid("bootstrap fingerprint", format!("{text:?}"));
    let b64 = text.strip_prefix(FINGERPRINT_PREFIX).ok_or_else(bad)?;
    // 32 bytes are 43 characters unpadded; the decoder refuses stray bits in the last one.
    if b64.len() != 43 {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64)
        .map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// Whether a line a bootstrap server read from its client (without the newline) asks for
/// the session on the SSH channel.
pub fn is_stdio_request(line: &[u8]) -> bool {
    line == &STDIO_LINE[..STDIO_LINE.len() - 1]
}

/// `… --server …` with [`SERVER_FLAG`] inserted after `--server`; unchanged if there is no
/// `--server` word.
pub fn bootstrap_command(command: &[String]) -> Vec<String> {
    let mut v = command.to_vec();
    if let Some(at) = v.iter().position(|w| w == "--server") {
        v.insert(at + 1, SERVER_FLAG.into());
    }
    v
}

/// The server's own address from `SSH_CONNECTION` (`client_ip client_port server_ip
/// server_port`): where the client's SSH connection arrived, so where it can reach us.
pub fn server_addr_from_ssh_connection(value: &str) -> Option<IpAddr> {
    value.split_whitespace().nth(2)?.parse().ok()
}

/// One line of at most `max` bytes, fed a byte at a time (a reader of a stream that goes on
/// after the line takes exactly the line's bytes).
#[derive(Debug, Clone)]
pub struct LineReader {
    line: Vec<u8>,
    max: usize,
}

impl LineReader {
    /// A reader for lines of at most `max` bytes (without the newline).
    pub fn new(max: usize) -> Self {
        LineReader {
            line: Vec::new(),
            max,
        }
    }

    /// Take one byte: the line (without its newline) when `byte` ends it, `None` while it
    /// goes on, an error when it grows past the bound.
    pub fn push(&mut self, byte: u8) -> Result<Option<Vec<u8>>, DecodeError> {
        if byte == b'\n' {
            return Ok(Some(std::mem::take(&mut self.line)));
        }
        if self.line.len() >= self.max {
            return Err(DecodeError::TooLarge {
                what: "bootstrap line",
                got: self.line.len() as u64 + 1,
                max: self.max as u64,
            });
        }
        self.line.push(byte);
        Ok(None)
    }

    /// What was read of an unfinished line, for a message.
    pub fn partial(&self) -> String {
        String::from_utf8_lossy(&self.line).into_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn offer() -> BootstrapOffer {
        BootstrapOffer {
            addr: Some("192.0.2.7".parse().unwrap()),
            port: 40321,
            fingerprint: [7; 32],
            token: format!("arsync_{}", "ab".repeat(32)),
        }
    }

    fn line_of(o: &BootstrapOffer) -> Vec<u8> {
        let mut l = o.encode().into_bytes();
        assert_eq!(l.pop(), Some(b'\n'));
        l
    }

    /// The offer's line with field `i` replaced by `with`.
    fn with_field(i: usize, with: &str) -> Vec<u8> {
        let line = String::from_utf8(line_of(&offer())).unwrap();
        let mut f: Vec<&str> = line.split(' ').collect();
        f[i] = with;
        f.join(" ").into_bytes()
    }

    fn refused(line: &[u8]) -> String {
        match BootstrapOffer::parse(line) {
            Ok(o) => panic!("{:?} parsed as {o:?}", String::from_utf8_lossy(line)),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn round_trip() {
        for addr in [
            None,
            Some("192.0.2.7"),
            Some("2001:db8::1"),
            Some("::ffff:10.0.0.1"),
        ] {
            for port in [1, 8730, 65535] {
                let o = BootstrapOffer {
                    addr: addr.map(|a| a.parse().unwrap()),
                    port,
                    ..offer()
                };
                assert_eq!(BootstrapOffer::parse(&line_of(&o)).unwrap(), o);
            }
        }
        let line = String::from_utf8(line_of(&offer())).unwrap();
        assert!(line.starts_with("ARSYNC-BOOTSTRAP 1 quic 192.0.2.7 40321 SHA256:BwcH"));
    }

    #[test]
    fn the_fingerprint_is_written_as_auth_writes_it() {
        // SHA256: and 43 characters of unpadded standard base64.
        let t = fingerprint_text(&[0xff; 32]);
        assert_eq!(t, format!("SHA256:{}8", "/".repeat(42)));
        assert_eq!(parse_fingerprint(&t).unwrap(), [0xff; 32]);
    }

    #[test]
    fn wrong_tag_version_or_transport_is_refused() {
        assert!(refused(&with_field(0, "ARSYNC-BOOTSTRAP2")).contains("tag"));
        assert!(refused(&with_field(0, "arsync-bootstrap")).contains("tag"));
        assert!(refused(&with_field(1, "2")).contains("version"));
        assert!(refused(&with_field(1, "01")).contains("version"));
        assert!(refused(&with_field(2, "tcp")).contains("transport"));
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "host.example",
            "300.1.1.1",
            "1.2.3",
            "",
            "fe80::1%eth0",
            "--",
        ] {
            assert!(refused(&with_field(3, bad)).contains("address"), "{bad}");
        }
        assert_eq!(
            BootstrapOffer::parse(&with_field(3, "-")).unwrap().addr,
            None
        );
    }

    #[test]
    fn bad_ports_are_refused() {
        for bad in [
            "0", "00000", "65536", "99999", "123456", "+80", "-1", "8o", "", "0x50",
        ] {
            assert!(refused(&with_field(4, bad)).contains("port"), "{bad}");
        }
        assert_eq!(
            BootstrapOffer::parse(&with_field(4, "080")).unwrap().port,
            80
        );
    }

    #[test]
    fn bad_fingerprints_are_refused() {
        let good = fingerprint_text(&[7; 32]);
        let b64 = &good["SHA256:".len()..];
        for bad in [
            b64.to_owned(),                    // no prefix
            format!("SHA1:{b64}"),             // another hash
            format!("SHA256:{}", &b64[..42]),  // short
            format!("SHA256:{b64}A"),          // long
            format!("SHA256:{b64}="),          // padded
            format!("SHA256:{}*", &b64[..42]), // not base64
            format!("SHA256:{}9", &b64[..42]), // stray bits in the last character
            "07".repeat(32),                   // hex is not what the offer carries
        ] {
            assert!(
                refused(&with_field(5, &bad)).contains("fingerprint"),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_tokens_are_refused() {
        let long = "t".repeat(MAX_TOKEN + 1);
        for bad in ["", "a\tb", "ä", long.as_str(), "a\u{7f}"] {
            assert!(refused(&with_field(6, bad)).contains("token"), "{bad:?}");
        }
        let longest = "t".repeat(MAX_TOKEN);
        assert_eq!(
            BootstrapOffer::parse(&with_field(6, &longest))
                .unwrap()
                .token,
            longest
        );
    }

    #[test]
    fn extra_missing_or_doubled_fields_are_refused() {
        let line = line_of(&offer());
        let mut extra = line.clone();
        extra.extend_from_slice(b" more");
        assert!(refused(&extra).contains("8 fields"));
        let mut trailing = line.clone();
        trailing.push(b' ');
        assert!(refused(&trailing).contains("8 fields"));
        let mut cr = line.clone();
        cr.push(b'\r');
        assert!(refused(&cr).contains("token"));
        let doubled = String::from_utf8(line.clone())
            .unwrap()
            .replacen(' ', "  ", 1);
        assert!(refused(doubled.as_bytes()).contains("8 fields"));
        let short: Vec<&[u8]> = line.split(|&b| b == b' ').take(6).collect();
        assert!(refused(&short.join(&b' ')).contains("6 fields"));
        assert!(refused(b"").contains("1 fields"));
        assert!(refused(&[0xff, b' ', 0xfe]).contains("UTF-8"));
    }

    #[test]
    fn oversized_lines_are_refused() {
        let huge = vec![b'A'; MAX_OFFER_LINE + 1];
        assert!(matches!(
            BootstrapOffer::parse(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut reader = LineReader::new(MAX_OFFER_LINE);
        for _ in 0..MAX_OFFER_LINE {
            assert_eq!(reader.push(b'x').unwrap(), None);
        }
        assert!(reader.push(b'x').is_err());
    }

    #[test]
    fn the_line_reader_stops_at_the_newline() {
        let mut reader = LineReader::new(MAX_OFFER_LINE);
        let bytes = offer().encode().into_bytes();
        let (last, body) = bytes.split_last().unwrap();
        for &b in body {
            assert_eq!(reader.push(b).unwrap(), None);
        }
        assert!(reader.partial().starts_with("ARSYNC-BOOTSTRAP 1"));
        let line = reader.push(*last).unwrap().unwrap();
        assert_eq!(BootstrapOffer::parse(&line).unwrap(), offer());
        // Ready for another line.
        assert_eq!(reader.push(b'\n').unwrap(), Some(Vec::new()));
    }

    #[test]
    fn the_stdio_request() {
        let mut reader = LineReader::new(MAX_CONTROL_LINE);
        let mut got = None;
        for &b in STDIO_LINE {
            got = reader.push(b).unwrap();
        }
        assert!(is_stdio_request(&got.unwrap()));
        assert!(!is_stdio_request(b"stdio "));
        assert!(!is_stdio_request(b"quic"));
    }

    #[test]
    fn the_server_command_and_its_address() {
        let cmd: Vec<String> = ["arsync", "--server", "-r", ".", "/d"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            bootstrap_command(&cmd),
            ["arsync", "--server", "--bootstrap=quic", "-r", ".", "/d"]
        );
        assert_eq!(bootstrap_command(&cmd[..1]), ["arsync"]);
        assert_eq!(
            server_addr_from_ssh_connection("192.0.2.1 50000 192.0.2.7 22"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            server_addr_from_ssh_connection("::1 50000 ::1 22"),
            Some("::1".parse().unwrap())
        );
        assert_eq!(server_addr_from_ssh_connection("1 2"), None);
        assert_eq!(server_addr_from_ssh_connection("a b host c"), None);
    }

    /// The fuzz target's property (`fuzz/fuzz_targets/bootstrap_offer.rs`) over mutations of
    /// a good line: no panic; what parses encodes to a line that parses to the same offer.
    #[test]
    fn mutated_lines_parse_or_are_refused_and_round_trip() {
        let good = offer().encode().into_bytes();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b" -.:0123456789abcdefABCDEF+/=SHA256\n\r\t\xff";
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut line = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (line.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 4 {
                    0 if at < line.len() => line[at] = byte,
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    2 => line.insert(at, byte),
                    _ => line.truncate(at),
                }
            }
            if let Ok(o) = BootstrapOffer::parse(&line) {
                parsed += 1;
                let again = o.encode();
                let again = &again.as_bytes()[..again.len() - 1];
                assert_eq!(BootstrapOffer::parse(again).unwrap(), o);
            }
            let mut reader = LineReader::new(MAX_OFFER_LINE);
            for &b in &line {
                if let Ok(Some(l)) = reader.push(b) {
                    assert!(l.len() <= MAX_OFFER_LINE && !l.contains(&b'\n'));
                }
            }
        }
        assert!(
            parsed > 0,
            "some mutations stay valid (a token or port digit changed)"
        );
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let shown = format!("{:?}", offer());
        assert!(!shown.contains("arsync_"), "{shown}");
        assert!(shown.contains("40321"));
    }
}
