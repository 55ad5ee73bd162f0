//! Tests of the patch module: every strategic-merge directive, patches exactly as kubectl
//! 1.32 sends them, JSON (merge) patch, and the managedFields shape of server-side apply.

use super::*;
use chrono::TimeZone;
use serde_json::json;

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "default",
            "labels": {"app": "web", "disktype": "ssd"},
            "finalizers": ["a/x", "b/y"],
        },
        "spec": {
            "containers": [
                {"name": "a", "image": "busybox:1.35",
                 "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "b", "image": "nginx"},
            ],
            "tolerations": [{"key": "k1", "operator": "Exists"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    })
}

fn smp(original: &Value, patch: Value) -> Result<Value, PatchError> {
    apply_patch(
        "Pod",
        original,
        PatchType::StrategicMerge,
        serde_json::to_string(&patch).unwrap().as_bytes(),
    )
}

#[test]
fn content_types() {
    assert_eq!(
        PatchType::from_content_type("application/strategic-merge-patch+json"),
        Some(PatchType::StrategicMerge)
    );
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
        Some(PatchType::Merge)
    );
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json"),
        Some(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml"),
        Some(PatchType::Apply)
    );
    assert_eq!(PatchType::from_content_type("application/json"), None);
}

#[test]
fn strategy_table_lookups() {
    assert_eq!(list_strategy("Pod", "spec.containers"), MergeByKey("name"));
    assert_eq!(
        list_strategy("Pod", "spec.initContainers.env"),
        MergeByKey("name")
    );
    assert_eq!(
        list_strategy("Pod", "spec.ephemeralContainers.volumeMounts"),
        MergeByKey("mountPath")
    );
    assert_eq!(
        list_strategy("Pod", "spec.containers.ports"),
        MergeByKey("containerPort")
    );
    assert_eq!(list_strategy("Pod", "spec.tolerations"), Replace);
    assert_eq!(list_strategy("Service", "spec.ports"), MergeByKey("port"));
    assert_eq!(
        list_strategy("ConfigMap", "metadata.finalizers"),
        MergePrimitive
    );
    assert_eq!(
        list_strategy("Secret", "metadata.ownerReferences"),
        MergeByKey("uid")
    );
    assert_eq!(
        list_strategy("Node", "status.addresses"),
        MergeByKey("type")
    );
    assert_eq!(list_strategy("Endpoints", "subsets"), Replace);
    assert_eq!(list_strategy("Pod", "spec.unknownList"), Replace);
    // A kind's rule does not leak into another kind.
    assert_eq!(list_strategy("Node", "spec.containers"), Replace);
}

#[test]
fn kubectl_apply_patch_updates_image_and_keeps_order() {
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\"}\n"}},
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"image": "busybox:1.36", "name": "a"}]
        }
    });
    let out = smp(&pod(), patch).unwrap();
    let cs = out["spec"]["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0]["name"], "a");
    assert_eq!(cs[0]["image"], "busybox:1.36");
    // Merged, not replaced: the env of container a survives.
    assert_eq!(cs[0]["env"][1]["name"], "Y");
    assert_eq!(cs[1]["name"], "b");
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"apiVersion\":\"v1\"}\n"
    );
    assert_eq!(out["metadata"]["labels"]["app"], "web");
}

#[test]
fn set_element_order_reorders_and_appends_unlisted() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
        "containers": [{"name": "c", "image": "redis"}]
    }});
    let out = smp(&pod(), patch).unwrap();
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "a", "b"]);
}

#[test]
fn kubectl_apply_removes_container_with_patch_delete() {
    // kubectl apply, container b removed from the manifest.
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"$patch": "delete", "name": "b"}]
    }});
    let out = smp(&pod(), patch).unwrap();
    let cs = out["spec"]["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["name"], "a");
}

#[test]
fn nested_keyed_lists_merge_by_their_keys() {
    let patch = json!({"spec": {"containers": [{
        "name": "a",
        "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}],
        "ports": [{"containerPort": 8080}],
    }]}});
    let out = smp(&pod(), patch).unwrap();
    let a = &out["spec"]["containers"][0];
    assert_eq!(
        a["env"],
        json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}])
    );
    assert_eq!(a["ports"].as_array().unwrap().len(), 2);
    assert_eq!(a["ports"][1]["containerPort"], 8080);
}

#[test]
fn lists_without_strategy_are_replaced() {
    let patch = json!({"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}});
    let out = smp(&pod(), patch).unwrap();
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "k2", "operator": "Exists"}])
    );
}

#[test]
fn null_deletes_and_maps_merge() {
    let out = smp(
        &pod(),
        json!({"metadata": {"labels": {"disktype": null, "tier": "fe"}}}),
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "tier": "fe"})
    );
}

#[test]
fn patch_replace_on_a_map() {
    let out = smp(
        &pod(),
        json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
}

#[test]
fn patch_delete_on_a_map() {
    let out = smp(
        &pod(),
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
    )
    .unwrap();
    assert!(out["metadata"].get("labels").is_none());
    assert_eq!(out["metadata"]["name"], "p");
}

#[test]
fn patch_replace_element_replaces_a_merge_list() {
    let patch =
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "alpine"}]}});
    let out = smp(&pod(), patch).unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "z", "image": "alpine"}])
    );
}

#[test]
fn patch_merge_element_is_the_default() {
    let patch =
        json!({"spec": {"containers": [{"$patch": "merge"}, {"name": "z", "image": "alpine"}]}});
    let out = smp(&pod(), patch).unwrap();
    assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 3);
}

#[test]
fn retain_keys_drops_other_keys() {
    // Switching a volume from emptyDir to hostPath, as kubectl sends for retainKeys lists.
    let patch = json!({"spec": {"volumes": [{
        "$retainKeys": ["hostPath", "name"],
        "hostPath": {"path": "/tmp"},
        "name": "v"
    }]}});
    let out = smp(&pod(), patch).unwrap();
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "v", "hostPath": {"path": "/tmp"}}])
    );
}

#[test]
fn delete_from_primitive_list_and_primitive_merge() {
    let patch = json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["a/x"],
        "finalizers": ["c/z", "b/y"]
    }});
    let out = smp(&pod(), patch).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b/y", "c/z"]));
}

#[test]
fn set_element_order_on_primitive_list() {
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["b/y", "a/x"],
    }});
    let out = smp(&pod(), patch).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b/y", "a/x"]));
}

#[test]
fn new_values_are_stripped_of_directives() {
    let original = json!({"metadata": {"name": "p"}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": "x", "env": [{"name": "E", "$patch": "delete"}, {"name": "F", "value": "1"}]}]
    }});
    let out = smp(&original, patch).unwrap();
    assert_eq!(
        out["spec"],
        json!({"containers": [{"name": "a", "image": "x", "env": [{"name": "F", "value": "1"}]}]})
    );
}

#[test]
fn service_ports_merge_by_port_and_owner_references_by_uid() {
    let svc = json!({"kind": "Service", "metadata": {"name": "s",
        "ownerReferences": [{"uid": "u1", "name": "a"}]},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "u2", "name": "b"}]},
        "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}});
    let out = apply_patch(
        "Service",
        &svc,
        PatchType::StrategicMerge,
        patch.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}])
    );
    assert_eq!(
        out["metadata"]["ownerReferences"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn node_conditions_merge_by_type() {
    let node = json!({"kind": "Node", "status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}});
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let out = apply_patch(
        "Node",
        &node,
        PatchType::StrategicMerge,
        patch.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        out["status"]["conditions"][0],
        json!({"type": "Ready", "status": "True"})
    );
    assert_eq!(out["status"]["conditions"][1]["type"], "MemoryPressure");
}

#[test]
fn strategic_errors_are_clear() {
    let e = smp(&pod(), json!({"spec": {"containers": [{"image": "x"}]}})).unwrap_err();
    assert!(matches!(e, PatchError::InvalidDirective(_)));
    assert!(e.to_string().contains("merge key \"name\""), "{e}");
    let e = smp(&pod(), json!({"spec": {"$bogus": 1}})).unwrap_err();
    assert!(e.to_string().contains("$bogus"), "{e}");
    let e = smp(
        &pod(),
        json!({"metadata": {"labels": {"$patch": "explode"}}}),
    )
    .unwrap_err();
    assert!(matches!(e, PatchError::InvalidDirective(_)));
    let e = apply_patch("Pod", &pod(), PatchType::StrategicMerge, b"[1]").unwrap_err();
    assert!(matches!(e, PatchError::InvalidBody(_)));
    let e = apply_patch("Pod", &pod(), PatchType::StrategicMerge, b"{not json").unwrap_err();
    assert!(matches!(e, PatchError::InvalidBody(_)));
}

#[test]
fn kubectl_label_and_annotate_merge_patches() {
    let out = apply_patch(
        "Pod",
        &pod(),
        PatchType::Merge,
        br#"{"metadata":{"labels":{"env":"prod"}}}"#,
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "disktype": "ssd", "env": "prod"})
    );
    let out = apply_patch(
        "Pod",
        &out,
        PatchType::Merge,
        br#"{"metadata":{"labels":{"disktype":null}}}"#,
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "env": "prod"})
    );
    let out = apply_patch(
        "Pod",
        &out,
        PatchType::Merge,
        br#"{"metadata":{"annotations":{"note":"hi"}}}"#,
    )
    .unwrap();
    assert_eq!(out["metadata"]["annotations"]["note"], "hi");
    // Merge patch replaces lists whole.
    let out = apply_patch(
        "Pod",
        &out,
        PatchType::Merge,
        br#"{"spec":{"containers":[{"name":"q"}]}}"#,
    )
    .unwrap();
    assert_eq!(out["spec"]["containers"], json!([{"name": "q"}]));
}

#[test]
fn merge_patch_to_non_object_is_invalid_result() {
    let e = apply_patch("Pod", &pod(), PatchType::Merge, b"[1,2]").unwrap_err();
    assert_eq!(e, PatchError::NotAnObject);
    assert!(e.is_invalid_result());
}

#[test]
fn json_patch_operations_and_failed_test() {
    let body = br#"[{"op":"test","path":"/metadata/name","value":"p"},
                   {"op":"replace","path":"/spec/containers/0/image","value":"busybox:1.37"},
                   {"op":"add","path":"/metadata/labels/new","value":"v"},
                   {"op":"remove","path":"/metadata/labels/app"}]"#;
    let out = apply_patch("Pod", &pod(), PatchType::Json, body).unwrap();
    assert_eq!(out["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(
        out["metadata"]["labels"],
        json!({"disktype": "ssd", "new": "v"})
    );

    let body = br#"[{"op":"test","path":"/metadata/name","value":"s3cr3t-value"}]"#;
    let e = apply_patch("Pod", &pod(), PatchType::Json, body).unwrap_err();
    assert!(matches!(e, PatchError::JsonPatch(_)));
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    assert!(e.is_invalid_result());
    assert!(e.to_string().contains("/metadata/name"), "{e}");

    let e = apply_patch(
        "Pod",
        &pod(),
        PatchType::Json,
        br#"[{"op":"frobnicate","path":"/x"}]"#,
    )
    .unwrap_err();
    assert!(matches!(e, PatchError::InvalidBody(_)));
    let e = apply_patch(
        "Pod",
        &pod(),
        PatchType::Json,
        br#"[{"op":"remove","path":"/nope"}]"#,
    )
    .unwrap_err();
    assert!(matches!(e, PatchError::JsonPatch(_)));
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
}

#[test]
fn server_side_apply_creates_with_managed_fields() {
    let applied = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "a", "image": "busybox",
            "ports": [{"containerPort": 80}], "env": [{"name": "X", "value": "1"}]}],
            "tolerations": [{"key": "k", "operator": "Exists"}]},
    });
    let out = server_side_apply_at("Pod", None, &applied, "kubectl", false, t0()).unwrap();
    assert_eq!(out["spec"], applied["spec"]);
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["manager"], "kubectl");
    assert_eq!(mf[0]["operation"], "Apply");
    assert_eq!(mf[0]["apiVersion"], "v1");
    assert_eq!(mf[0]["time"], "2025-01-02T03:04:05Z");
    assert_eq!(mf[0]["fieldsType"], "FieldsV1");
    let expected = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:containers": {
                "k:{\"name\":\"a\"}": {
                    ".": {},
                    "f:env": {"k:{\"name\":\"X\"}": {".": {}, "f:name": {}, "f:value": {}}},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                }
            },
            "f:tolerations": {},
        }
    });
    assert_eq!(mf[0]["fieldsV1"], expected);
    // Keys are serialized in Kubernetes' sorted order.
    let text =
        serde_json::to_string(&mf[0]["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"])
            .unwrap();
    assert!(text.starts_with("{\".\":{},\"f:env\""), "{text}");
}

#[test]
fn server_side_apply_updates_live_and_replaces_own_entry() {
    let live = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "uid": "u", "resourceVersion": "5",
            "labels": {"keep": "me"},
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2020-01-01T00:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:old": {}}}},
                {"manager": "other", "operation": "Update", "apiVersion": "v1", "time": "2020-01-01T00:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {}}
            ]},
        "data": {"old": "1", "k": "v"},
    });
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["x/y"]}, "data": {"k": "v2"}});
    let out =
        server_side_apply_at("ConfigMap", Some(&live), &applied, "kubectl", true, t0()).unwrap();
    assert_eq!(out["data"], json!({"old": "1", "k": "v2"}));
    assert_eq!(out["metadata"]["uid"], "u");
    assert_eq!(out["metadata"]["labels"]["keep"], "me");
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 2);
    assert_eq!(mf[0]["manager"], "kubectl");
    assert_eq!(mf[0]["time"], "2025-01-02T03:04:05Z");
    assert_eq!(
        mf[0]["fieldsV1"],
        json!({"f:data": {"f:k": {}}, "f:metadata": {"f:finalizers": {"v:\"x/y\"": {}}}})
    );
    assert_eq!(mf[1]["manager"], "other");

    // A second manager adds its own entry.
    let out = server_side_apply_at("ConfigMap", Some(&out), &applied, "helm", false, t0()).unwrap();
    assert_eq!(
        out["metadata"]["managedFields"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn server_side_apply_ignores_applied_managed_fields_and_parses_yaml() {
    let body = b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  managedFields:\n  - manager: evil\ntype: Opaque\nstringData:\n  a: b\n";
    let applied = parse_apply_body(body).unwrap();
    let out = server_side_apply_at("Secret", None, &applied, "kubectl", false, t0()).unwrap();
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["manager"], "kubectl");
    assert_eq!(
        mf[0]["fieldsV1"],
        json!({"f:stringData": {"f:a": {}}, "f:type": {}})
    );
    assert!(parse_apply_body(b"- a\n- b\n").is_err());
    assert!(parse_apply_body(b"a: [unclosed\n").is_err());
}

#[test]
fn apply_patch_type_apply_merges_yaml() {
    let out = apply_patch(
        "Pod",
        &pod(),
        PatchType::Apply,
        b"metadata:\n  labels:\n    x: y\n",
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"]["x"], "y");
    assert_eq!(out["metadata"]["labels"]["app"], "web");
}

/// The live pod of the captures below (created from a manifest with containers a and b).
fn captured_live() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "1",
            "labels": {"app": "web", "disktype": "ssd"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"containers": [{"image": "busybox:1.35", "name": "a"}, {"image": "nginx", "name": "b"}]}})
}

#[test]
fn captured_kubectl_1_32_client_side_apply() {
    // Exactly what `kubectl apply -f p.yaml` sent (label disktype and container b removed,
    // image of a changed).
    let body = br#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"web\"},\"name\":\"p\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"image\":\"busybox:1.36\",\"name\":\"a\"}]}}\n"},"labels":{"disktype":null}},"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":[{"image":"busybox:1.36","name":"a"},{"$patch":"delete","name":"b"}]}}"#;
    let out = apply_patch("Pod", &captured_live(), PatchType::StrategicMerge, body).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        out["spec"]["containers"],
        json!([{"image": "busybox:1.36", "name": "a"}])
    );
    assert_eq!(out["metadata"]["uid"], "u");
    assert!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap()
            .contains("busybox:1.36")
    );
}

#[test]
fn captured_kubectl_1_32_label_annotate_and_server_side_apply() {
    let out = apply_patch(
        "Pod",
        &captured_live(),
        PatchType::Merge,
        br#"{"metadata":{"labels":{"disktype":null,"env":"prod"}}}"#,
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "env": "prod"})
    );
    let out = apply_patch(
        "Pod",
        &out,
        PatchType::Merge,
        br#"{"metadata":{"annotations":{"note":"hi"}}}"#,
    )
    .unwrap();
    assert_eq!(out["metadata"]["annotations"]["note"], "hi");
    assert_eq!(out["metadata"]["annotations"].as_object().unwrap().len(), 2);

    // `kubectl apply --server-side` (manager kubectl, force=false).
    let body = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"name":"p","namespace":"default"},"spec":{"containers":[{"image":"busybox:1.36","name":"a"}]}}"#;
    let applied = parse_apply_body(body).unwrap();
    let out = server_side_apply_at(
        "Pod",
        Some(&captured_live()),
        &applied,
        "kubectl",
        false,
        t0(),
    )
    .unwrap();
    assert_eq!(out["spec"]["containers"][0]["image"], "busybox:1.36");
    // Fields absent from the applied configuration are kept (create-or-update semantics).
    assert_eq!(out["spec"]["containers"][1]["name"], "b");
    assert_eq!(
        out["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
               "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
    );
}
