//! A whole HTTP/1.x response, parsed: the status code and the body — by `Content-Length`, by
//! chunks (`Transfer-Encoding: chunked`), or up to the end — of at most a given size.
//!
//! Owns the response's syntax and its bounds. Used by the Tailscale LocalAPI reader
//! (`negotiate::overlay::tailscale`) and by arsync-auth's OIDC client, which both read an
//! answer to its end (`Connection: close`) before parsing it. Not here: sockets, requests,
//! what a status means.

/// A response: its status code and its body (chunks joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code (100 to 599).
    pub status: u16,
    /// The status line, for messages (at most 80 characters).
    pub status_line: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Why bytes are not a complete HTTP/1.x response within the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// Not an HTTP/1.x response, or one cut short.
    #[error("{0}")]
    Malformed(String),
    /// A body over the bound.
    #[error("a body over {0} bytes")]
    TooLarge(usize),
}

fn malformed(what: &str) -> AnswerError {
    AnswerError::Malformed(what.to_owned())
}

/// Parse `answer`, a whole response; a body over `max` bytes is an error.
pub fn parse_answer(answer: &[u8], max: usize) -> Result<Answer, AnswerError> {
    let head_end =
        find(answer, b"\r\n\r\n").ok_or_else(|| malformed("without a complete header"))?;
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line: String = lines.next().unwrap_or("").chars().take(80).collect();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c));
    let (true, Some(status)) = (status_line.starts_with("HTTP/1."), status) else {
        return Err(AnswerError::Malformed(format!(
            "not an HTTP status line: {status_line:?}"
        )));
    };
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| malformed("a bad Content-Length"))?,
            );
        }
    }
    let body = &answer[head_end + 4..];
    let body = if chunked {
        dechunk(body, max)?
    } else {
        let body = match length {
            Some(n) if n > max => return Err(AnswerError::TooLarge(max)),
            Some(n) => body
                .get(..n)
                .ok_or_else(|| malformed("a body shorter than its Content-Length"))?,
            None => body,
        };
        if body.len() > max {
            return Err(AnswerError::TooLarge(max));
        }
        body.to_vec()
    };
    Ok(Answer {
        status,
        status_line,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A chunked body, joined; at most `max` bytes.
fn dechunk(mut body: &[u8], max: usize) -> Result<Vec<u8>, AnswerError> {
    let bad = || malformed("a bad chunked body");
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if out.len().saturating_add(size) > max {
            return Err(AnswerError::TooLarge(max));
        }
        let chunk = body.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or_else(bad)?;
    }
}
