//! The `/api` envelope: `{"request":{"action":..., ...}}` in,
//! `{"response":{...},"status":N}` out (key order as the UCM sends it).

use serde_json::{Map, Value};

use crate::{Error, Status};

/// A parsed `/api` request: the action name and its flat parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: String,
    pub params: Params,
}

/// A parameter that is present but has a type no UCM client sends for it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("parameter \"{key}\" has the wrong type (expected {expected})")]
pub struct ParamError {
    pub key: String,
    pub expected: &'static str,
}

/// The flat parameters of a request. UCM clients send the same value as a JSON
/// string or as a JSON number depending on the client, so every accessor accepts
/// both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(Map<String, Value>);

impl Params {
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// A string parameter; numbers are given in their decimal form. `null` is absent.
    pub fn str(&self, key: &str) -> Result<Option<String>, ParamError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ParamError {
                key: key.to_owned(),
                expected: "string or number",
            }),
        }
    }

    /// Every parameter as strings, in request order: strings as they are,
    /// numbers in decimal, arrays of those joined with `,` (clients send
    /// caller lists both ways), `null` left out. Anything else is an error
    /// naming the parameter.
    pub fn string_pairs(&self) -> Result<Vec<(String, String)>, ParamError> {
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let mut out = Vec::with_capacity(self.0.len());
        for (k, v) in &self.0 {
            let value = match v {
                Value::Null => continue,
                Value::Array(items) => items
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join(",")),
                other => scalar(other),
            };
            match value {
                Some(value) => out.push((k.clone(), value)),
                None => {
                    return Err(ParamError {
                        key: k.clone(),
                        expected: "string, number or list of them",
                    });
                }
            }
        }
        Ok(out)
    }

    /// A non-negative integer parameter, from a JSON number or a string of digits.
    pub fn uint(&self, key: &str) -> Result<Option<u64>, ParamError> {
        let bad = || ParamError {
            key: key.to_owned(),
            expected: "non-negative integer",
        };
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                s.parse::<u64>().map(Some).map_err(|_| bad())
            }
            Some(_) => Err(bad()),
        }
    }
}

/// Parses an `/api` request body.
pub fn parse_request(body: &[u8]) -> Result<Request, Error> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Error::MalformedJson(e.to_string()))?;
    let Value::Object(mut outer) = value else {
        return Err(Error::MissingRequest);
    };
    let Some(Value::Object(mut request)) = outer.remove("request") else {
        return Err(Error::MissingRequest);
    };
    let action = match request.remove("action") {
        Some(Value::String(a)) if !a.is_empty() => a,
        _ => return Err(Error::MissingAction),
    };
    Ok(Request {
        action,
        params: Params(request),
    })
}

/// Serialises the envelope. `response` must be a JSON object.
pub fn encode_response(status: Status, response: &Value) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        response: &'a Value,
        status: i32,
    }
    // Serialising a Value into a Vec cannot fail: every key is a string.
    serde_json::to_vec(&Envelope {
        response,
        status: status.code(),
    })
    .unwrap_or_else(|_| format!("{{\"response\":{{}},\"status\":{}}}", status.code()).into_bytes())
}

/// An error answer with an explanation in `response.error_msg`, for errors
/// a client's operator must be able to understand (call control).
pub fn error_response_with(status: Status, message: &str) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("error_msg".into(), Value::String(message.into()));
    encode_response(status, &Value::Object(body))
}

/// The body of an error answer. Only `-1` carries an `error_msg` on a real UCM.
pub fn error_response(status: Status) -> Vec<u8> {
    let mut body = Map::new();
    if status == Status::InvalidParameters {
        body.insert("error_msg".into(), Value::String(status.message().into()));
    }
    encode_response(status, &Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_challenge_request() {
        let r = parse_request(
            br#"{"request": {"action": "challenge", "user": "cdrapi", "version": "1.0"}}"#,
        )
        .unwrap();
        assert_eq!(r.action, "challenge");
        assert_eq!(r.params.str("user").unwrap().as_deref(), Some("cdrapi"));
        assert_eq!(r.params.str("version").unwrap().as_deref(), Some("1.0"));
        assert!(!r.params.contains("action"));
    }

    #[test]
    fn numbers_and_strings_are_interchangeable() {
        let r = parse_request(
            br#"{"request":{"action":"x","page":1,"item_num":"30","user":1000,"neg":-1,"bad":"1a"}}"#,
        )
        .unwrap();
        assert_eq!(r.params.uint("page").unwrap(), Some(1));
        assert_eq!(r.params.uint("item_num").unwrap(), Some(30));
        assert_eq!(r.params.str("user").unwrap().as_deref(), Some("1000"));
        assert!(r.params.uint("neg").is_err());
        assert!(r.params.uint("bad").is_err());
        assert_eq!(r.params.uint("missing").unwrap(), None);
    }

    #[test]
    fn wrong_types_are_errors() {
        let r = parse_request(br#"{"request":{"action":"x","user":{"a":1},"list":[1]}}"#).unwrap();
        assert!(r.params.str("user").is_err());
        assert!(r.params.str("list").is_err());
    }

    #[test]
    fn malformed_envelopes_are_rejected() {
        for body in [
            &b"not json"[..],
            b"",
            b"[]",
            b"{}",
            br#"{"request":"x"}"#,
            br#"{"request":{}}"#,
            br#"{"request":{"action":""}}"#,
            br#"{"request":{"action":7}}"#,
            br#"{"request":{"action":null}}"#,
        ] {
            let err = parse_request(body).unwrap_err();
            assert_eq!(err.status(), Status::InvalidParameters, "{body:?}");
        }
    }

    #[test]
    fn response_key_order_is_response_then_status() {
        let body = error_response(Status::InvalidParameters);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"response":{"error_msg":"Invalid parameters!"},"status":-1}"#
        );
        let body = error_response(Status::CookieError);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"response":{},"status":-6}"#
        );
    }
}
