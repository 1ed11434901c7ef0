//! HTTP authentication of the old API (spec §8): the `Authorization` header
//! for Basic (RFC 7617) and Digest (RFC 7616, 2617 and 2069: MD5 and MD5-sess,
//! `qop=auth` or none), the response a Digest client must have computed, the
//! `WWW-Authenticate` challenges, and nonces that carry their issue time under
//! an HMAC-MD5, so that a server keeps no state per challenge. No I/O.
//!
//! Everything secret (passwords, HA1 values, the nonce key) is compared in
//! constant time and never shown by `Debug`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit as _, Mac as _};
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

use crate::auth::hex;

/// Longest `Authorization` value looked at; longer ones are refused unparsed.
pub const MAX_HEADER_LEN: usize = 4096;
/// Most auth-params in one Digest header (a client sends about ten).
const MAX_PARAMS: usize = 32;

/// What a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic(Basic),
    Digest(DigestResponse),
}

/// `Authorization: Basic base64(user:password)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    pub username: String,
    password: String,
}

impl Basic {
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
}

/// `Authorization: Digest …`, checked for the parameters its `qop` needs.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// Lower-case hex, 32 characters.
    response: String,
    pub algorithm: Algorithm,
    /// `Some` for `qop=auth`: the nonce count as sent (8 hex digits) and its value.
    pub nc: Option<(String, u32)>,
    /// The client nonce (required with `qop=auth` and MD5-sess).
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

impl std::fmt::Debug for DigestResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestResponse")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .field("nc", &self.nc.as_ref().map(|(_, n)| n))
            .finish_non_exhaustive()
    }
}

/// Why an `Authorization` header is not usable. Messages quote no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Authorization header longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("unsupported authentication scheme (Digest or Basic expected)")]
    UnknownScheme,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("Digest parameter {0} is missing")]
    Missing(&'static str),
    #[error("Digest parameter {0} given twice")]
    Duplicate(String),
    #[error("unsupported Digest algorithm (MD5 or MD5-sess expected)")]
    Algorithm,
    #[error("unsupported Digest qop (auth expected)")]
    Qop,
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Credentials, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong);
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    let rest = rest.trim_start_matches([' ', '\t']);
    if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest).map(Credentials::Basic)
    } else if scheme.eq_ignore_ascii_case("digest") {
        parse_digest(rest).map(Credentials::Digest)
    } else {
        Err(HeaderError::UnknownScheme)
    }
}

fn parse_basic(token: &str) -> Result<Basic, HeaderError> {
    let bytes = base64_decode(token.trim()).ok_or(HeaderError::Malformed("invalid base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| HeaderError::Malformed("not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or(HeaderError::Malformed("no ':' in Basic credentials"))?;
    Ok(Basic {
        username: user.to_owned(),
        password: password.to_owned(),
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `#auth-param`: `name=token` or `name="quoted string"`, comma-separated,
/// empty list elements allowed. Names are lower-cased.
pub fn parse_auth_params(s: &str) -> Result<Vec<(String, String)>, HeaderError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|&c| c == b' ' || c == b'\t') {
            *i += 1;
        }
    };
    loop {
        // Separators and empty elements.
        while b
            .get(i)
            .is_some_and(|&c| c == b' ' || c == b'\t' || c == b',')
        {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while b.get(i).is_some_and(|&c| is_tchar(c)) {
            i += 1;
        }
        if i == start {
            return Err(HeaderError::Malformed("expected a parameter name"));
        }
        let name = s[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(HeaderError::Malformed(
                "expected '=' after a parameter name",
            ));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(HeaderError::Malformed("unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let &c = b
                            .get(i + 1)
                            .ok_or(HeaderError::Malformed("unterminated quoted string"))?;
                        // quoted-pair: HTAB, SP, VCHAR, obs-text only.
                        if c != b'\t' && (c < 0x20 || c == 0x7f) {
                            return Err(HeaderError::Malformed("control character"));
                        }
                        v.push(c);
                        i += 2;
                    }
                    Some(&c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                        v.push(c);
                        i += 1;
                    }
                    Some(_) => return Err(HeaderError::Malformed("control character")),
                }
            }
            String::from_utf8(v).map_err(|_| HeaderError::Malformed("not UTF-8"))?
        } else {
            let vs = i;
            while b.get(i).is_some_and(|&c| is_tchar(c)) {
                i += 1;
            }
            s[vs..i].to_owned()
        };
        skip_ws(&mut i);
        match b.get(i) {
            None | Some(b',') => {}
            Some(_) => return Err(HeaderError::Malformed("expected ',' between parameters")),
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(HeaderError::Duplicate(name));
        }
        if out.len() == MAX_PARAMS {
            return Err(HeaderError::Malformed("too many parameters"));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn parse_digest(rest: &str) -> Result<DigestResponse, HeaderError> {
    let params = parse_auth_params(rest)?;
    let take = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if take("username*").is_some() || take("userhash").is_some_and(|v| v != "false") {
        return Err(HeaderError::Malformed(
            "username* and userhash are not supported",
        ));
    }
    let required = |name: &'static str| take(name).ok_or(HeaderError::Missing(name));
    let algorithm = match take("algorithm") {
        None => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("md5") => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("md5-sess") => Algorithm::Md5Sess,
        Some(_) => return Err(HeaderError::Algorithm),
    };
    let qop = match take("qop") {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("auth") => true,
        Some(_) => return Err(HeaderError::Qop),
    };
    let response = required("response")?.to_ascii_lowercase();
    if response.len() != 32 || !response.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(HeaderError::Malformed("response is not 32 hex digits"));
    }
    let cnonce = take("cnonce");
    let nc = if qop {
        let text = required("nc")?;
        if text.len() != 8 || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(HeaderError::Malformed("nc is not 8 hex digits"));
        }
        let value = u32::from_str_radix(&text, 16)
            .map_err(|_| HeaderError::Malformed("nc is not 8 hex digits"))?;
        if cnonce.is_none() {
            return Err(HeaderError::Missing("cnonce"));
        }
        Some((text, value))
    } else {
        None
    };
    if algorithm == Algorithm::Md5Sess && cnonce.is_none() {
        return Err(HeaderError::Missing("cnonce"));
    }
    Ok(DigestResponse {
        username: required("username")?,
        realm: required("realm")?,
        nonce: required("nonce")?,
        uri: required("uri")?,
        response,
        algorithm,
        nc,
        cnonce,
        opaque: take("opaque"),
    })
}

fn md5_hex(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(hex(&h.finalize()).as_bytes());
    out
}

/// HA1 = MD5(username:realm:password), lower-case hex.
pub fn ha1(username: &str, realm: &str, password: &str) -> [u8; 32] {
    md5_hex(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

impl DigestResponse {
    /// The response a client that knows the password behind `ha1` sends for
    /// a request with `method`.
    pub fn expected(&self, ha1: &[u8; 32], method: &str) -> [u8; 32] {
        let cnonce = self.cnonce.as_deref().unwrap_or("").as_bytes();
        let ha1 = match self.algorithm {
            Algorithm::Md5 => *ha1,
            Algorithm::Md5Sess => md5_hex(&[ha1, self.nonce.as_bytes(), cnonce]),
        };
        let ha2 = md5_hex(&[method.as_bytes(), self.uri.as_bytes()]);
        match &self.nc {
            Some((nc, _)) => md5_hex(&[
                &ha1,
                self.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce,
                b"auth",
                &ha2,
            ]),
            None => md5_hex(&[&ha1, self.nonce.as_bytes(), &ha2]),
        }
    }

    /// Whether the client's response is right, compared in constant time.
    pub fn verify(&self, ha1: &[u8; 32], method: &str) -> bool {
        bool::from(self.expected(ha1, method).ct_eq(self.response.as_bytes()))
    }
}

impl Basic {
    /// Whether the password is the one behind `ha1` (for `username` in
    /// `realm`), compared in constant time whatever the lengths.
    pub fn verify(&self, ha1_expected: &[u8; 32], realm: &str) -> bool {
        bool::from(ha1(&self.username, realm, &self.password).ct_eq(ha1_expected))
    }
}

/// A quoted-string (`"` and `\` escaped).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `Digest realm="…", qop="auth", nonce="…", opaque="…", algorithm=MD5[, stale=true]`.
pub fn digest_challenge(realm: &str, nonce: &str, opaque: &str, stale: bool) -> String {
    format!(
        "Digest realm={}, qop=\"auth\", nonce={}, opaque={}, algorithm=MD5{}",
        quote(realm),
        quote(nonce),
        quote(opaque),
        if stale { ", stale=true" } else { "" }
    )
}

/// `Basic realm="…"`.
pub fn basic_challenge(realm: &str) -> String {
    format!("Basic realm={}", quote(realm))
}

/// The key nonces are authenticated with: HMAC-MD5 under 32 secret bytes.
#[derive(Clone)]
pub struct NonceKey(Hmac<Md5>);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

const NONCE_LEN: usize = 64;

impl NonceKey {
    pub fn new(bytes: [u8; 32]) -> NonceKey {
        NonceKey(hmac_md5_key(&bytes))
    }

    fn mac(&self, msg: &[u8]) -> [u8; 16] {
        let mut mac = self.0.clone();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    /// A nonce: 16 hex digits of `issued` (any clock the caller keeps), 16
    /// of `random`, then 32 of the HMAC of both.
    pub fn mint(&self, issued: u64, random: u64) -> String {
        let body = format!("{issued:016x}{random:016x}");
        let mac = hex(&self.mac(body.as_bytes()));
        body + &mac
    }

    /// The issue time of a nonce this key minted; `None` for anything else.
    pub fn check(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return None;
        }
        let (body, mac) = nonce.split_at(32);
        let expected = hex(&self.mac(body.as_bytes()));
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        u64::from_str_radix(&body[..16], 16).ok()
    }

    /// The `opaque` value of this key's challenges.
    pub fn opaque(&self) -> String {
        hex(&self.mac(b"opaque"))
    }
}

/// HMAC (RFC 2104) over MD5 keyed with `key`. A key shorter than MD5's
/// 64-byte block is zero-padded to it by HMAC itself, so passing the padded
/// block is the same key, and takes the infallible constructor.
fn hmac_md5_key(key: &[u8; 32]) -> Hmac<Md5> {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    Hmac::<Md5>::new(&block.into())
}

/// Standard alphabet, no padding (it is stripped first), and non-zero bits
/// after the last byte ignored: as lenient as the decoder this replaced.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 (RFC 4648 §4), padding optional: any run of trailing `=`
/// is dropped before decoding.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(h: &str) -> DigestResponse {
        match parse_authorization(h).unwrap() {
            Credentials::Digest(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc2617_example() {
        let d = digest(
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        assert_eq!(d.username, "Mufasa");
        assert_eq!(d.nc.as_ref().unwrap().1, 1);
        assert_eq!(
            d.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let h = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert!(d.verify(&h, "GET"));
        assert!(!d.verify(&h, "HEAD"));
        assert!(!d.verify(
            &ha1("Mufasa", "testrealm@host.com", "Circle of Life"),
            "GET"
        ));
    }

    #[test]
    fn rfc2069_without_qop() {
        // RFC 2069's example (its published response has a typo; this one is computed).
        let h = ha1("Mufasa", "testrealm@host.com", "CircleOfLife");
        let ha2 = md5_hex(&[b"GET", b"/dir/index.html"]);
        let resp = md5_hex(&[&h, b"dcd98b7102dd2f0e8b11d0f600bfb0c093", &ha2]);
        let d = digest(&format!(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", response=\"{}\"",
            std::str::from_utf8(&resp).unwrap().to_uppercase()
        ));
        assert!(d.nc.is_none());
        assert!(d.verify(&h, "GET"));
    }

    #[test]
    fn md5_sess() {
        let h = ha1("u", "r", "p");
        let sess = md5_hex(&[&h, b"n", b"c"]);
        let ha2 = md5_hex(&[b"GET", b"/x"]);
        let resp = md5_hex(&[&sess, b"n", b"00000002", b"c", b"auth", &ha2]);
        let d = digest(&format!(
            "Digest username=u,realm=r,nonce=n,uri=\"/x\",algorithm=MD5-sess,qop=auth,nc=00000002,cnonce=c,response={}",
            std::str::from_utf8(&resp).unwrap()
        ));
        assert_eq!(d.algorithm, Algorithm::Md5Sess);
        assert!(d.verify(&h, "GET"));
    }

    #[test]
    fn refusals() {
        let base = r#"username="u", realm="r", nonce="n", uri="/", response="00000000000000000000000000000000""#;
        for (h, want) in [
            ("Bearer abc", HeaderError::UnknownScheme),
            (
                &format!("Digest {base}, algorithm=SHA-256") as &str,
                HeaderError::Algorithm,
            ),
            (&format!("Digest {base}, qop=auth-int"), HeaderError::Qop),
            (
                &format!("Digest {base}, qop=auth, cnonce=x"),
                HeaderError::Missing("nc"),
            ),
            (
                &format!("Digest {base}, qop=auth, nc=00000001"),
                HeaderError::Missing("cnonce"),
            ),
            (
                &format!("Digest {base}, qop=auth, nc=1, cnonce=x"),
                HeaderError::Malformed("nc is not 8 hex digits"),
            ),
            (
                r#"Digest realm="r", nonce="n", uri="/", response="00000000000000000000000000000000""#,
                HeaderError::Missing("username"),
            ),
            (
                &format!("Digest {base}, username=x"),
                HeaderError::Duplicate("username".into()),
            ),
            (
                "Digest username=\"u",
                HeaderError::Malformed("unterminated quoted string"),
            ),
            ("Basic !!!!", HeaderError::Malformed("invalid base64")),
            (
                "Basic dXNlcg==",
                HeaderError::Malformed("no ':' in Basic credentials"),
            ),
        ] {
            assert_eq!(parse_authorization(h), Err(want), "{h}");
        }
        assert_eq!(
            parse_authorization(&"x".repeat(MAX_HEADER_LEN + 1)),
            Err(HeaderError::TooLong)
        );
    }

    #[test]
    fn basic() {
        // curl -u 'cdrapi:pa:ss w'
        let Credentials::Basic(b) = parse_authorization("basic Y2RyYXBpOnBhOnNzIHc=").unwrap()
        else {
            panic!()
        };
        assert_eq!(b.username, "cdrapi");
        assert_eq!(b.password(), "pa:ss w");
        assert!(!format!("{b:?}").contains("pa:ss"));
        let h = ha1("cdrapi", "R", "pa:ss w");
        assert!(b.verify(&h, "R"));
        assert!(!b.verify(&ha1("cdrapi", "R", "pa:ss"), "R"));
    }

    #[test]
    fn quoted_strings_and_spacing() {
        let p = parse_auth_params(r#" a = "x\"y\\z" ,, b=tok ,c="""#).unwrap();
        assert_eq!(
            p,
            vec![
                ("a".into(), "x\"y\\z".into()),
                ("b".into(), "tok".into()),
                ("c".into(), String::new())
            ]
        );
        assert!(parse_auth_params("a=b c=d").is_err());
        assert!(parse_auth_params("a=\"x\\\ny\"").is_err());
        assert!(parse_auth_params("a=\"x\ny\"").is_err());
        assert!(parse_auth_params("=b").is_err());
    }

    #[test]
    fn challenges() {
        assert_eq!(
            digest_challenge("pbx\"gate", "n", "o", true),
            r#"Digest realm="pbx\"gate", qop="auth", nonce="n", opaque="o", algorithm=MD5, stale=true"#
        );
        assert_eq!(basic_challenge("r"), r#"Basic realm="r""#);
    }

    #[test]
    fn nonces() {
        let key = NonceKey::new([7; 32]);
        let n = key.mint(1234, 99);
        assert_eq!(n.len(), NONCE_LEN);
        assert_eq!(key.check(&n), Some(1234));
        assert_ne!(key.mint(1234, 100), n);
        let other = NonceKey::new([8; 32]);
        assert_eq!(other.check(&n), None);
        let mut tampered = n.clone().into_bytes();
        tampered[15] = if tampered[15] == b'0' { b'1' } else { b'0' };
        assert_eq!(key.check(std::str::from_utf8(&tampered).unwrap()), None);
        assert_eq!(key.check("short"), None);
        assert_eq!(key.check(&"é".repeat(32)), None);
        assert_eq!(key.opaque().len(), 32);
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn hmac_md5_rfc2202() {
        // RFC 2202 test case 2 uses a short key; ours are 32 bytes, zero-padded
        // to the block like any short key, so the same vector applies.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&NonceKey::new(key).mac(b"what do ya want for nothing?")),
            "750c783e6ab0b503eaa86e310a5db738"
        );
    }

    #[test]
    fn random_headers_never_panic() {
        const TOKENS: &[&str] = &[
            "Digest ",
            "Basic ",
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "qop",
            "nc",
            "cnonce",
            "opaque",
            "algorithm",
            "=",
            "\"",
            "\\",
            ",",
            " ",
            "\t",
            "auth",
            "MD5-sess",
            "00000001",
            "0123456789abcdef0123456789abcdef",
            "Y2RyYXBpOnB3",
            "==",
            ":",
            "é",
            "\u{0}",
        ];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let key = NonceKey::new([1; 32]);
        for _ in 0..20_000 {
            let len = next(24);
            let s: String = (0..len).map(|_| TOKENS[next(TOKENS.len())]).collect();
            match parse_authorization(&s) {
                Ok(Credentials::Digest(d)) => {
                    let h = ha1(&d.username, &d.realm, "pw");
                    let _ = d.verify(&h, "GET");
                    assert!(!digest_challenge(&d.realm, &d.nonce, "o", false).contains('\n'));
                }
                Ok(Credentials::Basic(b)) => {
                    assert!(b.verify(&ha1(&b.username, "r", b.password()), "r"))
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            assert_eq!(key.check(&s), None);
            let _ = base64_decode(&s);
        }
    }

    #[test]
    fn base64() {
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(enc).unwrap(), dec.as_bytes(), "{enc}");
        }
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Zm9v!").is_none());
        // Lenient where clients differ: surplus padding, unused low bits.
        assert_eq!(base64_decode("Zm9v==").unwrap(), b"foo");
        assert_eq!(base64_decode("Zg=").unwrap(), b"f");
        assert_eq!(base64_decode("Zh==").unwrap(), b"f");
        // Strict elsewhere: padding inside, whitespace, URL-safe alphabet.
        assert!(base64_decode("Zg==Zg==").is_none());
        assert!(base64_decode("Zm9v YmFy").is_none());
        assert!(base64_decode("-_8=").is_none());
    }
}
