//! A throw-away certificate authority for test servers and clients.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A PEM certificate with its PEM private key.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that issues leaf certificates for loopback servers and clients.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl TestCa {
    pub fn new(common_name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generating a CA key");
        let cert = params.self_signed(&key).expect("self-signing the CA");
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A serving certificate for 127.0.0.1, ::1 and localhost plus `extra_hosts`.
    pub fn server(&self, extra_hosts: &[&str]) -> CertKey {
        let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        names.extend(extra_hosts.iter().map(|h| h.to_string()));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().expect("valid DNS name")),
            })
            .collect();
        params.distinguished_name = dn(&names[0], &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf(params)
    }

    /// A client certificate; Kubernetes reads the user from CN and groups from O.
    pub fn client(&self, common_name: &str, organizations: &[&str]) -> CertKey {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name, organizations);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf(params)
    }

    fn leaf(&self, mut params: CertificateParams) -> CertKey {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().expect("generating a leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a leaf certificate");
        CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn dn(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn
}

/// An ECDSA P-256 key pair in PEM: (private PKCS#8, public SPKI).
pub fn key_pair_pem() -> (String, String) {
    let key = KeyPair::generate().expect("generating a key pair");
    (key.serialize_pem(), key.public_key_pem())
}
