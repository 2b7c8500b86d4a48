//! The SSRF guard's decision: may a delivery connect to this address?
//!
//! Deliveries go to addresses that users choose, so by default the guard
//! refuses every address that is not an ordinary public unicast address: the
//! blocks of the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC
//! 6890 and the RFCs that update it), multicast, and IPv6 space that IANA has
//! not allocated for global unicast. The operator's allow-list
//! (`SWITCHYARD_ALLOWED_NETWORKS`) can reopen any of them.
//!
//! No maintained crate was used: `std`'s `is_global` is still unstable, and
//! the crates that copy it lack blocks registered since 2023 (3fff::/20,
//! 5f00::/16, 100:0:0:1::/64) and do not judge IPv6 addresses by the IPv4
//! address they carry. The tables below name their registry entries instead.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A block the guard refuses by default, with what it is and where that is
/// written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialBlock {
    /// The block, e.g. `127.0.0.0/8`.
    pub net: IpNet,
    /// What the block is for, e.g. `loopback`.
    pub name: &'static str,
    /// The RFC that reserves it.
    pub source: &'static str,
}

const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    len: u8,
    name: &'static str,
    source: &'static str,
) -> SpecialBlock {
    SpecialBlock {
        net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)),
        name,
        source,
    }
}

const fn v6(segs: [u16; 8], len: u8, name: &'static str, source: &'static str) -> SpecialBlock {
    let [a, b, c, d, e, f, g, h] = segs;
    SpecialBlock {
        net: IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            len,
        )),
        name,
        source,
    }
}

/// IPv4 blocks refused by default: every entry of the IANA IPv4
/// Special-Purpose Address Registry (whole blocks, including the few
/// single addresses in 192.0.0.0/24 marked globally reachable, which are
/// anycast services and never a webhook receiver), plus multicast (IANA
/// IPv4 Multicast Address Space Registry).
#[rustfmt::skip]
pub const IPV4_SPECIAL: &[SpecialBlock] = &[
    v4(0, 0, 0, 0, 8, "\"this network\"", "RFC 791"),
    v4(10, 0, 0, 0, 8, "private use", "RFC 1918"),
    v4(100, 64, 0, 0, 10, "shared address space (carrier-grade NAT)", "RFC 6598"),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122"),
    v4(169, 254, 0, 0, 16, "link-local (incl. cloud metadata 169.254.169.254)", "RFC 3927"),
    v4(172, 16, 0, 0, 12, "private use", "RFC 1918"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890"),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737"),
    v4(192, 31, 196, 0, 24, "AS112-v4", "RFC 7535"),
    v4(192, 52, 193, 0, 24, "AMT", "RFC 7450"),
    v4(192, 88, 99, 0, 24, "deprecated 6to4 relay anycast", "RFC 7526"),
    v4(192, 168, 0, 0, 16, "private use", "RFC 1918"),
    v4(192, 175, 48, 0, 24, "direct delegation AS112 service", "RFC 7534"),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544"),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)", "RFC 5737"),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737"),
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771"),
    v4(240, 0, 0, 0, 4, "reserved", "RFC 1112"),
    v4(255, 255, 255, 255, 32, "limited broadcast", "RFC 919"),
];

/// IPv6 blocks refused by default: every entry of the IANA IPv6
/// Special-Purpose Address Registry (whole blocks; 2001::/23 includes
/// Teredo, benchmarking, AMT, AS112, ORCHID and drone identifiers), plus
/// deprecated site-local and multicast. [`GLOBAL_UNICAST`] refuses the rest
/// of the unallocated space.
#[rustfmt::skip]
pub const IPV6_SPECIAL: &[SpecialBlock] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "RFC 4291"),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "IPv4/IPv6 translation (NAT64 well-known prefix)", "RFC 6052"),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation", "RFC 8215"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy prefix", "RFC 9780"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380"),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", "RFC 5180"),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "deprecated ORCHID", "RFC 4843"),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments", "RFC 2928"),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation", "RFC 3849"),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056"),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, "direct delegation AS112 service", "RFC 7534"),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "RFC 9637"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing (SRv6) SIDs", "RFC 9602"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local", "RFC 4193"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "RFC 4291"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "deprecated site-local", "RFC 3879"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291"),
];

/// The only IPv6 space IANA allocates for global unicast (IANA IPv6 Address
/// Space registry; RFC 4291 section 2.4): addresses *outside* it that no
/// entry of [`IPV6_SPECIAL`] names are "reserved by the IETF" and refused
/// (e.g. IPv4-compatible `::a.b.c.d` and SIIT `::ffff:0:a.b.c.d`).
pub const GLOBAL_UNICAST: SpecialBlock = v6(
    [0x2000, 0, 0, 0, 0, 0, 0, 0],
    3,
    "the only IPv6 space allocated for global unicast",
    "RFC 4291",
);

/// The special-purpose block `ip` falls in, or `None` for an ordinary
/// public unicast address. Looks at `ip` alone: see [`destinations`] for
/// the IPv4 addresses an IPv6 address may carry.
pub fn special_block(ip: IpAddr) -> Option<&'static SpecialBlock> {
    match ip {
        IpAddr::V4(_) => IPV4_SPECIAL.iter().find(|b| b.net.contains(&ip)),
        IpAddr::V6(_) => IPV6_SPECIAL
            .iter()
            .find(|b| b.net.contains(&ip))
            .or_else(|| (!GLOBAL_UNICAST.net.contains(&ip)).then_some(&GLOBAL_UNICAST)),
    }
}

/// The addresses a connection to `ip` ends up at, each of which the guard
/// must accept. At most three.
///
/// IPv6 addresses that carry an IPv4 address are judged as follows:
/// - IPv4-mapped `::ffff:a.b.c.d` (RFC 4291) and the NAT64 well-known prefix
///   `64:ff9b::a.b.c.d` (RFC 6052) are only other spellings of the IPv4
///   address (the kernel or a translator delivers to it), so they are judged
///   as that IPv4 address alone, default and allow-list alike. A public one
///   is permitted: on an IPv6-only host, DNS64 answers `64:ff9b::/96`
///   addresses for every IPv4-only receiver.
/// - 6to4 `2002:AABB:CCDD::/48` (RFC 3056, IPv4 in bits 16..48),
///   IPv4-compatible `::a.b.c.d` (deprecated by RFC 4291), Teredo
///   `2001:0:SSSS:SSSS:f:p:CCCC:CCCC` (RFC 4380: server IPv4 in bits 32..64,
///   client IPv4 is the last 32 bits inverted) and ISATAP interface ids
///   `…:0:5efe:a.b.c.d` / `…:200:5efe:a.b.c.d` (RFC 5214) are tunnels: the
///   IPv6 address is a destination in its own right and the IPv4 addresses
///   also receive the packets, so all of them are judged. The first three
///   lie in special-purpose blocks, so they are refused unless the operator
///   allows that IPv6 range (and, for what they carry, that IPv4 range).
/// - The local-use prefix `64:ff9b:1::/48` (RFC 8215) may carry its IPv4
///   address at any RFC 6052 position the operator chose, so what it
///   carries cannot be read; it is judged as IPv6 only (refused unless
///   allowed as an IPv6 range).
pub fn destinations(ip: IpAddr) -> Vec<IpAddr> {
    let IpAddr::V6(v6) = ip else {
        return vec![ip];
    };
    let s = v6.segments();
    let from = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let tail = from(s[6], s[7]);
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return vec![IpAddr::V4(mapped)];
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return vec![IpAddr::V4(tail)];
    }
    let mut out = vec![ip];
    // `::` and `::1` are the unspecified and loopback addresses, not
    // IPv4-compatible ones.
    if s[..6] == [0; 6] && u32::from(tail) > 1 {
        out.push(IpAddr::V4(tail));
    }
    if s[0] == 0x2002 {
        out.push(IpAddr::V4(from(s[1], s[2])));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        out.push(IpAddr::V4(from(s[2], s[3])));
        out.push(IpAddr::V4(from(!s[6], !s[7])));
    }
    if (s[4] | 0x0200) == 0x0200 && s[5] == 0x5efe {
        out.push(IpAddr::V4(tail));
    }
    out
}

/// Whether `ip` is refused when nothing is allowed: it, or an IPv4 address
/// it carries (see [`destinations`]), is in a special-purpose block.
pub fn is_internal(ip: IpAddr) -> bool {
    destinations(ip)
        .into_iter()
        .any(|d| special_block(d).is_some())
}

/// Why the guard refused an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The address the delivery would have connected to.
    pub address: IpAddr,
    /// The address judged: `address` itself or an IPv4 address it carries.
    pub judged: IpAddr,
    /// The special-purpose block `judged` is in.
    pub block: &'static SpecialBlock,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.block;
        let place = if *b == GLOBAL_UNICAST {
            "outside"
        } else {
            "in"
        };
        if self.judged == self.address {
            write!(f, "{} is {place} {}", self.address, b.net)?;
        } else {
            write!(
                f,
                "{} carries {}, which is {place} {}",
                self.address, self.judged, b.net
            )?;
        }
        write!(f, " ({}, {})", b.name, b.source)
    }
}

/// The operator's allow-list of special-purpose ranges deliveries may reach
/// anyway (`SWITCHYARD_ALLOWED_NETWORKS`).
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Vec<IpNet>,
}

impl NetworkPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Parses a comma-separated list of CIDR networks or single addresses,
    /// such as `127.0.0.0/8,10.1.0.0/16,::1`.
    ///
    /// Errors: the first entry that is neither, in words.
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

    /// Accepts `ip` when every address it reaches (see [`destinations`]) is
    /// public or inside an allowed network; otherwise names the first that
    /// is not. An IPv4 network thus also admits the IPv4-mapped and NAT64
    /// spellings of its addresses, while tunnel forms need their IPv6 range
    /// allowed too.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        for judged in destinations(ip) {
            if let Some(block) = special_block(judged)
                && !self.allowed.iter().any(|net| net.contains(&judged))
            {
                return Err(Refusal {
                    address: ip,
                    judged,
                    block,
                });
            }
        }
        Ok(())
    }

    /// Whether a delivery may connect to `ip`: [`NetworkPolicy::check`] passes.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.check(ip).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One address from every refused block (edges where an off-by-one is
    /// plausible), each with the block it stands for.
    const REFUSED: &[(&str, &str)] = &[
        ("0.0.0.0", "0.0.0.0/8 this network"),
        ("0.255.255.255", "0.0.0.0/8 this network"),
        ("10.0.0.1", "10.0.0.0/8 private"),
        ("10.255.255.255", "10.0.0.0/8 private"),
        ("100.64.0.1", "100.64.0.0/10 shared (CGN)"),
        ("100.127.255.255", "100.64.0.0/10 shared (CGN)"),
        ("127.0.0.1", "127.0.0.0/8 loopback"),
        ("127.255.255.254", "127.0.0.0/8 loopback"),
        (
            "169.254.169.254",
            "169.254.0.0/16 link-local (cloud metadata)",
        ),
        ("172.16.0.1", "172.16.0.0/12 private"),
        ("172.31.255.255", "172.16.0.0/12 private"),
        ("192.0.0.1", "192.0.0.0/24 IETF protocol assignments"),
        ("192.0.0.9", "192.0.0.0/24 (PCP anycast)"),
        ("192.0.0.170", "192.0.0.0/24 (NAT64 discovery)"),
        ("192.0.2.1", "192.0.2.0/24 TEST-NET-1"),
        ("192.31.196.1", "192.31.196.0/24 AS112-v4"),
        ("192.52.193.1", "192.52.193.0/24 AMT"),
        ("192.88.99.1", "192.88.99.0/24 6to4 relay anycast"),
        ("192.168.1.1", "192.168.0.0/16 private"),
        ("192.175.48.1", "192.175.48.0/24 direct delegation AS112"),
        ("198.18.0.1", "198.18.0.0/15 benchmarking"),
        ("198.19.255.255", "198.18.0.0/15 benchmarking"),
        ("198.51.100.7", "198.51.100.0/24 TEST-NET-2"),
        ("203.0.113.9", "203.0.113.0/24 TEST-NET-3"),
        ("224.0.0.1", "224.0.0.0/4 multicast"),
        ("239.255.255.250", "224.0.0.0/4 multicast"),
        ("240.0.0.1", "240.0.0.0/4 reserved"),
        ("255.255.255.255", "255.255.255.255/32 limited broadcast"),
        ("::", "::/128 unspecified"),
        ("::1", "::1/128 loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped carrying loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped carrying private"),
        ("::ffff:192.0.2.1", "IPv4-mapped carrying TEST-NET-1"),
        (
            "::127.0.0.1",
            "IPv4-compatible (deprecated) carrying loopback",
        ),
        ("::8.8.8.8", "IPv4-compatible (deprecated) even when public"),
        (
            "::ffff:0:8.8.8.8",
            "IPv4-translated (SIIT), outside 2000::/3",
        ),
        (
            "64:ff9b::127.0.0.1",
            "NAT64 well-known prefix carrying loopback",
        ),
        (
            "64:ff9b::10.1.2.3",
            "NAT64 well-known prefix carrying private",
        ),
        (
            "64:ff9b::169.254.169.254",
            "NAT64 well-known prefix carrying metadata",
        ),
        ("64:ff9b:1::8.8.8.8", "64:ff9b:1::/48 local-use NAT64"),
        (
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "64:ff9b:1::/48 local-use NAT64",
        ),
        ("100::1", "100::/64 discard-only"),
        ("100:0:0:1::1", "100:0:0:1::/64 dummy prefix"),
        ("2001::1", "2001::/32 Teredo"),
        (
            "2001:0:808:808::80ff:fffe",
            "Teredo whose client is 127.0.0.1",
        ),
        (
            "2001:0:808:808::fefe:fefe",
            "Teredo even with public server and client",
        ),
        ("2001:1::1", "2001:1::1/128 PCP anycast"),
        ("2001:2::1", "2001:2::/48 benchmarking"),
        ("2001:3::1", "2001:3::/32 AMT"),
        ("2001:4:112::1", "2001:4:112::/48 AS112-v6"),
        ("2001:10::1", "2001:10::/28 ORCHID"),
        ("2001:20::1", "2001:20::/28 ORCHIDv2"),
        ("2001:30::1", "2001:30::/28 drone remote ID"),
        ("2001:1ff:ffff::1", "2001::/23 last address block"),
        ("2001:db8::1", "2001:db8::/32 documentation"),
        ("2002:7f00:1::1", "6to4 carrying loopback"),
        ("2002:a00:1::1", "6to4 carrying private"),
        ("2002:5db8:d822::1", "6to4 (deprecated) even when public"),
        (
            "2620:4f:8000::1",
            "2620:4f:8000::/48 direct delegation AS112",
        ),
        ("3fff::1", "3fff::/20 documentation"),
        ("3fff:fff:ffff::1", "3fff::/20 documentation"),
        ("5f00::1", "5f00::/16 SRv6 SIDs"),
        ("fc00::1", "fc00::/7 unique local"),
        ("fd12:3456::1", "fc00::/7 unique local"),
        ("fe80::1", "fe80::/10 link-local"),
        ("febf::1", "fe80::/10 link-local"),
        ("fec0::1", "fec0::/10 site-local (deprecated)"),
        ("ff02::1", "ff00::/8 multicast"),
        ("ff0e::1", "ff00::/8 multicast"),
        ("4000::1", "outside 2000::/3, reserved by the IETF"),
        ("e000::1", "outside 2000::/3, reserved by the IETF"),
        (
            "2606:2800:220:1:0:5efe:7f00:1",
            "ISATAP interface id carrying loopback",
        ),
        (
            "2606:2800:220:1:200:5efe:a00:1",
            "ISATAP interface id carrying private",
        ),
    ];

    /// Public addresses, many just outside a refused block.
    const PERMITTED: &[&str] = &[
        "1.1.1.1",
        "93.184.216.34",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.255",
        "192.0.3.0",
        "192.31.195.255",
        "192.88.98.255",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "203.0.112.255",
        "223.255.255.255",
        "2606:2800:220:1::1",
        "2001:4860:4860::8888",
        "2001:200::1",
        "2001:db9::1",
        "2003::1",
        "3fff:1000::1",
        "2620:4f:8001::1",
        "2a00:1450::1",
        // Spellings of a public IPv4 address are judged by it: DNS64 on an
        // IPv6-only host answers 64:ff9b::a.b.c.d for IPv4-only receivers.
        "::ffff:93.184.216.34",
        "64:ff9b::93.184.216.34",
        "64:ff9b::8.8.8.8",
        "2606:2800:220:1:0:5efe:5db8:d822",
    ];

    #[test]
    fn refuses_every_special_purpose_block_by_default() {
        let none = NetworkPolicy::default();
        for (addr, block) in REFUSED {
            assert!(!none.permits(ip(addr)), "{addr} ({block}) must be refused");
        }
    }

    #[test]
    fn permits_public_addresses_and_their_ipv6_spellings() {
        let none = NetworkPolicy::default();
        for addr in PERMITTED {
            assert!(none.permits(ip(addr)), "{addr} must be permitted");
        }
    }

    #[test]
    fn an_ipv4_allowance_covers_the_spellings_that_deliver_to_it() {
        let lo = NetworkPolicy::parse("127.0.0.0/8, 10.0.0.1").unwrap();
        for addr in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "10.0.0.1",
            "::ffff:10.0.0.1",
            // The IPv6 address is global, and its carried IPv4 is allowed.
            "2606:2800:220:1:0:5efe:7f00:1",
        ] {
            assert!(lo.permits(ip(addr)), "{addr} must be permitted");
        }
        // Tunnelled forms are IPv6 destinations in their own right: an IPv4
        // allowance alone does not open them.
        for addr in [
            "10.0.0.2",
            "::127.0.0.1",
            "2002:7f00:1::1",
            "2001:0:808:808::80ff:fffe",
            "64:ff9b:1::7f00:1",
            "::1",
        ] {
            assert!(!lo.permits(ip(addr)), "{addr} must stay refused");
        }
    }

    #[test]
    fn an_ipv6_allowance_opens_its_range_but_not_what_it_carries() {
        let six = NetworkPolicy::parse("::1, fe80::/10, 64:ff9b:1::/48, 2002::/16").unwrap();
        for addr in ["::1", "fe80::1", "64:ff9b:1::a00:1", "2002:5db8:d822::1"] {
            assert!(six.permits(ip(addr)), "{addr} must be permitted");
        }
        // 6to4 to loopback needs loopback allowed too.
        assert!(!six.permits(ip("2002:7f00:1::1")));
        let both = NetworkPolicy::parse("2002::/16, 127.0.0.0/8").unwrap();
        assert!(both.permits(ip("2002:7f00:1::1")));
        // A translation prefix is only a spelling of IPv4: allowing it does
        // not open the internal IPv4 addresses it can carry.
        let wkp = NetworkPolicy::parse("64:ff9b::/96, ::ffff:0:0/96").unwrap();
        assert!(!wkp.permits(ip("64:ff9b::127.0.0.1")));
        assert!(!wkp.permits(ip("::ffff:127.0.0.1")));
        let teredo = NetworkPolicy::parse("2001::/32").unwrap();
        assert!(teredo.permits(ip("2001:0:808:808::fefe:fefe")));
        assert!(!teredo.permits(ip("2001:0:808:808::80ff:fffe")));
        let docs = NetworkPolicy::parse("192.0.2.0/24, 2001:db8::/32").unwrap();
        assert!(docs.permits(ip("192.0.2.1")));
        assert!(docs.permits(ip("2001:db8::1")));
    }

    #[test]
    fn every_table_block_is_well_formed_and_refused_end_to_end() {
        let none = NetworkPolicy::default();
        for block in IPV4_SPECIAL.iter().chain(IPV6_SPECIAL) {
            assert_eq!(block.net, block.net.trunc(), "{} has host bits", block.net);
            for edge in [block.net.network(), block.net.broadcast()] {
                assert!(
                    !none.permits(edge),
                    "{edge} in {} must be refused",
                    block.net
                );
            }
        }
    }

    #[test]
    fn refusals_name_the_block_and_the_carried_address() {
        let none = NetworkPolicy::default();
        let plain = none.check(ip("192.0.2.1")).unwrap_err().to_string();
        assert_eq!(
            plain,
            "192.0.2.1 is in 192.0.2.0/24 (documentation (TEST-NET-1), RFC 5737)"
        );
        let carried = none.check(ip("64:ff9b::127.0.0.1")).unwrap_err();
        assert_eq!(carried.judged, ip("127.0.0.1"));
        assert!(
            carried
                .to_string()
                .starts_with("64:ff9b::7f00:1 carries 127.0.0.1, which is in 127.0.0.0/8"),
            "{carried}"
        );
        assert_eq!(
            none.check(ip("4000::1")).unwrap_err().to_string(),
            "4000::1 is outside 2000::/3 (the only IPv6 space allocated for global unicast, RFC 4291)"
        );
        let teredo = none.check(ip("2001:0:808:808::fefe:fefe")).unwrap_err();
        assert_eq!(teredo.block.name, "Teredo");
        assert!(is_internal(ip("::ffff:10.0.0.1")));
        assert!(!is_internal(ip("64:ff9b::8.8.8.8")));
    }

    #[test]
    fn parse_rejects_what_is_not_a_network() {
        assert!(NetworkPolicy::parse("nonsense").is_err());
        assert!(NetworkPolicy::parse("10.0.0.0/33").is_err());
        assert!(NetworkPolicy::parse("").unwrap().allowed.is_empty());
    }
}
