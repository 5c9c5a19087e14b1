//! Who is at the other end of a request: the TCP peer, or, when that peer is a proxy
//! listed in `BOTWATCH_TRUSTED_PROXIES`, the client it names in `X-Forwarded-For`
//! (and whether it reached the proxy over https, `X-Forwarded-Proto`). Headers from
//! anyone else are ignored, so a client cannot pick its own address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};

use crate::AppState;

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (
                addr.parse::<IpAddr>().ok()?,
                Some(prefix.parse::<u8>().ok()?),
            ),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Option<u128> {
            match (self.addr, ip) {
                (IpAddr::V4(_), IpAddr::V4(v4)) => Some(u128::from(u32::from(v4)) << 96),
                (IpAddr::V6(_), IpAddr::V6(v6)) => Some(u128::from(v6)),
                _ => None,
            }
        };
        let (Some(net), Some(ip)) = (bits(self.addr), bits(ip)) else {
            return false;
        };
        // Both kinds sit at the top of the 128 bits, so a prefix is the top bits.
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        net & mask == ip & mask
    }
}

/// The client of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    /// It reached us (or our trusted proxy) over https.
    pub https: bool,
}

impl Client {
    pub fn of(extensions: &Extensions, headers: &HeaderMap, trusted: &[Network]) -> Client {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
        if !is_trusted(peer) {
            return Client {
                addr: peer,
                https: false,
            };
        }
        // From the right: the first address no trusted proxy added is the client.
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let addr = forwarded
            .iter()
            .rev()
            .find(|ip| !is_trusted(**ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer);
        let https = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
        Client { addr, https }
    }
}

/// A handler asks for the client as for any other part of the request.
impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Client, Self::Rejection> {
        Ok(Client::of(
            &parts.extensions,
            &parts.headers,
            &state.trusted_proxies,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_contain_their_addresses() {
        let n = Network::parse("10.1.0.0/16").expect("net");
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(!n.contains(ip("::1")));
        assert!(
            Network::parse("127.0.0.1")
                .expect("addr")
                .contains(ip("127.0.0.1"))
        );
        assert!(
            !Network::parse("127.0.0.1")
                .expect("addr")
                .contains(ip("127.0.0.2"))
        );
        assert!(
            Network::parse("fd00::/8")
                .expect("v6")
                .contains(ip("fd12::1"))
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
        assert_eq!(Network::parse("10.0.0.0/33"), None);
        assert_eq!(Network::parse("ten"), None);
    }

    fn client(peer: &str, xff: Option<&str>, trusted: &[&str]) -> IpAddr {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::new(ip(peer), 1234)));
        let mut headers = HeaderMap::new();
        if let Some(xff) = xff {
            headers.insert("x-forwarded-for", xff.parse().expect("header"));
        }
        let trusted: Vec<Network> = trusted.iter().filter_map(|t| Network::parse(t)).collect();
        Client::of(&extensions, &headers, &trusted).addr
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        assert_eq!(client("127.0.0.1", Some("1.2.3.4"), &[]), ip("127.0.0.1"));
        assert_eq!(
            client("127.0.0.1", Some("1.2.3.4"), &["127.0.0.1"]),
            ip("1.2.3.4")
        );
        // A client that sends its own X-Forwarded-For gets it prepended, not trusted.
        assert_eq!(
            client(
                "10.0.0.5",
                Some("6.6.6.6, 1.2.3.4, 10.0.0.9"),
                &["10.0.0.0/8"]
            ),
            ip("1.2.3.4")
        );
        assert_eq!(client("10.0.0.5", None, &["10.0.0.0/8"]), ip("10.0.0.5"));
    }
}
