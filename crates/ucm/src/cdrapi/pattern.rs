//! caller / callee / answeredby patterns (spec §4.2).

/// One item of a comma-separated pattern list. A list matches a value when
/// any of its items does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// A plain item: the value equals it exactly.
    Exact(String),
    /// `lo-hi` (exactly one `-`, no `@`/`_`; non-digits in the bounds are
    /// ignored): the value is a non-empty run of ASCII digits whose number,
    /// leading zeros ignored, lies in `lo..=hi`. Bounds are kept as digit
    /// strings without leading zeros (`"0"` for zero), so numbers of any
    /// length compare by (length, text).
    Range { lo: String, hi: String },
    /// An item holding `@` (any run of characters, also none) or `_` (exactly
    /// one character); every other character, `-` included, is literal.
    Wildcard(String),
    /// `0-0`: the value is empty or not all digits.
    NonNumeric,
}

impl Pattern {
    /// Whether `value` (a `src`, `dst`, `dstanswer` or caller name) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(s) => s == value,
            Pattern::Range { lo, hi } => {
                is_digits(value) && {
                    let n = strip_zeros(value);
                    num_le(lo, n) && num_le(n, hi)
                }
            }
            Pattern::Wildcard(p) => wildcard_match(p, value),
            Pattern::NonNumeric => !is_digits(value),
        }
    }
}

/// Parses a caller/callee/answeredby list (repeated parameters already joined
/// with `,`). Malformed lists are errors, not "match nothing": the UCM answers
/// them with an empty result (§4.4), which the caller does from the error.
pub fn parse_list(s: &str) -> Result<Vec<Pattern>, String> {
    if s.is_empty() {
        return Err("empty list".into());
    }
    let list: Vec<Pattern> = s
        .split(',')
        .map(|item| parse_item(item, s))
        .collect::<Result<_, _>>()?;
    let patterns = list
        .iter()
        .filter(|p| !matches!(p, Pattern::Exact(_)))
        .count();
    if patterns > MAX_PATTERN_ITEMS {
        return Err(format!(
            "{patterns} ranges or wildcards in one list (at most {MAX_PATTERN_ITEMS})"
        ));
    }
    Ok(list)
}

/// Most ranges and wildcards one list may hold (exact items are not
/// limited): each is tried on every row the query reads, so this bounds the
/// work one request can ask of the database. Clients page with lists of up
/// to 1000 items.
pub const MAX_PATTERN_ITEMS: usize = 1000;

/// True when any item matches. An empty list matches nothing: "no filter" is
/// decided by the caller, which skips empty lists.
pub fn list_matches(list: &[Pattern], value: &str) -> bool {
    list.iter().any(|p| p.matches(value))
}

/// Longest item of a list (bytes; every allowed character is ASCII). Numbers
/// and caller IDs are far shorter; the bound keeps range widths, SQL literals
/// and padding small whatever a client sends.
pub const MAX_ITEM_LEN: usize = 64;

fn parse_item(item: &str, list: &str) -> Result<Pattern, String> {
    if item.is_empty() {
        return Err(format!(
            "empty item (leading, trailing or double comma) in {}",
            quoted(list)
        ));
    }
    if item.len() > MAX_ITEM_LEN {
        return Err(format!(
            "item longer than {MAX_ITEM_LEN} characters: {}",
            quoted(item)
        ));
    }
    // Caller IDs can be names, hence letters; `+*#.` occur in dialled numbers.
    if let Some(c) = item
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "+*#.@_-".contains(c)))
    {
        return Err(format!("disallowed character {c:?} in {}", quoted(item)));
    }
    if item.contains(['@', '_']) {
        return Ok(Pattern::Wildcard(item.to_owned()));
    }
    let Some((a, b)) = item.split_once('-') else {
        return Ok(Pattern::Exact(item.to_owned()));
    };
    if b.contains('-') {
        return Err(format!("more than one '-' in {}", quoted(item)));
    }
    let bound = |side: &str| {
        let d: String = side.chars().filter(char::is_ascii_digit).collect();
        if d.is_empty() {
            Err(format!("range bound without digits in {}", quoted(item)))
        } else {
            Ok(strip_zeros(&d).to_owned())
        }
    };
    let (lo, hi) = (bound(a)?, bound(b)?);
    // Both bounds zero (`0-0`, also `00-0`) is the UCM's "non-numeric" pattern.
    if lo == "0" && hi == "0" {
        return Ok(Pattern::NonNumeric);
    }
    // An upside-down range is more likely a typo than a request for nothing.
    if !num_le(&lo, &hi) {
        return Err(format!("range bounds reversed in {}", quoted(item)));
    }
    Ok(Pattern::Range { lo, hi })
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Digit string without leading zeros, `"0"` for zero.
fn strip_zeros(d: &str) -> &str {
    match d.trim_start_matches('0') {
        "" => "0",
        t => t,
    }
}

/// `a <= b` for digit strings without leading zeros, of any length.
fn num_le(a: &str, b: &str) -> bool {
    (a.len(), a) <= (b.len(), b)
}

/// Anchored glob match, `@` = any run, `_` = one char. Greedy with a single
/// backtrack point (the last `@`): O(pattern × value), never exponential.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    // (pattern index after the last `@`, value index that `@` has consumed up to)
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = v.get(vi) {
        match p.get(pi) {
            Some('@') => {
                pi += 1;
                star = Some((pi, vi));
            }
            Some(&q) if q == '_' || q == c => {
                pi += 1;
                vi += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    star = Some((sp, sv + 1));
                    pi = sp;
                    vi = sv + 1;
                }
                None => return false,
            },
        }
    }
    p.iter().skip(pi).all(|&c| c == '@')
}

/// A value for an error message: escaped, at most 100 characters.
pub(crate) fn quoted(v: &str) -> String {
    let mut esc = v.escape_debug();
    let mut out = String::from("\"");
    out.extend(esc.by_ref().take(100));
    if esc.next().is_some() {
        out.push('…');
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<Pattern> {
        parse_list(s).unwrap()
    }
    fn one(s: &str) -> Pattern {
        let mut l = list(s);
        assert_eq!(l.len(), 1);
        l.remove(0)
    }
    fn range(lo: &str, hi: &str) -> Pattern {
        Pattern::Range {
            lo: lo.into(),
            hi: hi.into(),
        }
    }

    #[test]
    fn item_kinds() {
        assert_eq!(
            list("5300,5302-5304,5@"),
            [
                Pattern::Exact("5300".into()),
                range("5302", "5304"),
                Pattern::Wildcard("5@".into())
            ]
        );
        assert_eq!(one("+4930*#."), Pattern::Exact("+4930*#.".into()));
        assert_eq!(one("Alice"), Pattern::Exact("Alice".into()));
        // `-` is literal in a wildcard item, however many there are.
        assert_eq!(one("a-b-_"), Pattern::Wildcard("a-b-_".into()));
        assert_eq!(one("_4@"), Pattern::Wildcard("_4@".into()));
    }

    #[test]
    fn range_bounds_ignore_non_digits_and_leading_zeros() {
        assert_eq!(
            one("02079460000-02079460003"),
            range("2079460000", "2079460003")
        );
        assert_eq!(one("x10y-+20"), range("10", "20"));
        assert_eq!(one("0-5"), range("0", "5"));
        assert_eq!(one("7-7"), range("7", "7"));
    }

    #[test]
    fn zero_zero_is_non_numeric() {
        assert_eq!(one("0-0"), Pattern::NonNumeric);
        assert_eq!(one("00-000"), Pattern::NonNumeric);
    }

    #[test]
    fn malformed_lists() {
        for bad in [
            "",
            ",5300",
            "5300,",
            "5300,,5303",
            ",",
            "5300-5301-",
            "1-2-3",
            "-",
            "a-5",
            "5-",
            "9-1",
            "10-9",
        ] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn disallowed_characters() {
        assert_eq!(
            parse_list("10 01").unwrap_err(),
            "disallowed character ' ' in \"10 01\""
        );
        for bad in [
            "1001;", "\"1001\"", "10%31", "1001\n", "a/b", "ä", "1,2 ", "1\u{0}",
        ] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_values_are_truncated() {
        let long = format!("{} ", "1".repeat(500));
        let e = parse_list(&long).unwrap_err();
        assert!(e.len() < 150, "{e}");
        assert!(e.ends_with("…\""), "{e}");
    }

    #[test]
    fn long_items_are_refused() {
        let max = "9".repeat(MAX_ITEM_LEN);
        assert_eq!(one(&max), Pattern::Exact(max.clone()));
        assert!(matches!(
            one(&format!("1-{}", &max[2..])),
            Pattern::Range { .. }
        ));
        for bad in [
            format!("{max}1"),
            format!("1-{max}"),
            format!("{}-{}", "1".repeat(65_536), "2".repeat(65_536)),
            format!("5300,{}@", "1".repeat(MAX_ITEM_LEN)),
        ] {
            let e = parse_list(&bad).unwrap_err();
            assert!(e.starts_with("item longer than 64"), "{e}");
            assert!(e.len() < 150);
        }
    }

    #[test]
    fn ranges_and_wildcards_per_list_are_bounded_exact_items_not() {
        let exact: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
        assert_eq!(parse_list(&exact.join(",")).unwrap().len(), 20_000);
        let mut items: Vec<String> = (0..MAX_PATTERN_ITEMS / 2)
            .flat_map(|i| [format!("{i}@"), format!("{i}-{}", i + 1)])
            .collect();
        items.extend(exact.iter().take(100).cloned());
        assert!(parse_list(&items.join(",")).is_ok());
        items.push("9_".into());
        let e = parse_list(&items.join(",")).unwrap_err();
        assert_eq!(e, "1001 ranges or wildcards in one list (at most 1000)");
    }

    #[test]
    fn exact_matches_equal_only() {
        let p = one("5300");
        assert!(p.matches("5300"));
        assert!(!p.matches("05300") && !p.matches("530") && !p.matches(""));
    }

    #[test]
    fn range_matches_digit_values_inside() {
        let p = one("5302-5304");
        for v in ["5302", "5303", "5304", "05303", "0005304"] {
            assert!(p.matches(v), "{v}");
        }
        for v in ["5301", "5305", "", "53O3", "+5303", " 5303", "53030"] {
            assert!(!p.matches(v), "{v}");
        }
        let big = one("02079460000-02079460003");
        assert!(big.matches("02079460002") && big.matches("2079460003"));
        assert!(!big.matches("2079460004") && !big.matches("99999999"));
        let huge = one("100000000000000000000000-100000000000000000000001");
        assert!(huge.matches("100000000000000000000001"));
        assert!(!huge.matches("100000000000000000000002"));
        let zero = one("0-3");
        assert!(zero.matches("0") && zero.matches("000") && zero.matches("3"));
    }

    #[test]
    fn non_numeric_matches_empty_and_non_digits() {
        let p = Pattern::NonNumeric;
        assert!(p.matches("") && p.matches("anonymous") && p.matches("+4930") && p.matches("5a"));
        assert!(!p.matches("0") && !p.matches("5300"));
    }

    #[test]
    fn wildcard_semantics() {
        let p = one("_4@");
        assert!(p.matches("14") && p.matches("x4yz") && p.matches("ä4"));
        assert!(!p.matches("4") && p.matches("44") && !p.matches("15"));
        let p = one("07@");
        assert!(p.matches("07") && p.matches("0711") && !p.matches("1071"));
        let p = one("@-1");
        assert!(p.matches("a-1") && p.matches("-1") && !p.matches("a-11"));
        let p = one("@1@2@");
        assert!(p.matches("12") && p.matches("x1y2z") && !p.matches("21"));
        let p = one("___");
        assert!(p.matches("abc") && p.matches("äöü") && !p.matches("ab") && !p.matches("abcd"));
        assert!(one("@").matches("") && one("@@").matches("anything"));
    }

    #[test]
    fn wildcard_is_not_exponential() {
        let p = Pattern::Wildcard(format!("{}b", "@a".repeat(50)));
        assert!(!p.matches(&"a".repeat(5000)));
    }

    #[test]
    fn list_matches_any() {
        let l = list("5300,6300-6399,9@");
        assert!(list_matches(&l, "5300") && list_matches(&l, "6350") && list_matches(&l, "90"));
        assert!(!list_matches(&l, "5301") && !list_matches(&[], "5300"));
    }

    /// Obviously correct, exponential reference matcher.
    fn naive(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('@', rest)) => (0..=v.len()).any(|i| naive(rest, &v[i..])),
            Some((&c, rest)) => v
                .split_first()
                .is_some_and(|(&d, vr)| (c == '_' || c == d) && naive(rest, vr)),
        }
    }

    /// Every string over `alphabet` of length 0..=max.
    fn all_strings(alphabet: &[char], max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{c}")))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    #[test]
    fn wildcard_agrees_with_naive_matcher() {
        let patterns = all_strings(&['a', 'b', '@', '_'], 5);
        let values = all_strings(&['a', 'b', 'é'], 5);
        for p in &patterns {
            let pc: Vec<char> = p.chars().collect();
            for v in &values {
                let vc: Vec<char> = v.chars().collect();
                assert_eq!(
                    wildcard_match(p, v),
                    naive(&pc, &vc),
                    "pattern {p:?} value {v:?}"
                );
            }
        }
    }
}
