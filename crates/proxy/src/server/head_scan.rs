//! Spotting `Content-Length` next to `Transfer-Encoding` in a raw HTTP/1 request head.
//!
//! hyper lets `Transfer-Encoding: chunked` win and drops `Content-Length` from the request it
//! hands over (RFC 9112 §6.3 allows that), so nothing after the parser can tell that both were
//! sent. A gateway in front of partners it does not know takes the other reading of §6.3 and
//! refuses such a request, since a partner (or a proxy before it) might frame it by the length.
//! This scanner watches the bytes of a head as the socket delivers them and says whether both
//! names were there. It looks only at header names at the start of a line and stops at the blank
//! line that ends the head; judging the rest is hyper's job.

/// Where the scanner is within the head.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    #[default]
    LineStart,
    /// A CR at the start of a line: the blank line that ends the head, if an LF follows.
    Cr,
    /// Inside what may be a header name.
    Name,
    /// The rest of a line (a value, or the request line).
    Skip,
    /// Past the blank line: body bytes or the next request, not this scanner's business.
    Done,
}

const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
/// The longest name worth keeping; a longer one matches neither.
const NAME_MAX: usize = TRANSFER_ENCODING.len();
const SAW_CL: u8 = 1;
const SAW_TE: u8 = 2;

/// The scan of one request head, fed in pieces.
#[derive(Debug, Default)]
pub(super) struct HeadScan {
    /// Which request of the connection this head is (requests dispatched before it).
    generation: u64,
    state: State,
    name: [u8; NAME_MAX],
    /// Bytes of the current name so far (may exceed `NAME_MAX`; only the first ones are kept).
    len: usize,
    /// Lines ended so far: a blank line before the request line is not the end of the head.
    lines: u32,
    seen: u8,
}

impl HeadScan {
    pub(super) fn new(generation: u64) -> Self {
        Self {
            generation,
            ..Self::default()
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Feeds the next bytes of the head; true once both names have been seen in it.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match self.state {
                State::Done => break,
                State::LineStart => match b {
                    b'\r' => self.state = State::Cr,
                    b'\n' => self.blank_line(),
                    _ => {
                        self.len = 0;
                        self.state = State::Name;
                        self.name_byte(b);
                    }
                },
                State::Cr => {
                    if b == b'\n' {
                        self.blank_line();
                    } else {
                        self.state = State::Skip;
                    }
                }
                State::Name => match b {
                    b':' => {
                        self.name_end();
                        self.state = State::Skip;
                    }
                    b'\n' => self.line_end(),
                    _ => self.name_byte(b),
                },
                State::Skip => {
                    if b == b'\n' {
                        self.line_end();
                    }
                }
            }
        }
        self.seen == SAW_CL | SAW_TE
    }

    fn name_byte(&mut self, b: u8) {
        if !is_tchar(b) {
            // A space or the like: a request line, a folded value or garbage, not a name.
            self.state = State::Skip;
            return;
        }
        if let Some(slot) = self.name.get_mut(self.len) {
            *slot = b.to_ascii_lowercase();
        }
        self.len += 1;
    }

    fn name_end(&mut self) {
        let name = &self.name[..self.len.min(NAME_MAX)];
        if self.len == CONTENT_LENGTH.len() && name == CONTENT_LENGTH {
            self.seen |= SAW_CL;
        } else if self.len == TRANSFER_ENCODING.len() && name == TRANSFER_ENCODING {
            self.seen |= SAW_TE;
        }
    }

    fn line_end(&mut self) {
        self.lines = self.lines.saturating_add(1);
        self.state = State::LineStart;
    }

    fn blank_line(&mut self) {
        // Blank lines before the request line are tolerated (RFC 9112 §2.2), and not the end.
        self.state = if self.lines == 0 {
            State::LineStart
        } else {
            State::Done
        };
    }
}

/// RFC 9110 §5.6.2 `tchar`: what a header name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict for `head`, fed whole and then in every two-piece split.
    fn verdict(head: &[u8]) -> bool {
        let whole = HeadScan::new(0).feed(head);
        for cut in 0..=head.len() {
            let mut scan = HeadScan::new(0);
            let first = scan.feed(&head[..cut]);
            let second = scan.feed(&head[cut..]);
            assert_eq!(
                first || second,
                whole,
                "split at {cut} of {:?}",
                String::from_utf8_lossy(head)
            );
        }
        let mut bytewise = HeadScan::new(0);
        let mut any = false;
        for b in head {
            any |= bytewise.feed(std::slice::from_ref(b));
        }
        assert_eq!(any, whole, "byte by byte");
        whole
    }

    #[test]
    fn both_names_in_either_order_and_any_case_are_seen() {
        assert!(verdict(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(verdict(
            b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n0\r\n\r\n"
        ));
        // Bare LF line ends, which hyper accepts too.
        assert!(verdict(
            b"POST /x HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n"
        ));
        // Blank lines before the request line are not the end of the head.
        assert!(verdict(
            b"\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn one_name_alone_or_lookalikes_are_not_both() {
        assert!(!verdict(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"));
        assert!(!verdict(
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ));
        assert!(!verdict(
            b"POST /x HTTP/1.1\r\nX-Content-Length: 5\r\nTransfer-Encoding-X: chunked\r\nContent-Lengths: 1\r\n\r\n"
        ));
        // Names inside values, the request target or a folded line are not headers.
        assert!(!verdict(
            b"POST /content-length: HTTP/1.1\r\nX-A: transfer-encoding: chunked\r\n content-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn the_scan_stops_at_the_end_of_the_head() {
        // A body that looks like headers is not the head.
        assert!(!verdict(
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nContent-Length: 5\r\n\r\n\r\n0\r\n\r\n"
        ));
        let mut scan = HeadScan::new(7);
        assert_eq!(scan.generation(), 7);
        assert!(!scan.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!scan.feed(b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"));
    }
}
