//! Permitted IP(s) lists as the UCM writes them (`192.168.1.10/255.255.255.255`)
//! and as operators write them today (`10.0.0.0/8`, `2001:db8::/32`, a bare IP).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A list of networks. What an empty list means (all allowed on the new API,
/// all denied on the old one) is decided by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    nets: Vec<IpNet>,
}

impl Acl {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Acl, (usize, String)> {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            nets.push(parse_entry(e.as_ref()).map_err(|msg| (i, msg))?);
        }
        Ok(Acl { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The new-API rule: an empty list permits everybody.
    pub fn permits_or_empty(&self, ip: IpAddr) -> bool {
        self.is_empty() || self.contains(ip)
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// One entry: `ip`, `ip/prefix` or IPv4 `ip/netmask`. Host bits are allowed
/// (the UCM accepts `192.168.1.10/255.255.255.0`) and cleared.
pub fn parse_entry(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    let (addr, mask) = match entry.split_once('/') {
        Some((a, m)) => (a.trim(), Some(m.trim())),
        None => (entry, None),
    };
    let addr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map_err(|_| format!("\"{entry}\" is not an IP address or network"))?
        .to_canonical();
    let net = match (addr, mask) {
        (IpAddr::V4(a), None) => IpNet::V4(Ipv4Net::from(a)),
        (IpAddr::V6(a), None) => IpNet::V6(Ipv6Net::from(a)),
        (IpAddr::V4(a), Some(m)) => {
            let prefix = if m.contains('.') {
                netmask_prefix(m).ok_or_else(|| {
                    format!("\"{entry}\": netmask \"{m}\" is not a contiguous IPv4 netmask")
                })?
            } else {
                m.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 32)
                    .ok_or_else(|| format!("\"{entry}\": prefix \"{m}\" must be 0 to 32"))?
            };
            IpNet::V4(Ipv4Net::new(a, prefix).map_err(|e| format!("\"{entry}\": {e}"))?)
        }
        (IpAddr::V6(a), Some(m)) => {
            let prefix = m
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 128)
                .ok_or_else(|| format!("\"{entry}\": IPv6 prefix \"{m}\" must be 0 to 128"))?;
            IpNet::V6(Ipv6Net::new(a, prefix).map_err(|e| format!("\"{entry}\": {e}"))?)
        }
    };
    Ok(net.trunc())
}

fn netmask_prefix(mask: &str) -> Option<u8> {
    let m: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ucm_netmask_form() {
        let acl = Acl::parse(&["192.168.40.3/255.255.255.255", "10.1.0.0/255.255.0.0"]).unwrap();
        assert!(acl.contains(ip("192.168.40.3")));
        assert!(!acl.contains(ip("192.168.40.4")));
        assert!(acl.contains(ip("10.1.200.7")));
        assert!(!acl.contains(ip("10.2.0.1")));
    }

    #[test]
    fn cidr_bare_ip_ipv6_and_mapped_addresses() {
        let acl = Acl::parse(&["10.0.0.0/8", "127.0.0.2", "2001:db8::/32", "[::1]"]).unwrap();
        assert!(acl.contains(ip("10.9.9.9")));
        assert!(acl.contains(ip("127.0.0.2")));
        assert!(!acl.contains(ip("127.0.0.1")));
        assert!(acl.contains(ip("2001:db8::5")));
        assert!(acl.contains(ip("::1")));
        // An IPv4 client seen through a dual-stack socket.
        assert!(acl.contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn host_bits_are_cleared() {
        let acl = Acl::parse(&["192.168.1.10/255.255.255.0"]).unwrap();
        assert!(acl.contains(ip("192.168.1.99")));
    }

    #[test]
    fn bad_entries_name_the_problem() {
        for (entry, needle) in [
            ("192.168.1.1/255.0.255.0", "contiguous"),
            ("192.168.1.1/33", "0 to 32"),
            ("300.1.1.1", "not an IP"),
            ("2001:db8::/129", "0 to 128"),
            ("", "not an IP"),
            ("host.example", "not an IP"),
        ] {
            let (i, msg) = Acl::parse(&["10.0.0.1", entry]).unwrap_err();
            assert_eq!(i, 1);
            assert!(msg.contains(needle), "{entry}: {msg}");
        }
    }

    #[test]
    fn empty_list_semantics() {
        let acl = Acl::default();
        assert!(acl.permits_or_empty(ip("1.2.3.4")));
        assert!(!acl.contains(ip("1.2.3.4")));
    }

    #[test]
    fn random_entries_never_panic() {
        let alphabet = b"0123456789abcdef:./[]% -";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut entry = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for i in 0..(x % 40) {
                entry.push(char::from(
                    alphabet[((x >> (i % 50)) as usize + i as usize) % alphabet.len()],
                ));
            }
            if let Ok(net) = parse_entry(&entry) {
                // Whatever parsed must contain its own network address.
                assert!(net.contains(&net.network()), "{entry}");
            }
        }
    }
}
