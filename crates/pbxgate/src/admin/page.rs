//! The page layout of the admin interface (navigation, security headers), the
//! session extractors of its pages and JSON endpoints, and the common answers.
//!
//! Pages are rendered on the server; the scripts that make some of them live
//! are files of `assets/admin/` served from the binary (no CDN, no inline
//! script: the Content-Security-Policy allows scripts from `/admin/assets/` only).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use store::AdminSession;

use super::login::{current_session, tokens_match};
use crate::admin::App;

/// The header JSON endpoints read the CSRF token from (the page carries it
/// in `<meta name="csrf">`).
pub const CSRF_HEADER: &str = "x-csrf-token";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages of the navigation bar: key, title, path.
pub const NAV: &[(&str, &str, &str)] = &[
    ("status", "Status", "/admin/status"),
    ("api", "API Configuration", "/admin/api-config"),
    ("cdr", "CDR", "/admin/cdr"),
    ("live", "Live calls", "/admin/live"),
];

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page of the admin interface.
pub struct Page<'a> {
    title: &'a str,
    status: StatusCode,
    session: Option<&'a AdminSession>,
    active: &'a str,
    scripts: &'a [&'a str],
}

impl<'a> Page<'a> {
    pub fn new(title: &'a str) -> Self {
        Page {
            title,
            status: StatusCode::OK,
            session: None,
            active: "",
            scripts: &[],
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Logged in: the navigation bar (with `active` marked), the logout
    /// button and the CSRF token for scripts.
    pub fn session(mut self, session: &'a AdminSession, active: &'a str) -> Self {
        self.session = Some(session);
        self.active = active;
        self
    }

    /// Scripts of `/admin/assets/` the page loads (deferred).
    pub fn scripts(mut self, scripts: &'a [&'a str]) -> Self {
        self.scripts = scripts;
        self
    }

    pub fn render(self, body: &str) -> Response {
        let mut head_extra = String::new();
        let mut nav = String::new();
        let mut user = String::new();
        if let Some(s) = self.session {
            head_extra.push_str(&format!(
                "<meta name=\"csrf\" content=\"{}\">",
                escape(&s.csrf)
            ));
            nav.push_str("<nav>");
            for (key, title, path) in NAV {
                let current = if *key == self.active {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                nav.push_str(&format!("<a href=\"{path}\"{current}>{title}</a>"));
            }
            nav.push_str("</nav>");
            user = format!(
                "<form method=\"post\" action=\"/admin/logout\" class=\"logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <span>{}</span> <button type=\"submit\">Log out</button></form>",
                escape(&s.csrf),
                escape(&s.username)
            );
        }
        for script in self.scripts {
            head_extra.push_str(&format!(
                "<script src=\"/admin/assets/{}\" defer></script>",
                escape(script)
            ));
        }
        let html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · pbxgate</title><link rel=\"stylesheet\" href=\"/admin/assets/admin.css\"><link rel=\"icon\" href=\"/admin/assets/favicon.svg\">{head_extra}</head>\
             <body><header><h1>pbxgate admin</h1>{nav}{user}</header><main>{body}</main></body></html>\n",
            title = escape(self.title)
        );
        let mut resp = (self.status, html).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        secure_headers(&mut resp);
        resp
    }
}

/// Headers every admin answer carries.
pub fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

pub fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn forbidden() -> Response {
    Page::new("Forbidden").status(StatusCode::FORBIDDEN).render(
        "<h2>Forbidden</h2><p>The form was not accepted (missing or wrong security token). \
         <a href=\"/admin/login\">Reload the page</a> and try again.</p>",
    )
}

pub fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin page failed");
    Page::new("Error")
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .render("<h2>Internal error</h2><p>See the pbxgate log.</p>")
}

/// A JSON answer of an admin endpoint: `{"error": message}` for failures.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    secure_headers(&mut resp);
    resp
}

pub fn json(value: serde_json::Value) -> Response {
    let mut resp = axum::Json(value).into_response();
    secure_headers(&mut resp);
    resp
}

fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
}

/// A logged-in admin on a page: without a valid session the request is
/// redirected to the login page.
pub struct Admin {
    pub session: AdminSession,
    pub ip: IpAddr,
}

impl FromRequestParts<App> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let Some(ip) = peer_ip(parts) else {
            return Err(internal(&"no peer address"));
        };
        match current_session(app, &parts.headers, ip).await {
            Ok(Some(session)) => Ok(Admin { session, ip }),
            Ok(None) => Err(redirect("/admin/login")),
            Err(e) => Err(internal(&e)),
        }
    }
}

/// A logged-in admin on a JSON endpoint: 401 without a session; requests
/// other than GET/HEAD must carry the session's CSRF token in `X-CSRF-Token`
/// (403 otherwise).
pub struct AdminApi {
    pub session: AdminSession,
    pub ip: IpAddr,
}

impl FromRequestParts<App> for AdminApi {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let Some(ip) = peer_ip(parts) else {
            return Err(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no peer address",
            ));
        };
        let session = match current_session(app, &parts.headers, ip).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(json_error(
                    StatusCode::UNAUTHORIZED,
                    "not logged in (or the session expired)",
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "admin endpoint failed");
                return Err(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error, see the pbxgate log",
                ));
            }
        };
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !tokens_match(&session.csrf, sent) {
                tracing::warn!(%ip, user = %session.username, "admin request refused: missing or wrong CSRF token");
                return Err(json_error(
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token: reload the page",
                ));
            }
        }
        Ok(AdminApi { session, ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
