//! Test certificates made with the `openssl` CLI (Debian package openssl):
//! a CA of their own and a leaf signed by it for one DNS name or IP
//! address, as PEM files, for TLS fronts and ACM imports in tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// A leaf certificate, its key and the CA that signed it.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    /// The CA's certificate (what clients trust).
    pub ca: PathBuf,
    /// The leaf certificate.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, unencrypted).
    pub key: PathBuf,
}

impl TestCertificate {
    /// Issues, in `dir`, a one-day certificate for `name` (a DNS name, or
    /// an IP address) from a new CA. EC P-256 keys: quick to make.
    pub fn issue(dir: &Path, name: &str) -> Result<Self> {
        let openssl = |args: &[&str]| -> Result<()> { openssl_in(dir, args) };
        let req = |out: &str, key: &str, subject: &str, x509: bool| -> Result<()> {
            let mut args = vec!["req"];
            if x509 {
                args.extend(["-x509", "-days", "1"]);
            }
            args.extend(EC);
            args.extend(["-keyout", key, "-out", out, "-subj", subject]);
            openssl(&args)
        };
        req("ca.pem", "ca.key", "/CN=stackctl test CA", true)?;
        req("leaf.csr", "leaf.key", &format!("/CN={name}"), false)?;
        let san = if name.parse::<std::net::IpAddr>().is_ok() {
            format!("IP:{name}")
        } else {
            format!("DNS:{name}")
        };
        std::fs::write(
            dir.join("leaf.ext"),
            format!(
                "basicConstraints=critical,CA:FALSE\nsubjectAltName={san}\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .map_err(|source| Error::Io {
            what: "writing leaf.ext".into(),
            source,
        })?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ])?;
        Ok(Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("leaf.pem"),
            key: dir.join("leaf.key"),
        })
    }
}

/// A new EC P-256 key, unencrypted.
const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl_in(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|_| Error::MissingBinary {
            binary: "openssl",
            package: "the Debian package openssl",
            searched: "PATH".into(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("openssl {}", args.join(" ")),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
