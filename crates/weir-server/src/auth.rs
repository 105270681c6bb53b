//! Who may connect: the users and their passwords, checked by SCRAM-SHA-256
//! (Postgres' default password method), and the TLS configuration.
//!
//! Passwords are never kept as given: each user's is salted and hashed once
//! when the server starts (PBKDF2, 4096 rounds, as Postgres does), and the
//! SCRAM exchange proves the client knows it without sending it. A user that
//! does not exist gets the same exchange with a made-up salt that no
//! password matches, so the answer never tells whether the user exists
//! (Postgres' "mock authentication"): both end with `FATAL 28P01 password
//! authentication failed for user "..."`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password, random_nonce};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Bytes of a salt, as Postgres makes them: a real user's and a made-up
/// one look alike.
const SALT_BYTES: usize = 16;

/// `n` random bytes (from the nonce generator's random source, hashed).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n);
    while bytes.len() < n {
        let block = gen_salted_password(&random_nonce(), random_nonce().as_bytes(), 1);
        bytes.extend_from_slice(&block);
    }
    bytes.truncate(n);
    bytes
}

/// The users who may connect, with their salted passwords.
pub struct Users {
    /// User name to (salt, salted password).
    credentials: HashMap<String, (Vec<u8>, Vec<u8>)>,
    /// Makes the salt of a user who does not exist (stable per name).
    mock_key: Vec<u8>,
    /// The salted password of a user who does not exist: no password gives it.
    mock_salted: Vec<u8>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.credentials.keys().collect();
        names.sort();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

impl Users {
    /// Users from (name, password) pairs; a later pair for a name wins.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Users {
        let credentials = pairs
            .into_iter()
            .map(|(name, password)| {
                let salt = random_bytes(SALT_BYTES);
                let salted = gen_salted_password(&password, &salt, SCRAM_ITERATIONS);
                (name, (salt, salted))
            })
            .collect();
        Users {
            credentials,
            mock_key: random_bytes(32),
            mock_salted: random_bytes(32),
        }
    }

    /// Reads a users file: one `name:password` per line (the password is
    /// everything after the first colon); blank lines and lines starting
    /// with `#` are skipped.
    pub fn parse_file(text: &str) -> Result<Vec<(String, String)>, String> {
        let mut pairs = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((name, password)) = line.split_once(':') else {
                return Err(format!(
                    "line {}: expected name:password, found no colon",
                    number + 1
                ));
            };
            let name = name.trim();
            if name.is_empty() || password.is_empty() {
                return Err(format!(
                    "line {}: expected name:password, with neither empty",
                    number + 1
                ));
            }
            pairs.push((name.to_string(), password.to_string()));
        }
        Ok(pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    pub fn len(&self) -> usize {
        self.credentials.len()
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        Ok(match self.credentials.get(user) {
            Some((salt, salted)) => Password::new(Some(salt.clone()), salted.clone()),
            None => {
                let salt = gen_salted_password(user, &self.mock_key, 1);
                Password::new(Some(salt[..SALT_BYTES].to_vec()), self.mock_salted.clone())
            }
        })
    }
}

/// The server's TLS settings, from a certificate chain and its key (PEM).
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// The certificate chain as read, for SCRAM channel binding.
    pub certificate_pem: Vec<u8>,
}

impl Tls {
    pub fn load(certificate: &Path, key: &Path) -> Result<Tls, String> {
        let pem = std::fs::read(certificate)
            .map_err(|e| format!("cannot read the certificate {}: {e}", certificate.display()))?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate {}: {e}", certificate.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "the certificate {} holds no PEM certificate",
                certificate.display()
            ));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("the key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
        // What clients that start with TLS directly (sslnegotiation=direct)
        // ask for.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate_pem: pem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_files_take_name_colon_password_lines() {
        let pairs = Users::parse_file("# admins\nalice:s3cr:et\n\n  bob:pw\r\n").expect("valid");
        assert_eq!(
            pairs,
            vec![
                ("alice".to_string(), "s3cr:et".to_string()),
                ("bob".to_string(), "pw".to_string())
            ]
        );
        let error = Users::parse_file("alice:pw\nbob\n").expect_err("no colon");
        assert!(error.starts_with("line 2:"), "{error}");
        assert!(Users::parse_file(":pw").is_err());
        assert!(Users::parse_file("carol:").is_err());
    }

    #[tokio::test]
    async fn unknown_users_get_a_stable_salt_that_no_password_matches() {
        let users = Users::new([("alice".to_string(), "pw".to_string())]);
        let login = |user: &'static str| LoginInfo::new(Some(user), None, "127.0.0.1".into());
        let alice = users.get_password(&login("alice")).await.expect("alice");
        let salt = alice.salt().expect("a salt").to_vec();
        assert_eq!(
            alice.password(),
            gen_salted_password("pw", &salt, SCRAM_ITERATIONS)
        );
        let first = users.get_password(&login("mallory")).await.expect("mock");
        let again = users.get_password(&login("mallory")).await.expect("mock");
        assert_eq!(first.salt(), again.salt());
        // A made-up salt looks like a real one: same length.
        assert_eq!(first.salt().map(<[u8]>::len), Some(salt.len()));
        assert_eq!(first.password().len(), alice.password().len());
        let mock_salt = first.salt().expect("a salt");
        assert_ne!(
            first.password(),
            gen_salted_password("pw", mock_salt, SCRAM_ITERATIONS)
        );
    }
}
