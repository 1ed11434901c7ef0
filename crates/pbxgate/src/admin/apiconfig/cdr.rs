//! The API Configuration page's third table, "CDR Real-Time Output
//! Settings": the switch, the file's receivers (read-only) and a form per
//! receiver added here, each refused field shown beside it.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::{
    Failed, FormResult, checked, field_error, fixed_note, form_error, form_index, help, item_forms,
    name_list, refused, with_csrf,
};
use crate::admin::App;
use crate::admin::page::{Admin, escape, forbidden, redirect};
use crate::apiconfig::{FieldErrors, OverlayReceiver};

const HELP_ENABLE: &str = "Pushes each CDR to the receivers below as soon as it is stored: over TCP one \
record per line, over HTTP(S) a <code>POST</code> per batch. Records wait in the database while a receiver \
is unreachable and go in order when it is back (see docs/cdr-output.md).";

/// The section of the page.
pub(super) async fn section(app: &App, csrf: &str, failed: &Failed) -> String {
    let api = &app.api;
    let in_force = api.cdr_output();
    let enable_errors = match failed {
        Failed::CdrEnable(e) => e.clone(),
        _ => FieldErrors::default(),
    };
    let fixed = api.cdr_enable_fixed();
    let mut out = format!(
        "<h3 id=\"cdr-output\">CDR Real-Time Output Settings</h3>\
         <form method=\"post\" action=\"/admin/api-config/cdr-output\" id=\"cdr-enable\">{csrf}{form_error}\
         <label class=\"checkbox\"><input type=\"checkbox\" name=\"enable\" id=\"cdr-enable-box\"{on}{dis}> Enable</label>\
         {help}{fixed_note}{err}{button}</form>",
        form_error = form_error(&enable_errors),
        on = checked(in_force.enabled),
        dis = if fixed { " disabled" } else { "" },
        help = help(HELP_ENABLE),
        fixed_note = if fixed {
            fixed_note("cdr_output.enable")
        } else {
            String::new()
        },
        err = field_error(&enable_errors, "enable"),
        button = if fixed {
            ""
        } else {
            "<button type=\"submit\">Save</button>"
        },
    );
    for r in api.fixed_receivers() {
        out.push_str(&format!(
            "<fieldset class=\"receiver fixed-receiver\" data-receiver=\"{name}\"><legend>Receiver {name}</legend>\
             {fixed}<table><tr><th>Server</th><td>{target}</td></tr>\
             <tr><th>Format</th><td>{format}</td></tr>\
             <tr><th>Username</th><td>{user}</td></tr></table></fieldset>",
            name = escape(&r.name),
            fixed = fixed_note("cdr_output.receivers"),
            target = escape(&r.target()),
            format = escape(r.format.content_type()),
            user = if r.username.is_empty() { "none".to_owned() } else { escape(&r.username) },
        ));
    }
    let (receivers, _) = api.page_receivers().await;
    let refusal = match failed {
        Failed::Receiver {
            index,
            errors,
            typed,
        } => Some((*index, errors, typed)),
        _ => None,
    };
    out.push_str(&item_forms(
        &receivers,
        refusal,
        |i, saved, typed, errors| receiver_form(csrf, i, &saved.name, typed, errors, saved),
    ));
    out
}

fn select(id: &str, name: &str, current: &str, options: &[(&str, &str)]) -> String {
    let mut out = format!("<select id=\"{id}\" name=\"{name}\">");
    for (value, label) in options {
        out.push_str(&format!(
            "<option value=\"{value}\"{sel}>{label}</option>",
            sel = if *value == current { " selected" } else { "" }
        ));
    }
    out.push_str("</select>");
    out
}

/// The form of one receiver (`index`) or of a new one. `saved` tells
/// whether secrets are set (they are never shown).
fn receiver_form(
    csrf: &str,
    index: Option<usize>,
    current_name: &str,
    typed: &OverlayReceiver,
    errors: &FieldErrors,
    saved: &OverlayReceiver,
) -> String {
    let id = match index {
        Some(i) => format!("receiver-{i}"),
        None => "receiver-new".to_owned(),
    };
    let text = |field: &str, label: &str, value: &str, help_text: &str| {
        format!(
            "<label for=\"{id}-{field}\">{label}</label>\
             <input type=\"text\" id=\"{id}-{field}\" name=\"{field}\" value=\"{value}\">{help}{err}",
            value = escape(value),
            help = if help_text.is_empty() {
                String::new()
            } else {
                help(help_text)
            },
            err = field_error(errors, field),
        )
    };
    let secret = |field: &str, label: &str, set: bool| {
        format!(
            "<label for=\"{id}-{field}\">{label}</label>\
             <input type=\"password\" id=\"{id}-{field}\" name=\"{field}\" autocomplete=\"new-password\" placeholder=\"{ph}\">{err}",
            ph = if set {
                "set: leave empty to keep it"
            } else {
                "not set"
            },
            err = field_error(errors, field),
        )
    };
    let check = |field: &str, label: &str, on: bool| {
        format!(
            "<label class=\"checkbox\"><input type=\"checkbox\" name=\"{field}\" id=\"{id}-{field}\"{c}> {label}</label>{err}",
            c = checked(on),
            err = field_error(errors, field),
        )
    };
    let legend = match index {
        Some(_) => format!("Receiver {}", escape(current_name)),
        None => "Add a receiver".to_owned(),
    };
    let remove = match index {
        Some(i) => format!(
            "<form method=\"post\" action=\"/admin/api-config/cdr-receiver/remove\" class=\"remove\">{csrf}\
             <input type=\"hidden\" name=\"index\" value=\"{i}\">\
             <input type=\"hidden\" name=\"username\" value=\"{name}\">\
             <button type=\"submit\" class=\"danger\">Remove receiver {name}</button></form>",
            name = escape(current_name),
        ),
        None => String::new(),
    };
    format!(
        "<fieldset class=\"receiver\" data-receiver=\"{data}\"><legend>{legend}</legend>\
         <form method=\"post\" action=\"/admin/api-config/cdr-receiver\" id=\"{id}\">{csrf}{form_error}\
         <input type=\"hidden\" name=\"index\" value=\"{index}\">\
         {name}\
         <label for=\"{id}-delivery\">Delivery</label>{delivery}{err_delivery}\
         {address}{port}{path}\
         <label for=\"{id}-format\">Format</label>{format}{err_format}\
         {username}{password}{signing}{verify}{ca}{batch}{grouped}{answered}{directions}{backlog}{age}{timeout}\
         <button type=\"submit\">{button}</button></form>{remove}</fieldset>",
        data = escape(current_name),
        form_error = form_error(errors),
        index = index.map_or(String::new(), |i| i.to_string()),
        name = text(
            "name",
            "Name",
            &typed.name,
            "Names the receiver on the Status page and in <code>pbxgate outbox</code>."
        ),
        delivery = select(
            &format!("{id}-delivery"),
            "delivery",
            &typed.delivery,
            &[("tcp", "TCP"), ("http", "HTTP"), ("https", "HTTPS")]
        ),
        err_delivery = field_error(errors, "delivery"),
        address = text(
            "address",
            "Server Address",
            &typed.address,
            "Host name or IP address."
        ),
        port = text(
            "port",
            "Port",
            &if typed.port == 0 {
                String::new()
            } else {
                typed.port.to_string()
            },
            ""
        ),
        path = text("path", "Path (HTTP/HTTPS)", &typed.path, ""),
        format = select(
            &format!("{id}-format"),
            "format",
            &typed.format,
            &[("json", "JSON"), ("xml", "XML"), ("csv", "CSV")]
        ),
        err_format = field_error(errors, "format"),
        username = text(
            "username",
            "Username",
            &typed.username,
            "HTTP Basic; over TCP a first line <code>AUTH &lt;base64&gt;</code>."
        ),
        password = secret("password", "Password", !saved.password.is_empty()),
        signing = secret(
            "signing_secret",
            "Signing secret (HTTP/HTTPS)",
            !saved.signing_secret.is_empty()
        ),
        verify = check(
            "tls_verify",
            "Verify the server's certificate (HTTPS)",
            typed.tls_verify
        ),
        ca = text(
            "ca_file",
            "CA file (HTTPS)",
            &typed.ca_file,
            "PEM file on the pbxgate server; empty: the system's roots."
        ),
        batch = text("batch", "Records per request", &typed.batch.to_string(), ""),
        grouped = check(
            "grouped",
            "A call's legs as one entry (main_cdr, sub_cdr_N)",
            typed.grouped
        ),
        answered = check("only_answered", "Only answered calls", typed.only_answered),
        directions = text(
            "directions",
            "Only these directions",
            &typed.directions.join(", "),
            "inbound, outbound, internal; empty: all."
        ),
        backlog = text(
            "max_backlog",
            "Most records waiting",
            &typed.max_backlog.to_string(),
            ""
        ),
        age = text(
            "max_age_days",
            "Longest wait (days, 0: no limit)",
            &typed.max_age_days.to_string(),
            ""
        ),
        timeout = text(
            "timeout_secs",
            "Timeout (seconds)",
            &typed.timeout_secs.to_string(),
            ""
        ),
        button = if index.is_some() {
            "Save"
        } else {
            "Add receiver"
        },
    )
}

#[derive(Deserialize)]
pub(super) struct EnableForm {
    #[serde(default)]
    csrf: String,
    enable: Option<String>,
}

pub(super) async fn save_enable(
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
        .set_cdr_enable(form.enable.is_some(), &admin.session.username, &ip)
        .await
    {
        Ok(_) => redirect("/admin/api-config?saved=cdr-output#cdr-output"),
        Err(errors) => refused(&app, &admin, Failed::CdrEnable(errors)).await,
    }
}

#[derive(Deserialize)]
pub(super) struct ReceiverForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    index: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    delivery: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    signing_secret: String,
    tls_verify: Option<String>,
    #[serde(default)]
    ca_file: String,
    #[serde(default)]
    batch: String,
    grouped: Option<String>,
    only_answered: Option<String>,
    #[serde(default)]
    directions: String,
    #[serde(default)]
    max_backlog: String,
    #[serde(default)]
    max_age_days: String,
    #[serde(default)]
    timeout_secs: String,
}

/// A whole number typed in `field`, or the error beside it.
fn number<T: std::str::FromStr>(
    errors: &mut FieldErrors,
    field: &str,
    text: &str,
    min: &str,
    max: &str,
) -> Option<T> {
    let parsed = text.trim().parse::<T>().ok();
    if parsed.is_none() {
        errors.0.insert(
            field.to_owned(),
            format!("must be a whole number from {min} to {max}"),
        );
    }
    parsed
}

pub(super) async fn save_receiver(
    State(app): State<App>,
    admin: Admin,
    form: FormResult<ReceiverForm>,
) -> Response {
    let Some(form) = with_csrf(&admin, form, |f| &f.csrf) else {
        return forbidden();
    };
    let Ok(index) = form_index(&form.index) else {
        return forbidden();
    };
    let mut errors = FieldErrors::default();
    let defaults = OverlayReceiver::default();
    let port = number(&mut errors, "port", &form.port, "1", "65535");
    let batch = number(&mut errors, "batch", &form.batch, "1", "10000");
    let max_backlog = number(
        &mut errors,
        "max_backlog",
        &form.max_backlog,
        "1",
        "1000000000",
    );
    let max_age_days = number(&mut errors, "max_age_days", &form.max_age_days, "0", "3650");
    let timeout_secs = number(&mut errors, "timeout_secs", &form.timeout_secs, "1", "300");
    let receiver = OverlayReceiver {
        name: form.name.trim().to_owned(),
        delivery: form.delivery,
        address: form.address.trim().to_owned(),
        port: port.unwrap_or(defaults.port),
        path: form.path.trim().to_owned(),
        format: form.format,
        username: form.username.trim().to_owned(),
        password: form.password,
        signing_secret: form.signing_secret,
        tls_verify: form.tls_verify.is_some(),
        ca_file: form.ca_file.trim().to_owned(),
        batch: batch.unwrap_or(defaults.batch),
        grouped: form.grouped.is_some(),
        only_answered: form.only_answered.is_some(),
        directions: name_list(&form.directions),
        max_backlog: max_backlog.unwrap_or(defaults.max_backlog),
        max_age_days: max_age_days.unwrap_or(defaults.max_age_days),
        timeout_secs: timeout_secs.unwrap_or(defaults.timeout_secs),
    };
    let mut typed = receiver.clone();
    typed.password.clear();
    typed.signing_secret.clear();
    if !errors.is_empty() {
        return refused(
            &app,
            &admin,
            Failed::Receiver {
                index,
                errors,
                typed,
            },
        )
        .await;
    }
    let ip = admin.ip.to_string();
    match app
        .api
        .save_receiver(index, receiver, &admin.session.username, &ip)
        .await
    {
        Ok(_) => redirect("/admin/api-config?saved=cdr-receiver#cdr-output"),
        Err(errors) => {
            refused(
                &app,
                &admin,
                Failed::Receiver {
                    index,
                    errors,
                    typed,
                },
            )
            .await
        }
    }
}

pub(super) async fn remove_receiver(
    State(app): State<App>,
    admin: Admin,
    form: FormResult<super::RemoveForm>,
) -> Response {
    let Some(form) = with_csrf(&admin, form, |f| &f.csrf) else {
        return forbidden();
    };
    let ip = admin.ip.to_string();
    match app
        .api
        .remove_receiver(form.index, &form.username, &admin.session.username, &ip)
        .await
    {
        Ok(_) => redirect("/admin/api-config?saved=cdr-removed#cdr-output"),
        Err(errors) => {
            refused(
                &app,
                &admin,
                Failed::Receiver {
                    index: Some(form.index),
                    errors,
                    typed: OverlayReceiver {
                        name: form.username,
                        ..OverlayReceiver::default()
                    },
                },
            )
            .await
        }
    }
}
