//! Tests of table rows for each kind, and of the human duration format.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn ago(secs: i64) -> String {
    (now() - Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn pod(status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(300),
                     "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": status,
    })
}

fn row(kind: &str, obj: &Value) -> Vec<Value> {
    cells(kind, obj, now()).0
}

fn status_of(p: &Value) -> String {
    row("Pod", p)[2].as_str().unwrap().to_string()
}

#[test]
fn human_durations() {
    let h = |s: i64| human_duration(Duration::seconds(s));
    assert_eq!(h(-5), "<invalid>");
    assert_eq!(h(-1), "0s");
    assert_eq!(h(0), "0s");
    assert_eq!(h(45), "45s");
    assert_eq!(h(119), "119s");
    assert_eq!(h(120), "2m");
    assert_eq!(h(182), "3m2s");
    assert_eq!(h(600), "10m");
    assert_eq!(h(179 * 60), "179m");
    assert_eq!(h(3 * 3600), "3h");
    assert_eq!(h(5 * 3600 + 3 * 60 + 20), "5h3m");
    assert_eq!(h(8 * 3600), "8h");
    assert_eq!(h(47 * 3600), "47h");
    assert_eq!(h(2 * 86400 + 5 * 3600), "2d5h");
    assert_eq!(h(3 * 86400), "3d");
    assert_eq!(h(8 * 86400), "8d");
    assert_eq!(h(729 * 86400), "729d");
    assert_eq!(h(730 * 86400), "2y");
    assert_eq!(h(760 * 86400), "2y30d");
    assert_eq!(h(9 * 365 * 86400), "9y");
}

#[test]
fn table_shape_with_partial_object_metadata() {
    let p = pod(json!({"phase": "Pending"}));
    let t = table(
        "Pod",
        std::slice::from_ref(&p),
        IncludeObject::default(),
        now(),
        json!({"resourceVersion": "42"}),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"]["resourceVersion"], "42");
    let cols = t["columnDefinitions"].as_array().unwrap();
    let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(cols[0]["format"], "name");
    assert_eq!(cols[0]["priority"], 0);
    assert_eq!(cols[5]["priority"], 1);
    let r = &t["rows"][0];
    assert_eq!(r["cells"].as_array().unwrap().len(), cols.len());
    assert_eq!(
        r["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": p["metadata"]})
    );

    let t = table(
        "Pod",
        std::slice::from_ref(&p),
        IncludeObject::Object,
        now(),
        json!({}),
    );
    assert_eq!(t["rows"][0]["object"], p);
    let t = table(
        "Pod",
        std::slice::from_ref(&p),
        IncludeObject::None,
        now(),
        json!({}),
    );
    assert!(t["rows"][0].get("object").is_none());
    assert_eq!(
        IncludeObject::from_query("Object"),
        Some(IncludeObject::Object)
    );
    assert_eq!(IncludeObject::from_query("None"), Some(IncludeObject::None));
    assert_eq!(IncludeObject::from_query("bogus"), None);
}

#[test]
fn running_pod_row() {
    let p = pod(json!({
        "phase": "Running",
        "podIPs": [{"ip": "10.88.0.5"}],
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(200)}}},
            {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": ago(200)}}},
        ],
    }));
    assert_eq!(
        row("Pod", &p),
        vec![
            json!("web"),
            json!("1/2"),
            json!("Running"),
            json!("0"),
            json!("5m"),
            json!("10.88.0.5"),
            json!("n1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

#[test]
fn pending_pod_without_statuses() {
    let mut p = pod(json!({"phase": "Pending"}));
    p["spec"].as_object_mut().unwrap().remove("nodeName");
    let r = row("Pod", &p);
    assert_eq!(r[1], "0/2");
    assert_eq!(r[2], "Pending");
    assert_eq!(r[5], "<none>");
    assert_eq!(r[6], "<none>");
}

#[test]
fn waiting_reasons_show() {
    for reason in [
        "ContainerCreating",
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
    ] {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}},
        ]}));
        assert_eq!(status_of(&p), reason);
    }
}

#[test]
fn restarts_with_last_restart_age() {
    let p = pod(json!({"phase": "Running", "containerStatuses": [
        {"name": "a", "ready": false, "restartCount": 3,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}},
        {"name": "b", "ready": true, "restartCount": 1, "state": {"running": {}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3600)}}},
    ]}));
    let r = row("Pod", &p);
    assert_eq!(r[3], "4 (5m ago)");
    assert_eq!(r[2], "CrashLoopBackOff");
    assert_eq!(r[1], "1/2");
}

#[test]
fn completed_and_error_pods() {
    // Terminated reasons from the runtime.
    let p = pod(json!({"phase": "Succeeded", "containerStatuses": [
        {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
    ]}));
    assert_eq!(status_of(&p), "Completed");
    let (_, conditions) = cells("Pod", &p, now());
    assert_eq!(conditions[0]["type"], "Completed");
    // Without a runtime reason, as kubelet/containerd name them.
    let p = pod(json!({"phase": "Failed", "containerStatuses": [
        {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2}}},
    ]}));
    assert_eq!(status_of(&p), "Error");
    let p = pod(json!({"phase": "Succeeded"}));
    assert_eq!(status_of(&p), "Completed");
    let p = pod(json!({"phase": "Failed"}));
    assert_eq!(status_of(&p), "Error");
    let p = pod(json!({"phase": "Failed", "reason": "Evicted"}));
    assert_eq!(status_of(&p), "Evicted");
    let p = pod(json!({"phase": "Running", "containerStatuses": [
        {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}},
    ]}));
    assert_eq!(status_of(&p), "OOMKilled");
}

#[test]
fn completed_container_with_running_sibling() {
    let mut p = pod(
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}},
        ]}),
    );
    assert_eq!(status_of(&p), "Running");
    p["status"]["conditions"][0]["status"] = json!("False");
    assert_eq!(status_of(&p), "NotReady");
}

#[test]
fn init_container_states() {
    let mut p = pod(json!({"phase": "Pending",
    "initContainerStatuses": [
        {"name": "i1", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
        {"name": "i2", "ready": false, "restartCount": 0, "state": {"running": {}}},
    ],
    "containerStatuses": [
        {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
    ]}));
    p["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}, {"name": "i3"}]);
    assert_eq!(status_of(&p), "Init:1/3");
    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"waiting": {"reason": "CrashLoopBackOff"}});
    assert_eq!(status_of(&p), "Init:CrashLoopBackOff");
    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
    assert_eq!(status_of(&p), "Init:ExitCode:3");
    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"terminated": {"exitCode": 1, "reason": "Error"}});
    assert_eq!(status_of(&p), "Init:Error");
}

#[test]
fn sidecar_counts_in_ready_total() {
    let mut p = pod(json!({"phase": "Running",
    "initContainerStatuses": [
        {"name": "side", "ready": true, "started": true, "restartCount": 2, "state": {"running": {}}},
    ],
    "containerStatuses": [
        {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
        {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}},
    ]}));
    p["spec"]["initContainers"] = json!([{"name": "side", "restartPolicy": "Always"}]);
    let r = row("Pod", &p);
    assert_eq!(r[1], "3/3");
    assert_eq!(r[2], "Running");
    assert_eq!(r[3], "2");
}

#[test]
fn terminating_pod_and_readiness_gates() {
    let mut p = pod(
        json!({"phase": "Running", "conditions": [{"type": "example.com/gate", "status": "True"}]}),
    );
    p["metadata"]["deletionTimestamp"] = json!(ago(1));
    p["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/gate"}, {"conditionType": "other"}]);
    let r = row("Pod", &p);
    assert_eq!(r[2], "Terminating");
    assert_eq!(r[8], "1/2");
    // A finished pod being deleted keeps its terminal status.
    let mut p = pod(json!({"phase": "Succeeded"}));
    p["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(status_of(&p), "Completed");
}

#[test]
fn node_rows() {
    let mut n = json!({
        "metadata": {"name": "n1", "creationTimestamp": ago(2 * 86400 + 5 * 3600),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/hostname": "n1"}},
        "spec": {},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.5"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0-podium", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "kernelVersion": "6.1.0", "containerRuntimeVersion": "podium://0.1.0"},
        },
    });
    assert_eq!(
        row("Node", &n),
        vec![
            json!("n1"),
            json!("Ready"),
            json!("control-plane,worker"),
            json!("2d5h"),
            json!("v1.32.0-podium"),
            json!("192.168.1.5"),
            json!("<none>"),
            json!("Debian GNU/Linux 12 (bookworm)"),
            json!("6.1.0"),
            json!("podium://0.1.0")
        ]
    );
    n["spec"]["unschedulable"] = json!(true);
    n["status"]["conditions"][1]["status"] = json!("Unknown");
    n["metadata"]["labels"] = json!({});
    let r = row("Node", &n);
    assert_eq!(r[1], "NotReady,SchedulingDisabled");
    assert_eq!(r[2], "<none>");
    n["status"]["conditions"] = json!([]);
    n["status"]["nodeInfo"] = json!({});
    let r = row("Node", &n);
    assert_eq!(r[1], "Unknown,SchedulingDisabled");
    assert_eq!(r[9], "<unknown>");
    assert_eq!(columns("Node").len(), r.len());
}

#[test]
fn simple_kinds() {
    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(45)}, "status": {"phase": "Active"}});
    assert_eq!(
        row("Namespace", &ns),
        vec![json!("kube-system"), json!("Active"), json!("45s")]
    );

    let secret = json!({"metadata": {"name": "s", "creationTimestamp": ago(182)}, "type": "Opaque", "data": {"a": "YQ==", "b": "Yg=="}});
    assert_eq!(
        row("Secret", &secret),
        vec![json!("s"), json!("Opaque"), json!(2), json!("3m2s")]
    );

    let cm = json!({"metadata": {"name": "c", "creationTimestamp": ago(8 * 86400)}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
    assert_eq!(
        row("ConfigMap", &cm),
        vec![json!("c"), json!(2), json!("8d")]
    );

    let sa = json!({"metadata": {"name": "default", "creationTimestamp": ago(600)}});
    assert_eq!(
        row("ServiceAccount", &sa),
        vec![json!("default"), json!(0), json!("10m")]
    );

    let lease = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
    assert_eq!(
        row("Lease", &lease),
        vec![json!("n1"), json!("n1"), json!("<unknown>")]
    );

    let other = json!({"metadata": {"name": "x", "creationTimestamp": ago(10)}});
    assert_eq!(row("EndpointSlice", &other), vec![json!("x"), json!("10s")]);
    let t = table(
        "EndpointSlice",
        &[other],
        IncludeObject::Metadata,
        now(),
        json!({}),
    );
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 2);
    for (kind, n) in [
        ("Namespace", 3),
        ("Secret", 4),
        ("ConfigMap", 3),
        ("ServiceAccount", 3),
        ("Lease", 3),
        ("Endpoints", 3),
    ] {
        assert_eq!(columns(kind).len(), n, "{kind}");
        assert_eq!(columns(kind)[0].format, "name");
    }
}

#[test]
fn service_rows() {
    let svc = json!({"metadata": {"name": "web", "creationTimestamp": ago(60)},
        "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
                 "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
                 "selector": {"tier": "fe", "app": "web"}}});
    assert_eq!(
        row("Service", &svc),
        vec![
            json!("web"),
            json!("NodePort"),
            json!("10.43.0.10"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP"),
            json!("60s"),
            json!("app=web,tier=fe")
        ]
    );
    let lb =
        json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "None"}});
    let r = row("Service", &lb);
    assert_eq!(r[3], "<pending>");
    assert_eq!(r[4], "<none>");
    assert_eq!(r[6], "<none>");
    let ext = json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert_eq!(row("Service", &ext)[3], "example.com");
    assert_eq!(row("Service", &ext)[2], "<none>");
}

#[test]
fn event_rows() {
    let ev = json!({"metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
        "reason": "Pulled", "type": "Normal", "message": "Container image pulled\n",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 3});
    assert_eq!(
        row("Event", &ev),
        vec![
            json!("30s"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/web"),
            json!("spec.containers{a}"),
            json!("kubelet, n1"),
            json!("Container image pulled"),
            json!("10m"),
            json!(3),
            json!("web.1")
        ]
    );
    let ev = json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "Node"}, "eventTime": ago(5),
        "reportingComponent": "scheduler"});
    let r = row("Event", &ev);
    assert_eq!(r[0], "5s");
    assert_eq!(r[3], "node");
    assert_eq!(r[5], "scheduler");
    assert_eq!(r[8], 1);
    assert_eq!(columns("Event").len(), r.len());
}

#[test]
fn endpoints_rows() {
    let ep = json!({"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
    ]});
    assert_eq!(
        row("Endpoints", &ep)[1],
        "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
    );
    let ep = json!({"metadata": {"name": "v6"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(row("Endpoints", &ep)[1], "[fd00::1]:80");
    let ep = json!({"metadata": {"name": "none"}});
    assert_eq!(row("Endpoints", &ep)[1], "<none>");
    let ep =
        json!({"metadata": {"name": "headless"}, "subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]});
    assert_eq!(row("Endpoints", &ep)[1], "10.0.0.9");
}
