//! How the directory actions read the running Asterisk: the one failure
//! type and its statuses, AMI requests, request-name checks and the
//! cleaning of Asterisk's values (shared by every directory module); and
//! the directory file `pbxgate_directory.conf` (contrib/asterisk) that
//! describes what Asterisk has no object for (ring groups, extension groups,
//! departments, which contexts are the routes), read with AMI `GetConfig`
//! so that pbxgate needs no access to Asterisk's files.
//!
//! Everything read is untrusted text: it is only ever put into JSON values,
//! never sent back to Asterisk.

use asterisk::ami::{Message, Reply};
use asterisk::pbx::Manager;
use ucm::Status;

use super::Directory;
use crate::error::ActionError;

/// The directory file, in Asterisk's configuration directory.
pub const DIRECTORY_FILE: &str = "pbxgate_directory.conf";

/// Longest name (queue, extension, trunk) taken from a request.
const MAX_NAME: usize = 80;

/// An Asterisk value made safe to show: no control characters, bounded.
pub use crate::error::printable as clean;

/// A name parameter (extension, trunk, queue): -1 absent, -15 not a [`is_name`].
pub fn name_param(params: &ucm::Params, key: &str) -> Result<String, ActionError> {
    match params.str(key) {
        Ok(Some(v)) if !v.is_empty() => {
            if is_name(&v) {
                Ok(v)
            } else {
                Err(ActionError::Explained(
                    Status::InvalidValue,
                    format!("{key}: letters, digits and '_-.+*#' only (at most {MAX_NAME})"),
                ))
            }
        }
        _ => Err(ActionError::Status(Status::InvalidParameters)),
    }
}

/// Sends a list action: its events. `Response: Error` with a "not found"
/// message is an empty list (`PJSIPShowContacts` and friends answer so).
pub async fn events(
    ami: &dyn Manager,
    action: &str,
    headers: &[(&str, &str)],
) -> Result<Option<Vec<Message>>, ActionError> {
    let reply = request(ami, action, headers).await?;
    if reply.is_success() {
        return Ok(Some(reply.events));
    }
    let message = reply.response.get("Message").unwrap_or("").to_owned();
    let lower = message.to_ascii_lowercase();
    let empty = ["not found", "no such", "no contacts", "unable to retrieve"];
    if empty.iter().any(|m| lower.contains(m)) {
        return Ok(None);
    }
    Err(ActionError::PbxRefused {
        changing: false,
        action: action.to_owned(),
        message,
    })
}

/// The AMI connection, or why there is none.
pub fn ami(dir: &Directory) -> Result<&dyn Manager, ActionError> {
    dir.ami.as_deref().ok_or(ActionError::PbxNotConfigured)
}

/// Sends an action and returns Asterisk's answer, success or not.
pub async fn request(
    ami: &dyn Manager,
    action: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, ActionError> {
    // Queued actions would wait out the timeout while AMI reconnects.
    if !ami.state().borrow().is_up() {
        return Err(ActionError::Pbx(asterisk::Error::NotConnected));
    }
    ami.action(action, headers).await.map_err(ActionError::Pbx)
}

/// Sends an action; `Response: Error` is a [`ActionError::Refused`].
pub async fn send(
    ami: &dyn Manager,
    action: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, ActionError> {
    let reply = request(ami, action, headers).await?;
    if reply.is_success() {
        Ok(reply)
    } else {
        Err(ActionError::PbxRefused {
            changing: false,
            action: action.to_owned(),
            message: reply.response.get("Message").unwrap_or("").to_owned(),
        })
    }
}

/// A name from a request that may be sent to Asterisk as a header value:
/// letters, digits and `_ - . + * #`, at most [`MAX_NAME`] bytes.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'*' | b'#')
        })
}

/// One `[section]` of a configuration file: its lines in order (keys repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub lines: Vec<(String, String)>,
}

impl Section {
    /// The last value of `key` (a later line overrides, as in Asterisk).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The comma-separated values of every `key` line, trimmed, empty ones
    /// dropped (`members = 1000,1001` and `members = 1002` give three).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.all(key)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The sections of an AMI `GetConfig` answer (`Category-NNNNNN: name`,
/// `Line-NNNNNN-MMMMMM: key=value`), in order. Lines of a category number
/// not announced are dropped.
pub fn parse_get_config(m: &Message) -> Vec<Section> {
    let mut sections: Vec<(String, Section)> = Vec::new();
    for (k, v) in &m.headers {
        if let Some(n) = k.strip_prefix("Category-") {
            sections.push((
                n.to_owned(),
                Section {
                    name: v.clone(),
                    lines: Vec::new(),
                },
            ));
        } else if let Some(rest) = k.strip_prefix("Line-")
            && let Some((n, _)) = rest.split_once('-')
            && let Some((_, s)) = sections.iter_mut().rev().find(|(id, _)| id == n)
        {
            let (key, value) = v.split_once('=').unwrap_or((v.as_str(), ""));
            s.lines
                .push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    sections.into_iter().map(|(_, s)| s).collect()
}

/// The directory file's sections; none when the file does not exist (an
/// operator who describes nothing gets empty lists, not errors).
pub async fn directory(ami: &dyn Manager) -> Result<Vec<Section>, ActionError> {
    let reply = request(ami, "GetConfig", &[("Filename", DIRECTORY_FILE)]).await?;
    if !reply.is_success() {
        let message = reply.response.get("Message").unwrap_or("").to_owned();
        if message.to_ascii_lowercase().contains("not found") {
            tracing::debug!("{DIRECTORY_FILE} not found: nothing described");
            return Ok(Vec::new());
        }
        return Err(ActionError::PbxRefused {
            changing: false,
            action: "GetConfig".into(),
            message,
        });
    }
    Ok(parse_get_config(&reply.response))
}

/// The sections of the directory file of `kind` (their `type`).
pub fn of_type<'a>(sections: &'a [Section], kind: &'a str) -> impl Iterator<Item = &'a Section> {
    sections
        .iter()
        .filter(move |s| s.get("type").is_some_and(|t| t.eq_ignore_ascii_case(kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_config_answers_become_sections() {
        let mut m = Message::new();
        m.push("Response", "Success");
        m.push("Category-000000", "general");
        m.push("Line-000000-000000", "inbound_context=ext-did");
        m.push("Category-000001", "6400");
        m.push("Line-000001-000000", "type=ringgroup");
        m.push("Line-000001-000001", "members=1000, 1001");
        m.push("Line-000001-000002", "members=1002");
        m.push("Line-000001-000003", "name=Sales = East");
        m.push("Line-000009-000000", "stray=1");
        let s = parse_get_config(&m);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("inbound_context"), Some("ext-did"));
        assert_eq!(s[1].list("members"), vec!["1000", "1001", "1002"]);
        assert_eq!(s[1].get("name"), Some("Sales = East"));
        assert_eq!(of_type(&s, "RingGroup").count(), 1);
    }

    #[test]
    fn names_sent_to_asterisk_carry_no_syntax() {
        assert!(is_name("6000"));
        assert!(is_name("support-queue_1"));
        for bad in ["", "a b", "a\r\nAction: x", "a,b", "a;b", &"x".repeat(81)] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }
}
