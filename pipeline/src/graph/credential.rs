//! How govlake proves who it is to Microsoft Entra: a client secret, a certificate (PEM, or
//! PFX opened by `openssl`; a signed client assertion, RS256 with the certificate's SHA-1
//! thumbprint as `x5t`), workload
//! identity federation (a token file the platform keeps fresh), or a managed identity (the
//! App Service / Container Apps identity endpoint, or the VM metadata service): all app-only.
//! Delegated sign-in is the device code flow (a person signs in on another device), for what
//! app-only tokens cannot read: approval stages. Each app-only credential turns into one
//! token request; the client (`client.rs`) sends it, retries it, caches the token, and runs
//! the device code flow's polling. Secrets and keys never print: `Secret` and `ClientCertificate` redact their
//! `Debug`. Also here: reading the app roles a token carries, so a run can warn when the app
//! holds more than read permissions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::BoxError;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::RsaKeyPair;
use url::Url;

pub use super::error::CredentialError;

/// Result of credential work.
pub type Result<T, E = CredentialError> = std::result::Result<T, E>;

/// The assertion type of a JWT client assertion (certificate or federation).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a certificate assertion: Entra accepts up to 10 minutes.
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// How the app proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A client secret (`AZURE_CLIENT_SECRET`).
    Secret(Secret),
    /// A certificate registered on the app (`AZURE_CLIENT_CERTIFICATE_PATH`, PEM with the
    /// private key and the certificate).
    Certificate(Arc<ClientCertificate>),
    /// Workload identity federation: a token file a platform keeps fresh
    /// (`AZURE_FEDERATED_TOKEN_FILE`, as on AKS and in GitHub Actions), sent as the client
    /// assertion. Read again at every sign-in.
    FederatedTokenFile(PathBuf),
    /// The managed identity of the Azure resource govlake runs on.
    ManagedIdentity(ManagedIdentity),
    /// Delegated: a person signs in with a code on another device; `prompt` shows them the
    /// instructions.
    DeviceCode(DeviceCodePrompt),
}

/// Shows the device code sign-in instructions to the person running govlake.
#[derive(Clone)]
pub struct DeviceCodePrompt(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for DeviceCodePrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceCodePrompt")
    }
}

/// A secret that prints as `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A certificate credential: the RSA private key and the certificate's thumbprint.
pub struct ClientCertificate {
    key: jsonwebtoken::EncodingKey,
    /// `x5t`: base64url of the SHA-1 of the certificate's DER.
    thumbprint: String,
    path: PathBuf,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("path", &self.path)
            .field("x5t", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads a PEM file holding the private key (`PRIVATE KEY` or `RSA PRIVATE KEY`) and the
    /// certificate (`CERTIFICATE`), in any order, or a PFX (PKCS#12) file, which the
    /// `openssl` command opens (its password from `password`, passed through the
    /// environment, never the command line).
    pub fn from_file(path: &Path, password: Option<&Secret>) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| CredentialError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN ") => Self::from_pem(&text, path),
            _ => Self::from_pem(&pfx_to_pem(path, password)?, path),
        }
    }

    fn from_pem(text: &str, path: &Path) -> Result<Self> {
        let blocks = pem::parse_many(text).map_err(|source| CredentialError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
        let cert = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| CredentialError::NoCertificate {
                path: path.to_path_buf(),
            })?;
        let key = blocks
            .iter()
            .find(|b| matches!(b.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"))
            .ok_or_else(|| CredentialError::NoKey {
                path: path.to_path_buf(),
            })?;
        let bad_key = |source: BoxError| CredentialError::BadKey {
            path: path.to_path_buf(),
            source,
        };
        // Checked now, so a key Entra will not take fails at start, naming the file (the
        // signer would only find out at the first sign-in).
        match key.tag() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(key.contents()).map(drop),
            _ => RsaKeyPair::from_der(key.contents()).map(drop),
        }
        .map_err(|e| bad_key(Box::new(e)))?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem::encode(key).as_bytes())
            .map_err(|e| bad_key(Box::new(e)))?;
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.contents());
        Ok(Self {
            key,
            thumbprint: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            path: path.to_path_buf(),
        })
    }

    /// The thumbprint header value (`x5t`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A signed client assertion for `audience` (the token endpoint), valid from `now`
    /// (UNIX seconds) for ten minutes: RS256, header `{"typ":"JWT","alg":"RS256","x5t":…}`.
    pub fn assertion(&self, audience: &str, client_id: &str, now: i64) -> Result<String> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            iss: &'a str,
            sub: &'a str,
            jti: String,
            nbf: i64,
            iat: i64,
            exp: i64,
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t = Some(self.thumbprint.clone());
        let claims = Claims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|source| CredentialError::Sign {
            path: self.path.clone(),
            source,
        })
    }
}

/// Opens a PFX file with `openssl pkcs12` (OpenSSL 3 needs `-legacy` for old RC2/3DES files).
fn pfx_to_pem(path: &Path, password: Option<&Secret>) -> Result<String> {
    const VAR: &str = "GOVLAKE_PFX_PASSWORD";
    let mut said = String::new();
    for legacy in [false, true] {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["pkcs12", "-nodes", "-passin", &format!("env:{VAR}")])
            .arg("-in")
            .arg(path)
            .env(VAR, password.map_or("", Secret::expose));
        if legacy {
            cmd.arg("-legacy");
        }
        let out = cmd.output().map_err(|source| CredentialError::NoOpenssl {
            path: path.to_path_buf(),
            source,
        })?;
        if out.status.success() {
            return String::from_utf8(out.stdout).map_err(|_| CredentialError::PfxNotText {
                path: path.to_path_buf(),
            });
        }
        said = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
    }
    Err(CredentialError::Pfx {
        path: path.to_path_buf(),
        said,
    })
}

/// A managed identity: the App Service / Functions / Container Apps identity endpoint
/// (`IDENTITY_ENDPOINT` and `IDENTITY_HEADER`), else the VM instance metadata service.
#[derive(Debug, Clone)]
pub struct ManagedIdentity {
    /// Where tokens come from.
    pub endpoint: Url,
    /// `X-IDENTITY-HEADER` for the App Service form; `None` means the metadata service form.
    pub header: Option<Secret>,
    /// A user-assigned identity's client id (`AZURE_CLIENT_ID`); none for system-assigned.
    pub client_id: Option<String>,
}

impl ManagedIdentity {
    /// The identity the environment offers.
    pub fn from_env(client_id: Option<String>) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (endpoint, header) = match (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
            (Some(e), Some(h)) => (e, Some(Secret::new(h))),
            _ => {
                let host = env("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| "http://169.254.169.254".into());
                (
                    format!(
                        "{}/metadata/identity/oauth2/token",
                        host.trim_end_matches('/')
                    ),
                    None,
                )
            }
        };
        let endpoint = Url::parse(&endpoint)
            .map_err(|source| CredentialError::IdentityEndpoint { endpoint, source })?;
        Ok(Self {
            endpoint,
            header,
            client_id,
        })
    }
}

/// What a token request sends.
pub(crate) enum TokenRequest {
    /// An OAuth 2.0 client-credentials form to the authority.
    Form { url: Url, body: String },
    /// A GET to a managed identity endpoint.
    Get {
        url: Url,
        headers: Vec<(&'static str, String)>,
    },
}

impl TokenRequest {
    /// The secret values it carries (a client secret or assertion, a refresh token, a
    /// device code, an identity header), for scrubbing echoes of them from answers.
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            TokenRequest::Form { body, .. } => url::form_urlencoded::parse(body.as_bytes())
                .filter(|(k, _)| {
                    matches!(
                        k.as_ref(),
                        "client_secret" | "client_assertion" | "refresh_token" | "device_code"
                    )
                })
                .map(|(_, v)| v.into_owned())
                .collect(),
            TokenRequest::Get { headers, .. } => headers
                .iter()
                .filter(|(k, _)| *k != "Metadata")
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }
}

impl Credential {
    /// The secret this credential holds in memory (a client secret, an identity header),
    /// for scrubbing echoes of it from answers.
    pub(crate) fn secret(&self) -> Option<&str> {
        match self {
            Credential::Secret(s) => Some(s.expose()),
            Credential::ManagedIdentity(mi) => mi.header.as_ref().map(Secret::expose),
            _ => None,
        }
    }

    /// The token request for `resource` (`https://graph.microsoft.com`, the Log Analytics
    /// API, …).
    pub(crate) fn token_request(
        &self,
        authority: &Url,
        tenant: &str,
        client_id: &str,
        resource: &str,
    ) -> Result<TokenRequest> {
        let resource = resource.trim_end_matches('/');
        if let Credential::ManagedIdentity(mi) = self {
            let mut url = mi.endpoint.clone();
            let mut headers = vec![];
            {
                let mut q = url.query_pairs_mut();
                match &mi.header {
                    Some(h) => {
                        q.append_pair("api-version", "2019-08-01");
                        headers.push(("X-IDENTITY-HEADER", h.expose().to_string()));
                    }
                    None => {
                        q.append_pair("api-version", "2018-02-01");
                        headers.push(("Metadata", "true".to_string()));
                    }
                }
                q.append_pair("resource", resource);
                if let Some(id) = &mi.client_id {
                    q.append_pair("client_id", id);
                }
            }
            return Ok(TokenRequest::Get { url, headers });
        }
        let url_text = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.as_str().trim_end_matches('/'),
            tenant
        );
        let url = Url::parse(&url_text).map_err(|source| CredentialError::TokenUrl {
            url: url_text.clone(),
            source,
        })?;
        let scope = format!("{resource}/.default");
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("scope", &scope);
        match self {
            Credential::Secret(s) => {
                form.append_pair("client_secret", s.expose());
            }
            Credential::Certificate(cert) => {
                let now = chrono::Utc::now().timestamp();
                let assertion = cert.assertion(url.as_str(), client_id, now)?;
                form.append_pair("client_assertion_type", JWT_BEARER)
                    .append_pair("client_assertion", &assertion);
            }
            Credential::FederatedTokenFile(path) => {
                let assertion =
                    std::fs::read_to_string(path).map_err(|source| CredentialError::TokenFile {
                        path: path.clone(),
                        source,
                    })?;
                form.append_pair("client_assertion_type", JWT_BEARER)
                    .append_pair("client_assertion", assertion.trim());
            }
            Credential::ManagedIdentity(_) | Credential::DeviceCode(_) => {
                unreachable!("not a single request")
            }
        }
        Ok(TokenRequest::Form {
            url,
            body: form.finish(),
        })
    }

    /// What to check when sign-in fails.
    pub(crate) fn hint(&self) -> &'static str {
        match self {
            Credential::Secret(_) => {
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"
            }
            Credential::Certificate(_) => {
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID and that the certificate in AZURE_CLIENT_CERTIFICATE_PATH is registered on the app"
            }
            Credential::FederatedTokenFile(_) => {
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID and the federated credential's issuer and subject on the app"
            }
            Credential::ManagedIdentity(_) => {
                "check that the resource has a managed identity (and AZURE_CLIENT_ID for a user-assigned one)"
            }
            Credential::DeviceCode(_) => {
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID (a public client app with delegated EntitlementManagement.Read.All) and sign in within the time shown"
            }
        }
    }
}

/// The app roles (`roles` claim) an access token carries; empty when it is not a JWT.
pub fn token_roles(token: &str) -> Vec<String> {
    let Some(payload) = token.split('.').nth(1) else {
        return vec![];
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return vec![];
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return vec![];
    };
    claims["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The roles among `roles` that grant more than reading.
pub fn write_roles(roles: &[String]) -> Vec<String> {
    roles
        .iter()
        .filter(|r| {
            // `Resource.Action[.Scope]`: the action says what the role allows.
            r.split('.').skip(1).any(|action| {
                let a = action.to_ascii_lowercase();
                a.contains("write") || a.starts_with("manage") || a == "fullcontrol"
            })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_of_a_token_and_the_ones_that_write() {
        let claims = URL_SAFE_NO_PAD.encode(
            r#"{"roles":["EntitlementManagement.Read.All","EntitlementManagement.ReadWrite.All","AuditLog.Read.All","Directory.Write.Restricted"]}"#,
        );
        let roles = token_roles(&format!("e30.{claims}.sig"));
        assert_eq!(roles.len(), 4);
        assert_eq!(
            write_roles(&roles),
            [
                "EntitlementManagement.ReadWrite.All",
                "Directory.Write.Restricted"
            ]
        );
        assert!(token_roles("opaque-token").is_empty());
    }

    #[test]
    fn an_encrypted_key_or_a_broken_pem_is_named_in_the_error() {
        let cert = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nBAU=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = ClientCertificate::from_pem(&format!("{cert}{encrypted}"), Path::new("app.pem"));
        assert!(matches!(e, Err(CredentialError::NoKey { .. })), "{e:?}");
        let e = ClientCertificate::from_pem(
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            Path::new("app.pem"),
        )
        .unwrap_err();
        assert!(matches!(e, CredentialError::Pem { .. }), "{e:?}");
        assert!(
            e.to_string().contains("`app.pem` is not a valid PEM file"),
            "{e}"
        );
    }

    #[test]
    fn a_pem_without_a_key_is_named_in_the_error() {
        let e = ClientCertificate::from_pem(
            "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n",
            Path::new("app.pem"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`app.pem` holds no unencrypted PRIVATE KEY"),
            "{e}"
        );
    }

    /// Runs openssl (the test suite needs it anyway: tests/it/live.rs makes certificates
    /// with it); its stdout.
    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new self-signed RSA certificate and its (PKCS#8) key.
    fn self_signed(key: &str, cert: &str) {
        openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=unit",
            "-keyout", key, "-out", cert,
        ]);
    }

    #[test]
    fn an_assertion_carries_the_claims_entra_checks_and_verifies_with_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("app.key"), dir.path().join("app.crt"));
        let (key_s, cert_s) = (key.to_str().unwrap(), cert.to_str().unwrap());
        for key_format in ["pkcs8", "pkcs1"] {
            self_signed(key_s, cert_s);
            let key_pem = if key_format == "pkcs1" {
                // `RSA PRIVATE KEY`, the older form.
                openssl(&["rsa", "-in", key_s, "-traditional"])
            } else {
                std::fs::read(&key).unwrap()
            };
            // Certificate first, key second: any order is read.
            let both = dir.path().join("both.pem");
            let mut text = std::fs::read(&cert).unwrap();
            text.extend(key_pem);
            std::fs::write(&both, text).unwrap();
            let c = ClientCertificate::from_file(&both, None).unwrap();

            // x5t computed apart: openssl's SHA-1 fingerprint of the certificate, base64url.
            let fingerprint = String::from_utf8(openssl(&[
                "x509",
                "-in",
                cert_s,
                "-noout",
                "-fingerprint",
                "-sha1",
            ]))
            .unwrap();
            let hex: String = fingerprint
                .trim()
                .rsplit('=')
                .next()
                .unwrap()
                .replace(':', "");
            let sha1 = hex::decode(hex).unwrap();
            assert_eq!(c.thumbprint(), URL_SAFE_NO_PAD.encode(sha1));

            let aud = "https://login.test/contoso/oauth2/v2.0/token";
            let now = chrono::Utc::now().timestamp();
            let jwt = c.assertion(aud, "app-id", now).unwrap();
            // The header exactly as before: typ, alg and x5t, nothing else.
            let header: serde_json::Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(jwt.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                header,
                serde_json::json!({"typ": "JWT", "alg": "RS256", "x5t": c.thumbprint()})
            );
            // The signature checks out against the certificate's public key, as openssl
            // reads it from the certificate.
            let public = openssl(&["x509", "-in", cert_s, "-noout", "-pubkey"]);
            let mut check = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            check.set_audience(&[aud]);
            check.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
            let claims = jsonwebtoken::decode::<serde_json::Value>(
                &jwt,
                &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
                &check,
            )
            .unwrap()
            .claims;
            let jti = claims["jti"].as_str().unwrap();
            assert!(uuid::Uuid::parse_str(jti).is_ok(), "{jti}");
            assert_eq!(
                claims,
                serde_json::json!({
                    "aud": aud, "iss": "app-id", "sub": "app-id", "jti": jti,
                    "nbf": now, "iat": now, "exp": now + 600,
                })
            );
            // Another certificate's key does not verify it.
            self_signed(key_s, cert_s);
            let other = openssl(&["x509", "-in", cert_s, "-noout", "-pubkey"]);
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(
                    &jwt,
                    &jsonwebtoken::DecodingKey::from_rsa_pem(&other).unwrap(),
                    &check,
                )
                .is_err()
            );
        }
    }
}
