//! A minimal Kubernetes API client for benchmarking: reads a kubeconfig (CA data, server
//! URL, bearer token), opens HTTP/2-over-TLS connections like client-go does (one
//! multiplexed connection by default), and sends requests round-robin over them. Bodies are
//! collected whole, except watch streams, which are handed back for line-by-line reading.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The Accept header kubectl sends for `kubectl get` (server-side printing).
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
pub const ACCEPT_JSON: &str = "application/json";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {detail}")]
    Kubeconfig { path: String, detail: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("connecting to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
}

/// What the bench needs from a kubeconfig: the current context's cluster and user.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://host:port`, no trailing slash.
    pub server: String,
    pub ca_pem: String,
    pub token: String,
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}
#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: T,
}
#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca_data: String,
}
#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: String,
}
#[derive(Deserialize)]
struct User {
    token: String,
}

impl Target {
    /// Parses the kubeconfig text; `path` is only used in error messages.
    pub fn from_kubeconfig(text: &str, path: &str) -> Result<Target, ClientError> {
        let err = |detail: String| ClientError::Kubeconfig {
            path: path.to_string(),
            detail,
        };
        let kc: Kubeconfig = serde_norway::from_str(text).map_err(|e| err(e.to_string()))?;
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == kc.current_context)
            .or(kc.contexts.first())
            .ok_or_else(|| err("no context".into()))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.value.cluster)
            .ok_or_else(|| err(format!("no cluster {:?}", ctx.value.cluster)))?;
        let user = kc
            .users
            .iter()
            .find(|u| u.name == ctx.value.user)
            .ok_or_else(|| err(format!("no user {:?}", ctx.value.user)))?;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster.value.ca_data.trim())
            .map_err(|e| err(format!("certificate-authority-data: {e}")))?;
        Ok(Target {
            server: cluster.value.server.trim_end_matches('/').to_string(),
            ca_pem: String::from_utf8(ca).map_err(|e| err(format!("CA is not PEM: {e}")))?,
            token: user.value.token.clone(),
        })
    }

    pub fn load(path: &std::path::Path) -> Result<Target, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|e| ClientError::Kubeconfig {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Target::from_kubeconfig(&text, &path.display().to_string())
    }

    /// `host:port` and the host part of the server URL.
    fn host_port(&self) -> Result<(String, String), ClientError> {
        let uri: http::Uri = self
            .server
            .parse()
            .map_err(|e| ClientError::Http(format!("server URL {:?}: {e}", self.server)))?;
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Http(format!("server URL {:?} has no host", self.server)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok((addr, host))
    }
}

/// A finished request: status, body and how long it took (send to last body byte).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub latency: Duration,
}

/// Round-robin over one or more HTTP/2 connections. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    target: Arc<Target>,
    auth: HeaderValue,
    conns: Arc<Vec<SendRequest<Full<Bytes>>>>,
    next: Arc<AtomicUsize>,
    timeout: Duration,
}

impl Client {
    /// Opens `connections` (at least one) HTTP/2 connections to the target.
    pub async fn connect(
        target: &Target,
        connections: usize,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let tls = tls_connector(&target.ca_pem)?;
        let (addr, host) = target.host_port()?;
        let mut conns = Vec::new();
        for _ in 0..connections.max(1) {
            conns.push(open(&tls, &addr, &host).await?);
        }
        let auth = HeaderValue::from_str(&format!("Bearer {}", target.token))
            .map_err(|_| ClientError::Http("token is not a valid header value".into()))?;
        Ok(Client {
            target: Arc::new(target.clone()),
            auth,
            conns: Arc::new(conns),
            next: Arc::new(AtomicUsize::new(0)),
            timeout,
        })
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            // HTTP/2 needs scheme and authority in the URI (the :authority pseudo-header).
            .uri(format!("{}{}", self.target.server, path))
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(header::ACCEPT, accept)
            .header(header::USER_AGENT, "podium-bench");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        req.body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    fn conn(&self) -> SendRequest<Full<Bytes>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let mut conn = self.conn();
        conn.ready()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        conn.send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, ClientError> {
        let req = self.build(method, path, accept, body)?;
        let start = std::time::Instant::now();
        let fut = async {
            let resp = self.send(req).await?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            Ok::<_, ClientError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        Ok(Answer {
            status,
            body,
            latency: start.elapsed(),
        })
    }

    pub async fn get(&self, path: &str, accept: &str) -> Result<Answer, ClientError> {
        self.request(Method::GET, path, accept, None).await
    }

    pub async fn post(&self, path: &str, body: Bytes) -> Result<Answer, ClientError> {
        self.request(Method::POST, path, ACCEPT_JSON, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.request(Method::DELETE, path, ACCEPT_JSON, None).await
    }

    /// Starts a streaming GET (a watch): returns once the headers are in; the body is
    /// read by the caller. Fails on a non-200 status.
    pub async fn stream(&self, path: &str) -> Result<Incoming, ClientError> {
        let req = self.build(Method::GET, path, ACCEPT_JSON, None)?;
        let resp = tokio::time::timeout(self.timeout, self.send(req))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(ClientError::Http(format!(
                "watch {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(resp.into_body())
    }
}

fn tls_connector(ca_pem: &str) -> Result<TlsConnector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn open(
    tls: &TlsConnector,
    addr: &str,
    host: &str,
) -> Result<SendRequest<Full<Bytes>>, ClientError> {
    let cerr = |detail: String| ClientError::Connect {
        addr: addr.to_string(),
        detail,
    };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| cerr(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.to_string()).map_err(|e| cerr(e.to_string()))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| cerr(format!("TLS: {e}")))?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(cerr("server did not agree to HTTP/2".into()));
    }
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| cerr(format!("HTTP/2 handshake: {e}")))?;
    tokio::spawn(async move {
        // Ends when the connection closes; errors then surface on the next request.
        let _ = conn.await;
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_podium_kubeconfig() {
        let ca =
            base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\nX\n");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:7443/\n  name: podium\ncontexts:\n- context:\n    cluster: podium\n    user: admin\n  name: podium\ncurrent-context: podium\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    token: abc.def\n"
        );
        let t = Target::from_kubeconfig(&text, "kc").unwrap();
        assert_eq!(t.server, "https://127.0.0.1:7443");
        assert_eq!(t.token, "abc.def");
        assert!(t.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            t.host_port().unwrap(),
            ("127.0.0.1:7443".to_string(), "127.0.0.1".to_string())
        );
    }

    #[test]
    fn kubeconfig_without_user_is_an_error() {
        let text = "clusters:\n- name: c\n  cluster: {server: 'https://x:1', certificate-authority-data: ''}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers: []\n";
        let e = Target::from_kubeconfig(text, "kc").unwrap_err();
        assert!(e.to_string().contains("no user"), "{e}");
    }
}
