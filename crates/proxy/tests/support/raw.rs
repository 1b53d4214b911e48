//! Raw TCP clients for requests a well-behaved client library refuses to send: HTTP/1.1
//! bytes written as they are ([`RawConn`], [`exchange`]) and hand-made HTTP/2 frames
//! ([`h2`]). Every read is bounded by [`within`].

use super::within;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResp {
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A plaintext connection that writes bytes as given and parses responses.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    what: String,
}

/// How a read for a response ended.
#[derive(Debug)]
pub enum Read {
    Resp(RawResp),
    /// The peer closed (EOF or reset) before a whole response arrived; what it had sent.
    Closed(Vec<u8>),
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = within(&format!("connect to {addr}"), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buf: Vec::new(),
            what: addr.to_string(),
        }
    }

    /// Writes `bytes`; a peer that already closed is not an error (its answer is read next).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = within("a raw write", self.stream.write_all(bytes)).await;
    }

    /// The next response, or what the peer sent before closing.
    pub async fn read(&mut self) -> Read {
        let what = format!("a response from {}", self.what);
        within(&what, async {
            loop {
                if let Some((resp, used)) = parse_response(&self.buf) {
                    self.buf.drain(..used);
                    return Read::Resp(resp);
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Read::Closed(std::mem::take(&mut self.buf)),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
    }

    /// The next response; panics if the connection closes first.
    pub async fn response(&mut self) -> RawResp {
        match self.read().await {
            Read::Resp(r) => r,
            Read::Closed(b) => panic!(
                "{} closed without a (whole) response; sent {:?}",
                self.what,
                String::from_utf8_lossy(&b)
            ),
        }
    }

    /// Waits for the peer to close; returns the bytes it sent before (none expected).
    pub async fn closed(&mut self) -> Vec<u8> {
        match self.read().await {
            Read::Closed(b) => b,
            Read::Resp(r) => panic!("expected {} to close, got {r:?}", self.what),
        }
    }
}

/// Connects, writes `bytes` and reads the first response (panics if the connection
/// closes first). The connection is dropped afterwards.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> RawResp {
    let mut c = RawConn::connect(addr).await;
    c.send(bytes).await;
    c.response().await
}

/// `GET target HTTP/1.1` with these header lines (given as written) and
/// `connection: close`.
pub fn request(target: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("GET {target} HTTP/1.1\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("connection: close\r\n\r\n");
    s.into_bytes()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one complete response from the start of `buf`: the response and its length.
fn parse_response(buf: &[u8]) -> Option<(RawResp, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let rest = &buf[head_end..];
    let (body, used) = if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        (rest[..len].to_vec(), len)
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + find(&rest[at..], b"\r\n")?;
            let size_str = String::from_utf8_lossy(&rest[at..line_end]).into_owned();
            let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // No trailers expected: the final CRLF.
                if rest.len() < at + 2 {
                    return None;
                }
                at += 2;
                break;
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        (body, at)
    } else {
        (Vec::new(), 0)
    };
    let resp = RawResp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    Some((resp, head_end + used))
}

/// Hand-made HTTP/2 (h2c prior knowledge) frames.
pub mod h2 {
    use super::super::within;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;

    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    /// RST_STREAM / GOAWAY error codes.
    pub const CANCEL: u32 = 0x8;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    /// One frame: 9-byte header and payload.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = Vec::with_capacity(9 + payload.len());
        f.extend_from_slice(&len.to_be_bytes()[1..]);
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK string literal, not Huffman-coded.
    fn string(s: &str) -> Vec<u8> {
        assert!(s.len() < 127, "one-byte HPACK lengths only");
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// A literal header field without indexing, with a new name.
    pub fn literal(name: &str, value: &str) -> Vec<u8> {
        let mut v = vec![0x00];
        v.extend(string(name));
        v.extend(string(value));
        v
    }

    /// The header block of `GET path` to `authority`: `:method GET` (static index 2),
    /// `:scheme http` (6), `:path` (literal, name index 4, or index 4 for `/`) and
    /// `:authority` (literal without indexing, name index 1).
    pub fn get_block(authority: &str, path: &str) -> Vec<u8> {
        let mut b = vec![0x82, 0x86];
        if path == "/" {
            b.push(0x84);
        } else {
            b.push(0x04);
            b.extend(string(path));
        }
        b.push(0x01);
        b.extend(string(authority));
        b
    }

    /// A frame read off the connection.
    #[derive(Debug, Clone)]
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    /// How a connection ended.
    #[derive(Debug, PartialEq, Eq)]
    pub enum End {
        /// A GOAWAY with this error code and debug data, then EOF.
        GoAway { code: u32, debug: String },
        /// EOF or a reset without GOAWAY.
        Closed,
    }

    /// A raw h2c connection after the preface and SETTINGS exchange.
    pub struct RawH2 {
        pub stream: TcpStream,
        buf: Vec<u8>,
    }

    impl RawH2 {
        /// Connects, sends the preface and empty SETTINGS, and waits for the server's
        /// SETTINGS (which it ACKs).
        pub async fn connect(addr: SocketAddr) -> RawH2 {
            let stream = TcpStream::connect(addr).await.expect("connect for h2c");
            let _ = stream.set_nodelay(true);
            let mut c = RawH2 {
                stream,
                buf: Vec::new(),
            };
            let mut hello = PREFACE.to_vec();
            hello.extend(frame(SETTINGS, 0, 0, &[]));
            c.send(&hello).await;
            within("the server's SETTINGS", async {
                loop {
                    match c.next().await {
                        Some(f) if f.kind == SETTINGS && f.flags & ACK == 0 => break,
                        Some(_) => {}
                        None => panic!("h2c connection closed before SETTINGS"),
                    }
                }
            })
            .await;
            c.send(&frame(SETTINGS, ACK, 0, &[])).await;
            c
        }

        /// Writes bytes; a peer that closed is not an error here.
        pub async fn send(&mut self, bytes: &[u8]) -> bool {
            self.stream.write_all(bytes).await.is_ok()
        }

        /// The next frame, or `None` at EOF or on a read error.
        pub async fn next(&mut self) -> Option<Frame> {
            loop {
                if self.buf.len() >= 9 {
                    let len =
                        u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                    if self.buf.len() >= 9 + len {
                        let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                        return Some(Frame {
                            kind: f[3],
                            flags: f[4],
                            stream: u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff,
                            payload: f[9..].to_vec(),
                        });
                    }
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// Reads (and counts by kind) every frame until the server ends the connection.
        pub async fn until_end(&mut self) -> (End, Vec<Frame>) {
            within("the server to end the h2c connection", async {
                let mut seen = Vec::new();
                let mut end = End::Closed;
                while let Some(f) = self.next().await {
                    if f.kind == GOAWAY && end == End::Closed {
                        let p = &f.payload;
                        end = End::GoAway {
                            code: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                            debug: String::from_utf8_lossy(&p[8..]).into_owned(),
                        };
                    }
                    seen.push(f);
                }
                (end, seen)
            })
            .await
        }
    }
}
