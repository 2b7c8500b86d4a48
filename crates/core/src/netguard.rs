//! The SSRF guard's decision: may a delivery connect to this address?

use ipnet::IpNet;
use std::net::IpAddr;

/// Addresses that reach the gateway's own machine or network: loopback,
/// private, carrier-grade NAT, link-local (incl. cloud metadata at
/// 169.254.169.254), unspecified, broadcast, multicast and IPv6 unique-local.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80
        }
    }
}

/// The operator's allow-list of internal ranges deliveries may reach anyway.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Vec<IpNet>,
}

impl NetworkPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Parses a comma-separated CIDR list such as `127.0.0.0/8,10.1.0.0/16`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{part}' is not a CIDR network such as 10.0.0.0/8"))?;
            allowed.push(net);
        }
        Ok(Self { allowed })
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        !is_internal(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_internal_unless_allowed() {
        let none = NetworkPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!none.permits(ip.parse().unwrap()), "{ip} should be blocked");
        }
        assert!(none.permits("93.184.216.34".parse().unwrap()));
        assert!(none.permits("2606:2800:220:1::1".parse().unwrap()));
        let lo = NetworkPolicy::parse("127.0.0.0/8, 10.0.0.1").unwrap();
        assert!(lo.permits("127.0.0.1".parse().unwrap()));
        assert!(lo.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(lo.permits("10.0.0.1".parse().unwrap()));
        assert!(!lo.permits("10.0.0.2".parse().unwrap()));
        assert!(NetworkPolicy::parse("nonsense").is_err());
    }
}
