//! What Asterisk's channel names say.

/// `PJSIP/1000-0000001a` -> `1000`; `PJSIP/trunk-00000003` -> `trunk`;
/// `Local/1000@ctx-00000001;2` -> `1000`; `DAHDI/1-1` -> `1`.
pub fn channel_ext(channel: &str) -> String {
    let Some((_, resource)) = channel.split_once('/') else {
        return String::new();
    };
    let resource = resource.split(';').next().unwrap_or(resource);
    let base = match resource.rsplit_once('-') {
        Some((base, suffix))
            if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            base
        }
        _ => resource,
    };
    base.split('@').next().unwrap_or(base).to_owned()
}

#[cfg(test)]
mod tests {
    use super::channel_ext;

    #[test]
    fn endpoint_of_a_channel_name() {
        assert_eq!(channel_ext(""), "");
        assert_eq!(channel_ext("DAHDI/1-1"), "1");
        assert_eq!(channel_ext("Local/1000@test-00000001;2"), "1000");
        assert_eq!(channel_ext("PJSIP/1000-0000001a"), "1000");
        assert_eq!(channel_ext("PJSIP/my-trunk-00000003"), "my-trunk");
    }
}
