//! recapi request parameters and the name rules: parsing never panics, and
//! every name that passes stays lexically inside any folder it is joined to.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use ucm::recapi::{RecRequest, RelPath, check_name, month_folders, name_epoch, parse_request};

fn assert_contained(rel: &RelPath) {
    let s = rel.as_str();
    assert!(!s.is_empty() && !s.starts_with('/'));
    assert!(!s.contains(['\0', '\\', '%', '"']), "{s:?}");
    let root = Path::new("/srv/recordings");
    let joined = root.join(s);
    assert!(joined.starts_with(root), "{s:?}");
    for c in joined.strip_prefix(root).unwrap_or(&joined).components() {
        assert!(matches!(c, Component::Normal(_)), "{s:?}: {c:?}");
    }
    for c in rel.components() {
        assert!(!c.is_empty() && !c.starts_with('.'), "{s:?}");
    }
    assert_eq!(check_name(s), Ok(()));
}

fuzz_target!(|data: &[u8]| {
    // filedir and filename, split at the first newline; a leading 0x01 / 0x02
    // byte drops one of them.
    let (mode, rest) = data.split_first().map_or((0, data), |(m, r)| (*m, r));
    let text = String::from_utf8_lossy(rest);
    let (dir, name) = text.split_once('\n').unwrap_or((&text, ""));
    let dir = (mode != 1).then_some(dir);
    let name = (mode != 2).then_some(name);

    assert_eq!(check_name(&text).is_ok(), RelPath::parse(&text).is_ok());
    if let Ok(rel) = RelPath::parse(&text) {
        assert_contained(&rel);
    }
    match parse_request(dir, name) {
        Ok(RecRequest::Directories) => assert!(dir.is_none() && name.is_none()),
        Ok(RecRequest::Files(dirs)) => {
            assert!(!dirs.is_empty() && name.is_none());
            dirs.iter().for_each(assert_contained);
        }
        Ok(RecRequest::Fetch { dir, names }) => {
            assert!(!names.is_empty());
            assert_contained(&dir);
            names.iter().for_each(assert_contained);
        }
        Err(_) => {}
    }
    if let Some(epoch) = name_epoch(&text) {
        assert!(text.contains(&format!("{epoch:010}")));
        let tz = jiff::tz::TimeZone::UTC;
        assert!(month_folders(epoch, &tz).len() <= 3);
    }
});
