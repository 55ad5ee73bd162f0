//! A small registry HTTP client (OCI distribution API v2) on hyper + rustls.
//!
//! Why not `oci-client`: it brings reqwest (a second HTTP stack) and hides the parts the
//! content store needs — ranged blob reads that report where they really start, a
//! streaming body the synchronous [`crate::store::Fetcher`] can read, and the registry's
//! own error text for messages. What is here is what Podium uses:
//!
//! - one HTTP/1.1 connection per request (plain TCP for `http` endpoints, rustls for
//!   `https`, with the system CA bundle, `ca_file`, client certificates and
//!   `insecure_skip_verify` from `registries.yaml`); redirects followed for GETs (blob
//!   storage often redirects), dropping `Authorization` when the host changes;
//! - authentication on a 401: `Basic` (credentials sent on retry) or `Bearer`
//!   (`WWW-Authenticate: Bearer realm=..,service=..,scope=..`: a token is fetched from
//!   the realm with the credentials as basic auth, or with an identity token as an
//!   OAuth2 refresh token, and kept for the session); anonymous when no credential;
//! - manifests (HEAD/GET with Docker schema 2 and OCI accept types), blobs (ranged GET),
//!   and a minimal push (blob upload POST + PUT, manifest PUT) used by tests and tools.
//!
//! Secrets never appear in errors: messages carry the URL (which never has userinfo),
//! the HTTP status and the registry's own answer.

use crate::credentials::Credential;
use crate::digest::Digest;
use crate::registries::{Endpoint, RegistriesConfig, TlsConfig};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Manifest media types Podium understands.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The Accept header of manifest requests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;
const MAX_SMALL_BODY: usize = 16 << 20;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {detail}")]
    Network { url: String, detail: String },
    /// A non-success answer; `answer` is the registry's error text.
    #[error("{url}: HTTP {status}: {answer}")]
    Status {
        url: String,
        status: u16,
        answer: String,
    },
    #[error("{url}: {detail}")]
    Protocol { url: String, detail: String },
    #[error("TLS configuration for {host}: {detail}")]
    Tls { host: String, detail: String },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn net(url: &str, detail: impl std::fmt::Display) -> ClientError {
    ClientError::Network {
        url: url.to_string(),
        detail: detail.to_string(),
    }
}

/// A session with one endpoint for one repository: holds the credential and the
/// authorization obtained on the first 401.
pub struct Session {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    credential: Option<Credential>,
    scope_actions: &'static str,
    authorization: Mutex<Option<String>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// Where a blob read really starts.
pub struct BlobStream {
    pub body: Incoming,
    pub start: u64,
    pub total: Option<u64>,
}

impl Session {
    /// A session for pulling (`push` = false) or pushing. TLS settings and any
    /// credential configured for the endpoint's host in `registries.yaml` apply; the
    /// configured credential wins over `credential`.
    pub fn new(
        config: &RegistriesConfig,
        endpoint: Endpoint,
        credential: Option<Credential>,
        push: bool,
    ) -> Result<Session, ClientError> {
        let host_cfg = config.host_config(&endpoint.host);
        let tls = if endpoint.scheme == "https" {
            Some(tls_config(
                &endpoint.host,
                host_cfg.and_then(|h| h.tls.as_ref()),
            )?)
        } else {
            None
        };
        let configured = host_cfg
            .and_then(|h| h.auth.as_ref())
            .and_then(|a| match a.basic() {
                Ok(Some((u, p))) => Some(Credential::new(u, p)),
                Ok(None) if !a.identitytoken.is_empty() => Some(Credential {
                    username: a.username.clone(),
                    password: String::new(),
                    identity_token: Some(a.identitytoken.clone()),
                }),
                _ => None,
            });
        Ok(Session {
            endpoint,
            tls,
            credential: configured.or(credential),
            scope_actions: if push { "pull,push" } else { "pull" },
            authorization: Mutex::new(None),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn url(&self, tail: &str) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint.base_url(),
            self.endpoint.repository,
            tail
        )
    }

    /// HEAD a manifest: its digest (from `Docker-Content-Digest`), media type and size.
    /// `None` when the registry does not send the digest (then GET it).
    pub async fn head_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<(Digest, String, u64)>, ClientError> {
        let (resp, digest, media) = self.manifest_request(Method::HEAD, reference).await?;
        let len = header_str(&resp, header::CONTENT_LENGTH.as_str())
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        Ok(digest.map(|d| (d, media, len)))
    }

    /// A manifest request with the accepted media types, checked for errors: the response,
    /// the digest the registry claims and the media type it sends.
    async fn manifest_request(
        &self,
        method: Method,
        reference: &str,
    ) -> Result<(Response<Incoming>, Option<Digest>, String), ClientError> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .request(method, &url, &[(header::ACCEPT, MANIFEST_ACCEPT)], None)
            .await?;
        let resp = check(&url, resp).await?;
        let digest =
            header_str(&resp, "docker-content-digest").and_then(|d| Digest::parse(&d).ok());
        let media = header_str(&resp, header::CONTENT_TYPE.as_str()).unwrap_or_default();
        Ok((resp, digest, media))
    }

    /// GET a manifest by tag or digest: body, media type (header or body's), and the
    /// digest the registry claims (verified by the caller).
    pub async fn get_manifest(
        &self,
        reference: &str,
    ) -> Result<(Bytes, String, Option<Digest>), ClientError> {
        let (resp, digest, media) = self.manifest_request(Method::GET, reference).await?;
        let url = self.url(&format!("manifests/{reference}"));
        let body = read_small(&url, resp.into_body()).await?;
        Ok((body, media, digest))
    }

    /// GET a blob from `offset` (a Range request when > 0).
    pub async fn get_blob(&self, digest: &Digest, offset: u64) -> Result<BlobStream, ClientError> {
        let url = self.url(&format!("blobs/{digest}"));
        let range = format!("bytes={offset}-");
        let headers: Vec<(header::HeaderName, &str)> = if offset > 0 {
            vec![(header::RANGE, range.as_str())]
        } else {
            vec![]
        };
        let resp = self.request(Method::GET, &url, &headers, None).await?;
        let resp = check(&url, resp).await?;
        let len: Option<u64> =
            header_str(&resp, header::CONTENT_LENGTH.as_str()).and_then(|l| l.parse().ok());
        let start = if resp.status() == StatusCode::PARTIAL_CONTENT {
            // "bytes <start>-<end>/<total>"
            header_str(&resp, header::CONTENT_RANGE.as_str())
                .and_then(|r| {
                    r.strip_prefix("bytes ")
                        .and_then(|r| r.split('-').next())
                        .and_then(|s| s.parse().ok())
                })
                .unwrap_or(0)
        } else {
            0
        };
        Ok(BlobStream {
            body: resp.into_body(),
            start,
            total: len.map(|l| l + start),
        })
    }

    /// GET a small blob (a config) whole.
    pub async fn get_blob_bytes(&self, digest: &Digest) -> Result<Bytes, ClientError> {
        let url = self.url(&format!("blobs/{digest}"));
        let s = self.get_blob(digest, 0).await?;
        read_small(&url, s.body).await
    }

    /// Whether the registry has the blob.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool, ClientError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.request(Method::HEAD, &url, &[], None).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => check(&url, resp).await.map(|_| false),
        }
    }

    /// Uploads a blob (monolithic POST + PUT) unless present.
    pub async fn push_blob(&self, digest: &Digest, data: Bytes) -> Result<(), ClientError> {
        if self.has_blob(digest).await? {
            return Ok(());
        }
        let url = self.url("blobs/uploads/");
        let resp = self
            .request(Method::POST, &url, &[], Some(Bytes::new()))
            .await?;
        let resp = check(&url, resp).await?;
        let location =
            header_str(&resp, header::LOCATION.as_str()).ok_or_else(|| ClientError::Protocol {
                url: url.clone(),
                detail: "upload started without a Location".into(),
            })?;
        let mut put = self.absolute(&location);
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={}", urlencode(&digest.to_string())));
        let resp = self
            .request(
                Method::PUT,
                &put,
                &[(header::CONTENT_TYPE, "application/octet-stream")],
                Some(data),
            )
            .await?;
        check(&put, resp).await.map(|_| ())
    }

    /// PUTs a manifest under `reference` (a tag or its digest).
    pub async fn push_manifest(
        &self,
        reference: &str,
        media_type: &str,
        data: Bytes,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .request(
                Method::PUT,
                &url,
                &[(header::CONTENT_TYPE, media_type)],
                Some(data),
            )
            .await?;
        check(&url, resp).await.map(|_| ())
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!(
                "{}://{}{}",
                self.endpoint.scheme, self.endpoint.host, location
            )
        }
    }

    /// Sends with the session's authorization; on a 401, authenticates once and retries.
    async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut authed_retry = false;
        loop {
            let auth = lock(&self.authorization).clone();
            let resp = self
                .send_following(method.clone(), url, headers, body.clone(), auth.as_deref())
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || authed_retry {
                return Ok(resp);
            }
            let challenge =
                header_str(&resp, header::WWW_AUTHENTICATE.as_str()).unwrap_or_default();
            let Some(new_auth) = self.authenticate(url, &challenge).await? else {
                return Ok(resp);
            };
            *lock(&self.authorization) = Some(new_auth);
            authed_retry = true;
        }
    }

    /// The Authorization value answering `challenge`, or `None` when there is nothing
    /// to answer with (the 401 then stands).
    async fn authenticate(
        &self,
        url: &str,
        challenge: &str,
    ) -> Result<Option<String>, ClientError> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Ok(self.credential.as_ref().map(basic_auth)),
            "bearer" => {
                let Some(realm) = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v) else {
                    return Err(ClientError::Protocol {
                        url: url.to_string(),
                        detail: "Bearer challenge without a realm".into(),
                    });
                };
                let service = params
                    .iter()
                    .find(|(k, _)| k == "service")
                    .map(|(_, v)| v.as_str());
                let scope = params
                    .iter()
                    .find(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| {
                        format!(
                            "repository:{}:{}",
                            self.endpoint.repository, self.scope_actions
                        )
                    });
                self.fetch_token(realm, service, &scope).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ClientError> {
        let tls = self.tls_for(realm)?;
        let resp = match self
            .credential
            .as_ref()
            .and_then(|c| c.identity_token.as_ref())
        {
            Some(refresh) => {
                let mut form = format!(
                    "grant_type=refresh_token&client_id=podium&refresh_token={}&scope={}",
                    urlencode(refresh),
                    urlencode(scope)
                );
                if let Some(s) = service {
                    form.push_str(&format!("&service={}", urlencode(s)));
                }
                send_once(
                    Method::POST,
                    realm,
                    &[(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
                    Some(Bytes::from(form)),
                    None,
                    tls,
                )
                .await?
            }
            None => {
                let mut u = realm.to_string();
                u.push(if u.contains('?') { '&' } else { '?' });
                if let Some(s) = service {
                    u.push_str(&format!("service={}&", urlencode(s)));
                }
                u.push_str(&format!("scope={}", urlencode(scope)));
                let auth = self.credential.as_ref().map(basic_auth);
                send_once(Method::GET, &u, &[], None, auth.as_deref(), tls).await?
            }
        };
        let resp = check(realm, resp).await?;
        let body = read_small(realm, resp.into_body()).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|_| ClientError::Protocol {
            url: realm.to_string(),
            detail: "token response is not the expected JSON".into(),
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| ClientError::Protocol {
                url: realm.to_string(),
                detail: "token response has no token".into(),
            })
    }

    fn tls_for(&self, url: &str) -> Result<Option<Arc<rustls::ClientConfig>>, ClientError> {
        if !url.starts_with("https://") {
            return Ok(None);
        }
        if let Some(t) = &self.tls {
            return Ok(Some(t.clone()));
        }
        tls_config(&self.endpoint.host, None).map(Some)
    }

    async fn send_following(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Option<Bytes>,
        auth: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut url = url.to_string();
        let mut auth = auth.map(str::to_string);
        let origin = host_of(&url).to_string();
        for _ in 0..=MAX_REDIRECTS {
            let tls = self.tls_for(&url)?;
            let resp = send_once(
                method.clone(),
                &url,
                headers,
                body.clone(),
                auth.as_deref(),
                tls,
            )
            .await?;
            let redirect = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308)
                && (method == Method::GET || method == Method::HEAD);
            if !redirect {
                return Ok(resp);
            }
            let Some(loc) = header_str(&resp, header::LOCATION.as_str()) else {
                return Ok(resp);
            };
            url = self.absolute(&loc);
            if host_of(&url) != origin {
                auth = None;
            }
        }
        Err(ClientError::Protocol {
            url,
            detail: "too many redirects".into(),
        })
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

fn basic_auth(c: &Credential) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn header_str<B>(resp: &Response<B>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Turns a non-success response into [`ClientError::Status`] with the registry's answer.
async fn check(url: &str, resp: Response<Incoming>) -> Result<Response<Incoming>, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_small(url, resp.into_body()).await.unwrap_or_default();
    Err(ClientError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        answer: registry_answer(status, &body),
    })
}

/// `CODE: message` from the distribution error JSON, else the body's first line.
pub fn registry_answer(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| format!("{}: {}", i.code, i.message))
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        line.chars().take(200).collect()
    }
}

async fn read_small(url: &str, body: Incoming) -> Result<Bytes, ClientError> {
    let limited = http_body_util::Limited::new(body, MAX_SMALL_BODY);
    let collected = tokio::time::timeout(RESPONSE_TIMEOUT, limited.collect())
        .await
        .map_err(|_| net(url, "timed out reading the response"))?
        .map_err(|e| net(url, e))?;
    Ok(collected.to_bytes())
}

/// One request on a fresh connection.
async fn send_once(
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, &str)],
    body: Option<Bytes>,
    auth: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Response<Incoming>, ClientError> {
    let uri: http::Uri = url.parse().map_err(|_| ClientError::Protocol {
        url: url.to_string(),
        detail: "invalid URL".into(),
    })?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| ClientError::Protocol {
            url: url.to_string(),
            detail: "URL without a host".into(),
        })?
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((bare_host.as_str(), port)),
    )
    .await
    .map_err(|_| net(url, "connect timed out"))?
    .map_err(|e| net(url, format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host.clone());
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "podium/0.1");
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| ClientError::Protocol {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    let fut = async {
        if https {
            let cfg = match tls {
                Some(c) => c,
                None => tls_config(&host, None)?,
            };
            let name = rustls_pki_types::ServerName::try_from(bare_host.clone())
                .map_err(|_| net(url, "invalid TLS server name"))?;
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| net(url, format!("TLS: {e}")))?;
            exchange(url, TokioIo::new(stream), req).await
        } else {
            exchange(url, TokioIo::new(tcp), req).await
        }
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, fut)
        .await
        .map_err(|_| net(url, "timed out waiting for the response"))?
}

async fn exchange<I>(
    url: &str,
    io: I,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, ClientError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| net(url, e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| net(url, e))
}

/// `Bearer realm="..",service="..",scope=".."` → ("Bearer", [(k, v)]).
pub fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = match h.find(char::is_whitespace) {
        Some(i) => (&h[..i], h[i..].trim()),
        None => (h, ""),
    };
    let mut params = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = rest[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch_len = rest[i..].chars().next().map(char::len_utf8).unwrap_or(1);
                val.push_str(&rest[i..i + ch_len]);
                i += ch_len;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = rest[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            params.push((key, val));
        }
    }
    (scheme.to_string(), params)
}

/// Percent-encoding for query values.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// rustls settings for `host` from its `registries.yaml` TLS block.
pub fn tls_config(
    host: &str,
    tls: Option<&TlsConfig>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let err = |detail: String| ClientError::Tls {
        host: host.to_string(),
        detail,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?;
    let builder = if tls.is_some_and(|t| t.insecure_skip_verify) {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(bundle) = SYSTEM_CA_BUNDLES
            .iter()
            .find(|p| std::path::Path::new(p).is_file())
        {
            if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
                for c in iter.flatten() {
                    let _ = roots.add(c);
                }
            }
        }
        if let Some(ca) = tls.and_then(|t| t.ca_file.as_ref()) {
            let iter = CertificateDer::pem_file_iter(ca)
                .map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?;
            for c in iter {
                let c = c.map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match tls.map(|t| (&t.cert_file, &t.key_file)) {
        Some((Some(cert), Some(key))) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| err(format!("cert_file {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| err(format!("key_file {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| err(e.to_string()))?
        }
        Some((Some(_), None)) | Some((None, Some(_))) => {
            return Err(err("cert_file and key_file must be given together".into()))
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// `insecure_skip_verify`: accepts any certificate (signatures still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A blocking [`Read`] over a response body, for the content store's synchronous
/// fetcher; runs on a blocking thread and drives the body on `handle`. `on_bytes` is
/// called with every chunk's length (progress).
pub struct BodyReader {
    handle: tokio::runtime::Handle,
    body: Incoming,
    buf: Bytes,
    on_bytes: Box<dyn FnMut(u64) + Send>,
}

impl BodyReader {
    pub fn new(
        handle: tokio::runtime::Handle,
        body: Incoming,
        on_bytes: Box<dyn FnMut(u64) + Send>,
    ) -> BodyReader {
        BodyReader {
            handle,
            body,
            buf: Bytes::new(),
            on_bytes,
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            let frame = self
                .handle
                .block_on(async { tokio::time::timeout(RESPONSE_TIMEOUT, self.body.frame()).await })
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "blob download stalled"))?;
            match frame {
                None => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf = d;
                    }
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/busybox:pull".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p, vec![("realm".into(), "basic-realm".into())]);
    }

    #[test]
    fn answers_and_encoding() {
        let a = registry_answer(
            StatusCode::UNAUTHORIZED,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
        );
        assert_eq!(a, "UNAUTHORIZED: authentication required");
        assert_eq!(registry_answer(StatusCode::NOT_FOUND, b""), "Not Found");
        assert_eq!(
            urlencode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
