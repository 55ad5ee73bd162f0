//! Name and identifier syntax checks, worded exactly as Kubernetes' apimachinery
//! `validation` package words them: DNS-1123 labels and subdomains, DNS-1035 labels,
//! qualified names (label and annotation keys), label values, IANA service (port) names,
//! environment variable names, IP addresses and relative paths.
//!
//! Each check returns the list of messages (empty when valid); callers wrap them into
//! `FieldError::invalid` at the right path.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use crate::field::{FieldError, FieldPath};

pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
pub const LABEL_VALUE_MAX: usize = 63;
pub const QUALIFIED_NAME_MAX: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

fn anchored(fmt: &str) -> Regex {
    // The formats are constants checked by the tests below.
    Regex::new(&format!("^(?:{fmt})$")).unwrap_or_else(|_| unreachable!("constant regex"))
}

static DNS1123_LABEL: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| anchored(&format!("{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*")));
static DNS1035_LABEL: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_LABEL_FMT));
static QUALIFIED_NAME: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FMT));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));
static CONFIG_MAP_KEY: LazyLock<Regex> = LazyLock::new(|| anchored("[-._a-zA-Z0-9]+"));

fn max_len_msg(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = msg.to_string();
    if !examples.is_empty() {
        let ex: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
        // Kubernetes joins examples with ",  or " (two spaces).
        s.push_str(&format!(" (e.g. {}, ", ex.join(",  or ")));
    } else {
        s.push_str(" (");
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

/// RFC 1123 label: container, port-less names, namespace names, hostnames.
pub fn dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !DNS1123_LABEL.is_match(v) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// RFC 1123 subdomain: most object names.
pub fn dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX));
    }
    if !DNS1123_SUBDOMAIN.is_match(v) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            &format!("{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*"),
            &["example.com"],
        ));
    }
    errs
}

/// RFC 1035 label: Service names.
pub fn dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !DNS1035_LABEL.is_match(v) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// A qualified name `[prefix/]name`: label keys, annotation keys, toleration keys.
pub fn qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "{} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"],
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_msg(QUALIFIED_NAME_MAX)));
    }
    if !QUALIFIED_NAME.is_match(name) {
        errs.push(regex_error(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        ));
    }
    errs
}

/// A label value: empty, or at most 63 characters of the label value alphabet.
pub fn label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > LABEL_VALUE_MAX {
        errs.push(max_len_msg(LABEL_VALUE_MAX));
    }
    if !LABEL_VALUE.is_match(v) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// IANA service name: container port names.
pub fn port_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 15 {
        errs.push(max_len_msg(15));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !v.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if v.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if v.starts_with('-') || v.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Environment variable names (relaxed rule, GA in Kubernetes 1.34, on by default in 1.32):
/// any printable ASCII character except '='.
pub fn env_var_name(v: &str) -> Vec<String> {
    if v.bytes().all(|b| (32..=126).contains(&b) && b != b'=') {
        Vec::new()
    } else {
        vec!["a valid environment variable name must consist only of printable ASCII characters other than '='".to_string()]
    }
}

/// ConfigMap and Secret data keys.
pub fn config_map_key(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX));
    }
    if !CONFIG_MAP_KEY.is_match(v) {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if v == "." {
        errs.push("must not be '.'".to_string());
    } else if v == ".." {
        errs.push("must not be '..'".to_string());
    } else if v.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Port numbers 1-65535.
pub fn port_number(p: i64) -> Vec<String> {
    if (1..=65535).contains(&p) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

pub fn is_ip(v: &str) -> bool {
    v.parse::<IpAddr>().is_ok()
}

/// A relative path that stays inside its root: subPath, volume item paths.
pub fn local_descending_path(v: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if v.starts_with('/') {
        errs.push(FieldError::invalid(
            path.clone(),
            v,
            "must be a relative path",
        ));
    }
    if v.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(
            path.clone(),
            v,
            "must not contain '..'",
        ));
    }
    errs
}

/// Turns messages into `Invalid` errors at `path`.
pub fn invalid_all(path: &FieldPath, value: &str, msgs: Vec<String>) -> Vec<FieldError> {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path.clone(), value, m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_message_is_kubernetes_wording() {
        let errs = dns1123_subdomain("Foo");
        assert_eq!(errs, vec!["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()]);
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert_eq!(dns1123_subdomain(&"a".repeat(254)), vec![max_len_msg(253)]);
    }

    #[test]
    fn labels() {
        assert!(dns1123_label("my-name").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert!(!dns1123_label("-a").is_empty());
        assert!(dns1035_label("a1").is_empty());
        assert!(!dns1035_label("1a").is_empty());
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("example.com/My_Name.x").is_empty());
        assert_eq!(
            qualified_name("/a"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(!qualified_name("Bad_/x").is_empty());
        assert!(!qualified_name(&"a".repeat(64)).is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("-x").is_empty());
        assert!(!label_value(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn port_names_and_env_names() {
        assert!(port_name("http").is_empty());
        assert!(port_name("web-8080").is_empty());
        assert!(!port_name("8080").is_empty());
        assert!(!port_name("a--b").is_empty());
        assert!(!port_name("Http").is_empty());
        assert!(!port_name("a-very-long-port-name").is_empty());
        assert!(env_var_name("MY_VAR.1-x y").is_empty());
        assert!(!env_var_name("A=B").is_empty());
        assert!(!env_var_name("tab\there").is_empty());
    }

    #[test]
    fn paths_and_ips() {
        let p = FieldPath::root("subPath");
        assert!(local_descending_path("a/b", &p).is_empty());
        assert_eq!(local_descending_path("/a", &p).len(), 1);
        assert_eq!(local_descending_path("a/../b", &p).len(), 1);
        assert!(is_ip("10.1.2.3"));
        assert!(is_ip("::1"));
        assert!(!is_ip("10.1.2"));
        assert!(config_map_key("a.b_c-D").is_empty());
        assert!(!config_map_key("..a").is_empty());
    }
}
