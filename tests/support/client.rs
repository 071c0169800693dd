//! The client side: requests sent with curl, through the fixture's Envoy or to any URL,
//! and the responses parsed.

use std::process::Command;

use super::envoy::tag;
use super::fixture::Fixture;
use super::pki::ClientTls;

/// A response as curl saw it.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code (0 when the connection failed).
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl with `args` (plus `-s -i`) and parses the final response.
pub fn curl(args: &[&str]) -> Response {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "20", "-H", "Expect:"])
        .args(args)
        .output()
        .expect("curl must be installed (make test installs it)");
    parse_response(&out.stdout)
}

fn parse_response(raw: &[u8]) -> Response {
    let mut rest = raw;
    loop {
        let Some(split) = find(rest, b"\r\n\r\n") else {
            return Response {
                status: 0,
                headers: Vec::new(),
                body: Vec::new(),
            };
        };
        let head = String::from_utf8_lossy(&rest[..split]).into_owned();
        let body = &rest[split + 4..];
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return Response {
            status,
            headers,
            body: body.to_vec(),
        };
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Shorthand for a header argument pair.
pub fn h(name: &str, value: &str) -> [String; 2] {
    ["-H".to_string(), format!("{name}: {value}")]
}

/// A request to send through Envoy with curl.
#[derive(Debug, Clone, Default)]
pub struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    http2: bool,
    chunked: bool,
    client: Option<ClientTls>,
}

impl Req {
    /// A GET of `path`.
    pub fn get(path: &str) -> Req {
        Req {
            path: path.to_string(),
            ..Req::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds the identity headers.
    pub fn who(self, user: &str, purpose: &str) -> Req {
        self.header("x-user-id", user)
            .header("x-data-purpose", purpose)
    }

    /// Makes it a POST of `body` (no content type is added).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }

    /// Sends the body without any content type (curl would add a form type otherwise).
    pub fn without_content_type(self) -> Req {
        self.header("content-type", "")
    }

    /// Makes it a POST of a JSON body.
    pub fn json(self, body: impl Into<Vec<u8>>) -> Req {
        self.header("content-type", "application/json").body(body)
    }

    /// Uses HTTP/2 (cleartext, prior knowledge).
    pub fn http2(mut self) -> Req {
        self.http2 = true;
        self
    }

    /// Sends the body with chunked transfer encoding (HTTP/1.1).
    pub fn chunked(mut self) -> Req {
        self.chunked = true;
        self
    }

    /// Presents `client`'s certificate (mTLS fixtures).
    pub fn with_client(mut self, client: &ClientTls) -> Req {
        self.client = Some(client.clone());
        self
    }
}

/// Sends `req` through the fixture's Envoy; returns the response and what the backend saw
/// of it (None when it never reached the backend).
pub fn send(f: &Fixture, req: Req) -> (Response, Option<consent_tools::demo_backend::SeenRequest>) {
    let t = tag("req");
    let mut args: Vec<String> = vec!["-H".into(), format!("x-request-tag: {t}")];
    for (n, v) in &req.headers {
        args.push("-H".into());
        // `Name:` with nothing after it tells curl to send no such header at all.
        args.push(if v.is_empty() {
            format!("{n}:")
        } else {
            format!("{n}: {v}")
        });
    }
    let mut body_file = None;
    if let Some(body) = &req.body {
        let path = std::env::temp_dir().join(format!("{t}.body"));
        std::fs::write(&path, body).unwrap();
        args.push("--data-binary".into());
        args.push(format!("@{}", path.display()));
        body_file = Some(path);
    }
    if req.chunked {
        args.push("-H".into());
        args.push("transfer-encoding: chunked".into());
    }
    let client = req.client.as_ref().or(f.client_tls.as_ref());
    args.push(match (req.http2, client.is_some()) {
        (true, false) => "--http2-prior-knowledge".into(),
        (true, true) => "--http2".into(),
        (false, _) => "--http1.1".into(),
    });
    match client {
        Some(tls) => {
            for (flag, path) in [
                ("--cacert", &tls.ca),
                ("--cert", &tls.cert),
                ("--key", &tls.key),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
            args.push(f.envoy.url(&req.path).replacen("http://", "https://", 1));
        }
        None => args.push(f.envoy.url(&req.path)),
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let response = curl(&refs);
    if let Some(path) = body_file {
        let _ = std::fs::remove_file(path);
    }
    (response, f.backend.seen_with_tag(&t))
}
