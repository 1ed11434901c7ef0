//! The API Configuration page (`/admin/api-config`): the UCM manual's two
//! tables, *HTTPS API Settings (New)* (per API user) and *HTTPS API Settings
//! (Old)*. Plain HTML forms (they work without JavaScript); every value is
//! checked on the server by the configuration's own rules and errors are shown
//! beside their field. Saves apply at once (see `crate::apiconfig`) and are
//! audited. Keys set in the configuration file are shown read-only.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::login::tokens_match;
use super::page::{Admin, Page, escape, forbidden, redirect};
use crate::admin::App;
use crate::apiconfig::{
    FieldErrors, OldOverlay, OverlayReceiver, OverlayUser, OverlayWsUser, TlsChoice,
};

mod cdr;

/// PEM files above this are refused (as the configuration's TLS files).
const MAX_PEM_BYTES: usize = 2 * 1024 * 1024;
/// Any other form field.
const MAX_FIELD_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/api-config", get(show))
        .route("/admin/api-config/new", post(save_enable))
        .route("/admin/api-config/user", post(save_user))
        .route("/admin/api-config/user/remove", post(remove_user))
        .route("/admin/api-config/ws-user", post(save_ws_user))
        .route("/admin/api-config/ws-user/remove", post(remove_ws_user))
        .route("/admin/api-config/cdr-output", post(cdr::save_enable))
        .route("/admin/api-config/cdr-receiver", post(cdr::save_receiver))
        .route(
            "/admin/api-config/cdr-receiver/remove",
            post(cdr::remove_receiver),
        )
        .route(
            "/admin/api-config/old",
            post(save_old).layer(DefaultBodyLimit::max(2 * MAX_PEM_BYTES + 256 * 1024)),
        )
}

// ---------------------------------------------------------------- rendering

/// Which form a failed save came from, with what was typed (never passwords).
enum Failed {
    None,
    Enable(FieldErrors),
    User {
        index: Option<usize>,
        errors: FieldErrors,
        typed: OverlayUser,
    },
    Old {
        errors: FieldErrors,
        typed: HashMap<String, String>,
    },
    WsUser {
        index: Option<usize>,
        errors: FieldErrors,
        typed: OverlayWsUser,
    },
    CdrEnable(FieldErrors),
    Receiver {
        index: Option<usize>,
        errors: FieldErrors,
        typed: OverlayReceiver,
    },
}

#[derive(Deserialize, Default)]
struct Shown {
    #[serde(default)]
    saved: String,
}

async fn show(State(app): State<App>, admin: Admin, Query(q): Query<Shown>) -> Response {
    let notice = match q.saved.as_str() {
        "new" => Some("HTTPS API (New) saved and in force."),
        "user" => Some("API user saved and in force."),
        "removed" => Some("API user removed; its sessions ended."),
        "old" => Some("HTTPS API (Old) saved and in force."),
        "ws-user" => Some("Websocket user saved and in force."),
        "ws-removed" => Some("Websocket user removed; its open sockets are closed."),
        "cdr-output" => Some("CDR Real-Time Output saved and in force."),
        "cdr-receiver" => Some("CDR output receiver saved and in force."),
        "cdr-removed" => {
            Some("CDR output receiver removed; what was queued for it stays in the outbox.")
        }
        _ => None,
    };
    render(&app, &admin, StatusCode::OK, notice, Failed::None).await
}

fn field_error(errors: &FieldErrors, field: &str) -> String {
    errors.0.get(field).map_or(String::new(), |m| {
        format!(
            "<span class=\"field-error\" role=\"alert\" data-field=\"{}\">{}</span>",
            escape(field),
            escape(m)
        )
    })
}

fn form_error(errors: &FieldErrors) -> String {
    errors.0.get("").map_or(String::new(), |m| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m))
    })
}

fn help(text: &str) -> String {
    format!("<p class=\"help\">{text}</p>")
}

fn fixed_note(key: &str) -> String {
    format!(
        "<p class=\"fixed\">Set in the configuration file (<code>{}</code>): read-only here.</p>",
        escape(key)
    )
}

/// The forms of a list the page edits: a form per item (the refused one
/// with its errors and what was typed), the error of a refused form whose
/// item no longer exists on top, and the form that adds one. `failed`: the
/// refused form of this list, if it is this list's; `form(index, saved,
/// typed, errors)` renders one.
fn item_forms<T: Clone + Default>(
    items: &[T],
    failed: Option<(Option<usize>, &FieldErrors, &T)>,
    mut form: impl FnMut(Option<usize>, &T, &T, &FieldErrors) -> String,
) -> String {
    let mut out = String::new();
    if let Some((Some(i), errors, _)) = failed
        && i >= items.len()
    {
        out.push_str(&form_error(errors));
    }
    let none = FieldErrors::default();
    for (i, item) in items.iter().enumerate() {
        let (errors, typed) = match failed {
            Some((Some(j), errors, typed)) if j == i => (errors, typed),
            _ => (&none, item),
        };
        out.push_str(&form(Some(i), item, typed, errors));
    }
    let blank = T::default();
    let (errors, typed) = match failed {
        Some((None, errors, typed)) => (errors, typed),
        _ => (&none, &blank),
    };
    out.push_str(&form(None, &blank, typed, errors));
    out
}

fn checked(on: bool) -> &'static str {
    if on { " checked" } else { "" }
}

fn csrf_field(admin: &Admin) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&admin.session.csrf)
    )
}

const HELP_NEW_ENABLE: &str = "Serves the HTTPS API (<code>/api</code>, and <code>/websockify</code> to \
    API users). When off, every request is answered with status -47 (no permission); the websocket users \
    below can still log in to <code>/websockify</code>.";
const HELP_USERNAME: &str =
    "The name the client logs in with: letters, digits, '_' and '-', at most 64 characters.";
const HELP_PASSWORD: &str = "The client proves it through the MD5 challenge, never in clear. \
    At least 8 characters. Leave empty to keep the current password.";
const HELP_NEW_PASSWORD: &str =
    "The client proves it through the MD5 challenge, never in clear. At least 8 characters.";
const HELP_CALL_CONTROL: &str = "Lets this user accept or refuse inbound calls \
    (<code>acceptCall</code> / <code>refuseCall</code>). While any user has it, every inbound call \
    waits for a decision and is accepted when none comes in time.";
const HELP_PERMISSIONS: &str = "Actions this user may call besides the default (what the UCM's API \
    user has: everything but <code>listRingGroup</code>, <code>listDigitalTrunk</code> and clear-text \
    <code>secrets</code>), and actions taken away: action names or the groups <code>cdr</code>, \
    <code>recording</code>, <code>pms</code>, <code>call</code>, <code>directory</code>, \
    <code>secrets</code>, <code>all</code>, comma-separated. Others get status -47.";
const HELP_NEW_IPS: &str = "Addresses this user may log in from, one per line, as \
    <code>IP/netmask</code> (e.g. <code>192.168.1.0/255.255.255.0</code>) or <code>IP/prefix</code>. \
    Empty: every address. A change applies to the next request, even of a logged-in client.";
const HELP_LISTING: &str = "The shape of <code>recapi</code> file listings for this user: \
    <b>month</b> lists <code>2024-05/auto-1717093784-1001-2100.wav</code> (UCM630x, as a CDR's \
    <code>recordfiles</code>), <b>flat</b> lists <code>auto-1717093784-1001-2100.wav</code> (UCM62xx, \
    for clients that split names on <code>-</code>). Default: <code>recordings.listing</code> of the file.";
const HELP_WS_USERS: &str = "Accounts that may open the event websocket (<code>/websockify</code>) \
    and nothing else: on a UCM this is a web-interface user, and clients are configured with such a name. \
    API users may log in there too (while the HTTPS API is enabled); websocket users may whatever the \
    <em>Enable</em> switch above. A name must differ from every API user's.";
const HELP_WS_IPS: &str = "Addresses this user may log in from, one per line, as \
    <code>IP/netmask</code> or <code>IP/prefix</code>. Empty: every address. A change closes open sockets \
    from an address no longer permitted within a second.";
const HELP_WS_PASSWORD: &str = "The client proves it through the MD5 challenge, never in clear. \
    At least 8 characters. Leave empty to keep the current password; a new one closes the user's open sockets.";

fn help_ws_events() -> String {
    format!(
        "The event names this user may subscribe to, comma-separated; empty: all of them ({}). \
         A <code>subscribe</code> naming any other is refused with status -47, and no other event is ever sent.",
        crate::live::EVENT_NAMES
            .iter()
            .map(|n| format!("<code>{n}</code>"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

const HELP_OLD_ENABLE: &str = "Serves the old API (<code>GET /cdrapi</code>, <code>/recapi</code>, \
    <code>/pmsapi</code>) on a TLS port of its own. Off by default.";
const HELP_BIND: &str = "The address and port the old API listens on: <code>IP:port</code>, IPv6 as \
    <code>[address]:port</code>; without a port, 8443. It must not collide with the web port.";
const HELP_TLS: &str = "PEM files, at most 2 MB each; the private key must belong to the \
    certificate and the certificate must be valid now. Without them pbxgate uses a self-signed \
    certificate it generates.";
const HELP_OLD_USER: &str = "Checked with HTTP Digest authentication (or Basic) on every request.";
const HELP_OLD_PASSWORD: &str = "At least 2 characters, without spaces or ';'. \
    Leave empty to keep the current password.";
const HELP_OLD_IPS: &str = "Addresses allowed to use the old API, one per line \
    (<code>IP/netmask</code> or <code>IP/prefix</code>). Empty: nobody, as on the UCM.";
const HELP_PMSAPI: &str = "Also serves <code>/pmsapi</code> (hotel functions) on this listener.";

async fn render(
    app: &App,
    admin: &Admin,
    status: StatusCode,
    notice: Option<&str>,
    failed: Failed,
) -> Response {
    let api = &app.api;
    let keys = api.file_keys();
    let in_force = api.new_api();
    let csrf = csrf_field(admin);
    let mut body = String::from("<h2>API Configuration</h2>");
    if let Some(n) = notice {
        body.push_str(&format!(
            "<p class=\"success\" role=\"status\">{}</p>",
            escape(n)
        ));
    }

    // ------------------------------------------------ HTTPS API Settings (New)
    body.push_str("<h3 id=\"new\">HTTPS API Settings (New)</h3>");
    let enable_errors = match &failed {
        Failed::Enable(e) => e.clone(),
        _ => FieldErrors::default(),
    };
    let enable_fixed = api.enable_fixed();
    body.push_str(&format!(
        "<form method=\"post\" action=\"/admin/api-config/new\" id=\"new-enable\">{csrf}{form_error}\
         <label class=\"checkbox\"><input type=\"checkbox\" name=\"enable\" id=\"new-enable-box\"{on}{dis}> Enable</label>\
         {help}{fixed}{err}{button}</form>",
        form_error = form_error(&enable_errors),
        on = checked(in_force.enabled),
        dis = if enable_fixed { " disabled" } else { "" },
        help = help(HELP_NEW_ENABLE),
        fixed = if enable_fixed { fixed_note("https_api.enable") } else { String::new() },
        err = field_error(&enable_errors, "enable"),
        button = if enable_fixed { "" } else { "<button type=\"submit\">Save</button>" },
    ));

    for u in api.fixed_users() {
        body.push_str(&format!(
            "<fieldset class=\"user fixed-user\" data-user=\"{name}\"><legend>API user {name}</legend>\
             {fixed}<table><tr><th>Username</th><td>{name}</td></tr>\
             <tr><th>Password</th><td>{pw}</td></tr>\
             <tr><th>Call Control</th><td>{cc}</td></tr>\
             <tr><th>Permitted IP(s)</th><td>{ips}</td></tr>\
             <tr><th>Permissions</th><td>{perm}</td></tr>\
             <tr><th>Recording listing</th><td>{listing}</td></tr></table></fieldset>",
            name = escape(&u.username),
            fixed = fixed_note("https_api"),
            pw = if u.password.is_empty() { "not set (logins refused)" } else { "set" },
            cc = if u.call_control { "on" } else { "off" },
            ips = if u.permitted_ips_text.is_empty() {
                "any address".to_owned()
            } else {
                escape(&u.permitted_ips_text.join(", "))
            },
            perm = if u.permissions == crate::permissions::Permissions::default() {
                "the default".to_owned()
            } else {
                "set in the file (allow / deny)".to_owned()
            },
            listing = u
                .recordings_listing
                .map_or("the default (recordings.listing)", |l| l.as_str()),
        ));
    }
    let (users, _) = api.page_users().await;
    let refusal = match &failed {
        Failed::User {
            index,
            errors,
            typed,
        } => Some((*index, errors, typed)),
        _ => None,
    };
    body.push_str(&item_forms(&users, refusal, |i, saved, typed, errors| {
        user_form(&csrf, i, &saved.username, typed, errors)
    }));

    // ------------------------------------------------ websocket users
    body.push_str(&ws_section(app, &csrf, &failed).await);

    // ------------------------------------------------ HTTPS API Settings (Old)
    body.push_str(&old_form(app, &csrf, &keys, &failed).await);

    // ------------------------------------------------ CDR Real-Time Output
    body.push_str(&cdr::section(app, &csrf, &failed).await);

    Page::new("API Configuration")
        .status(status)
        .session(&admin.session, "api")
        .render(&body)
}

/// What the API-user and websocket-user forms differ in.
struct UserKind {
    /// Prefix of element ids and the `data-` attribute naming the user.
    id: &'static str,
    data: &'static str,
    /// The legend of a user's form, before the name.
    title: &'static str,
    /// The legend and button of the form that adds one.
    add_legend: &'static str,
    add_button: &'static str,
    /// "Remove {remove} {name}".
    remove: &'static str,
    /// Where the form posts (and `…/remove`).
    path: &'static str,
    class: &'static str,
    edit_password_help: &'static str,
    ips_help: &'static str,
}

const API_USER: UserKind = UserKind {
    id: "user",
    data: "data-user",
    title: "API user",
    add_legend: "Add an API user",
    add_button: "Add user",
    remove: "user",
    path: "/admin/api-config/user",
    class: "user",
    edit_password_help: HELP_PASSWORD,
    ips_help: HELP_NEW_IPS,
};

const WS_USER: UserKind = UserKind {
    id: "ws-user",
    data: "data-ws-user",
    title: "Websocket user",
    add_legend: "Add a websocket user",
    add_button: "Add websocket user",
    remove: "websocket user",
    path: "/admin/api-config/ws-user",
    class: "user ws-user",
    edit_password_help: HELP_WS_PASSWORD,
    ips_help: HELP_WS_IPS,
};

/// The form of one user (`index`) or of a new one: the frame, the name,
/// password and permitted-IP fields both kinds have, then `fields(id)`.
#[allow(clippy::too_many_arguments)]
fn user_fieldset(
    kind: &UserKind,
    csrf: &str,
    index: Option<usize>,
    current_name: &str,
    username: &str,
    permitted_ips: &[String],
    errors: &FieldErrors,
    fields: impl Fn(&str) -> String,
) -> String {
    let (id, legend, button) = match index {
        Some(i) => (
            format!("{}-{i}", kind.id),
            format!("{} {}", kind.title, escape(current_name)),
            "Save",
        ),
        None => (
            format!("{}-add", kind.id),
            kind.add_legend.to_owned(),
            kind.add_button,
        ),
    };
    let index_field = index.map_or(String::new(), |i| {
        format!("<input type=\"hidden\" name=\"index\" value=\"{i}\">")
    });
    let remove = index.map_or(String::new(), |i| {
        format!(
            "<form method=\"post\" action=\"{path}/remove\" class=\"remove\">{csrf}\
             <input type=\"hidden\" name=\"index\" value=\"{i}\">\
             <input type=\"hidden\" name=\"username\" value=\"{name}\">\
             <button type=\"submit\" class=\"danger\">Remove {what} {name}</button></form>",
            path = kind.path,
            what = kind.remove,
            name = escape(current_name)
        )
    });
    format!(
        "<fieldset class=\"{class}\" id=\"{id}\" {data_attr}=\"{data}\"><legend>{legend}</legend>\
         <form method=\"post\" action=\"{path}\">{csrf}{index_field}{form_error}\
         <div class=\"grid\"><div><label for=\"{id}-username\">Username</label>\
         <input type=\"text\" id=\"{id}-username\" name=\"username\" value=\"{name}\" autocomplete=\"off\">\
         {help_user}{err_user}</div>\
         <div><label for=\"{id}-password\">Password</label>\
         <input type=\"password\" id=\"{id}-password\" name=\"password\" autocomplete=\"new-password\">\
         {help_pw}{err_pw}</div></div>\
         <label for=\"{id}-ips\">Permitted IP(s)</label>\
         <textarea id=\"{id}-ips\" name=\"permitted_ips\" rows=\"3\">{ips}</textarea>{help_ips}{err_ips}\
         {fields}<button type=\"submit\">{button}</button></form>{remove}</fieldset>",
        class = kind.class,
        data_attr = kind.data,
        path = kind.path,
        data = escape(current_name),
        form_error = form_error(errors),
        name = escape(username),
        help_user = help(HELP_USERNAME),
        err_user = field_error(errors, "username"),
        help_pw = help(if index.is_some() {
            kind.edit_password_help
        } else {
            HELP_NEW_PASSWORD
        }),
        err_pw = field_error(errors, "password"),
        ips = escape(&permitted_ips.join("\n")),
        help_ips = help(kind.ips_help),
        err_ips = field_error(errors, "permitted_ips"),
        fields = fields(&id),
    )
}

fn user_form(
    csrf: &str,
    index: Option<usize>,
    current_name: &str,
    typed: &OverlayUser,
    errors: &FieldErrors,
) -> String {
    let fields = |id: &str| {
        format!(
            "<label class=\"checkbox\"><input type=\"checkbox\" name=\"call_control\" id=\"{id}-call-control\"{cc}> Call Control</label>\
             {help_cc}{err_cc}\
             <div class=\"grid\"><div><label for=\"{id}-allow\">Also allow</label>\
             <input type=\"text\" id=\"{id}-allow\" name=\"allow\" value=\"{allow}\">{err_allow}</div>\
             <div><label for=\"{id}-deny\">Deny</label>\
             <input type=\"text\" id=\"{id}-deny\" name=\"deny\" value=\"{deny}\">{err_deny}</div></div>{help_perm}\
             <label for=\"{id}-listing\">Recording listing</label>\
             <select id=\"{id}-listing\" name=\"recordings_listing\">{listing}</select>{help_listing}{err_listing}",
            cc = checked(typed.call_control),
            help_cc = help(HELP_CALL_CONTROL),
            err_cc = field_error(errors, "call_control"),
            allow = escape(&typed.allow.join(", ")),
            err_allow = field_error(errors, "allow"),
            deny = escape(&typed.deny.join(", ")),
            err_deny = field_error(errors, "deny"),
            help_perm = help(HELP_PERMISSIONS),
            listing = [
                ("", "default (recordings.listing)"),
                ("month", "month: 2024-05/auto-….wav (UCM630x)"),
                ("flat", "flat: auto-….wav (UCM62xx)"),
            ]
            .iter()
            .map(|(v, label)| format!(
                "<option value=\"{v}\"{sel}>{label}</option>",
                sel = if typed.recordings_listing == *v {
                    " selected"
                } else {
                    ""
                }
            ))
            .collect::<String>(),
            help_listing = help(HELP_LISTING),
            err_listing = field_error(errors, "recordings_listing"),
        )
    };
    user_fieldset(
        &API_USER,
        csrf,
        index,
        current_name,
        &typed.username,
        &typed.permitted_ips,
        errors,
        fields,
    )
}

async fn ws_section(app: &App, csrf: &str, failed: &Failed) -> String {
    let mut out = format!(
        "<h3 id=\"ws\">Websocket users (/websockify)</h3>{}",
        help(HELP_WS_USERS)
    );
    let events = |e: &[&str]| {
        if e.is_empty() {
            "all".to_owned()
        } else {
            escape(&e.join(", "))
        }
    };
    for u in app.api.fixed_ws_users() {
        out.push_str(&format!(
            "<fieldset class=\"user fixed-user ws-user\" data-ws-user=\"{name}\"><legend>Websocket user {name}</legend>\
             {fixed}<table><tr><th>Username</th><td>{name}</td></tr>\
             <tr><th>Password</th><td>{pw}</td></tr>\
             <tr><th>Permitted IP(s)</th><td>{ips}</td></tr>\
             <tr><th>Events</th><td>{ev}</td></tr></table></fieldset>",
            name = escape(&u.username),
            fixed = fixed_note("websockify.users"),
            pw = if u.password.is_empty() { "not set (logins refused)" } else { "set" },
            ips = if u.permitted_ips_text.is_empty() {
                "any address".to_owned()
            } else {
                escape(&u.permitted_ips_text.join(", "))
            },
            ev = events(&u.events),
        ));
    }
    let (users, _) = app.api.page_ws_users().await;
    let refusal = match failed {
        Failed::WsUser {
            index,
            errors,
            typed,
        } => Some((*index, errors, typed)),
        _ => None,
    };
    out.push_str(&item_forms(&users, refusal, |i, saved, typed, errors| {
        ws_user_form(csrf, i, &saved.username, typed, errors)
    }));
    out
}

fn ws_user_form(
    csrf: &str,
    index: Option<usize>,
    current_name: &str,
    typed: &OverlayWsUser,
    errors: &FieldErrors,
) -> String {
    let fields = |id: &str| {
        format!(
            "<label for=\"{id}-events\">Events</label>\
             <input type=\"text\" id=\"{id}-events\" name=\"events\" value=\"{events}\">{help_events}{err_events}",
            events = escape(&typed.events.join(", ")),
            help_events = help(&help_ws_events()),
            err_events = field_error(errors, "events"),
        )
    };
    user_fieldset(
        &WS_USER,
        csrf,
        index,
        current_name,
        &typed.username,
        &typed.permitted_ips,
        errors,
        fields,
    )
}

async fn old_form(
    app: &App,
    csrf: &str,
    keys: &crate::config::FileKeys,
    failed: &Failed,
) -> String {
    let current = app.api.old_api().await;
    let (errors, typed) = match failed {
        Failed::Old { errors, typed } => (errors.clone(), Some(typed)),
        _ => (FieldErrors::default(), None),
    };
    let value = |field: &str, current: String| -> String {
        typed.and_then(|t| t.get(field).cloned()).unwrap_or(current)
    };
    let fixed = |field: &str| keys.old(field);
    let dis = |field: &str| if fixed(field) { " disabled" } else { "" };
    let note = |field: &str| {
        if fixed(field) {
            fixed_note(&format!("https_api_old.{field}"))
        } else {
            String::new()
        }
    };
    let cert_info = match &current.tls {
        None => "A self-signed certificate generated by pbxgate.".to_owned(),
        Some((cert, _)) => {
            let uploaded = cert.starts_with(app.api.tls_dir());
            let expiry = crate::tls::CertInfo::read(cert, false)
                .validity
                .ok()
                .and_then(|(_, not_after)| jiff::Timestamp::from_second(not_after).ok())
                .map_or("unknown".to_owned(), |t| {
                    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
                });
            format!(
                "{} certificate, valid until {}.",
                if uploaded {
                    "An uploaded"
                } else {
                    "The configured"
                },
                escape(&expiry)
            )
        }
    };
    let tls_fixed = fixed("tls_cert") || fixed("tls_private_key");
    let tls_controls = if tls_fixed {
        fixed_note("https_api_old.tls_cert / tls_private_key")
    } else {
        format!(
            "<div class=\"grid\"><div><label for=\"old-key\">TLS Private Key</label>\
             <input type=\"file\" id=\"old-key\" name=\"tls_private_key\" accept=\".pem,.key,application/x-pem-file\">{ek}</div>\
             <div><label for=\"old-cert\">TLS Cert</label>\
             <input type=\"file\" id=\"old-cert\" name=\"tls_cert\" accept=\".pem,.crt,application/x-pem-file\">{ec}</div></div>\
             <label class=\"checkbox\"><input type=\"checkbox\" name=\"tls_generated\" id=\"old-generated\"> \
             Use a generated self-signed certificate instead</label>",
            ek = field_error(&errors, "tls_private_key"),
            ec = field_error(&errors, "tls_cert"),
        )
    };
    let enable_on = typed.map_or(current.enable, |t| t.contains_key("enable"));
    let pms_on = typed.map_or(current.enable_pmsapi, |t| t.contains_key("enable_pmsapi"));
    format!(
        "<h3 id=\"old\">HTTPS API Settings (Old)</h3>\
         <form method=\"post\" action=\"/admin/api-config/old\" enctype=\"multipart/form-data\" id=\"old-form\">{csrf}{form_error}\
         <label class=\"checkbox\"><input type=\"checkbox\" name=\"enable\" id=\"old-enable\"{en}{dis_en}> Enable</label>\
         {help_en}{note_en}{err_en}\
         <label for=\"old-bind\">TLS Bind Address</label>\
         <input type=\"text\" id=\"old-bind\" name=\"tls_bind_address\" value=\"{bind}\"{dis_bind}>\
         {help_bind}{note_bind}{err_bind}\
         <p class=\"notice\" id=\"old-cert-info\">{cert_info}</p>{tls_controls}{help_tls}\
         <div class=\"grid\"><div><label for=\"old-username\">Username</label>\
         <input type=\"text\" id=\"old-username\" name=\"username\" value=\"{user}\" autocomplete=\"off\"{dis_user}>\
         {help_user}{note_user}{err_user}</div>\
         <div><label for=\"old-password\">Password</label>\
         <input type=\"password\" id=\"old-password\" name=\"password\" autocomplete=\"new-password\"{dis_pw}>\
         {help_pw}{note_pw}{err_pw}</div></div>\
         <label for=\"old-ips\">Permitted IP(s)</label>\
         <textarea id=\"old-ips\" name=\"permitted_ips\" rows=\"3\"{dis_ips}>{ips}</textarea>\
         {help_ips}{note_ips}{err_ips}\
         <label class=\"checkbox\"><input type=\"checkbox\" name=\"enable_pmsapi\" id=\"old-pmsapi\"{pms}{dis_pms}> Enable PMSAPI</label>\
         {help_pms}{note_pms}{err_pms}\
         <button type=\"submit\">Save</button></form>",
        form_error = form_error(&errors),
        en = checked(enable_on),
        dis_en = dis("enable"),
        help_en = help(HELP_OLD_ENABLE),
        note_en = note("enable"),
        err_en = field_error(&errors, "enable"),
        bind = escape(&value("tls_bind_address", current.bind.to_string())),
        dis_bind = dis("tls_bind_address"),
        help_bind = help(HELP_BIND),
        note_bind = note("tls_bind_address"),
        err_bind = field_error(&errors, "tls_bind_address"),
        help_tls = help(HELP_TLS),
        user = escape(&value("username", current.username.clone())),
        dis_user = dis("username"),
        help_user = help(HELP_OLD_USER),
        note_user = note("username"),
        err_user = field_error(&errors, "username"),
        dis_pw = dis("password"),
        help_pw = help(HELP_OLD_PASSWORD),
        note_pw = note("password"),
        err_pw = field_error(&errors, "password"),
        ips = escape(&value(
            "permitted_ips",
            current.permitted_ips_text.join("\n")
        )),
        dis_ips = dis("permitted_ips"),
        help_ips = help(HELP_OLD_IPS),
        note_ips = note("permitted_ips"),
        err_ips = field_error(&errors, "permitted_ips"),
        pms = checked(pms_on),
        dis_pms = dis("enable_pmsapi"),
        help_pms = help(HELP_PMSAPI),
        note_pms = note("enable_pmsapi"),
        err_pms = field_error(&errors, "enable_pmsapi"),
    )
}

// ---------------------------------------------------------------- saving

/// Permitted IPs as typed: one per line or comma-separated.
fn ip_list(text: &str) -> Vec<String> {
    text.split(['\n', ',', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

type FormResult<T> = Result<Form<T>, axum::extract::rejection::FormRejection>;

/// The form, if it parsed and carries the session's CSRF token.
fn with_csrf<T>(admin: &Admin, form: FormResult<T>, token: impl FnOnce(&T) -> &str) -> Option<T> {
    let Ok(Form(form)) = form else {
        return None;
    };
    tokens_match(&admin.session.csrf, token(&form)).then_some(form)
}

#[derive(Deserialize)]
struct EnableForm {
    #[serde(default)]
    csrf: String,
    enable: Option<String>,
}

async fn save_enable(
    State(app): State<App>,
    admin: Admin,
    form: FormResult<EnableForm>,
) -> Response {
    let Some(form) = with_csrf(&admin, form, |f| &f.csrf) else {
        return forbidden();
    };
    let ip = admin.ip.to_string();
    match app
        .api
        .set_enable(form.enable.is_some(), &admin.session.username, &ip)
        .await
    {
        Ok(_) => redirect("/admin/api-config?saved=new#new"),
        Err(errors) => {
            render(
                &app,
                &admin,
                StatusCode::BAD_REQUEST,
                None,
                Failed::Enable(errors),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    index: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    call_control: Option<String>,
    #[serde(default)]
    permitted_ips: String,
    #[serde(default)]
    allow: String,
    #[serde(default)]
    deny: String,
    #[serde(default)]
    recordings_listing: String,
}

/// A comma- or space-separated list of names.
fn name_list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `index` of a user form: empty for a new user. Anything else was not
/// sent by the page.
fn form_index(index: &str) -> Result<Option<usize>, std::num::ParseIntError> {
    if index.is_empty() {
        Ok(None)
    } else {
        index.parse().map(Some)
    }
}

/// The page again, with the refused form's errors and what was typed.
async fn refused(app: &App, admin: &Admin, failed: Failed) -> Response {
    render(app, admin, StatusCode::BAD_REQUEST, None, failed).await
}

async fn save_user(State(app): State<App>, admin: Admin, form: FormResult<UserForm>) -> Response {
    let Some(form) = with_csrf(&admin, form, |f| &f.csrf) else {
        return forbidden();
    };
    let Ok(index) = form_index(&form.index) else {
        return forbidden();
    };
    let user = OverlayUser {
        username: form.username.trim().to_owned(),
        password: form.password,
        call_control: form.call_control.is_some(),
        permitted_ips: ip_list(&form.permitted_ips),
        allow: name_list(&form.allow),
        deny: name_list(&form.deny),
        recordings_listing: form.recordings_listing,
    };
    let mut typed = user.clone();
    typed.password.clear();
    let ip = admin.ip.to_string();
    match app
        .api
        .save_user(index, user, &admin.session.username, &ip)
        .await
    {
        Ok(changes) => {
            app.auth.end_sessions_of_users(&changes.1).await;
            redirect("/admin/api-config?saved=user#new")
        }
        Err(errors) => {
            refused(
                &app,
                &admin,
                Failed::User {
                    index,
                    errors,
                    typed,
                },
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    index: usize,
    #[serde(default)]
    username: String,
}

async fn remove_user(
    State(app): State<App>,
    admin: Admin,
    form: FormResult<RemoveForm>,
) -> Response {
    let Some(form) = with_csrf(&admin, form, |f| &f.csrf) else {
        return forbidden();
    };
    let ip = admin.ip.to_string();
    match app
        .api
        .remove_user(form.index, &form.username, &admin.session.username, &ip)
        .await
    {
        Ok(changes) => {
            app.auth.end_sessions_of_users(&changes.1).await;
            redirect("/admin/api-config?saved=removed#new")
        }
        Err(errors) => {
            refused(
                &app,
                &admin,
                Failed::User {
                    index: Some(form.index),
                    errors,
                    typed: OverlayUser {
                        username: form.username,
                        ..OverlayUser::default()
                    },
                },
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct WsUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    index: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    permitted_ips: String,
    #[serde(default)]
    events: String,
}

async fn save_ws_user(
    State(app): State<App>,
    admin: Admin,
    form: FormResult<WsUserForm>,
) -> Response {
    let Some(form) = with_csrf(&admin, form, |f| &f.csrf) else {
        return forbidden();
    };
    let Ok(index) = form_index(&form.index) else {
        return forbidden();
    };
    let user = OverlayWsUser {
        username: form.username.trim().to_owned(),
        password: form.password,
        permitted_ips: ip_list(&form.permitted_ips),
        events: name_list(&form.events),
    };
    let mut typed = user.clone();
    typed.password.clear();
    let ip = admin.ip.to_string();
    match app
        .api
        .save_ws_user(index, user, &admin.session.username, &ip)
        .await
    {
        Ok(_) => redirect("/admin/api-config?saved=ws-user#ws"),
        Err(errors) => {
            refused(
                &app,
                &admin,
                Failed::WsUser {
                    index,
                    errors,
                    typed,
                },
            )
            .await
        }
    }
}

async fn remove_ws_user(
    State(app): State<App>,
    admin: Admin,
    form: FormResult<RemoveForm>,
) -> Response {
    let Some(form) = with_csrf(&admin, form, |f| &f.csrf) else {
        return forbidden();
    };
    let ip = admin.ip.to_string();
    match app
        .api
        .remove_ws_user(form.index, &form.username, &admin.session.username, &ip)
        .await
    {
        Ok(_) => redirect("/admin/api-config?saved=ws-removed#ws"),
        Err(errors) => {
            refused(
                &app,
                &admin,
                Failed::WsUser {
                    index: Some(form.index),
                    errors,
                    typed: OverlayWsUser {
                        username: form.username,
                        ..OverlayWsUser::default()
                    },
                },
            )
            .await
        }
    }
}

/// Why a multipart body could not be read, with the parser's own reason
/// (axum's error only says "Error parsing").
fn unreadable(e: &axum::extract::multipart::MultipartError) -> String {
    let mut why = e.body_text();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    tracing::warn!(error = %why, "admin form refused: unreadable multipart body");
    format!("the form could not be read ({why})")
}

/// The old API form's fields: text as text, files as their content.
async fn read_multipart(mut mp: Multipart) -> Result<HashMap<String, String>, FieldErrors> {
    let mut fields = HashMap::new();
    // A field over its limit is refused, but the rest of the body (bounded by
    // the route's body limit) is still read: answering before the client has
    // sent it all leaves the connection unusable for its next request.
    let mut refused: Option<FieldErrors> = None;
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(FieldErrors::one("", unreadable(&e))),
        };
        let name = field.name().unwrap_or("").to_owned();
        let limit = if name == "tls_cert" || name == "tls_private_key" {
            MAX_PEM_BYTES
        } else {
            MAX_FIELD_BYTES
        };
        let mut bytes = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if refused.is_some() {
                        continue;
                    }
                    if bytes.len() + chunk.len() > limit {
                        refused = Some(FieldErrors::one(
                            &name,
                            format!("larger than {limit} bytes"),
                        ));
                        continue;
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(FieldErrors::one("", unreadable(&e))),
            }
        }
        if refused.is_some() {
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            refused = Some(FieldErrors::one(
                &name,
                "not text (a PEM file is text beginning with -----BEGIN)",
            ));
            continue;
        };
        fields.insert(name, text);
    }
    match refused {
        Some(errors) => Err(errors),
        None => Ok(fields),
    }
}

async fn save_old(State(app): State<App>, admin: Admin, mp: Multipart) -> Response {
    let fields = match read_multipart(mp).await {
        Ok(f) => f,
        Err(errors) => {
            return render(
                &app,
                &admin,
                StatusCode::BAD_REQUEST,
                None,
                Failed::Old {
                    errors,
                    typed: HashMap::new(),
                },
            )
            .await;
        }
    };
    if !tokens_match(
        &admin.session.csrf,
        fields.get("csrf").map_or("", String::as_str),
    ) {
        return forbidden();
    }
    let keys = app.api.file_keys();
    let free = |k: &str| !keys.old(k);
    let text = |k: &str| fields.get(k).map(|v| v.trim().to_owned());
    let cert = fields.get("tls_cert").filter(|v| !v.is_empty());
    let key = fields.get("tls_private_key").filter(|v| !v.is_empty());
    let mut errors = FieldErrors::default();
    let tls = if fields.contains_key("tls_generated") {
        if cert.is_some() || key.is_some() {
            errors.0.insert(
                "tls_cert".into(),
                "choose either uploaded files or a generated certificate".into(),
            );
        }
        Some(TlsChoice::Generated)
    } else {
        match (cert, key) {
            (Some(c), Some(k)) => Some(TlsChoice::Uploaded {
                cert: c.clone(),
                key: k.clone(),
            }),
            (Some(_), None) => {
                errors.0.insert(
                    "tls_private_key".into(),
                    "upload the private key with the certificate".into(),
                );
                None
            }
            (None, Some(_)) => {
                errors.0.insert(
                    "tls_cert".into(),
                    "upload the certificate with the private key".into(),
                );
                None
            }
            (None, None) => None,
        }
    };
    // What was typed, to show again on an error (never secrets or PEM).
    let mut typed = HashMap::new();
    for k in ["tls_bind_address", "username", "permitted_ips"] {
        if let Some(v) = fields.get(k) {
            typed.insert(k.to_owned(), v.clone());
        }
    }
    for k in ["enable", "enable_pmsapi"] {
        if fields.contains_key(k) {
            typed.insert(k.to_owned(), "on".to_owned());
        }
    }
    if !errors.is_empty() {
        return render(
            &app,
            &admin,
            StatusCode::BAD_REQUEST,
            None,
            Failed::Old { errors, typed },
        )
        .await;
    }
    // Fixed keys are not in the form (disabled inputs are not sent); a
    // checkbox that is absent is off.
    let form = OldOverlay {
        enable: free("enable").then(|| fields.contains_key("enable")),
        tls_bind_address: text("tls_bind_address"),
        tls,
        username: text("username"),
        password: fields.get("password").cloned(),
        permitted_ips: fields.get("permitted_ips").map(|v| ip_list(v)),
        enable_pmsapi: free("enable_pmsapi").then(|| fields.contains_key("enable_pmsapi")),
    };
    let ip = admin.ip.to_string();
    match app.api.save_old(form, &admin.session.username, &ip).await {
        Ok(_) => redirect("/admin/api-config?saved=old#old"),
        Err(errors) => {
            render(
                &app,
                &admin,
                StatusCode::BAD_REQUEST,
                None,
                Failed::Old { errors, typed },
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permitted_ips_are_read_one_per_line_or_comma_separated() {
        assert_eq!(
            ip_list(" 10.0.0.1/255.255.255.255\r\n\n192.168.0.0/24, 127.0.0.1 "),
            vec!["10.0.0.1/255.255.255.255", "192.168.0.0/24", "127.0.0.1"]
        );
        assert!(ip_list(" \n ,").is_empty());
    }

    /// The old API form is read whole however TCP and TLS cut the body:
    /// every split point, and one byte at a time.
    #[tokio::test]
    async fn the_old_api_form_is_read_whatever_the_chunks() {
        use axum::extract::FromRequest;

        let boundary = "pbxgateTestBoundary7MA4YWxkTrZu0gW";
        let fields = [
            ("csrf", "0123456789abcdef"),
            ("enable", "on"),
            ("tls_bind_address", "127.0.0.1:40001"),
            ("username", "billing"),
            ("password", "Sekr1t-old"),
            ("permitted_ips", "127.0.0.1\n999.1.1.1"),
        ];
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let read = |chunks: Vec<Vec<u8>>| async move {
            let stream = futures_util::stream::iter(
                chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
            );
            let req = axum::http::Request::builder()
                .method("POST")
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(axum::body::Body::from_stream(stream))
                .unwrap();
            let mp = Multipart::from_request(req, &()).await.unwrap();
            read_multipart(mp).await
        };
        let mut splits: Vec<Vec<Vec<u8>>> = (1..body.len())
            .map(|k| vec![body[..k].to_vec(), body[k..].to_vec()])
            .collect();
        splits.push(body.iter().map(|b| vec![*b]).collect());
        for chunks in splits {
            let first = chunks[0].len();
            let got = read(chunks)
                .await
                .unwrap_or_else(|e| panic!("split at {first}: {e:?}"));
            for (k, v) in fields {
                assert_eq!(got.get(k).map(String::as_str), Some(v), "split at {first}");
            }
        }
    }
}
