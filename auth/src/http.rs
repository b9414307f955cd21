//! Issue 19, OIDC: the little HTTP/1.1 client the OIDC code needs — a GET of a discovery
//! document or a key set, a form POST to a token endpoint — blocking, one request per
//! connection, over TLS (rustls, the system's CA bundle or a given one) or, for an issuer on
//! loopback only, plain TCP.
//!
//! Owns URL parsing (`http(s)://host[:port]/path`), the https-unless-loopback rule, the
//! timeout of a whole exchange, and the bound on what a server may send. Does not own the
//! response's syntax (`arsync_core::proto::http1`) nor what the documents mean (`oidc`,
//! `device`).

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arsync_core::proto::http1;

use crate::AuthError;

/// The longest response head (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// The largest response body (discovery documents and key sets are a few kilobytes).
pub const MAX_BODY: usize = 1024 * 1024;
/// How long one exchange (connect, send, receive) may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Where the system's CA bundle usually is (Debian/Ubuntu, then Fedora/RHEL).
const SYSTEM_CAS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// An `http://` or `https://` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Whether it is `https`.
    pub tls: bool,
    /// The host (without brackets for IPv6).
    pub host: String,
    /// The port (default 443 or 80).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

fn bad_url(url: &str, why: &str) -> AuthError {
    AuthError::Fetch {
        url: url.to_owned(),
        reason: why.to_owned(),
    }
}

impl Url {
    /// Parse `text`; refuses `http://` unless the host is on loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`): tokens and keys are never fetched in clear over a network.
    pub fn parse(text: &str) -> Result<Url, AuthError> {
        let (tls, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad_url(text, "not an http(s) URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') || authority.is_empty() {
            return Err(bad_url(text, "no host, or credentials in the URL"));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| bad_url(text, "unclosed IPv6 address"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad_url(text, "bad port"))?,
            None if tls => 443,
            None => 80,
        };
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(bad_url(text, "spaces or control characters in the path"));
        }
        let url = Url {
            tls,
            host: host.to_owned(),
            port,
            path,
        };
        if !tls && !url.is_loopback() {
            return Err(bad_url(
                text,
                "plain http is allowed only on loopback (localhost, 127.0.0.1, ::1); use https",
            ));
        }
        Ok(url)
    }

    /// Whether the host is this machine.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            _ => format!("{host}:{}", self.port),
        }
    }
}

/// A response: its status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (chunked transfer decoded).
    pub body: Vec<u8>,
}

/// Makes requests: the TLS trust for `https` URLs.
#[derive(Debug, Clone)]
pub struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
}

impl Client {
    /// A client trusting the CAs in `ca_file` (PEM), or the system's bundle when `None`
    /// (read the first time an `https` URL is fetched).
    pub fn new(ca_file: Option<&Path>) -> Client {
        Client {
            tls: None,
            ca_file: ca_file.map(Path::to_path_buf),
            timeout: TIMEOUT,
        }
    }

    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, AuthError> {
        if let Some(c) = &self.tls {
            return Ok(c.clone());
        }
        let path = match &self.ca_file {
            Some(p) => p.clone(),
            None => SYSTEM_CAS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .ok_or_else(|| AuthError::BadFile {
                    path: PathBuf::from(SYSTEM_CAS[0]),
                    message: "no system CA bundle to verify https servers with".into(),
                })?,
        };
        let mut roots = rustls::RootCertStore::empty();
        // A bundle may hold a certificate webpki cannot use; the others still count.
        let (added, _) = roots.add_parsable_certificates(crate::tls::load_ca_certs(&path)?);
        if added == 0 {
            return Err(AuthError::BadFile {
                path,
                message: "no usable CA certificate in it".into(),
            });
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AuthError::Tls {
            context: "choosing TLS versions for https",
            source: e.into(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let c = Arc::new(config);
        self.tls = Some(c.clone());
        Ok(c)
    }

    /// GET `url`.
    pub fn get(&mut self, url: &str) -> Result<Response, AuthError> {
        self.exchange(url, "GET", None)
    }

    /// POST `form` (already `application/x-www-form-urlencoded`) to `url`.
    pub fn post_form(&mut self, url: &str, form: &str) -> Result<Response, AuthError> {
        self.exchange(url, "POST", Some(form))
    }

    fn exchange(
        &mut self,
        text: &str,
        method: &str,
        form: Option<&str>,
    ) -> Result<Response, AuthError> {
        let url = Url::parse(text)?;
        let fail = |reason: String| AuthError::Fetch {
            url: text.to_owned(),
            reason,
        };
        let deadline = Instant::now() + self.timeout;
        let addrs: Vec<_> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| fail(format!("cannot resolve {}: {e}", url.host)))?
            .collect();
        let mut tcp = None;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            fail(match last {
                Some(e) => format!("cannot connect: {e}"),
                None => "the host has no address".into(),
            })
        })?;
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: arsync\r\nAccept: application/json\r\nConnection: close\r\n",
            url.path,
            url.host_header()
        );
        if let Some(f) = form {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                f.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(form.unwrap_or(""));
        let mut stream: Box<dyn ReadWrite> = if url.tls {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| fail(format!("bad server name: {e}")))?;
            let conn = rustls::ClientConnection::new(self.tls_config()?, name)
                .map_err(|e| fail(format!("TLS: {e}")))?;
            Box::new(Deadlined {
                inner: rustls::StreamOwned::new(
                    conn,
                    tcp.try_clone().map_err(|e| fail(e.to_string()))?,
                ),
                tcp,
                deadline,
            })
        } else {
            Box::new(Deadlined {
                inner: tcp.try_clone().map_err(|e| fail(e.to_string()))?,
                tcp,
                deadline,
            })
        };
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| fail(format!("sending the request: {e}")))?;
        read_response(&mut stream).map_err(fail)
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A stream whose every read and write is bounded by what is left until `deadline`.
struct Deadlined<S> {
    inner: S,
    tcp: TcpStream,
    deadline: Instant,
}

impl<S> Deadlined<S> {
    fn arm(&self) -> std::io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no complete answer in time",
            ));
        }
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.set_write_timeout(Some(left))
    }
}

impl<S: Read> Read for Deadlined<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Deadlined<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.arm()?;
        self.inner.flush()
    }
}

/// Reads a whole response up to the end of the connection (the request said
/// `Connection: close`), at most a head of [`MAX_HEAD`] and a body of [`MAX_BODY`] with its
/// chunk framing, then parses it.
fn read_response(r: &mut dyn Read) -> Result<Response, String> {
    let limit = MAX_HEAD + MAX_BODY + MAX_BODY / 8;
    let mut buf = Vec::new();
    let mut block = [0u8; 16 * 1024];
    loop {
        match r.read(&mut block) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&block[..n]);
                if buf.len() > limit {
                    return Err(format!("a response over {limit} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    let a = http1::parse_answer(&buf, MAX_BODY).map_err(|e| e.to_string())?;
    Ok(Response {
        status: a.status,
        body: a.body,
    })
}

/// At most `max` characters of what a peer sent, control characters shown as `?` (so a hostile
/// server cannot drive the user's terminal through an error message or a prompt).
pub(crate) fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// [`printable`], 80 characters.
pub(crate) fn clip(s: &str) -> String {
    printable(s, 80)
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_and_the_loopback_rule() {
        let u = Url::parse("https://id.example.com/realms/x").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/realms/x"));
        let u = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((u.port, u.path.as_str()), (9000, "/"));
        let u = Url::parse("http://[::1]:80/a?b=c").unwrap();
        assert_eq!((u.host.as_str(), u.host_header()), ("::1", "[::1]".into()));
        assert!(Url::parse("http://id.example.com/").is_err());
        assert!(Url::parse("ftp://localhost/").is_err());
        assert!(Url::parse("https://user@host/").is_err());
        assert_eq!(form(&[("a b", "x/y=z")]), "a%20b=x%2Fy%3Dz");
    }

    /// Serves each of `answers` to one connection, in turn.
    fn serve(answers: Vec<Vec<u8>>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/doc", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for a in answers {
                let (mut s, _) = l.accept().unwrap();
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let _ = s.write_all(&a);
            }
        });
        url
    }

    #[test]
    fn lengths_chunks_and_bounds() {
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 404 No\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n"
                .to_vec(),
            big.into_bytes(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n".to_vec(),
            b"garbage\r\n\r\n".to_vec(),
        ]);
        let mut c = Client::new(None);
        let r = c.get(&url).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = c.post_form(&url, "a=b").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        for _ in 0..3 {
            assert!(matches!(c.get(&url), Err(AuthError::Fetch { .. })));
        }
    }

    #[test]
    fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let hold = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(800));
            drop(s);
        });
        let mut c = Client::new(None);
        c.timeout = Duration::from_millis(200);
        let t = Instant::now();
        assert!(c.get(&url).is_err());
        assert!(t.elapsed() < Duration::from_millis(700));
        hold.join().unwrap();
    }
}
