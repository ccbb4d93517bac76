//! Streaming rewriter of link strings inside a JSON body.
//!
//! Response bodies are streamed, so the rewriter sees arbitrary chunks and
//! must never hold the whole body: it is a validating state machine that
//! copies every byte through as soon as it can, and holds back only the
//! content of the one string value it may still have to replace (capped at
//! [`MAX_STRING`]). Whole string *values* are the only candidates: object
//! keys and URLs embedded in longer text are data, not links.
//!
//! Validation is needed for correctness, not pedantry: whether a string is a
//! key or a value is only known if the structure is tracked, and once the
//! structure is lost (not JSON after all) every later guess would be wrong, so
//! from the first invalid byte on the rest is passed through as received.
//! Nesting is tracked in a bitset rather than by recursion, so a hostile
//! 10,000-deep array costs 10,000 bits, not stack frames.

use std::sync::Arc;

use memchr::{memchr, memchr2};

use super::origin::LinkTarget;

/// Longest string content (raw bytes between the quotes) held back as a
/// rewrite candidate; longer strings pass through untouched.
pub const MAX_STRING: usize = 64 * 1024;

/// Deepest nesting tracked (one bit each); deeper documents are treated as
/// not rewritable and passed through.
pub const MAX_DEPTH: usize = 1_000_000;

/// Why the rewriter left something untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The body is not valid JSON (or nests deeper than [`MAX_DEPTH`]); it was
    /// passed through unchanged from the first offending byte.
    InvalidJson,
    /// At least one string value was longer than [`MAX_STRING`] and was not
    /// examined; rewriting went on after it.
    StringTooLong,
}

const LITERALS: [&[u8]; 3] = [b"true", b"false", b"null"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a value: document start, after `:`, after `,` in an array.
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object.
    Key,
    Colon,
    /// After a complete value inside a container: `,` or the closing bracket.
    AfterValue,
    /// The top-level value is complete: only whitespace may follow.
    End,
    Str,
    Escape,
    /// Inside `\uXXXX`, with this many hex digits still to come.
    Unicode(u8),
    NumMinus,
    NumZero,
    NumInt,
    NumDot,
    NumFrac,
    NumE,
    NumESign,
    NumExp,
    /// Inside `true`, `false` or `null` (index into [`LITERALS`]), at this byte.
    Lit(u8, u8),
    /// Not JSON: everything passes through.
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrKind {
    /// Object key: streamed, never rewritten.
    Key,
    /// String value: content held back until its closing quote.
    Candidate,
    /// String value over the cap: streamed, never rewritten.
    Long,
}

/// What a structural byte asks the chunk loop to do.
enum Step {
    Next,
    /// A number ended just before this byte, which must be looked at again.
    Again,
    /// This byte opened a string value whose content must be held back.
    OpenCandidate,
    Fail,
}

/// Streaming JSON link rewriter; one per response body.
#[derive(Debug)]
pub struct JsonRewriter {
    target: Arc<LinkTarget>,
    state: State,
    str_kind: StrKind,
    has_escape: bool,
    /// Content of the current candidate string seen in earlier chunks.
    pending: Vec<u8>,
    /// Decoded form of an escaped candidate, reused between strings.
    decoded: String,
    /// Container kinds, one bit per level: 1 = object, 0 = array.
    stack: Vec<u64>,
    depth: usize,
    /// Start of a UTF-8 sequence cut by a chunk boundary.
    utf8: [u8; 4],
    utf8_len: u8,
    rewritten: u64,
    too_long: u64,
    fed: bool,
}

impl JsonRewriter {
    pub fn new(target: Arc<LinkTarget>) -> Self {
        Self {
            target,
            state: State::Value,
            str_kind: StrKind::Key,
            has_escape: false,
            pending: Vec::new(),
            decoded: String::new(),
            stack: Vec::new(),
            depth: 0,
            utf8: [0; 4],
            utf8_len: 0,
            rewritten: 0,
            too_long: 0,
            fed: false,
        }
    }

    /// Appends the rewritten form of `chunk` to `out` (whatever can be emitted so far).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        self.fed = true;
        if self.state == State::Invalid {
            out.extend_from_slice(chunk);
            return;
        }
        let n = chunk.len();
        // chunk[..flushed] has been written to `out` (or moved to `pending`).
        let mut flushed = 0;
        // Where the current candidate's content starts in this chunk; bytes
        // between `flushed` and it are only written once the candidate is
        // known to be rewritten (or the chunk ends), so that the common case
        // (not a link) costs no copy beyond the final bulk one.
        let mut cand_start = 0;
        let mut i = 0;
        while i < n {
            match self.state {
                State::Str => {
                    let rest = &chunk[i..];
                    let (found, special) = scan_string(rest);
                    let end = found.unwrap_or(rest.len());
                    if (special || self.utf8_len != 0) && !self.check_content(&rest[..end]) {
                        return self.fail(&chunk[flushed..], out);
                    }
                    let Some(k) = found else {
                        break;
                    };
                    let j = i + k;
                    if self.utf8_len != 0 {
                        return self.fail(&chunk[flushed..], out);
                    }
                    if chunk[j] == b'\\' {
                        self.has_escape = true;
                        self.state = State::Escape;
                        i = j + 1;
                        continue;
                    }
                    if self.str_kind == StrKind::Candidate
                        && self.close_candidate(&chunk[flushed..cand_start], &chunk[cand_start..j], out)
                    {
                        flushed = j;
                    }
                    i = self.after_string(chunk, j + 1, &mut cand_start);
                }
                State::Escape => {
                    self.state = match chunk[i] {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => State::Str,
                        b'u' => State::Unicode(4),
                        _ => return self.fail(&chunk[flushed..], out),
                    };
                    i += 1;
                }
                State::Unicode(left) => {
                    if !chunk[i].is_ascii_hexdigit() {
                        return self.fail(&chunk[flushed..], out);
                    }
                    self.state = if left == 1 {
                        State::Str
                    } else {
                        State::Unicode(left - 1)
                    };
                    i += 1;
                }
                // Runs of whitespace (pretty-printing) and of digits are
                // most of the bytes outside strings: skip them in tight loops
                // instead of dispatching on the state for each.
                State::Value
                | State::ArrayFirst
                | State::ObjectFirst
                | State::Key
                | State::Colon
                | State::AfterValue
                | State::End
                    if is_ws(chunk[i]) =>
                {
                    i += 1;
                    while i < n && is_ws(chunk[i]) {
                        i += 1;
                    }
                }
                State::NumInt | State::NumFrac | State::NumExp if chunk[i].is_ascii_digit() => {
                    i += 1;
                    while i < n && chunk[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                _ => match self.structural(chunk[i]) {
                    Step::Next => i += 1,
                    Step::Again => {}
                    Step::OpenCandidate => {
                        i += 1;
                        cand_start = i;
                    }
                    Step::Fail => return self.fail(&chunk[flushed..], out),
                },
            }
        }
        let in_string = matches!(self.state, State::Str | State::Escape | State::Unicode(_));
        if in_string && self.str_kind == StrKind::Candidate {
            out.extend_from_slice(&chunk[flushed..cand_start]);
            let content = &chunk[cand_start..];
            if self.pending.len() + content.len() > MAX_STRING {
                self.give_up_candidate(content, out);
            } else {
                self.pending.extend_from_slice(content);
            }
        } else {
            out.extend_from_slice(&chunk[flushed..]);
        }
    }

    /// End of body: flushes anything pending.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Invalid | State::End => {}
            // A bare top-level number only ends with the body.
            State::NumZero | State::NumInt | State::NumFrac | State::NumExp if self.depth == 0 => {
                self.state = State::End;
            }
            // An empty body is not a document anyone expects links in (HEAD,
            // 204, 304): nothing was skipped.
            _ if !self.fed => {}
            _ => self.fail(&[], out),
        }
    }

    /// Strings rewritten so far.
    pub fn rewritten(&self) -> u64 {
        self.rewritten
    }

    /// Why rewriting stopped or skipped something, if it did; `InvalidJson`
    /// wins over `StringTooLong` because it ended rewriting altogether.
    pub fn skipped(&self) -> Option<Skip> {
        if self.state == State::Invalid {
            Some(Skip::InvalidJson)
        } else if self.too_long > 0 {
            Some(Skip::StringTooLong)
        } else {
            None
        }
    }

    /// How many string values were too long to examine.
    pub fn strings_too_long(&self) -> u64 {
        self.too_long
    }

    /// Moves on from a closed string at `p`. Object members and array items
    /// follow a fixed pattern (`"key": "value", "key": ...`), so the common
    /// punctuation up to the next string is consumed here directly: going
    /// through [`Self::structural`] byte by byte costs a hard-to-predict
    /// dispatch per byte and dominated the profile. Anything unexpected is
    /// left at the returned position for the general state machine.
    fn after_string(&mut self, chunk: &[u8], mut p: usize, cand_start: &mut usize) -> usize {
        let n = chunk.len();
        if self.str_kind == StrKind::Key {
            self.state = State::Colon;
            p = skip_ws(chunk, p);
            if p >= n || chunk[p] != b':' {
                return p;
            }
            self.state = State::Value;
        } else {
            self.after_value();
            if self.state != State::AfterValue {
                return p;
            }
            p = skip_ws(chunk, p);
            if p >= n || chunk[p] != b',' {
                return p;
            }
            self.state = if self.top_is_object() == Some(true) {
                State::Key
            } else {
                State::Value
            };
        }
        p = skip_ws(chunk, p + 1);
        if p < n && chunk[p] == b'"' {
            if self.state == State::Key {
                self.open_string(StrKind::Key);
            } else {
                self.open_string(StrKind::Candidate);
                *cand_start = p + 1;
            }
            return p + 1;
        }
        p
    }

    /// Passes everything held and the rest of the chunk through, for good.
    fn fail(&mut self, rest: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pending);
        self.pending = Vec::new();
        out.extend_from_slice(rest);
        self.state = State::Invalid;
    }

    fn give_up_candidate(&mut self, tail: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        out.extend_from_slice(tail);
        self.str_kind = StrKind::Long;
        self.too_long += 1;
    }

    /// The candidate's closing quote was found; its content is `pending`
    /// followed by `tail`, and `before` is this chunk's unwritten output
    /// preceding it. Returns true when it wrote `before` and the (rewritten)
    /// content itself, false when it left the chunk's bytes to the caller.
    fn close_candidate(&mut self, before: &[u8], tail: &[u8], out: &mut Vec<u8>) -> bool {
        let total = self.pending.len() + tail.len();
        let new = if total > MAX_STRING {
            self.too_long += 1;
            None
        } else if self.pending.is_empty() {
            candidate_rewrite(&self.target, tail, self.has_escape, &mut self.decoded)
        } else {
            self.pending.extend_from_slice(tail);
            candidate_rewrite(&self.target, &self.pending, self.has_escape, &mut self.decoded)
        };
        let wrote = match new {
            Some(new) => {
                out.extend_from_slice(before);
                encode_str(&new, out);
                self.rewritten += 1;
                true
            }
            None => {
                // Content from earlier chunks comes before all of this chunk.
                let earlier = total - tail.len();
                out.extend_from_slice(&self.pending[..earlier]);
                false
            }
        };
        self.pending.clear();
        wrote
    }

    fn open_string(&mut self, kind: StrKind) {
        self.state = State::Str;
        self.str_kind = kind;
        self.has_escape = false;
    }

    fn after_value(&mut self) {
        self.state = if self.depth == 0 {
            State::End
        } else {
            State::AfterValue
        };
    }

    fn push(&mut self, object: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if word == self.stack.len() {
            self.stack.push(0);
        }
        if object {
            self.stack[word] |= 1 << bit;
        } else {
            self.stack[word] &= !(1 << bit);
        }
        self.depth += 1;
        true
    }

    fn top_is_object(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        Some(self.stack[d / 64] & (1 << (d % 64)) != 0)
    }

    #[inline]
    fn structural(&mut self, b: u8) -> Step {
        use State::*;
        let ws = is_ws(b);
        let next = match self.state {
            Value | ArrayFirst => match b {
                _ if ws => self.state,
                b'"' => {
                    self.open_string(StrKind::Candidate);
                    return Step::OpenCandidate;
                }
                b'{' if self.push(true) => ObjectFirst,
                b'[' if self.push(false) => ArrayFirst,
                b'-' => NumMinus,
                b'0' => NumZero,
                b'1'..=b'9' => NumInt,
                b't' => Lit(0, 1),
                b'f' => Lit(1, 1),
                b'n' => Lit(2, 1),
                b']' if self.state == ArrayFirst => return self.close(false),
                _ => return Step::Fail,
            },
            ObjectFirst | Key => match b {
                _ if ws => self.state,
                b'"' => {
                    self.open_string(StrKind::Key);
                    return Step::Next;
                }
                b'}' if self.state == ObjectFirst => return self.close(true),
                _ => return Step::Fail,
            },
            Colon => match b {
                _ if ws => Colon,
                b':' => Value,
                _ => return Step::Fail,
            },
            AfterValue => match (b, self.top_is_object()) {
                _ if ws => AfterValue,
                (b',', Some(true)) => Key,
                (b',', Some(false)) => Value,
                (b']', Some(false)) => return self.close(false),
                (b'}', Some(true)) => return self.close(true),
                _ => return Step::Fail,
            },
            End if ws => End,
            NumMinus => match b {
                b'0' => NumZero,
                b'1'..=b'9' => NumInt,
                _ => return Step::Fail,
            },
            NumZero | NumInt | NumFrac => match b {
                b'0'..=b'9' if self.state != NumZero => self.state,
                b'.' if self.state != NumFrac => NumDot,
                b'e' | b'E' => NumE,
                _ => return self.end_number(),
            },
            NumDot => match b {
                b'0'..=b'9' => NumFrac,
                _ => return Step::Fail,
            },
            NumE => match b {
                b'+' | b'-' => NumESign,
                b'0'..=b'9' => NumExp,
                _ => return Step::Fail,
            },
            NumESign => match b {
                b'0'..=b'9' => NumExp,
                _ => return Step::Fail,
            },
            NumExp => match b {
                b'0'..=b'9' => NumExp,
                _ => return self.end_number(),
            },
            Lit(which, pos) if LITERALS[usize::from(which)][usize::from(pos)] == b => {
                if usize::from(pos) + 1 == LITERALS[usize::from(which)].len() {
                    self.after_value();
                    return Step::Next;
                }
                Lit(which, pos + 1)
            }
            _ => return Step::Fail,
        };
        self.state = next;
        Step::Next
    }

    fn end_number(&mut self) -> Step {
        self.after_value();
        Step::Again
    }

    fn close(&mut self, object: bool) -> Step {
        debug_assert_eq!(self.top_is_object(), Some(object));
        self.depth -= 1;
        self.after_value();
        Step::Next
    }

    /// Checks raw string content (no quote, no backslash in it) that
    /// [`scan_string`] found non-ASCII or control bytes in: no control
    /// characters, and valid UTF-8 across chunk boundaries.
    fn check_content(&mut self, mut span: &[u8]) -> bool {
        if span.iter().any(|&b| b < 0x20) {
            return false;
        }
        if self.utf8_len > 0 {
            let have = self.utf8_len as usize;
            let width = utf8_width(self.utf8[0]);
            let take = (width - have).min(span.len());
            if span[..take].iter().any(|&b| b & 0xC0 != 0x80) {
                return false;
            }
            self.utf8[have..have + take].copy_from_slice(&span[..take]);
            self.utf8_len += take as u8;
            span = &span[take..];
            if have + take < width {
                return true;
            }
            if std::str::from_utf8(&self.utf8[..width]).is_err() {
                return false;
            }
            self.utf8_len = 0;
        }
        match std::str::from_utf8(span) {
            Ok(_) => true,
            // An incomplete sequence at the very end: the chunk was cut
            // inside a character.
            Err(e) if e.error_len().is_none() => {
                let cut = &span[e.valid_up_to()..];
                self.utf8[..cut.len()].copy_from_slice(cut);
                self.utf8_len = cut.len() as u8;
                true
            }
            Err(_) => false,
        }
    }
}

/// Finds the end of the current run of string content (the next `"` or
/// `\\`) and whether the run holds anything but printable ASCII. Short runs,
/// typical of keys and small values, are scanned inline because setting up
/// a SIMD search costs more than they do.
#[inline]
fn scan_string(rest: &[u8]) -> (Option<usize>, bool) {
    const INLINE: usize = 16;
    let mut special = false;
    for (k, &b) in rest.iter().take(INLINE).enumerate() {
        if b == b'"' || b == b'\\' {
            return (Some(k), special);
        }
        special |= not_plain(b);
    }
    if rest.len() <= INLINE {
        return (None, special);
    }
    let far = &rest[INLINE..];
    let found = memchr2(b'"', b'\\', far);
    let run = &far[..found.unwrap_or(far.len())];
    // No early exit, so that it compiles to wide compares.
    special |= run.iter().fold(false, |acc, &b| acc | not_plain(b));
    (found.map(|k| k + INLINE), special)
}

#[inline]
fn skip_ws(chunk: &[u8], mut p: usize) -> usize {
    while p < chunk.len() && is_ws(chunk[p]) {
        p += 1;
    }
    p
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Control character or non-ASCII byte.
#[inline]
fn not_plain(b: u8) -> bool {
    b.wrapping_sub(0x20) >= 0x60
}

fn utf8_width(first: u8) -> usize {
    match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// The rewritten URL for a complete candidate's raw content, if it is one.
fn candidate_rewrite(
    target: &LinkTarget,
    raw: &[u8],
    has_escape: bool,
    decoded: &mut String,
) -> Option<String> {
    if has_escape {
        if !decode_str(raw, decoded) {
            return None;
        }
        target.rewrite(decoded)
    } else {
        // Cheap pre-filter: most strings are not URLs at all.
        if raw.len() < 8 || raw[0] | 0x20 != b'h' {
            return None;
        }
        target.rewrite(std::str::from_utf8(raw).ok()?)
    }
}

/// Decodes validated JSON string content into `out`; false for content that
/// has no Unicode meaning (a lone surrogate).
fn decode_str(raw: &[u8], out: &mut String) -> bool {
    out.clear();
    let mut rest = raw;
    while let Some(k) = memchr(b'\\', rest) {
        let Ok(plain) = std::str::from_utf8(&rest[..k]) else {
            return false;
        };
        out.push_str(plain);
        let Some(&esc) = rest.get(k + 1) else {
            return false;
        };
        rest = &rest[k + 2..];
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let Some(unit) = hex4(rest) else {
                    return false;
                };
                rest = &rest[4..];
                let code = match unit {
                    0xD800..=0xDBFF => {
                        let low = match rest {
                            [b'\\', b'u', tail @ ..] => hex4(tail),
                            _ => None,
                        };
                        match low {
                            Some(low @ 0xDC00..=0xDFFF) => {
                                rest = &rest[6..];
                                0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                            }
                            _ => return false,
                        }
                    }
                    0xDC00..=0xDFFF => return false,
                    _ => u32::from(unit),
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return false,
                }
            }
            _ => return false,
        };
        out.push(c);
    }
    match std::str::from_utf8(rest) {
        Ok(plain) => {
            out.push_str(plain);
            true
        }
        Err(_) => false,
    }
}

fn hex4(b: &[u8]) -> Option<u16> {
    let digits = b.get(..4)?;
    let mut v = 0u16;
    for &d in digits {
        v = v << 4 | char::from(d).to_digit(16)? as u16;
    }
    Some(v)
}

/// Writes `s` as a JSON string, escaping only what JSON requires, the same
/// way serde_json does.
fn encode_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}
