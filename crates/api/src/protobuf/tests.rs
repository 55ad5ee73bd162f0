//! Tests of protobuf body decoding with bodies built the way client-go builds them.

use super::*;
use k8s_pb::apimachinery::pkg::runtime::TypeMeta;
use serde_json::json;

/// Wraps an encoded object in `k8s\0` + runtime.Unknown, as client-go's protobuf serializer.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn meta_named(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

#[test]
fn secret_as_kubectl_create_secret_generic_sends_it() {
    let mut m = meta_named("db", "default");
    m.labels.insert("app".into(), "web".into());
    m.annotations.insert("note".into(), "x".into());
    m.finalizers.push("example.com/f".into());
    m.owner_references.push(meta::OwnerReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some("owner".into()),
        uid: Some("u-1".into()),
        controller: Some(true),
        block_owner_deletion: None,
    });
    m.creation_timestamp = Some(meta::Time {
        seconds: Some(1_700_000_000),
        nanos: Some(0),
    });
    let secret = core::Secret {
        metadata: Some(m),
        immutable: Some(true),
        data: [("password".to_string(), b"hunter2\x00\xff".to_vec())].into(),
        string_data: [("user".to_string(), "admin".to_string())].into(),
        r#type: Some("Opaque".into()),
    };
    let v = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": "db",
                "namespace": "default",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "labels": {"app": "web"},
                "annotations": {"note": "x"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u-1", "controller": true}],
                "finalizers": ["example.com/f"],
            },
            "immutable": true,
            "data": {"password": BASE64.encode(b"hunter2\x00\xff")},
            "stringData": {"user": "admin"},
            "type": "Opaque",
        })
    );
}

#[test]
fn secret_without_optional_fields_omits_them() {
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            generate_name: Some("tok-".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"generateName": "tok-"}})
    );
}

#[test]
fn config_map_with_binary_data() {
    let cm = core::ConfigMap {
        metadata: Some(meta_named("cfg", "ns1")),
        immutable: None,
        data: [("a.conf".to_string(), "x=1\n".to_string())].into(),
        binary_data: [("blob".to_string(), vec![0u8, 1, 2, 255])].into(),
    };
    let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
    assert_eq!(v["data"], json!({"a.conf": "x=1\n"}));
    assert_eq!(v["binaryData"], json!({"blob": "AAEC/w=="}));
    assert_eq!(v["metadata"], json!({"name": "cfg", "namespace": "ns1"}));
    assert!(v.get("immutable").is_none());
}

#[test]
fn namespace_with_finalizers() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: Some("team-a".into()),
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec {
            finalizers: vec!["kubernetes".into()],
        }),
        status: None,
    };
    let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "team-a"},
               "spec": {"finalizers": ["kubernetes"]}, "status": {}})
    );
}

#[test]
fn service_account_and_service() {
    let sa = core::ServiceAccount {
        metadata: Some(meta_named("bot", "default")),
        secrets: vec![core::ObjectReference {
            name: Some("bot-token".into()),
            ..Default::default()
        }],
        image_pull_secrets: vec![core::LocalObjectReference {
            name: Some("reg".into()),
        }],
        automount_service_account_token: Some(false),
    };
    let v = decode(&envelope("v1", "ServiceAccount", sa.encode_to_vec())).unwrap();
    assert_eq!(v["secrets"], json!([{"name": "bot-token"}]));
    assert_eq!(v["imagePullSecrets"], json!([{"name": "reg"}]));
    assert_eq!(v["automountServiceAccountToken"], false);

    let svc = core::Service {
        metadata: Some(meta_named("web", "default")),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: Some("80-8080".into()),
                    protocol: Some("TCP".into()),
                    port: Some(80),
                    target_port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: None,
                    }),
                    ..Default::default()
                },
                core::ServicePort {
                    port: Some(443),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("https".into()),
                    }),
                    ..Default::default()
                },
            ],
            selector: [("app".to_string(), "web".to_string())].into(),
            r#type: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "ports": [
                {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"port": 443, "targetPort": "https"},
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        })
    );
}

#[test]
fn token_request() {
    let t = authn::TokenRequest {
        metadata: Some(meta_named("bot", "default")),
        spec: Some(authn::TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        status: None,
    };
    let v = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        t.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(v["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(
        v["spec"],
        json!({"audiences": [], "expirationSeconds": 3600})
    );
}

#[test]
fn errors() {
    assert_eq!(
        decode(b"{\"kind\":\"Secret\"}").unwrap_err(),
        ProtobufError::MissingMagic
    );
    let e = decode(b"k8s\0\x0a\xff\xff").unwrap_err();
    assert!(matches!(e, ProtobufError::Envelope(_)), "{e:?}");

    let e = decode(&envelope("v1", "Pod", vec![])).unwrap_err();
    assert!(e.is_unsupported_media_type());
    assert_eq!(
        e.to_string(),
        "protobuf request bodies are not supported for Pod (v1); send application/json"
    );

    let e = decode(&envelope("", "", vec![])).unwrap_err();
    assert_eq!(e, ProtobufError::MissingTypeMeta);

    let mut unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
        }),
        raw: Some(vec![]),
        content_encoding: Some("gzip".into()),
        content_type: None,
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    assert!(decode(&body).unwrap_err().is_unsupported_media_type());

    // A corrupt Secret: the error must not echo the secret bytes.
    unknown.content_encoding = None;
    let mut raw = core::Secret {
        data: [("k".to_string(), b"TOPSECRETVALUE".to_vec())].into(),
        ..Default::default()
    }
    .encode_to_vec();
    raw.truncate(raw.len() - 3);
    unknown.raw = Some(raw);
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    let e = decode(&body).unwrap_err();
    assert!(matches!(e, ProtobufError::Object { .. }), "{e:?}");
    assert!(!e.to_string().contains("TOPSECRET"), "{e}");
    assert!(!format!("{e:?}").contains("TOPSECRET"));
}

#[test]
fn eviction_and_delete_options() {
    let e = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(meta_named("web", "default")),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(meta::Preconditions {
                uid: Some("u1".into()),
                resource_version: None,
            }),
            dry_run: vec!["All".into()],
            ..Default::default()
        }),
    };
    let v = decode(&envelope("policy/v1", "Eviction", e.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({"kind": "Eviction", "apiVersion": "policy/v1",
               "metadata": {"name": "web", "namespace": "default"},
               "deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u1"}, "dryRun": ["All"]}})
    );
    let d = meta::DeleteOptions {
        propagation_policy: Some("Foreground".into()),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "DeleteOptions", d.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})
    );
}

/// Bodies captured from kubectl 1.32 (`kubectl create secret generic sx --from-literal=a=b`,
/// `create configmap cx --from-literal=k=v`, `create namespace nx`, `create serviceaccount
/// sa1`, `create service clusterip web --tcp=80:8080`), all in namespace default.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn real_kubectl_bodies() {
    let secret = hex("6b3873000a0c0a027631120653656372657412250a190a02737812001a0764656661756c7422002a0032003800420012060a01611201621a001a002200");
    assert_eq!(
        decode(&secret).unwrap(),
        json!({"kind": "Secret", "apiVersion": "v1",
               "metadata": {"name": "sx", "namespace": "default"}, "data": {"a": "Yg=="}})
    );
    let cm = hex("6b3873000a0f0a0276311209436f6e6669674d617012230a190a02637812001a0764656661756c7422002a0032003800420012060a016b1201761a002200");
    assert_eq!(
        decode(&cm).unwrap(),
        json!({"kind": "ConfigMap", "apiVersion": "v1",
               "metadata": {"name": "cx", "namespace": "default"}, "data": {"k": "v"}})
    );
    let ns = hex("6b3873000a0f0a02763112094e616d657370616365121a0a120a026e7812001a0022002a0032003800420012001a020a001a002200");
    assert_eq!(
        decode(&ns).unwrap(),
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "nx"}, "spec": {}, "status": {}})
    );
    let sa = hex("6b3873000a140a027631120e536572766963654163636f756e74121c0a1a0a0373613112001a0764656661756c7422002a003200380042001a002200");
    assert_eq!(
        decode(&sa).unwrap(),
        json!({"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "sa1", "namespace": "default"}})
    );
    let svc = hex("6b3873000a0d0a02763112075365727669636512700a260a0377656212001a0764656661756c7422002a003200380042005a0a0a03617070120377656212420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a0361707012037765621a002209436c757374657249503a00420052005a00600068001a020a001a002200");
    let v = decode(&svc).unwrap();
    assert_eq!(
        v["metadata"],
        json!({"name": "web", "namespace": "default", "labels": {"app": "web"}})
    );
    assert_eq!(
        v["spec"],
        json!({"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
               "selector": {"app": "web"}, "type": "ClusterIP"})
    );
}
