//! The store key layout: `/registry/<group-resource>/<namespace>/<name>` for namespaced
//! objects, `/registry/<group-resource>/<name>` for cluster-scoped ones.

use podium_api::ResourceInfo;

pub fn object_key(r: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match (r.namespaced(), namespace) {
        (true, Some(ns)) => format!("/registry/{}/{}/{}", r.group_resource(), ns, name),
        _ => format!("/registry/{}/{}", r.group_resource(), name),
    }
}

/// The prefix that lists a namespace (or, with None, every object of the resource).
pub fn list_prefix(r: &ResourceInfo, namespace: Option<&str>) -> String {
    match (r.namespaced(), namespace) {
        (true, Some(ns)) => format!("/registry/{}/{}/", r.group_resource(), ns),
        _ => format!("/registry/{}/", r.group_resource()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podium_api::resources::find;

    #[test]
    fn layout() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            object_key(pods, Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert_eq!(
            list_prefix(pods, Some("default")),
            "/registry/pods/default/"
        );
        assert_eq!(list_prefix(pods, None), "/registry/pods/");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(object_key(nodes, None, "n1"), "/registry/nodes/n1");
        let leases = find("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(
            object_key(leases, Some("kube-node-lease"), "n1"),
            "/registry/leases.coordination.k8s.io/kube-node-lease/n1"
        );
    }
}
