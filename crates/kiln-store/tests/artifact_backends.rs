//! The artifact store behaves the same in a local folder and in an S3 bucket.
//!
//! The folder always runs. S3 runs against a real S3-compatible server when
//! `KILN_TEST_S3_ENDPOINT` names one (`.ci/run` starts SeaweedFS with `.ci/seaweedfs.sh` and sets
//! it, with `KILN_TEST_S3_BUCKET`, `KILN_TEST_S3_ACCESS_KEY_ID` and
//! `KILN_TEST_S3_SECRET_ACCESS_KEY`); under CI a missing server is a failure, not a skip.

use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiln_core::id::ContentId;
use kiln_store::testing::{S3Server, unique};
use kiln_store::{ArtifactStore, S3Options, StoreError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Larger than the 8 MiB upload chunk, so a file goes up in three parts.
const BIG: usize = (8 << 20) * 2 + 123;

fn blob_key(id: &ContentId) -> Path {
    Path::from(format!("blobs/{}/{}", &id.as_str()[..2], id.as_str()))
}

/// The files `fetch` left in `scratch`.
fn leftovers(scratch: &FsPath) -> Vec<String> {
    match std::fs::read_dir(scratch) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The same scenario on every backend: round trip, dedup, a multipart upload read back
/// verified, tampered and missing blobs refused. `raw` writes and deletes under the store's
/// root behind Kiln's back.
async fn exercise(store: &ArtifactStore, raw: &dyn ObjectStore, scratch: &FsPath) {
    let id = store.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(id, ContentId::of(b"hello"));
    assert!(store.exists(&id).await.unwrap());
    let stored = raw.head(&blob_key(&id)).await.unwrap();
    assert_eq!(stored.size, 5, "the blob is under blobs/<2 hex>/<id>");
    assert_eq!(
        store.put_bytes(Bytes::from_static(b"hello")).await.unwrap(),
        id
    );
    assert_eq!(
        raw.head(&blob_key(&id)).await.unwrap().last_modified,
        stored.last_modified,
        "storing the same bytes again does not rewrite the blob"
    );
    assert_eq!(&store.get_bytes(&id).await.unwrap()[..], b"hello");

    // A file larger than the upload chunk: uploaded in parts, read back whole and verified.
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    let content: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let (fid, size) = store.put_file(&file).await.unwrap();
    assert_eq!((fid.clone(), size), (ContentId::of(&content), BIG as u64));
    assert_eq!(raw.head(&blob_key(&fid)).await.unwrap().size, BIG as u64);
    let fetched = store.fetch(&fid, scratch).await.unwrap();
    assert_eq!(fetched.size, BIG as u64);
    assert!(std::fs::read(&fetched.path).unwrap() == content);
    drop(fetched);
    assert!(store.get_bytes(&fid).await.unwrap() == content);
    assert_eq!(store.put_file(&file).await.unwrap().0, fid);

    // A scratch file Kiln wrote: stored and gone afterwards.
    let owned = src.path().join("owned.bin");
    std::fs::write(&owned, b"scratch output").unwrap();
    let (oid, _) = store
        .put_file_owned(tempfile::TempPath::try_from_path(&owned).unwrap())
        .await
        .unwrap();
    assert!(!owned.exists());
    assert_eq!(&store.get_bytes(&oid).await.unwrap()[..], b"scratch output");

    // Other bytes under the same key: both read paths refuse them and name both hashes.
    raw.put(&blob_key(&id), PutPayload::from_static(b"hellO"))
        .await
        .unwrap();
    let err = store.get_bytes(&id).await.unwrap_err();
    assert!(matches!(err, StoreError::Tampered { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(id.as_str()) && msg.contains("tampered"),
        "{msg}"
    );
    assert!(msg.contains(ContentId::of(b"hellO").as_str()), "{msg}");
    assert!(matches!(
        store.fetch(&id, scratch).await,
        Err(StoreError::Tampered { .. })
    ));
    // A truncated large blob too.
    raw.put(
        &blob_key(&fid),
        PutPayload::from(Bytes::copy_from_slice(&content[..BIG / 2])),
    )
    .await
    .unwrap();
    assert!(matches!(
        store.fetch(&fid, scratch).await,
        Err(StoreError::Tampered { .. })
    ));
    assert!(
        leftovers(scratch).is_empty(),
        "a refused download is deleted: {:?}",
        leftovers(scratch)
    );

    // A deleted blob is missing, on every read path.
    raw.delete(&blob_key(&id)).await.unwrap();
    assert!(!store.exists(&id).await.unwrap());
    assert!(matches!(
        store.get_bytes(&id).await,
        Err(StoreError::Missing(_))
    ));
    let err = store.fetch(&id, scratch).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing(_)), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::open(root.to_str().unwrap()).await.unwrap();
    let raw = object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap();
    exercise(&store, &raw, &dir.path().join("tmp")).await;
}

#[tokio::test]
async fn s3_bucket() {
    let Some(s3) = S3Server::or_skip() else {
        return;
    };
    let prefix = unique("artifacts");
    let url = format!("s3://{}/{prefix}", s3.bucket);
    let store = ArtifactStore::open_with(&url, &s3.options()).await.unwrap();
    assert!(store.local_path(&ContentId::of(b"x")).is_none());
    let scratch = tempfile::tempdir().unwrap();
    let raw = s3.raw(&prefix);
    exercise(&store, raw.as_ref(), scratch.path()).await;

    // The large file went up as a multipart upload: S3 gives such an object an ETag with
    // "-<parts>" (the file is three chunks).
    let content: Vec<u8> = (0..BIG).map(|i| (i * 13 % 251) as u8).collect();
    let file = scratch.path().join("again.bin");
    std::fs::write(&file, &content).unwrap();
    let (id, _) = store.put_file(&file).await.unwrap();
    let etag = raw.head(&blob_key(&id)).await.unwrap().e_tag.unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag}");

    // Everything stayed under the prefix; a store at the bucket root sees it there.
    let root = ArtifactStore::open_with(&format!("s3://{}", s3.bucket), &s3.options())
        .await
        .unwrap();
    assert!(!root.exists(&id).await.unwrap());
    assert!(
        s3.raw(&format!("{prefix}/blobs"))
            .head(&Path::from(format!(
                "{}/{}",
                &id.as_str()[..2],
                id.as_str()
            )))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn s3_misconfiguration_fails_at_open_with_one_clear_message() {
    let Some(s3) = S3Server::or_skip() else {
        return;
    };
    let url = format!("s3://{}/{}", s3.bucket, unique("errors"));

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let err = ArtifactStore::open_with(
        &url,
        &S3Options {
            endpoint: Some(closed.clone()),
            ..s3.options()
        },
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::S3Unreachable { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("cannot reach the S3 endpoint {closed}")) && msg.contains(&url),
        "{msg}"
    );

    // A wrong secret, then an unknown key.
    for (key, secret) in [
        (s3.access_key_id.clone(), "not-the-secret".to_owned()),
        ("no-such-key".to_owned(), s3.secret_access_key.clone()),
    ] {
        let err = ArtifactStore::open_with(
            &url,
            &S3Options {
                access_key_id: Some(key),
                secret_access_key: Some(secret),
                ..s3.options()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::S3Credentials { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("refused the credentials")
                && msg.contains("AWS_ACCESS_KEY_ID")
                && msg.contains("AWS_SECRET_ACCESS_KEY")
                && msg.contains(&s3.endpoint),
            "{msg}"
        );
    }

    // A bucket that does not exist.
    let missing = unique("no-such-bucket");
    let err = ArtifactStore::open_with(&format!("s3://{missing}/x"), &s3.options())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::S3NoBucket { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("the bucket `{missing}` does not exist")) && msg.contains("create"),
        "{msg}"
    );

    // Plain HTTP only when allowed.
    let err = ArtifactStore::open_with(
        &url,
        &S3Options {
            allow_http: Some(false),
            ..s3.options()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::S3Config { .. }) && err.to_string().contains("AWS_ALLOW_HTTP"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_artifact_urls_are_refused_before_any_request() {
    for (url, needle) in [
        ("gs://bucket/x", "s3://BUCKET/PREFIX"),
        ("s3://", "no bucket name"),
        ("s3:///prefix", "no bucket name"),
        ("s3://Upper_Case/x", "bucket name"),
        ("s3://bucket/a/../b", "bad prefix"),
    ] {
        let err = ArtifactStore::open(url).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{url}: {err}");
    }
}
