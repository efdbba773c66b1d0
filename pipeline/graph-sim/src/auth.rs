//! The simulator's sign-in side: the token endpoint (client secret, a certificate's RS256
//! assertion checked with `jsonwebtoken` against the registered certificate, a federated
//! assertion, device code and refresh grants), the managed identity endpoints, and the
//! JWT-shaped tokens it issues and later checks on every Graph request.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::Simulator;
use crate::http::{Reply, Request};
use crate::store::parse_query;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew tolerated on an assertion's `nbf` / `exp`, as Entra ID does.
const ASSERTION_SKEW_SECS: i64 = 300;

fn refuse(code: &str, description: &str) -> Reply {
    Reply::json(
        401,
        serde_json::json!({"error": code, "error_description": description}).to_string(),
    )
}

impl Simulator {
    /// `/{tenant}/oauth2/v2.0/token`: device code and refresh grants hand out delegated
    /// tokens; client credentials need the secret or a valid assertion.
    pub(crate) fn token(&self, req: &Request) -> Reply {
        let form = parse_query(&String::from_utf8_lossy(&req.body));
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let client_id = get("client_id");
        let resource = get("scope")
            .split(' ')
            .next()
            .unwrap_or_default()
            .trim_end_matches("/.default")
            .to_string();
        match get("grant_type") {
            "urn:ietf:params:oauth:grant-type:device_code" => {
                self.device_code_grant(get("device_code"), client_id, &resource)
            }
            "refresh_token" => {
                let known = self
                    .refresh_tokens
                    .lock()
                    .expect("not poisoned")
                    .remove(get("refresh_token"));
                if !known {
                    return refuse(
                        "invalid_grant",
                        "AADSTS70000: The refresh token is not valid.",
                    );
                }
                self.delegated_token(client_id, &resource)
            }
            "client_credentials" if !client_id.is_empty() => {
                if let Err(reply) = self.client_credentials(req, &form, client_id) {
                    return reply;
                }
                Reply::json(
                    200,
                    serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                        "access_token": self.issue(client_id, &resource, false)})
                    .to_string(),
                )
            }
            _ => refuse(
                "invalid_request",
                "AADSTS900144: grant_type and client_id are required.",
            ),
        }
    }

    /// A device code poll: `authorization_pending` until the person has "signed in".
    fn device_code_grant(&self, device_code: &str, client_id: &str, resource: &str) -> Reply {
        let mut codes = self.device_codes.lock().expect("not poisoned");
        let Some(pending) = codes.get_mut(device_code) else {
            return Reply::json(
                400,
                r#"{"error":"expired_token","error_description":"AADSTS70020: The provided value for the input parameter 'device_code' is not valid."}"#.into(),
            );
        };
        if *pending > 0 {
            *pending -= 1;
            return Reply::json(
                400,
                r#"{"error":"authorization_pending","error_description":"AADSTS70016: OAuth 2.0 device flow error. Authorization is pending."}"#.into(),
            );
        }
        codes.remove(device_code);
        drop(codes);
        self.delegated_token(client_id, resource)
    }

    /// The client's proof in a client credentials grant: the secret, or an assertion.
    fn client_credentials(
        &self,
        req: &Request,
        form: &HashMap<String, String>,
        client_id: &str,
    ) -> Result<(), Reply> {
        if let Some(secret) = form.get("client_secret") {
            if *secret != self.auth.client_secret {
                return Err(refuse(
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                ));
            }
            return Ok(());
        }
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(refuse(
                "invalid_client",
                "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required.",
            ));
        }
        let assertion = form
            .get("client_assertion")
            .map(String::as_str)
            .unwrap_or_default();
        let audience = format!(
            "http://{}{}",
            req.header("host").unwrap_or_default(),
            req.path
        );
        self.check_assertion(assertion, client_id, &audience)
            .map_err(|e| refuse("invalid_client", &e))
    }

    /// A client assertion: a certificate's (signature, `x5t`, `aud`, `iss` = `sub` = client,
    /// unique `jti`, at most 10 minutes long, valid now within 5 minutes of skew), or a
    /// federated token (any JWT; the simulator has no issuer to check it against).
    fn check_assertion(&self, jwt: &str, client_id: &str, audience: &str) -> Result<(), String> {
        let malformed = || "AADSTS50027: JWT token is invalid or malformed.".to_string();
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| malformed())?;
        if jwt.split('.').count() != 3 {
            return Err(malformed());
        }
        let Some(x5t) = header.x5t else {
            return Ok(()); // federated
        };
        let cert = self
            .auth
            .certificate
            .as_ref()
            .ok_or("AADSTS700027: no certificate is registered for the app.")?;
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert);
        if URL_SAFE_NO_PAD.encode(digest.as_ref()) != x5t {
            return Err(format!(
                "AADSTS700027: the key (x5t {x5t}) is not registered on the app."
            ));
        }
        let claims = verify_rs256(jwt, cert).map_err(|e| {
            format!("AADSTS700027: client assertion failed signature validation: {e}")
        })?;
        self.check_claims(&claims, client_id, audience)
    }

    /// An assertion's claims: audience, issuer and subject, lifetime, time range on the
    /// simulator's (skewed) clock, and a `jti` not seen before.
    fn check_claims(&self, claims: &Value, client_id: &str, audience: &str) -> Result<(), String> {
        if claims["aud"] != audience {
            return Err(format!(
                "AADSTS700016: the assertion's audience {} is not {audience}.",
                claims["aud"]
            ));
        }
        if claims["iss"] != client_id || claims["sub"] != client_id {
            return Err("AADSTS700021: the assertion's iss and sub must be the client id.".into());
        }
        let (nbf, exp) = (
            claims["nbf"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        if exp - nbf > 600 {
            return Err("AADSTS700025: the assertion lives longer than 10 minutes.".into());
        }
        let now = chrono::Utc::now().timestamp() + self.faults.clock_skew_secs;
        if now + ASSERTION_SKEW_SECS < nbf || now - ASSERTION_SKEW_SECS > exp {
            return Err(format!(
                "AADSTS700024: Client assertion is not within its valid time range (now {now}, nbf {nbf}, exp {exp})."
            ));
        }
        let jti = claims["jti"].as_str().unwrap_or_default().to_string();
        if jti.is_empty()
            || !self
                .assertions_seen
                .lock()
                .expect("not poisoned")
                .insert(jti)
        {
            return Err("AADSTS700023: the assertion's jti was already used.".into());
        }
        Ok(())
    }

    /// The App Service (`/msi/token`, `X-IDENTITY-HEADER`) and VM metadata service
    /// (`/metadata/identity/oauth2/token`, `Metadata: true`) managed identity endpoints.
    pub(crate) fn managed_identity(&self, req: &Request) -> Reply {
        let allowed = if req.path == "/msi/token" {
            req.header("x-identity-header") == Some(self.auth.identity_header.as_str())
        } else {
            req.header("metadata") == Some("true")
        };
        let Some(resource) = req.query.get("resource").filter(|_| allowed) else {
            return Reply::json(
                400,
                r#"{"error":"invalid_request","error_description":"Required metadata header not specified or resource missing"}"#.into(),
            );
        };
        let client = req
            .query
            .get("client_id")
            .map_or("system-assigned", String::as_str);
        let expires_on = chrono::Utc::now().timestamp() + 86_399;
        Reply::json(
            200,
            serde_json::json!({"access_token": self.issue(client, resource, false), "expires_on": expires_on.to_string(),
                "resource": resource, "token_type": "Bearer"})
            .to_string(),
        )
    }

    /// The device code endpoint: a code "entered" after `device_code_polls` polls.
    pub(crate) fn device_code(&self, req: &Request) -> Reply {
        let code = uuid::Uuid::new_v4().simple().to_string();
        let user_code = code[..8].to_ascii_uppercase();
        self.device_codes
            .lock()
            .expect("not poisoned")
            .insert(code.clone(), self.faults.device_code_polls);
        let uri = format!(
            "http://{}/devicelogin",
            req.header("host").unwrap_or_default()
        );
        Reply::json(
            200,
            serde_json::json!({"device_code": code, "user_code": user_code, "verification_uri": uri,
                "expires_in": 900, "interval": 1,
                "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate.")})
            .to_string(),
        )
    }

    /// A delegated token and its refresh token.
    fn delegated_token(&self, client_id: &str, resource: &str) -> Reply {
        let refresh = uuid::Uuid::new_v4().simple().to_string();
        self.refresh_tokens
            .lock()
            .expect("not poisoned")
            .insert(refresh.clone());
        Reply::json(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "scope": "EntitlementManagement.Read.All AuditLog.Read.All",
                "access_token": self.issue(client_id, resource, true), "refresh_token": refresh})
            .to_string(),
        )
    }

    /// A new JWT-shaped token (unsigned: only the simulator checks it, by lookup): app-only
    /// tokens carry the configured roles, delegated ones a `scp` claim.
    fn issue(&self, client_id: &str, resource: &str, delegated: bool) -> String {
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = if delegated {
            serde_json::json!({"aud": resource, "appid": client_id, "scp": "EntitlementManagement.Read.All AuditLog.Read.All",
                "jti": uuid::Uuid::new_v4().to_string()})
        } else {
            serde_json::json!({"aud": resource, "appid": client_id, "roles": self.auth.roles,
                "jti": uuid::Uuid::new_v4().to_string()})
        };
        let token = format!(
            "{}.{}.{}",
            b64(serde_json::json!({"typ": "JWT", "alg": "none"})),
            b64(claims),
            uuid::Uuid::new_v4().simple()
        );
        self.tokens
            .lock()
            .expect("not poisoned")
            .insert(token.clone(), (0, delegated));
        token
    }

    /// The bearer token of a Graph request, counted: `Some(delegated)` while it is valid
    /// (issued here and within its request lifetime), `None` otherwise.
    pub(crate) fn signed_in(&self, req: &Request) -> Option<bool> {
        let bearer = req.header("authorization")?.strip_prefix("Bearer ")?;
        let mut tokens = self.tokens.lock().expect("not poisoned");
        let (used, delegated) = tokens.get_mut(bearer)?;
        *used += 1;
        let fresh = self
            .faults
            .token_lifetime_requests
            .is_none_or(|limit| *used <= limit);
        fresh.then_some(*delegated)
    }
}

/// Checks an RS256 JWT's signature against a certificate (DER) and returns its claims;
/// times, audience and issuer are left to the caller (the simulator's clock may be skewed).
pub fn verify_rs256(jwt: &str, cert_der: &[u8]) -> Result<Value, String> {
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", cert_der.to_vec()));
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("the certificate has no RSA key ({e})"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                "the assertion's signature does not match the certificate".to_string()
            }
            _ => format!("the assertion is not a valid RS256 JWT ({e})"),
        })
}
