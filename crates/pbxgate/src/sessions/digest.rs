//! HTTP authentication of the old API: Digest (MD5, `qop=auth` or none) and
//! pre-emptive Basic with `[https_api_old]`'s username and password.
//!
//! Nonces are minted by [`NonceKey`] (issue time under an HMAC), so a 401
//! costs no memory. A nonce is valid for [`NONCE_TTL_SECS`]; its first use
//! enters the [`NonceBook`], which then requires every later use to carry a
//! higher `nc` (a nonce used without `qop` is single-use). The book is
//! bounded: when it is full of live nonces, the oldest is dropped and every
//! nonce issued no later than it becomes stale, so a replay is never let
//! through, it only costs a client one more challenge.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, Method, header};
use ucm::httpauth::{self, Credentials, NonceKey};

use crate::config::OldApiSettings;

/// Seconds a nonce may be used after it was issued.
pub const NONCE_TTL_SECS: u64 = 300;
/// Nonces remembered at most (an entry is about 100 bytes).
const BOOK_CAPACITY: usize = 16_384;
/// Addresses with a failed attempt not yet followed by a success, at most.
const FAILED_CAPACITY: usize = 4_096;
/// The realm of both challenges.
pub const REALM: &str = "pbxgate";

/// The per-process authentication state of the old API; it outlives
/// listener restarts, so a reload does not invalidate clients' nonces.
pub struct Authenticator {
    key: NonceKey,
    opaque: String,
    clock: Instant,
    book: Mutex<NonceBook>,
    /// Addresses whose last attempt failed: their next success is recorded
    /// (clearing the login restriction's count) — one write, not one per request.
    failed: Mutex<HashSet<IpAddr>>,
}

/// What a request's credentials amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right credentials, for this user.
    Ok(String),
    /// No credentials, or unusable ones (malformed, unsupported algorithm):
    /// challenge again; not counted as a failed login.
    Challenge(&'static str),
    /// Right Digest response on a nonce that is expired, replayed or not ours.
    Stale(String),
    /// Wrong user name or password: counted as a failed login.
    Wrong(String, &'static str),
    /// The password is empty: nothing can succeed.
    NoPassword(String),
    /// The Digest `uri` is not the request's.
    UriMismatch(String),
}

impl Authenticator {
    pub fn new(key: [u8; 32]) -> Authenticator {
        let key = NonceKey::new(key);
        Authenticator {
            opaque: key.opaque(),
            key,
            clock: Instant::now(),
            book: Mutex::new(NonceBook::default()),
            failed: Mutex::new(HashSet::new()),
        }
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_secs()
    }

    /// The `WWW-Authenticate` values of a 401: Digest first (clients that
    /// can do both, python-requests and curl's "any", pick it), then Basic.
    pub fn challenges(&self, random: u64, stale: bool) -> [String; 2] {
        let nonce = self.key.mint(self.now(), random);
        [
            httpauth::digest_challenge(REALM, &nonce, &self.opaque, stale),
            httpauth::basic_challenge(REALM),
        ]
    }

    /// Checks a request's `Authorization` header against `settings`.
    pub fn check(
        &self,
        settings: &OldApiSettings,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
    ) -> Verdict {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Verdict::Challenge("no credentials");
        };
        let Ok(value) = value.to_str() else {
            return Verdict::Challenge("Authorization header is not text");
        };
        let credentials = match httpauth::parse_authorization(value) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(reason = %e, "old API: unusable Authorization header");
                return Verdict::Challenge("unusable Authorization header");
            }
        };
        // As it goes to the log and the audit trail: bounded.
        let presented: String = match &credentials {
            Credentials::Basic(b) => b.username.chars().take(128).collect(),
            Credentials::Digest(d) => d.username.chars().take(128).collect(),
        };
        if settings.password.is_empty() {
            return Verdict::NoPassword(presented);
        }
        let ha1 = httpauth::ha1(&settings.username, REALM, settings.password.expose());
        match credentials {
            Credentials::Basic(b) => {
                let right = b.verify(&ha1, REALM);
                if b.username != settings.username {
                    Verdict::Wrong(presented, "unknown-user")
                } else if right {
                    Verdict::Ok(presented)
                } else {
                    Verdict::Wrong(presented, "wrong-password")
                }
            }
            Credentials::Digest(d) => {
                if !uri_matches(&d.uri, target) {
                    return Verdict::UriMismatch(presented);
                }
                let right = d.verify(&ha1, method.as_str());
                if d.username != settings.username {
                    return Verdict::Wrong(presented, "unknown-user");
                }
                if !right {
                    return Verdict::Wrong(presented, "wrong-password");
                }
                let ours = d.opaque.as_deref().is_none_or(|o| o == self.opaque);
                let issued = self.key.check(&d.nonce).filter(|_| ours);
                let fresh = issued.is_some_and(|issued| {
                    self.book.lock().is_ok_and(|mut book| {
                        book.use_nonce(&d.nonce, issued, d.nc.as_ref().map(|n| n.1), self.now())
                    })
                });
                if fresh {
                    Verdict::Ok(presented)
                } else {
                    Verdict::Stale(presented)
                }
            }
        }
    }

    /// Remembers a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        if let Ok(mut set) = self.failed.lock()
            && set.len() < FAILED_CAPACITY
        {
            set.insert(ip);
        }
    }

    /// Whether `ip` had failed before this success (then forgets it).
    pub fn succeeded_after_failure(&self, ip: IpAddr) -> bool {
        self.failed.lock().is_ok_and(|mut set| set.remove(&ip))
    }
}

/// Whether a Digest `uri` names the request target (RFC 7616 §3.4.6): the
/// same text, or the absolute form of it.
fn uri_matches(uri: &str, target: &str) -> bool {
    if uri == target {
        return true;
    }
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"));
    rest.and_then(|r| r.find('/').map(|i| &r[i..])) == Some(target)
}

/// The nonces in use and the highest `nc` seen with each.
#[derive(Default)]
pub struct NonceBook {
    seen: HashMap<String, (u64, u32)>,
    /// Nonces issued at or before this time that are not in `seen` are stale
    /// (they may have been evicted).
    floor: Option<u64>,
}

impl NonceBook {
    /// Whether this use of `nonce` (issued at `issued`) is acceptable at
    /// `now`: not expired, and its `nc` higher than any before; `nc` `None`
    /// (no qop) allows a single use.
    pub fn use_nonce(&mut self, nonce: &str, issued: u64, nc: Option<u32>, now: u64) -> bool {
        if issued > now || now - issued > NONCE_TTL_SECS {
            self.seen.remove(nonce);
            return false;
        }
        if let Some((_, last)) = self.seen.get_mut(nonce) {
            return match nc {
                Some(n) if n > *last => {
                    *last = n;
                    true
                }
                _ => false,
            };
        }
        if nc == Some(0) || self.floor.is_some_and(|f| issued <= f) {
            return false;
        }
        if self.seen.len() >= BOOK_CAPACITY {
            self.seen
                .retain(|_, (t, _)| now.saturating_sub(*t) <= NONCE_TTL_SECS);
        }
        if self.seen.len() >= BOOK_CAPACITY {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(n, (t, _))| (n.clone(), *t));
            if let Some((n, t)) = oldest {
                self.seen.remove(&n);
                self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
                if issued <= t {
                    return false;
                }
            }
        }
        self.seen
            .insert(nonce.to_owned(), (issued, nc.unwrap_or(u32::MAX)));
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nc_must_increase_and_nonces_expire() {
        let mut b = NonceBook::default();
        assert!(b.use_nonce("a", 10, Some(1), 10));
        assert!(b.use_nonce("a", 10, Some(2), 11));
        assert!(!b.use_nonce("a", 10, Some(2), 11), "replayed nc");
        assert!(!b.use_nonce("a", 10, Some(1), 11), "older nc");
        assert!(b.use_nonce("a", 10, Some(7), 12), "gaps are fine");
        assert!(!b.use_nonce("b", 10, Some(0), 12), "nc starts at 1");
        // Expiry: 300 s after issue.
        assert!(b.use_nonce("a", 10, Some(8), 10 + NONCE_TTL_SECS));
        assert!(!b.use_nonce("a", 10, Some(9), 11 + NONCE_TTL_SECS));
        assert!(!b.use_nonce("c", 10, Some(1), 11 + NONCE_TTL_SECS));
        // Issued in the future (cannot happen with our own clock).
        assert!(!b.use_nonce("d", 50, Some(1), 40));
    }

    #[test]
    fn without_qop_a_nonce_is_single_use() {
        let mut b = NonceBook::default();
        assert!(b.use_nonce("x", 0, None, 1));
        assert!(!b.use_nonce("x", 0, None, 1));
        assert!(!b.use_nonce("x", 0, Some(5), 1));
    }

    #[test]
    fn the_book_is_bounded_and_never_lets_a_replay_through() {
        let mut b = NonceBook::default();
        for i in 0..BOOK_CAPACITY as u64 {
            assert!(b.use_nonce(&format!("n{i}"), i / 100, Some(1), 200));
        }
        assert_eq!(b.len(), BOOK_CAPACITY);
        // Full of live nonces: the oldest (issued at 0) goes, and with it
        // every nonce issued at or before 0.
        assert!(b.use_nonce("new", 150, Some(1), 200));
        assert_eq!(b.len(), BOOK_CAPACITY);
        // Whether still in the book or evicted, a replay of the nonces
        // issued at 0 is refused, and so is a never-used one from then.
        for i in 0..100 {
            assert!(!b.use_nonce(&format!("n{i}"), 0, Some(1), 200), "n{i}");
        }
        assert!(!b.use_nonce("unseen-old", 0, Some(1), 200));
        // Later, expired entries are dropped first.
        assert!(b.use_nonce("later", 400, Some(1), 400));
        assert!(b.len() < BOOK_CAPACITY);
    }

    fn settings(password: &str) -> OldApiSettings {
        OldApiSettings {
            enable: true,
            bind: "127.0.0.1:8443".parse().unwrap(),
            tls: None,
            username: "cdrapi".into(),
            password: crate::config::Secret::new(password),
            permitted_ips: crate::acl::Acl::default(),
            permitted_ips_text: Vec::new(),
            enable_pmsapi: false,
            recordings_listing: None,
        }
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    /// A Digest client's Authorization for the challenge's nonce.
    fn answer(challenge: &str, user: &str, pw: &str, uri: &str, nc: u32) -> String {
        let p = httpauth::parse_auth_params(challenge.trim_start_matches("Digest ")).unwrap();
        let get = |k: &str| p.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let ha1 = httpauth::ha1(user, &get("realm"), pw);
        let md5 = |s: String| hex_md5(&s);
        let ha2 = md5(format!("GET:{uri}"));
        let nc = format!("{nc:08x}");
        let resp = md5(format!(
            "{}:{}:{nc}:abc:auth:{ha2}",
            std::str::from_utf8(&ha1).unwrap(),
            get("nonce")
        ));
        format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", qop=auth, nc={nc}, cnonce=\"abc\", response=\"{resp}\", opaque=\"{}\"",
            get("realm"),
            get("nonce"),
            get("opaque")
        )
    }

    fn hex_md5(s: &str) -> String {
        use md5::Digest;
        ucm::auth::hex(&md5::Md5::digest(s.as_bytes()))
    }

    #[test]
    fn verdicts() {
        let a = Authenticator::new([3; 32]);
        let s = settings("secret");
        let get = Method::GET;
        let [digest, basic] = a.challenges(1, false);
        assert!(digest.starts_with("Digest realm=\"pbxgate\", qop=\"auth\", nonce=\""));
        assert!(digest.ends_with("algorithm=MD5"));
        assert_eq!(basic, "Basic realm=\"pbxgate\"");
        let target = "/cdrapi?format=json";
        let check = |h: &str| a.check(&s, &get, target, &headers(h));
        assert_eq!(
            a.check(&s, &get, target, &HeaderMap::new()),
            Verdict::Challenge("no credentials")
        );
        let ok = answer(&digest, "cdrapi", "secret", target, 1);
        assert_eq!(check(&ok), Verdict::Ok("cdrapi".into()));
        assert_eq!(check(&ok), Verdict::Stale("cdrapi".into()), "replay");
        assert_eq!(
            check(&answer(&digest, "cdrapi", "secret", target, 2)),
            Verdict::Ok("cdrapi".into())
        );
        assert_eq!(
            check(&answer(&digest, "cdrapi", "wrong", target, 3)),
            Verdict::Wrong("cdrapi".into(), "wrong-password")
        );
        assert_eq!(
            check(&answer(&digest, "other", "secret", target, 3)),
            Verdict::Wrong("other".into(), "unknown-user")
        );
        assert_eq!(
            check(&answer(&digest, "cdrapi", "secret", "/cdrapi", 4)),
            Verdict::UriMismatch("cdrapi".into())
        );
        // A nonce of another key (another process) with a right response: stale.
        let other = Authenticator::new([4; 32]);
        let [foreign, _] = other.challenges(1, false);
        let foreign = answer(&foreign, "cdrapi", "secret", target, 1);
        assert_eq!(check(&foreign), Verdict::Stale("cdrapi".into()));
        // Basic: "cdrapi:secret", "cdrapi:nope", "x:secret".
        assert_eq!(
            check("Basic Y2RyYXBpOnNlY3JldA=="),
            Verdict::Ok("cdrapi".into())
        );
        assert_eq!(
            check("Basic Y2RyYXBpOm5vcGU="),
            Verdict::Wrong("cdrapi".into(), "wrong-password")
        );
        assert_eq!(
            check("Basic eDpzZWNyZXQ="),
            Verdict::Wrong("x".into(), "unknown-user")
        );
        assert!(matches!(check("Negotiate abc"), Verdict::Challenge(_)));
        assert!(uri_matches("https://h:8443/cdrapi?format=json", target));
        assert!(!uri_matches("https://h:8443/recapi", target));
        // No password configured: nothing passes.
        let empty = settings("");
        assert_eq!(
            a.check(&empty, &get, target, &headers("Basic Y2RyYXBpOg==")),
            Verdict::NoPassword("cdrapi".into())
        );
    }
}
