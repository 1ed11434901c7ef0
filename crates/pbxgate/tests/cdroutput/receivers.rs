//! Billing servers the tests start: a TCP receiver (one record per line) and
//! an HTTPS receiver (a batch per `POST`), recording what they get and when.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// One record as received.
#[derive(Debug, Clone)]
pub struct Got {
    pub record: Value,
    /// HTTP: the `Idempotency-Key` of its request; TCP: empty.
    pub key: String,
    pub at: Instant,
}

/// An HTTP request's signature header and body.
pub type Signed = (String, Vec<u8>);

/// What a receiver recorded.
#[derive(Clone, Default)]
pub struct Log {
    pub records: Arc<Mutex<Vec<Got>>>,
    /// TCP: the `AUTH` lines; HTTP: the `Authorization` headers.
    pub auth: Arc<Mutex<Vec<String>>>,
    /// HTTP: (signature header, body) of each request.
    pub signed: Arc<Mutex<Vec<Signed>>>,
    /// TCP: each line as received (one entry: a leg, or a grouped call).
    pub entries: Arc<Mutex<Vec<Value>>>,
}

impl Log {
    pub fn records(&self) -> Vec<Got> {
        self.records.lock().unwrap().clone()
    }

    /// The AcctIds received, in order.
    pub fn acctids(&self) -> Vec<i64> {
        self.records()
            .iter()
            .map(|g| g.record["AcctId"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    /// Waits until at least `n` records arrived.
    pub async fn wait(&self, n: usize, limit: Duration, what: &str) {
        crate::kit::wait_until(format!("{what}: {n} records received"), limit, async || {
            let have = self.records.lock().unwrap().len();
            if have >= n { Ok(()) } else { Err(have) }
        })
        .await;
    }
}

/// The flat legs of one framed entry (`main_cdr`/`sub_cdr_N`, or itself).
pub fn legs_of(entry: &Value) -> Vec<Value> {
    if entry.get("main_cdr").is_some() {
        entry
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("sub_cdr_"))
            .map(|(_, v)| v.clone())
            .collect()
    } else {
        vec![entry.clone()]
    }
}

/// A TCP receiver of JSON lines on `127.0.0.1:port`; stopped, nothing
/// listens there (connections are refused).
pub struct TcpReceiver {
    pub port: u16,
    pub log: Log,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpReceiver {
    pub fn new(port: u16) -> TcpReceiver {
        TcpReceiver {
            port,
            log: Log::default(),
            task: None,
        }
    }

    pub async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let log = self.log.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: every connection ends with it.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                conns.spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(auth) = line.strip_prefix("AUTH ") {
                            log.auth.lock().unwrap().push(auth.to_owned());
                            continue;
                        }
                        let entry: Value = serde_json::from_str(&line)
                            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                        let at = Instant::now();
                        log.entries.lock().unwrap().push(entry.clone());
                        for record in legs_of(&entry) {
                            log.records.lock().unwrap().push(Got {
                                record,
                                key: String::new(),
                                at,
                            });
                        }
                    }
                });
            }
        }));
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTPS receiver (self-signed for `localhost`) of JSON batches; answers
/// `status` after `delay_ms`.
pub struct HttpsReceiver {
    pub port: u16,
    pub log: Log,
    pub status: Arc<AtomicU16>,
    pub delay_ms: Arc<AtomicU64>,
    /// The certificate (PEM), what pbxgate's `ca_file` trusts.
    pub cert_pem: String,
    handle: axum_server::Handle<SocketAddr>,
}

impl HttpsReceiver {
    pub async fn start() -> HttpsReceiver {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_pem = key.cert.pem();
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.clone().into_bytes(),
            key.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let port = crate::kit::free_port();
        let log = Log::default();
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (l, s, d) = (log.clone(), status.clone(), delay_ms.clone());
        let app = axum::Router::new().route(
            "/cdr",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (log, status, delay) = (l.clone(), s.clone(), d.clone());
                    async move {
                        let delay = delay.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        let header = |n: &str| {
                            headers
                                .get(n)
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default()
                        };
                        let code = status.load(Ordering::SeqCst);
                        log.auth.lock().unwrap().push(header("authorization"));
                        if code == 200 {
                            assert!(header("content-type").starts_with("application/json"));
                            log.signed
                                .lock()
                                .unwrap()
                                .push((header("x-pbxgate-signature"), body.to_vec()));
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            let at = Instant::now();
                            let key = header("idempotency-key");
                            for entry in v["cdr_root"].as_array().unwrap() {
                                for record in legs_of(entry) {
                                    log.records.lock().unwrap().push(Got {
                                        record,
                                        key: key.clone(),
                                        at,
                                    });
                                }
                            }
                        }
                        axum::http::StatusCode::from_u16(code).unwrap()
                    }
                },
            ),
        );
        let handle = axum_server::Handle::new();
        let server = axum_server::bind_rustls(SocketAddr::from(([127, 0, 0, 1], port)), config)
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        crate::kit::wait_until(
            "the HTTPS receiver to listen",
            Duration::from_secs(5),
            async || {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map(|_| ())
                    .map_err(|e| crate::kit::Text(e.to_string()))
            },
        )
        .await;
        HttpsReceiver {
            port,
            log,
            status,
            delay_ms,
            cert_pem,
            handle,
        }
    }
}

impl Drop for HttpsReceiver {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}
