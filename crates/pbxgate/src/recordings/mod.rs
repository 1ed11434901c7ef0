//! `recapi` (spec §5): recordings listed and downloaded. [`Recordings::answer`]
//! serves both the new API (`action: "recapi"` on `/api`) and, later, the old
//! `GET /recapi`: it returns the HTTP answer on success and a [`Miss`]
//! otherwise, which each endpoint turns into its own error (a JSON status,
//! or an HTTP status for the old API).
//!
//! - [`resolve`]: the storage trait, the local file system behind it, and the
//!   name resolver (bare names found in `YYYY-MM` folders, symlink and
//!   special-file refusal);
//! - `s3` (feature `s3`): the same over an S3-compatible bucket;
//! - [`listing`]: the CSV listings; [`serve`]: one file over HTTP (ranges,
//!   validators, conditional requests); [`tar`]: several files as a streamed
//!   tar archive; [`check`]: `pbxgate recordings check`.

pub mod check;
pub mod listing;
pub mod resolve;
#[cfg(feature = "s3")]
pub mod s3;
pub mod serve;
pub mod tar;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use ucm::Status;
use ucm::recapi::{Listing, RecError, RecRequest, RelPath, parse_request};

use crate::config::{RecordingStore, RecordingsSettings};
use crate::error::{Error, Result};
use resolve::{FileMeta, LocalFs, Lookup, Storage};

/// Why a recapi request gets no data.
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    /// A malformed request (an empty list, several directories with names).
    #[error("{0}")]
    Invalid(RecError),
    /// A name that breaks the safety rules (traversal, encoding, NUL, ...).
    #[error("{0}")]
    Unsafe(RecError),
    #[error("unknown directory {0:?}")]
    UnknownDir(String),
    #[error("no such recording")]
    NotFound,
    /// Something is there that must not be served.
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error(transparent)]
    Failed(#[from] Error),
}

impl Miss {
    /// The status of the new API's JSON answer.
    pub fn status(&self) -> Status {
        match self {
            Miss::Invalid(_) => Status::InvalidParameters,
            Miss::Unsafe(_) => Status::SensitiveCharacters,
            Miss::UnknownDir(_) | Miss::NotFound => Status::NoSuchItem,
            Miss::Refused(_) => Status::NoPermission,
            Miss::Failed(e) => e.status(),
        }
    }

    /// The HTTP status of the old API's answer (404 when nothing matches, as
    /// the UCM guide says).
    pub fn http_status(&self) -> StatusCode {
        match self {
            Miss::Invalid(_) | Miss::Unsafe(_) => StatusCode::BAD_REQUEST,
            Miss::UnknownDir(_) | Miss::NotFound => StatusCode::NOT_FOUND,
            Miss::Refused(_) => StatusCode::FORBIDDEN,
            Miss::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The recapi directories and the storage they are in.
pub struct Recordings {
    storage: Arc<dyn Storage>,
    /// Name -> folder, sorted by name.
    dirs: Vec<(RelPath, String)>,
    tz: jiff::tz::TimeZone,
    /// `recordings.listing`: the shape of file listings unless a request's
    /// user has its own.
    listing: Listing,
}

impl Recordings {
    pub fn new(settings: &RecordingsSettings, tz: jiff::tz::TimeZone) -> Result<Recordings> {
        let storage: Arc<dyn Storage> = match &settings.store {
            RecordingStore::Local => Arc::new(LocalFs),
            #[cfg(feature = "s3")]
            RecordingStore::S3(s) => Arc::new(s3::S3::new(s)?),
            #[cfg(not(feature = "s3"))]
            RecordingStore::S3(_) => {
                return Err(Error::io(
                    "recordings.store = \"s3\"",
                    std::io::Error::other("this build has no S3 support"),
                ));
            }
        };
        Ok(Recordings::with_storage(storage, settings.dirs.clone(), tz)
            .with_listing(settings.listing))
    }

    pub fn with_storage(
        storage: Arc<dyn Storage>,
        dirs: Vec<(RelPath, String)>,
        tz: jiff::tz::TimeZone,
    ) -> Recordings {
        Recordings {
            storage,
            dirs,
            tz,
            listing: Listing::Month,
        }
    }

    /// The listing shape of requests whose user has none of its own.
    pub fn with_listing(mut self, listing: Listing) -> Recordings {
        self.listing = listing;
        self
    }

    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    /// The folder of directory `name`.
    pub fn folder(&self, name: &str) -> Option<&str> {
        self.dirs
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, f)| f.as_str())
    }

    /// Answers a request with its `filedir` and `filename` parameters and
    /// the HTTP request headers (ranges, conditional requests); `listing` is
    /// the API user's listing shape (`None`: `recordings.listing`). Every
    /// miss is logged with its reason.
    pub async fn answer(
        &self,
        filedir: Option<&str>,
        filename: Option<&str>,
        req: &HeaderMap,
        listing: Option<Listing>,
    ) -> Result<Response, Miss> {
        let listing = listing.unwrap_or(self.listing);
        let result = self.answer_inner(filedir, filename, req, listing).await;
        if let Err(miss) = &result {
            tracing::warn!(
                filedir = ?filedir.map(|s| s.chars().take(128).collect::<String>()),
                filename = ?filename.map(|s| s.chars().take(256).collect::<String>()),
                reason = %miss,
                status = miss.status().code(),
                "recapi request refused"
            );
        }
        result
    }

    async fn answer_inner(
        &self,
        filedir: Option<&str>,
        filename: Option<&str>,
        req: &HeaderMap,
        listing: Listing,
    ) -> Result<Response, Miss> {
        let started = std::time::SystemTime::now();
        let request = parse_request(filedir, filename).map_err(|e| match e {
            RecError::Name { .. } => Miss::Unsafe(e),
            _ => Miss::Invalid(e),
        })?;
        match request {
            RecRequest::Directories => Ok(listing::directories(self.dirs.iter().map(|(n, _)| n))),
            RecRequest::Files(names) => {
                let mut dirs = Vec::new();
                for n in &names {
                    match self.folder(n.as_str()) {
                        Some(f) => dirs.push((n.clone(), f.to_owned())),
                        None => {
                            tracing::warn!(filedir = %n, "recapi: unknown directory left out of the listing")
                        }
                    }
                }
                if dirs.is_empty() {
                    return Err(Miss::UnknownDir(names[0].to_string()));
                }
                Ok(listing::files(
                    self.storage.clone(),
                    dirs,
                    self.tz.clone(),
                    listing,
                ))
            }
            RecRequest::Fetch { dir, names } => {
                let folder = self
                    .folder(dir.as_str())
                    .ok_or_else(|| Miss::UnknownDir(dir.to_string()))?;
                let mut found: Vec<(String, FileMeta)> = Vec::new();
                let mut refused = None;
                let mut missing: Vec<&RelPath> = Vec::new();
                let mut refusals: Vec<String> = Vec::new();
                let lookups =
                    resolve::find_all(self.storage.as_ref(), folder, &names, &self.tz).await?;
                for (name, lookup) in names.iter().zip(lookups) {
                    match lookup {
                        Lookup::Found(f) => {
                            // a bare name and its path name the same file once
                            if !found.iter().any(|(_, g)| g.rel == f.rel) {
                                found.push((name.to_string(), f));
                            }
                        }
                        Lookup::Missing => missing.push(name),
                        Lookup::Refused(reason) => {
                            refusals.push(format!("{name} ({reason})"));
                            refused = Some(reason);
                        }
                    }
                }
                // One line each, however many names the request held.
                if !missing.is_empty() {
                    tracing::warn!(
                        filedir = %dir,
                        requested = names.len(),
                        missing = missing.len(),
                        first = %sample(missing.iter().map(|n| n.as_str())),
                        "recapi: recordings not found"
                    );
                }
                if !refusals.is_empty() {
                    tracing::warn!(
                        filedir = %dir,
                        requested = names.len(),
                        refused = refusals.len(),
                        first = %sample(refusals.iter().map(String::as_str)),
                        "recapi: recordings refused"
                    );
                }
                match found.len() {
                    0 => Err(refused.map_or(Miss::NotFound, Miss::Refused)),
                    1 => {
                        let (name, file) = found.remove(0);
                        Ok(self.one(&name, &file, req).await?)
                    }
                    _ => Ok(self.archive(found, started)),
                }
            }
        }
    }

    async fn one(&self, name: &str, file: &FileMeta, req: &HeaderMap) -> Result<Response> {
        let plan = serve::plan(req, file);
        if matches!(plan, serve::Plan::NotModified | serve::Plan::Unsatisfiable) {
            return Ok(serve::bodiless(&plan, file));
        }
        let body = self
            .storage
            .read(file, serve::bytes_of(&plan, file))
            .await?;
        Ok(serve::with_body(&plan, file, name, body))
    }

    /// Several files: `<request start, Unix seconds>.tar`, entries named as
    /// requested. Ranges and conditions do not apply to the generated archive.
    fn archive(&self, files: Vec<(String, FileMeta)>, started: std::time::SystemTime) -> Response {
        let stamp = started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let len = tar::archive_len(files.iter().map(|(n, f)| (n.as_str(), f.size)));
        let name = format!("{stamp}.tar");
        let mut resp = Response::new(Body::from_stream(tar::stream(self.storage.clone(), files)));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-tar"),
        );
        h.insert(header::CONTENT_DISPOSITION, serve::disposition(&name));
        if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
            h.insert(header::CONTENT_LENGTH, v);
        }
        resp
    }
}

/// The first few of a request's names for a log line.
fn sample<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 5;
    let mut out: Vec<&str> = Vec::with_capacity(SHOWN);
    let mut more = 0usize;
    for n in names {
        if out.len() < SHOWN {
            out.push(n);
        } else {
            more += 1;
        }
    }
    let mut s = out.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_miss_has_a_ucm_status_and_an_http_status() {
        let cases = [
            (Miss::Invalid(RecError::Empty("filename")), -1, 400),
            (
                Miss::Unsafe(RecError::Name {
                    param: "filename",
                    name: "..".into(),
                    error: ucm::recapi::NameError::Dot,
                }),
                -50,
                400,
            ),
            (Miss::UnknownDir("x".into()), -16, 404),
            (Miss::NotFound, -16, 404),
            (Miss::Refused("symlink"), -47, 403),
            (
                Miss::Failed(Error::io("x", std::io::Error::other("y"))),
                -9,
                500,
            ),
        ];
        for (miss, status, http) in cases {
            assert_eq!(miss.status().code(), status, "{miss}");
            assert_eq!(miss.http_status().as_u16(), http, "{miss}");
        }
    }
}
