//! The filter form of the CDR page: the cdrapi's parameters under their own
//! names, each checked alone with the cdrapi's rules, so that every invalid
//! field gets the cdrapi's own message beside it, and the valid whole becomes
//! the [`CdrQuery`] the cdrapi would run.

use ucm::cdrapi::{CdrQuery, Mode, parse_params, query_pairs_lenient};

use crate::admin::page::escape;

/// Calls per page when `numRecords` is not given, and the sizes offered.
pub const DEFAULT_PAGE: u32 = 50;
const PAGE_SIZES: [u32; 6] = [25, 50, 100, 250, 500, 1000];

enum Input {
    Text(&'static str),
    Select(&'static [(&'static str, &'static str)]),
}

/// A filter field: the cdrapi parameter name, its label, input and help.
struct Field {
    name: &'static str,
    label: &'static str,
    input: Input,
    help: &'static str,
}

/// The cdrapi filters, in form order.
const FILTERS: &[Field] = &[
    Field {
        name: "startTime",
        label: "From",
        input: Input::Text("2026-03-28 08:00"),
        help: "YYYY-MM-DD [HH:MM[:SS]], Unix seconds or now; PBX time unless an offset (Z, +02:00) is given",
    },
    Field {
        name: "endTime",
        label: "To",
        input: Input::Text("now"),
        help: "inclusive, same forms",
    },
    Field {
        name: "timeFilterType",
        label: "The times bound",
        input: Input::Select(&[
            ("Start", "the start of each leg"),
            ("End", "the end of each leg"),
        ]),
        help: "timeFilterType: Start or End",
    },
    Field {
        name: "caller",
        label: "Caller",
        input: Input::Text("1001,1002-1010,+4930@"),
        help: "src; comma list of numbers, ranges lo-hi, @ (any run) and _ (one character)",
    },
    Field {
        name: "callee",
        label: "Callee",
        input: Input::Text("2000"),
        help: "dst; the same patterns",
    },
    Field {
        name: "answeredby",
        label: "Answered by",
        input: Input::Text("1000"),
        help: "dstanswer; the same patterns",
    },
    Field {
        name: "callerName",
        label: "Caller name",
        input: Input::Text("Doe, J@"),
        help: "the whole name; @ and _ as wildcards",
    },
    Field {
        name: "minDur",
        label: "Talk time from (s)",
        input: Input::Text("e.g. 5"),
        help: "billsec, inclusive",
    },
    Field {
        name: "maxDur",
        label: "Talk time to (s)",
        input: Input::Text("e.g. 600"),
        help: "billsec, inclusive",
    },
];

/// Every cdrapi parameter the page reads (the export adds `format`).
const CDRAPI: [&str; 11] = [
    "startTime",
    "endTime",
    "timeFilterType",
    "caller",
    "callee",
    "answeredby",
    "callerName",
    "minDur",
    "maxDur",
    "numRecords",
    "offset",
];

/// The page's parameters, read and checked.
#[derive(Debug, Default)]
pub struct Form {
    /// What each field shows (the value sent, lists joined by commas).
    values: Vec<(&'static str, String)>,
    /// The cdrapi's message for each invalid field.
    errors: Vec<(&'static str, String)>,
    /// Why the request as a whole cannot be read (bad `%` escapes).
    pub problem: Option<String>,
    /// The cdrapi query, when every field is valid.
    pub query: Option<CdrQuery>,
    pub page_size: u32,
    pub offset: u64,
    pub newest_first: bool,
    /// `format`, for the export.
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn value(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn error(&self, name: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| e.as_str())
    }

    pub fn errors(&self) -> impl Iterator<Item = &(&'static str, String)> {
        self.errors.iter()
    }

    /// The messages of parameters that have no field (`offset`, set by the
    /// page links), shown above the results instead.
    pub fn unplaced_errors(&self) -> String {
        self.errors
            .iter()
            .filter(|(n, _)| !has_field(n))
            .map(|(n, _)| error_html(self, n))
            .collect()
    }

    /// The cdrapi parameters of the request plus `format`, as sent (for the
    /// export, which the cdrapi's own rules read again).
    pub fn export_pairs(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case("format") || CDRAPI.iter().any(|c| c.eq_ignore_ascii_case(n))
            })
            .cloned()
            .collect()
    }

    /// The filter fields that are set, as a query string.
    fn filter_query(&self) -> Vec<(&str, String)> {
        FILTERS
            .iter()
            .filter_map(|f| {
                let v = self.value(f.name);
                (!v.trim().is_empty()).then(|| (f.name, v.to_owned()))
            })
            .collect()
    }

    /// `/admin/cdr?…` with the filter, page size and order, at `offset`.
    pub fn page_href(&self, offset: u64) -> String {
        let mut q = self.filter_query();
        if self.page_size != DEFAULT_PAGE {
            q.push(("numRecords", self.page_size.to_string()));
        }
        if !self.newest_first {
            q.push(("order", "oldest".into()));
        }
        if offset > 0 {
            q.push(("offset", offset.to_string()));
        }
        format!("/admin/cdr?{}", encode_query(&q))
    }

    /// `/admin/cdr/export?…`: the whole filter (no page) in `format`.
    pub fn export_href(&self, format: &str) -> String {
        let mut q = self.filter_query();
        q.push(("format", format.to_owned()));
        format!("/admin/cdr/export?{}", encode_query(&q))
    }
}

/// Reads the query string of the page (or of the export). An empty one is
/// the first visit: the last seven days, from `default_start`.
pub fn parse(raw: &str, default_start: impl FnOnce() -> String) -> Form {
    let mut form = Form {
        page_size: DEFAULT_PAGE,
        newest_first: true,
        ..Form::default()
    };
    let mut pairs = match query_pairs_lenient(raw) {
        Ok(p) => p,
        Err(e) => {
            form.problem = Some(format!("the address cannot be read: {e}"));
            return form;
        }
    };
    if pairs.is_empty() {
        pairs.push(("startTime".into(), default_start()));
    }
    let given = |name: &str| -> Vec<(String, String)> {
        pairs
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    };
    for name in CDRAPI {
        let sent = given(name);
        let shown = if matches!(name, "caller" | "callee") {
            let items: Vec<&str> = sent
                .iter()
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
                .collect();
            items.join(",")
        } else {
            sent.last().map(|(_, v)| v.clone()).unwrap_or_default()
        };
        // Each alone through the cdrapi: its message names the parameter.
        if !sent.is_empty()
            && let Err(e) = parse_params(&sent, Mode::New)
        {
            form.errors.push((name, e.reason));
        }
        form.values.push((name, shown));
    }
    match given("order")
        .last()
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("newest") => {}
        Some("oldest") => form.newest_first = false,
        Some(other) => form.errors.push((
            "order",
            format!(
                "order: expected newest or oldest, got {:?}",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
    form.values.push((
        "order",
        if form.newest_first {
            "newest"
        } else {
            "oldest"
        }
        .into(),
    ));
    if form.errors.is_empty() {
        let cdrapi: Vec<(String, String)> = pairs
            .iter()
            .filter(|(n, _)| CDRAPI.iter().any(|c| c.eq_ignore_ascii_case(n)))
            .cloned()
            .collect();
        match parse_params(&cdrapi, Mode::New) {
            Ok(q) => {
                if !form.value("numRecords").trim().is_empty() {
                    if q.num_records == 0 {
                        form.errors.push((
                            "numRecords",
                            "numRecords: 0 shows no calls; a page holds 1 to 1000".into(),
                        ));
                    }
                    form.page_size = q.num_records;
                }
                form.offset = q.offset;
                if form.errors.is_empty() {
                    form.query = Some(q);
                }
            }
            Err(e) => form.problem = Some(e.reason),
        }
    }
    form.pairs = pairs;
    form
}

/// The form, its values and the cdrapi's message beside each invalid field.
pub fn render(form: &Form) -> String {
    let mut out = String::from(
        "<form method=\"get\" action=\"/admin/cdr\" class=\"cdr-filters\" id=\"cdr-filters\">\
         <div class=\"grid\">",
    );
    for f in FILTERS {
        out.push_str(&field(form, f.name, f.label, &f.input, f.help));
    }
    out.push_str("</div><div class=\"row cdr-actions\">");
    let mut sizes: Vec<u32> = PAGE_SIZES.to_vec();
    if !sizes.contains(&form.page_size) && form.page_size > 0 {
        sizes.push(form.page_size);
        sizes.sort_unstable();
    }
    let sizes: Vec<(String, String)> = sizes
        .iter()
        .map(|s| (s.to_string(), format!("{s} calls per page")))
        .collect();
    let sizes: Vec<(&str, &str)> = sizes
        .iter()
        .map(|(v, l)| (v.as_str(), l.as_str()))
        .collect();
    out.push_str(&select_field(
        form,
        "numRecords",
        "Page size",
        &sizes,
        &form.page_size.to_string(),
    ));
    out.push_str(&select_field(
        form,
        "order",
        "Order",
        &[("newest", "newest first"), ("oldest", "oldest first")],
        form.value("order"),
    ));
    out.push_str(
        "<div class=\"cdr-buttons\"><button type=\"submit\">Search</button> \
         <a class=\"button secondary\" href=\"/admin/cdr\">Reset</a></div></div></form>",
    );
    out
}

/// Whether the form shows a field for parameter `name`.
fn has_field(name: &str) -> bool {
    FILTERS.iter().any(|f| f.name == name) || matches!(name, "numRecords" | "order")
}

fn described(name: &str, help: bool, error: bool) -> String {
    let mut ids = Vec::new();
    if help {
        ids.push(format!("h-{name}"));
    }
    if error {
        ids.push(format!("e-{name}"));
    }
    if ids.is_empty() {
        String::new()
    } else {
        format!(" aria-describedby=\"{}\"", ids.join(" "))
    }
}

fn error_html(form: &Form, name: &str) -> String {
    form.error(name).map_or(String::new(), |e| {
        format!(
            "<span class=\"field-error\" id=\"e-{name}\" role=\"alert\">{}</span>",
            escape(e)
        )
    })
}

fn field(form: &Form, name: &str, label: &str, input: &Input, help: &str) -> String {
    let invalid = form.error(name).is_some();
    let control = match input {
        Input::Text(placeholder) => format!(
            "<input type=\"text\" id=\"f-{name}\" name=\"{name}\" value=\"{}\" placeholder=\"{}\" \
             autocomplete=\"off\" spellcheck=\"false\"{}{}>",
            escape(form.value(name)),
            escape(placeholder),
            described(name, true, invalid),
            if invalid {
                " aria-invalid=\"true\""
            } else {
                ""
            },
        ),
        Input::Select(options) => {
            // The cdrapi reads any case; the form shows its canonical spelling.
            let current = options
                .iter()
                .find(|(v, _)| v.eq_ignore_ascii_case(form.value(name).trim()))
                .map_or(options[0].0, |(v, _)| *v);
            select(
                name,
                options,
                current,
                described(name, true, invalid),
                invalid,
            )
        }
    };
    format!(
        "<div class=\"cdr-field{}\"><label for=\"f-{name}\">{}</label>{control}\
         <p class=\"help\" id=\"h-{name}\">{}</p>{}</div>",
        if invalid { " invalid" } else { "" },
        escape(label),
        escape(help),
        error_html(form, name),
    )
}

fn select_field(
    form: &Form,
    name: &str,
    label: &str,
    options: &[(&str, &str)],
    current: &str,
) -> String {
    let invalid = form.error(name).is_some();
    format!(
        "<div class=\"cdr-field{}\"><label for=\"f-{name}\">{}</label>{}{}</div>",
        if invalid { " invalid" } else { "" },
        escape(label),
        select(
            name,
            options,
            current,
            described(name, false, invalid),
            invalid
        ),
        error_html(form, name),
    )
}

fn select(
    name: &str,
    options: &[(&str, &str)],
    current: &str,
    described: String,
    invalid: bool,
) -> String {
    let mut out = format!(
        "<select id=\"f-{name}\" name=\"{name}\"{described}{}>",
        if invalid {
            " aria-invalid=\"true\""
        } else {
            ""
        }
    );
    for (value, text) in options {
        out.push_str(&format!(
            "<option value=\"{}\"{}>{}</option>",
            escape(value),
            if *value == current { " selected" } else { "" },
            escape(text)
        ));
    }
    out.push_str("</select>");
    out
}

/// `a=1&b=x%20y`: every byte but the unreserved ones percent-encoded (the
/// cdrapi's decoder reads `+` as a space, so it is encoded too).
pub fn encode_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn form(raw: &str) -> Form {
        parse(raw, || "2026-03-22".into())
    }

    #[test]
    fn the_first_visit_shows_the_last_seven_days() {
        let f = form("");
        assert_eq!(f.value("startTime"), "2026-03-22");
        assert!(f.query.as_ref().unwrap().start_time.is_some());
        assert_eq!((f.page_size, f.offset, f.newest_first), (50, 0, true));
        assert_eq!(f.page_href(0), "/admin/cdr?startTime=2026-03-22");
        // A submitted form with every field empty means everything.
        let f = form("startTime=&caller=&numRecords=50&order=newest");
        let q = f.query.unwrap();
        assert!(q.start_time.is_none() && q.caller.is_empty());
    }

    #[test]
    fn every_invalid_field_gets_the_cdrapis_message() {
        let f = form(
            "caller=10+01&callee=5300,,5301&minDur=1.5&maxDur=x&startTime=2026-02-30&\
             timeFilterType=Middle&numRecords=ten&offset=-1&order=sideways&callerName=a%01",
        );
        assert!(f.query.is_none());
        let want = [
            ("caller", "caller: disallowed character ' ' in \"10 01\""),
            ("callee", "callee: empty item"),
            ("minDur", "minDur: not a number: \"1.5\""),
            ("maxDur", "maxDur: not a number: \"x\""),
            ("startTime", "startTime: "),
            ("timeFilterType", "timeFilterType: expected Start or End"),
            ("numRecords", "numRecords: not a number: \"ten\""),
            ("offset", "offset: not a number: \"-1\""),
            (
                "order",
                "order: expected newest or oldest, got \"sideways\"",
            ),
            ("callerName", "callerName: disallowed character"),
        ];
        for (name, start) in want {
            let e = f.error(name).unwrap_or_else(|| panic!("{name}"));
            assert!(e.starts_with(start), "{name}: {e}");
        }
        assert_eq!(f.errors().count(), want.len());
        // The values are shown back as sent.
        assert_eq!(f.value("caller"), "10 01");
        let html = render(&f);
        assert!(html.contains("id=\"e-caller\" role=\"alert\">caller: disallowed character &#39; &#39; in &quot;10 01&quot;</span>"), "{html}");
        assert!(html.contains("value=\"10 01\""));
        assert!(html.contains("aria-invalid=\"true\""));
    }

    #[test]
    fn a_page_of_zero_is_refused_and_sizes_over_1000_clamped() {
        let f = form("numRecords=0");
        assert!(f.query.is_none());
        assert!(f.error("numRecords").unwrap().contains("1 to 1000"));
        let f = form("numRecords=5000&offset=100");
        assert_eq!((f.page_size, f.offset), (1000, 100));
    }

    #[test]
    fn links_keep_the_filter_and_encode_it() {
        let f = form(
            "caller=%2B49@&caller=1001&callerName=Doe,+J%C3%BCrgen&numRecords=25&order=oldest&offset=50&format=xml",
        );
        assert_eq!(f.value("caller"), "+49@,1001");
        let href = f.page_href(75);
        assert_eq!(
            href,
            "/admin/cdr?caller=%2B49%40%2C1001&callerName=Doe%2C%20J%C3%BCrgen&numRecords=25&order=oldest&offset=75"
        );
        // The link reads back as the same filter.
        let again = form(href.split_once('?').unwrap().1);
        assert_eq!(
            again.query,
            f.query.clone().map(|q| CdrQuery { offset: 75, ..q })
        );
        assert_eq!(
            f.export_href("csv"),
            "/admin/cdr/export?caller=%2B49%40%2C1001&callerName=Doe%2C%20J%C3%BCrgen&format=csv"
        );
        assert_eq!(
            form("a=%zz").problem.unwrap(),
            "the address cannot be read: invalid percent-encoding in \"%zz\""
        );
    }
}
