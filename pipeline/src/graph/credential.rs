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

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{self, RsaKeyPair};
use url::Url;

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
    key: RsaKeyPair,
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
    pub fn from_file(path: &Path, password: Option<&Secret>) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the client certificate `{}`: {e}",
                path.display()
            )
        })?;
        match String::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN ") => Self::from_pem(&text, path),
            _ => Self::from_pem(&pfx_to_pem(path, password)?, path),
        }
    }

    fn from_pem(text: &str, path: &Path) -> Result<Self, String> {
        let name = path.display();
        let blocks = pem_blocks(text);
        let cert = blocks
            .iter()
            .find(|(label, _)| label == "CERTIFICATE")
            .ok_or_else(|| format!("`{name}` holds no CERTIFICATE block: put the certificate and its private key in one PEM file"))?;
        let key = blocks
            .iter()
            .find_map(|(label, der)| match label.as_str() {
                "PRIVATE KEY" => Some(RsaKeyPair::from_pkcs8(der)),
                "RSA PRIVATE KEY" => Some(RsaKeyPair::from_der(der)),
                _ => None,
            })
            .ok_or_else(|| format!("`{name}` holds no unencrypted PRIVATE KEY or RSA PRIVATE KEY block"))?
            .map_err(|e| format!("the private key in `{name}` is not a usable RSA key ({e}); Entra needs RSA 2048 bits or more"))?;
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert.1);
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
    /// (UNIX seconds) for ten minutes.
    pub fn assertion(&self, audience: &str, client_id: &str, now: i64) -> Result<String, String> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.thumbprint});
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// Opens a PFX file with `openssl pkcs12` (OpenSSL 3 needs `-legacy` for old RC2/3DES files).
fn pfx_to_pem(path: &Path, password: Option<&Secret>) -> Result<String, String> {
    const VAR: &str = "GOVLAKE_PFX_PASSWORD";
    let mut last = String::new();
    for legacy in [false, true] {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["pkcs12", "-nodes", "-passin", &format!("env:{VAR}")])
            .arg("-in")
            .arg(path)
            .env(VAR, password.map_or("", Secret::expose));
        if legacy {
            cmd.arg("-legacy");
        }
        let out = cmd.output().map_err(|e| {
            format!(
                "`{}` is not PEM, and reading it as PFX needs the `openssl` command ({e}); or convert it elsewhere: openssl pkcs12 -in app.pfx -out app.pem -nodes",
                path.display()
            )
        })?;
        if out.status.success() {
            return String::from_utf8(out.stdout)
                .map_err(|_| "openssl printed non-UTF-8 PEM".into());
        }
        last = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
    }
    Err(format!(
        "cannot open `{}` as PFX (wrong AZURE_CLIENT_CERTIFICATE_PASSWORD, or not a PFX file): {last}",
        path.display()
    ))
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
    pub fn from_env(client_id: Option<String>) -> Result<Self, String> {
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
            .map_err(|_| format!("the managed identity endpoint `{endpoint}` is not a URL"))?;
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
    ) -> Result<TokenRequest, String> {
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
        let url = Url::parse(&url_text).map_err(|_| format!("`{url_text}` is not a URL"))?;
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
                let assertion = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "cannot read the federated token file `{}`: {e}",
                        path.display()
                    )
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

/// The `-----BEGIN X-----` blocks of a PEM text: (label, DER).
pub fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((label, b64)) = current.take()
                && let Ok(der) = STANDARD.decode(b64)
            {
                out.push((label, der));
            }
        } else if let Some((_, b64)) = &mut current
            && !line.contains(':')
        {
            b64.push_str(line);
        }
    }
    out
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
    fn pem_blocks_skip_headers_and_garbage() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nBAU=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks[0], ("CERTIFICATE".to_string(), vec![0, 1, 2, 3]));
        assert_eq!(blocks[1], ("ENCRYPTED PRIVATE KEY".to_string(), vec![4, 5]));
    }

    #[test]
    fn a_pem_without_a_key_is_named_in_the_error() {
        let e = ClientCertificate::from_pem(
            "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n",
            Path::new("app.pem"),
        )
        .unwrap_err();
        assert!(
            e.contains("`app.pem` holds no unencrypted PRIVATE KEY"),
            "{e}"
        );
    }
}
