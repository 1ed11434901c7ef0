//! Formats of the UCM login flow: the 16-digit challenge, the MD5 token and
//! the `sid<digits>-<digits>` session cookie.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// The challenge is a 16-character, zero-padded decimal string.
pub fn format_challenge(random: u64) -> String {
    format!("{:016}", random % 10_000_000_000_000_000)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The bytes of a hex string (either case); `None` for an odd length or a
/// character that is not a hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// The token a client sends: lowercase hex MD5 of `challenge + password`.
pub fn login_token(challenge: &str, password: &[u8]) -> [u8; 32] {
    let mut hasher = Md5::new();
    hasher.update(challenge.as_bytes());
    hasher.update(password);
    let mut out = [0u8; 32];
    out.copy_from_slice(hex(&hasher.finalize()).as_bytes());
    out
}

/// Compares a presented token with the expected lowercase hex token in constant
/// time. Upper-case hex is accepted: some clients send it.
pub fn token_matches(expected: &[u8; 32], presented: &str) -> bool {
    let presented = presented.as_bytes();
    if presented.len() != 32 {
        return false;
    }
    let mut lowered = [0u8; 32];
    for (dst, src) in lowered.iter_mut().zip(presented) {
        *dst = src.to_ascii_lowercase();
    }
    bool::from(lowered.ct_eq(expected))
}

/// The session cookie: `sid<random>-<unix seconds>`, as the UCM formats it.
pub fn format_cookie(random: u64, unix_secs: i64) -> String {
    format!("sid{random}-{unix_secs}")
}

/// Whether a string has the cookie shape; anything else is refused before any
/// look-up.
pub fn is_cookie_syntax(cookie: &str) -> bool {
    let Some(rest) = cookie.strip_prefix("sid") else {
        return false;
    };
    let Some((a, b)) = rest.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 24 && s.bytes().all(|c| c.is_ascii_digit());
    digits(a) && digits(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_is_sixteen_zero_padded_digits() {
        assert_eq!(format_challenge(1_496_038_514), "0000001496038514");
        assert_eq!(format_challenge(u64::MAX).len(), 16);
        assert_eq!(format_challenge(0), "0000000000000000");
    }

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn unhex_reverses_hex_and_refuses_the_rest() {
        assert_eq!(unhex("000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(unhex(&hex(&[1, 2, 254])), Some(vec![1, 2, 254]));
        assert_eq!(unhex(""), Some(vec![]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("+1"), None);
    }

    #[test]
    fn token_is_md5_of_challenge_and_password() {
        // md5("0000001496038514secret") computed independently with coreutils md5sum.
        let t = login_token("0000001496038514", b"secret");
        assert_eq!(
            std::str::from_utf8(&t).unwrap(),
            "04f185ee5bc1d1878fe152a399b631d8"
        );
    }

    #[test]
    fn token_compare_accepts_upper_case_and_rejects_others() {
        let t = login_token("0000000000000001", b"pw");
        let lower = std::str::from_utf8(&t).unwrap().to_owned();
        assert!(token_matches(&t, &lower));
        assert!(token_matches(&t, &lower.to_ascii_uppercase()));
        assert!(!token_matches(&t, &lower[..31]));
        assert!(!token_matches(&t, ""));
        let mut wrong = lower.clone().into_bytes();
        wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
        assert!(!token_matches(&t, std::str::from_utf8(&wrong).unwrap()));
    }

    #[test]
    fn cookie_shape() {
        let c = format_cookie(743_052_864, 1_771_597_757);
        assert_eq!(c, "sid743052864-1771597757");
        assert!(is_cookie_syntax(&c));
        for bad in [
            "", "sid", "sid1", "sid-1", "sid1-", "xid1-2", "sid1-2-3", "sida-1", "sid1-2 ",
        ] {
            assert!(!is_cookie_syntax(bad), "{bad}");
        }
    }
}
