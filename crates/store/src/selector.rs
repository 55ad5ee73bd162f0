//! Label and field selectors: parsed from the `labelSelector` / `fieldSelector` query
//! strings exactly as Kubernetes parses them, matched against JSON objects, and printed
//! back in canonical form.
//!
//! - [`LabelSelector`]: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
//!   `k>1`, `k<1`, comma-separated, whitespace tolerated; keys and values are validated
//!   as Kubernetes label keys and values. Matched against `metadata.labels`.
//! - [`FieldSelector`]: `path=value`, `path==value`, `path!=value`, comma-separated, with
//!   Kubernetes' `\,` `\=` `\\` escapes in values. The path is a dotted path into the
//!   object; a missing field compares as `""`, non-string scalars by their JSON text.
//!   Which paths a resource supports is the API server's business, not this module's.
//!
//! The empty string parses to the selector that selects everything, which is also the
//! `Default`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::StoreError;

// ---------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelOp {
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v` (also matches objects without the label)
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)` (also matches objects without the label)
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>n` (integer comparison)
    GreaterThan,
    /// `k<n` (integer comparison)
    LessThan,
}

/// One requirement of a label selector; values are kept sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub op: LabelOp,
    pub values: BTreeSet<String>,
}

impl LabelRequirement {
    /// Whether a label set satisfies this requirement (Kubernetes' `Requirement.Matches`).
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match self.op {
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::In => {
                value.is_some_and(|v| self.values.contains(v))
            }
            LabelOp::NotEquals | LabelOp::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values
                        .iter()
                        .next()
                        .and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let single = self.values.iter().next().map(String::as_str).unwrap_or("");
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.op {
            LabelOp::Exists => write!(f, "{}", self.key),
            LabelOp::DoesNotExist => write!(f, "!{}", self.key),
            LabelOp::Equals => write!(f, "{}={}", self.key, single),
            LabelOp::DoubleEquals => write!(f, "{}=={}", self.key, single),
            LabelOp::NotEquals => write!(f, "{}!={}", self.key, single),
            LabelOp::GreaterThan => write!(f, "{}>{}", self.key, single),
            LabelOp::LessThan => write!(f, "{}<{}", self.key, single),
            LabelOp::In => write!(f, "{} in ({})", self.key, list()),
            LabelOp::NotIn => write!(f, "{} notin ({})", self.key, list()),
        }
    }
}

/// A parsed label selector: all requirements must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses Kubernetes label selector syntax; `""` selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector, StoreError> {
        let invalid = |detail: String| StoreError::InvalidSelector {
            selector: s.to_string(),
            detail,
        };
        let tokens = lex(s).map_err(invalid)?;
        let mut requirements = Parser { tokens, pos: 0 }.parse().map_err(invalid)?;
        // Kubernetes sorts requirements by key (stable, so equal keys keep their order).
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// A selector requiring every `key=value` pair (as `matchLabels` means).
    pub fn from_equalities<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LabelSelector, StoreError> {
        let mut requirements = Vec::new();
        for (k, v) in pairs {
            let text = format!("{k}={v}");
            let invalid = |detail: String| StoreError::InvalidSelector {
                selector: text.clone(),
                detail,
            };
            validate_label_key(k).map_err(invalid)?;
            validate_label_value(v).map_err(invalid)?;
            requirements.push(LabelRequirement {
                key: k.to_string(),
                op: LabelOp::Equals,
                values: BTreeSet::from([v.to_string()]),
            });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Matches against the object's `metadata.labels` (absent labels = no labels).
    pub fn matches(&self, obj: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.requirements.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key));
            match value {
                None => r.matches_value(None),
                Some(Value::String(s)) => r.matches_value(Some(s)),
                Some(other) => r.matches_value(Some(&scalar_text(other))),
            }
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Comma,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
    Open,
    Close,
    End,
}

impl Tok {
    /// How the token reads in an error message (Kubernetes quotes the literal).
    fn literal(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Comma => ",".into(),
            Tok::Not => "!".into(),
            Tok::Eq => "=".into(),
            Tok::DoubleEq => "==".into(),
            Tok::NotEq => "!=".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::In => "in".into(),
            Tok::NotIn => "notin".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::End => "end of string".into(),
        }
    }
    /// Kubernetes reads `in`/`notin` as plain identifiers wherever a key or value is due.
    fn as_value(&self) -> Tok {
        match self {
            Tok::In => Tok::Ident("in".into()),
            Tok::NotIn => Tok::Ident("notin".into()),
            other => other.clone(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn special_token(s: &str) -> Option<Tok> {
    Some(match s {
        "=" => Tok::Eq,
        "==" => Tok::DoubleEq,
        "!=" => Tok::NotEq,
        "!" => Tok::Not,
        "(" => Tok::Open,
        ")" => Tok::Close,
        "," => Tok::Comma,
        ">" => Tok::Gt,
        "<" => Tok::Lt,
        _ => return None,
    })
}

/// Kubernetes' selector lexer: identifiers run to whitespace or a special symbol; runs of
/// special symbols form the longest known operator.
fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if is_special(c) {
            let mut buf = String::new();
            let mut best: Option<(Tok, usize)> = None;
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                buf.push(chars[j]);
                j += 1;
                if let Some(t) = special_token(&buf) {
                    best = Some((t, j));
                } else if best.is_some() {
                    break;
                }
            }
            match best {
                Some((t, end)) => {
                    out.push(t);
                    i = end;
                }
                None => return Err(format!("error expected: keyword found '{buf}'")),
            }
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_ascii_whitespace() && !is_special(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident(word),
            });
        }
    }
    out.push(Tok::End);
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.pos).unwrap_or(&Tok::End)
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, String> {
        let mut out = Vec::new();
        loop {
            match self.peek().as_value() {
                Tok::Ident(_) | Tok::Not => {
                    out.push(self.requirement()?);
                    match self.next() {
                        Tok::End => return Ok(out),
                        Tok::Comma => match self.peek().as_value() {
                            Tok::Ident(_) | Tok::Not => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ))
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ))
                        }
                    }
                }
                Tok::End => return Ok(out),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, String> {
        let negated = if *self.peek() == Tok::Not {
            self.next();
            true
        } else {
            false
        };
        let key = match self.next().as_value() {
            Tok::Ident(k) => k,
            t => return Err(format!("found '{}', expected: identifier", t.literal())),
        };
        validate_label_key(&key)?;
        if negated || matches!(self.peek(), Tok::End | Tok::Comma) {
            let op = if negated {
                LabelOp::DoesNotExist
            } else {
                LabelOp::Exists
            };
            return Ok(LabelRequirement {
                key,
                op,
                values: BTreeSet::new(),
            });
        }
        let op = match self.next() {
            Tok::Eq => LabelOp::Equals,
            Tok::DoubleEq => LabelOp::DoubleEquals,
            Tok::NotEq => LabelOp::NotEquals,
            Tok::In => LabelOp::In,
            Tok::NotIn => LabelOp::NotIn,
            Tok::Gt => LabelOp::GreaterThan,
            Tok::Lt => LabelOp::LessThan,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ))
            }
        };
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.value_set()?,
            _ => BTreeSet::from([self.exact_value()?]),
        };
        for v in &values {
            validate_label_value(v)?;
        }
        if matches!(op, LabelOp::GreaterThan | LabelOp::LessThan) {
            for v in &values {
                if v.parse::<i64>().is_err() {
                    return Err(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer: {v:?}"
                    ));
                }
            }
        }
        Ok(LabelRequirement { key, op, values })
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`: nothing (= empty) or one identifier.
    fn exact_value(&mut self) -> Result<String, String> {
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(String::new());
        }
        match self.next().as_value() {
            Tok::Ident(v) => Ok(v),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }

    /// `( a, b )`; empty members mean the empty value, as in Kubernetes (`()`, `(a,)`).
    fn value_set(&mut self) -> Result<BTreeSet<String>, String> {
        match self.next() {
            Tok::Open => {}
            t => return Err(format!("found '{}', expected: '('", t.literal())),
        }
        let mut set = BTreeSet::new();
        if *self.peek() == Tok::Close {
            self.next();
            set.insert(String::new());
            return Ok(set);
        }
        let mut expect_value = true;
        loop {
            match self.next().as_value() {
                Tok::Ident(v) if expect_value => {
                    set.insert(v);
                    expect_value = false;
                }
                Tok::Comma => {
                    if expect_value {
                        set.insert(String::new());
                    }
                    expect_value = true;
                }
                Tok::Close => {
                    if expect_value {
                        set.insert(String::new());
                    }
                    return Ok(set);
                }
                t if expect_value => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    ))
                }
                t => return Err(format!("found '{}', expected: ',' or ')'", t.literal())),
            }
        }
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && s.split('.').all(|label| {
            let l = label.as_bytes();
            !l.is_empty()
                && (l[0].is_ascii_lowercase() || l[0].is_ascii_digit())
                && (l[l.len() - 1].is_ascii_lowercase() || l[l.len() - 1].is_ascii_digit())
                && l.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// A label key: an optional DNS subdomain prefix and `/`, then a qualified name.
fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Err(format!(
                "invalid label key {key:?}: prefix part must be a lowercase DNS subdomain"
            ));
        }
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, \
             '-', '_' or '.', must start and end with an alphanumeric character, and be at \
             most 63 characters"
        ));
    }
    Ok(())
}

/// A label value: empty, or a qualified name part.
fn validate_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_qualified_name_part(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value: {v:?}: a valid label must be an empty string or consist of \
             alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character, at most 63 characters"
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------

/// The operator of one field requirement. `==` parses as [`FieldOp::Equals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `path=value` / `path!=value` term; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

impl FieldRequirement {
    pub fn matches(&self, obj: &Value) -> bool {
        let have = field_text(obj, &self.field);
        match self.op {
            FieldOp::Equals => have == self.value,
            FieldOp::NotEquals => have != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_field_value(&self.value))
    }
}

/// A parsed field selector: all terms must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses Kubernetes field selector syntax; `""` selects everything.
    pub fn parse(s: &str) -> Result<FieldSelector, StoreError> {
        let invalid = |detail: String| StoreError::InvalidSelector {
            selector: s.to_string(),
            detail,
        };
        let mut requirements = Vec::new();
        for term in split_unescaped(s, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, op, raw) =
                split_term(term).ok_or_else(|| invalid(format!("can't understand '{term}'")))?;
            let field = field.trim();
            if field.is_empty() {
                return Err(invalid(format!("missing field name in '{term}'")));
            }
            let value = unescape_field_value(raw).map_err(invalid)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value,
            });
        }
        requirements.sort();
        requirements.dedup();
        Ok(FieldSelector { requirements })
    }

    /// A selector requiring `field=value`.
    pub fn equals(field: &str, value: &str) -> FieldSelector {
        FieldSelector {
            requirements: vec![FieldRequirement {
                field: field.to_string(),
                op: FieldOp::Equals,
                value: value.to_string(),
            }],
        }
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value `field` must equal, if the selector has such a `field=value` term
    /// (lets callers turn `metadata.name=x` into a single get).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(obj))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Splits on `sep` where it is not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Finds the first unescaped operator (`!=`, `==`, `=`, tried in that order at each
/// position, as Kubernetes does).
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = &term[i..];
        for (op_text, op) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if rest.starts_with(op_text) {
                return Some((&term[..i], op, &term[i + op_text.len()..]));
            }
        }
    }
    None
}

fn unescape_field_value(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence '\\{e}' in {raw:?}")),
                None => return Err(format!("unterminated escape sequence in {raw:?}")),
            },
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector value {raw:?}: unescaped '{c}' (escape it as \\{c})"
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_field_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The text a field compares as: strings as themselves, missing/null as `""`, other
/// values as their JSON text.
fn field_text(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    scalar_text(cur)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": labels}})
    }

    fn ls(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap()
    }

    fn label_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Err(StoreError::InvalidSelector { selector, detail }) => {
                assert_eq!(selector, s);
                detail
            }
            other => panic!("{s:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_label_selector_selects_everything() {
        let s = ls("");
        assert!(s.is_empty());
        assert!(s.matches(&json!({})));
        assert_eq!(s.to_string(), "");
        assert!(LabelSelector::default().matches(&pod(json!({"a": "b"}))));
        assert!(ls("   ").is_empty());
    }

    #[test]
    fn label_equality_forms() {
        let o = pod(json!({"app": "web", "tier": "front"}));
        assert!(ls("app=web").matches(&o));
        assert!(ls("app==web").matches(&o));
        assert!(!ls("app=db").matches(&o));
        assert!(ls("app=web,tier=front").matches(&o));
        assert!(!ls("app=web,tier=back").matches(&o));
        assert!(!ls("app!=web").matches(&o));
        assert!(ls("app!=db").matches(&o));
        // != matches objects without the label.
        assert!(ls("missing!=x").matches(&o));
        assert!(ls("app!=db").matches(&json!({"metadata": {}})));
        // `k=` means the empty value.
        assert!(!ls("app=").matches(&o));
        assert!(ls("e=").matches(&pod(json!({"e": ""}))));
        assert!(!ls("e=").matches(&o));
    }

    #[test]
    fn label_set_forms() {
        let o = pod(json!({"env": "prod"}));
        assert!(ls("env in (prod,dev)").matches(&o));
        assert!(ls("env in (dev, prod)").matches(&o));
        assert!(!ls("env in (dev)").matches(&o));
        assert!(!ls("env notin (prod,dev)").matches(&o));
        assert!(ls("env notin (qa)").matches(&o));
        // notin matches objects without the label.
        assert!(ls("zone notin (a)").matches(&o));
        assert!(!ls("zone in (a)").matches(&o));
        // `in` and `notin` may be used as keys and values.
        assert!(ls("in in (notin)").matches(&pod(json!({"in": "notin"}))));
        // Empty members.
        assert_eq!(
            ls("k in ()").requirements()[0].values,
            BTreeSet::from([String::new()])
        );
        assert_eq!(
            ls("k in (a,)").requirements()[0].values,
            BTreeSet::from([String::new(), "a".to_string()])
        );
    }

    #[test]
    fn label_existence_forms() {
        let o = pod(json!({"app": "web"}));
        assert!(ls("app").matches(&o));
        assert!(!ls("db").matches(&o));
        assert!(ls("!db").matches(&o));
        assert!(!ls("!app").matches(&o));
        assert!(ls("!app").matches(&json!({"metadata": {"name": "x"}})));
        assert!(ls("app,!db").matches(&o));
    }

    #[test]
    fn label_numeric_comparisons() {
        let o = pod(json!({"n": "5"}));
        assert!(ls("n>3").matches(&o));
        assert!(!ls("n>5").matches(&o));
        assert!(ls("n<6").matches(&o));
        assert!(!ls("m<6").matches(&o));
        assert!(!ls("n>3").matches(&pod(json!({"n": "x"}))));
    }

    #[test]
    fn label_whitespace_and_prefixes() {
        let o = pod(json!({"app.kubernetes.io/name": "web", "tier": "a"}));
        let s = ls("  app.kubernetes.io/name = web ,  tier in ( a , b ) ");
        assert!(s.matches(&o));
        assert_eq!(s.to_string(), "app.kubernetes.io/name=web,tier in (a,b)");
        assert!(ls("example.com/x-y_z.1!=q").matches(&o));
    }

    #[test]
    fn label_display_is_canonical() {
        let s = ls("z notin (c,a,b), !y, x, a==1, b!=2, c>3");
        assert_eq!(s.to_string(), "a==1,b!=2,c>3,x,!y,z notin (a,b,c)");
        // Canonical text parses back to the same selector.
        assert_eq!(ls(&s.to_string()), s);
        assert_eq!(s.to_string().parse::<LabelSelector>().unwrap(), s);
    }

    #[test]
    fn label_errors() {
        assert!(label_err("app=web,").contains("identifier after ','"));
        assert!(label_err(",app").contains("expected: !, identifier"));
        assert!(label_err("app=web tier=x").contains("expected: ',' or 'end of string'"));
        assert!(label_err("app in prod").contains("expected: '('"));
        assert!(label_err("app in (a b)").contains("expected: ',' or ')'"));
        assert!(label_err("app in (a").contains("expected: ',' or ')'"));
        assert!(label_err("app in (=)").contains("identifier"));
        assert!(label_err("app (x)").contains("expected: in, notin"));
        assert!(label_err("!app=x").contains("expected: ',' or 'end of string'"));
        assert!(label_err("app=(x)").contains("expected: identifier"));
        assert!(label_err("-app=x").contains("invalid label key"));
        assert!(label_err("Bad_Prefix/app=x").contains("prefix"));
        assert!(label_err(&format!("{}=x", "a".repeat(64))).contains("invalid label key"));
        assert!(label_err("app=-x").contains("invalid label value"));
        assert!(label_err(&format!("app={}", "v".repeat(64))).contains("invalid label value"));
        assert!(label_err("n>x").contains("integer"));
        assert!(label_err("!").contains("expected: identifier"));
        assert!(label_err("app!!x").contains("expected: in, notin"));
    }

    #[test]
    fn label_from_equalities() {
        let s = LabelSelector::from_equalities([("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(s.to_string(), "a=1,b=2");
        assert!(s.matches(&pod(json!({"a": "1", "b": "2", "c": "3"}))));
        assert!(!s.matches(&pod(json!({"a": "1"}))));
        assert!(LabelSelector::from_equalities([("a", "-")]).is_err());
    }

    fn fs(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap()
    }

    fn field_err(s: &str) -> String {
        match FieldSelector::parse(s) {
            Err(StoreError::InvalidSelector { selector, detail }) => {
                assert_eq!(selector, s);
                detail
            }
            other => panic!("{s:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_field_selector_selects_everything() {
        assert!(fs("").is_empty());
        assert!(fs("").matches(&json!({})));
        assert!(FieldSelector::default().matches(&json!({"a": 1})));
        assert_eq!(fs("").to_string(), "");
    }

    #[test]
    fn field_forms() {
        let o = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "n1", "replicas": 3, "paused": true},
            "status": {"phase": "Running"},
            "involvedObject": {"name": "web", "uid": "u-1"},
            "type": "Normal",
        });
        assert!(fs("metadata.name=web").matches(&o));
        assert!(fs("metadata.name==web").matches(&o));
        assert!(!fs("metadata.name=db").matches(&o));
        assert!(fs("metadata.name!=db").matches(&o));
        assert!(!fs("metadata.name!=web").matches(&o));
        assert!(fs("metadata.namespace=default,spec.nodeName=n1").matches(&o));
        assert!(!fs("metadata.namespace=default,spec.nodeName=n2").matches(&o));
        assert!(fs("status.phase!=Succeeded").matches(&o));
        assert!(fs("involvedObject.name=web,involvedObject.uid=u-1").matches(&o));
        assert!(fs("type=Normal").matches(&o));
        // Non-string scalars compare by their JSON text.
        assert!(fs("spec.replicas=3").matches(&o));
        assert!(fs("spec.paused=true").matches(&o));
        assert!(!fs("spec.paused=false").matches(&o));
        // Missing fields compare as "".
        assert!(fs("spec.missing=").matches(&o));
        assert!(fs("spec.missing!=x").matches(&o));
        assert!(!fs("spec.missing=x").matches(&o));
        assert!(fs("spec.nodeName=").matches(&json!({"spec": {}})));
        assert!(fs("spec.nodeName=").matches(&json!({"spec": {"nodeName": null}})));
    }

    #[test]
    fn field_escapes() {
        let s = fs(r"metadata.name=a\,b\=c\\d");
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert!(s.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(fs(&s.to_string()), s);
        // An escaped operator in the field part is not an operator.
        let s = fs(r"a\=b=c");
        assert_eq!(s.requirements()[0].field, r"a\=b");
        assert_eq!(s.requirements()[0].value, "c");
    }

    #[test]
    fn field_display_is_canonical() {
        let s = fs("spec.nodeName==n1,metadata.name!=x, ,status.phase=Running");
        assert_eq!(
            s.to_string(),
            "metadata.name!=x,spec.nodeName=n1,status.phase=Running"
        );
        assert_eq!(fs(&s.to_string()), s);
        assert_eq!(s.exact("spec.nodeName"), Some("n1"));
        assert_eq!(s.exact("metadata.name"), None);
        assert_eq!(
            FieldSelector::equals("metadata.name", "a").to_string(),
            "metadata.name=a"
        );
    }

    #[test]
    fn field_errors() {
        assert!(field_err("metadata.name").contains("can't understand"));
        assert!(field_err("=x").contains("missing field name"));
        assert!(field_err("metadata.name=a=b").contains("unescaped '='"));
        assert!(field_err(r"metadata.name=a\x").contains("invalid escape sequence"));
        assert!(field_err(r"metadata.name=a\").contains("unterminated escape"));
    }
}
