//! The webhook's serving certificate, without a manual step.
//!
//! With `--admission-certs=regcred` (the default), regcred keeps a CA and a
//! serving certificate in one Secret of its own namespace and the `caBundle`
//! of its own MutatingWebhookConfiguration in step with it. Every replica
//! runs the same loop; writes carry the resourceVersion they read, so when
//! two replicas act at once one wins and the other reads the result.
//!
//! - No Secret (or one that cannot be read back): a new CA and certificate.
//! - The serving certificate reaches two thirds of its lifetime, lacks a
//!   name, or was signed by an older CA: a new one, from the newest CA.
//! - The CA reaches two thirds of its lifetime: a new CA is put first in the
//!   bundle (`ca.crt`), beside the old one until that expires, and the
//!   `caBundle` is patched; the serving certificate moves to the new CA only
//!   [`CA_PROPAGATION`] later, once the API server trusts it.
//!
//! The certificate being replaced stays valid for a third of its lifetime,
//! so a replica still serving it while it picks up the new one loses no
//! admission. With `--admission-certs=external`, something else (cert-manager)
//! writes `tls.crt` and `tls.key` and injects the `caBundle`; regcred only
//! serves what the Secret holds.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tracing::{debug, info, warn};

pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// How long a new CA is in the `caBundle` before the serving certificate
/// moves to it: the API server reads webhook configurations from a watch.
pub const CA_PROPAGATION: Duration = Duration::from_secs(30);
/// Certificates start this long before they are made, for clocks that differ.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Look again at least this often, whatever the certificates' lifetimes: a
/// webhook configuration re-created without its caBundle (an uninstall and
/// install) is found within this; one not there yet, within [`ABSENT_RECHECK`].
const RECHECK: Duration = Duration::from_secs(30);
const ABSENT_RECHECK: Duration = Duration::from_secs(2);

/// Who makes the serving certificate.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// regcred: a CA and certificate in the Secret, rotated, and the caBundle patched.
    Regcred,
    /// Something else (cert-manager) writes the Secret and injects the caBundle.
    External,
}

#[derive(Clone, Debug)]
pub struct CertConfig {
    /// Namespace and name of the Secret holding the certificate.
    pub namespace: String,
    pub secret: String,
    pub source: Source,
    /// The MutatingWebhookConfiguration whose `caBundle` regcred keeps (regcred source).
    pub webhook_config: Option<String>,
    /// DNS names and IP addresses on the serving certificate.
    pub names: Vec<String>,
    pub validity: Duration,
    pub ca_validity: Duration,
}

/// The certificate the server presents, swapped whole when it changes.
#[derive(Debug, Default)]
pub struct ServingCert(RwLock<Option<Arc<CertifiedKey>>>);

impl ServingCert {
    pub fn set(&self, key: CertifiedKey) {
        *self.0.write().expect("serving cert lock") = Some(Arc::new(key));
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.0.read().expect("serving cert lock").clone()
    }
}

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// A certificate as regcred reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub pem: String,
    pub not_before: i64,
    pub not_after: i64,
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    /// DNS names and IP addresses of its subjectAltName.
    pub names: Vec<String>,
}

impl CertInfo {
    pub fn parse_all(pem: &str) -> Result<Vec<CertInfo>, String> {
        let mut out = Vec::new();
        for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let der = der.map_err(|e| format!("not a PEM certificate: {e}"))?;
            let (_, cert) =
                x509_parser::parse_x509_certificate(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
            let names = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|san| {
                    san.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                            x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string()),
                                _ => None,
                            },
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(CertInfo {
                pem: pem_of(&der),
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                subject: cert.subject().as_raw().to_vec(),
                issuer: cert.issuer().as_raw().to_vec(),
                names,
            });
        }
        Ok(out)
    }
}

fn pem_of(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
}

/// What the Secret holds, read back.
#[derive(Clone, Debug)]
pub struct Material {
    /// Trusted CAs, newest first (`ca.crt`).
    pub cas: Vec<CertInfo>,
    /// The newest CA's key.
    pub ca_key: String,
    pub leaf: CertInfo,
    pub leaf_key: String,
}

impl Material {
    /// `None` when anything is missing or unreadable: regcred starts afresh.
    pub fn read(data: &BTreeMap<String, ByteString>) -> Option<Self> {
        let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
        let cas = CertInfo::parse_all(&text(CA_CERT_KEY)?).ok()?;
        let leaf = CertInfo::parse_all(&text(TLS_CERT_KEY)?).ok()?.into_iter().next()?;
        (!cas.is_empty()).then_some(())?;
        Some(Self {
            cas,
            ca_key: text(CA_KEY_KEY)?,
            leaf,
            leaf_key: text(TLS_KEY_KEY)?,
        })
    }

    /// The `caBundle`: every trusted CA, newest first.
    pub fn bundle(&self) -> String {
        self.cas.iter().map(|c| c.pem.as_str()).collect()
    }

    fn data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT_KEY, self.bundle()),
            (CA_KEY_KEY, self.ca_key.clone()),
            (TLS_CERT_KEY, self.leaf.pem.clone()),
            (TLS_KEY_KEY, self.leaf_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect()
    }
}

/// What the certificate loop does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new CA and serving certificate.
    Fresh,
    /// A new CA first in the bundle; the serving certificate stays.
    AddCa,
    /// A new serving certificate from the newest CA.
    ReissueLeaf,
    /// Nothing until then.
    Wait(i64),
}

/// The next step, from what the Secret holds (pure).
pub fn next_step(
    material: Option<&Material>,
    names: &[String],
    validity: Duration,
    ca_validity: Duration,
    now: i64,
) -> Step {
    let Some(m) = material else {
        return Step::Fresh;
    };
    let newest = &m.cas[0];
    let third = |d: Duration| (d.as_secs() / 3) as i64;
    let ca_renew_at = newest.not_after - third(ca_validity);
    if now >= ca_renew_at {
        return Step::AddCa;
    }
    let leaf_renew_at = m.leaf.not_after - third(validity);
    let lacks_name = names.iter().any(|n| !m.leaf.names.contains(n));
    if m.leaf.issuer != newest.subject {
        // Signed by an older CA: move once the API server trusts the newest.
        let trusted_at = newest.not_before + (CLOCK_SKEW + CA_PROPAGATION).as_secs() as i64;
        return if now >= trusted_at || now >= leaf_renew_at {
            Step::ReissueLeaf
        } else {
            Step::Wait(trusted_at)
        };
    }
    if lacks_name || now >= leaf_renew_at {
        return Step::ReissueLeaf;
    }
    Step::Wait(leaf_renew_at.min(ca_renew_at))
}

fn offset(t: i64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| e.to_string())
}

/// A new CA valid from `now` (less the clock skew) for `validity`.
fn new_ca(now: i64, validity: Duration) -> Result<(CertInfo, String), String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // The time makes each CA's subject its own: a certificate names its issuer by subject.
    dn.push(DnType::CommonName, format!("regcred admission CA {now}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = offset(now - CLOCK_SKEW.as_secs() as i64)?;
    params.not_after = offset(now + validity.as_secs() as i64)?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let info = CertInfo::parse_all(&cert.pem())?.remove(0);
    Ok((info, key.serialize_pem()))
}

/// A serving certificate for `names` from the CA `ca` (whose key is `ca_key`).
fn new_leaf(
    ca: &CertInfo,
    ca_key: &str,
    names: &[String],
    now: i64,
    validity: Duration,
) -> Result<(CertInfo, String), String> {
    let signing = KeyPair::from_pem(ca_key).map_err(|e| format!("the CA key: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.pem, signing).map_err(|e| format!("the CA certificate: {e}"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("{n:?} is not a DNS name: {e}")),
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("regcred-webhook", String::as_str),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = offset(now - CLOCK_SKEW.as_secs() as i64)?;
    // Never past its CA.
    params.not_after = offset((now + validity.as_secs() as i64).min(ca.not_after))?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    let info = CertInfo::parse_all(&cert.pem())?.remove(0);
    Ok((info, key.serialize_pem()))
}

/// Apply `step` to `material` (pure but for key generation).
pub fn apply(
    step: &Step,
    material: Option<&Material>,
    names: &[String],
    validity: Duration,
    ca_validity: Duration,
    now: i64,
) -> Result<Option<Material>, String> {
    Ok(Some(match (step, material) {
        (Step::Wait(_), _) => return Ok(None),
        (Step::Fresh, _) | (_, None) => {
            let (ca, ca_key) = new_ca(now, ca_validity)?;
            let (leaf, leaf_key) = new_leaf(&ca, &ca_key, names, now, validity)?;
            Material {
                cas: vec![ca],
                ca_key,
                leaf,
                leaf_key,
            }
        }
        (Step::AddCa, Some(m)) => {
            let (ca, ca_key) = new_ca(now, ca_validity)?;
            let mut cas = vec![ca];
            // Older CAs stay while they are valid: some replica may still serve their certificates.
            cas.extend(m.cas.iter().filter(|c| c.not_after > now).cloned());
            Material {
                cas,
                ca_key,
                ..m.clone()
            }
        }
        (Step::ReissueLeaf, Some(m)) => {
            let (leaf, leaf_key) = new_leaf(&m.cas[0], &m.ca_key, names, now, validity)?;
            Material {
                leaf,
                leaf_key,
                ..m.clone()
            }
        }
    }))
}

/// The rustls form of a PEM certificate chain and key.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| format!("tls.key: {e}"))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// Serve what the Secret holds, and (regcred source) keep it and the
/// `caBundle` current, until the process ends.
pub async fn run(client: Client, config: CertConfig, serving: Arc<ServingCert>) {
    let api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let fields = format!("metadata.name={}", config.secret);
    let mut changes = watcher(api.clone(), watcher::Config::default().fields(&fields))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut wake_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            changed = changes.next() => match changed {
                Some(Ok(secret)) => load(&secret, &serving),
                Some(Err(e)) => warn!(error = %e, secret = %config.secret, "watching the webhook certificate Secret failed; retrying"),
                None => return,
            },
            () = tokio::time::sleep_until(wake_at), if config.source == Source::Regcred => {
                let next = match maintain(&client, &api, &config, &serving).await {
                    Ok(next) => next,
                    Err(e) => {
                        warn!(error = %e, secret = %config.secret, "keeping the webhook certificate failed; retrying in 10s");
                        Duration::from_secs(10)
                    }
                };
                wake_at = tokio::time::Instant::now() + next;
            }
        }
    }
}

/// Serve the certificate `secret` holds, if it holds one.
fn load(secret: &Secret, serving: &ServingCert) {
    let Some(data) = secret.data.as_ref() else {
        return;
    };
    let (Some(cert), Some(key)) = (data.get(TLS_CERT_KEY), data.get(TLS_KEY_KEY)) else {
        warn!(secret = %secret.name_any(), "the webhook certificate Secret has no tls.crt and tls.key yet");
        return;
    };
    match certified_key(&cert.0, &key.0) {
        Ok(key) => {
            let changed = serving.current().is_none_or(|old| old.cert.first() != key.cert.first());
            serving.set(key);
            if changed {
                info!(secret = %secret.name_any(), "serving the webhook certificate the Secret holds");
            }
        }
        Err(e) => {
            warn!(error = %e, secret = %secret.name_any(), "the webhook certificate Secret holds no usable certificate")
        }
    }
}

/// One round of the regcred source: read the Secret, take the next step,
/// write it back (conditionally), patch the caBundle. Returns when to look again.
async fn maintain(
    client: &Client,
    api: &Api<Secret>,
    config: &CertConfig,
    serving: &ServingCert,
) -> Result<Duration, String> {
    let existing = api.get_opt(&config.secret).await.map_err(|e| e.to_string())?;
    let material = existing.as_ref().and_then(|s| s.data.as_ref()).and_then(Material::read);
    let now = Timestamp::now().as_second();
    let step = next_step(
        material.as_ref(),
        &config.names,
        config.validity,
        config.ca_validity,
        now,
    );
    let current = match apply(
        &step,
        material.as_ref(),
        &config.names,
        config.validity,
        config.ca_validity,
        now,
    )? {
        None => material,
        Some(new) => {
            let mut secret = Secret {
                metadata: ObjectMeta {
                    name: Some(config.secret.clone()),
                    namespace: Some(config.namespace.clone()),
                    labels: Some([("app.kubernetes.io/part-of".to_string(), "regcred".to_string())].into()),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(new.data()),
                ..Default::default()
            };
            let written = match &existing {
                None => api.create(&PostParams::default(), &secret).await,
                Some(old) => {
                    // Conditional: a replica that lost the race reads the winner's next round.
                    secret.metadata.resource_version = old.resource_version();
                    secret.metadata.labels = old.metadata.labels.clone().or(secret.metadata.labels);
                    api.replace(&config.secret, &PostParams::default(), &secret).await
                }
            };
            match written {
                Ok(s) => {
                    info!(step = ?step, secret = %config.secret, not_after = new.leaf.not_after, "wrote the webhook certificate");
                    load(&s, serving);
                    Some(new)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Duration::from_millis(200)),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let Some(current) = current else {
        return Ok(Duration::from_secs(1));
    };
    if let Some(name) = &config.webhook_config
        && !sync_ca_bundle(client, name, &current.bundle()).await?
    {
        return Ok(ABSENT_RECHECK);
    }
    let until = match next_step(Some(&current), &config.names, config.validity, config.ca_validity, now) {
        Step::Wait(at) => Duration::from_secs(u64::try_from(at - now).unwrap_or(0)),
        _ => Duration::ZERO,
    };
    Ok(until.clamp(Duration::from_secs(1), RECHECK))
}

/// Patch the `caBundle` of every webhook of the MutatingWebhookConfiguration
/// `name` that does not hold `bundle` (only that field, each op guarded by
/// the webhook's name). `false` when the configuration is not there (yet).
async fn sync_ca_bundle(client: &Client, name: &str, bundle: &str) -> Result<bool, String> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(config) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
        debug!(webhook_config = %name, "the MutatingWebhookConfiguration is not there; pods are admitted without regcred until it is");
        return Ok(false);
    };
    let mut ops = Vec::new();
    for (i, webhook) in config.webhooks.iter().flatten().enumerate() {
        if webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle.as_bytes()) {
            continue;
        }
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}));
        ops.push(
            serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}),
        );
    }
    if ops.is_empty() {
        return Ok(true);
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops)).map_err(|e| e.to_string())?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| e.to_string())?;
    info!(webhook_config = %name, "patched the webhook's caBundle");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const T0: i64 = 1_800_000_000;

    fn names() -> Vec<String> {
        vec!["regcred-webhook.regcred-system.svc".into(), "127.0.0.1".into()]
    }

    fn fresh(now: i64) -> Material {
        apply(&Step::Fresh, None, &names(), 90 * DAY, 3650 * DAY, now)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_fresh_certificate_is_signed_by_its_ca_for_every_name_and_serves() {
        let m = fresh(T0);
        assert_eq!(m.leaf.issuer, m.cas[0].subject);
        assert_eq!(m.leaf.names, names());
        assert_eq!(m.leaf.not_after, T0 + (90 * DAY).as_secs() as i64);
        certified_key(m.leaf.pem.as_bytes(), m.leaf_key.as_bytes()).expect("rustls takes it");
        // Read back from the Secret's data as written.
        let back = Material::read(&m.data()).expect("reads back");
        assert_eq!(back.leaf, m.leaf);
        assert_eq!(back.cas, m.cas);
        assert_eq!(next_step(None, &names(), 90 * DAY, 3650 * DAY, T0), Step::Fresh);
    }

    #[test]
    fn the_serving_certificate_is_renewed_at_two_thirds_of_its_lifetime_from_the_same_ca() {
        let m = fresh(T0);
        let renew_at = T0 + (60 * DAY).as_secs() as i64;
        assert_eq!(
            next_step(Some(&m), &names(), 90 * DAY, 3650 * DAY, T0 + 10),
            Step::Wait(renew_at)
        );
        assert_eq!(
            next_step(Some(&m), &names(), 90 * DAY, 3650 * DAY, renew_at),
            Step::ReissueLeaf
        );
        let renewed = apply(&Step::ReissueLeaf, Some(&m), &names(), 90 * DAY, 3650 * DAY, renew_at)
            .unwrap()
            .unwrap();
        assert_eq!(renewed.cas, m.cas, "the caBundle does not change");
        assert_ne!(renewed.leaf.pem, m.leaf.pem);
        assert_eq!(renewed.leaf.issuer, m.cas[0].subject);
        // A name added to the configuration gets a new certificate at once.
        let mut more = names();
        more.push("regcred-webhook.regcred-system.svc.cluster.local".into());
        assert_eq!(
            next_step(Some(&m), &more, 90 * DAY, 3650 * DAY, T0 + 10),
            Step::ReissueLeaf
        );
    }

    #[test]
    fn a_new_ca_is_trusted_before_the_serving_certificate_moves_to_it() {
        let m = fresh(T0);
        let ca_renew_at = T0 + (3650 * DAY).as_secs() as i64 * 2 / 3 + 1;
        // Keep the leaf young, so only the CA is due.
        let m = apply(
            &Step::ReissueLeaf,
            Some(&m),
            &names(),
            90 * DAY,
            3650 * DAY,
            ca_renew_at - 10,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            next_step(Some(&m), &names(), 90 * DAY, 3650 * DAY, ca_renew_at),
            Step::AddCa
        );
        let both = apply(&Step::AddCa, Some(&m), &names(), 90 * DAY, 3650 * DAY, ca_renew_at)
            .unwrap()
            .unwrap();
        assert_eq!(both.cas.len(), 2, "old and new CA in the bundle");
        assert_eq!(both.cas[1], m.cas[0]);
        assert_eq!(both.leaf, m.leaf, "still serving the certificate of the old CA");
        let trusted_at = both.cas[0].not_before + (CLOCK_SKEW + CA_PROPAGATION).as_secs() as i64;
        assert_eq!(
            next_step(Some(&both), &names(), 90 * DAY, 3650 * DAY, ca_renew_at + 1),
            Step::Wait(trusted_at)
        );
        assert_eq!(
            next_step(Some(&both), &names(), 90 * DAY, 3650 * DAY, trusted_at),
            Step::ReissueLeaf
        );
        let moved = apply(
            &Step::ReissueLeaf,
            Some(&both),
            &names(),
            90 * DAY,
            3650 * DAY,
            trusted_at,
        )
        .unwrap()
        .unwrap();
        assert_eq!(moved.leaf.issuer, both.cas[0].subject);
        assert!(
            moved.bundle().contains(&m.cas[0].pem),
            "the old CA stays until it expires"
        );
    }

    #[test]
    fn a_secret_missing_a_key_or_holding_garbage_starts_afresh() {
        let m = fresh(T0);
        let mut data = m.data();
        data.remove(CA_KEY_KEY);
        assert!(Material::read(&data).is_none());
        let mut data = m.data();
        data.insert(TLS_CERT_KEY.into(), ByteString(b"not a certificate".to_vec()));
        assert!(Material::read(&data).is_none());
    }
}
