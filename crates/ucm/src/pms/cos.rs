//! Class-of-service number patterns: `[pms]` lists Asterisk dialplan patterns
//! (`_NXXXXXX`, `_011.`) or plain numbers; the dialplan matches a number
//! against one POSIX extended regular expression per class, kept in AstDB
//! (`pbxgate-cos/<class>`) and applied with `REGEX()`.
//!
//! The expressions hold only digits, bracket lists, `.+`, `.*`, `(`, `|`,
//! `)`, `^` and `$`: no quote, backslash, `$[` or `${` that the dialplan
//! would take for its own syntax (REGEX removes backslashes from its argument).

/// Patterns per class, at most.
pub const MAX_PATTERNS: usize = 50;
/// Characters per pattern, at most.
pub const MAX_PATTERN: usize = 64;

/// `^(p1|p2|…)$` for the patterns; empty for an empty list (matches no
/// number). On error: the index of the pattern and what is wrong.
pub fn to_regex(patterns: &[String]) -> Result<String, (usize, String)> {
    if patterns.len() > MAX_PATTERNS {
        return Err((
            MAX_PATTERNS,
            format!("at most {MAX_PATTERNS} patterns per class"),
        ));
    }
    let mut parts = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        parts.push(one(p).map_err(|m| (i, m))?);
    }
    if parts.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("^({})$", parts.join("|")))
}

fn literal(c: char) -> Option<&'static str> {
    Some(match c {
        '0' => "0",
        '1' => "1",
        '2' => "2",
        '3' => "3",
        '4' => "4",
        '5' => "5",
        '6' => "6",
        '7' => "7",
        '8' => "8",
        '9' => "9",
        '*' => "[*]",
        '#' => "[#]",
        '+' => "[+]",
        _ => return None,
    })
}

fn one(p: &str) -> Result<String, String> {
    if p.is_empty() || p.len() > MAX_PATTERN {
        return Err(format!("a pattern has 1 to {MAX_PATTERN} characters"));
    }
    let Some(pattern) = p.strip_prefix('_') else {
        // A plain number.
        return p
            .chars()
            .map(|c| literal(c).ok_or(()))
            .collect::<Result<String, ()>>()
            .map_err(|()| format!("\"{p}\": a number has only 0-9 * # +; patterns start with _"));
    };
    if pattern.is_empty() {
        return Err("\"_\" alone matches nothing".into());
    }
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c.to_ascii_uppercase() {
            'X' => out.push_str("[0-9]"),
            'Z' => out.push_str("[1-9]"),
            'N' => out.push_str("[2-9]"),
            '.' => out.push_str(".+"),
            '!' => out.push_str(".*"),
            '[' => {
                let mut set = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '0'..='9' | '*' | '#' | '+' => set.push(c),
                        '-' if !set.is_empty() => set.push(c),
                        _ => {
                            return Err(format!(
                                "\"{p}\": [...] holds only 0-9 * # + and ranges like 1-5"
                            ));
                        }
                    }
                }
                if !closed || set.is_empty() || set.ends_with('-') {
                    return Err(format!("\"{p}\": unclosed or empty [...]"));
                }
                // A '-' between digits is a range, as in the dialplan; put it
                // where a regex bracket needs it to be a range too.
                let bytes = set.as_bytes();
                for (k, b) in bytes.iter().enumerate() {
                    if *b == b'-' {
                        let (lo, hi) = (bytes.get(k.wrapping_sub(1)), bytes.get(k + 1));
                        let digit = |x: Option<&u8>| x.is_some_and(u8::is_ascii_digit);
                        if !digit(lo) || !digit(hi) || lo > hi {
                            return Err(format!(
                                "\"{p}\": a range in [...] goes from a digit up to a digit"
                            ));
                        }
                    }
                }
                out.push('[');
                out.push_str(&set);
                out.push(']');
            }
            c => match literal(c) {
                Some(l) => out.push_str(l),
                None => {
                    return Err(format!(
                        "\"{p}\": a pattern has 0-9 * # + X Z N [...] . ! only"
                    ));
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &[&str]) -> Result<String, (usize, String)> {
        to_regex(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn patterns_become_one_expression() {
        assert_eq!(re(&[]).unwrap(), "");
        assert_eq!(re(&["911", "112"]).unwrap(), "^(911|112)$");
        assert_eq!(
            re(&["_NXXXXXX"]).unwrap(),
            "^([2-9][0-9][0-9][0-9][0-9][0-9][0-9])$"
        );
        assert_eq!(re(&["_1nxx."]).unwrap(), "^(1[2-9][0-9][0-9].+)$");
        assert_eq!(re(&["_0[1-57]Z!"]).unwrap(), "^(0[1-57][1-9].*)$");
        assert_eq!(
            re(&["_+49X.", "*99#"]).unwrap(),
            "^([+]49[0-9].+|[*]99[#])$"
        );
    }

    #[test]
    fn bad_patterns_name_their_index() {
        for (bad, i) in [
            (vec!["911", "9-11"], 1),
            (vec!["_"], 0),
            (vec![""], 0),
            (vec!["_9[1-"], 0),
            (vec!["_9[]"], 0),
            (vec!["_9[a]"], 0),
            (vec!["_9[5-1]"], 0),
            (vec!["_9[-1]"], 0),
            (vec!["_9\"x"], 0),
            (vec!["_9$[1]"], 0),
            (vec!["_9\\d"], 0),
            (vec!["ok", "_9(1|2)"], 0),
        ] {
            let e = re(&bad).unwrap_err();
            assert_eq!(e.0, i, "{bad:?}: {e:?}");
        }
        let many: Vec<&str> = std::iter::repeat_n("1", MAX_PATTERNS + 1).collect();
        assert!(re(&many).is_err());
        assert!(re(&[&"1".repeat(MAX_PATTERN + 1)]).is_err());
    }

    #[test]
    fn expressions_hold_no_dialplan_syntax() {
        let r = re(&["_X.", "_[0-9*#+]!", "*#+"]).unwrap();
        for bad in ["\"", "\\", "${", "$[", ",", " "] {
            assert!(!r.contains(bad), "{r} has {bad}");
        }
    }
}
