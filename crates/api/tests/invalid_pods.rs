//! The invalid-Pod corpus (`tests/corpus/invalid-pods`): every manifest is broken in
//! exactly one way and names, in its first line `# expect: <field path>`, the field the
//! server must report. Each goes through the admission pipeline the API server runs
//! (decode errors, strict unknown fields, defaulting, validation, unsupported fields) and
//! must produce at least one cause, all of them at (or below) the expected path. The
//! control manifests in `tests/corpus/valid-pods` must produce none, and must survive a
//! `get -o yaml | replace` round trip.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use podium_api::admission::{
    decode_errors, default_on_create, unknown_fields, unsupported_fields, validate_create,
    validate_update,
};
use podium_api::resources::{find_kind, ResourceInfo};
use serde_json::Value;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn pods() -> &'static ResourceInfo {
    find_kind("", "Pod").unwrap()
}

/// What the API server does with a POSTed Pod: every cause as (field path, message).
fn admit(mut obj: Value) -> Vec<(String, String)> {
    let pods = pods();
    let mut causes: Vec<(String, String)> = decode_errors(pods, &obj)
        .iter()
        .map(|e| (e.field.to_string(), e.to_string()))
        .collect();
    if !causes.is_empty() {
        return causes; // a 400: the body is not a Pod
    }
    for f in unknown_fields(pods, &obj) {
        causes.push((f.clone(), format!("unknown field {f:?}")));
    }
    if !causes.is_empty() {
        return causes; // a 400 under fieldValidation=Strict
    }
    // The server fills the namespace from the URL.
    if podium_api::meta::namespace(&obj).is_empty() {
        podium_api::meta::set(&mut obj, "namespace", Value::String("default".into()));
    }
    default_on_create(pods, &mut obj);
    let mut errs = validate_create(pods, &obj);
    errs.extend(unsupported_fields(pods, &obj));
    errs.iter()
        .map(|e| (e.field.to_string(), e.to_string()))
        .collect()
}

fn load(path: &Path) -> (Option<String>, Value) {
    let text = fs::read_to_string(path).unwrap();
    let expect = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .map(|s| s.trim().to_string());
    let obj: Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (expect, obj)
}

fn under(path: &str, expected: &str) -> bool {
    path == expected
        || path
            .strip_prefix(expected)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

#[test]
fn every_invalid_pod_is_refused_at_its_field() {
    let files = corpus("invalid-pods");
    assert!(files.len() >= 50, "only {} invalid pods", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let (expect, obj) = load(file);
        let Some(expect) = expect else {
            failures.push(format!(
                "{name}: first line is not `# expect: <field path>`"
            ));
            continue;
        };
        assert_eq!(obj["apiVersion"], "v1", "{name}");
        assert_eq!(obj["kind"], "Pod", "{name}");
        let causes = admit(obj);
        if !causes.iter().any(|(p, _)| *p == expect) {
            failures.push(format!(
                "{name}: expected a cause at {expect}, got {causes:?}"
            ));
        } else if let Some((p, m)) = causes.iter().find(|(p, _)| !under(p, &expect)) {
            failures.push(format!(
                "{name}: broken in more than one way: also {p}: {m}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_pods_are_accepted_and_round_trip() {
    let files = corpus("valid-pods");
    assert!(files.len() >= 10);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let (_, obj) = load(file);
        let causes = admit(obj.clone());
        assert!(causes.is_empty(), "{name}: {causes:?}");

        // What `kubectl get -o yaml` then `kubectl replace` sends back is accepted too.
        let mut stored = obj;
        podium_api::meta::set(&mut stored, "namespace", Value::String("default".into()));
        default_on_create(pods(), &mut stored);
        assert!(unknown_fields(pods(), &stored).is_empty(), "{name}");
        assert!(
            unsupported_fields(pods(), &stored).is_empty(),
            "{name}: defaulted an unsupported field"
        );
        let errs = validate_update(pods(), &stored, &stored);
        assert!(errs.is_empty(), "{name}: {errs:?}");
        let mut again = stored.clone();
        default_on_create(pods(), &mut again);
        assert_eq!(again, stored, "{name}: defaulting is not idempotent");
    }
}

#[test]
fn error_messages_read_like_kubernetes() {
    let find = |part: &str| {
        corpus("invalid-pods")
            .into_iter()
            .find(|p| p.to_string_lossy().contains(part))
            .unwrap()
    };
    let (_, obj) = load(&find("request-exceeds-limit"));
    assert_eq!(
        admit(obj)[0].1,
        "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
    );
    let (_, obj) = load(&find("liveness-probe"));
    assert_eq!(
        admit(obj)[0].1,
        "spec.containers[0].livenessProbe: Forbidden: not supported by Podium yet (probes and lifecycle hooks)"
    );
    let (_, obj) = load(&find("image-missing"));
    assert_eq!(admit(obj)[0].1, "spec.containers[0].image: Required value");
}
