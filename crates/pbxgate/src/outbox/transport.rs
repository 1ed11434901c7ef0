//! The real transports: a kept-open TCP connection (one record per line) and
//! an HTTP(S) client (`POST`, Basic credentials, idempotency key, signature).

use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Payload, Transport};
use crate::config::Secret;
use crate::config::cdr_output::{Delivery, ReceiverSettings};

/// The transport a receiver's settings ask for.
pub fn build(r: &ReceiverSettings) -> Result<Box<dyn Transport>, String> {
    Ok(match r.delivery {
        Delivery::Tcp => Box::new(Tcp::new(r)),
        Delivery::Http | Delivery::Https => Box::new(Http::new(r)?),
    })
}

/// One connection, opened on the first send and re-opened after a failure.
pub struct Tcp {
    address: String,
    port: u16,
    /// `AUTH <base64 of username:password>` sent first on each connection.
    login: Option<Secret>,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<TcpStream>>,
}

impl Tcp {
    pub fn new(r: &ReceiverSettings) -> Tcp {
        let login = (!r.username.is_empty()).then(|| {
            let pair = format!("{}:{}", r.username, r.password.expose());
            Secret::new(format!(
                "AUTH {}\n",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        });
        Tcp {
            address: r.address.clone(),
            port: r.port,
            login,
            timeout: r.timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let target = (self.address.as_str(), self.port);
        let mut stream = tokio::time::timeout(self.timeout, TcpStream::connect(target))
            .await
            .map_err(|_| format!("connect: no answer within {} s", self.timeout.as_secs()))?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        if let Some(login) = &self.login {
            write_all(&mut stream, login.expose().as_bytes(), self.timeout).await?;
        }
        Ok(stream)
    }
}

/// Whether the receiver closed (or reset) the connection: a write would
/// still succeed once and its bytes be lost. Bytes it sent are discarded.
fn closed_by_peer(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    // Bounded: a receiver that keeps sending cannot hold the worker here.
    for _ in 0..16 {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    false
}

async fn write_all(stream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send: {e}")),
        Err(_) => Err(format!(
            "send: receiver took nothing for {} s",
            timeout.as_secs()
        )),
    }
}

#[async_trait::async_trait]
impl Transport for Tcp {
    async fn send(&self, payload: &Payload) -> Result<(), String> {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(closed_by_peer) {
            *conn = None;
        }
        let mut stream = match conn.take() {
            Some(s) => s,
            None => self.connect().await?,
        };
        write_all(&mut stream, &payload.body, self.timeout).await?;
        *conn = Some(stream);
        Ok(())
    }

    async fn ready(&self) -> Result<(), String> {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(closed_by_peer) {
            *conn = None;
        }
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        Ok(())
    }
}

/// `POST` of each batch; any 2xx is delivered.
pub struct Http {
    client: reqwest::Client,
    url: String,
    content_type: &'static str,
    basic: Option<(String, Secret)>,
    signing_secret: Secret,
}

impl Http {
    pub fn new(r: &ReceiverSettings) -> Result<Http, String> {
        let scheme = r.delivery.as_str();
        let host = if r.address.contains(':') {
            format!("[{}]", r.address)
        } else {
            r.address.clone()
        };
        let url = format!("{scheme}://{host}:{}{}", r.port, r.path);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(r.timeout)
            .timeout(r.timeout)
            // A redirect is an answer, not a delivery: the receiver's
            // address is what the operator configured.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(2)
            .user_agent(concat!("pbxgate/", env!("CARGO_PKG_VERSION")));
        if r.delivery == Delivery::Https {
            if !r.tls_verify {
                builder = builder.tls_danger_accept_invalid_certs(true);
            } else if let Some(ca) = &r.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
                builder = builder.tls_certs_only(certs);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Http {
            client,
            url,
            content_type: r.format.content_type(),
            basic: (!r.username.is_empty()).then(|| (r.username.clone(), r.password.clone())),
            signing_secret: r.signing_secret.clone(),
        })
    }
}

/// An HTTP client error with its causes (reqwest's own text is terse).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else {
        "request".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[async_trait::async_trait]
impl Transport for Http {
    async fn send(&self, payload: &Payload) -> Result<(), String> {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, self.content_type)
            .header(
                ucm::cdr_output::IDEMPOTENCY_HEADER,
                &payload.idempotency_key,
            )
            .body(payload.body.clone());
        if let Some((user, password)) = &self.basic {
            req = req.basic_auth(user, Some(password.expose()));
        }
        if !self.signing_secret.is_empty() {
            let t = crate::clock::now_ms() / 1000;
            if let Some(sig) = ucm::cdr_output::signature(
                self.signing_secret.expose().as_bytes(),
                t,
                &payload.body,
            ) {
                req = req.header(ucm::cdr_output::SIGNATURE_HEADER, sig);
            }
        }
        let answer = req.send().await.map_err(|e| describe(&e))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            let hint = if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
                " (the batch is larger than the receiver takes: lower its `batch`)"
            } else {
                ""
            };
            Err(format!("receiver answered HTTP {status}{hint}"))
        }
    }
}
