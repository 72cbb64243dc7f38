//! Kafka listeners beyond the first: each has a name, a security protocol and an address, as
//! Kafka's `listeners`, `advertised.listeners` and `listener.security.protocol.map` give them.
//! A client is told the addresses of the listener it connected to, so clients inside and
//! outside a network, or clients with certificates and clients with passwords, each reach every
//! broker the way they first did.
//!
//! The first listener (`--listen`, `--advertise`) is secured as the security flags say; the
//! others name their protocol and share the same certificate, client CA and SASL mechanisms.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// How a listener's connections are secured (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Neither TLS nor a login.
    Plaintext,
    /// TLS; with `--tls-client-ca`, clients present a certificate and are named by it.
    Ssl,
    /// A SASL login over plaintext.
    SaslPlaintext,
    /// A SASL login over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol of a listener with or without TLS and a SASL login.
    pub fn of(tls: bool, sasl: bool) -> Self {
        match (tls, sasl) {
            (false, false) => Self::Plaintext,
            (true, false) => Self::Ssl,
            (false, true) => Self::SaslPlaintext,
            (true, true) => Self::SaslSsl,
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Plaintext,
            Self::Ssl,
            Self::SaslPlaintext,
            Self::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!("'{s}' is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)")
        })
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One more Kafka listener: `NAME:PROTOCOL://ADDRESS`, e.g. `CLIENT_CERTS:SSL://0.0.0.0:9094`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerFlag {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
}

impl FromStr for ListenerFlag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let form = "expected NAME:PROTOCOL://ADDRESS, e.g. CLIENT_CERTS:SSL://0.0.0.0:9094";
        let (named, address) = s
            .split_once("://")
            .ok_or_else(|| format!("'{s}': {form}"))?;
        let (name, protocol) = named
            .split_once(':')
            .ok_or_else(|| format!("'{s}': {form}"))?;
        let name = listener_name(name)?;
        let protocol = protocol.parse()?;
        let bind = address
            .parse()
            .map_err(|error| format!("'{s}': '{address}' is not an address ({error})"))?;
        Ok(Self {
            name,
            protocol,
            bind,
        })
    }
}

/// Where clients are told to reach a listener: `NAME://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedListener {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl FromStr for AdvertisedListener {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, address) = s
            .split_once("://")
            .ok_or_else(|| format!("'{s}': expected NAME://HOST:PORT"))?;
        let name = listener_name(name)?;
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
            .filter(|(host, port)| !host.is_empty() && (1..=65535).contains(port))
            .ok_or_else(|| format!("'{s}': '{address}' is not HOST:PORT"))?;
        Ok(Self {
            name,
            host: host.to_owned(),
            port,
        })
    }
}

/// What is wrong with the `--listener` and `--advertise-listener` flags of `config`, if anything.
pub fn problem(config: &crate::BrokerConfig) -> Option<String> {
    let first = config.security.protocol();
    let mut names = std::collections::BTreeSet::from([first.name().to_owned()]);
    let tls = config.security.tls_cert.is_some();
    let sasl = !config.security.sasl_mechanisms.is_empty();
    for flag in &config.listeners {
        if !names.insert(flag.name.clone()) {
            return Some(format!(
                "--listener {}: the name is taken (the first listener is {first})",
                flag.name
            ));
        }
        if flag.protocol.tls() && !tls {
            return Some(format!(
                "--listener {}:{}: needs --tls-cert and --tls-key",
                flag.name, flag.protocol
            ));
        }
        if flag.protocol.sasl() && !sasl {
            return Some(format!(
                "--listener {}:{}: needs --sasl-mechanisms",
                flag.name, flag.protocol
            ));
        }
    }
    let any_ssl = first == SecurityProtocol::Ssl
        || config
            .listeners
            .iter()
            .any(|l| l.protocol == SecurityProtocol::Ssl);
    if config.security.tls_client_ca.is_some() && !any_ssl {
        // Refused rather than ignored: a SASL_SSL listener asks for no certificate.
        return Some(format!(
            "--tls-client-ca asks SSL listeners for client certificates, and no listener is SSL \
             (the Kafka listener is {first}: its login names the client); add an SSL \
             --listener for clients with certificates, or leave the flag out"
        ));
    }
    config
        .advertise_listeners
        .iter()
        .find(|a| !config.listeners.iter().any(|l| l.name == a.name))
        .map(|a| {
            format!(
                "--advertise-listener {}: no --listener has that name",
                a.name
            )
        })
}

/// Where clients are told to reach listener `flag`, bound at `bound`.
pub fn advertised(
    flag: &ListenerFlag,
    bound: SocketAddr,
    advertise: &[AdvertisedListener],
) -> crate::cluster::ListenerEndpoint {
    let (host, port) = advertise.iter().find(|a| a.name == flag.name).map_or_else(
        || (bound.ip().to_string(), i32::from(bound.port())),
        |a| (a.host.clone(), a.port),
    );
    crate::cluster::ListenerEndpoint {
        name: flag.name.clone(),
        host,
        port,
    }
}

/// A listener name as Kafka allows them: letters, digits and `_`, kept in upper case.
fn listener_name(name: &str) -> Result<String, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "'{name}' is not a listener name (letters, digits and _)"
        ));
    }
    Ok(name.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_read_as_kafka_writes_them() {
        let flag: ListenerFlag = "client_certs:ssl://0.0.0.0:9094".parse().unwrap();
        assert_eq!(
            flag,
            ListenerFlag {
                name: "CLIENT_CERTS".to_owned(),
                protocol: SecurityProtocol::Ssl,
                bind: "0.0.0.0:9094".parse().unwrap(),
            }
        );
        for bad in [
            "CLIENT_CERTS://0.0.0.0:9094",
            "A:TLS://0.0.0.0:9094",
            "A-B:SSL://0.0.0.0:9094",
            "A:SSL://broker:9094",
            "A:SSL:0.0.0.0:9094",
        ] {
            assert!(bad.parse::<ListenerFlag>().is_err(), "{bad}");
        }
        let advertised: AdvertisedListener = "EXTERNAL://[::1]:9094".parse().unwrap();
        assert_eq!(
            (
                advertised.name.as_str(),
                advertised.host.as_str(),
                advertised.port
            ),
            ("EXTERNAL", "::1", 9094)
        );
        for bad in [
            "EXTERNAL://host",
            "EXTERNAL://:9094",
            "host:9094",
            "E://h:0",
        ] {
            assert!(bad.parse::<AdvertisedListener>().is_err(), "{bad}");
        }
    }

    #[test]
    fn listener_flags_that_cannot_work_together_are_refused() {
        let dir = std::path::PathBuf::from("unused");
        let config = |configure: &dyn Fn(&mut crate::BrokerConfig)| {
            let mut config = crate::BrokerConfig::for_tests(dir.clone());
            config.security.tls_cert = Some("tls.crt".into());
            config.security.tls_key = Some("tls.key".into());
            configure(&mut config);
            problem(&config)
        };
        let certificates: ListenerFlag = "CLIENT_CERTS:SSL://0.0.0.0:9094".parse().unwrap();
        let sasl = |c: &mut crate::BrokerConfig| {
            c.security.sasl_mechanisms = vec![crate::security::sasl::Mechanism::Plain];
        };
        assert_eq!(config(&|_| {}), None);
        // A client CA on a SASL_SSL listener alone would ask nobody for a certificate.
        let problem = config(&|c| {
            sasl(c);
            c.security.tls_client_ca = Some("ca.crt".into());
        })
        .unwrap();
        assert!(problem.contains("no listener is SSL"), "{problem}");
        assert_eq!(
            config(&|c| {
                sasl(c);
                c.security.tls_client_ca = Some("ca.crt".into());
                c.listeners = vec![certificates.clone()];
            }),
            None
        );
        let taken = config(&|c| {
            sasl(c);
            c.listeners = vec!["SASL_SSL:SSL://0.0.0.0:9094".parse().unwrap()];
        })
        .unwrap();
        assert!(taken.contains("taken"), "{taken}");
        let unknown = config(&|c| {
            c.listeners = vec![certificates.clone()];
            c.advertise_listeners = vec!["OTHER://h:1".parse().unwrap()];
        })
        .unwrap();
        assert!(unknown.contains("OTHER"), "{unknown}");
        let login = config(&|c| {
            c.listeners = vec!["LOGINS:SASL_SSL://0.0.0.0:9095".parse().unwrap()];
        })
        .unwrap();
        assert!(login.contains("--sasl-mechanisms"), "{login}");
    }

    #[test]
    fn a_protocol_says_whether_it_speaks_tls_and_asks_for_a_login() {
        for protocol in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "sasl_ssl"] {
            let parsed: SecurityProtocol = protocol.parse().unwrap();
            assert_eq!(SecurityProtocol::of(parsed.tls(), parsed.sasl()), parsed);
            assert_eq!(parsed.name(), protocol.to_ascii_uppercase());
        }
    }
}
