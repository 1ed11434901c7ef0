//! The interface's stylesheet and scripts, compiled into the binary
//! (`crates/pbxgate/assets/admin/`), served with an ETag.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Name, content type, content.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/admin/favicon.svg"),
    ),
    (
        "admin.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/admin/admin.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/admin/common.js"),
    ),
    (
        "apiconfig.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/admin/apiconfig.js"),
    ),
    (
        "cdr.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/admin/cdr.js"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/admin/live.js"),
    ),
    (
        "status.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/admin/status.js"),
    ),
];

/// A strong validator: the build's version and the content's length and
/// FNV-1a hash (assets change only with the binary).
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "\"{}-{:x}-{h:016x}\"",
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
}

pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, ctype, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let tag = etag(body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, *body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_name_and_a_content_type() {
        let mut names: Vec<&str> = ASSETS.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert!(
            ASSETS
                .iter()
                .all(|(_, c, b)| c.contains('/') && !b.is_empty())
        );
        assert_ne!(etag(b"a"), etag(b"b"));
    }
}
