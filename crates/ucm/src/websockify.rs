//! The frames of the UCM event websocket (`/websockify`):
//! `{"type":"request","message":{transactionid, action, ...}}` from the
//! client, `{"type":"response","message":{..., "status":N}}` back, and the
//! `notify` frames.

use serde_json::{Map, Value, json};

use crate::Status;

pub const ACTIVE_CALL_STATUS: &str = "ActiveCallStatus";
pub const EXTENSION_STATUS: &str = "ExtensionStatus";

/// The event names a client may subscribe to (those of a UCM). Only
/// `ActiveCallStatus` and `ExtensionStatus` are ever sent.
pub const EVENT_NAMES: &[&str] = &[
    ACTIVE_CALL_STATUS,
    EXTENSION_STATUS,
    "PbxStatus",
    "TrunkStatus",
    "PresenceStatus",
    "VoiceMailStatus",
    "ResourceUsageStatus",
    "InterfaceStatus",
    "EquipmentCapacityStatus",
    "CallQueueStatus",
];

/// A field of the wrong type (or a missing list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

/// A client request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed as it came (clients send strings; any JSON value is echoed).
    pub transactionid: Option<Value>,
    pub action: String,
    pub message: Map<String, Value>,
}

impl Request {
    /// A string field; `Err` if present but not a string.
    pub fn str(&self, key: &str) -> Result<Option<&str>, WrongType> {
        match self.message.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(WrongType),
        }
    }

    /// A list of strings (`eventnames`); `Err` if absent or of another shape.
    pub fn names(&self, key: &str) -> Result<Vec<&str>, WrongType> {
        match self.message.get(key) {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_str().ok_or(WrongType)).collect(),
            // One client sends a single name as a string.
            Some(Value::String(s)) => Ok(vec![s.as_str()]),
            _ => Err(WrongType),
        }
    }
}

/// A frame that is not a request: what can be echoed of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub transactionid: Option<Value>,
    pub action: Option<String>,
}

/// Parses a client frame. `type` may be absent; if present it must be
/// `request`. `message` must be an object with a string `action`.
pub fn parse(text: &str) -> Result<Request, Malformed> {
    let mut none = Malformed {
        transactionid: None,
        action: None,
    };
    let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
        return Err(none);
    };
    let Some(Value::Object(message)) = frame.remove("message") else {
        return Err(none);
    };
    none.transactionid = message.get("transactionid").cloned();
    let type_ok = match frame.get("type") {
        None => true,
        Some(t) => t.as_str() == Some("request"),
    };
    let action = match message.get("action") {
        Some(Value::String(a)) if !a.is_empty() => a.clone(),
        _ => return Err(none),
    };
    if !type_ok {
        none.action = Some(action);
        return Err(none);
    }
    Ok(Request {
        transactionid: none.transactionid,
        action,
        message,
    })
}

/// A response frame: `transactionid` and `action` echoed, then `fields`,
/// then `status`.
pub fn response(
    transactionid: Option<&Value>,
    action: Option<&str>,
    status: Status,
    fields: &[(&str, Value)],
) -> String {
    let mut message = Map::new();
    if let Some(t) = transactionid {
        message.insert("transactionid".into(), t.clone());
    }
    if let Some(a) = action {
        message.insert("action".into(), Value::String(a.to_owned()));
    }
    for (k, v) in fields {
        message.insert((*k).to_owned(), v.clone());
    }
    message.insert("status".into(), json!(status.code()));
    json!({ "type": "response", "message": message }).to_string()
}

/// A notify frame: `{"type":"request","message":[{"action":"notify",
/// "eventname":..,"eventbody":[..]}]}`.
pub fn notify(eventname: &str, body: &Value) -> String {
    json!({
        "type": "request",
        "message": [{ "action": "notify", "eventname": eventname, "eventbody": body }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_as_clients_send_them() {
        let r = parse(r#"{"type":"request","message":{"transactionid":"tx1001","action":"challenge","username":"webuser","version":"1"}}"#).unwrap();
        assert_eq!(r.action, "challenge");
        assert_eq!(r.transactionid, Some(json!("tx1001")));
        assert_eq!(r.str("username"), Ok(Some("webuser")));
        assert_eq!(r.str("token"), Ok(None));
        let r = parse(r#"{"message":{"action":"subscribe","eventnames":["ActiveCallStatus","ExtensionStatus"]}}"#).unwrap();
        assert_eq!(r.transactionid, None);
        assert_eq!(
            r.names("eventnames"),
            Ok(vec!["ActiveCallStatus", "ExtensionStatus"])
        );
        let r = parse(r#"{"type":"request","message":{"transactionid":7,"action":"subscribe","eventnames":"PbxStatus"}}"#).unwrap();
        assert_eq!(r.transactionid, Some(json!(7)));
        assert_eq!(r.names("eventnames"), Ok(vec!["PbxStatus"]));
        assert_eq!(r.str("eventnames"), Ok(Some("PbxStatus")));
    }

    #[test]
    fn malformed_frames_keep_what_can_be_echoed() {
        let none = Malformed {
            transactionid: None,
            action: None,
        };
        for bad in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"type":"request"}"#,
            r#"{"type":"request","message":"challenge"}"#,
            r#"{"type":"request","message":[{"action":"challenge"}]}"#,
        ] {
            assert_eq!(parse(bad), Err(none.clone()), "{bad}");
        }
        let e = parse(r#"{"type":"request","message":{"transactionid":"t1"}}"#).unwrap_err();
        assert_eq!(e.transactionid, Some(json!("t1")));
        let e =
            parse(r#"{"type":"request","message":{"transactionid":"t2","action":5}}"#).unwrap_err();
        assert_eq!(e.transactionid, Some(json!("t2")));
        let e = parse(r#"{"type":"response","message":{"transactionid":"t3","action":"login"}}"#)
            .unwrap_err();
        assert_eq!(e.action.as_deref(), Some("login"));
        let r = parse(r#"{"message":{"action":"subscribe","eventnames":[1]}}"#).unwrap();
        assert!(r.names("eventnames").is_err());
        assert!(r.names("missing").is_err());
        let r = parse(r#"{"message":{"action":"login","username":{"a":1}}}"#).unwrap();
        assert!(r.str("username").is_err());
    }

    /// Seeded random frames (mutations of a valid one): parse never panics,
    /// and every answer it leads to is JSON.
    #[test]
    fn random_frames_never_panic() {
        let seed = br#"{"type":"request","message":{"transactionid":"t1","action":"subscribe","eventnames":["ActiveCallStatus"],"token":"ab"}}"#;
        let alphabet = br#"{}[]":,\ 0aZ-.truefalsnul"#;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = seed.to_vec();
            for k in 0..(x % 6) {
                let at = ((x >> (8 * k)) as usize) % f.len();
                let c = alphabet[((x >> (4 * k)) as usize) % alphabet.len()];
                if (x >> k) & 1 == 0 {
                    f[at] = c;
                } else {
                    f.remove(at);
                }
            }
            let text = String::from_utf8_lossy(&f);
            let answer = match parse(&text) {
                Ok(r) => {
                    let _ = r.str("token");
                    let _ = r.names("eventnames");
                    response(
                        r.transactionid.as_ref(),
                        Some(&r.action),
                        Status::Success,
                        &[],
                    )
                }
                Err(m) => response(
                    m.transactionid.as_ref(),
                    m.action.as_deref(),
                    Status::InvalidParameters,
                    &[],
                ),
            };
            assert!(serde_json::from_str::<Value>(&answer).is_ok(), "{answer}");
        }
    }

    #[test]
    fn responses_and_notifies() {
        let tid = json!("tx1");
        assert_eq!(
            response(
                Some(&tid),
                Some("challenge"),
                Status::Success,
                &[("challenge", json!("0000000000000042"))]
            ),
            r#"{"type":"response","message":{"transactionid":"tx1","action":"challenge","challenge":"0000000000000042","status":0}}"#
        );
        assert_eq!(
            response(None, None, Status::InvalidParameters, &[]),
            r#"{"type":"response","message":{"status":-1}}"#
        );
        assert_eq!(
            notify(
                "ExtensionStatus",
                &json!([{"extension":"1000","status":"Idle"}])
            ),
            r#"{"type":"request","message":[{"action":"notify","eventname":"ExtensionStatus","eventbody":[{"extension":"1000","status":"Idle"}]}]}"#
        );
    }
}
