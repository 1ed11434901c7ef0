//! Every key the configuration accepts, read from the parser itself (the
//! serde structs), so that the documentation tests cannot miss a new key.

use serde::Deserialize;
use toml::{Table, Value};

use super::Config;

const PROBE: &str = "zz_probe";

/// `(section, key)` for every key, in the parser's order: `("web", "listen")`,
/// `("https_api.users", "password")` for the keys of each
/// `[[https_api.users]]`, `("recordings", "dirs")` for a table of free names.
pub fn known_keys() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for section in fields(&[], false) {
        walk(&[section], false, &mut out);
    }
    out
}

fn walk(path: &[String], array: bool, out: &mut Vec<(String, String)>) {
    let section = path.join(".");
    for field in fields(path, array) {
        let mut sub = path.to_vec();
        sub.push(field.clone());
        // A struct rejects the probe key by name; a map or a scalar does not.
        if !array && rejects_probe(&sub, probe_table()) {
            walk(&sub, false, out);
        } else if !array && rejects_probe(&sub, Value::Array(vec![probe_table()])) {
            walk(&sub, true, out);
        } else {
            out.push((section.clone(), field));
        }
    }
}

fn probe_table() -> Value {
    let mut t = Table::new();
    t.insert(PROBE.into(), Value::Integer(1));
    Value::Table(t)
}

/// The parser's error for a configuration holding only `value` at `path`.
fn error_at(path: &[String], value: Value) -> Option<String> {
    let mut value = value;
    for seg in path.iter().rev() {
        let mut t = Table::new();
        t.insert(seg.clone(), value);
        value = Value::Table(t);
    }
    Config::deserialize(value).err().map(|e| e.to_string())
}

fn rejects_probe(path: &[String], value: Value) -> bool {
    error_at(path, value).is_some_and(|m| m.starts_with(&format!("unknown field `{PROBE}`")))
}

/// The field names of the struct at `path` (each entry of the list at
/// `path` when `array`), from its unknown-field error.
fn fields(path: &[String], array: bool) -> Vec<String> {
    let probe = probe_table();
    let (at, value) = if array {
        (path.to_vec(), Value::Array(vec![probe]))
    } else {
        let mut p = path.to_vec();
        p.push(PROBE.into());
        (p, Value::Integer(1))
    };
    let Some(message) = error_at(&at, value) else {
        return Vec::new();
    };
    let Some((_, expected)) = message.split_once(", expected ") else {
        return Vec::new();
    };
    let expected = expected.lines().next().unwrap_or("");
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}
