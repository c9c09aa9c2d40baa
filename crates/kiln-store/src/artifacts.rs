//! The content-addressed artifact store.
//!
//! Blobs live under `blobs/<first two hex digits>/<content id>`. The id is the BLAKE3 hash of the
//! bytes, so a blob that exists is complete and immutable: writers never overwrite (the same id
//! means the same bytes), and readers hash what they read and refuse a mismatch. Writes go
//! through `object_store`: its local backend writes a staging file and renames it into place,
//! and S3 makes an object visible only when its PUT or multipart upload completes, so a crash
//! mid-write leaves no visible partial blob on either.
//!
//! The store is a local folder (a path or `file://` URL) or an S3 bucket (`s3://BUCKET/PREFIX`,
//! Amazon S3 or any S3-compatible server). S3 is configured by the standard `AWS_*` environment
//! variables and [`S3Options`]; opening it makes one cheap request, so a wrong endpoint,
//! refused credentials or a missing bucket are reported before any work starts.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use kiln_core::id::ContentId;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use tokio::io::AsyncWriteExt;

use crate::{Result, StoreError};

/// Upload chunk for large files: large enough for S3's 5 MiB multipart minimum.
const CHUNK: usize = 8 << 20;

/// The artifact store.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Set for a local folder: blobs can then be read in place after verification.
    root: Option<PathBuf>,
}

/// Settings of an `s3://` store given by the program rather than the environment: `kiln` fills
/// the first three from `[store.s3]` in kiln.toml. Each one set here takes precedence over its
/// `AWS_*` variable.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// The server's URL (`AWS_ENDPOINT_URL` / `AWS_ENDPOINT` otherwise); requests are then
    /// path-style (`ENDPOINT/BUCKET/KEY`), as S3-compatible servers expect.
    pub endpoint: Option<String>,
    /// The signing region (`AWS_REGION` / `AWS_DEFAULT_REGION` otherwise; `us-east-1` if none).
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint (`AWS_ALLOW_HTTP` otherwise).
    pub allow_http: Option<bool>,
    /// Credentials, for programs that hold them; `kiln` leaves them to `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` and never reads them from a file.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// A verified local copy (or, for a local store, the blob itself) of an artifact.
#[derive(Debug)]
pub struct VerifiedFile {
    pub path: PathBuf,
    pub size: u64,
    /// Deletes a downloaded copy when dropped; `None` when `path` is the blob in a local store.
    _temp: Option<tempfile::TempPath>,
}

fn key(id: &ContentId) -> Path {
    Path::from(format!("blobs/{}/{}", &id.as_str()[..2], id.as_str()))
}

/// BLAKE3 of a file, read in 1 MiB chunks (memory stays flat for any size).
pub(crate) fn hash_file(path: &FsPath) -> std::io::Result<(ContentId, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((ContentId::from_hash(hasher.finalize()), size))
}

/// What an `s3://` store is, for error messages.
struct S3Target {
    url: String,
    bucket: String,
    /// The endpoint requests go to, as a user would write it.
    endpoint: String,
    /// Whether static credentials were configured (else the instance/container providers run).
    static_credentials: bool,
}

/// Client settings unless the environment sets them: connect quickly or fail (a wrong endpoint
/// fails in seconds, not after minutes of retries), allow large transfers.
const CLIENT_DEFAULTS: [(&str, ClientConfigKey, &str); 3] = [
    ("AWS_CONNECT_TIMEOUT", ClientConfigKey::ConnectTimeout, "3s"),
    // A whole request, body included: a large blob on a slow link needs long.
    ("AWS_TIMEOUT", ClientConfigKey::Timeout, "10m"),
    // No byte for this long in a response: the connection is dead.
    ("AWS_READ_TIMEOUT", ClientConfigKey::ReadTimeout, "60s"),
];

/// Retries of transient failures (connection errors, 5xx, throttling) during work.
fn work_retries() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            base: 2.0,
        },
        max_retries: 6,
        retry_timeout: Duration::from_secs(60),
    }
}

/// The probe at open retries once, briefly: an unreachable endpoint is reported at once.
fn probe_retries() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            // Above 1: object_store draws each wait from [init, previous × base).
            base: 2.0,
        },
        max_retries: 1,
        retry_timeout: Duration::from_secs(10),
    }
}

/// `s3://bucket/some/prefix` → (`bucket`, `some/prefix`).
fn parse_s3_url(url: &str) -> Result<(String, Option<Path>)> {
    let bad = |why: &str| StoreError::S3Config {
        url: url.to_owned(),
        message: format!("{why}; write s3://BUCKET or s3://BUCKET/PREFIX"),
    };
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p.trim_matches('/')),
        None => (rest, ""),
    };
    if bucket.is_empty() {
        return Err(bad("no bucket name"));
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
    {
        return Err(bad(
            "a bucket name has lowercase letters, digits, '-', '.' and '_' only",
        ));
    }
    if prefix.is_empty() {
        return Ok((bucket.to_owned(), None));
    }
    let prefix = Path::parse(prefix).map_err(|e| bad(&format!("bad prefix: {e}")))?;
    Ok((bucket.to_owned(), Some(prefix)))
}

/// The error chain of `e` as one string (to look for S3 error codes), and its innermost
/// message (e.g. "Connection refused").
fn chain(e: &(dyn std::error::Error + 'static)) -> (String, String) {
    let mut text = e.to_string();
    let mut root = text.clone();
    let mut cur = e.source();
    while let Some(s) = cur {
        root = s.to_string();
        text.push_str(": ");
        text.push_str(&root);
        cur = s.source();
    }
    (text, root)
}

/// Turns the open-time probe's failure into one clear error.
fn probe_error(target: S3Target, e: object_store::Error) -> StoreError {
    let connect_failed = {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut found = false;
        while let Some(err) = cur {
            if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
                use object_store::client::HttpErrorKind;
                if matches!(h.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                    found = true;
                }
            }
            cur = err.source();
        }
        found
    };
    let (text, root) = chain(&e);
    let has = |code: &str| text.contains(code);
    // Without static credentials object_store asks the instance or container metadata
    // service (169.254.x.x) for them; off a cloud machine there is none.
    if !target.static_credentials && (has("169.254.") || has("credential")) {
        return StoreError::S3NoCredentials { url: target.url };
    }
    if connect_failed {
        return StoreError::S3Unreachable {
            url: target.url,
            endpoint: target.endpoint,
            reason: root,
        };
    }
    if has("NoSuchBucket") {
        return StoreError::S3NoBucket {
            url: target.url,
            bucket: target.bucket,
            endpoint: target.endpoint,
        };
    }
    let refused = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
    ]
    .into_iter()
    .find(|c| has(c));
    if let Some(code) = refused {
        return StoreError::S3Credentials {
            url: target.url,
            endpoint: target.endpoint,
            code: code.to_owned(),
        };
    }
    if matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || has("403 Forbidden")
        || has("401 Unauthorized")
    {
        return StoreError::S3Credentials {
            url: target.url,
            endpoint: target.endpoint,
            code: "403".to_owned(),
        };
    }
    StoreError::S3 {
        url: target.url,
        message: format!(
            "listing the bucket `{}` at {} failed (is it an S3 endpoint?): {e}",
            target.bucket, target.endpoint
        ),
    }
}

impl ArtifactStore {
    /// Opens the store at `url`: a folder path or `file://` URL (the folder is created), or
    /// `s3://BUCKET[/PREFIX]` configured by the environment.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &S3Options::default()).await
    }

    /// [`Self::open`] with settings for an `s3://` store that take precedence over the
    /// environment (ignored for a folder).
    pub async fn open_with(url: &str, s3: &S3Options) -> Result<Self> {
        if url.starts_with("s3://") {
            return Self::open_s3(url, s3).await;
        }
        let path = if let Some(p) = url.strip_prefix("file://") {
            PathBuf::from(p)
        } else if url.contains("://") {
            return Err(StoreError::BadArtifactUrl(url.to_owned()));
        } else {
            PathBuf::from(url)
        };
        std::fs::create_dir_all(&path)?;
        let root = std::fs::canonicalize(&path)?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self {
            store: Arc::new(store),
            root: Some(root),
        })
    }

    /// An S3 bucket: `AWS_*` variables, then `options`, then Kiln's client defaults; one
    /// listing of the prefix proves endpoint, credentials and bucket before any work.
    async fn open_s3(url: &str, options: &S3Options) -> Result<Self> {
        let (bucket, prefix) = parse_s3_url(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(allow) = options.allow_http {
            builder = builder.with_allow_http(allow);
        }
        if let Some(k) = &options.access_key_id {
            builder = builder.with_access_key_id(k);
        }
        if let Some(k) = &options.secret_access_key {
            builder = builder.with_secret_access_key(k);
        }
        for (var, key, value) in CLIENT_DEFAULTS {
            if std::env::var_os(var).is_none() {
                builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
            }
        }
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let region = builder.get_config_value(&AmazonS3ConfigKey::Region);
        let endpoint_shown = match &endpoint {
            Some(e) => {
                // An S3-compatible server: path-style requests, and a region to sign for.
                if std::env::var_os("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
                    builder = builder.with_virtual_hosted_style_request(false);
                }
                if region.is_none() {
                    builder = builder.with_region("us-east-1");
                }
                let http = e.starts_with("http://");
                let allowed = builder
                    .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
                    // The spellings object_store reads as true.
                    .is_some_and(|v| {
                        matches!(
                            v.to_ascii_lowercase().as_str(),
                            "1" | "true" | "on" | "yes" | "y"
                        )
                    });
                if http && !allowed {
                    return Err(StoreError::S3Config {
                        url: url.to_owned(),
                        message: format!(
                            "the endpoint {e} is plain HTTP, which is refused unless allowed: \
                             set AWS_ALLOW_HTTP=true (or allow_http = true under [store.s3] in \
                             kiln.toml), or use https://"
                        ),
                    });
                }
                e.clone()
            }
            None => format!(
                "https://s3.{}.amazonaws.com",
                region.as_deref().unwrap_or("us-east-1")
            ),
        };
        let static_credentials = builder
            .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
            .is_some();
        let config_error = |e: object_store::Error| StoreError::S3Config {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let work = builder
            .clone()
            .with_retry(work_retries())
            .build()
            .map_err(config_error)?;
        let probe = builder
            .with_retry(probe_retries())
            .build()
            .map_err(config_error)?;
        let (store, probe): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) = match prefix {
            Some(p) => (
                Arc::new(PrefixStore::new(work, p.clone())),
                Arc::new(PrefixStore::new(probe, p)),
            ),
            None => (Arc::new(work), Arc::new(probe)),
        };
        if let Err(e) = probe.list_with_delimiter(None).await {
            return Err(probe_error(
                S3Target {
                    url: url.to_owned(),
                    bucket,
                    endpoint: endpoint_shown,
                    static_credentials,
                },
                e,
            ));
        }
        Ok(Self { store, root: None })
    }

    /// Whether a blob with this id exists.
    pub async fn exists(&self, id: &ContentId) -> Result<bool> {
        match self.store.head(&key(id)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `bytes`; returns their id. Storing the same bytes twice is a no-op.
    pub async fn put_bytes(&self, bytes: Bytes) -> Result<ContentId> {
        let id = ContentId::of(&bytes);
        if !self.exists(&id).await? {
            self.store.put(&key(&id), PutPayload::from(bytes)).await?;
        }
        Ok(id)
    }

    /// Stores the file at `path`, streaming it; returns its id and size.
    pub async fn put_file(&self, path: &FsPath) -> Result<(ContentId, u64)> {
        let owned = path.to_owned();
        let (id, size) = tokio::task::spawn_blocking(move || hash_file(&owned))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        if self.exists(&id).await? {
            return Ok((id, size));
        }
        let upload = self.store.put_multipart(&key(&id)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut file = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; CHUNK];
        let mut hasher = blake3::Hasher::new();
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            writer.wait_for_capacity(4).await?;
            writer.write(&buf[..n]);
        }
        // The file may have changed between hashing and uploading: never store it under a wrong id.
        let uploaded = ContentId::from_hash(hasher.finalize());
        if uploaded != id {
            writer.abort().await?;
            return Err(StoreError::Conflict(format!(
                "{} changed while it was being stored",
                path.display()
            )));
        }
        writer.finish().await?;
        Ok((id, size))
    }

    /// Stores a file Kiln wrote itself and no longer needs. On a local store on the same disk
    /// the file is renamed into place (no copy of a large snapshot part); otherwise it is
    /// uploaded like [`Self::put_file`]. The file is gone afterwards either way.
    pub async fn put_file_owned(&self, file: tempfile::TempPath) -> Result<(ContentId, u64)> {
        if let Some(root) = &self.root {
            let path = file.to_path_buf();
            let (id, size) = tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
            let dest = root.join(key(&id).as_ref());
            if dest.exists() {
                return Ok((id, size));
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Make the bytes durable before they become visible under their id.
            std::fs::File::open(&file)?.sync_all()?;
            match file.persist_noclobber(&dest) {
                Ok(()) => return Ok((id, size)),
                // Someone stored the same content meanwhile: same id, same bytes.
                Err(_) if dest.exists() => return Ok((id, size)),
                // A different disk: fall through to a copy.
                Err(e) => {
                    let (id, size) = self.put_file(&e.path).await?;
                    return Ok((id, size));
                }
            }
        }
        self.put_file(&file).await
    }

    /// Reads a whole blob, verifying its hash.
    pub async fn get_bytes(&self, id: &ContentId) -> Result<Bytes> {
        let bytes = match self.store.get(&key(id)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::Missing(id.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        let found = ContentId::of(&bytes);
        if &found != id {
            return Err(StoreError::Tampered {
                expected: id.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// A verified local file with the blob's content, for readers that need a file (Parquet).
    /// For a local store it is the blob itself, hashed in place; otherwise a download into
    /// `scratch`, deleted when the result is dropped.
    pub async fn fetch(&self, id: &ContentId, scratch: &FsPath) -> Result<VerifiedFile> {
        if let Some(root) = &self.root {
            let path = root.join(key(id).as_ref());
            if !path.is_file() {
                return Err(StoreError::Missing(id.clone()));
            }
            let p = path.clone();
            let (found, size) = tokio::task::spawn_blocking(move || hash_file(&p))
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
            if &found != id {
                return Err(StoreError::Tampered {
                    expected: id.clone(),
                    found,
                });
            }
            return Ok(VerifiedFile {
                path,
                size,
                _temp: None,
            });
        }
        let result = match self.store.get(&key(id)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::Missing(id.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        // Streamed to disk and hashed on the way: memory stays flat for any size.
        std::fs::create_dir_all(scratch)?;
        let (file, path) = tempfile::Builder::new()
            .prefix(&format!("fetch-{}-", id.short()))
            .tempfile_in(scratch)?
            .into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut stream = result.into_stream();
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        let found = ContentId::from_hash(hasher.finalize());
        if &found != id {
            return Err(StoreError::Tampered {
                expected: id.clone(),
                found,
            });
        }
        Ok(VerifiedFile {
            path: path.to_path_buf(),
            size,
            _temp: Some(path),
        })
    }

    /// The ids of every blob in the store (for `kiln doctor`), with their sizes. Names under
    /// `blobs/` that are not content ids (a stray file) are returned as `Err(name)`.
    pub async fn list(&self) -> Result<Vec<std::result::Result<(ContentId, u64), String>>> {
        let mut out = Vec::new();
        let mut listing = self.store.list(Some(&Path::from("blobs")));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            let name = meta.location.filename().unwrap_or_default().to_owned();
            out.push(match name.parse::<ContentId>() {
                Ok(id) if key(&id) == meta.location => Ok((id, meta.size)),
                _ => Err(meta.location.to_string()),
            });
        }
        Ok(out)
    }

    /// Deletes a blob; one already gone is not an error. Only for blobs nothing refers to any
    /// more (a dropped log archive): blobs are shared by content.
    pub async fn delete(&self, id: &ContentId) -> Result<()> {
        match self.store.delete(&key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The path of a blob in a local store (for tests and `kiln doctor`).
    pub fn local_path(&self, id: &ContentId) -> Option<PathBuf> {
        self.root.as_ref().map(|r| r.join(key(id).as_ref()))
    }
}
