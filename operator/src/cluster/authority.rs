//! The CAs the operator keeps for a Cluster (`<name>-ca` for the brokers' certificate,
//! `<name>-clients-ca` for Users' client certificates), and how one is replaced before its ten
//! years end without a moment in which a peer distrusts a certificate it is shown:
//!
//! ```text
//! a year before the CA ends   a next CA is made; both are trusted (bundle.crt), the old signs
//! a week later                the next CA signs; the old one is still trusted (previous.crt)
//! when the old CA ends        it leaves the trusted bundle
//! ```
//!
//! Every certificate the operator issues names the bundle as its `ca.crt`, and is issued again
//! when the bundle or the signing CA changes; the brokers and the kubelet pick up the files in
//! place. A week is far longer than a Secret takes to reach every mounted volume (a minute or
//! two), and leaves clients that copy `ca.crt` elsewhere time to take the new bundle.
//!
//! The Secret's keys: `ca.crt` and `ca.key` (the signing CA), `next.crt`, `next.key` and
//! `next.since` (RFC 3339) while a next CA waits, `previous.crt` until the old CA ends, and
//! `bundle.crt` (every trusted CA, what brokers and clients trust).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::certificates::{failed, new_ca, new_ca_at, secret_data, value, write_secret};
use crate::controller::{Error, kube_error};

/// How long before its end a CA gets a successor.
pub const CA_RENEW_BEFORE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a successor is trusted before it signs.
pub const HANDOVER: Duration = Duration::from_secs(7 * 24 * 3600);

/// A CA Secret's contents (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The CA that signs.
    pub cert: String,
    pub key: String,
    /// The CA that will sign after the hand-over, and when it was made.
    pub next: Option<(String, String, OffsetDateTime)>,
    /// The CA that signed before, trusted until its end.
    pub previous: Option<String>,
}

impl Authority {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        let (cert, key) = new_ca(common_name)?;
        Ok(Self {
            cert,
            key,
            next: None,
            previous: None,
        })
    }

    /// Every CA to trust, signing one first.
    pub fn bundle(&self) -> String {
        let mut bundle = self.cert.clone();
        for pem in self
            .next
            .iter()
            .map(|(cert, _, _)| cert)
            .chain(&self.previous)
        {
            if !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str(pem);
        }
        bundle
    }

    /// The contents of Secret `name`, or what is wrong with them.
    pub fn read(name: &str, secret: &Secret) -> Result<Self, Error> {
        let text = |key: &str| {
            value(secret, key).map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| failed(name, format!("`{key}` is not UTF-8")))
            })
        };
        let required = |key: &str| {
            text(key).unwrap_or_else(|| Err(failed(name, format!("it has no `{key}`"))))
        };
        let next = match (text("next.crt"), text("next.key"), text("next.since")) {
            (Some(cert), Some(key), Some(since)) => {
                let since = OffsetDateTime::parse(since?.trim(), &Rfc3339)
                    .map_err(|e| failed(name, format!("`next.since`: {e}")))?;
                Some((cert?, key?, since))
            }
            _ => None,
        };
        Ok(Self {
            cert: required("ca.crt")?,
            key: required("ca.key")?,
            next,
            previous: text("previous.crt").transpose()?,
        })
    }

    /// The Secret data that holds it.
    pub fn data(&self) -> std::collections::BTreeMap<String, k8s_openapi::ByteString> {
        let since = self
            .next
            .as_ref()
            .and_then(|(_, _, since)| since.format(&Rfc3339).ok());
        let bundle = self.bundle();
        let mut entries = vec![
            ("ca.crt", self.cert.as_str()),
            ("ca.key", self.key.as_str()),
            ("bundle.crt", bundle.as_str()),
        ];
        if let (Some((cert, key, _)), Some(since)) = (&self.next, &since) {
            entries.extend([
                ("next.crt", cert.as_str()),
                ("next.key", key.as_str()),
                ("next.since", since.as_str()),
            ]);
        }
        if let Some(previous) = &self.previous {
            entries.push(("previous.crt", previous.as_str()));
        }
        secret_data(&entries)
    }

    /// What this CA must become at `now`, and why; `None` when it stays as it is. One step at
    /// a time (a reconcile takes the next).
    pub fn advance(
        &self,
        now: OffsetDateTime,
        common_name: &str,
    ) -> Result<Option<(Self, &'static str)>, rcgen::Error> {
        if let Some(previous) = &self.previous
            && not_after(previous).is_none_or(|end| end <= now)
        {
            let mut next = self.clone();
            next.previous = None;
            return Ok(Some((next, "the previous CA ended")));
        }
        if let Some((cert, key, since)) = &self.next {
            // After the week of trust; at once if the signing CA would end first (an operator
            // that was down through most of the last year).
            let handover = *since + time::Duration::seconds(seconds(HANDOVER));
            let ending = not_after(&self.cert).is_none_or(|end| end <= handover);
            if now >= handover || ending {
                let promoted = Self {
                    cert: cert.clone(),
                    key: key.clone(),
                    next: None,
                    previous: Some(self.cert.clone()),
                };
                return Ok(Some((promoted, "the next CA signs from now on")));
            }
            return Ok(None);
        }
        let renew_before = time::Duration::seconds(seconds(CA_RENEW_BEFORE));
        if not_after(&self.cert).is_none_or(|end| end - now < renew_before) {
            let (cert, key) = new_ca_at(common_name, now)?;
            let mut next = self.clone();
            next.next = Some((cert, key, now));
            return Ok(Some((
                next,
                "the CA ends within a year: a next CA is trusted first",
            )));
        }
        Ok(None)
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The end of the certificate `pem`, if it parses.
pub fn not_after(pem: &str) -> Option<OffsetDateTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let parsed = pem.parse_x509().ok()?;
    Some(parsed.validity().not_after.to_datetime())
}

/// The CA kept in Secret `name`: made with `common_name` when the Secret does not exist, moved
/// along its renewal when it is due, its `bundle.crt` written when missing. Returns the CA, and
/// what changed (for an Event).
pub async fn ensure_authority(
    secrets: &Api<Secret>,
    name: &str,
    common_name: &str,
    metadata: impl Fn(&str) -> ObjectMeta,
) -> Result<(Authority, Option<String>), Error> {
    let existing = secrets
        .get_opt(name)
        .await
        .map_err(kube_error::<Secret>("getting", name))?;
    let now = OffsetDateTime::now_utc();
    let (authority, reason) = match &existing {
        None => (
            Authority::new(common_name).map_err(|e| failed(name, e))?,
            "a new CA",
        ),
        Some(secret) => {
            let current = Authority::read(name, secret)?;
            match current
                .advance(now, common_name)
                .map_err(|e| failed(name, e))?
            {
                Some(advanced) => advanced,
                None if value(secret, "bundle.crt") == Some(current.bundle().as_bytes()) => {
                    return Ok((current, None));
                }
                None => (current, "the trusted bundle written"),
            }
        }
    };
    let secret = Secret {
        metadata: metadata(name),
        data: Some(authority.data()),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    write_secret(secrets, existing, secret).await?;
    Ok((authority, Some(format!("Secret '{name}': {reason}"))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_ca_is_renewed_a_year_before_its_end_trusted_first_and_signs_a_week_later() {
        let now = OffsetDateTime::now_utc();
        let first = Authority::new("Fjord CA t/events").unwrap();
        assert_eq!(first.advance(now, "Fjord CA t/events").unwrap(), None);
        assert_eq!(first.bundle(), first.cert);

        // Nine and a half years on: a next CA, trusted, not yet signing.
        let late = now + time::Duration::days(9 * 365 + 180);
        let (trusting, reason) = first.advance(late, "Fjord CA t/events").unwrap().unwrap();
        assert!(reason.contains("within a year"), "{reason}");
        assert_eq!(trusting.cert, first.cert);
        let next = trusting.next.clone().unwrap().0;
        assert_eq!(trusting.bundle(), format!("{}{next}", first.cert));
        assert_eq!(
            trusting
                .advance(late + time::Duration::days(6), "x")
                .unwrap(),
            None
        );

        // A week on: the next CA signs; the old one stays trusted.
        let handed = late + time::Duration::days(7);
        let (signing, reason) = trusting.advance(handed, "x").unwrap().unwrap();
        assert_eq!(reason, "the next CA signs from now on");
        assert_eq!(signing.cert, next);
        assert_eq!(signing.previous.as_deref(), Some(first.cert.as_str()));
        assert_eq!(signing.bundle(), format!("{next}{}", first.cert));
        assert_eq!(signing.advance(handed, "x").unwrap(), None);

        // The old CA's end: it leaves the bundle.
        let ended = now + time::Duration::days(3651);
        let (alone, reason) = signing.advance(ended, "x").unwrap().unwrap();
        assert_eq!(reason, "the previous CA ended");
        assert_eq!(alone.bundle(), next);
        assert_eq!(alone.advance(ended, "x").unwrap(), None);

        // Each CA its own subject: OpenSSL finds an issuer by name.
        let subject = |pem: &str| {
            let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            pem.parse_x509().unwrap().subject().to_string()
        };
        assert_ne!(subject(&first.cert), subject(&next));

        // A CA found days before its end (the operator was down): the next one signs at once.
        let brink = now + time::Duration::days(3647);
        let (trusting, _) = first.advance(brink, "x").unwrap().unwrap();
        let (signing, reason) = trusting.advance(brink, "x").unwrap().unwrap();
        assert_eq!(reason, "the next CA signs from now on");
        assert_ne!(signing.cert, first.cert);
    }

    #[test]
    fn a_ca_secret_reads_back_what_it_holds() {
        let mut authority = Authority::new("Fjord CA t/events").unwrap();
        let (cert, key) = new_ca("next").unwrap();
        let since = OffsetDateTime::parse("2036-01-02T03:04:05Z", &Rfc3339).unwrap();
        authority.next = Some((cert, key, since));
        authority.previous = Some(new_ca("old").unwrap().0);
        let secret = Secret {
            data: Some(authority.data()),
            ..Secret::default()
        };
        assert_eq!(Authority::read("events-ca", &secret).unwrap(), authority);
        assert_eq!(
            value(&secret, "bundle.crt"),
            Some(authority.bundle().as_bytes())
        );
        let broken = Secret {
            data: Some(secret_data(&[("ca.crt", "x")])),
            ..Secret::default()
        };
        let error = Authority::read("events-ca", &broken).unwrap_err();
        assert!(error.to_string().contains("ca.key"), "{error}");
    }
}
