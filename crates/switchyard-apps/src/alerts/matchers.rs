//! Label matchers as Alertmanager users write them: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`, one or a list (`{a="b", c=~"d|e"}`, or separated by
//! commas or spaces). Silences and inhibition rules are made of them.
//!
//! A name is looked up among the alert's labels first, then among its fields (`severity`,
//! `source`, `title`, `status`, `description`, `dedup_key`); `labels.NAME` asks for the label
//! only. What an alert lacks is the empty string, as in Alertmanager (`team=""` matches an
//! alert without a `team` label). Regular expressions match the whole value.

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::intake::Alert;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, Self::Regex | Self::NotRegex)
    }

    pub fn is_equal(self) -> bool {
        matches!(self, Self::Equal | Self::Regex)
    }

    pub fn from_flags(is_regex: bool, is_equal: bool) -> Self {
        match (is_regex, is_equal) {
            (false, true) => Self::Equal,
            (false, false) => Self::NotEqual,
            (true, true) => Self::Regex,
            (true, false) => Self::NotRegex,
        }
    }
}

/// One matcher, its regular expression compiled.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

/// A regular expression's compiled size is bounded, so a silence cannot cost the server much.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
const MAX_VALUE: usize = 1_000;

impl Matcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, String> {
        let name_ok = {
            let bare = name.strip_prefix("labels.").unwrap_or(name);
            let mut chars = bare.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !name_ok {
            return Err(format!(
                "{name:?} is not a label name (letters, digits and _, not starting with a digit)"
            ));
        }
        if value.chars().count() > MAX_VALUE {
            return Err(format!(
                "the value of {name} is over {MAX_VALUE} characters"
            ));
        }
        let regex = if op.is_regex() {
            Some(
                RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        format!(
                            "{name}{}{value:?}: not a regular expression: {}",
                            op.as_str(),
                            first_line(&e.to_string())
                        )
                    })?,
            )
        } else {
            None
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether this matcher holds for `value`.
    pub fn matches_value(&self, value: &str) -> bool {
        match (&self.regex, self.op) {
            (Some(re), Op::Regex) => re.is_match(value),
            (Some(re), _) => !re.is_match(value),
            (None, Op::Equal) => value == self.value,
            (None, _) => value != self.value,
        }
    }

    pub fn matches(&self, alert: &Alert) -> bool {
        self.matches_value(&value_of(alert, &self.name))
    }

    /// `team="db"`, as people write it (and as [`parse`] reads it back: only `\`, `"` and the
    /// closing curly quote are escaped, as [`parse`] reads escapes — not Rust's `{:?}`, whose
    /// `\n` or `\u{…}` came back as other text; found by the `silence` fuzz target).
    pub fn text(&self) -> String {
        let mut quoted = String::with_capacity(self.value.len() + 2);
        for c in self.value.chars() {
            if matches!(c, '\\' | '"' | '”') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        format!("{}{}\"{quoted}\"", self.name, self.op.as_str())
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(text)
}

/// The value a matcher (or an inhibition rule's `equal`) sees for `name`.
pub fn value_of(alert: &Alert, name: &str) -> String {
    if let Some(label) = name.strip_prefix("labels.") {
        return alert.labels.get(label).cloned().unwrap_or_default();
    }
    if let Some(value) = alert.labels.get(name) {
        return value.clone();
    }
    match name {
        "severity" => alert.severity.as_str().to_string(),
        "status" => alert.status.as_str().to_string(),
        "source" => alert.source.clone(),
        "title" => alert.title.clone(),
        "description" => alert.description.clone(),
        "dedup_key" => alert.dedup_key.clone(),
        _ => String::new(),
    }
}

/// Every matcher holds (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], alert: &Alert) -> bool {
    matchers.iter().all(|m| m.matches(alert))
}

/// One matcher as written: `name="value"`, `name=~'re'`, `name!=value`.
pub fn parse_one(text: &str) -> Result<Matcher, String> {
    let list = parse(text)?;
    match <[Matcher; 1]>::try_from(list) {
        Ok([one]) => Ok(one),
        Err(_) => Err(format!("{text:?}: one matcher expected")),
    }
}

/// A list of matchers: optionally in braces, separated by commas and/or spaces. Values are
/// quoted (`"…"` with `\"` and `\\` escapes, `'…'`, or the curly quotes Slack clients type)
/// or bare (up to the next comma, space or brace).
pub fn parse(text: &str) -> Result<Vec<Matcher>, String> {
    let mut rest = text.trim();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner
            .trim_end()
            .strip_suffix('}')
            .ok_or_else(|| format!("{text:?}: a '{{' without its '}}'"))?;
    }
    let mut matchers = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return Ok(matchers);
        }
        let (matcher, after) = parse_next(rest)?;
        matchers.push(matcher);
        rest = after;
    }
}

/// The first matcher of `text` and what follows it.
pub fn parse_next(text: &str) -> Result<(Matcher, &str), String> {
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let (name, after_name) = text.split_at(name_end);
    if name.is_empty() {
        return Err(format!(
            "{:?}: a matcher starts with a label name",
            head(text)
        ));
    }
    let (op, after_op) = [
        ("=~", Op::Regex),
        ("!~", Op::NotRegex),
        ("!=", Op::NotEqual),
        ("==", Op::Equal),
        ("=", Op::Equal),
    ]
    .iter()
    .find_map(|(word, op)| after_name.strip_prefix(word).map(|rest| (*op, rest)))
    .ok_or_else(|| format!("{:?}: expected =, !=, =~ or !~ after {name:?}", head(text)))?;
    let (value, after_value) = parse_value(after_op).map_err(|e| format!("{name}: {e}"))?;
    Ok((Matcher::new(name, op, &value)?, after_value))
}

fn head(text: &str) -> String {
    text.chars().take(40).collect()
}

fn closing_quote(open: char) -> Option<char> {
    match open {
        '"' => Some('"'),
        '\'' => Some('\''),
        '“' => Some('”'),
        '‘' => Some('’'),
        _ => None,
    }
}

fn parse_value(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let Some((_, first)) = chars.next() else {
        return Ok((String::new(), text));
    };
    let Some(close) = closing_quote(first) else {
        let end = text
            .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
            .unwrap_or(text.len());
        return Ok((text[..end].to_string(), &text[end..]));
    };
    let mut value = String::new();
    let mut escaped = false;
    for (at, c) in chars {
        if escaped {
            value.push(c);
            escaped = false;
        } else if c == '\\' && first == '"' {
            escaped = true;
        } else if c == close || (first == '"' && c == '”') {
            return Ok((value, &text[at + c.len_utf8()..]));
        } else {
            value.push(c);
        }
    }
    Err("a quoted value that never closes".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alerts::intake::{Severity, Status};

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            title: "Disk full".into(),
            severity: Severity::High,
            source: "nagios".into(),
            status: Status::Firing,
            description: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            affected_items: Vec::new(),
            links: Vec::new(),
            analysis: String::new(),
            dedup_key: "k1".into(),
            started_at_ms: None,
        }
    }

    #[test]
    fn the_four_operators() {
        let a = alert(&[("team", "db"), ("env", "prod-eu")]);
        let m = parse(r#"{team="db", env=~"prod-.*"}"#).unwrap();
        assert!(all_match(&m, &a));
        assert!(parse_one("team!=web").unwrap().matches(&a));
        assert!(!parse_one("env!~'prod.*'").unwrap().matches(&a));
        // Regexes are anchored.
        assert!(!parse_one("env=~prod").unwrap().matches(&a));
        // Missing labels are "".
        assert!(parse_one(r#"zone="""#).unwrap().matches(&a));
        // Fields when no label of that name.
        assert!(parse_one("severity=high").unwrap().matches(&a));
        assert!(parse_one("dedup_key=k1").unwrap().matches(&a));
        assert!(!parse_one("labels.severity=high").unwrap().matches(&a));
    }

    #[test]
    fn quotes_spaces_and_errors() {
        let m = parse(r#"alertname="Disk \"full\"" team=“db”"#).unwrap();
        assert_eq!(m[0].value, "Disk \"full\"");
        assert_eq!(m[1].value, "db");
        assert_eq!(m[0].text(), r#"alertname="Disk \"full\"""#);
        assert!(parse("team").unwrap_err().contains("expected"));
        assert!(parse("9x=1").unwrap_err().contains("label name"));
        assert!(
            parse("team=~'('")
                .unwrap_err()
                .contains("regular expression")
        );
        assert!(parse("team=\"db").unwrap_err().contains("never closes"));
    }

    /// What a matcher shows of itself reads back as the same matcher, whatever its value holds
    /// (a line break was shown as `\n` and read back as `n`: the `silence` fuzz target).
    #[test]
    fn a_matchers_text_reads_back_as_itself() {
        for value in [
            "line\nbreak\ttab",
            "back\\slash \"quote\" ”curly”",
            "",
            "é\u{301}\u{0}",
        ] {
            let m = Matcher::new("team", Op::Equal, value).unwrap();
            let again = parse_one(&m.text()).unwrap();
            assert_eq!(again.value, value, "{}", m.text());
            assert_eq!(again.op, Op::Equal);
        }
    }
}
