//! Recordings in an S3-compatible bucket (cargo feature `s3`). A directory's
//! folder is a key prefix; a file is the object `<folder>/<relative path>`.
//! Buckets have no symlinks or special files, so the name rules of
//! [`ucm::recapi`] are all the safety needed: a key can only name an object
//! under the configured prefix. Reads are conditional on the ETag seen at
//! look-up, so a replaced object is never served under the old tag.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::body::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;
use ucm::recapi::RelPath;

use super::resolve::{ByteStream, FileId, FileMeta, LIST_DEPTH, Lookup, Storage, next};
use crate::config::S3Settings;
use crate::error::{Error, Result};

pub struct S3 {
    store: Arc<AmazonS3>,
}

fn failed(what: &str, e: object_store::Error) -> Error {
    Error::io(format!("S3 {what}"), io::Error::other(e.to_string()))
}

impl S3 {
    pub fn new(s: &S3Settings) -> Result<S3> {
        // AWS_* variables fill what the configuration leaves open (credentials
        // from the environment or the instance).
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region);
        if let Some(endpoint) = &s.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if !s.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&s.access_key_id)
                .with_secret_access_key(s.secret_access_key.expose());
        }
        let store = b.build().map_err(|e| failed("configuration", e))?;
        Ok(S3 {
            store: Arc::new(store),
        })
    }
}

fn key(folder: &str, rel: &str) -> Option<Key> {
    Key::parse(format!("{folder}/{rel}")).ok()
}

fn meta_of(rel: RelPath, m: ObjectMeta) -> FileMeta {
    let modified = SystemTime::from(m.last_modified);
    // S3 ETags are quoted already; an object without one gets a tag of its
    // size and time, which changes whenever the object is rewritten.
    let etag = match &m.e_tag {
        Some(t) if t.starts_with('"') => t.clone(),
        Some(t) => format!("\"{t}\""),
        None => format!(
            "\"{:x}-{:x}\"",
            m.size,
            m.last_modified.timestamp_nanos_opt().unwrap_or(0)
        ),
    };
    FileMeta {
        rel,
        size: m.size,
        modified,
        etag,
        id: FileId::Object {
            key: m.location.to_string(),
            e_tag: m.e_tag,
        },
    }
}

#[async_trait]
impl Storage for S3 {
    async fn stat(&self, folder: &str, rel: &RelPath) -> Result<Lookup> {
        let Some(k) = key(folder, rel.as_str()) else {
            return Ok(Lookup::Missing);
        };
        match self.store.head(&k).await {
            Ok(m) => Ok(Lookup::Found(meta_of(rel.clone(), m))),
            Err(object_store::Error::NotFound { .. }) => Ok(Lookup::Missing),
            Err(e) => Err(failed("look-up", e)),
        }
    }

    async fn subfolders(&self, folder: &str) -> Result<Vec<String>> {
        let Ok(prefix) = Key::parse(folder) else {
            return Ok(Vec::new());
        };
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| failed("listing", e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    async fn names_in(&self, folder: &str, sub: &str) -> Result<Vec<String>> {
        let at = if sub.is_empty() {
            folder.to_owned()
        } else {
            format!("{folder}/{sub}")
        };
        let Ok(prefix) = Key::parse(at) else {
            return Ok(Vec::new());
        };
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| failed("listing", e))?;
        Ok(listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    fn list(&self, folder: &str) -> mpsc::Receiver<Result<FileMeta>> {
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        let folder = folder.to_owned();
        tokio::spawn(async move {
            let Ok(prefix) = Key::parse(&folder) else {
                return;
            };
            let strip = format!("{prefix}/");
            let mut objects = store.list(Some(&prefix));
            while let Some(item) = next(&mut objects).await {
                let m = match item {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = tx.send(Err(failed("listing", e))).await;
                        return;
                    }
                };
                let location = m.location.to_string();
                let Some(relative) = location.strip_prefix(&strip) else {
                    continue;
                };
                // The same files a local folder would list.
                let Ok(rel) = RelPath::parse(relative) else {
                    continue;
                };
                if rel.components().count() > LIST_DEPTH + 1 {
                    continue;
                }
                if tx.send(Ok(meta_of(rel, m))).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    async fn read(&self, file: &FileMeta, range: Range<u64>) -> Result<ByteStream> {
        let (k, e_tag) = match &file.id {
            FileId::Object { key, e_tag } => (key.clone(), e_tag.clone()),
            FileId::Local { .. } => {
                return Err(Error::io(
                    "recording read",
                    io::Error::other("not an S3 object"),
                ));
            }
        };
        if range.is_empty() {
            return Ok(Box::pin(Empty));
        }
        let k = Key::parse(k).map_err(|e| failed("key", e.into()))?;
        let options = GetOptions {
            if_match: e_tag,
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&k, options)
            .await
            .map_err(|e| failed("read", e))?;
        Ok(Box::pin(IoErrors(got.into_stream())))
    }
}

struct Empty;

impl futures_core::Stream for Empty {
    type Item = io::Result<Bytes>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(None)
    }
}

/// object_store's byte stream with its errors as `io::Error`.
struct IoErrors(Pin<Box<dyn futures_core::Stream<Item = object_store::Result<Bytes>> + Send>>);

impl futures_core::Stream for IoErrors {
    type Item = io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|o| o.map(|r| r.map_err(|e| io::Error::other(e.to_string()))))
    }
}
