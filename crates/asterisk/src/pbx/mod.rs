//! The PBX seam: what pbxgate's features ask of Asterisk, as two object-safe
//! traits, so that a feature can hold `Arc<dyn Manager>` / `Arc<dyn Stasis>`
//! and be tested on the in-memory fakes (feature `fake`) instead of a real
//! Asterisk.
//!
//! - [`Manager`] is AMI: events, connection state and actions. Its required
//!   methods are exactly [`Ami`]'s, so switching a feature from `Ami` to
//!   `dyn Manager` changes types only; the provided methods name the actions
//!   the features send (originate, redirect, hang up, channels, endpoints,
//!   queues, configuration files, AstDB), built on [`Manager::action`] so a
//!   fake that scripts actions scripts them too.
//! - [`Stasis`] is ARI: the events of pbxgate's Stasis application and the
//!   REST calls on its channels, exactly [`Ari`]'s methods.
//!
//! The real implementations delegate to the clients; the real-Asterisk tests
//! are the proof that they behave as the fakes do.

#[cfg(feature = "fake")]
pub mod fake;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use crate::ami::{Ami, Message, Reply};
use crate::ari::{Ari, Channel, Event};
use crate::{ConnState, Error};

/// What a call originated over AMI runs once answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `Context`, `Exten`, `Priority`.
    Dialplan {
        context: String,
        exten: String,
        priority: String,
    },
    /// `Application`, `Data`.
    Application { application: String, data: String },
}

/// An AMI `Originate`. Sent with `Async: true` (the reply comes at once, the
/// outcome as `OriginateResponse`) unless `wait` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originate {
    /// The channel to call, e.g. `Local/1001@from-internal` or `PJSIP/1001`.
    pub channel: String,
    pub target: Target,
    /// How long the channel rings; Asterisk's default (30 s) when `None`.
    pub timeout: Option<Duration>,
    /// `"name" <number>`.
    pub caller_id: Option<String>,
    /// `ChannelId` / `OtherChannelId`: the new channels' unique ids.
    pub channel_id: Option<String>,
    pub other_channel_id: Option<String>,
    pub account: Option<String>,
    /// `Variable: NAME=value`, in order (dialplan functions too).
    pub variables: Vec<String>,
    /// Waits for the call to be answered (or fail) before Asterisk replies.
    pub wait: bool,
}

impl Originate {
    pub fn new(channel: impl Into<String>, target: Target) -> Self {
        Originate {
            channel: channel.into(),
            target,
            timeout: None,
            caller_id: None,
            channel_id: None,
            other_channel_id: None,
            account: None,
            variables: Vec::new(),
            wait: false,
        }
    }

    /// The action's headers, in the order Asterisk's own examples use.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h: Vec<(&'static str, String)> = vec![("Channel", self.channel.clone())];
        match &self.target {
            Target::Dialplan {
                context,
                exten,
                priority,
            } => {
                h.push(("Context", context.clone()));
                h.push(("Exten", exten.clone()));
                h.push(("Priority", priority.clone()));
            }
            Target::Application { application, data } => {
                h.push(("Application", application.clone()));
                h.push(("Data", data.clone()));
            }
        }
        if let Some(t) = self.timeout {
            h.push(("Timeout", t.as_millis().to_string()));
        }
        if !self.wait {
            h.push(("Async", "true".to_owned()));
        }
        if let Some(c) = &self.caller_id {
            h.push(("CallerID", c.clone()));
        }
        if let Some(c) = &self.channel_id {
            h.push(("ChannelId", c.clone()));
        }
        if let Some(c) = &self.other_channel_id {
            h.push(("OtherChannelId", c.clone()));
        }
        if let Some(a) = &self.account {
            h.push(("Account", a.clone()));
        }
        for v in &self.variables {
            h.push(("Variable", v.clone()));
        }
        h
    }
}

/// Whether a `Response: Error` means "there is no such thing" (a missing
/// AstDB key, file, endpoint or queue) rather than a failure.
pub fn is_not_found(reply: &Reply) -> bool {
    !reply.is_success()
        && reply.response.get("Message").is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            [
                "not found",
                "no such",
                "does not exist",
                "unable to retrieve",
            ]
            .iter()
            .any(|s| m.contains(s))
        })
}

/// AMI: what the channel actions, the directory, the PMS, the live board,
/// CDR ingest and call control ask of the manager interface.
#[async_trait]
pub trait Manager: Send + Sync {
    /// Every event from now on (see [`Ami::subscribe`]).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>>;

    fn state(&self) -> watch::Receiver<ConnState>;

    /// Sends an action and waits for its response and its EventList, if any.
    /// A `Response: Error` is an `Ok` reply: callers read its message.
    async fn action(&self, action: &str, headers: &[(&str, &str)]) -> Result<Reply, Error>;

    /// `Originate`.
    async fn originate(&self, o: &Originate) -> Result<Reply, Error> {
        let owned = o.headers();
        let headers: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.action("Originate", &headers).await
    }

    /// `Redirect`: the channel goes on at `context,exten,priority`.
    async fn redirect(
        &self,
        channel: &str,
        context: &str,
        exten: &str,
        priority: &str,
    ) -> Result<Reply, Error> {
        self.action(
            "Redirect",
            &[
                ("Channel", channel),
                ("Context", context),
                ("Exten", exten),
                ("Priority", priority),
            ],
        )
        .await
    }

    /// `Hangup` of a channel by name (or `/regex/`), with a Q.850 cause.
    async fn hangup(&self, channel: &str, cause: Option<&str>) -> Result<Reply, Error> {
        match cause {
            Some(c) => {
                self.action("Hangup", &[("Channel", channel), ("Cause", c)])
                    .await
            }
            None => self.action("Hangup", &[("Channel", channel)]).await,
        }
    }

    /// `Setvar` on a channel (also dialplan functions such as
    /// `TIMEOUT(absolute)`; runs on the manager's thread, not the channel's).
    async fn set_var(&self, channel: &str, variable: &str, value: &str) -> Result<Reply, Error> {
        self.action(
            "Setvar",
            &[
                ("Channel", channel),
                ("Variable", variable),
                ("Value", value),
            ],
        )
        .await
    }

    /// `Getvar` on a channel: the value is the reply's `Value`.
    async fn get_var(&self, channel: &str, variable: &str) -> Result<Reply, Error> {
        self.action("Getvar", &[("Channel", channel), ("Variable", variable)])
            .await
    }

    /// `CoreShowChannels`: one `CoreShowChannel` event per live channel.
    async fn channels(&self) -> Result<Reply, Error> {
        self.action("CoreShowChannels", &[]).await
    }

    /// `PJSIPShowEndpoints`: one `EndpointList` event per endpoint.
    async fn pjsip_endpoints(&self) -> Result<Reply, Error> {
        self.action("PJSIPShowEndpoints", &[]).await
    }

    /// `PJSIPShowEndpoint`: `EndpointDetail`, `AorDetail`, `ContactStatusDetail`…
    async fn pjsip_endpoint(&self, endpoint: &str) -> Result<Reply, Error> {
        self.action("PJSIPShowEndpoint", &[("Endpoint", endpoint)])
            .await
    }

    /// `QueueStatus` of one queue or all: `QueueParams` and `QueueMember` events.
    async fn queue_status(&self, queue: Option<&str>) -> Result<Reply, Error> {
        match queue {
            Some(q) => self.action("QueueStatus", &[("Queue", q)]).await,
            None => self.action("QueueStatus", &[]).await,
        }
    }

    /// `GetConfig` of a configuration file: `Category-000000: name`,
    /// `Line-000000-000000: key=value` headers in the response.
    async fn get_config(&self, filename: &str) -> Result<Reply, Error> {
        self.action("GetConfig", &[("Filename", filename)]).await
    }

    /// `Command`: a CLI command; its lines are the response's `Output` headers.
    async fn command(&self, command: &str) -> Result<Reply, Error> {
        self.action("Command", &[("Command", command)]).await
    }

    /// `DBGet`: the value, or `None` when the key does not exist. Any other
    /// refusal is an error.
    async fn db_get(&self, family: &str, key: &str) -> Result<Option<String>, Error> {
        let reply = self
            .action("DBGet", &[("Family", family), ("Key", key)])
            .await?;
        if reply.is_success() {
            // Asterisk sends the value in a `DBGetResponse` event.
            return Ok(reply
                .events
                .iter()
                .find(|e| e.event() == Some("DBGetResponse"))
                .and_then(|e| e.get("Val"))
                .or_else(|| reply.response.get("Val"))
                .map(str::to_owned));
        }
        if is_not_found(&reply) {
            return Ok(None);
        }
        Err(refused("DBGet", &reply))
    }

    /// `DBGetTree`: every `(key, value)` under `family` (keys without the
    /// family), in Asterisk's order; empty when there is none.
    async fn db_get_tree(&self, family: &str) -> Result<Vec<(String, String)>, Error> {
        let reply = self.action("DBGetTree", &[("Family", family)]).await?;
        if reply.is_success() {
            let prefix = format!("/{family}/");
            return Ok(reply
                .events
                .iter()
                .filter(|e| e.event() == Some("DBGetTreeResponse"))
                .map(|e| {
                    let key = e.get("Key").unwrap_or("");
                    (
                        key.strip_prefix(&prefix).unwrap_or(key).to_owned(),
                        e.get("Val").unwrap_or("").to_owned(),
                    )
                })
                .collect());
        }
        if is_not_found(&reply) {
            return Ok(Vec::new());
        }
        Err(refused("DBGetTree", &reply))
    }

    /// `DBPut`.
    async fn db_put(&self, family: &str, key: &str, value: &str) -> Result<Reply, Error> {
        self.action("DBPut", &[("Family", family), ("Key", key), ("Val", value)])
            .await
    }

    /// `DBDel`. Asterisk answers "Database entry could not be deleted" for
    /// a missing key (see [`is_not_found`] for the reading callers use).
    async fn db_del(&self, family: &str, key: &str) -> Result<Reply, Error> {
        self.action("DBDel", &[("Family", family), ("Key", key)])
            .await
    }
}

fn refused(action: &str, reply: &Reply) -> Error {
    Error::Protocol(format!(
        "{action} refused: {}",
        reply.response.get("Message").unwrap_or("no message")
    ))
}

#[async_trait]
impl Manager for Ami {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        Ami::subscribe(self)
    }

    fn state(&self) -> watch::Receiver<ConnState> {
        Ami::state(self)
    }

    async fn action(&self, action: &str, headers: &[(&str, &str)]) -> Result<Reply, Error> {
        Ami::action(self, action, headers).await
    }
}

/// ARI: what call control and the channel actions (hold music, snoop) ask
/// of pbxgate's Stasis application.
#[async_trait]
pub trait Stasis: Send + Sync {
    /// The application's events from now on.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;

    /// The events websocket's state.
    fn state(&self) -> watch::Receiver<ConnState>;

    /// The application's name.
    fn app(&self) -> &str;

    /// The channel leaves Stasis and goes on in the dialplan. `NotFound`
    /// when it is gone or no longer in the application.
    async fn continue_in_dialplan(&self, channel_id: &str) -> Result<(), Error>;

    /// Hangs a channel up with an ARI reason (`normal`, `busy`, ...).
    async fn hangup(&self, channel_id: &str, reason: &str) -> Result<(), Error>;

    /// Ringing to the caller while the channel waits in Stasis.
    async fn ring(&self, channel_id: &str) -> Result<(), Error>;

    /// See [`Ari::set_variable`] for why call control does not use it.
    async fn set_variable(&self, channel_id: &str, name: &str, value: &str) -> Result<(), Error>;

    /// One channel, by id; `NotFound` once it is gone.
    async fn channel(&self, channel_id: &str) -> Result<Channel, Error>;

    /// The ids of the channels in the application now.
    async fn app_channel_ids(&self) -> Result<Vec<String>, Error>;

    async fn answer(&self, channel_id: &str) -> Result<(), Error>;

    /// A snoop channel on `channel_id` entering the application with `app_args`.
    async fn snoop(
        &self,
        channel_id: &str,
        spy: &str,
        whisper: &str,
        snoop_id: &str,
        app_args: &str,
    ) -> Result<(), Error>;

    async fn start_moh(&self, channel_id: &str) -> Result<(), Error>;

    /// Every bridge's id and creation time.
    async fn bridge_times(&self) -> Result<Vec<(String, String)>, Error>;

    /// The names of the Stasis applications Asterisk knows.
    async fn applications(&self) -> Result<Vec<String>, Error>;
}

#[async_trait]
impl Stasis for Ari {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        Ari::subscribe(self)
    }

    fn state(&self) -> watch::Receiver<ConnState> {
        Ari::state(self)
    }

    fn app(&self) -> &str {
        Ari::app(self)
    }

    async fn continue_in_dialplan(&self, channel_id: &str) -> Result<(), Error> {
        Ari::continue_in_dialplan(self, channel_id).await
    }

    async fn hangup(&self, channel_id: &str, reason: &str) -> Result<(), Error> {
        Ari::hangup(self, channel_id, reason).await
    }

    async fn ring(&self, channel_id: &str) -> Result<(), Error> {
        Ari::ring(self, channel_id).await
    }

    async fn set_variable(&self, channel_id: &str, name: &str, value: &str) -> Result<(), Error> {
        Ari::set_variable(self, channel_id, name, value).await
    }

    async fn channel(&self, channel_id: &str) -> Result<Channel, Error> {
        Ari::channel(self, channel_id).await
    }

    async fn app_channel_ids(&self) -> Result<Vec<String>, Error> {
        Ari::app_channel_ids(self).await
    }

    async fn answer(&self, channel_id: &str) -> Result<(), Error> {
        Ari::answer(self, channel_id).await
    }

    async fn snoop(
        &self,
        channel_id: &str,
        spy: &str,
        whisper: &str,
        snoop_id: &str,
        app_args: &str,
    ) -> Result<(), Error> {
        Ari::snoop(self, channel_id, spy, whisper, snoop_id, app_args).await
    }

    async fn start_moh(&self, channel_id: &str) -> Result<(), Error> {
        Ari::start_moh(self, channel_id).await
    }

    async fn bridge_times(&self) -> Result<Vec<(String, String)>, Error> {
        Ari::bridge_times(self).await
    }

    async fn applications(&self) -> Result<Vec<String>, Error> {
        Ari::applications(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originate_headers_as_the_features_send_them() {
        let mut o = Originate::new(
            "Local/1001@pbxgate-dial",
            Target::Dialplan {
                context: "pbxgate-dial".into(),
                exten: "5550100".into(),
                priority: "1".into(),
            },
        );
        o.timeout = Some(Duration::from_secs(30));
        o.variables.push("CALLERID(num)=1001".into());
        let h = o.headers();
        let keys: Vec<&str> = h.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "Channel", "Context", "Exten", "Priority", "Timeout", "Async", "Variable"
            ]
        );
        assert_eq!(h[4].1, "30000");
        assert_eq!(h[5].1, "true");
        let o = Originate {
            wait: true,
            ..Originate::new(
                "Local/s@pbxgate-mwi/n",
                Target::Application {
                    application: "Wait".into(),
                    data: "1".into(),
                },
            )
        };
        let h = o.headers();
        assert_eq!(h[1], ("Application", "Wait".to_owned()));
        assert!(!h.iter().any(|(k, _)| *k == "Async"));
    }

    #[test]
    fn not_found_replies_are_told_from_failures() {
        let reply = |r: &str, m: &str| {
            let mut response = Message::new();
            response.push("Response", r);
            response.push("Message", m);
            Reply {
                response,
                events: Vec::new(),
            }
        };
        assert!(is_not_found(&reply("Error", "Database entry not found")));
        assert!(is_not_found(&reply("Error", "Config file not found")));
        assert!(!is_not_found(&reply("Error", "Permission denied")));
        assert!(!is_not_found(&reply("Success", "not found")));
    }
}
