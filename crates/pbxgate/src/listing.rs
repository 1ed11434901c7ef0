//! The list conventions of spec §2.5, shared by every `list*` action:
//! `page` (1-based), `item_num` (page size), `sidx` (sort field), `sord`
//! (`asc`/`desc`), `options` (the fields to return); the answer carries the
//! list under its key with `total_item`, `total_page` and `page`.

use serde_json::{Map, Value, json};
use ucm::{Params, Status};

use crate::error::ActionError;

/// The list parameters of spec §2.5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// 1-based.
    pub page: u64,
    /// `None`: everything on one page.
    pub item_num: Option<u64>,
    pub sidx: Option<String>,
    pub desc: bool,
    /// Fields to return (`options`); `None`: all.
    pub fields: Option<Vec<String>>,
}

impl Paging {
    /// `page`/`item_num` must be positive integers when given (-15 otherwise);
    /// `sord` is `desc` or anything else for ascending.
    pub fn from_params(params: &Params) -> Result<Paging, ActionError> {
        let positive = |key: &str| match params.uint(key) {
            Ok(None) => Ok(None),
            Ok(Some(n)) if n > 0 => Ok(Some(n)),
            _ => Err(ActionError::Explained(
                Status::InvalidValue,
                format!("{key} must be a positive integer"),
            )),
        };
        let text = |key: &str| {
            params
                .str(key)
                .map_err(|_| ActionError::Status(Status::InvalidParameters))
                .map(|v| v.filter(|v| !v.is_empty()))
        };
        Ok(Paging {
            page: positive("page")?.unwrap_or(1),
            item_num: positive("item_num")?,
            sidx: text("sidx")?,
            desc: text("sord")?.is_some_and(|s| s.eq_ignore_ascii_case("desc")),
            fields: text("options")?.map(|o| {
                o.split(',')
                    .map(|f| f.trim().to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            }),
        })
    }
}

/// Compares two item values: numerically when both are numbers, else as text.
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    // Numbers (`trunk_index`, `newmsg`, …) sort as numbers too.
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let (a, b) = (text(a), text(b));
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(&b),
    }
}

/// Sorts, pages and trims `items` into the response object under `key`.
/// An `sidx` that is not a field is ignored (the order stays oldest first).
pub fn page(mut items: Vec<Map<String, Value>>, key: &str, p: &Paging) -> Value {
    if let Some(sidx) = &p.sidx
        && items.first().is_some_and(|i| i.contains_key(sidx))
    {
        items.sort_by(|x, y| compare(x.get(sidx), y.get(sidx)));
    }
    if p.desc {
        items.reverse();
    }
    let total = items.len() as u64;
    let size = p.item_num.unwrap_or(total.max(1));
    let total_page = total.div_ceil(size);
    let skip = usize::try_from(p.page.saturating_sub(1).saturating_mul(size)).unwrap_or(usize::MAX);
    let take = usize::try_from(size).unwrap_or(usize::MAX);
    let list: Vec<Value> = items
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|mut item| {
            if let Some(fields) = &p.fields {
                item.retain(|k, _| fields.iter().any(|f| f == k));
            }
            Value::Object(item)
        })
        .collect();
    let mut out = Map::new();
    out.insert(key.to_owned(), Value::Array(list));
    out.insert("total_item".into(), json!(total));
    out.insert("total_page".into(), json!(total_page));
    out.insert("page".into(), json!(p.page));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn items(n: u64) -> Vec<Map<String, Value>> {
        (1..=n)
            .map(|i| {
                let mut m = Map::new();
                m.insert(
                    "extension".into(),
                    json!(format!("{}", 1000 + (i * 7) % 10)),
                );
                m.insert("fullname".into(), json!(format!("name {i}")));
                m
            })
            .collect()
    }

    #[test]
    fn pages_sort_and_trim_fields() {
        let p = Paging {
            page: 2,
            item_num: Some(3),
            sidx: Some("extension".into()),
            desc: true,
            fields: Some(vec!["extension".into()]),
        };
        let v = page(items(8), "account", &p);
        assert_eq!(v["total_item"], 8);
        assert_eq!(v["total_page"], 3);
        assert_eq!(v["page"], 2);
        let got: Vec<&str> = v["account"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["extension"].as_str().unwrap())
            .collect();
        // 1007 1004 1001 1008 1005 1002 1009 1006 sorted desc: 1009 1008 1007 | 1006 1005 1004 | ...
        assert_eq!(got, vec!["1006", "1005", "1004"]);
        assert!(v["account"][0].get("fullname").is_none());
    }
}
