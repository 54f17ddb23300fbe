//! Just enough HTTP/1.x for a Prometheus scrape: parse one request head
//! from a bounded buffer, route it, frame one response, close.
//!
//! Pure functions over bytes; the sockets live in `export.rs`. A request is
//! judged as soon as it can be: a bad request line is refused before the
//! rest arrives, so junk (a TLS hello, a port scan) is answered at once
//! instead of holding a connection until its deadline.

/// Largest request head accepted, in bytes; beyond it the answer is 431.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// Longest method token accepted.
const MAX_METHOD: usize = 16;

/// A parsed request head (only what routing needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete, well-formed head.
    Request(Request<'a>),
    /// Well-formed so far; more bytes are needed.
    Incomplete,
    /// Not HTTP/1.x: 400. The reason is for the debug log.
    Malformed(&'static str),
    /// The head does not fit in [`MAX_REQUEST_BYTES`]: 431.
    TooLarge,
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_request_line(line: &[u8]) -> Result<Request<'_>, &'static str> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("request line is not METHOD SP TARGET SP VERSION");
    };
    if method.is_empty() || method.len() > MAX_METHOD || !method.iter().all(|&b| is_tchar(b)) {
        return Err("bad method");
    }
    if target.first() != Some(&b'/') || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err("target is not an origin-form path");
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err("version is not HTTP/1.0 or HTTP/1.1");
    }
    let path = match target.iter().position(|&b| b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    // Both checked to be ASCII above.
    match (std::str::from_utf8(method), std::str::from_utf8(path)) {
        (Ok(method), Ok(path)) => Ok(Request { method, path }),
        _ => Err("not ASCII"),
    }
}

fn check_header_line(line: &[u8]) -> Result<(), &'static str> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err("folded header line");
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err("header line without a colon");
    };
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err("bad header name");
    }
    if line[colon + 1..]
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err("control character in a header value");
    }
    Ok(())
}

/// A partial request line can already be wrong: only visible ASCII and
/// spaces belong in it.
fn check_partial_request_line(part: &[u8]) -> Result<(), &'static str> {
    let body = part.strip_suffix(b"\r").unwrap_or(part);
    if body.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("control or non-ASCII byte in the request line")
    }
}

/// Judge the bytes of a request received so far. `buf` holds everything
/// read; it is never longer than [`MAX_REQUEST_BYTES`] by the caller's
/// construction, and a full buffer without the end of the head is
/// [`Parsed::TooLarge`]. Lines end in CRLF (a bare LF is accepted, as
/// RFC 9112 §2.2 allows); empty lines before the request line are skipped.
pub fn parse_request(buf: &[u8]) -> Parsed<'_> {
    let mut rest = buf;
    let mut request: Option<Request<'_>> = None;
    loop {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if request.is_none() {
                if let Err(why) = check_partial_request_line(rest) {
                    return Parsed::Malformed(why);
                }
            }
            return if buf.len() >= MAX_REQUEST_BYTES {
                Parsed::TooLarge
            } else {
                Parsed::Incomplete
            };
        };
        let raw = &rest[..nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.contains(&b'\r') {
            return Parsed::Malformed("bare CR");
        }
        rest = &rest[nl + 1..];
        match request {
            None if line.is_empty() => {}
            None => match check_request_line(line) {
                Ok(r) => request = Some(r),
                Err(why) => return Parsed::Malformed(why),
            },
            Some(r) if line.is_empty() => return Parsed::Request(r),
            Some(_) => {
                if let Err(why) = check_header_line(line) {
                    return Parsed::Malformed(why);
                }
            }
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Healthz,
    NotFound,
    MethodNotAllowed,
}

impl Request<'_> {
    /// `HEAD`: the response is framed as for `GET`, without its body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Route a well-formed request: unknown paths are 404 whatever the method;
/// a known path with a method other than GET or HEAD is 405.
pub fn route(req: &Request<'_>) -> Route {
    let known = match req.path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        _ => return Route::NotFound,
    };
    if req.method == "GET" || req.is_head() {
        known
    } else {
        Route::MethodNotAllowed
    }
}

/// Status codes the endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeaderTooLarge,
    Unavailable,
}

impl Status {
    /// Every status, in export order.
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::HeaderTooLarge,
        Status::Unavailable,
    ];

    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::HeaderTooLarge => 431,
            Status::Unavailable => 503,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::HeaderTooLarge => "Request Header Fields Too Large",
            Status::Unavailable => "Service Unavailable",
        }
    }

    /// Index into [`Status::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of short plain answers.
pub const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// Frame a complete response into `out` (cleared first). Every response
/// closes the connection.
pub fn write_response(out: &mut Vec<u8>, status: Status, content_type: &str, body: &[u8]) {
    use std::io::Write;
    out.clear();
    let allow = if status == Status::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        status.code(),
        status.reason(),
        body.len()
    );
    out.extend_from_slice(body);
}

/// Drop the body of a framed response, keeping its head (and so the
/// `Content-Length` the body had): the answer to `HEAD` (RFC 9110 §9.3.2).
pub fn strip_body(out: &mut Vec<u8>) {
    if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
        out.truncate(end + 4);
    }
}

/// A short plain-text answer for an error status.
pub fn write_error(out: &mut Vec<u8>, status: Status) {
    let mut body = [0u8; 64];
    let text = status.reason().as_bytes();
    let n = text.len().min(body.len() - 1);
    body[..n].copy_from_slice(&text[..n]);
    body[n] = b'\n';
    write_response(out, status, PLAIN_TEXT, &body[..=n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &'static str, path: &'static str) -> Parsed<'static> {
        Parsed::Request(Request { method, path })
    }

    #[test]
    fn a_prometheus_scrape_parses() {
        let raw = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:29101\r\nUser-Agent: Prometheus/2.53.0\r\nAccept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        assert_eq!(parse_request(raw), req("GET", "/metrics"));
    }

    #[test]
    fn curl_http_1_0_and_bare_lf_parse() {
        assert_eq!(
            parse_request(b"GET /healthz HTTP/1.0\r\n\r\n"),
            req("GET", "/healthz")
        );
        assert_eq!(
            parse_request(b"GET /healthz HTTP/1.1\nHost: x\n\n"),
            req("GET", "/healthz")
        );
        // RFC 9112 §2.2: empty lines before the request line are skipped.
        assert_eq!(
            parse_request(b"\r\nGET /metrics HTTP/1.1\r\n\r\n"),
            req("GET", "/metrics")
        );
    }

    #[test]
    fn the_query_string_is_not_part_of_the_path() {
        assert_eq!(
            parse_request(b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n"),
            req("GET", "/metrics")
        );
    }

    #[test]
    fn a_partial_head_is_incomplete() {
        for raw in [
            &b""[..],
            b"GE",
            b"GET /metrics HTTP/1.1",
            b"GET /metrics HTTP/1.1\r",
            b"GET /metrics HTTP/1.1\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r",
            b"GET /metrics HTTP/1.1\r\nHo",
        ] {
            assert_eq!(
                parse_request(raw),
                Parsed::Incomplete,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        for raw in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET http://host/metrics HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"GET /metrics http/1.1\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /met\x01rics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            b"GET /metrics HTTP/1.1\rHost: a\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(raw), Parsed::Malformed(_)),
                "{:?} gave {:?}",
                String::from_utf8_lossy(raw),
                parse_request(raw)
            );
        }
    }

    #[test]
    fn junk_is_refused_before_the_line_ends() {
        // The start of a TLS ClientHello: no newline will come soon.
        assert!(matches!(
            parse_request(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Parsed::Malformed(_)
        ));
        assert!(matches!(parse_request(b"GET /\xff"), Parsed::Malformed(_)));
        // A header being received may still contain anything printable.
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nX: \xff"),
            Parsed::Incomplete
        );
    }

    #[test]
    fn a_head_that_fills_the_buffer_is_too_large() {
        let mut raw = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while raw.len() < MAX_REQUEST_BYTES {
            raw.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        raw.truncate(MAX_REQUEST_BYTES);
        assert_eq!(parse_request(&raw), Parsed::TooLarge);
        // One byte less is just incomplete, unless the cut lands badly.
        let mut short = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        short.resize(MAX_REQUEST_BYTES - 1, b'a');
        assert_eq!(parse_request(&short), Parsed::Incomplete);
        short.push(b'a');
        assert_eq!(parse_request(&short), Parsed::TooLarge);
        // A complete head in a full buffer is fine.
        let mut exact = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        exact.resize(MAX_REQUEST_BYTES - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&exact), req("GET", "/metrics"));
    }

    #[test]
    fn routes() {
        let r = |method, path| route(&Request { method, path });
        assert_eq!(r("GET", "/metrics"), Route::Metrics);
        assert_eq!(r("GET", "/healthz"), Route::Healthz);
        assert_eq!(r("GET", "/"), Route::NotFound);
        assert_eq!(r("GET", "/metrics/"), Route::NotFound);
        assert_eq!(r("POST", "/nope"), Route::NotFound);
        assert_eq!(r("POST", "/metrics"), Route::MethodNotAllowed);
        // Issue 14: HEAD /metrics was 405.
        assert_eq!(r("HEAD", "/metrics"), Route::Metrics);
        assert_eq!(r("HEAD", "/healthz"), Route::Healthz);
        assert_eq!(r("HEAD", "/nope"), Route::NotFound);
        assert_eq!(r("get", "/metrics"), Route::MethodNotAllowed);
    }

    #[test]
    fn responses_are_framed_with_a_length_and_close() {
        let mut out = Vec::new();
        write_response(&mut out, Status::Ok, PLAIN_TEXT, b"ok\n");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
        write_error(&mut out, Status::MethodNotAllowed);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nMethod Not Allowed\n"), "{text}");
        assert!(text.contains("Content-Length: 19\r\n"), "{text}");
        write_response(&mut out, Status::Ok, PLAIN_TEXT, b"ok\n");
        strip_body(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
        for s in Status::ALL {
            assert_eq!(Status::ALL[s.index()], s);
            write_error(&mut out, s);
            let head = format!("HTTP/1.1 {} {}\r\n", s.code(), s.reason());
            assert!(out.starts_with(head.as_bytes()));
        }
    }
}
