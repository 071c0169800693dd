//! A throwaway PKI for mTLS tests, made with the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::envoy::tag;

/// A client certificate and key, with the CA that signed the server's certificate.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Client certificate (PEM).
    pub cert: PathBuf,
    /// Client key (PEM).
    pub key: PathBuf,
}

/// A throwaway CA made with the `openssl` command, issuing a server certificate for
/// 127.0.0.1 and client certificates with the URI SAN a test asks for.
pub struct TestPki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (installed by make deps)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` making a new P-256 key without a passphrase in the file `key`, and with it
/// a self-signed certificate (`x509`) or a certificate request; `rest` says where to.
fn req_with_new_key(dir: &Path, x509: bool, key: &str, rest: &[&str]) {
    let mut args = vec!["req"];
    if x509 {
        args.push("-x509");
    }
    args.extend([
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
    ]);
    args.extend_from_slice(rest);
    openssl(dir, &args);
}

impl TestPki {
    /// A new CA and server certificate in a fresh temporary directory.
    pub fn new() -> TestPki {
        let dir = std::env::temp_dir().join(tag("pki"));
        std::fs::create_dir_all(&dir).unwrap();
        req_with_new_key(
            &dir,
            true,
            "ca.key",
            &[
                "-out",
                "ca.crt",
                "-subj",
                "/CN=consent-test-ca",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let pki = TestPki { dir };
        pki.issue("server", "IP:127.0.0.1,DNS:localhost");
        pki
    }

    fn issue(&self, name: &str, san: &str) -> ClientTls {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let ext = format!("subjectAltName={san}");
        req_with_new_key(
            &self.dir,
            false,
            &key,
            &[
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                &ext,
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-copy_extensions",
                "copy",
            ],
        );
        ClientTls {
            ca: self.dir.join("ca.crt"),
            cert: self.dir.join(crt),
            key: self.dir.join(key),
        }
    }

    /// A client certificate whose URI SAN is `uri` (e.g. a SPIFFE ID).
    pub fn client(&self, name: &str, uri: &str) -> ClientTls {
        self.issue(name, &format!("URI:{uri}"))
    }

    /// The listener's `transport_socket` value (flow YAML): TLS with a required client
    /// certificate signed by this CA.
    pub fn server_transport_socket(&self) -> String {
        let f = |n: &str| self.dir.join(n).display().to_string();
        format!(
            "{{ name: envoy.transport_sockets.tls, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, require_client_certificate: true, common_tls_context: {{ tls_certificates: [{{ certificate_chain: {{ filename: \"{}\" }}, private_key: {{ filename: \"{}\" }} }}], validation_context: {{ trusted_ca: {{ filename: \"{}\" }} }} }} }} }}",
            f("server.crt"),
            f("server.key"),
            f("ca.crt")
        )
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
