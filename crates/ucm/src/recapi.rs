//! `recapi` (spec §5): the request's `filedir`/`filename` parameters and the
//! rules every recording name must pass before it comes near a file system or
//! a bucket. Pure: the server maps directory names to folders and looks the
//! names up.
//!
//! The four cases of §5.1: no parameter → the directories; `filedir` only
//! (several joined by `@`) → their files; `filedir` + `filename` (several
//! names joined by `@`, one directory only) → those files; `filename` only →
//! as before in `monitor`. A trailing `@` (as `recordfiles` has) is allowed.

/// The directory `filename` alone refers to.
pub const DEFAULT_DIR: &str = "monitor";

/// Longest accepted name, in bytes (a path component: 255, as on Linux).
pub const MAX_NAME: usize = 1024;
const MAX_COMPONENT: usize = 255;
/// Deepest accepted relative path (`voicemail/default/1000/INBOX/msg0000.wav` has 5).
pub const MAX_DEPTH: usize = 8;

/// What a `recapi` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecRequest {
    /// Case 1: the recording directories.
    Directories,
    /// Case 2: the files of these directories, in request order, without repeats.
    Files(Vec<RelPath>),
    /// Cases 3 and 4: these files (in request order, without repeats) of one directory.
    Fetch { dir: RelPath, names: Vec<RelPath> },
}

/// Why a request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecError {
    /// A parameter that is present but names nothing (`""`, `"@"`).
    #[error("parameter {0} is empty")]
    Empty(&'static str),
    /// Several directories together with `filename` (the UCM allows one).
    #[error("filename needs exactly one filedir, {0} given")]
    SeveralDirs(usize),
    /// More items than any client sends in one request.
    #[error("too many items in {0}")]
    TooMany(&'static str),
    /// A directory or file name that breaks a [`NameError`] rule.
    #[error("{param} {name:?}: {error}")]
    Name {
        param: &'static str,
        /// The offending item, cut to 128 characters, for the log (escape it there).
        name: String,
        error: NameError,
    },
}

/// Why a name is refused. Every rule holds for directory and file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("contains a NUL byte")]
    Nul,
    #[error("contains a control character")]
    Control,
    #[error("contains a backslash")]
    Backslash,
    /// Recording names never hold `%`: anything with one is an encoded
    /// (or double-encoded) name, never decoded here.
    #[error("contains '%' (percent-encoded names are refused)")]
    Percent,
    #[error("contains a double quote")]
    Quote,
    #[error("is an absolute path")]
    Absolute,
    #[error("has an empty path component")]
    EmptyComponent,
    /// `.`, `..` and hidden names (`.x`): traversal or files never recorded.
    #[error("has a component starting with '.' (traversal or hidden file)")]
    Dot,
    #[error("is longer than allowed")]
    TooLong,
    #[error("has too many path components")]
    TooDeep,
}

/// A checked relative name: components separated by `/`, none empty, none
/// starting with `.`, no NUL, control character, `\`, `%` or `"`. Joining it
/// under a folder can never leave that folder lexically (symlinks are the
/// resolver's business).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// Checks `name` against every rule.
    pub fn parse(name: &str) -> Result<RelPath, NameError> {
        check_name(name)?;
        Ok(RelPath(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last component: the file name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// A name without folder (`auto-….wav`, not `2024-05/auto-….wav`).
    pub fn is_bare(&self) -> bool {
        !self.0.contains('/')
    }

    /// `self/other`, still a valid relative path when short enough.
    pub fn join(&self, other: &RelPath) -> Result<RelPath, NameError> {
        RelPath::parse(&format!("{}/{}", self.0, other.0))
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rules of [`RelPath`].
pub fn check_name(name: &str) -> Result<(), NameError> {
    // Byte rules first: they hold whatever the structure is.
    for b in name.bytes() {
        match b {
            0 => return Err(NameError::Nul),
            b'\\' => return Err(NameError::Backslash),
            b'%' => return Err(NameError::Percent),
            b'"' => return Err(NameError::Quote),
            b if b < 0x20 || b == 0x7f => return Err(NameError::Control),
            _ => {}
        }
    }
    // Unicode control characters too (C1, line/paragraph separators): no
    // recording has them and they would forge log lines or headers.
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err(NameError::Control);
    }
    if name.starts_with('/') {
        return Err(NameError::Absolute);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    let mut depth = 0;
    for c in name.split('/') {
        depth += 1;
        if c.is_empty() {
            return Err(NameError::EmptyComponent);
        }
        if c.starts_with('.') {
            return Err(NameError::Dot);
        }
        if c.len() > MAX_COMPONENT {
            return Err(NameError::TooLong);
        }
    }
    if depth > MAX_DEPTH {
        return Err(NameError::TooDeep);
    }
    Ok(())
}

/// Most names (or directories) one request may carry.
pub const MAX_ITEMS: usize = 1000;

/// The items of an `@`-separated list (`,` too for directories, as one client
/// documents), empty items (a trailing `@`) dropped, repeats dropped.
fn items(param: &'static str, value: &str, separators: &[char]) -> Result<Vec<RelPath>, RecError> {
    let mut out: Vec<RelPath> = Vec::new();
    for item in value.split(separators).filter(|s| !s.is_empty()) {
        let name = RelPath::parse(item).map_err(|error| RecError::Name {
            param,
            name: item.chars().take(128).collect(),
            error,
        })?;
        if !out.contains(&name) {
            if out.len() == MAX_ITEMS {
                return Err(RecError::TooMany(param));
            }
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err(RecError::Empty(param));
    }
    Ok(out)
}

/// The request of the `filedir` and `filename` parameters (absent = `None`).
pub fn parse_request(
    filedir: Option<&str>,
    filename: Option<&str>,
) -> Result<RecRequest, RecError> {
    let dirs = filedir
        .map(|v| items("filedir", v, &['@', ',']))
        .transpose()?;
    let names = filename.map(|v| items("filename", v, &['@'])).transpose()?;
    match (dirs, names) {
        (None, None) => Ok(RecRequest::Directories),
        (Some(dirs), None) => Ok(RecRequest::Files(dirs)),
        (dirs, Some(names)) => {
            let mut dirs = match dirs {
                Some(d) => d,
                None => vec![RelPath(DEFAULT_DIR.to_owned())],
            };
            if dirs.len() != 1 {
                return Err(RecError::SeveralDirs(dirs.len()));
            }
            let dir = dirs.remove(0);
            Ok(RecRequest::Fetch { dir, names })
        }
    }
}

/// The Unix time a recording name carries: the first run of exactly ten
/// digits (`auto-1717093784-1001-2100.wav`,
/// `meetme-conf-rec-6300-1411501234.0-….wav`), if there is one. Ten digits
/// cover 2001-09-09 to 2286, so a short extension number is never taken.
pub fn name_epoch(name: &str) -> Option<i64> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 10 {
                return name[start..i].parse().ok();
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The `YYYY-MM` folders a recording made at `epoch` can be in: the month in
/// `tz` (where the dialplan's `STRFTIME` puts it) first, then the months of
/// every other UTC offset (−12 h to +14 h), in case Asterisk's clock zone
/// differs from `pbx.timezone`. At most three, without repeats.
pub fn month_folders(epoch: i64, tz: &jiff::tz::TimeZone) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |ts: Option<jiff::Timestamp>, zone: &jiff::tz::TimeZone| {
        if let Some(ts) = ts {
            let dt = zone.to_datetime(ts);
            let m = format!("{:04}-{:02}", dt.year(), dt.month());
            if !out.contains(&m) {
                out.push(m);
            }
        }
    };
    let utc = jiff::tz::TimeZone::UTC;
    push(jiff::Timestamp::from_second(epoch).ok(), tz);
    let at = |secs: Option<i64>| secs.and_then(|s| jiff::Timestamp::from_second(s).ok());
    push(at(epoch.checked_sub(12 * 3600)), &utc);
    push(at(epoch.checked_add(14 * 3600)), &utc);
    out
}

/// `true` for a `YYYY-MM` folder name (where the dialplan puts recordings).
pub fn is_month_folder(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[5..].iter().all(u8::is_ascii_digit)
        && name[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
}

/// The shape of the `filename` column of a file listing (case 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listing {
    /// The UCM630x (1.0.x firmware): the path relative to the directory,
    /// `2024-05/auto-1717093784-1001-2100.wav`, equal to a CDR's `recordfiles`.
    #[default]
    Month,
    /// The UCM62xx / UCM6100 guide: bare names, `auto-1414771234-1000-1004.wav`,
    /// which clients split on `-` and send back as they are.
    Flat,
}

impl Listing {
    /// `"month"` or `"flat"` (the configuration's values).
    pub fn parse(value: &str) -> Option<Listing> {
        match value {
            "month" => Some(Listing::Month),
            "flat" => Some(Listing::Flat),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Listing::Month => "month",
            Listing::Flat => "flat",
        }
    }
}

/// The bare name a flat listing shows for `rel` when `rel` is a file
/// directly in a `YYYY-MM` folder (`2024-05/auto-….wav` → `auto-….wav`);
/// `None` for anything else (already bare, or in another sub-folder such as
/// voicemail's `1000/INBOX/msg0000.wav`, which a flat listing shows as it is).
pub fn month_file(rel: &str) -> Option<(&str, &str)> {
    let (month, name) = rel.split_once('/')?;
    (is_month_folder(month) && !name.is_empty() && !name.contains('/')).then_some((month, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn the_four_cases_of_the_spec() {
        assert_eq!(parse_request(None, None), Ok(RecRequest::Directories));
        assert_eq!(
            parse_request(Some("monitor@meetme@voicemail/default"), None),
            Ok(RecRequest::Files(vec![
                rel("monitor"),
                rel("meetme"),
                rel("voicemail/default")
            ]))
        );
        assert_eq!(
            parse_request(
                Some("meetme"),
                Some("meetme-conf-rec-6300-1411501234.0-6300.wav")
            ),
            Ok(RecRequest::Fetch {
                dir: rel("meetme"),
                names: vec![rel("meetme-conf-rec-6300-1411501234.0-6300.wav")]
            })
        );
        assert_eq!(
            parse_request(
                None,
                Some("auto-1414771234-1000-1004.wav@auto-1414775678-1001-1003.wav")
            ),
            Ok(RecRequest::Fetch {
                dir: rel("monitor"),
                names: vec![
                    rel("auto-1414771234-1000-1004.wav"),
                    rel("auto-1414775678-1001-1003.wav")
                ]
            })
        );
    }

    #[test]
    fn names_as_clients_send_them() {
        // recordfiles as stored: relative path, trailing @; several files.
        let r = parse_request(
            Some("monitor"),
            Some("2024-05/auto-1717093784-1001-2100.wav@2024-05/auto-1717093790-1001-2100.wav@"),
        )
        .unwrap();
        let RecRequest::Fetch { names, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(names.len(), 2);
        assert_eq!(names[0].file_name(), "auto-1717093784-1001-2100.wav");
        assert!(!names[0].is_bare());
        // bare name with a trailing @; repeats count once.
        let r = parse_request(None, Some("auto-1.wav@auto-1.wav@")).unwrap();
        assert_eq!(
            r,
            RecRequest::Fetch {
                dir: rel("monitor"),
                names: vec![rel("auto-1.wav")]
            }
        );
        // filedir lists may use commas (one client documents them).
        assert_eq!(
            parse_request(Some("monitor,queue@"), None),
            Ok(RecRequest::Files(vec![rel("monitor"), rel("queue")]))
        );
    }

    #[test]
    fn malformed_requests() {
        assert_eq!(
            parse_request(None, Some("")),
            Err(RecError::Empty("filename"))
        );
        assert_eq!(
            parse_request(None, Some("@@")),
            Err(RecError::Empty("filename"))
        );
        assert_eq!(
            parse_request(Some(""), None),
            Err(RecError::Empty("filedir"))
        );
        assert_eq!(
            parse_request(Some("monitor@queue"), Some("a.wav")),
            Err(RecError::SeveralDirs(2))
        );
        let many = vec!["a"; MAX_ITEMS + 1]
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{a}{i}"))
            .collect::<Vec<_>>()
            .join("@");
        assert_eq!(
            parse_request(None, Some(&many)),
            Err(RecError::TooMany("filename"))
        );
        assert!(matches!(
            parse_request(Some("../etc"), None),
            Err(RecError::Name {
                param: "filedir",
                error: NameError::Dot,
                ..
            })
        ));
        assert!(matches!(
            parse_request(None, Some("ok.wav@../../etc/passwd")),
            Err(RecError::Name {
                param: "filename",
                error: NameError::Dot,
                ..
            })
        ));
    }

    #[test]
    fn every_traversal_form_is_refused() {
        let cases: &[(&str, NameError)] = &[
            ("..", NameError::Dot),
            ("../x.wav", NameError::Dot),
            ("2024-05/../../x.wav", NameError::Dot),
            ("a/./b.wav", NameError::Dot),
            (".", NameError::Dot),
            (".hidden.wav", NameError::Dot),
            ("/etc/passwd", NameError::Absolute),
            ("//etc/passwd", NameError::Absolute),
            ("%2e%2e%2fetc%2fpasswd", NameError::Percent),
            ("%2E%2E/x", NameError::Percent),
            ("%252e%252e%252f", NameError::Percent),
            ("..%2f..%2fetc", NameError::Percent),
            ("a%00.wav", NameError::Percent),
            ("a\0.wav", NameError::Nul),
            ("..\\..\\etc\\passwd", NameError::Backslash),
            ("a\\b.wav", NameError::Backslash),
            ("a//b.wav", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("a\nb.wav", NameError::Control),
            ("a\rb.wav", NameError::Control),
            ("a\u{85}b.wav", NameError::Control),
            ("a\u{2028}b.wav", NameError::Control),
            ("a\"b.wav", NameError::Quote),
            ("", NameError::EmptyComponent),
        ];
        for (name, want) in cases {
            assert_eq!(check_name(name), Err(*want), "{name:?}");
        }
        assert_eq!(check_name(&"a".repeat(256)), Err(NameError::TooLong));
        assert_eq!(
            check_name(&["a"; MAX_DEPTH + 1].join("/")),
            Err(NameError::TooDeep)
        );
        assert_eq!(
            check_name(&vec!["a".repeat(200); 6].join("/")),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn real_names_pass() {
        for name in [
            "auto-1717093784-1001-2100.wav",
            "2024-05/auto-1717093784-+15551234567-1000.wav",
            "meetme-conf-rec-6300-1411501234.0-6300.wav",
            "voicemail/default",
            "1000/INBOX/msg0000.WAV",
            "auto-1717093784-anonymous-*97#.gsm",
            "a..b.wav",
            "Ünïcødé name.wav",
            &["a"; MAX_DEPTH].join("/"),
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        let r = rel("2024-05");
        assert_eq!(r.join(&rel("x.wav")).unwrap().as_str(), "2024-05/x.wav");
        assert_eq!(rel("a/b/c.wav").components().count(), 3);
        assert_eq!(rel("c.wav").file_name(), "c.wav");
        assert!(rel("c.wav").is_bare());
    }

    #[test]
    fn the_epoch_in_a_name() {
        assert_eq!(
            name_epoch("auto-1717093784-1001-2100.wav"),
            Some(1_717_093_784)
        );
        assert_eq!(
            name_epoch("meetme-conf-rec-6300-1411501234.0-6300.wav"),
            Some(1_411_501_234)
        );
        // an 11-digit caller number is not an epoch; the epoch after it is
        assert_eq!(
            name_epoch("x-15551234567-1717093784.wav"),
            Some(1_717_093_784)
        );
        assert_eq!(name_epoch("msg0000.wav"), None);
        assert_eq!(name_epoch("auto-171709378-1.wav"), None);
    }

    #[test]
    fn month_folders_cover_every_offset() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        // 2024-05-31 23:30 UTC = 2024-06-01 01:30 in Berlin.
        let t = 1_717_198_200;
        assert_eq!(month_folders(t, &berlin), ["2024-06", "2024-05"]);
        assert_eq!(
            month_folders(t, &jiff::tz::TimeZone::UTC),
            ["2024-05", "2024-06"]
        );
        // mid-month: one folder whatever the zone
        assert_eq!(
            month_folders(1_717_093_784 - 15 * 86_400, &berlin),
            ["2024-05"]
        );
        assert!(month_folders(i64::MAX, &berlin).is_empty());
    }

    #[test]
    fn month_folder_names() {
        assert!(is_month_folder("2024-05"));
        assert!(is_month_folder("1999-12"));
        assert!(!is_month_folder("2024-13"));
        assert!(!is_month_folder("2024-5"));
        assert!(!is_month_folder("2024_05"));
        assert!(!is_month_folder("monitor"));
    }

    #[test]
    fn listing_profiles_and_the_flat_name_of_a_path() {
        assert_eq!(Listing::parse("month"), Some(Listing::Month));
        assert_eq!(Listing::parse("flat"), Some(Listing::Flat));
        for bad in ["", "Flat", "FLAT", " flat", "ucm62xx", "monthly"] {
            assert_eq!(Listing::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Listing::default(), Listing::Month);
        for l in [Listing::Month, Listing::Flat] {
            assert_eq!(Listing::parse(l.as_str()), Some(l));
        }
        assert_eq!(
            month_file("2024-05/auto-1717093784-1001-2100.wav"),
            Some(("2024-05", "auto-1717093784-1001-2100.wav"))
        );
        // Not in a month folder: shown as it is.
        for other in [
            "auto-1717093784-1001-2100.wav",
            "1000/INBOX/msg0000.wav",
            "2024-05/sub/x.wav",
            "2024-13/x.wav",
            "2024-5/x.wav",
            "24-05/x.wav",
            "x/2024-05/y.wav",
        ] {
            assert_eq!(month_file(other), None, "{other}");
        }
    }
}
