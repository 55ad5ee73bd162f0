//! The files kubelet and containerd manage inside a pod: the pod hostname and FQDN
//! (kubelet's `GeneratePodHostNameAndDomain`), /etc/hosts (kubelet's
//! `managedHostsFileContent`, or the node's file for hostNetwork pods, plus hostAliases),
//! /etc/hostname, and /etc/resolv.conf by dnsPolicy (kubelet's `GetPodDNS` with its merge
//! and limit rules, rendered as containerd writes it). Pure text in, text out.

use serde_json::Value;

use crate::facts::{arr_at, bool_at, namespace_of, str_at, strings_at, NodeFacts, Warning};

/// Header of a managed /etc/hosts.
pub const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
/// Header of a hostNetwork pod's /etc/hosts.
pub const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str =
    "# Kubernetes-managed hosts file (host network).\n";

/// Kubernetes' limits on the pod resolv.conf.
pub const MAX_DNS_NAMESERVERS: usize = 3;
pub const MAX_DNS_SEARCH_PATHS: usize = 32;
pub const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
const MAX_SEARCH_DOMAIN_LEN: usize = 253;
const HOSTNAME_MAX_LEN: usize = 63;
const FQDN_MAX_LEN: usize = 64;

/// Why the pod's hostname cannot be made (kubelet's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcError {
    #[error("pod Hostname {0:?} is not a valid DNS label")]
    BadHostname(String),
    #[error("pod Subdomain {0:?} is not a valid DNS label")]
    BadSubdomain(String),
    #[error("hostname for pod {pod:?} was invalid: {hostname:?}")]
    EmptyAfterTruncation { pod: String, hostname: String },
    #[error("failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long ({FQDN_MAX_LEN} characters is the max, {len} characters requested)")]
    FqdnTooLong { fqdn: String, len: usize },
}

/// A pod's hostname and, with a subdomain, its domain `<subdomain>.<ns>.svc.<cluster domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHostname {
    pub hostname: String,
    pub domain: Option<String>,
}

impl PodHostname {
    /// `hostname.domain`, or the hostname alone without a subdomain.
    pub fn fqdn(&self) -> String {
        match &self.domain {
            Some(d) => format!("{}.{d}", self.hostname),
            None => self.hostname.clone(),
        }
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// kubelet's `GeneratePodHostNameAndDomain`: `spec.hostname` or the pod name, truncated to
/// 63 characters (then without trailing `-`/`.`); `spec.subdomain` gives the domain.
pub fn pod_hostname(pod: &Value, cluster_domain: &str) -> Result<PodHostname, EtcError> {
    let name = str_at(pod, &["metadata", "name"]);
    let mut hostname = name;
    let spec_hostname = str_at(pod, &["spec", "hostname"]);
    if !spec_hostname.is_empty() {
        if !is_dns1123_label(spec_hostname) {
            return Err(EtcError::BadHostname(spec_hostname.to_string()));
        }
        hostname = spec_hostname;
    }
    let hostname = if hostname.len() > HOSTNAME_MAX_LEN {
        // Names are ASCII (validated), so byte truncation is char-safe; guard anyway.
        let cut = hostname.get(..HOSTNAME_MAX_LEN).unwrap_or(hostname);
        let t = cut.trim_end_matches(['-', '.']);
        if t.is_empty() {
            return Err(EtcError::EmptyAfterTruncation {
                pod: name.to_string(),
                hostname: hostname.to_string(),
            });
        }
        t.to_string()
    } else {
        hostname.to_string()
    };
    let subdomain = str_at(pod, &["spec", "subdomain"]);
    let domain = if subdomain.is_empty() {
        None
    } else {
        if !is_dns1123_label(subdomain) {
            return Err(EtcError::BadSubdomain(subdomain.to_string()));
        }
        Some(format!(
            "{subdomain}.{}.svc.{cluster_domain}",
            namespace_of(pod)
        ))
    };
    Ok(PodHostname { hostname, domain })
}

/// The hostname set in the pod's UTS namespace: the FQDN with `setHostnameAsFQDN`
/// (at most 64 characters), else the short hostname.
pub fn uts_hostname(pod: &Value, cluster_domain: &str) -> Result<String, EtcError> {
    let h = pod_hostname(pod, cluster_domain)?;
    if bool_at(pod, &["spec", "setHostnameAsFQDN"]) == Some(true) && h.domain.is_some() {
        let fqdn = h.fqdn();
        if fqdn.len() > FQDN_MAX_LEN {
            let len = fqdn.len();
            return Err(EtcError::FqdnTooLong { fqdn, len });
        }
        return Ok(fqdn);
    }
    Ok(h.hostname)
}

/// One `spec.hostAliases` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// The pod's `spec.hostAliases`.
pub fn host_aliases(pod: &Value) -> Vec<HostAlias> {
    arr_at(pod, &["spec", "hostAliases"])
        .iter()
        .map(|a| HostAlias {
            ip: str_at(a, &["ip"]).to_string(),
            hostnames: strings_at(a, &["hostnames"]),
        })
        .collect()
}

/// kubelet's `hostsEntriesFromHostAliases`: a blank line, a comment, one line per IP.
fn alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        out.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
    }
    out
}

/// kubelet's managed /etc/hosts for a pod with its own network namespace.
pub fn managed_hosts_file(pod_ips: &[String], host: &PodHostname, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match &host.domain {
            Some(d) => out.push_str(&format!("{ip}\t{}.{d}\t{}\n", host.hostname, host.hostname)),
            None => out.push_str(&format!("{ip}\t{}\n", host.hostname)),
        }
    }
    out.push_str(&alias_entries(aliases));
    out
}

/// kubelet's /etc/hosts for a hostNetwork pod: the node's file plus the aliases.
pub fn host_network_hosts_file(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&alias_entries(aliases));
    out
}

fn host_network(pod: &Value) -> bool {
    bool_at(pod, &["spec", "hostNetwork"]) == Some(true)
}

/// The pod's /etc/hosts; `None` while the pod has no IP (kubelet mounts none then).
pub fn etc_hosts(pod: &Value, facts: &NodeFacts) -> Result<Option<String>, EtcError> {
    if facts.pod_ips.is_empty() {
        return Ok(None);
    }
    let aliases = host_aliases(pod);
    if host_network(pod) {
        return Ok(Some(host_network_hosts_file(&facts.hosts_file, &aliases)));
    }
    let host = pod_hostname(pod, &facts.cluster_domain)?;
    Ok(Some(managed_hosts_file(&facts.pod_ips, &host, &aliases)))
}

/// The hostname the container sees (HOSTNAME, /etc/hostname): the node's with
/// hostNetwork, else the pod's ([`uts_hostname`]).
pub fn container_hostname(pod: &Value, facts: &NodeFacts) -> Result<String, EtcError> {
    if host_network(pod) {
        return Ok(facts.hostname.clone());
    }
    uts_hostname(pod, &facts.cluster_domain)
}

/// containerd's /etc/hostname content.
pub fn etc_hostname(pod: &Value, facts: &NodeFacts) -> Result<String, EtcError> {
    Ok(format!("{}\n", container_hostname(pod, facts)?))
}

/// A resolver configuration (CRI `DNSConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    /// containerd's rendering: `search`, `nameserver` lines, `options`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for s in &self.servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn option_name(o: &str) -> &str {
    o.split(':').next().unwrap_or(o)
}

/// Adds options, a later option replacing an earlier one of the same name in place.
fn merge_options(options: &mut Vec<String>, new: impl IntoIterator<Item = String>) {
    for o in new {
        match options
            .iter()
            .position(|e| option_name(e) == option_name(&o))
        {
            Some(i) => options[i] = o,
            None => options.push(o),
        }
    }
}

/// kubelet's `parseResolvConf`: nameservers, the last `search` line (trailing dots
/// dropped, `.` skipped), options merged by name. Comments start with `#` or `;`.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut cfg = DnsConfig::default();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first().copied() {
            Some("nameserver") => {
                if let Some(s) = fields.get(1) {
                    cfg.servers.push(s.to_string());
                }
            }
            Some("search") => {
                cfg.searches = fields[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                merge_options(&mut cfg.options, fields[1..].iter().map(|s| s.to_string()))
            }
            _ => {}
        }
    }
    cfg
}

fn omit_duplicates(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// kubelet's `GetPodDNS`: the pod's resolver configuration by dnsPolicy and dnsConfig,
/// with the Warnings kubelet records (MissingClusterDNS, DNSConfigForming).
pub fn pod_dns(pod: &Value, facts: &NodeFacts) -> (DnsConfig, Vec<Warning>) {
    let mut warnings = Vec::new();
    let host = match &facts.resolv_conf {
        Some(text) => parse_resolv_conf(text),
        None => DnsConfig::default(),
    };
    let policy = str_at(pod, &["spec", "dnsPolicy"]);
    // ClusterFirst on hostNetwork falls back to Default; ClusterFirstWithHostNet is cluster
    // DNS in every case; an unknown policy is treated as ClusterFirst.
    let cluster = match policy {
        "None" => None,
        "Default" => Some(false),
        "ClusterFirstWithHostNet" => Some(true),
        _ => Some(!host_network(pod)),
    };
    let mut cfg = match cluster {
        None => DnsConfig::default(),
        Some(true) if !facts.cluster_dns.is_empty() => {
            let searches = if facts.cluster_domain.is_empty() {
                host.searches
            } else {
                let d = &facts.cluster_domain;
                let mut s = vec![
                    format!("{}.svc.{d}", namespace_of(pod)),
                    format!("svc.{d}"),
                    d.clone(),
                ];
                s.extend(host.searches);
                omit_duplicates(s)
            };
            DnsConfig {
                servers: facts.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
        Some(cluster_wanted) => {
            if cluster_wanted {
                warnings.push(Warning {
                    reason: "MissingClusterDNS".to_string(),
                    message: format!(
                        "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                        crate::facts::format_pod(pod)
                    ),
                });
            }
            let mut cfg = host;
            if facts.resolv_conf.is_none() {
                // kubelet --resolv-conf="": the local resolver, no search.
                cfg.servers = facts
                    .host_ips
                    .iter()
                    .map(|ip| if ip.contains(':') { "::1" } else { "127.0.0.1" }.to_string())
                    .collect();
                if cfg.servers.is_empty() {
                    cfg.servers.push("127.0.0.1".to_string());
                }
                cfg.searches = vec![".".to_string()];
            }
            cfg
        }
    };

    if let Some(dc) = crate::facts::at(pod, &["spec", "dnsConfig"]) {
        let mut servers = std::mem::take(&mut cfg.servers);
        servers.extend(strings_at(dc, &["nameservers"]));
        cfg.servers = omit_duplicates(servers);
        let mut searches = std::mem::take(&mut cfg.searches);
        searches.extend(strings_at(dc, &["searches"]));
        cfg.searches = omit_duplicates(searches);
        merge_options(
            &mut cfg.options,
            arr_at(dc, &["options"]).iter().map(|o| {
                let name = str_at(o, &["name"]);
                match str_at(o, &["value"]) {
                    "" => name.to_string(),
                    v => format!("{name}:{v}"),
                }
            }),
        );
    }

    // formDNSConfigFitsLimits.
    if cfg.servers.len() > MAX_DNS_NAMESERVERS {
        cfg.servers.truncate(MAX_DNS_NAMESERVERS);
        warnings.push(Warning {
            reason: "DNSConfigForming".to_string(),
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                cfg.servers.join(" ")
            ),
        });
    }
    let mut exceeded = false;
    if cfg.searches.len() > MAX_DNS_SEARCH_PATHS {
        cfg.searches.truncate(MAX_DNS_SEARCH_PATHS);
        exceeded = true;
    }
    let before = cfg.searches.len();
    cfg.searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
    exceeded |= cfg.searches.len() != before;
    let line_len = cfg.searches.join(" ").len();
    if line_len > MAX_DNS_SEARCH_LIST_CHARS {
        let mut cut = 0;
        while let Some(last) = cfg.searches.pop() {
            cut += last.len() + 1;
            if line_len - cut <= MAX_DNS_SEARCH_LIST_CHARS {
                break;
            }
        }
        exceeded = true;
    }
    if exceeded {
        warnings.push(Warning {
            reason: "DNSConfigForming".to_string(),
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                cfg.searches.join(" ")
            ),
        });
    }
    (cfg, warnings)
}

/// The pod's /etc/resolv.conf text and the Warnings to record.
pub fn resolv_conf(pod: &Value, facts: &NodeFacts) -> (String, Vec<Warning>) {
    let (cfg, w) = pod_dns(pod, facts);
    (cfg.render(), w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> NodeFacts {
        NodeFacts {
            node_name: "node-1".into(),
            hostname: "node-1.example".into(),
            host_ips: vec!["192.168.1.10".into()],
            pod_ips: vec!["10.244.1.5".into()],
            cluster_dns: vec!["10.0.0.10".into()],
            cluster_domain: "cluster.local".into(),
            hosts_file: "127.0.0.1 localhost\n192.168.1.10 node-1\n".into(),
            resolv_conf: Some(
                "# generated\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch example.com. corp.local .\noptions timeout:2 ndots:1\n".into(),
            ),
            ..Default::default()
        }
    }

    /// The seed's hostaliases-pod.
    fn hostaliases_pod() -> Value {
        json!({"metadata": {"name": "hostaliases-pod", "namespace": "default"},
               "spec": {"hostAliases": [
                   {"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                   {"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]}],
                   "dnsPolicy": "ClusterFirst",
                   "containers": [{"name": "cat-hosts", "image": "busybox",
                                   "command": ["cat"], "args": ["/etc/hosts"]}]}})
    }

    #[test]
    fn hostaliases_pod_hosts_file_is_kubelets() {
        let got = etc_hosts(&hostaliases_pod(), &facts()).unwrap().unwrap();
        let want = "# Kubernetes-managed hosts file.\n\
127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
fe00::0\tip6-mcastprefix\n\
fe00::1\tip6-allnodes\n\
fe00::2\tip6-allrouters\n\
10.244.1.5\thostaliases-pod\n\
\n\
# Entries added by HostAliases.\n\
127.0.0.1\tfoo.local\tbar.local\n\
10.1.2.3\tfoo.remote\tbar.remote\n";
        assert_eq!(got, want);
    }

    /// The seed prints an older kubelet's layout (one alias per line, spaces); everything
    /// but that layout, the IPs and kubelet's added comment must agree.
    #[test]
    fn hostaliases_pod_agrees_with_the_seed_up_to_ips_and_alias_layout() {
        let seed = "# Kubernetes-managed hosts file.
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
fe00::0 ip6-mcastprefix
fe00::1 ip6-allnodes
fe00::2 ip6-allrouters
10.244.1.5 hostaliases-pod
127.0.0.1 foo.local
127.0.0.1 bar.local
10.1.2.3 foo.remote
10.1.2.3 bar.remote
";
        let mut f = facts();
        f.pod_ips = vec!["10.9.8.7".into()];
        let got = etc_hosts(&hostaliases_pod(), &f).unwrap().unwrap();
        // Normalise: one (ip, name...) record per host name, whitespace collapsed, the pod
        // IP masked, comments other than the header dropped.
        let norm = |text: &str| -> Vec<String> {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() || (i > 0 && line.starts_with('#')) {
                    continue;
                }
                if line.starts_with('#') {
                    out.push(line.to_string());
                    continue;
                }
                let f: Vec<&str> = line.split_whitespace().collect();
                let ip = if f[0] == "10.244.1.5" || f[0] == "10.9.8.7" {
                    "POD_IP"
                } else {
                    f[0]
                };
                if f[0].contains(':') || f[1] == "localhost" {
                    out.push(format!("{ip} {}", f[1..].join(" ")));
                } else {
                    for name in &f[1..] {
                        out.push(format!("{ip} {name}"));
                    }
                }
            }
            out
        };
        assert_eq!(norm(&got), norm(seed));
        assert_eq!(norm(&got).len(), 12);
    }

    #[test]
    fn busybox2_hostname_subdomain_and_fqdn() {
        let pod = json!({"metadata": {"name": "busybox2", "namespace": "default"},
            "spec": {"hostname": "busybox-2", "subdomain": "default-subdomain",
                     "containers": [{"name": "busybox", "image": "busybox"}]}});
        let h = pod_hostname(&pod, "cluster.local").unwrap();
        assert_eq!(h.hostname, "busybox-2");
        assert_eq!(
            h.fqdn(),
            "busybox-2.default-subdomain.default.svc.cluster.local"
        );
        let f = facts();
        assert_eq!(etc_hostname(&pod, &f).unwrap(), "busybox-2\n");
        let hosts = etc_hosts(&pod, &f).unwrap().unwrap();
        assert!(hosts.ends_with(
            "fe00::2\tip6-allrouters\n10.244.1.5\tbusybox-2.default-subdomain.default.svc.cluster.local\tbusybox-2\n"
        ));
        // setHostnameAsFQDN puts the FQDN in the UTS namespace.
        let mut fq = pod.clone();
        fq["spec"]["setHostnameAsFQDN"] = json!(true);
        assert_eq!(
            uts_hostname(&fq, "cluster.local").unwrap(),
            "busybox-2.default-subdomain.default.svc.cluster.local"
        );
        fq["spec"]["hostname"] = json!("a".repeat(40));
        assert!(matches!(
            uts_hostname(&fq, "cluster.local"),
            Err(EtcError::FqdnTooLong { len: 84, .. })
        ));
    }

    #[test]
    fn hostname_defaults_to_pod_name_truncated() {
        let long = format!("{}-.x", "a".repeat(62));
        let pod = json!({"metadata": {"name": long}, "spec": {}});
        let h = pod_hostname(&pod, "cluster.local").unwrap();
        assert_eq!(h.hostname, "a".repeat(62));
        assert_eq!(h.domain, None);
        let pod = json!({"metadata": {"name": "web"}, "spec": {"hostname": "Bad_Name"}});
        assert_eq!(
            pod_hostname(&pod, "c").unwrap_err(),
            EtcError::BadHostname("Bad_Name".into())
        );
    }

    #[test]
    fn host_network_uses_node_files() {
        let pod = json!({"metadata": {"name": "busybox1", "namespace": "default"},
            "spec": {"hostNetwork": true, "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["x"]}],
                     "dnsPolicy": "ClusterFirst", "containers": []}});
        let f = facts();
        assert_eq!(
            etc_hosts(&pod, &f).unwrap().unwrap(),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.1.10 node-1\n\n# Entries added by HostAliases.\n1.2.3.4\tx\n"
        );
        assert_eq!(etc_hostname(&pod, &f).unwrap(), "node-1.example\n");
        // ClusterFirst on the host network is Default.
        let (text, w) = resolv_conf(&pod, &f);
        assert_eq!(
            text,
            "search example.com corp.local\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions timeout:2 ndots:1\n"
        );
        assert!(w.is_empty());
        // ClusterFirstWithHostNet uses the cluster DNS.
        let mut p2 = pod.clone();
        p2["spec"]["dnsPolicy"] = json!("ClusterFirstWithHostNet");
        assert!(resolv_conf(&p2, &f).0.contains("nameserver 10.0.0.10\n"));
        // No pod IP yet: no managed hosts file.
        let mut none = f.clone();
        none.pod_ips.clear();
        assert_eq!(etc_hosts(&pod, &none).unwrap(), None);
    }

    #[test]
    fn cluster_first_resolv_conf() {
        let pod = json!({"metadata": {"name": "p", "namespace": "web"},
                         "spec": {"dnsPolicy": "ClusterFirst"}});
        let (text, w) = resolv_conf(&pod, &facts());
        assert_eq!(
            text,
            "search web.svc.cluster.local svc.cluster.local cluster.local example.com corp.local\nnameserver 10.0.0.10\noptions ndots:5\n"
        );
        assert!(w.is_empty());
        // ClusterFirstWithHostNet without hostNetwork is cluster DNS too.
        let mut p = pod.clone();
        p["spec"]["dnsPolicy"] = json!("ClusterFirstWithHostNet");
        assert_eq!(resolv_conf(&p, &facts()).0, text);
        // No cluster DNS configured: Default, with a warning.
        let mut f = facts();
        f.cluster_dns.clear();
        let (text, w) = resolv_conf(&pod, &f);
        assert!(text.starts_with("search example.com corp.local\nnameserver 1.1.1.1\n"));
        assert_eq!(w[0].reason, "MissingClusterDNS");
    }

    #[test]
    fn default_none_and_dns_config_merge() {
        let mut f = facts();
        let pod = json!({"metadata": {"name": "p", "namespace": "web"},
            "spec": {"dnsPolicy": "Default", "dnsConfig": {
                "nameservers": ["1.1.1.1", "9.9.9.9", "10.1.1.1"],
                "searches": ["corp.local", "extra.io"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}});
        let (cfg, w) = pod_dns(&pod, &f);
        assert_eq!(cfg.servers, vec!["1.1.1.1", "8.8.8.8", "9.9.9.9"]);
        assert_eq!(cfg.searches, vec!["example.com", "corp.local", "extra.io"]);
        assert_eq!(cfg.options, vec!["timeout:2", "ndots:2", "edns0"]);
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].message,
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 1.1.1.1 8.8.8.8 9.9.9.9"
        );
        let none = json!({"metadata": {"name": "p"}, "spec": {"dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["a.b"],
                          "options": [{"name": "ndots", "value": "1"}]}}});
        assert_eq!(
            resolv_conf(&none, &f).0,
            "search a.b\nnameserver 1.2.3.4\noptions ndots:1\n"
        );
        // kubelet --resolv-conf="" with Default: local resolver, search ".".
        f.resolv_conf = None;
        let d = json!({"metadata": {"name": "p"}, "spec": {"dnsPolicy": "Default"}});
        assert_eq!(resolv_conf(&d, &f).0, "search .\nnameserver 127.0.0.1\n");
    }

    #[test]
    fn search_limits() {
        let searches: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": searches}}});
        let (cfg, w) = pod_dns(&pod, &facts());
        assert_eq!(cfg.searches.len(), MAX_DNS_SEARCH_PATHS);
        assert_eq!(w[0].reason, "DNSConfigForming");
        let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(200))).collect();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"dnsPolicy": "None",
            "dnsConfig": {"searches": long, "nameservers": ["1.2.3.4"]}}});
        let (cfg, _) = pod_dns(&pod, &facts());
        assert!(cfg.searches.join(" ").len() <= MAX_DNS_SEARCH_LIST_CHARS);
        assert_eq!(cfg.searches.len(), 10);
    }
}
