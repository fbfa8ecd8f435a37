//! Framing of SIP messages on a byte stream (TLS/TCP): headers up to the blank line, then exactly
//! Content-Length bytes of body (RFC 3261 §18.3). CRLF keep-alives (RFC 5626 §3.5.1) are skipped.

/// Largest message accepted, headers and body together.
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet.
    Incomplete,
    /// `skip` bytes of keep-alive CRLFs to drop; answer a double-CRLF ping with a single CRLF pong.
    KeepAlive { skip: usize, pong: bool },
    /// A whole message of `len` bytes at the start of the buffer.
    Message { len: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("stream messages need a valid Content-Length header")]
    BadContentLength,
}

pub fn next_frame(buf: &[u8]) -> Result<Frame, FrameError> {
    let crlfs = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    if crlfs > 0 {
        return Ok(Frame::KeepAlive { skip: crlfs, pong: buf.starts_with(b"\r\n\r\n") });
    }
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_MESSAGE { Err(FrameError::TooLarge) } else { Ok(Frame::Incomplete) };
    };
    let head = &buf[..head_end];
    let mut length: Option<usize> = None;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = std::str::from_utf8(&line[..colon]).unwrap_or("").trim();
        if name.eq_ignore_ascii_case("content-length") || name == "l" {
            let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
            let n = value.parse::<usize>().map_err(|_| FrameError::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(FrameError::BadContentLength);
            }
            length = Some(n);
        }
    }
    let total = head_end + 4 + length.ok_or(FrameError::BadContentLength)?;
    if total > MAX_MESSAGE {
        return Err(FrameError::TooLarge);
    }
    Ok(if buf.len() >= total { Frame::Message { len: total } } else { Frame::Incomplete })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYE: &[u8] = b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TLS x;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn frames_messages_and_keepalives() {
        assert_eq!(next_frame(&BYE[..10]), Ok(Frame::Incomplete));
        assert_eq!(next_frame(BYE), Ok(Frame::Message { len: BYE.len() }));
        let mut two = BYE.to_vec();
        two.extend_from_slice(BYE);
        assert_eq!(next_frame(&two), Ok(Frame::Message { len: BYE.len() }));
        assert_eq!(next_frame(b"\r\n\r\n"), Ok(Frame::KeepAlive { skip: 4, pong: true }));
        assert_eq!(next_frame(b"\r\nBYE"), Ok(Frame::KeepAlive { skip: 2, pong: false }));
        let with_body = b"MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhel";
        assert_eq!(next_frame(with_body), Ok(Frame::Incomplete));
        let mut full = with_body.to_vec();
        full.extend_from_slice(b"lo");
        assert_eq!(next_frame(&full), Ok(Frame::Message { len: full.len() }));
    }

    #[test]
    fn refuses_what_cannot_be_framed() {
        assert_eq!(next_frame(b"BYE sip:a@b SIP/2.0\r\n\r\n"), Err(FrameError::BadContentLength));
        assert_eq!(next_frame(b"BYE sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n"), Err(FrameError::BadContentLength));
        assert_eq!(
            next_frame(b"BYE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(FrameError::BadContentLength)
        );
        let big = format!("BYE sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n", MAX_MESSAGE);
        assert_eq!(next_frame(big.as_bytes()), Err(FrameError::TooLarge));
        assert_eq!(next_frame(&vec![b'a'; MAX_MESSAGE + 1]), Err(FrameError::TooLarge));
    }
}
