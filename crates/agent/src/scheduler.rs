//! The minimal scheduler of a single-node server: does a pod fit this node? Only what a
//! node's labels decide — `spec.nodeSelector` and required node affinity
//! (`requiredDuringSchedulingIgnoredDuringExecution` match expressions) — with the real
//! scheduler's message when it does not. The manager binds fitting pods and marks the
//! others `PodScheduled=False` / `Unschedulable`. Pure.

use serde_json::{Map, Value};

use crate::facts::{arr_at, str_at};

/// The scheduler's message for a pod that does not fit the only node.
pub const SELECTOR_MISMATCH: &str = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

/// Whether this scheduler is responsible for the pod (default scheduler, unbound).
pub fn wants(pod: &Value) -> bool {
    str_at(pod, &["spec", "nodeName"]).is_empty()
        && matches!(
            str_at(pod, &["spec", "schedulerName"]),
            "" | "default-scheduler"
        )
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

fn label<'a>(labels: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    labels.get(k).and_then(Value::as_str)
}

fn expression_matches(expr: &Value, labels: &Map<String, Value>) -> bool {
    let key = str_at(expr, &["key"]);
    let values: Vec<&str> = arr_at(expr, &["values"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let have = label(labels, key);
    let num = |s: &str| s.parse::<i64>().ok();
    match str_at(expr, &["operator"]) {
        "In" => have.is_some_and(|v| values.contains(&v)),
        "NotIn" => have.is_none_or(|v| !values.contains(&v)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" => {
            matches!((have.and_then(num), values.first().and_then(|v| num(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((have.and_then(num), values.first().and_then(|v| num(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Whether the pod may run on a node with these labels (and this name, for
/// `matchFields` on `metadata.name`).
pub fn fits(pod: &Value, node_name: &str, labels: &Map<String, Value>) -> bool {
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object) {
        for (k, v) in sel {
            if label(labels, k) != v.as_str() {
                return false;
            }
        }
    }
    let terms = arr_at(
        pod,
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        ],
    );
    if terms.is_empty() {
        return true;
    }
    // Terms are ORed; expressions within a term are ANDed.
    terms.iter().any(|t| {
        let exprs = arr_at(t, &["matchExpressions"]);
        let fields = arr_at(t, &["matchFields"]);
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        let mut name_labels = Map::new();
        name_labels.insert("metadata.name".into(), Value::String(node_name.into()));
        exprs.iter().all(|e| expression_matches(e, labels))
            && fields.iter().all(|e| expression_matches(e, &name_labels))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels() -> Map<String, Value> {
        json!({"kubernetes.io/hostname": "n1", "disktype": "ssd", "gen": "5"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn node_selector() {
        assert!(fits(&json!({"spec": {}}), "n1", &labels()));
        assert!(fits(
            &json!({"spec": {"nodeSelector": {"disktype": "ssd"}}}),
            "n1",
            &labels()
        ));
        assert!(!fits(
            &json!({"spec": {"nodeSelector": {"disktype": "hdd"}}}),
            "n1",
            &labels()
        ));
        assert!(!fits(
            &json!({"spec": {"nodeSelector": {"zone": "a"}}}),
            "n1",
            &labels()
        ));
    }

    #[test]
    fn required_node_affinity() {
        let pod = |exprs: Value| {
            json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}})
        };
        assert!(fits(
            &pod(json!([{"key": "disktype", "operator": "In", "values": ["ssd", "nvme"]}])),
            "n1",
            &labels()
        ));
        assert!(!fits(
            &pod(json!([{"key": "disktype", "operator": "NotIn", "values": ["ssd"]}])),
            "n1",
            &labels()
        ));
        assert!(fits(
            &pod(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])),
            "n1",
            &labels()
        ));
        assert!(!fits(
            &pod(json!([{"key": "gen", "operator": "Lt", "values": ["4"]}])),
            "n1",
            &labels()
        ));
        assert!(fits(
            &pod(json!([{"key": "zone", "operator": "DoesNotExist"}])),
            "n1",
            &labels()
        ));
        assert!(!fits(
            &pod(json!([{"key": "zone", "operator": "Exists"}])),
            "n1",
            &labels()
        ));
        let by_name = json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}});
        assert!(fits(&by_name, "n1", &labels()));
        assert!(!fits(&by_name, "n3", &labels()));
    }

    #[test]
    fn responsibility() {
        assert!(wants(&json!({"spec": {}})));
        assert!(!wants(&json!({"spec": {"nodeName": "n1"}})));
        assert!(!wants(&json!({"spec": {"schedulerName": "other"}})));
        assert!(!wants(
            &json!({"metadata": {"deletionTimestamp": "x"}, "spec": {}})
        ));
    }
}
