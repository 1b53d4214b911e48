//! A shim between the Unix socket and the gRPC server that makes every client's `:authority`
//! one the HTTP/2 server accepts. gRPC's C core (Python's grpcio, Ruby, PHP, C++) sends the
//! socket path, percent-encoded, as `:authority` on Unix sockets since 1.57, and the h2
//! server under tonic refuses that request as malformed (RST_STREAM PROTOCOL_ERROR), so
//! py-spiffe could not talk to a tonic server at all. Go and Rust clients send `localhost`.
//!
//! The client's header blocks are HPACK-decoded (keeping the client's compression state),
//! an `:authority` that is not a valid URI authority becomes `localhost` (the Workload API
//! does not look at it), and the block is encoded again for the server (keeping the
//! server's state); every other frame, and everything the server sends, passes through
//! byte for byte.

use loona_hpack::{Decoder, Encoder};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which the server does not raise.
const MAX_FRAME: usize = 16_384;
/// HTTP/2's default SETTINGS_HEADER_TABLE_SIZE, which the server does not change.
const TABLE_SIZE: usize = 4_096;
/// The largest header block accepted (many CONTINUATIONs).
const MAX_BLOCK: usize = 64 * 1024;

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from the client: {what}"),
    )
}

/// A header block being gathered: stream, END_STREAM, priority bytes, fragments so far.
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// Copies the client's bytes from `from` to `to`, rewriting `:authority` in header
/// blocks; returns when the client closes its side.
pub async fn relay_client<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(bad("not the HTTP/2 connection preface"));
    }
    to.write_all(&preface).await?;
    let mut decoder = Decoder::new();
    decoder.set_max_allowed_table_size(TABLE_SIZE);
    let mut encoder = Encoder::new();
    let mut pending: Option<Block> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            return Err(bad("frame larger than the server allows"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match (kind, pending.as_mut()) {
            (HEADERS, None) => {
                let block = headers_frame(stream, flags, payload)?;
                if flags & END_HEADERS != 0 {
                    emit(&mut decoder, &mut encoder, block, &mut to).await?;
                } else {
                    pending = Some(block);
                }
            }
            (CONTINUATION, Some(block)) if block.stream == stream => {
                block.fragment.extend_from_slice(&payload);
                if block.fragment.len() > MAX_BLOCK {
                    return Err(bad("header block too large"));
                }
                if flags & END_HEADERS != 0 {
                    let block = pending.take().expect("pending block");
                    emit(&mut decoder, &mut encoder, block, &mut to).await?;
                }
            }
            (_, Some(_)) | (CONTINUATION, None) => {
                return Err(bad("a header block interrupted or continued out of place"))
            }
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
            }
        }
    }
    to.shutdown().await
}

/// Splits a HEADERS frame's payload into padding, priority and fragment.
fn headers_frame(stream: u32, flags: u8, mut payload: Vec<u8>) -> io::Result<Block> {
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first().ok_or_else(|| bad("empty padded HEADERS"))?);
        if pad + 1 > payload.len() {
            return Err(bad("padding longer than the frame"));
        }
        payload.truncate(payload.len() - pad);
        payload.remove(0);
    }
    let priority = if flags & PRIORITY != 0 {
        let p: [u8; 5] = payload
            .get(..5)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| bad("HEADERS too short for its priority"))?;
        payload.drain(..5);
        Some(p)
    } else {
        None
    };
    Ok(Block {
        stream,
        end_stream: flags & END_STREAM != 0,
        priority,
        fragment: payload,
    })
}

/// Decodes a whole header block, fixes `:authority`, and sends it as HEADERS (and
/// CONTINUATIONs when it is long).
async fn emit<W: AsyncWrite + Unpin>(
    decoder: &mut Decoder<'_>,
    encoder: &mut Encoder<'_>,
    block: Block,
    to: &mut W,
) -> io::Result<()> {
    let mut headers = decoder
        .decode(&block.fragment)
        .map_err(|e| bad(&format!("undecodable header block ({e:?})")))?;
    for (name, value) in &mut headers {
        if name.as_slice() == b":authority" && http::uri::Authority::try_from(&value[..]).is_err() {
            *value = b"localhost".to_vec();
        }
    }
    let mut payload = block.priority.map(|p| p.to_vec()).unwrap_or_default();
    payload.extend(encoder.encode(headers.iter().map(|(n, v)| (&n[..], &v[..]))));
    let mut chunks = payload.chunks(MAX_FRAME).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let mut flags = 0;
        if first {
            if block.end_stream {
                flags |= END_STREAM;
            }
            if block.priority.is_some() {
                flags |= PRIORITY;
            }
        }
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        let kind = if first { HEADERS } else { CONTINUATION };
        let len = (chunk.len() as u32).to_be_bytes();
        let mut head = [len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
        head[5..].copy_from_slice(&block.stream.to_be_bytes());
        to.write_all(&head).await?;
        to.write_all(chunk).await?;
        first = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    /// Frames of `bytes` after the preface: (kind, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert_eq!(&bytes[..24], PREFACE);
        bytes = &bytes[24..];
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    #[tokio::test]
    async fn a_path_authority_becomes_localhost_and_other_frames_pass_unchanged() {
        let mut client = Encoder::new();
        let path = b"%2Ftmp%2Fapi.sock";
        let h1 = [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b":authority", path),
            (b"workload.spiffe.io", b"true"),
        ];
        let block1 = client.encode(h1);
        // The second request reuses the client's dynamic table entries.
        let block2 = client.encode(h1);
        let (a, b) = block2.split_at(block2.len() / 2);
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        let mut padded = vec![3];
        padded.extend(&block1);
        padded.extend([0, 0, 0]);
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &padded));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0")); // DATA
        input.extend(frame(HEADERS, END_STREAM, 3, a));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        let mut out = Vec::new();
        relay_client(&input[..], &mut out).await.unwrap();

        let got = frames(&out);
        assert_eq!(got[0], (0x4, 0, 0, vec![]));
        assert_eq!(got[2], (0x0, END_STREAM, 1, b"\0\0\0\0\0".to_vec()));
        let mut server = Decoder::new();
        for (i, flags) in [(1, END_HEADERS), (3, END_HEADERS | END_STREAM)] {
            let (kind, f, _, block) = &got[i];
            assert_eq!((*kind, *f), (HEADERS, flags));
            let headers = server.decode(block).unwrap();
            let authority = headers.iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(authority.1, b"localhost");
            assert!(headers
                .iter()
                .any(|(n, v)| n == b":path" && v.ends_with(b"FetchX509SVID")));
        }
    }

    #[tokio::test]
    async fn a_valid_authority_is_kept() {
        let mut client = Encoder::new();
        let block = client.encode([(&b":authority"[..], &b"localhost:1"[..])]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let mut out = Vec::new();
        relay_client(&input[..], &mut out).await.unwrap();
        let (_, _, _, block) = &frames(&out)[0];
        let headers = Decoder::new().decode(block).unwrap();
        assert_eq!(headers[0].1, b"localhost:1");
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let mut out = Vec::new();
        let err = relay_client(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &mut out)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("preface"), "{err}");
    }
}
