//! The table of kinds Podium serves: one row per resource, read by discovery, routing,
//! the store key layout and OpenAPI. Adding a kind is adding a row here.

/// Whether objects live inside a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One served resource (a plural name in one group/version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower case: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources as (name, kind of their body), e.g. ("status", "Pod").
    pub subresources: &'static [(&'static str, &'static str)],
}

/// Verbs every resource supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `v1` or `coordination.k8s.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }
    /// `pods` or `leases.coordination.k8s.io`: the key prefix segment in the store.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|(s, _)| *s == name)
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $scope:expr,
     [$($short:expr),*], [$($cat:expr),*], [$(($sub:expr, $subkind:expr)),*]) => {
        ResourceInfo {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            scope: $scope,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$(($sub, $subkind)),*],
        }
    };
}

use Scope::{Cluster, Namespaced};

/// Every resource Podium serves.
pub static RESOURCES: &[ResourceInfo] = &[
    resource!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        Cluster,
        ["ns"],
        [],
        [("status", "Namespace"), ("finalize", "Namespace")]
    ),
    resource!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        Namespaced,
        ["po"],
        ["all"],
        [("status", "Pod"), ("binding", "Binding"), ("log", "Pod")]
    ),
    resource!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        Cluster,
        ["no"],
        [],
        [("status", "Node")]
    ),
    resource!(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        Namespaced,
        [],
        [],
        []
    ),
    resource!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        Namespaced,
        ["cm"],
        [],
        []
    ),
    resource!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        Namespaced,
        ["ev"],
        [],
        []
    ),
    resource!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        Namespaced,
        ["sa"],
        [],
        []
    ),
    resource!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        Namespaced,
        ["svc"],
        ["all"],
        [("status", "Service")]
    ),
    resource!(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        Namespaced,
        ["ep"],
        [],
        []
    ),
    resource!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        Namespaced,
        [],
        [],
        []
    ),
    resource!(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        Namespaced,
        [],
        [],
        []
    ),
];

/// Whether `field` may be used in a field selector on `r`, as kube-apiserver allows:
/// `metadata.name` and `metadata.namespace` everywhere, plus each kind's own.
pub fn supports_field_label(r: &ResourceInfo, field: &str) -> bool {
    let specific: &[&str] = match r.kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Service" => &["spec.clusterIP", "spec.type"],
        _ => &[],
    };
    field == "metadata.name" || field == "metadata.namespace" || specific.contains(&field)
}

/// Looks a resource up by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a resource up by group and kind.
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// The distinct (group, version) pairs, core first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.kind, "Pod");
        assert!(pods.has_subresource("binding"));
        assert_eq!(
            find_kind("coordination.k8s.io", "Lease")
                .unwrap()
                .group_resource(),
            "leases.coordination.k8s.io"
        );
        assert_eq!(group_versions()[0], ("", "v1"));
    }
}
