//! TLS: the rustls server config, built from the configured PEM files or from a
//! self-signed certificate generated once into the data dir, and the outbound
//! client's configs. The only module that reads key and certificate files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::default_provider;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
#[cfg(test)]
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;

/// Why the TLS config could not be built; names the file at fault.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// What a connection negotiated, for the Received header and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Such as `TLSv1.3`.
    pub version: String,
    /// Such as `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl TlsInfo {
    /// Reads the negotiated parameters from a finished handshake.
    pub fn of(conn: &rustls::ServerConnection) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let cipher =
            conn.negotiated_cipher_suite().map_or("unknown".to_string(), |c| format!("{:?}", c.suite()));
        TlsInfo { version, cipher }
    }
}

/// Where the generated certificate and key live.
fn generated_paths(config: &Config) -> (PathBuf, PathBuf) {
    let dir = config.data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Loads the server config: the configured files, or the self-signed
/// certificate in the data dir (made on first use). Logs the certificate's
/// SHA-256 fingerprint so clients can pin it.
///
/// # Errors
/// When a file cannot be read, holds no certificate or key, the key does not
/// match the certificate, or the generated pair cannot be written.
pub fn load(config: &Config) -> Result<Loaded, TlsError> {
    let (cert_path, key_path) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let (c, k) = generated_paths(config);
            if !c.exists() || !k.exists() {
                generate(&config.hostname, &c, &k)?;
            }
            (c, k)
        }
    };
    let (chain, key) = read_pair(&cert_path, &key_path)?;
    let fingerprint = fingerprint(&chain[0]);
    let expires = not_after(&chain[0]);
    let server = server_config(chain, key)
        .map_err(|e| TlsError(format!("{} and {}: {e}", cert_path.display(), key_path.display())))?;
    log::info!("TLS certificate {} sha256 fingerprint {fingerprint}", cert_path.display());
    Ok(Loaded { config: server, path: cert_path, expires })
}

/// A loaded certificate: the rustls config and what `postern status` shows.
#[derive(Debug)]
pub struct Loaded {
    /// The server config to hand to the acceptor.
    pub config: Arc<ServerConfig>,
    /// Where the certificate came from.
    pub path: PathBuf,
    /// Its notAfter, in unix seconds, when it could be read.
    pub expires: Option<u64>,
}

/// The end of a certificate's validity (notAfter), in unix seconds. A small
/// DER walk: Certificate, tbsCertificate, [version], serial, signature,
/// issuer, validity.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<u64> {
    /// One DER element at the start of `d`: (tag, contents, rest).
    fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, d) = d.split_first()?;
        let (&first, d) = d.split_first()?;
        let (len, d) = if first < 0x80 {
            (first as usize, d)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || d.len() < n {
                return None;
            }
            (d[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize), &d[n..])
        };
        (d.len() >= len).then(|| (tag, &d[..len], &d[len..]))
    }
    let (_, certificate, _) = tlv(cert.as_ref())?;
    let (_, tbs, _) = tlv(certificate)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, after) = tlv(tlv(validity)?.2).map(|(t, c, r)| (r, (t, c)))?;
    let (tag, text) = after;
    let text = std::str::from_utf8(text).ok()?;
    let digits = |s: &str| s.parse::<u64>().ok();
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(text.get(..2)?)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 => (digits(text.get(..4)?)?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| digits(rest.get(i..i + 2)?);
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let days =
        crate::date::days_from_civil(year as i64, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    u64::try_from(days * 86_400 + (hour * 3600 + minute * 60 + second) as i64).ok()
}

/// Checks the configured certificate and key without starting anything.
///
/// # Errors
/// As [`load`], for configured files only.
pub fn check(config: &Config) -> Result<(), TlsError> {
    if let (Some(c), Some(k)) = (&config.tls.cert, &config.tls.key) {
        let (chain, key) = read_pair(c, k)?;
        server_config(chain, key)
            .map_err(|e| TlsError(format!("{} and {}: {e}", c.display(), k.display())))?;
    }
    Ok(())
}

fn read_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| TlsError(format!("tls.cert {}: {e}", cert_path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("tls.cert {}: {e}", cert_path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!("tls.cert {}: no certificate in the file", cert_path.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| TlsError(format!("tls.key {}: {e}", key_path.display())))?;
    Ok((chain, key))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    // TLS 1.2 and 1.3 only, with rustls's safe cipher suites.
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Makes a self-signed certificate for `hostname`; the key file is private.
fn generate(hostname: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pair = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| TlsError(format!("cannot generate a certificate: {e}")))?;
    let dir = cert_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| TlsError(format!("{}: {e}", dir.display())))?;
    let write = |path: &Path, text: &str, mode: u32| -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write(key_path, &pair.signing_key.serialize_pem(), 0o600)
        .and_then(|()| write(cert_path, &pair.cert.pem(), 0o644))
        .map_err(|e| TlsError(format!("cannot write the generated certificate in {}: {e}", dir.display())))?;
    log::info!("generated a self-signed certificate for {hostname} in {}", dir.display());
    Ok(())
}

/// Where the system keeps its trusted roots (Debian and Raspberry Pi OS).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The outbound client's TLS configs, one for each way it uses TLS.
#[derive(Clone, Debug)]
pub struct ClientConfigs {
    /// For smarthosts: the certificate is verified against the system's
    /// roots and `ca_file`, for the host name.
    pub verified: Arc<ClientConfig>,
    /// For MX hosts (RFC 7435): the handshake is checked, the certificate
    /// is not, as no MX can be expected to have one that matches.
    pub opportunistic: Arc<ClientConfig>,
}

/// Builds the client configs: the system's trusted roots (a warning when
/// they cannot be read) and those in `ca_file`.
///
/// # Errors
/// When `ca_file` cannot be read or holds no certificate.
pub fn client_configs(ca_file: Option<&Path>) -> Result<ClientConfigs, TlsError> {
    let provider = Arc::new(default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let system = PathBuf::from(SYSTEM_ROOTS);
    for path in std::iter::once(system.as_path()).chain(ca_file) {
        let configured = Some(path) == ca_file;
        let certs = match CertificateDer::pem_file_iter(path) {
            Ok(iter) => iter.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(e) if configured => {
                return Err(TlsError(format!("outbound.ca_file {}: {e}", path.display())));
            }
            Err(e) => {
                log::warn!("cannot read the system's trusted certificates {}: {e}", path.display());
                continue;
            }
        };
        if certs.is_empty() && configured {
            return Err(TlsError(format!("outbound.ca_file {}: no certificate in the file", path.display())));
        }
        roots.add_parsable_certificates(certs);
    }
    let verified = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let opportunistic = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(ClientConfigs { verified: Arc::new(verified), opportunistic: Arc::new(opportunistic) })
}

/// Opportunistic TLS to MX hosts: the handshake is checked, the certificate
/// is not (RFC 7435).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The SHA-256 fingerprint of a certificate, as colon-separated hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_reads_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["mx.example".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        // 2031-07-15T00:00:00Z
        assert_eq!(not_after(&der), Some(1_941_840_000));
        let fresh = rcgen::generate_simple_self_signed(vec!["mx.example".to_string()]).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(not_after(&CertificateDer::from(fresh.cert.der().to_vec())).unwrap() > now);
        assert_eq!(not_after(&CertificateDer::from(vec![0x30, 0x03, 0x02])), None);
    }
}
