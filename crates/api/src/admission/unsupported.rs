//! The one list of Pod fields Podium does not implement yet.
//!
//! No field is silently ignored: a Pod field Podium does not honour is refused with a 422
//! `Forbidden: not supported by Podium yet`, one error per offending field at its exact
//! path. When a later issue implements a field, delete its row from [`UNSUPPORTED`]; the
//! list must shrink to nothing. The test `every_field_is_accepted_or_listed` keeps the
//! table honest against the k8s-openapi structs: a field that is neither in an accepted
//! list there nor in this table fails it.

use serde_json::Value;

use super::{get, get_arr};
use crate::field::{FieldError, FieldPath};
use crate::resources::ResourceInfo;

/// What a row's path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// `spec`.
    Pod,
    /// Each of `spec.initContainers[*]` and `spec.containers[*]`.
    Container,
    /// Each of `spec.volumes[*]`.
    Volume,
    /// Each of `spec.volumes[*].projected.sources[*]`.
    Projection,
}

/// When a present field is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Any non-null value (an empty list counts as absent).
    Set,
    /// Only `true` (`false` is the behaviour Podium has).
    True,
    /// Only `false` (`true` is the behaviour Podium has).
    False,
    /// Any value but this string (which is the behaviour Podium has).
    NotEqual(&'static str),
    /// Any number but 0.
    NonZero,
}

/// One refused field.
#[derive(Debug, Clone, Copy)]
pub struct Unsupported {
    pub base: Base,
    /// Dotted path below the base; `[*]` after a segment walks a list: `env[*].valueFrom.fileKeyRef`.
    pub path: &'static str,
    pub when: When,
    /// What is missing, for the error message.
    pub reason: &'static str,
}

const fn row(base: Base, path: &'static str, when: When, reason: &'static str) -> Unsupported {
    Unsupported {
        base,
        path,
        when,
        reason,
    }
}

use Base::{Container as C, Pod as P, Projection as J, Volume as V};
use When::{NonZero, NotEqual, Set, True};

const PROBES: &str = "probes and lifecycle hooks";
const TERMINAL: &str = "interactive terminals";
const LSM: &str = "security profiles";
const VOLUMES: &str = "this volume type";
const SCHEDULING: &str = "advanced scheduling";

/// Every Pod field Podium refuses today. Delete rows as features land.
pub static UNSUPPORTED: &[Unsupported] = &[
    // Containers (init and app).
    row(C, "livenessProbe", Set, PROBES),
    row(C, "readinessProbe", Set, PROBES),
    row(C, "startupProbe", Set, PROBES),
    row(C, "lifecycle", Set, PROBES),
    row(C, "stdin", True, TERMINAL),
    row(C, "stdinOnce", True, TERMINAL),
    row(C, "tty", True, TERMINAL),
    row(C, "volumeDevices", Set, "raw block devices"),
    row(C, "resizePolicy", Set, "in-place resize"),
    row(C, "restartPolicyRules", Set, "container restart rules"),
    row(C, "resources.claims", Set, "dynamic resource allocation"),
    row(
        C,
        "env[*].valueFrom.fileKeyRef",
        Set,
        "environment variables from files",
    ),
    row(C, "securityContext.seccompProfile", Set, LSM),
    row(C, "securityContext.appArmorProfile", Set, LSM),
    row(C, "securityContext.seLinuxOptions", Set, LSM),
    row(
        C,
        "securityContext.windowsOptions",
        Set,
        "Windows containers",
    ),
    row(
        C,
        "securityContext.procMount",
        NotEqual("Default"),
        "unmasked /proc",
    ),
    row(
        C,
        "volumeMounts[*].mountPropagation",
        Set,
        "mount propagation",
    ),
    row(C, "volumeMounts[*].subPathExpr", Set, "subPathExpr"),
    row(
        C,
        "volumeMounts[*].recursiveReadOnly",
        Set,
        "recursive read-only mounts",
    ),
    row(
        C,
        "volumeMounts[*].bindMountOptions",
        Set,
        "bind mount options",
    ),
    // Pod security context.
    row(P, "securityContext.sysctls", Set, "sysctls"),
    row(P, "securityContext.seccompProfile", Set, LSM),
    row(P, "securityContext.appArmorProfile", Set, LSM),
    row(P, "securityContext.seLinuxOptions", Set, LSM),
    row(P, "securityContext.seLinuxChangePolicy", Set, LSM),
    row(
        P,
        "securityContext.windowsOptions",
        Set,
        "Windows containers",
    ),
    row(
        P,
        "securityContext.fsGroupChangePolicy",
        Set,
        "fsGroupChangePolicy",
    ),
    row(
        P,
        "securityContext.supplementalGroupsPolicy",
        Set,
        "supplementalGroupsPolicy",
    ),
    // Pod spec.
    row(P, "affinity", Set, SCHEDULING),
    row(P, "topologySpreadConstraints", Set, SCHEDULING),
    row(P, "schedulingGates", Set, SCHEDULING),
    row(P, "schedulingGroup", Set, SCHEDULING),
    row(P, "priorityClassName", Set, "priority classes"),
    row(P, "priority", NonZero, "priority classes"),
    row(P, "preemptionPolicy", Set, "preemption"),
    row(P, "runtimeClassName", Set, "runtime classes"),
    row(P, "overhead", Set, "runtime classes"),
    row(P, "readinessGates", Set, "readiness gates"),
    row(P, "ephemeralContainers", Set, "ephemeral containers"),
    row(P, "resourceClaims", Set, "dynamic resource allocation"),
    row(P, "resources", Set, "pod-level resources"),
    row(P, "hostUsers", When::False, "user namespaces"),
    row(P, "setHostnameAsFQDN", True, "setHostnameAsFQDN"),
    row(P, "hostnameOverride", Set, "hostnameOverride"),
    row(P, "evictionResponders", Set, "eviction responders"),
    row(
        P,
        "os.name",
        NotEqual("linux"),
        "operating systems other than linux",
    ),
    row(
        P,
        "schedulerName",
        NotEqual("default-scheduler"),
        "other schedulers",
    ),
    // Volume sources other than emptyDir, hostPath, configMap, secret, downwardAPI, projected.
    row(V, "persistentVolumeClaim", Set, VOLUMES),
    row(V, "ephemeral", Set, VOLUMES),
    row(V, "csi", Set, VOLUMES),
    row(V, "image", Set, VOLUMES),
    row(V, "nfs", Set, VOLUMES),
    row(V, "iscsi", Set, VOLUMES),
    row(V, "fc", Set, VOLUMES),
    row(V, "rbd", Set, VOLUMES),
    row(V, "cephfs", Set, VOLUMES),
    row(V, "glusterfs", Set, VOLUMES),
    row(V, "gitRepo", Set, VOLUMES),
    row(V, "flexVolume", Set, VOLUMES),
    row(V, "flocker", Set, VOLUMES),
    row(V, "cinder", Set, VOLUMES),
    row(V, "awsElasticBlockStore", Set, VOLUMES),
    row(V, "gcePersistentDisk", Set, VOLUMES),
    row(V, "azureDisk", Set, VOLUMES),
    row(V, "azureFile", Set, VOLUMES),
    row(V, "vsphereVolume", Set, VOLUMES),
    row(V, "photonPersistentDisk", Set, VOLUMES),
    row(V, "portworxVolume", Set, VOLUMES),
    row(V, "quobyte", Set, VOLUMES),
    row(V, "scaleIO", Set, VOLUMES),
    row(V, "storageos", Set, VOLUMES),
    row(V, "downwardAPI.items[*].user", Set, "per-file owners"),
    // Projected volume sources other than configMap, secret, downwardAPI.
    row(
        J,
        "serviceAccountToken",
        Set,
        "service account token projection",
    ),
    row(J, "clusterTrustBundle", Set, "cluster trust bundles"),
    row(J, "podCertificate", Set, "pod certificates"),
    row(J, "downwardAPI.items[*].user", Set, "per-file owners"),
];

fn refused(v: &Value, when: When) -> bool {
    match when {
        When::Set => !matches!(v, Value::Null) && !matches!(v, Value::Array(a) if a.is_empty()),
        When::True => v.as_bool() == Some(true),
        When::False => v.as_bool() == Some(false),
        When::NotEqual(s) => !v.is_null() && v.as_str() != Some(s),
        When::NonZero => !v.is_null() && v.as_i64() != Some(0),
    }
}

/// Walks `segments` from `v`, calling `found` with each matching value and its path.
fn walk(v: &Value, path: &FieldPath, segments: &[&str], found: &mut dyn FnMut(&Value, FieldPath)) {
    let Some((first, rest)) = segments.split_first() else {
        found(v, path.clone());
        return;
    };
    let (name, each) = match first.strip_suffix("[*]") {
        Some(n) => (n, true),
        None => (*first, false),
    };
    let Some(next) = get(v, name) else { return };
    let child = path.child(name);
    if each {
        for (i, item) in next
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            walk(item, &child.index(i), rest, found);
        }
    } else {
        walk(next, &child, rest, found);
    }
}

/// The bases of one kind in `spec`, with their paths.
fn bases(spec: &Value, base: Base) -> Vec<(&Value, FieldPath)> {
    let root = FieldPath::root("spec");
    match base {
        Base::Pod => vec![(spec, root)],
        Base::Container => ["initContainers", "containers"]
            .iter()
            .flat_map(|list| {
                let p = root.child(list);
                get_arr(spec, list)
                    .iter()
                    .enumerate()
                    .map(move |(i, c)| (c, p.index(i)))
            })
            .collect(),
        Base::Volume => get_arr(spec, "volumes")
            .iter()
            .enumerate()
            .map(|(i, v)| (v, root.child("volumes").index(i)))
            .collect(),
        Base::Projection => get_arr(spec, "volumes")
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let p = root
                    .child("volumes")
                    .index(i)
                    .child("projected")
                    .child("sources");
                get(v, "projected")
                    .map(|pr| get_arr(pr, "sources"))
                    .unwrap_or(&[])
                    .iter()
                    .enumerate()
                    .map(move |(j, s)| (s, p.index(j)))
            })
            .collect(),
    }
}

/// Fields of `obj` Podium does not implement yet, one `Forbidden` error per field. Only Pods
/// have such fields today.
pub fn unsupported_fields(resource: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    if resource.kind != "Pod" {
        return Vec::new();
    }
    let Some(spec) = get(obj, "spec") else {
        return Vec::new();
    };
    let mut errs = Vec::new();
    for base in [Base::Pod, Base::Container, Base::Volume, Base::Projection] {
        for (value, path) in bases(spec, base) {
            for r in UNSUPPORTED.iter().filter(|r| r.base == base) {
                let segments: Vec<&str> = r.path.split('.').collect();
                walk(value, &path, &segments, &mut |v, p| {
                    if refused(v, r.when) {
                        errs.push(FieldError::forbidden(
                            p,
                            format!("not supported by Podium yet ({})", r.reason),
                        ));
                    }
                });
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find_kind;
    use serde::de::{self, Deserializer, Visitor};
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        find_kind("", "Pod").unwrap()
    }

    fn paths(obj: &Value) -> Vec<String> {
        unsupported_fields(pods(), obj)
            .iter()
            .map(|e| e.field.to_string())
            .collect()
    }

    #[test]
    fn refuses_probes_with_exact_paths() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "image": "x", "lifecycle": {"postStart": {"exec": {"command": ["a"]}}}}],
            "containers": [{"name": "c", "image": "x"}, {"name": "d", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}}}]
        }});
        assert_eq!(
            paths(&pod),
            vec![
                "spec.initContainers[0].lifecycle",
                "spec.containers[1].livenessProbe"
            ]
        );
        let errs = unsupported_fields(pods(), &pod);
        assert_eq!(errs[1].to_string(), "spec.containers[1].livenessProbe: Forbidden: not supported by Podium yet (probes and lifecycle hooks)");
    }

    #[test]
    fn conditional_rows() {
        let ok = json!({"spec": {"schedulerName": "default-scheduler", "priority": 0, "os": {"name": "linux"}, "hostUsers": true,
            "containers": [{"name": "c", "image": "x", "tty": false, "stdin": false, "securityContext": {"procMount": "Default"}}], "readinessGates": []}});
        assert!(paths(&ok).is_empty());
        let bad = json!({"spec": {"schedulerName": "other", "priority": 10, "os": {"name": "windows"}, "hostUsers": false,
            "containers": [{"name": "c", "image": "x", "tty": true, "securityContext": {"procMount": "Unmasked"}}]}});
        assert_eq!(
            paths(&bad),
            vec![
                "spec.priority",
                "spec.hostUsers",
                "spec.os.name",
                "spec.schedulerName",
                "spec.containers[0].tty",
                "spec.containers[0].securityContext.procMount",
            ]
        );
    }

    #[test]
    fn volumes_and_lists() {
        let pod = json!({"spec": {
            "containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "a", "mountPath": "/a"}, {"name": "b", "mountPath": "/b", "mountPropagation": "HostToContainer"}]}],
            "volumes": [
                {"name": "a", "emptyDir": {}},
                {"name": "b", "persistentVolumeClaim": {"claimName": "x"}},
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "x"}}, {"serviceAccountToken": {"path": "t"}}]}}
            ]
        }});
        assert_eq!(
            paths(&pod),
            vec![
                "spec.containers[0].volumeMounts[1].mountPropagation",
                "spec.volumes[1].persistentVolumeClaim",
                "spec.volumes[2].projected.sources[1].serviceAccountToken",
            ]
        );
        assert!(unsupported_fields(find_kind("", "Secret").unwrap(), &pod).is_empty());
    }

    /// A deserializer that records the field list a k8s-openapi struct asks for.
    struct FieldNames<'a>(&'a mut Vec<&'static str>);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _v: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(fields);
            Err(de::Error::custom("done"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    fn fields_of<T: de::DeserializeOwned>() -> Vec<&'static str> {
        let mut out = Vec::new();
        let _ = T::deserialize(FieldNames(&mut out));
        assert!(!out.is_empty());
        out
    }

    /// Every field of the Pod structs is either implemented (accepted here) or refused by a
    /// row of the table: nothing is silently ignored, even after a k8s-openapi upgrade.
    #[test]
    fn every_field_is_accepted_or_listed() {
        use k8s_openapi::api::core::v1 as core;
        let checks: Vec<(Base, &str, Vec<&str>, &[&str])> = vec![
            (
                P,
                "",
                fields_of::<core::PodSpec>(),
                &[
                    "activeDeadlineSeconds",
                    "automountServiceAccountToken",
                    "containers",
                    "dnsConfig",
                    "dnsPolicy",
                    "enableServiceLinks",
                    "hostAliases",
                    "hostIPC",
                    "hostNetwork",
                    "hostPID",
                    "hostname",
                    "imagePullSecrets",
                    "initContainers",
                    "nodeName",
                    "nodeSelector",
                    "restartPolicy",
                    "securityContext",
                    "serviceAccount",
                    "serviceAccountName",
                    "shareProcessNamespace",
                    "subdomain",
                    "terminationGracePeriodSeconds",
                    "tolerations",
                    "volumes",
                    "os",
                ],
            ),
            (
                P,
                "securityContext.",
                fields_of::<core::PodSecurityContext>(),
                &[
                    "fsGroup",
                    "runAsGroup",
                    "runAsNonRoot",
                    "runAsUser",
                    "supplementalGroups",
                ],
            ),
            (
                C,
                "",
                fields_of::<core::Container>(),
                &[
                    "args",
                    "command",
                    "env",
                    "envFrom",
                    "image",
                    "imagePullPolicy",
                    "name",
                    "ports",
                    "resources",
                    "restartPolicy",
                    "securityContext",
                    "terminationMessagePath",
                    "terminationMessagePolicy",
                    "volumeMounts",
                    "workingDir",
                ],
            ),
            (
                C,
                "securityContext.",
                fields_of::<core::SecurityContext>(),
                &[
                    "allowPrivilegeEscalation",
                    "capabilities",
                    "privileged",
                    "readOnlyRootFilesystem",
                    "runAsGroup",
                    "runAsNonRoot",
                    "runAsUser",
                ],
            ),
            (
                C,
                "resources.",
                fields_of::<core::ResourceRequirements>(),
                &["limits", "requests"],
            ),
            (
                C,
                "volumeMounts[*].",
                fields_of::<core::VolumeMount>(),
                &["mountPath", "name", "readOnly", "subPath"],
            ),
            (
                C,
                "env[*].valueFrom.",
                fields_of::<core::EnvVarSource>(),
                &[
                    "configMapKeyRef",
                    "fieldRef",
                    "resourceFieldRef",
                    "secretKeyRef",
                ],
            ),
            (
                V,
                "",
                fields_of::<core::Volume>(),
                &[
                    "name",
                    "emptyDir",
                    "hostPath",
                    "configMap",
                    "secret",
                    "downwardAPI",
                    "projected",
                ],
            ),
            (
                V,
                "downwardAPI.items[*].",
                fields_of::<core::DownwardAPIVolumeFile>(),
                &["fieldRef", "mode", "path", "resourceFieldRef"],
            ),
            (
                J,
                "",
                fields_of::<core::VolumeProjection>(),
                &["configMap", "downwardAPI", "secret"],
            ),
        ];
        let mut missing = Vec::new();
        for (base, prefix, fields, accepted) in checks {
            for f in fields {
                let full = format!("{prefix}{f}");
                let listed = UNSUPPORTED.iter().any(|r| {
                    r.base == base && (r.path == full || r.path.starts_with(&format!("{full}.")))
                });
                if !accepted.contains(&f) && !listed {
                    missing.push(format!("{base:?}: {full}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "fields neither implemented nor refused: {missing:?}"
        );
        // And the table names no field k8s-openapi does not have.
        assert!(fields_of::<core::Container>().contains(&"livenessProbe"));
    }
}
