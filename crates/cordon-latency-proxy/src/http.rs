//! Just enough HTTP/1.1 to tell where each message ends on a keep-alive
//! connection, so a delay (or a hang, or a throttling answer) can be applied
//! per request rather than per connection.
//!
//! Bodies are carried as the raw bytes that were on the wire (chunk framing
//! and trailers included), so what reaches the other side is exactly what
//! was sent.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request or response head accepted; AWS heads are a few KiB.
pub const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;
/// Most headers in one head.
const MAX_HEADERS: usize = 128;
/// Read size.
const READ_CHUNK: usize = 64 * 1024;

/// Why a message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a message.
    #[error("the peer closed the connection in the middle of a message")]
    Truncated,
    /// The bytes are not HTTP/1.x the proxy understands.
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
}

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (a response without length or chunking).
    UntilClose,
}

/// One side of a connection with a read buffer that survives between
/// messages (bytes of the next message read along with this one stay here).
#[derive(Debug)]
pub struct Wire<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> Result<usize, HttpError> {
        let mut chunk = vec![0u8; READ_CHUNK];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next message head (start line and headers, blank line included),
    /// or `None` when the peer closed the connection between messages.
    pub async fn read_head(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        let mut searched: usize = 0;
        loop {
            if let Some(pos) = find(&self.buf[searched.saturating_sub(3)..], b"\r\n\r\n") {
                let end = searched.saturating_sub(3) + pos + 4;
                return Ok(Some(self.buf.drain(..end).collect()));
            }
            searched = self.buf.len();
            if searched > MAX_HEAD {
                return Err(HttpError::Malformed(format!(
                    "head longer than {MAX_HEAD} bytes"
                )));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(HttpError::Truncated)
                };
            }
        }
    }

    async fn read_line(&mut self, out: &mut Vec<u8>) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(pos) = find(&self.buf, b"\n") {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                out.extend_from_slice(&line);
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(HttpError::Malformed("chunk line too long".to_string()));
            }
            if self.fill().await? == 0 {
                return Err(HttpError::Truncated);
            }
        }
    }

    async fn read_exact_into(&mut self, mut n: u64, out: &mut Vec<u8>) -> Result<(), HttpError> {
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(HttpError::Truncated);
            }
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
            out.extend(self.buf.drain(..take));
            n -= take as u64;
        }
        Ok(())
    }

    /// The body that follows a head, as raw wire bytes.
    pub async fn read_body(&mut self, framing: Framing) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        match framing {
            Framing::Empty => {}
            Framing::Length(n) => self.read_exact_into(n, &mut out).await?,
            Framing::Chunked => loop {
                let line = self.read_line(&mut out).await?;
                let size = chunk_size(&line)?;
                if size == 0 {
                    // Trailer fields, then the blank line that ends the message.
                    while self.read_line(&mut out).await?.as_slice() != b"\r\n" {}
                    break;
                }
                self.read_exact_into(size + 2, &mut out).await?;
            },
            Framing::UntilClose => {
                out.append(&mut self.buf);
                while self.fill().await? > 0 {
                    out.append(&mut self.buf);
                }
            }
        }
        Ok(out)
    }

    /// Writes every part, then flushes.
    pub async fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), HttpError> {
        for part in parts {
            self.stream.write_all(part).await?;
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads and throws away everything until the peer closes: how a request
    /// that must never be answered is held.
    pub async fn drain_until_closed(&mut self) {
        self.buf.clear();
        while matches!(self.fill().await, Ok(n) if n > 0) {
            self.buf.clear();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| HttpError::Malformed("chunk size is not text".to_string()))?;
    let digits = text.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(digits, 16)
        .map_err(|_| HttpError::Malformed(format!("bad chunk size `{digits}`")))
}

/// A head from [`Wire::read_head`] always ends with its blank line, so
/// anything but a complete parse is malformed.
fn complete(parsed: httparse::Result<usize>) -> Result<(), HttpError> {
    match parsed {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Ok(httparse::Status::Partial) => Err(HttpError::Malformed("partial head".into())),
        Err(e) => Err(HttpError::Malformed(e.to_string())),
    }
}

/// The header fields of a head, in order, with their original spelling.
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    fn from_parsed(parsed: &[httparse::Header<'_>]) -> Self {
        Self(
            parsed
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect(),
        )
    }

    /// The first value of `name` (case-insensitive), if it is text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn framing(&self) -> Result<Option<Framing>, HttpError> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Some(Framing::Chunked));
        }
        match self.get("content-length") {
            Some(v) => v
                .trim()
                .parse()
                .map(|n| Some(Framing::Length(n)))
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length `{v}`"))),
            None => Ok(None),
        }
    }

    fn keep_alive(&self, minor_version: u8) -> bool {
        if self.has_token("connection", "close") {
            false
        } else {
            minor_version >= 1 || self.has_token("connection", "keep-alive")
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields.
    pub headers: Headers,
}

impl RequestHead {
    /// Parses a head returned by [`Wire::read_head`].
    pub fn parse(raw: &[u8]) -> Result<Self, HttpError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        complete(req.parse(raw))?;
        Ok(Self {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            minor_version: req.version.unwrap_or(1),
            headers: Headers::from_parsed(req.headers),
        })
    }

    /// How the request body is delimited (no length and no chunking: no body).
    pub fn framing(&self) -> Result<Framing, HttpError> {
        Ok(self.headers.framing()?.unwrap_or(Framing::Empty))
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        self.headers.keep_alive(self.minor_version)
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub fn expects_continue(&self) -> bool {
        self.headers.has_token("expect", "100-continue")
    }

    /// The head to send upstream: as received, minus `Expect` (the proxy has
    /// already answered it and holds the whole body).
    pub fn to_upstream(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.{}\r\n",
            self.method, self.target, self.minor_version
        )
        .into_bytes();
        for (name, value) in &self.headers.0 {
            if name.eq_ignore_ascii_case("expect") {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields.
    pub headers: Headers,
}

impl ResponseHead {
    /// Parses a head returned by [`Wire::read_head`].
    pub fn parse(raw: &[u8]) -> Result<Self, HttpError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        complete(resp.parse(raw))?;
        Ok(Self {
            status: resp.code.unwrap_or(0),
            minor_version: resp.version.unwrap_or(1),
            headers: Headers::from_parsed(resp.headers),
        })
    }

    /// An interim response (`100 Continue`) that a final one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// How the body is delimited, given the method of the request it answers.
    pub fn framing(&self, request_method: &str) -> Result<Framing, HttpError> {
        if request_method.eq_ignore_ascii_case("HEAD")
            || self.is_interim()
            || self.status == 204
            || self.status == 304
        {
            return Ok(Framing::Empty);
        }
        Ok(self.headers.framing()?.unwrap_or(Framing::UntilClose))
    }

    /// Whether the server keeps the connection open after this response.
    pub fn keep_alive(&self) -> bool {
        self.headers.keep_alive(self.minor_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(bytes).await.expect("write");
        drop(client);
        let mut wire = Wire::new(server);
        let (mut heads, mut bodies) = (Vec::new(), Vec::new());
        while let Some(head) = wire.read_head().await.expect("head") {
            let req = RequestHead::parse(&head).expect("parse");
            bodies.push(
                wire.read_body(req.framing().expect("framing"))
                    .await
                    .expect("body"),
            );
            heads.push(head);
        }
        (heads, bodies)
    }

    #[tokio::test]
    async fn splits_keep_alive_requests_by_length_and_chunking() {
        let chunked = b"5\r\nAct=1\r\n3;ext=x\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n";
        let wire = [
            b"POST / HTTP/1.1\r\nContent-Length: 13\r\n\r\nAction=Foo&A=".as_slice(),
            b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunked,
            b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        .concat();
        let (heads, bodies) = read_all(&wire).await;
        assert_eq!(heads.len(), 3);
        assert_eq!(bodies[0], b"Action=Foo&A=");
        assert_eq!(
            bodies[1], chunked,
            "chunk framing and trailers kept verbatim"
        );
        assert!(bodies[2].is_empty());
    }

    #[tokio::test]
    async fn a_message_cut_short_is_an_error_not_a_shorter_message() {
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .expect("write");
        drop(client);
        let mut wire = Wire::new(server);
        let head = wire.read_head().await.expect("head").expect("some head");
        let req = RequestHead::parse(&head).expect("parse");
        assert!(matches!(
            wire.read_body(req.framing().expect("framing")).await,
            Err(HttpError::Truncated)
        ));
    }

    #[test]
    fn response_framing_follows_the_request_method_and_status() {
        let ok = ResponseHead::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n").expect("ok");
        assert_eq!(ok.framing("GET").expect("get"), Framing::Length(7));
        assert_eq!(ok.framing("HEAD").expect("head"), Framing::Empty);
        let bare = ResponseHead::parse(b"HTTP/1.0 200 OK\r\n\r\n").expect("bare");
        assert_eq!(bare.framing("GET").expect("get"), Framing::UntilClose);
        assert!(!bare.keep_alive());
        let cont = ResponseHead::parse(b"HTTP/1.1 100 Continue\r\n\r\n").expect("100");
        assert!(cont.is_interim());
        let close =
            ResponseHead::parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").expect("close");
        assert!(!close.keep_alive());
    }

    #[test]
    fn upstream_head_drops_expect_and_keeps_everything_else() {
        let req = RequestHead::parse(
            b"PUT /k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nX-Amz-Date: d\r\nContent-Length: 1\r\n\r\n",
        )
        .expect("parse");
        assert!(req.expects_continue());
        assert_eq!(
            req.to_upstream(),
            b"PUT /k HTTP/1.1\r\nHost: h\r\nX-Amz-Date: d\r\nContent-Length: 1\r\n\r\n"
        );
    }
}
