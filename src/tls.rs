//! TLS for both directions, with the rustls 0.23 that ureq already links.
//!
//! * Server: IPA's automatic TLS (`tls_utils.py`): a fresh self-signed EC
//!   certificate (P-384 by default) whose **critical** subjectAltName is the
//!   advertised IP, valid from now − `auto_tls_allowed_clock_skew` to now +
//!   30 days, sent to Ironic as `agent_verify_ca`; or static cert/key files.
//!   TLS 1.2 and 1.3 (or 1.3 only), AEAD suites only (rustls offers nothing
//!   else).
//! * Client (Ironic, inspection, image servers): certificates verified by
//!   default; `ipa-insecure` turns verification off; `--cafile` /
//!   `ipa-cafile` names the CA to trust, otherwise the system bundle
//!   (`<root>/etc/ssl/certs/ca-certificates.crt` or the RHEL path) is used,
//!   as IPA's `requests` does in a DIB ramdisk. No roots are compiled in:
//!   the ramdisk's trust is the operator's, and Mozilla's list (webpki-roots)
//!   cost ~80 KiB of the static binary.

use crate::config::{Config, Curve, TlsVersion};
use crate::error::{AgentError, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The system CA bundles IPA's ramdisks trust through `requests`
/// (Debian/Ubuntu, then RHEL/Fedora), relative to `--root`.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The first system CA bundle that exists: its bytes and path.
pub fn system_ca_bundle(root: &Path) -> Option<(Vec<u8>, PathBuf)> {
    SYSTEM_CA_BUNDLES.iter().find_map(|p| {
        let path = root.join(p.trim_start_matches('/'));
        std::fs::read(&path).ok().map(|b| (b, path))
    })
}

/// A server identity ready to serve.
pub struct ServerTls {
    /// The certificate as PEM (what IPA sends as `agent_verify_ca`).
    pub cert_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

/// The kernel's CSPRNG for rustls (getrandom(2), as ring itself uses).
#[derive(Debug)]
struct KernelRandom;

impl rustls::crypto::SecureRandom for KernelRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        crate::sys::getrandom(buf).map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

/// Private keys through ring's signers.
#[derive(Debug)]
struct RingKeys;

impl rustls::crypto::KeyProvider for RingKeys {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        rustls::crypto::ring::sign::any_supported_type(&key_der)
    }
}

/// What webpki can verify with ring: the list rustls' ring provider uses
/// (`rustls::crypto::ring::SUPPORTED_SIG_ALGS`, private there).
static SIG_ALGS: rustls::crypto::WebPkiSupportedAlgorithms = {
    use rustls::SignatureScheme as S;
    use webpki::ring as a;
    rustls::crypto::WebPkiSupportedAlgorithms {
        all: &[
            a::ECDSA_P256_SHA256,
            a::ECDSA_P256_SHA384,
            a::ECDSA_P384_SHA256,
            a::ECDSA_P384_SHA384,
            a::ED25519,
            a::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            a::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            a::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
            a::RSA_PKCS1_2048_8192_SHA256,
            a::RSA_PKCS1_2048_8192_SHA384,
            a::RSA_PKCS1_2048_8192_SHA512,
            a::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
            a::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
            a::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
        ],
        // TLS 1.2 does not tie the curve to the scheme; TLS 1.3 does.
        mapping: &[
            (
                S::ECDSA_NISTP384_SHA384,
                &[a::ECDSA_P384_SHA384, a::ECDSA_P256_SHA384],
            ),
            (
                S::ECDSA_NISTP256_SHA256,
                &[a::ECDSA_P256_SHA256, a::ECDSA_P384_SHA256],
            ),
            (S::ED25519, &[a::ED25519]),
            (S::RSA_PSS_SHA512, &[a::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
            (S::RSA_PSS_SHA384, &[a::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
            (S::RSA_PSS_SHA256, &[a::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
            (S::RSA_PKCS1_SHA512, &[a::RSA_PKCS1_2048_8192_SHA512]),
            (S::RSA_PKCS1_SHA384, &[a::RSA_PKCS1_2048_8192_SHA384]),
            (S::RSA_PKCS1_SHA256, &[a::RSA_PKCS1_2048_8192_SHA256]),
        ],
    }
};

/// ring with AES-GCM suites only: IPA's own TLS 1.2 list is
/// ECDHE-{ECDSA,RSA}-AES{256,128}-GCM (`ipa-tls-cipher-suites` default), and
/// leaving ChaCha20-Poly1305 out keeps its code (~40 KiB) out of the static
/// binary. Built by hand because `ring::default_provider()` references every
/// suite, which keeps them all linked.
pub fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as cs, kx_group};
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        signature_verification_algorithms: SIG_ALGS,
        secure_random: &KernelRandom,
        key_provider: &RingKeys,
    }
}

static TLS12_AND_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min {
        TlsVersion::V1_2 => TLS12_AND_13,
        TlsVersion::V1_3 => TLS13_ONLY,
    }
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    min: TlsVersion,
) -> Result<Arc<rustls::ServerConfig>> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions(min))
        .map_err(|e| AgentError::msg(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| AgentError::msg(format!("TLS certificate: {e}")))?;
    // HTTP/1.1 only; no session tickets needed for a handful of clients.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// DER of `SubjectAltName ::= GeneralNames` with one iPAddress.
fn san_ip_der(ip: IpAddr) -> Vec<u8> {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    // GeneralName iPAddress is [7] IMPLICIT OCTET STRING (RFC 5280 4.2.1.6)
    let mut inner = vec![0x87, bytes.len() as u8];
    inner.extend_from_slice(&bytes);
    let mut out = vec![0x30, inner.len() as u8];
    out.extend(inner);
    out
}

/// Generate IPA's automatic-TLS certificate for `ip`.
pub fn auto_tls(ip: IpAddr, hostname: &str, config: &Config) -> Result<ServerTls> {
    let alg = match config.tls_certificate_curve {
        Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let key = rcgen::KeyPair::generate_for(alg)
        .map_err(|e| AgentError::msg(format!("generating a TLS key: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        if hostname.is_empty() {
            "ironic-agent"
        } else {
            hostname
        },
    );
    params.distinguished_name = dn;
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + Duration::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
    params.not_before = now - Duration::from_secs(config.auto_tls_allowed_clock_skew);
    params.not_after = now + Duration::from_secs(30 * 86400);
    let mut serial = [0u8; 16];
    crate::sys::getrandom(&mut serial)
        .map_err(|e| AgentError::msg(format!("random serial: {e}")))?;
    serial[0] &= 0x7f; // positive INTEGER
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    // IPA marks the SAN critical; rcgen only does so for an empty subject,
    // so the extension is written by hand (OID 2.5.29.17).
    let mut san = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 17], san_ip_der(ip));
    san.set_criticality(true);
    params.custom_extensions = vec![san];
    let cert = params
        .self_signed(&key)
        .map_err(|e| AgentError::msg(format!("signing the TLS certificate: {e}")))?;
    log::info!(
        "generated a TLS certificate for IP address {ip}, valid for 30 days \
         (from {} s in the past)",
        config.auto_tls_allowed_clock_skew
    );
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(ServerTls {
        cert_pem: cert.pem(),
        config: server_config(vec![cert.der().clone()], key_der, config.tls_min_version)?,
    })
}

/// Static TLS from `--tls-cert-file` / `--tls-key-file` (PEM).
pub fn static_tls(cert_file: &Path, key_file: &Path, min: TlsVersion) -> Result<ServerTls> {
    let pem = std::fs::read_to_string(cert_file)
        .map_err(|e| AgentError::msg(format!("reading {}: {e}", cert_file.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| AgentError::msg(format!("parsing {}: {e:?}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(AgentError::msg(format!(
            "{} holds no certificate",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| AgentError::msg(format!("reading the key {}: {e:?}", key_file.display())))?;
    Ok(ServerTls {
        cert_pem: pem,
        config: server_config(certs, key, min)?,
    })
}

/// The outbound TLS configuration for ureq: verify by default, the
/// operator's CA when given, no verification with `insecure`, TLS 1.3 only
/// when `tls_min_version` is 1.3.
pub fn client_tls(config: &Config) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let mut b = TlsConfig::builder();
    if config.insecure {
        b = b.disable_verification(true);
    }
    let (pem, from) = match &config.cafile {
        Some(ca) => (
            std::fs::read(ca)
                .map_err(|e| AgentError::msg(format!("reading CA file {}: {e}", ca.display())))?,
            ca.clone(),
        ),
        None => match system_ca_bundle(&config.root) {
            Some(found) => found,
            None => (Vec::new(), PathBuf::new()),
        },
    };
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() && config.cafile.is_some() {
        return Err(AgentError::msg(format!(
            "CA file {} holds no certificate",
            from.display()
        )));
    }
    // With no roots at all every verified HTTPS connection fails with
    // "invalid peer certificate: UnknownIssuer"; main() warns about that at
    // start (see `system_ca_bundle`).
    b = b.root_certs(RootCerts::new_with_certs(&certs));
    if let (Some(cert), Some(key)) = (&config.certfile, &config.keyfile) {
        let cpem = std::fs::read(cert)
            .map_err(|e| AgentError::msg(format!("reading {}: {e}", cert.display())))?;
        let kpem = std::fs::read(key)
            .map_err(|e| AgentError::msg(format!("reading {}: {e}", key.display())))?;
        let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&cpem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let key = PrivateKey::from_pem(&kpem)
            .map_err(|e| AgentError::msg(format!("parsing {}: {e}", key.display())))?;
        b = b.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    // Always our provider: ureq is built without one of its own. ureq has
    // no protocol-version knob; with tls_min_version 1.3 a provider with
    // only TLS 1.3 suites makes rustls offer TLS 1.3 alone.
    let mut p = provider();
    if config.tls_min_version == TlsVersion::V1_3 {
        p.cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13);
    }
    b = b.unversioned_rustls_crypto_provider(Arc::new(p));
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_der() {
        assert_eq!(
            san_ip_der("10.0.0.5".parse().unwrap()),
            vec![0x30, 6, 0x87, 4, 10, 0, 0, 5]
        );
        assert_eq!(san_ip_der("::1".parse().unwrap()).len(), 2 + 2 + 16);
    }

    #[test]
    fn auto_cert_is_pem_and_configures() {
        let _ = provider().install_default();
        let c = Config::default();
        let t = auto_tls("127.0.0.1".parse().unwrap(), "test-host", &c).unwrap();
        assert!(t.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
