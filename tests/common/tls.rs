//! `https` endpoints for the integration tests: a certificate authority of the test's own
//! (a self-signed certificate for `127.0.0.1`, trusted by esmd through `SSL_CERT_FILE`, which
//! both the SDK's client and esmd's lean client read with the system's roots) and a proxy
//! that terminates TLS with it in front of a plain-HTTP endpoint (moto, a [`FunctionServer`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for `127.0.0.1` and `localhost`, and a PEM file holding it for
/// `SSL_CERT_FILE`.
pub struct TestCa {
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .expect("self-signed certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write the certificate");
        TestCa {
            ca_file,
            _dir: dir,
            cert: cert.der().clone(),
            key: key_pair.serialize_der(),
        }
    }

    /// The PEM file's path, for `SSL_CERT_FILE`.
    pub fn path(&self) -> &str {
        self.ca_file.to_str().expect("a UTF-8 temp path")
    }

    fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .expect("server certificate")
    }
}

/// A TLS-terminating proxy on a loopback port in front of `upstream` (`http://host:port`),
/// each accepted connection copied both ways to a new upstream connection. It counts
/// completed TLS handshakes, so a test can tell that a client came through it.
pub struct TlsProxy {
    /// `https://127.0.0.1:<port>`.
    pub endpoint: String,
    handshakes: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsProxy {
    /// Runs on a thread and runtime of its own, like [`FunctionServer`].
    pub fn start(ca: &TestCa, upstream: &str) -> TlsProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("a plain-HTTP upstream")
            .trim_end_matches('/')
            .to_string();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let addr = super::serve_on_own_thread(move |listener| async move {
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                    _ = &mut stop_rx => return,
                };
                let (acceptor, upstream, counted) =
                    (acceptor.clone(), upstream.clone(), Arc::clone(&counted));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy {
            endpoint: format!("https://{addr}"),
            handshakes,
            stop: Some(stop_tx),
        }
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
