//! Pushing an image over the OCI distribution API: blobs the registry
//! already has are skipped (HEAD), others are uploaded monolithically
//! (POST + PUT with the digest), then the manifest is PUT. A `401` answer's
//! `WWW-Authenticate` challenge is followed once: Basic with the given
//! credentials, or Bearer through the registry's token service.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::oci::{Digest, MEDIA_TYPE_MANIFEST};
use super::{BuiltImage, ImageError, ImageRef};

/// A registry user and password. ECR's `get_authorization_token` gives
/// base64 of `AWS:<password>`: see [`Credentials::from_ecr_token`].
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Decodes an ECR authorization token (`base64("AWS:<password>")`).
    pub fn from_ecr_token(token: &str) -> Result<Self, ImageError> {
        let bytes = BASE64
            .decode(token.trim())
            .map_err(|e| ImageError::Credentials(format!("token is not base64: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ImageError::Credentials("token is not UTF-8".to_owned()))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| ImageError::Credentials("token has no user:password".to_owned()))?;
        Ok(Self::new(user, password))
    }

    fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub credentials: Option<Credentials>,
    /// Use `http://` even for a non-loopback registry.
    pub plain_http: bool,
    /// The registry's base URL (`https://host[:port]`) when it is reached
    /// somewhere else than the reference's host says: an ECR interface VPC
    /// endpoint, or a test registry standing in for ECR. The pushed
    /// reference keeps the target's name; only the connection moves.
    pub endpoint: Option<String>,
}

/// What a blob is, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Layer,
    Config,
}

impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobKind::Layer => "layer",
            BlobKind::Config => "config",
        })
    }
}

/// Progress of a push, one event per step.
#[derive(Debug, Clone)]
pub enum PushEvent<'a> {
    /// The registry already has the blob: nothing uploaded.
    BlobExists {
        kind: BlobKind,
        digest: &'a Digest,
        size: u64,
    },
    BlobUploading {
        kind: BlobKind,
        digest: &'a Digest,
        size: u64,
    },
    BlobUploaded {
        kind: BlobKind,
        digest: &'a Digest,
        size: u64,
    },
    ManifestPushed {
        reference: &'a str,
    },
}

/// One blob's fate in a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobReport {
    pub kind: BlobKind,
    pub digest: Digest,
    pub size: u64,
    /// `false` when the registry already had it.
    pub uploaded: bool,
}

/// The outcome of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// `registry/repository@sha256:...`: what to deploy.
    pub reference: String,
    /// `registry/repository:tag`, when a tag was pushed.
    pub tag: Option<String>,
    pub manifest_digest: Digest,
    /// False when the registry already had the manifest (pushed by digest
    /// before): nothing was written.
    pub manifest_pushed: bool,
    pub blobs: Vec<BlobReport>,
    /// Blob bytes uploaded.
    pub pushed_bytes: u64,
    /// Blob bytes the registry already had.
    pub skipped_bytes: u64,
}

/// Pushes `image` to `target`, calling `progress` for every step.
pub async fn push(
    image: &BuiltImage,
    target: &ImageRef,
    opts: &PushOptions,
    progress: &mut (dyn FnMut(&PushEvent<'_>) + Send),
) -> Result<PushReport, ImageError> {
    let mut client = Client::new(target, opts)?;
    // Pushed by digest before: the registry keeps a manifest only with every
    // blob it names, so one HEAD answers for the whole image.
    if target.tag.is_none() && client.manifest_exists(&image.manifest_digest).await? {
        let blobs: Vec<BlobReport> = image
            .blobs()
            .iter()
            .map(|b| {
                progress(&PushEvent::BlobExists {
                    kind: b.kind,
                    digest: b.digest,
                    size: b.bytes.len() as u64,
                });
                BlobReport {
                    kind: b.kind,
                    digest: b.digest.clone(),
                    size: b.bytes.len() as u64,
                    uploaded: false,
                }
            })
            .collect();
        let reference = format!("{}@{}", target.name(), image.manifest_digest);
        return Ok(PushReport {
            tag: None,
            manifest_pushed: false,
            manifest_digest: image.manifest_digest.clone(),
            pushed_bytes: 0,
            skipped_bytes: blobs.iter().map(|b| b.size).sum(),
            blobs,
            reference,
        });
    }
    let mut blobs = Vec::new();
    for blob in image.blobs() {
        let size = blob.bytes.len() as u64;
        let (kind, digest) = (blob.kind, blob.digest);
        let uploaded = if client.blob_exists(digest).await? {
            progress(&PushEvent::BlobExists { kind, digest, size });
            false
        } else {
            progress(&PushEvent::BlobUploading { kind, digest, size });
            client.upload_blob(digest, blob.bytes).await?;
            progress(&PushEvent::BlobUploaded { kind, digest, size });
            true
        };
        blobs.push(BlobReport {
            kind,
            digest: digest.clone(),
            size,
            uploaded,
        });
    }
    let manifest_ref = target
        .tag
        .clone()
        .unwrap_or_else(|| image.manifest_digest.to_string());
    client
        .put_manifest(&manifest_ref, &image.manifest, &image.manifest_digest)
        .await?;
    let reference = format!("{}@{}", target.name(), image.manifest_digest);
    progress(&PushEvent::ManifestPushed {
        reference: &reference,
    });
    let sum = |uploaded: bool| {
        blobs
            .iter()
            .filter(|b| b.uploaded == uploaded)
            .map(|b| b.size)
            .sum()
    };
    Ok(PushReport {
        tag: target.tag.as_ref().map(|_| target.to_string()),
        manifest_pushed: true,
        manifest_digest: image.manifest_digest.clone(),
        pushed_bytes: sum(true),
        skipped_bytes: sum(false),
        blobs,
        reference,
    })
}

/// A distribution API client for one repository, remembering the
/// `Authorization` header a challenge led to.
struct Client {
    http: reqwest::Client,
    base: Url,
    repository: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

impl Client {
    fn new(target: &ImageRef, opts: &PushOptions) -> Result<Self, ImageError> {
        let base_str = match &opts.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => target.base_url(opts.plain_http),
        };
        let base = Url::parse(&base_str).map_err(|e| ImageError::Reference {
            reference: target.to_string(),
            reason: format!("bad registry URL {base_str}: {e}"),
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .timeout(std::time::Duration::from_secs(600))
            .user_agent(concat!("stackctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ImageError::Http {
                method: "build".to_owned(),
                url: base_str.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            repository: target.repository.clone(),
            credentials: opts.credentials.clone(),
            authorization: None,
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{}/{path}", self.repository));
        url
    }

    async fn manifest_exists(&mut self, digest: &Digest) -> Result<bool, ImageError> {
        let url = self.url(&format!("manifests/{digest}"));
        let resp = self
            .send(Method::HEAD, url.clone(), |r| {
                r.header(reqwest::header::ACCEPT, MEDIA_TYPE_MANIFEST)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(registry_error(&Method::HEAD, &url, resp).await),
        }
    }

    async fn blob_exists(&mut self, digest: &Digest) -> Result<bool, ImageError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(Method::HEAD, url.clone(), |r| r).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(registry_error(&Method::HEAD, &url, resp).await),
        }
    }

    async fn upload_blob(&mut self, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        let start = self.url("blobs/uploads/");
        let resp = self
            .send(Method::POST, start.clone(), |r| {
                r.header(reqwest::header::CONTENT_LENGTH, 0)
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(registry_error(&Method::POST, &start, resp).await);
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ImageError::Registry {
                method: "POST".to_owned(),
                url: start.to_string(),
                status: resp.status().as_u16(),
                message: "upload started without a Location header".to_owned(),
            })?;
        // Location may be relative to the registry and carries upload state in its query.
        let mut put = start.join(location).map_err(|e| ImageError::Registry {
            method: "POST".to_owned(),
            url: start.to_string(),
            status: resp.status().as_u16(),
            message: format!("bad upload Location {location:?}: {e}"),
        })?;
        put.query_pairs_mut().append_pair("digest", digest.as_str());
        let body = bytes.to_vec();
        let resp = self
            .send(Method::PUT, put.clone(), |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(registry_error(&Method::PUT, &put, resp).await);
        }
        Ok(())
    }

    async fn put_manifest(
        &mut self,
        reference: &str,
        manifest: &[u8],
        digest: &Digest,
    ) -> Result<(), ImageError> {
        let url = self.url(&format!("manifests/{reference}"));
        let body = manifest.to_vec();
        let resp = self
            .send(Method::PUT, url.clone(), |r| {
                r.header(CONTENT_TYPE, MEDIA_TYPE_MANIFEST)
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(registry_error(&Method::PUT, &url, resp).await);
        }
        let answered = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        if let Some(answered) = answered.filter(|d| *d != digest.as_str()) {
            return Err(ImageError::Registry {
                method: "PUT".to_owned(),
                url: url.to_string(),
                status: resp.status().as_u16(),
                message: format!("registry stored the manifest as {answered}, expected {digest}"),
            });
        }
        Ok(())
    }

    /// Sends a request; on a `401` with a challenge, authenticates and sends
    /// it once more. `build` adds headers and body to a fresh request.
    async fn send(
        &mut self,
        method: Method,
        url: Url,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, ImageError> {
        let mut retried = false;
        loop {
            let mut req = build(self.http.request(method.clone(), url.clone()));
            if let Some(auth) = &self.authorization {
                req = req.header(AUTHORIZATION, auth);
            }
            let resp = req.send().await.map_err(|source| ImageError::Http {
                method: method.to_string(),
                url: url.to_string(),
                source,
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED || retried {
                if resp.status() == StatusCode::UNAUTHORIZED {
                    let message = error_message(resp).await;
                    return Err(ImageError::Auth(format!(
                        "{method} {url} is still unauthorized after authenticating: {message}"
                    )));
                }
                return Ok(resp);
            }
            retried = true;
            self.authorization = Some(self.authenticate(resp.headers()).await?);
        }
    }

    /// Turns a `401`'s `WWW-Authenticate` challenge into an `Authorization` value.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<String, ImageError> {
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Challenge::parse)
            .ok_or_else(|| {
                ImageError::Auth("401 without a Basic or Bearer challenge".to_owned())
            })?;
        match challenge {
            Challenge::Basic => {
                let creds = self.credentials.as_ref().ok_or_else(|| {
                    ImageError::Auth("the registry wants a user and password; none given".into())
                })?;
                Ok(creds.basic_header())
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                // Ask for push right away when the challenge is about our repository
                // (a HEAD challenge asks only for pull): one token serves the whole push.
                let ours = format!("repository:{}:", self.repository);
                let scope = match scope {
                    Some(s) if !s.starts_with(&ours) => s,
                    _ => format!("{ours}pull,push"),
                };
                self.fetch_token(&realm, service.as_deref(), &scope).await
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ImageError> {
        let mut url = Url::parse(realm)
            .map_err(|e| ImageError::Auth(format!("bad token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = service {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.http.get(url.clone());
        if let Some(creds) = &self.credentials {
            req = req.header(AUTHORIZATION, creds.basic_header());
        }
        let resp = req.send().await.map_err(|source| ImageError::Http {
            method: "GET".to_owned(),
            url: url.to_string(),
            source,
        })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let message = error_message(resp).await;
            return Err(ImageError::Auth(format!(
                "token service {url} answered {status}: {message}"
            )));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|e| ImageError::Auth(format!("token service {url}: bad answer: {e}")))?;
        body.token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| ImageError::Auth(format!("token service {url} gave no token")))
    }
}

/// A `WWW-Authenticate` challenge we can answer.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Self::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = auth_params(params);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        Some(Self::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// Splits `a="x, y",b=z` into pairs, honouring quotes (scopes contain commas).
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

async fn registry_error(method: &Method, url: &Url, resp: Response) -> ImageError {
    let status = resp.status().as_u16();
    ImageError::Registry {
        method: method.to_string(),
        url: url.to_string(),
        status,
        message: error_message(resp).await,
    }
}

/// The registry's `{"errors":[{"code","message"}]}` as `CODE: message; ...`,
/// else the body text, else the status's reason.
async fn error_message(resp: Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if let Ok(errors) = serde_json::from_str::<Errors>(&body)
        && !errors.errors.is_empty()
    {
        return errors
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let body = body.trim();
    if body.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        body.chars().take(500).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_commas_in_scope() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn decodes_ecr_tokens() {
        let token = BASE64.encode("AWS:secret:with:colons");
        let c = Credentials::from_ecr_token(&token).unwrap();
        assert_eq!(c, Credentials::new("AWS", "secret:with:colons"));
        assert!(!format!("{c:?}").contains("secret"));
        assert!(Credentials::from_ecr_token("!!!").is_err());
        assert!(Credentials::from_ecr_token(&BASE64.encode("nocolon")).is_err());
    }
}
