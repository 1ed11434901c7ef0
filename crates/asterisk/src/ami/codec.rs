//! The AMI wire format: a banner line, then messages of `Key: Value\r\n` lines
//! closed by an empty line. Pure and incremental, so it can be fuzzed alone.
//!
//! Keys repeat (`Variable`, `ChanVariable`), so a message keeps its headers in
//! order. Values are taken as they are (no trimming beyond the one space after
//! the colon); bytes that are not UTF-8 are replaced, never fatal. A message
//! larger than the limit is skipped whole and reported, and decoding goes on
//! with the next one: one oversized event must not cost the connection.

/// One AMI message: a response, an event, or (on the first line) the banner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
}

impl Message {
    pub fn new() -> Self {
        Message::default()
    }

    /// The first value of `key` (case-insensitive, as Asterisk treats keys).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.headers.push((key.into(), value.into()));
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `Asterisk Call Manager/11.0.0`
    Banner(String),
    Message(Message),
    /// A message over the size limit was skipped; `bytes` counts what was dropped.
    Oversized {
        bytes: usize,
    },
}

/// Incremental decoder: feed bytes with [`Decoder::extend`], take frames with
/// [`Decoder::next_frame`].
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_message: usize,
    want_banner: bool,
    /// Bytes dropped from an oversized message whose end has not been seen yet.
    discarding: Option<usize>,
}

/// Default per-message limit: far above any real event (a `Command` output of
/// a busy PBX stays well below), small enough to bound memory per connection.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            max_message: max_message.max(64),
            want_banner: true,
            discarding: None,
        }
    }

    /// A decoder for a stream that has no banner (after it was read elsewhere).
    pub fn without_banner(max_message: usize) -> Self {
        Decoder {
            want_banner: false,
            ..Decoder::new(max_message)
        }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.want_banner {
            let end = find(&self.buf, b"\n")?;
            let line = trim_cr(&self.buf[..end]);
            let banner = String::from_utf8_lossy(line).into_owned();
            self.buf.drain(..=end);
            self.want_banner = false;
            return Some(Frame::Banner(banner));
        }
        loop {
            if let Some(dropped) = self.discarding {
                match message_end(&self.buf) {
                    Some((_, after)) => {
                        self.buf.drain(..after);
                        self.discarding = None;
                        return Some(Frame::Oversized {
                            bytes: dropped + after,
                        });
                    }
                    None => {
                        // Keep a tail that may hold the start of the terminator.
                        let keep = self.buf.len().min(3);
                        let drop = self.buf.len() - keep;
                        self.buf.drain(..drop);
                        self.discarding = Some(dropped + drop);
                        return None;
                    }
                }
            }
            // Empty lines between messages carry nothing.
            let lead = self
                .buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if lead > 0 {
                self.buf.drain(..lead);
            }
            match message_end(&self.buf) {
                Some((end, after)) if end <= self.max_message => {
                    let msg = parse_message(&self.buf[..end]);
                    self.buf.drain(..after);
                    return Some(Frame::Message(msg));
                }
                Some(_) => {
                    self.discarding = Some(0);
                }
                // A message of exactly the limit may sit buffered with one byte
                // of its terminator: only beyond that is it surely oversized.
                None if self.buf.len() > self.max_message + 1 => {
                    self.discarding = Some(0);
                }
                None => return None,
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// End of the first message: (length of its body, offset after the blank line).
/// Asterisk ends lines with CRLF; a bare LF is accepted too.
fn message_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(nl) = buf[i..].iter().position(|b| *b == b'\n') {
        let at = i + nl;
        // Is the next line empty?
        let rest = &buf[at + 1..];
        if rest.starts_with(b"\r\n") {
            return Some((at + 1, at + 3));
        }
        if rest.starts_with(b"\n") {
            return Some((at + 1, at + 2));
        }
        if rest.is_empty() || rest == b"\r" {
            return None;
        }
        i = at + 1;
    }
    None
}

fn parse_message(body: &[u8]) -> Message {
    let mut msg = Message::new();
    for raw in body.split(|b| *b == b'\n') {
        let line = trim_cr(raw);
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        match text.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(' ') => {
                let v = v.strip_prefix(' ').unwrap_or(v);
                msg.push(k, v);
            }
            // Lines without a key (old-style command output) are kept under "".
            _ => msg.push("", text.into_owned()),
        }
    }
    msg
}

/// A value that would break the framing (CR or LF) cannot be sent: it would
/// let a caller inject headers or whole actions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AMI header {key:?} contains a line break or an invalid key")]
pub struct UnsafeHeader {
    pub key: String,
}

/// Encodes an action. Keys must be plain tokens; values must not contain CR or LF.
pub fn encode(headers: &[(&str, &str)]) -> Result<Vec<u8>, UnsafeHeader> {
    let mut out = Vec::with_capacity(64 * headers.len());
    for (k, v) in headers {
        let key_ok = !k.is_empty()
            && k.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'(' || b == b')'
            });
        if !key_ok || v.contains(['\r', '\n']) {
            return Err(UnsafeHeader {
                key: (*k).to_owned(),
            });
        }
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder) -> Vec<Frame> {
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    const CDR: &[u8] = b"Event: Cdr\r\nPrivilege: cdr,all\r\nSource: 1001\r\nDestination: 1000\r\nDisposition: ANSWERED\r\nRecordfile: auto-1-1001-1000.wav\r\n\r\n";

    #[test]
    fn banner_then_messages() {
        let mut d = Decoder::new(DEFAULT_MAX_MESSAGE);
        d.extend(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n");
        d.extend(CDR);
        let frames = all(&mut d);
        assert_eq!(
            frames[0],
            Frame::Banner("Asterisk Call Manager/11.0.0".into())
        );
        let Frame::Message(m) = &frames[1] else {
            panic!()
        };
        assert_eq!(m.response(), Some("Success"));
        assert_eq!(m.action_id(), Some("1"));
        let Frame::Message(m) = &frames[2] else {
            panic!()
        };
        assert_eq!(m.event(), Some("Cdr"));
        assert_eq!(m.get("recordfile"), Some("auto-1-1001-1000.wav"));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn split_at_every_byte_gives_the_same_messages() {
        let mut whole = b"Asterisk Call Manager/11.0.0\r\n".to_vec();
        whole.extend_from_slice(CDR);
        whole.extend_from_slice(CDR);
        let mut reference = Decoder::new(DEFAULT_MAX_MESSAGE);
        reference.extend(&whole);
        let expected = all(&mut reference);
        assert_eq!(expected.len(), 3);
        for chunk in 1..whole.len() {
            let mut d = Decoder::new(DEFAULT_MAX_MESSAGE);
            let mut got = Vec::new();
            for piece in whole.chunks(chunk) {
                d.extend(piece);
                got.extend(all(&mut d));
            }
            assert_eq!(got, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn repeated_keys_keep_their_order() {
        let mut d = Decoder::without_banner(DEFAULT_MAX_MESSAGE);
        d.extend(b"Event: Newchannel\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nChanVariable: C=\r\n\r\n");
        let Some(Frame::Message(m)) = d.next_frame() else {
            panic!()
        };
        assert_eq!(
            m.get_all("ChanVariable").collect::<Vec<_>>(),
            ["A=1", "B=2", "C="]
        );
    }

    #[test]
    fn values_keep_colons_spaces_and_commas() {
        let mut d = Decoder::without_banner(DEFAULT_MAX_MESSAGE);
        d.extend(b"Event: Cdr\r\nLastData: PJSIP/2000,60,zb(callee-handler^s^1)\r\nCallerID: \"Alice: x\" <1001>\r\nEmpty:\r\nSpaces:   two\r\n\r\n");
        let Some(Frame::Message(m)) = d.next_frame() else {
            panic!()
        };
        assert_eq!(
            m.get("LastData"),
            Some("PJSIP/2000,60,zb(callee-handler^s^1)")
        );
        assert_eq!(m.get("CallerID"), Some("\"Alice: x\" <1001>"));
        assert_eq!(m.get("Empty"), Some(""));
        assert_eq!(m.get("Spaces"), Some("  two"));
    }

    #[test]
    fn very_long_values_within_the_limit_pass() {
        let long = "x".repeat(200_000);
        let mut d = Decoder::without_banner(DEFAULT_MAX_MESSAGE);
        d.extend(format!("Event: UserEvent\r\nData: {long}\r\n\r\n").as_bytes());
        let Some(Frame::Message(m)) = d.next_frame() else {
            panic!()
        };
        assert_eq!(m.get("Data").map(str::len), Some(200_000));
    }

    #[test]
    fn non_utf8_bytes_are_replaced_not_fatal() {
        let mut d = Decoder::without_banner(DEFAULT_MAX_MESSAGE);
        d.extend(b"Event: Cdr\r\nCallerIDName: M\xfcller\xff\r\n\r\n");
        d.extend(CDR);
        let Some(Frame::Message(m)) = d.next_frame() else {
            panic!()
        };
        assert_eq!(m.get("CallerIDName"), Some("M\u{fffd}ller\u{fffd}"));
        assert!(matches!(d.next_frame(), Some(Frame::Message(_))));
    }

    #[test]
    fn an_oversized_message_is_skipped_and_decoding_recovers() {
        let mut d = Decoder::without_banner(1024);
        d.extend(CDR);
        d.extend(b"Event: Huge\r\nData: ");
        // Arrives in pieces, never all buffered.
        for _ in 0..100 {
            d.extend(&[b'y'; 1000]);
            while let Some(f) = d.next_frame() {
                if let Frame::Message(m) = &f {
                    assert_eq!(m.event(), Some("Cdr"));
                } else {
                    panic!("unexpected {f:?}");
                }
            }
            assert!(d.buffered() <= 1024 + 1001);
        }
        d.extend(b"\r\n\r\n");
        d.extend(CDR);
        let frames = all(&mut d);
        assert!(matches!(frames[0], Frame::Oversized { bytes } if bytes > 100_000));
        let Frame::Message(m) = &frames[1] else {
            panic!("{frames:?}")
        };
        assert_eq!(m.event(), Some("Cdr"));
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let mut d = Decoder::without_banner(DEFAULT_MAX_MESSAGE);
        d.extend(b"Event: A\nKey: v\n\nEvent: B\r\n\r\n");
        let f = all(&mut d);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn encoding_refuses_injection() {
        let ok = encode(&[("Action", "Ping"), ("ActionID", "7")]).unwrap();
        assert_eq!(ok, b"Action: Ping\r\nActionID: 7\r\n\r\n");
        assert!(
            encode(&[
                ("Action", "Hangup"),
                ("Channel", "PJSIP/1\r\n\r\nAction: Logoff")
            ])
            .is_err()
        );
        assert!(encode(&[("Bad Key", "x")]).is_err());
        assert!(encode(&[("", "x")]).is_err());
        assert!(encode(&[("Variable", "a=b\nc")]).is_err());
    }

    #[test]
    fn a_message_of_exactly_the_limit_passes_whatever_the_split() {
        let body = format!("Event: X\r\nData: {}\r\n", "d".repeat(46)).into_bytes();
        assert_eq!(body.len(), 64);
        let mut whole = body.clone();
        whole.extend_from_slice(b"\r\n");
        for chunk in 1..whole.len() {
            let mut d = Decoder::without_banner(64);
            let mut got = Vec::new();
            for piece in whole.chunks(chunk) {
                d.extend(piece);
                got.extend(all(&mut d));
            }
            assert!(
                matches!(got.as_slice(), [Frame::Message(_)]),
                "chunk {chunk}: {got:?}"
            );
        }
    }
}
