//! Typed ARI events, with a fallback that keeps anything unknown.

use serde::Deserialize;
use serde_json::Value;

/// The part of an ARI channel object pbxgate uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub state: String,
    pub caller: Party,
    pub connected: Party,
    pub dialplan: Dialplan,
    pub creationtime: String,
    #[serde(rename = "accountcode")]
    pub account_code: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Party {
    pub name: String,
    pub number: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Dialplan {
    pub context: String,
    pub exten: String,
    pub priority: i64,
    pub app_name: String,
    /// The application's arguments, e.g. `pbxgate,inbound,5550100`.
    pub app_data: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StasisStart {
        channel: Channel,
        args: Vec<String>,
    },
    StasisEnd {
        channel: Channel,
    },
    ChannelStateChange {
        channel: Channel,
    },
    ChannelHangupRequest {
        channel: Channel,
        cause: Option<i64>,
    },
    ChannelDestroyed {
        channel: Channel,
        cause: Option<i64>,
        cause_txt: String,
    },
    /// Any other event, kept whole.
    Other {
        kind: String,
        raw: Value,
    },
}

impl Event {
    /// Whether this is Asterisk telling the websocket that another client
    /// took application `app` over.
    pub fn replaces(&self, app: &str) -> bool {
        match self {
            Event::Other { kind, raw } => {
                kind == "ApplicationReplaced"
                    && raw
                        .get("application")
                        .and_then(Value::as_str)
                        .is_none_or(|a| a == app)
            }
            _ => false,
        }
    }

    pub fn parse(text: &str) -> Result<Event, serde_json::Error> {
        let raw: Value = serde_json::from_str(text)?;
        let kind = raw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let channel = || {
            raw.get("channel")
                .cloned()
                .and_then(|c| serde_json::from_value::<Channel>(c).ok())
        };
        let event = match (kind.as_str(), channel()) {
            ("StasisStart", Some(channel)) => Event::StasisStart {
                channel,
                args: raw
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            ("StasisEnd", Some(channel)) => Event::StasisEnd { channel },
            ("ChannelStateChange", Some(channel)) => Event::ChannelStateChange { channel },
            ("ChannelHangupRequest", Some(channel)) => Event::ChannelHangupRequest {
                channel,
                cause: raw.get("cause").and_then(Value::as_i64),
            },
            ("ChannelDestroyed", Some(channel)) => Event::ChannelDestroyed {
                channel,
                cause: raw.get("cause").and_then(Value::as_i64),
                cause_txt: raw
                    .get("cause_txt")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            },
            _ => Event::Other { kind, raw },
        };
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stasis_start_as_asterisk_sends_it() {
        let e = Event::parse(r#"{"type":"StasisStart","timestamp":"2026-11-26T10:00:00.000+0000","args":["inbound","5550100"],
            "channel":{"id":"1795736002.12","name":"PJSIP/trunk-00000003","state":"Ring",
            "caller":{"name":"","number":"+15551234567"},"connected":{"name":"","number":""},"accountcode":"",
            "dialplan":{"context":"from-trunk","exten":"5550100","priority":3,"app_name":"Stasis","app_data":"pbxgate,inbound,5550100"},
            "creationtime":"2026-11-26T10:00:00.000+0000","language":"en"},"asterisk_id":"x","application":"pbxgate"}"#).unwrap();
        let Event::StasisStart { channel, args } = e else {
            panic!("{e:?}")
        };
        assert_eq!(channel.name, "PJSIP/trunk-00000003");
        assert_eq!(channel.caller.number, "+15551234567");
        assert_eq!(channel.state, "Ring");
        assert_eq!(args, ["inbound", "5550100"]);
    }

    #[test]
    fn unknown_and_odd_events_fall_back() {
        let e = Event::parse(r#"{"type":"BridgeCreated","bridge":{"id":"b"}}"#).unwrap();
        assert!(matches!(e, Event::Other { ref kind, .. } if kind == "BridgeCreated"));
        // A known type with a malformed channel is kept, not dropped.
        let e = Event::parse(r#"{"type":"StasisEnd","channel":7}"#).unwrap();
        assert!(matches!(e, Event::Other { ref kind, .. } if kind == "StasisEnd"));
        assert!(Event::parse("not json").is_err());
    }

    #[test]
    fn application_replaced_names_the_application() {
        let e = Event::parse(
            r#"{"type":"ApplicationReplaced","application":"pbxgate","timestamp":"x"}"#,
        )
        .unwrap();
        assert!(e.replaces("pbxgate"));
        assert!(!e.replaces("other"));
        let e = Event::parse(r#"{"type":"StasisEnd","application":"pbxgate"}"#).unwrap();
        assert!(!e.replaces("pbxgate"));
    }
}
