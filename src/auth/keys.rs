//! ARC signing keys: generated (aws-lc-rs, the crypto provider rustls already uses here),
//! read from PEM files whose permissions keep them ours, and their public half as the
//! DNS TXT record a verifier looks up (`SELECTOR._domainkey.DOMAIN`).
//!
//! RSA only: ARC verifiers accept rsa-sha256 seals and no other (dkimpy's `arc_verify`
//! answers "unknown signature algorithm" to an ed25519-sha256 seal made by mail-auth),
//! so an Ed25519 key, which mail-auth could sign with, would seal nothing anyone trusts.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `mailveil arc-key ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a new RSA ARC signing key (PEM, mode 600; an existing file is never replaced)
    /// and print its DNS record when --selector and --domain are given.
    Generate {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// RSA key size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
        /// The selector it will be published under.
        #[arg(long, value_name = "SELECTOR", requires = "domain")]
        selector: Option<String>,
        /// The domain it will be published under.
        #[arg(long, value_name = "DOMAIN", requires = "selector")]
        domain: Option<String>,
    },
    /// Print the DNS TXT record (a zone-file line) that publishes a key's public half.
    PrintDns {
        /// The private key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The selector (the record is SELECTOR._domainkey.DOMAIN).
        #[arg(long, value_name = "SELECTOR")]
        selector: String,
        /// The domain.
        #[arg(long, value_name = "DOMAIN")]
        domain: String,
    },
}

/// Runs `mailveil arc-key`: the line to print, or why not.
pub fn run(command: Command) -> Result<String, String> {
    match command {
        Command::Generate {
            out,
            bits,
            selector,
            domain,
        } => {
            generate(&out, bits)?;
            match (selector, domain) {
                (Some(s), Some(d)) => record_line(&out, &s, &d),
                _ => Ok(format!(
                    "key written to {0}; its DNS record: mailveil arc-key print-dns --key {0} --selector S --domain D",
                    out.display()
                )),
            }
        }
        Command::PrintDns {
            key,
            selector,
            domain,
        } => record_line(&key, &selector, &domain),
    }
}

fn record_line(key: &Path, selector: &str, domain: &str) -> Result<String, String> {
    for v in [selector, domain] {
        if !super::dns_name(v) {
            return Err(format!("{v:?}: not a DNS name"));
        }
    }
    let private = read_private_key(key)?;
    Ok(zone_line(selector, domain, &public_record(&private)?))
}

/// A private key read from a file: an RSA key, in the DER form it came in.
pub struct PrivateKey {
    pub(crate) der: PrivateKeyDer<'static>,
}

/// Reads a PEM private key (PKCS#8 `PRIVATE KEY`, or PKCS#1 `RSA PRIVATE KEY` as
/// `openssl genrsa` and `opendkim-genkey` write it). The file must be a regular file,
/// owned by us or root, writable by nobody else and readable by no other user (a group
/// may read it: `chmod 640`, group `mailveil`).
pub fn read_private_key(path: &Path) -> Result<PrivateKey, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("ARC key {shown}: {e}"))?;
    check_permissions(&meta, rustix::process::geteuid().as_raw())
        .map_err(|e| format!("ARC key {shown}: {e}"))?;
    let pem = std::fs::read(path).map_err(|e| format!("ARC key {shown}: {e}"))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("ARC key {shown}: not a PEM private key ({e})"))?;
    rsa_pair(&der).map_err(|e| format!("ARC key {shown}: {e}"))?;
    Ok(PrivateKey { der })
}

/// The permission rule of [`read_private_key`], on the file's metadata.
fn check_permissions(meta: &std::fs::Metadata, euid: u32) -> Result<(), String> {
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o007 != 0 || mode & 0o020 != 0 {
        return Err(format!(
            "mode {mode:03o} lets others read or change the key: chmod 600 (or 640 for a group)"
        ));
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}, neither this user ({euid}) nor root",
            meta.uid()
        ));
    }
    Ok(())
}

/// The RSA key pair of a PEM key, or why it is not one we sign with.
pub(crate) fn rsa_pair(der: &PrivateKeyDer<'_>) -> Result<RsaKeyPair, String> {
    match der {
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
            .map_err(|e| format!("unusable RSA key ({e})")),
        PrivateKeyDer::Pkcs8(k) => {
            let bytes = k.secret_pkcs8_der();
            RsaKeyPair::from_pkcs8(bytes).map_err(|e| {
                if Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes).is_ok() {
                    "an Ed25519 key: ARC verifiers accept RSA-SHA256 seals only \
                     (mailveil arc-key generate makes one)"
                        .to_string()
                } else {
                    format!("not an RSA key of 2048 to 8192 bits ({e})")
                }
            })
        }
        _ => Err("not an RSA key (ARC seals are RSA-SHA256)".into()),
    }
}

/// Makes a new RSA key and writes it to `path` as PKCS#8 PEM, mode 600. Refuses to
/// replace an existing file (a rotation writes a new file under a new selector).
pub fn generate(path: &Path, bits: u32) -> Result<(), String> {
    let shown = path.display();
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        _ => return Err(format!("RSA keys of {bits} bits: use 2048, 3072 or 4096")),
    };
    let key = RsaKeyPair::generate(size).map_err(|e| format!("RSA key: {e}"))?;
    let pkcs8: Pkcs8V1Der<'static> = key.as_der().map_err(|e| format!("RSA key: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {shown}: {e}"))?;
    file.write_all(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {shown}: {e}"))
}

/// PEM armour (RFC 7468): base64 in lines of 64. A few lines; no crate in the tree
/// writes PEM (rustls-pki-types only reads it).
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The TXT record value of the key's public half: `v=DKIM1; k=rsa; p=...`, the
/// SubjectPublicKeyInfo as RFC 6376 section 3.6.1 (and opendkim-genkey) have it.
pub fn public_record(key: &PrivateKey) -> Result<String, String> {
    let pair = rsa_pair(&key.der)?;
    let spki: PublicKeyX509Der<'static> = pair
        .public_key()
        .as_der()
        .map_err(|e| format!("RSA key: {e}"))?;
    Ok(format!("v=DKIM1; k=rsa; p={}", B64.encode(spki.as_ref())))
}

/// The zone-file line publishing `record` for `selector` and `domain`: the value cut in
/// strings of at most 255 bytes, as a DNS TXT record holds it.
pub fn zone_line(selector: &str, domain: &str, record: &str) -> String {
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{}. IN TXT ( {} )",
        domain.trim_end_matches('.'),
        strings.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_file(dir: &Path, mode: u32) -> std::path::PathBuf {
        let path = dir.join(format!("k{mode:o}"));
        generate(&path, 2048).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn generated_keys_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arc.pem");
        generate(&path, 2048).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = read_private_key(&path).unwrap();
        let record = public_record(&key).unwrap();
        assert!(record.starts_with("v=DKIM1; k=rsa; p=MII"), "{record}");
        // Never overwritten.
        let before = std::fs::read(&path).unwrap();
        assert!(generate(&path, 2048).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(generate(&dir.path().join("small.pem"), 1024).is_err());
    }

    #[test]
    fn keys_others_may_read_or_change_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o400, true),
            (0o644, false),
            (0o660, false),
            (0o602, false),
        ] {
            let path = key_file(dir.path(), mode);
            let got = read_private_key(&path);
            assert_eq!(got.is_ok(), ok, "mode {mode:o}: {:?}", got.err());
        }
        let err = read_private_key(dir.path()).err().unwrap();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_key_of_another_user_is_refused() {
        let meta = std::fs::metadata(env!("CARGO_MANIFEST_DIR")).unwrap();
        // The checkout is a directory: first the regular-file rule speaks.
        assert!(check_permissions(&meta, 12345).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), 0o600);
        let meta = std::fs::metadata(&path).unwrap();
        let owner = meta.uid();
        assert!(check_permissions(&meta, owner).is_ok());
        let other = if owner == 0 { 1 } else { owner + 1 };
        // Owned by root: accepted from any user; owned by a third user: refused.
        assert_eq!(check_permissions(&meta, other).is_ok(), owner == 0);
    }

    #[test]
    fn zone_lines_cut_long_records() {
        let record = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let line = zone_line("arc1", "example.org.", &record);
        assert!(line.starts_with("arc1._domainkey.example.org. IN TXT ( \""));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.concat(), record);
        assert!(strings.iter().all(|s| s.len() <= 255));
    }
}
