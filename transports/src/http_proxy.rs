//! Issue 17, h2: reaching a server through an HTTP forward proxy with `CONNECT` (RFC 9110
//! §9.3.6), as corporate networks that let only HTTPS out require: which proxy
//! (`--proxy URL`, else `HTTPS_PROXY`/`https_proxy`, less `NO_PROXY`/`no_proxy`), the
//! request's bytes, and the proxy's reply read and judged — pure, then one thin driver
//! ([`connect_via`]) whose every wait is bounded.
//!
//! Not here: what runs inside the tunnel (TLS and HTTP/2, `crate::http2`).

use std::time::Duration;

use arsync_core::transport::TransportError;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a proxy's reply head (status line and headers) may hold.
pub const MAX_REPLY_HEAD: usize = 16 << 10;

/// An HTTP proxy to tunnel through: where it listens and the credentials it wants.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Its host name or address (brackets removed for IPv6).
    pub host: String,
    /// Its port (default 3128, as curl's).
    pub port: u16,
    /// `user:password` from the URL, sent as `Proxy-Authorization: Basic`.
    credentials: Option<String>,
}

impl std::fmt::Debug for Proxy {
    /// Never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

/// Why a proxy setting or a proxy's answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The URL is not `http://[user:password@]host[:port][/]`.
    #[error("proxy URL {url:?}: {why}")]
    BadUrl {
        /// The URL given (credentials removed).
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The proxy answered something other than HTTP.
    #[error("the proxy's answer is not HTTP ({0})")]
    NotHttp(&'static str),
    /// The proxy's reply head ran past [`MAX_REPLY_HEAD`].
    #[error("the proxy's reply is over {MAX_REPLY_HEAD} bytes")]
    TooLong,
    /// The proxy refused the tunnel.
    #[error("the proxy refused the tunnel: {status} {reason}{}", hint(*.status))]
    Refused {
        /// Its status code (407, 403, 502, …).
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
}

/// What a refusal's status means for the user.
fn hint(status: u16) -> &'static str {
    match status {
        407 => " (the proxy wants credentials: --proxy http://USER:PASSWORD@HOST:PORT)",
        403 => " (the proxy does not allow CONNECT to this host and port)",
        500..=599 => " (the proxy could not reach the server)",
        _ => "",
    }
}

impl Proxy {
    /// Parse `http://[user:password@]host[:port][/]` (a bare `host:port` is taken as http).
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let bad = |why| ProxyError::BadUrl {
            url: url.rsplit('@').next().unwrap_or_default().to_owned(),
            why,
        };
        let rest = match url.split_once("://") {
            Some(("http" | "HTTP", rest)) => rest,
            Some(_) => return Err(bad("only http:// proxies are supported")),
            None => url,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err(bad("a proxy URL has no path"));
        }
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((c, h)) => (
                Some(percent_decode(c).ok_or_else(|| bad("bad %-escape in the credentials"))?),
                h,
            ),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 3128,
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        };
        Ok(Proxy {
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// [`Proxy::choose`] with this process's environment.
    pub fn from_process(
        explicit: Option<&str>,
        target_host: &str,
    ) -> Result<Option<Proxy>, ProxyError> {
        Proxy::choose(explicit, target_host, |k| std::env::var(k).ok())
    }

    /// The proxy for `target_host`: `explicit` (`--proxy`) if given, else `HTTPS_PROXY` or
    /// `https_proxy` from `env` unless `NO_PROXY`/`no_proxy` names the host. An empty
    /// setting means none.
    pub fn choose(
        explicit: Option<&str>,
        target_host: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, ProxyError> {
        if let Some(url) = explicit {
            return Proxy::parse(url).map(Some);
        }
        let pick = |a: &str, b: &str| env(a).or_else(|| env(b)).filter(|v| !v.trim().is_empty());
        let Some(url) = pick("HTTPS_PROXY", "https_proxy") else {
            return Ok(None);
        };
        if let Some(no) = pick("NO_PROXY", "no_proxy") {
            if bypasses(&no, target_host) {
                return Ok(None);
            }
        }
        Proxy::parse(url.trim()).map(Some)
    }

    /// `host:port` (no credentials), for messages.
    pub fn describe(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    /// The `CONNECT` request for `host:port`.
    pub fn request(&self, host: &str, port: u16) -> Vec<u8> {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut r = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(c) = &self.credentials {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c);
            r.push_str(&format!("Proxy-Authorization: Basic {b64}\r\n"));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }
}

/// `s` with its `%XX` escapes decoded (as URLs write `@`, `:` or `%` in credentials); `None`
/// for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a `NO_PROXY` list names `host` (`*`, the host, or a domain it is under).
fn bypasses(list: &str, host: &str) -> bool {
    list.split(',').map(str::trim).any(|entry| {
        let entry = entry.trim_start_matches('.');
        entry == "*"
            || (!entry.is_empty()
                && (host.eq_ignore_ascii_case(entry)
                    || host
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{}", entry.to_ascii_lowercase()))))
    })
}

/// What the bytes read so far say of the proxy's reply.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyHead {
    /// The head is not complete yet.
    Incomplete,
    /// The tunnel is open; the head took this many bytes.
    Open(usize),
}

/// Judge the reply bytes `buf` read so far: a complete head with a 2xx status opens the
/// tunnel; any other status is [`ProxyError::Refused`].
pub fn parse_reply(buf: &[u8]) -> Result<ReplyHead, ProxyError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_REPLY_HEAD {
            return Err(ProxyError::TooLong);
        }
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Err(ProxyError::NotHttp("no HTTP status line"));
        }
        return Ok(ReplyHead::Incomplete);
    };
    if end + 4 > MAX_REPLY_HEAD {
        return Err(ProxyError::TooLong);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError::NotHttp("not text"))?;
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.splitn(3, ' ');
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(ProxyError::NotHttp("no status"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ProxyError::NotHttp("not HTTP/1.x"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ProxyError::NotHttp("the status is not a number"))?;
    if (200..300).contains(&status) {
        Ok(ReplyHead::Open(end + 4))
    } else {
        Err(ProxyError::Refused {
            status,
            reason: words.next().unwrap_or_default().trim().to_owned(),
        })
    }
}

/// Open a TCP connection to `proxy` and a tunnel through it to `host:port`, each step
/// bounded by `limit`.
pub async fn connect_via(
    proxy: &Proxy,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<TcpStream, TransportError> {
    let via = proxy.describe();
    let slow = |what: &str| TransportError::Connect {
        endpoint: format!("{host}:{port}"),
        reason: format!("the proxy {via}: {what} within {limit:?}"),
    };
    let mut tcp =
        match tokio::time::timeout(limit, TcpStream::connect((proxy.host.as_str(), proxy.port)))
            .await
        {
            Err(_) => return Err(slow("no TCP connection")),
            Ok(r) => r.map_err(|e| {
                TransportError::unreachable(&via, "connecting to the HTTPS proxy over TCP", e)
            })?,
        };
    tcp.set_nodelay(true)?;
    let exchange = async {
        tcp.write_all(&proxy.request(host, port)).await?;
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        loop {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the proxy closed the connection before answering CONNECT",
                )
                .into());
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse_reply(&buf) {
                Ok(ReplyHead::Incomplete) => continue,
                // The server speaks only after our TLS hello: nothing may follow the head.
                Ok(ReplyHead::Open(used)) if used == buf.len() => return Ok(()),
                Ok(ReplyHead::Open(_)) => {
                    return Err(ProxyError::NotHttp("data after the reply").into())
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let result: Result<(), Failed> = match tokio::time::timeout(limit, exchange).await {
        Err(_) => return Err(slow("no answer to CONNECT")),
        Ok(r) => r,
    };
    match result {
        Ok(()) => Ok(tcp),
        Err(Failed::Io(e)) => Err(TransportError::unreachable(&via, "the HTTPS proxy", e)),
        Err(Failed::Proxy(e)) => Err(TransportError::Connect {
            endpoint: format!("{host}:{port}"),
            reason: format!("through the proxy {via}: {e}"),
        }),
    }
}

/// How the exchange with the proxy failed.
enum Failed {
    Io(std::io::Error),
    Proxy(ProxyError),
}

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Self {
        Failed::Io(e)
    }
}

impl From<ProxyError> for Failed {
    fn from(e: ProxyError) -> Self {
        Failed::Proxy(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://u:p%40ss@proxy.example:8080/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 8080));
        assert_eq!(p.credentials.as_deref(), Some("u:p@ss"));
        assert!(Proxy::parse("http://u:p%4@x:1").is_err());
        assert_eq!(format!("{p:?}"), "http://proxy.example:8080");
        let p = Proxy::parse("[::1]:3129").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 3129));
        assert_eq!(Proxy::parse("http://proxy").unwrap().port, 3128);
        for bad in [
            "socks5://x:1",
            "http://:1",
            "http://x:port",
            "http://x:1/path",
        ] {
            assert!(Proxy::parse(bad).is_err(), "{bad}");
        }
        // Credentials never appear in the error.
        let e = Proxy::parse("ftp://user:secret@x").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn the_environment_and_no_proxy() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let set = env(&[
            ("https_proxy", "http://p:1"),
            ("NO_PROXY", "local, .corp.example"),
        ]);
        assert_eq!(
            Proxy::choose(None, "far.example", set)
                .unwrap()
                .unwrap()
                .port,
            1
        );
        assert!(Proxy::choose(None, "local", set).unwrap().is_none());
        assert!(Proxy::choose(None, "a.corp.example", set)
            .unwrap()
            .is_none());
        // `--proxy` beats the environment, even NO_PROXY.
        let p = Proxy::choose(Some("http://q:2"), "local", set)
            .unwrap()
            .unwrap();
        assert_eq!(p.port, 2);
        assert!(Proxy::choose(None, "x", env(&[("HTTPS_PROXY", " ")]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_connect_request() {
        let p = Proxy::parse("http://user:pw@p:1").unwrap();
        let r = String::from_utf8(p.request("::1", 8730)).unwrap();
        assert!(
            r.starts_with("CONNECT [::1]:8730 HTTP/1.1\r\nHost: [::1]:8730\r\n"),
            "{r}"
        );
        assert!(
            r.contains("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"HTTP/1.1 200 Conn"), Ok(ReplyHead::Incomplete));
        let ok = b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n";
        assert_eq!(parse_reply(ok), Ok(ReplyHead::Open(ok.len())));
        let e = parse_reply(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").unwrap_err();
        assert!(
            e.to_string().contains("407 Proxy Authentication Required"),
            "{e}"
        );
        assert!(e.to_string().contains("wants credentials"), "{e}");
        let e = parse_reply(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap_err();
        assert!(matches!(e, ProxyError::Refused { status: 403, .. }));
        assert_eq!(
            parse_reply(b"SSH-2.0-OpenSSH\r\n"),
            Err(ProxyError::NotHttp("no HTTP status line"))
        );
        assert_eq!(
            parse_reply(&vec![b'H'; MAX_REPLY_HEAD + 1][..]),
            Err(ProxyError::TooLong)
        );
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        long.resize(MAX_REPLY_HEAD + 10, b'a');
        assert_eq!(parse_reply(&long), Err(ProxyError::TooLong));
    }
}
