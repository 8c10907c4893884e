//! TLS and mutual TLS through the running daemon, with certificates made
//! by the test: a good client certificate is admitted, a missing one, one
//! from another CA and a plain-text client are refused.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use stowage::api::client::{Client, TlsFiles};

use crate::harness::{BIN, Daemon, put, random_bytes};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A CA, a server certificate for localhost and a client certificate
    /// signed by it, and a second CA with its own client certificate.
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = pki.ca("ca");
        pki.leaf(
            &ca,
            "server",
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki.leaf(
            &ca,
            "client",
            vec!["frontend".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let rogue = pki.ca("rogue-ca");
        pki.leaf(
            &rogue,
            "rogue",
            vec!["frontend".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        pki
    }

    fn ca(&self, name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("stowage test {name}"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), ca.pem()).unwrap();
        ca
    }

    fn leaf(
        &self,
        ca: &CertifiedIssuer<'static, KeyPair>,
        name: &str,
        sans: Vec<String>,
        eku: ExtendedKeyUsagePurpose,
    ) {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, ca).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    fn client(&self, ca: &str, cert: Option<&str>) -> TlsFiles {
        TlsFiles {
            ca: Some(self.path(&format!("{ca}.pem"))),
            cert: cert.map(|c| self.path(&format!("{c}.pem"))),
            key: cert.map(|c| self.path(&format!("{c}.key"))),
            domain: None,
        }
    }

    fn server_toml(&self, client_ca: Option<&str>, optional: bool) -> String {
        let mut s = format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            self.path("server.pem"),
            self.path("server.key")
        );
        if let Some(ca) = client_ca {
            s += &format!(
                "client_ca = {:?}\nclient_auth_optional = {optional}\n",
                self.path(&format!("{ca}.pem"))
            );
        }
        s
    }
}

/// Connects and makes one call; the error, if the daemon refuses.
async fn call(addr: &str, token: Option<&str>, tls: &TlsFiles) -> Result<(), String> {
    let attempt = async {
        let c = Client::connect_with(addr, token, tls)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        c.stats()
            .await
            .map(|_| ())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .expect("a refused TLS client must fail, not hang")
}

fn plain(addr: &str) -> String {
    addr.replace("https://localhost", "http://127.0.0.1")
}

#[tokio::test]
async fn mtls_admits_a_good_client_certificate_and_refuses_others() {
    let pki = Pki::new();
    let d = Daemon::start_tls(
        &pki.server_toml(Some("ca"), false),
        Some(pki.client("ca", Some("client"))),
    )
    .await;
    let token = d.admin_token();
    // The harness connects with the good certificate: everything works.
    let c = d.client().await;
    let data = random_bytes(1, 300_000);
    let h = put(&c, "ns", data.clone()).await;
    assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), data);
    // Refused: no client certificate, one from another CA, plain text,
    // and a client that does not trust the server's CA.
    for (what, tls, addr) in [
        ("no client certificate", pki.client("ca", None), d.addr.clone()),
        (
            "a certificate from another CA",
            pki.client("ca", Some("rogue")),
            d.addr.clone(),
        ),
        ("plain text", TlsFiles::default(), plain(&d.addr)),
        (
            "an untrusted server",
            pki.client("rogue-ca", Some("client")),
            d.addr.clone(),
        ),
    ] {
        let e = call(&addr, Some(&token), &tls).await.expect_err(what);
        assert!(
            !e.contains("Unauthenticated"),
            "{what}: refused by the token check, not TLS: {e}"
        );
    }
    // A good certificate does not replace the token.
    let e = call(&d.addr, None, &pki.client("ca", Some("client")))
        .await
        .unwrap_err();
    assert!(e.starts_with("Unauthenticated"), "{e}");
    // The daemon still serves, and the CLI speaks TLS with the same files.
    assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), data);
    let out = d.cli(&["blob", "stat", "--namespace", "ns", &h]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without its certificate the CLI is refused, in one line.
    let out = std::process::Command::new(BIN)
        .args(["blob", "stat", "--namespace", "ns", &h, "--addr", &d.addr, "--tls-ca"])
        .arg(pki.path("ca.pem"))
        .env("STOWAGE_DATA_DIR", d.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1);
}

#[tokio::test]
async fn tls_alone_and_optional_client_certificates() {
    let pki = Pki::new();
    // Server TLS only: any client that trusts the CA gets in.
    let d = Daemon::start_tls(&pki.server_toml(None, false), Some(pki.client("ca", None))).await;
    let token = d.admin_token();
    call(&d.addr, Some(&token), &pki.client("ca", None)).await.unwrap();
    call(&plain(&d.addr), Some(&token), &TlsFiles::default())
        .await
        .expect_err("plain text to a TLS port");
    drop(d);
    // Optional client certificates: none is fine, a bad one is not.
    let d = Daemon::start_tls(&pki.server_toml(Some("ca"), true), Some(pki.client("ca", None))).await;
    let token = d.admin_token();
    call(&d.addr, Some(&token), &pki.client("ca", None)).await.unwrap();
    call(&d.addr, Some(&token), &pki.client("ca", Some("client")))
        .await
        .unwrap();
    call(&d.addr, Some(&token), &pki.client("ca", Some("rogue")))
        .await
        .expect_err("a certificate from another CA");
    d.client().await.stats().await.unwrap();
}

#[test]
fn unreadable_tls_files_stop_the_daemon_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for (cert, expect) in [(&missing, "tls.cert: cannot read"), (&garbage, "tls")] {
        let err = crate::harness::refused_start(&format!("[tls]\ncert = {cert:?}\nkey = {garbage:?}"));
        assert!(err.contains(expect), "{err}");
    }
    let err = crate::harness::refused_start("max_concurrent_uploads = 0");
    assert!(err.contains("max_concurrent_uploads must be at least 1"), "{err}");
}
