//! The content-addressed artifact store.
//!
//! Blobs live under `blobs/<first two hex digits>/<content id>`. The id is the BLAKE3 hash of the
//! bytes, so a blob that exists is complete and immutable: writers never overwrite (the same id
//! means the same bytes), and readers hash what they read and refuse a mismatch. Writes go
//! through `object_store`, whose local backend writes a staging file and renames it into place,
//! so a crash mid-write leaves no visible partial blob.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kiln_core::id::ContentId;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

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

/// A verified local copy (or, for a local store, the blob itself) of an artifact.
#[derive(Debug)]
pub struct VerifiedFile {
    pub path: PathBuf,
    pub size: u64,
    /// Keeps a downloaded copy alive; `None` when `path` is the blob in a local store.
    _temp: Option<tempfile_guard::TempPath>,
}

mod tempfile_guard {
    /// Deletes a downloaded copy when dropped.
    #[derive(Debug)]
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
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

impl ArtifactStore {
    /// Opens the store at `url` (a folder path or `file://` URL), creating the folder.
    pub fn open(url: &str) -> Result<Self> {
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
        std::fs::create_dir_all(scratch)?;
        let bytes = self.get_bytes(id).await?;
        let path = scratch.join(format!("fetch-{}-{}", id.short(), std::process::id()));
        tokio::fs::write(&path, &bytes).await?;
        Ok(VerifiedFile {
            size: bytes.len() as u64,
            _temp: Some(tempfile_guard::TempPath(path.clone())),
            path,
        })
    }

    /// The path of a blob in a local store (for tests and `kiln doctor`).
    pub fn local_path(&self, id: &ContentId) -> Option<PathBuf> {
        self.root.as_ref().map(|r| r.join(key(id).as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_dedup_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
        let id = store.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(id, ContentId::of(b"hello"));
        assert_eq!(
            store.put_bytes(Bytes::from_static(b"hello")).await.unwrap(),
            id
        );
        assert_eq!(&store.get_bytes(&id).await.unwrap()[..], b"hello");

        let file = dir.path().join("big.bin");
        let content: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let (fid, size) = store.put_file(&file).await.unwrap();
        assert_eq!(size, content.len() as u64);
        assert_eq!(fid, ContentId::of(&content));
        let fetched = store.fetch(&fid, dir.path()).await.unwrap();
        assert_eq!(std::fs::read(&fetched.path).unwrap(), content);

        // Flip one byte of the stored blob: both read paths must refuse it and name both hashes.
        let blob = store.local_path(&id).unwrap();
        std::fs::write(&blob, b"hellO").unwrap();
        let err = store.get_bytes(&id).await.unwrap_err().to_string();
        assert!(
            err.contains(id.as_str()) && err.contains("tampered"),
            "{err}"
        );
        assert!(err.contains(ContentId::of(b"hellO").as_str()), "{err}");
        assert!(matches!(
            store.fetch(&id, dir.path()).await,
            Err(StoreError::Tampered { .. })
        ));
        std::fs::remove_file(&blob).unwrap();
        assert!(matches!(
            store.get_bytes(&id).await,
            Err(StoreError::Missing(_))
        ));
    }
}
