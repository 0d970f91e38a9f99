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

/// Private keys through ring's signers: RSA and ECDSA (P-256, P-384), what
/// `rustls::crypto::ring::sign::any_supported_type` takes but Ed25519. An
/// Ed25519 signer keeps ring's curve25519 base-point table (24 KiB) and its
/// code linked, which together with X25519 (see `provider`) cost 45,312
/// bytes of the static binary (2026-12-06); no CA/Browser-Forum certificate
/// and no documented Ironic or IPA set-up uses an Ed25519 key. An Ed25519
/// `--tls-key-file` or `--keyfile` is refused at start with this error.
#[derive(Debug)]
struct RingKeys;

impl rustls::crypto::KeyProvider for RingKeys {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        use rustls::crypto::ring::sign;
        if let Ok(rsa) = sign::RsaSigningKey::new(&key_der) {
            return Ok(Arc::new(rsa));
        }
        sign::any_ecdsa_type(&key_der).map_err(|_| {
            rustls::Error::General(
                "failed to parse private key as RSA or ECDSA (P-256, P-384); \
                 Ed25519 keys are not supported"
                    .into(),
            )
        })
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
        // Key exchange over P-256 and P-384, without X25519: every peer
        // also does P-256. TLS 1.3 makes secp256r1 mandatory to implement
        // (RFC 8446 §9.1) and OpenSSL (Ironic's Python client, Apache and
        // nginx image servers), Go, Java and rustls enable it by default;
        // TLS 1.2 ECDHE peers offer it as well (RFC 8422). The price: an
        // OpenSSL client sends its first TLS 1.3 key share for X25519 (3.5:
        // also X25519MLKEM768), so its handshake with the agent's API takes
        // one HelloRetryRequest round trip more. X25519 alone is 4 KiB of
        // the static binary; with Ed25519 signing (`RingKeys`) it keeps
        // ring's curve25519 base-point table: 45,312 bytes for both.
        kx_groups: vec![kx_group::SECP256R1, kx_group::SECP384R1],
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

// The automatic certificate, DER-encoded by hand. It has one fixed shape
// (RFC 5280 §4.1), so ~60 lines replace rcgen and the yasna, time and pem
// crates it brought (-65,376 bytes of the static binary, 2026-12-06):
//
//   Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
//                               signatureValue BIT STRING }
//   TBSCertificate ::= SEQUENCE { [0] version v3, serialNumber, signature,
//       issuer, validity, subject = issuer, subjectPublicKeyInfo,
//       [3] extensions: the critical subjectAltName }
//
// Signed with ring's ECDSA, already linked for TLS server keys.

/// A DER tag-length-value of the concatenated `parts` (X.690 §8.1; the
/// certificate stays far below the two-byte length limit of 64 KiB).
fn der(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 4);
    out.push(tag);
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

const SEQUENCE: u8 = 0x30;
/// Object identifiers, DER-encoded with tag and length.
const OID_COMMON_NAME: &[u8] = &[0x06, 3, 0x55, 0x04, 0x03]; // 2.5.4.3
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x06, 3, 0x55, 0x1d, 0x11]; // 2.5.29.17
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 7, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
const OID_P256: &[u8] = &[0x06, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // 1.2.840.10045.3.1.7
const OID_P384: &[u8] = &[0x06, 5, 0x2b, 0x81, 0x04, 0x00, 0x22]; // 1.3.132.0.34
const OID_ECDSA_SHA256: &[u8] = &[0x06, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]; // 1.2.840.10045.4.3.2
const OID_ECDSA_SHA384: &[u8] = &[0x06, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]; // 1.2.840.10045.4.3.3

/// DER INTEGER of an unsigned big-endian number: minimal, non-negative.
fn der_uint(mut n: &[u8]) -> Vec<u8> {
    while n.len() > 1 && n[0] == 0 && n[1] < 0x80 {
        n = &n[1..];
    }
    let sign: &[u8] = if n.first().is_some_and(|b| *b >= 0x80) {
        &[0]
    } else {
        &[]
    };
    der(0x02, &[sign, n])
}

/// A certificate time: UTCTime for 1950–2049, GeneralizedTime otherwise
/// (RFC 5280 §4.1.2.5), whole seconds in UTC.
fn der_time(unix: i64) -> Vec<u8> {
    let (y, mo, d, h, mi, s) = crate::util::civil_utc(unix);
    if (1950..2050).contains(&y) {
        let t = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        der(0x17, &[t.as_bytes()])
    } else {
        let t = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        der(0x18, &[t.as_bytes()])
    }
}

/// DER of `SubjectAltName ::= GeneralNames` with one iPAddress.
fn san_ip_der(ip: IpAddr) -> Vec<u8> {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    // GeneralName iPAddress is [7] IMPLICIT OCTET STRING (RFC 5280 4.2.1.6)
    der(SEQUENCE, &[&der(0x87, &[&bytes])])
}

/// What goes into the automatic certificate besides the key.
struct CertFields<'a> {
    common_name: &'a str,
    ip: IpAddr,
    serial: &'a [u8],
    not_before: i64,
    not_after: i64,
}

/// The self-signed certificate (DER) for `key`'s public key.
fn self_signed(
    key: &ring::signature::EcdsaKeyPair,
    curve: Curve,
    f: &CertFields,
    rng: &dyn ring::rand::SecureRandom,
) -> Result<Vec<u8>> {
    use ring::signature::KeyPair;
    let (curve_oid, sig_oid) = match curve {
        Curve::P256 => (OID_P256, OID_ECDSA_SHA256),
        Curve::P384 => (OID_P384, OID_ECDSA_SHA384),
    };
    // ecdsa-with-SHA* take no parameters (RFC 5758 §3.2)
    let sig_alg = der(SEQUENCE, &[sig_oid]);
    // Name: one RDN, the commonName as a UTF8String
    let atv = der(
        SEQUENCE,
        &[OID_COMMON_NAME, &der(0x0c, &[f.common_name.as_bytes()])],
    );
    let name = der(SEQUENCE, &[&der(0x31, &[&atv])]);
    let spki = der(
        SEQUENCE,
        &[
            &der(SEQUENCE, &[OID_EC_PUBLIC_KEY, curve_oid]),
            // BIT STRING: no unused bits, then the uncompressed point
            &der(0x03, &[&[0], key.public_key().as_ref()]),
        ],
    );
    // Extension ::= SEQUENCE { extnID, critical TRUE, extnValue OCTET STRING }
    let san = der(
        SEQUENCE,
        &[
            OID_SUBJECT_ALT_NAME,
            &[0x01, 0x01, 0xff],
            &der(0x04, &[&san_ip_der(f.ip)]),
        ],
    );
    let tbs = der(
        SEQUENCE,
        &[
            &[0xa0, 0x03, 0x02, 0x01, 0x02], // [0] EXPLICIT version: v3
            &der_uint(f.serial),
            &sig_alg,
            &name,
            &der(SEQUENCE, &[&der_time(f.not_before), &der_time(f.not_after)]),
            &name,
            &spki,
            &der(0xa3, &[&der(SEQUENCE, &[&san])]),
        ],
    );
    let sig = key
        .sign(rng, &tbs)
        .map_err(|_| AgentError::msg("signing the TLS certificate failed"))?;
    Ok(der(
        SEQUENCE,
        &[&tbs, &sig_alg, &der(0x03, &[&[0], sig.as_ref()])],
    ))
}

/// PEM of a DER certificate: base64 in 64-character lines (RFC 7468).
fn pem_certificate(der: &[u8]) -> String {
    let b64 = crate::util::base64_encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out.push_str("\n-----END CERTIFICATE-----\n");
    out
}

/// Generate IPA's automatic-TLS certificate for `ip`: a fresh EC key on the
/// configured curve, CN = the hostname, a random 127-bit serial, valid from
/// now − `auto_tls_allowed_clock_skew` to now + 30 days.
pub fn auto_tls(ip: IpAddr, hostname: &str, config: &Config) -> Result<ServerTls> {
    use ring::signature::{
        EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
    };
    let curve = config.tls_certificate_curve;
    let alg = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        Curve::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
    };
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
        .map_err(|e| AgentError::msg(format!("generating a TLS key: {e}")))?;
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
        .map_err(|e| AgentError::msg(format!("loading the generated TLS key: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut serial = [0u8; 16];
    crate::sys::getrandom(&mut serial)
        .map_err(|e| AgentError::msg(format!("random serial: {e}")))?;
    serial[0] &= 0x7f; // positive INTEGER
    let fields = CertFields {
        common_name: if hostname.is_empty() {
            "ironic-agent"
        } else {
            hostname
        },
        ip,
        serial: &serial,
        not_before: now
            .saturating_sub(i64::try_from(config.auto_tls_allowed_clock_skew).unwrap_or(i64::MAX)),
        not_after: now + 30 * 86400,
    };
    let cert = self_signed(&key, curve, &fields, &rng)?;
    crate::util::log_at!(
        Info,
        "generated a TLS certificate for IP address {ip}, valid for 30 days \
         (from {} s in the past)",
        config.auto_tls_allowed_clock_skew
    );
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()));
    Ok(ServerTls {
        cert_pem: pem_certificate(&cert),
        config: server_config(
            vec![CertificateDer::from(cert)],
            key_der,
            config.tls_min_version,
        )?,
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
    fn der_integers_and_times() {
        assert_eq!(der_uint(&[0, 0, 0x7f, 1]), vec![2, 2, 0x7f, 1]);
        assert_eq!(der_uint(&[0, 0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_uint(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_uint(&[0, 0]), vec![2, 1, 0]);
        assert_eq!(der(4, &[&[7; 200]])[..3], [4, 0x81, 200]);
        assert_eq!(der(4, &[&[7; 300]])[..4], [4, 0x82, 1, 44]);
        assert_eq!(der_time(1_764_057_600), b"\x17\x0d251125080000Z");
        assert_eq!(der_time(-1), b"\x17\x0d691231235959Z");
        // 2050-01-01: GeneralizedTime from here on
        assert_eq!(der_time(2_524_608_000), b"\x18\x0f20500101000000Z");
    }

    #[test]
    fn auto_cert_is_pem_and_configures() {
        let _ = provider().install_default();
        let c = Config::default();
        let t = auto_tls("127.0.0.1".parse().unwrap(), "test-host", &c).unwrap();
        assert!(t.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(t.cert_pem.ends_with("\n-----END CERTIFICATE-----\n"));
        assert!(t.cert_pem.lines().all(|l| l.len() <= 64));
    }

    /// A rustls client that trusts only the automatic certificate completes
    /// a handshake with the server it configures, for the IP in its SAN;
    /// webpki checks the signature, the validity and the SAN.
    fn handshake(ip: &str, curve: Curve, min: TlsVersion) {
        use rustls::pki_types::ServerName;
        let _ = provider().install_default();
        let c = Config {
            tls_certificate_curve: curve,
            tls_min_version: min,
            ..Config::default()
        };
        let ip: IpAddr = ip.parse().unwrap();
        let t = auto_tls(ip, "", &c).unwrap();
        let cert = CertificateDer::from_pem_slice(t.cert_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(versions(min))
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_cfg), ServerName::from(ip)).unwrap();
        let mut server = rustls::ServerConnection::new(t.config).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets().unwrap();
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
        }
        panic!("handshake did not complete");
    }

    #[test]
    fn rustls_verifies_the_auto_cert() {
        handshake("10.1.2.3", Curve::P384, TlsVersion::V1_2);
        handshake("192.0.2.1", Curve::P256, TlsVersion::V1_3);
        handshake("fd00::5", Curve::P256, TlsVersion::V1_2);
    }

    #[test]
    fn keys_rsa_and_ecdsa_but_not_ed25519() {
        use rustls::crypto::KeyProvider;
        use rustls::pki_types::PrivatePkcs8KeyDer as Pkcs8;
        let rng = ring::rand::SystemRandom::new();
        for alg in [
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        ] {
            let k = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let der = PrivateKeyDer::Pkcs8(Pkcs8::from(k.as_ref().to_vec()));
            assert!(RingKeys.load_private_key(der).is_ok());
        }
        let k = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let der = PrivateKeyDer::Pkcs8(Pkcs8::from(k.as_ref().to_vec()));
        let e = RingKeys.load_private_key(der).err().unwrap().to_string();
        assert!(e.contains("Ed25519 keys are not supported"), "{e}");
    }

    #[test]
    #[should_panic(expected = "NotValidForName")]
    fn rustls_refuses_the_auto_cert_for_another_ip() {
        let _ = provider().install_default();
        let t = auto_tls("10.1.2.3".parse().unwrap(), "", &Config::default()).unwrap();
        let cert = CertificateDer::from_pem_slice(t.cert_pem.as_bytes()).unwrap();
        let ee = webpki::EndEntityCert::try_from(&cert).unwrap();
        let other: rustls::pki_types::ServerName = "10.1.2.4".try_into().unwrap();
        ee.verify_is_valid_for_subject_name(&other).unwrap();
    }
}
