//! `PBXGATE_<SECTION>__<KEY>=value` overrides a key of the file, e.g.
//! `PBXGATE_HTTPS_API__PASSWORD=...` or `PBXGATE_HTTPS_API__USERS__0__PASSWORD=...`.
//! The value's type is taken from the key's default, so `"123"` stays a string
//! for a password and becomes a number for a port count.

use toml::{Table, Value};

use super::{Config, ConfigError, UserConfig};

pub(super) const PREFIX: &str = "PBXGATE_";

/// Applies the overrides and returns `(dotted key, variable)` for each.
pub(super) fn apply_overrides(
    tree: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let defaults = Value::try_from(Config::default()).map_err(|e| ConfigError::Env {
        var: String::new(),
        message: e.to_string(),
    })?;
    let mut overrides: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && k.contains("__"))
        .collect();
    // Apply in a stable order, list indexes numerically, so that USERS__2
    // exists before USERS__10.
    overrides.sort_by_key(|(k, _)| {
        k.split("__")
            .map(|seg| (seg.parse::<u64>().unwrap_or(u64::MAX), seg.to_owned()))
            .collect::<Vec<_>>()
    });
    let mut applied = Vec::with_capacity(overrides.len());
    for (var, raw) in overrides {
        let path: Vec<String> = var[PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let err = |message: String| ConfigError::Env {
            var: var.clone(),
            message,
        };
        let guide = guide(&defaults, &path)
            .ok_or_else(|| err(format!("`{}` is not a configuration key", path.join("."))))?;
        let value = convert(&guide, &raw).map_err(err)?;
        set(tree, &path, value).map_err(err)?;
        applied.push((dotted(&path), var));
    }
    Ok(applied)
}

/// `https_api.users.0.password` -> `https_api.users[0].password`, as serde names it.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The default value at `path`, used as a type guide.
fn guide(defaults: &Value, path: &[String]) -> Option<Value> {
    let mut cur = defaults.clone();
    let mut i = 0;
    while i < path.len() {
        let seg = &path[i];
        cur = match cur {
            Value::Table(mut t) => t.remove(seg.as_str())?,
            Value::Array(_)
                if seg.parse::<usize>().is_ok() && path[..i].ends_with(&["users".to_owned()]) =>
            {
                if path.first().is_some_and(|s| s == "websockify") {
                    Value::try_from(super::WsUserConfig::default()).ok()?
                } else {
                    Value::try_from(UserConfig::default()).ok()?
                }
            }
            _ => return None,
        };
        i += 1;
    }
    // Only leaves (and whole arrays) can be overridden.
    (!matches!(cur, Value::Table(_))).then_some(cur)
}

fn convert(guide: &Value, raw: &str) -> Result<Value, String> {
    match guide {
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(Value::Boolean(true)),
            "false" | "no" | "0" | "off" => Ok(Value::Boolean(false)),
            // The value is not repeated: it may be a secret set on the wrong variable.
            _ => Err("is not a boolean (true/false)".to_owned()),
        },
        Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| "is not an integer".to_owned()),
        Value::Array(_) => {
            let raw = raw.trim();
            if raw.starts_with('[') {
                // The parser's message only: its Display quotes the text,
                // and a list of users holds passwords.
                let t: Table = toml::from_str(&format!("v = {raw}")).map_err(|e| {
                    format!(
                        "not a TOML array: {}",
                        e.message().trim_end().replace('\n', "; ")
                    )
                })?;
                t.get("v")
                    .cloned()
                    .ok_or_else(|| "not a TOML array".to_owned())
            } else {
                Ok(Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ))
            }
        }
        _ => Err("this key cannot be set from the environment".into()),
    }
}

fn set(tree: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut cur: &mut Table = tree;
    let mut i = 0;
    while i < parents.len() {
        let seg = &parents[i];
        let next = parents.get(i + 1).and_then(|s| s.parse::<usize>().ok());
        match next {
            Some(index) => {
                let arr = cur
                    .entry(seg.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(arr) = arr else {
                    return Err(format!("`{seg}` is not a list in the file"));
                };
                let len = arr.len();
                if index == len {
                    arr.push(Value::Table(Table::new()));
                }
                let Some(Value::Table(t)) = arr.get_mut(index) else {
                    return Err(format!(
                        "`{seg}` has {len} entries; index {index} would leave a gap"
                    ));
                };
                cur = t;
                i += 2;
            }
            None => {
                let entry = cur
                    .entry(seg.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                let Value::Table(t) = entry else {
                    return Err(format!("`{seg}` is not a section in the file"));
                };
                cur = t;
                i += 1;
            }
        }
    }
    cur.insert(last.clone(), value);
    Ok(())
}
