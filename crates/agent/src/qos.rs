//! Pod resources as kubelet turns them into cgroups: the QoS class (`ComputePodQOS`,
//! init containers included), the pod cgroup's place in the kubepods hierarchy (cgroupfs
//! driver names), per-container and per-pod cgroup values (`MilliCPUToShares`,
//! `MilliCPUToQuota`, `ResourceConfigForPod`), the cgroup v2 weight conversion of runc/crun,
//! the OOM score adjustment, and the node-allocatable admission check with kubelet's
//! OutOfcpu / OutOfmemory / OutOfpods reasons.

use std::collections::BTreeMap;

use podium_api::quantity::Quantity;
use podium_runtime::Resources;
use serde_json::Value;

use crate::facts::{arr_at, at, str_at, NodeAllocatable};

/// CFS period kubelet uses (µs).
pub const CPU_PERIOD_US: u64 = 100_000;
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
const MIN_QUOTA_US: i64 = 1_000;

/// A pod's QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The `status.qosClass` string.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// A resource list: resource name → quantity. Unparsable quantities are skipped (the API
/// server validated them).
pub type ResourceList = BTreeMap<String, Quantity>;

fn list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, q)| Quantity::from_json(q).ok().map(|q| (k.clone(), q)))
                .collect()
        })
        .unwrap_or_default()
}

/// A container's `resources.requests`.
pub fn requests_of(container: &Value) -> ResourceList {
    list(at(container, &["resources", "requests"]))
}

/// A container's `resources.limits`.
pub fn limits_of(container: &Value) -> ResourceList {
    list(at(container, &["resources", "limits"]))
}

fn add_into(acc: &mut ResourceList, more: &ResourceList) {
    for (k, q) in more {
        let e = acc.entry(k.clone()).or_default();
        *e = e.add(q);
    }
}

fn max_into(acc: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        let e = acc.entry(k.clone()).or_default();
        if *q > *e {
            *e = *q;
        }
    }
}

/// kubelet's `ComputePodQOS`: BestEffort without any cpu/memory request or limit;
/// Guaranteed when every container (init included) limits cpu and memory and the pod's
/// summed requests equal its summed limits; Burstable otherwise.
pub fn qos_class(pod: &Value) -> QosClass {
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    let mut guaranteed = true;
    let containers = arr_at(pod, &["spec", "containers"])
        .iter()
        .chain(arr_at(pod, &["spec", "initContainers"]));
    for c in containers {
        let positive = |l: ResourceList| -> ResourceList {
            l.into_iter()
                .filter(|(k, q)| (k == "cpu" || k == "memory") && *q > Quantity::default())
                .collect()
        };
        let r = positive(requests_of(c));
        let l = positive(limits_of(c));
        add_into(&mut requests, &r);
        if !(l.contains_key("cpu") && l.contains_key("memory")) {
            guaranteed = false;
        }
        add_into(&mut limits, &l);
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
        && requests.len() == limits.len()
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

fn is_sidecar(c: &Value) -> bool {
    str_at(c, &["restartPolicy"]) == "Always"
}

/// kubelet's `AggregateContainerRequests`/`Limits` plus overhead: the sum over app
/// containers and sidecars, or the largest init container (with the sidecars started
/// before it) if larger. `ContainerFn` is called on each container's effective list.
fn aggregate(
    pod: &Value,
    of: fn(&Value) -> ResourceList,
    mut each: impl FnMut(&ResourceList),
) -> ResourceList {
    let mut total = ResourceList::new();
    for c in arr_at(pod, &["spec", "containers"]) {
        let l = of(c);
        each(&l);
        add_into(&mut total, &l);
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in arr_at(pod, &["spec", "initContainers"]) {
        let l = of(c);
        let effective = if is_sidecar(c) {
            add_into(&mut total, &l);
            add_into(&mut sidecars, &l);
            sidecars.clone()
        } else {
            let mut t = l.clone();
            add_into(&mut t, &sidecars);
            t
        };
        each(&effective);
        max_into(&mut init_max, &effective);
    }
    max_into(&mut total, &init_max);
    total
}

/// The pod's effective requests (kubelet's `PodRequests`, overhead included).
pub fn pod_requests(pod: &Value) -> ResourceList {
    let mut r = aggregate(pod, requests_of, |_| {});
    add_into(&mut r, &list(at(pod, &["spec", "overhead"])));
    r
}

/// The pod's effective limits (kubelet's `PodLimits`; overhead only on limited resources).
pub fn pod_limits(pod: &Value) -> ResourceList {
    pod_limits_declared(pod).0
}

/// Pod limits, and whether every container declares a cpu and a memory limit.
fn pod_limits_declared(pod: &Value) -> (ResourceList, bool, bool) {
    let (mut cpu_declared, mut mem_declared) = (true, true);
    let mut l = aggregate(pod, limits_of, |l| {
        if l.get("cpu").is_none_or(Quantity::is_zero) {
            cpu_declared = false;
        }
        if l.get("memory").is_none_or(Quantity::is_zero) {
            mem_declared = false;
        }
    });
    for (k, q) in list(at(pod, &["spec", "overhead"])) {
        if let Some(e) = l.get_mut(&k) {
            *e = e.add(&q);
        }
    }
    (l, cpu_declared, mem_declared)
}

/// kubelet's `MilliCPUToShares`: millicores × 1024 / 1000, within [2, 262144].
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    let shares = u64::try_from(milli.saturating_mul(1024) / 1000).unwrap_or(MAX_SHARES);
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

pub use podium_runtime::cgroup::shares_to_weight;

/// kubelet's `MilliCPUToQuota`: the CFS quota (µs per `period`), at least 1 ms; 0 = none.
pub fn milli_cpu_to_quota(milli: i64, period: u64) -> i64 {
    if milli <= 0 {
        return 0;
    }
    let period = i64::try_from(period).unwrap_or(i64::MAX);
    (milli.saturating_mul(period) / 1000).max(MIN_QUOTA_US)
}

fn millis(l: &ResourceList, k: &str) -> i64 {
    l.get(k).map_or(0, Quantity::millis)
}

fn bytes(l: &ResourceList, k: &str) -> i64 {
    l.get(k).map_or(0, Quantity::value)
}

/// A container's cgroup values (kubelet's `calculateLinuxResources`): shares from the cpu
/// request (or the limit when no request), CFS quota from the cpu limit with a 100 ms
/// period, the memory limit as the hard limit.
pub fn container_resources(container: &Value) -> Resources {
    let (req, lim) = (requests_of(container), limits_of(container));
    let (cpu_req, cpu_lim) = (millis(&req, "cpu"), millis(&lim, "cpu"));
    let shares = if cpu_req == 0 && cpu_lim != 0 {
        milli_cpu_to_shares(cpu_lim)
    } else {
        milli_cpu_to_shares(cpu_req)
    };
    let quota = milli_cpu_to_quota(cpu_lim, CPU_PERIOD_US);
    let mem = bytes(&lim, "memory");
    Resources {
        cpu_shares: Some(shares),
        cpu_quota: (quota > 0).then_some(quota),
        cpu_period: Some(CPU_PERIOD_US),
        memory_limit: (mem > 0).then_some(mem),
        pids_limit: None,
    }
}

/// The pod cgroup's values (kubelet's `ResourceConfigForPod`): Guaranteed pods get shares,
/// quota and memory of the pod sums; Burstable pods get shares, and quota / memory only
/// when every container limits them; BestEffort pods get the minimum shares.
/// `pids_limit` is kubelet's `podPidsLimit` (`None` = unlimited).
pub fn pod_resources(pod: &Value, pids_limit: Option<i64>) -> Resources {
    let req = pod_requests(pod);
    let (lim, cpu_declared, mem_declared) = pod_limits_declared(pod);
    let shares = milli_cpu_to_shares(millis(&req, "cpu"));
    let quota = milli_cpu_to_quota(millis(&lim, "cpu"), CPU_PERIOD_US);
    let mem = bytes(&lim, "memory");
    let mut r = Resources {
        pids_limit,
        ..Resources::default()
    };
    match qos_class(pod) {
        QosClass::Guaranteed => {
            r.cpu_shares = Some(shares);
            r.cpu_quota = (quota > 0).then_some(quota);
            r.cpu_period = Some(CPU_PERIOD_US);
            r.memory_limit = (mem > 0).then_some(mem);
        }
        QosClass::Burstable => {
            r.cpu_shares = Some(shares);
            if cpu_declared {
                r.cpu_quota = (quota > 0).then_some(quota);
                r.cpu_period = Some(CPU_PERIOD_US);
            }
            if mem_declared {
                r.memory_limit = (mem > 0).then_some(mem);
            }
        }
        QosClass::BestEffort => r.cpu_shares = Some(MIN_SHARES),
    }
    r
}

/// The QoS-level cgroup under `root` (cgroupfs driver): `root` itself for Guaranteed,
/// `root/burstable`, `root/besteffort`.
pub fn qos_cgroup(root: &str, qos: QosClass) -> String {
    let root = root.trim_end_matches('/');
    match qos {
        QosClass::Guaranteed => root.to_string(),
        QosClass::Burstable => format!("{root}/burstable"),
        QosClass::BestEffort => format!("{root}/besteffort"),
    }
}

/// The pod's cgroup: `<root>/pod<uid>`, `<root>/burstable/pod<uid>`,
/// `<root>/besteffort/pod<uid>`.
pub fn pod_cgroup(root: &str, qos: QosClass, pod_uid: &str) -> String {
    format!("{}/pod{pod_uid}", qos_cgroup(root, qos))
}

/// A container's cgroup: the pod's cgroup plus the container ID (containerd's cgroupfs
/// layout).
pub fn container_cgroup(root: &str, qos: QosClass, pod_uid: &str, container_id: &str) -> String {
    format!("{}/{container_id}", pod_cgroup(root, qos, pod_uid))
}

/// kubelet's `GetContainerOOMScoreAdjust` for a pod that is not node-critical: -997 for
/// Guaranteed, 1000 for BestEffort, and for Burstable 1000 − 1000×request/capacity kept
/// within [3, 999]. (Lowering the score needs CAP_SYS_RESOURCE.)
pub fn oom_score_adj(pod: &Value, container: &Value, memory_capacity: i64) -> i32 {
    match qos_class(pod) {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let req = bytes(&requests_of(container), "memory");
            let adj = if memory_capacity > 0 {
                1000 - (i128::from(req) * 1000 / i128::from(memory_capacity))
            } else {
                1000
            };
            let adj = adj.clamp(3, 1000);
            i32::try_from(if adj == 1000 { 999 } else { adj }).unwrap_or(999)
        }
    }
}

/// The outcome of node-allocatable admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// The pod fails with this reason (`OutOfcpu`, `OutOfmemory`, `OutOfephemeral-storage`,
    /// `OutOfpods`) and message.
    Reject {
        reason: String,
        message: String,
    },
}

/// kubelet's resource admission (the scheduler's `Fits`, first failure reported): the pod
/// count, then cpu (millicores), memory and ephemeral-storage (bytes) requests against the
/// node's allocatable minus what `existing` (the active pods already on the node) request.
pub fn admit(pod: &Value, allocatable: &NodeAllocatable, existing: &[Value]) -> Admission {
    let reject = |name: &str, requested: i64, used: i64, capacity: i64| {
        Admission::Reject {
        reason: format!("OutOf{name}"),
        message: format!(
            "Node didn't have enough resource: {name}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    }
    };
    let used_pods = i64::try_from(existing.len()).unwrap_or(i64::MAX);
    if used_pods + 1 > allocatable.pods {
        return reject("pods", 1, used_pods, allocatable.pods);
    }
    let want = pod_requests(pod);
    let mut used = ResourceList::new();
    for p in existing {
        add_into(&mut used, &pod_requests(p));
    }
    let cpu = (
        millis(&want, "cpu"),
        millis(&used, "cpu"),
        allocatable.cpu.millis(),
    );
    if cpu.0 > 0 && cpu.0 > cpu.2 - cpu.1 {
        return reject("cpu", cpu.0, cpu.1, cpu.2);
    }
    for (name, cap) in [
        ("memory", allocatable.memory.value()),
        ("ephemeral-storage", allocatable.ephemeral_storage.value()),
    ] {
        let (w, u) = (bytes(&want, name), bytes(&used, name));
        if w > 0 && w > cap - u {
            return reject(name, w, u, cap);
        }
    }
    Admission::Admit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(req: Value, lim: Value) -> Value {
        json!({"name": "c", "resources": {"requests": req, "limits": lim}})
    }

    fn pod(containers: Vec<Value>, init: Vec<Value>) -> Value {
        json!({"metadata": {"name": "p", "uid": "u1"},
               "spec": {"containers": containers, "initContainers": init}})
    }

    #[test]
    fn qos_classes() {
        let g = c(
            json!({"cpu": "500m", "memory": "128Mi"}),
            json!({"cpu": "0.5", "memory": "128Mi"}),
        );
        assert_eq!(
            qos_class(&pod(vec![g.clone()], vec![])),
            QosClass::Guaranteed
        );
        assert_eq!(
            qos_class(&pod(vec![json!({"name": "x"})], vec![])),
            QosClass::BestEffort
        );
        // Zero requests count as none.
        assert_eq!(
            qos_class(&pod(vec![c(json!({"cpu": "0"}), json!({}))], vec![])),
            QosClass::BestEffort
        );
        // The seed's nginx: requests below limits.
        let nginx = c(
            json!({"cpu": "300m", "memory": "56Mi"}),
            json!({"cpu": "500m", "memory": "128Mi"}),
        );
        assert_eq!(qos_class(&pod(vec![nginx], vec![])), QosClass::Burstable);
        // Limits on cpu only.
        assert_eq!(
            qos_class(&pod(
                vec![c(json!({"cpu": "1"}), json!({"cpu": "1"}))],
                vec![]
            )),
            QosClass::Burstable
        );
        // An init container without limits makes a Guaranteed pod Burstable.
        assert_eq!(
            qos_class(&pod(vec![g.clone()], vec![json!({"name": "i"})])),
            QosClass::Burstable
        );
        // A best-effort app with a limited init container is Burstable.
        assert_eq!(
            qos_class(&pod(vec![json!({"name": "a"})], vec![g.clone()])),
            QosClass::Burstable
        );
        assert_eq!(
            qos_class(&pod(vec![g.clone()], vec![g])),
            QosClass::Guaranteed
        );
        // Other resources do not count.
        assert_eq!(
            qos_class(&pod(
                vec![c(json!({"ephemeral-storage": "1Gi"}), json!({}))],
                vec![]
            )),
            QosClass::BestEffort
        );
    }

    #[test]
    fn cgroup_names() {
        assert_eq!(
            pod_cgroup("/kubepods", QosClass::Guaranteed, "abc"),
            "/kubepods/podabc"
        );
        assert_eq!(
            pod_cgroup("/kubepods/", QosClass::Burstable, "abc"),
            "/kubepods/burstable/podabc"
        );
        assert_eq!(
            container_cgroup("/kubepods", QosClass::BestEffort, "abc", "c0ffee"),
            "/kubepods/besteffort/podabc/c0ffee"
        );
    }

    #[test]
    fn cpu_conversions() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(300), 307);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(500, CPU_PERIOD_US), 50_000);
        assert_eq!(milli_cpu_to_quota(5, CPU_PERIOD_US), 1_000);
        assert_eq!(milli_cpu_to_quota(0, CPU_PERIOD_US), 0);
    }

    #[test]
    fn container_cgroup_values() {
        let nginx = c(
            json!({"cpu": "300m", "memory": "56Mi"}),
            json!({"cpu": "500m", "memory": "128Mi"}),
        );
        assert_eq!(
            container_resources(&nginx),
            Resources {
                cpu_shares: Some(307),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                memory_limit: Some(128 << 20),
                pids_limit: None
            }
        );
        // Limit without request: shares from the limit.
        let r = container_resources(&c(json!({}), json!({"cpu": "2"})));
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit),
            (Some(2048), Some(200_000), None)
        );
        let r = container_resources(&json!({"name": "x"}));
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit),
            (Some(2), None, None)
        );
    }

    #[test]
    fn pod_level_values_and_init_containers() {
        let a = c(
            json!({"cpu": "250m", "memory": "64Mi"}),
            json!({"cpu": "250m", "memory": "64Mi"}),
        );
        let big_init = c(
            json!({"cpu": "1", "memory": "32Mi"}),
            json!({"cpu": "1", "memory": "32Mi"}),
        );
        let p = pod(vec![a.clone(), a.clone()], vec![big_init]);
        let req = pod_requests(&p);
        assert_eq!(req["cpu"].millis(), 1000);
        assert_eq!(req["memory"].value(), 128 << 20);
        let r = pod_resources(&p, Some(1024));
        assert_eq!(r.cpu_shares, Some(1024));
        assert_eq!(r.cpu_quota, Some(100_000));
        assert_eq!(r.memory_limit, Some(128 << 20));
        assert_eq!(r.pids_limit, Some(1024));
        // Sidecars add to the sum and to later init containers.
        let mut sidecar = c(json!({"cpu": "100m"}), json!({}));
        sidecar["restartPolicy"] = json!("Always");
        let init = c(json!({"cpu": "300m"}), json!({}));
        let p = pod(
            vec![c(json!({"cpu": "200m"}), json!({}))],
            vec![sidecar, init],
        );
        assert_eq!(pod_requests(&p)["cpu"].millis(), 400);
        // Burstable without all limits: shares only.
        let r = pod_resources(&p, None);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit),
            (Some(409), None, None)
        );
        // BestEffort: minimum shares.
        let r = pod_resources(&pod(vec![json!({"name": "x"})], vec![]), None);
        assert_eq!(
            r,
            Resources {
                cpu_shares: Some(2),
                ..Resources::default()
            }
        );
        // Overhead counts in requests.
        let mut o = pod(vec![a], vec![]);
        o["spec"]["overhead"] = json!({"cpu": "50m"});
        assert_eq!(pod_requests(&o)["cpu"].millis(), 300);
        assert_eq!(pod_limits(&o)["cpu"].millis(), 300);
    }

    #[test]
    fn oom_scores() {
        let g = c(
            json!({"cpu": "1", "memory": "1Gi"}),
            json!({"cpu": "1", "memory": "1Gi"}),
        );
        assert_eq!(
            oom_score_adj(&pod(vec![g.clone()], vec![]), &g, 4 << 30),
            -997
        );
        let b = c(json!({"memory": "1Gi"}), json!({}));
        assert_eq!(
            oom_score_adj(&pod(vec![b.clone()], vec![]), &b, 4 << 30),
            750
        );
        let tiny = c(json!({"cpu": "1m"}), json!({}));
        assert_eq!(
            oom_score_adj(&pod(vec![tiny.clone()], vec![]), &tiny, 4 << 30),
            999
        );
        let huge = c(json!({"memory": "8Gi"}), json!({}));
        assert_eq!(
            oom_score_adj(&pod(vec![huge.clone()], vec![]), &huge, 4 << 30),
            3
        );
        let be = json!({"name": "x"});
        assert_eq!(
            oom_score_adj(&pod(vec![be.clone()], vec![]), &be, 4 << 30),
            1000
        );
    }

    #[test]
    fn admission() {
        let alloc = NodeAllocatable {
            cpu: Quantity::parse("2").unwrap(),
            memory: Quantity::parse("1Gi").unwrap(),
            ephemeral_storage: Quantity::parse("10Gi").unwrap(),
            pods: 3,
        };
        let p = |cpu: &str, mem: &str| {
            pod(
                vec![c(json!({"cpu": cpu, "memory": mem}), json!({}))],
                vec![],
            )
        };
        let existing = vec![p("1500m", "512Mi")];
        assert_eq!(
            admit(&p("500m", "512Mi"), &alloc, &existing),
            Admission::Admit
        );
        assert_eq!(
            admit(&p("600m", "1Mi"), &alloc, &existing),
            Admission::Reject {
                reason: "OutOfcpu".into(),
                message: "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000".into()
            }
        );
        assert_eq!(
            admit(&p("100m", "600Mi"), &alloc, &existing),
            Admission::Reject {
                reason: "OutOfmemory".into(),
                message: format!(
                    "Node didn't have enough resource: memory, requested: {}, used: {}, capacity: {}",
                    600 << 20, 512 << 20, 1 << 30
                )
            }
        );
        // Best-effort pods always fit resources, but not the pod count.
        let be = pod(vec![json!({"name": "x"})], vec![]);
        assert_eq!(
            admit(&be, &alloc, &[p("2", "1Gi"), p("0", "0")]),
            Admission::Admit
        );
        assert_eq!(
            admit(&be, &alloc, &[be.clone(), be.clone(), be.clone()]),
            Admission::Reject {
                reason: "OutOfpods".into(),
                message:
                    "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3"
                        .into()
            }
        );
    }
}
