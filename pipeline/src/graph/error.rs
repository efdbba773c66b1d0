//! What can go wrong talking to Microsoft Graph, the token endpoint or the Log Analytics API.
//! [`Error`] is what a call returns; each variant names the URL, file or workspace to act on
//! and says what to do, and keeps its cause as a `#[source]` (never interpolated, so the
//! printer's walk down the chain shows each cause once). [`AttemptError`] is why one attempt
//! failed: the retry loop keeps the last one, and `GaveUp` and `Deadline` carry it as their
//! source. [`CredentialError`] is a credential that cannot make a token request (an
//! unreadable certificate or token file, a key Entra will not take).

use std::path::PathBuf;

/// A foreign error kept as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors talking to Graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token endpoint refused the credentials.
    #[error("Sign-in at `{url}` failed ({status}): {message}. Next: {hint}")]
    Auth {
        /// Token endpoint.
        url: String,
        /// HTTP status (0: no answer said why).
        status: u16,
        /// What the endpoint said (scrubbed of secrets).
        message: String,
        /// What to check.
        hint: &'static str,
    },
    /// The credential cannot make a token request.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// An endpoint could not be reached at all (outside the retried requests).
    #[error("Cannot reach `{url}`; check the network and the endpoint flags")]
    Unreachable {
        /// Request URL.
        url: String,
        /// Why.
        #[source]
        source: AttemptError,
    },
    /// Graph refused the request for lack of permission.
    #[error("Graph refused `{url}` (403 Forbidden): {message}")]
    Forbidden {
        /// Request URL.
        url: String,
        /// What Graph said (scrubbed of secrets).
        message: String,
    },
    /// Graph answered with an error that retrying does not fix.
    #[error("Graph answered `{url}` with {status}: {message}")]
    Status {
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// What Graph said (`error.code: error.message`, scrubbed of secrets).
        message: String,
    },
    /// Attempts ran out.
    #[error("Gave up on `{url}` after {attempts} attempts; rerun later (or raise --max-attempts)")]
    GaveUp {
        /// Request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        #[source]
        last: AttemptError,
    },
    /// The next attempt would start after the run's deadline.
    #[error(
        "Stopped retrying `{url}` after {attempts} attempts: the next attempt would be {wait_secs:.0} s from now, past the run's deadline (--deadline-minutes); rerun later"
    )]
    Deadline {
        /// Request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The wait the next attempt needed (seconds).
        wait_secs: f64,
        /// The last attempt's failure.
        #[source]
        last: AttemptError,
    },
    /// A nextLink pointed away from the configured Graph host.
    #[error(
        "Refusing to follow `@odata.nextLink` `{link}`: it leaves the configured Graph endpoint `{endpoint}` (no token is sent anywhere else)"
    )]
    ForeignLink {
        /// The link.
        link: String,
        /// The configured endpoint.
        endpoint: String,
    },
    /// A nextLink repeated an earlier one.
    #[error("`@odata.nextLink` `{0}` repeats an earlier page: the listing loops; stopping")]
    LinkCycle(String),
    /// A URL could not be built or parsed.
    #[error("`{url}` is not a URL; check the endpoint flags (--graph-endpoint, --authority-host)")]
    BadUrl {
        /// The text.
        url: String,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// The HTTP client could not be built.
    #[error(
        "Cannot set up the HTTP client (TLS roots, proxy settings); check the system's CA certificates and HTTPS_PROXY"
    )]
    HttpClient(#[source] reqwest::Error),
    /// A page could not be written to the spool folder.
    #[error(
        "Failed to write `{path}` in the spool folder; check that it is writable and has space (or choose another with --spool)"
    )]
    Spool {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spool folder already holds pages of an earlier run, which the ingest would read
    /// again as this run's.
    #[error(
        "The spool folder `{}` already holds pages of an earlier run (e.g. `{}`); empty it or choose another with --spool",
        path.display(), page.display()
    )]
    SpoolNotEmpty {
        /// The folder.
        path: PathBuf,
        /// One of the pages found.
        page: PathBuf,
    },
    /// Not a Log Analytics workspace id.
    #[error(
        "`{0}` is not a Log Analytics workspace id (a GUID); copy it from the workspace's overview page"
    )]
    Workspace(String),
}

/// Result of Graph calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one attempt failed; the retry loop keeps the last one.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The request could not be sent, or no answer came back.
    #[error("transport error")]
    Transport(#[source] BoxError),
    /// The answer's body was cut short.
    #[error("the body was cut short")]
    Truncated(#[source] BoxError),
    /// No answer within the request timeout (or what was left of the run).
    #[error("no answer within {secs} s")]
    Timeout {
        /// The time allowed.
        secs: f64,
    },
    /// 429.
    #[error("429 Too Many Requests")]
    Throttled,
    /// A server error (5xx).
    #[error("{status} from the server")]
    Server {
        /// HTTP status.
        status: u16,
    },
    /// A body that is JSON but not a whole answer (no `value` array, no `access_token`).
    #[error("the answer is not whole ({0})")]
    NotWhole(&'static str),
    /// A body that is not JSON (cut short mid-document).
    #[error("incomplete or invalid JSON body")]
    Json(#[source] serde_json::Error),
}

/// A credential that cannot make a token request.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The certificate file cannot be read.
    #[error("Cannot read the client certificate `{path}`; check AZURE_CLIENT_CERTIFICATE_PATH")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM.
    #[error(
        "`{path}` is not a valid PEM file; put the certificate and its private key in one PEM file"
    )]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: pem::PemError,
    },
    /// No certificate in the PEM file.
    #[error(
        "`{path}` holds no CERTIFICATE block: put the certificate and its private key in one PEM file"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No usable key block in the PEM file.
    #[error(
        "`{path}` holds no unencrypted PRIVATE KEY or RSA PRIVATE KEY block; export the key without a passphrase"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not one Entra takes.
    #[error(
        "The private key in `{path}` is not a usable RSA key; Entra needs RSA 2048 bits or more"
    )]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A PFX file and no `openssl` command to open it.
    #[error(
        "`{path}` is not PEM, and reading it as PFX needs the `openssl` command; or convert it elsewhere: openssl pkcs12 -in app.pfx -out app.pem -nodes"
    )]
    NoOpenssl {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `openssl` could not open the PFX file.
    #[error(
        "Cannot open `{path}` as PFX (wrong AZURE_CLIENT_CERTIFICATE_PASSWORD, or not a PFX file): openssl said `{said}`"
    )]
    Pfx {
        /// The file.
        path: PathBuf,
        /// The first line openssl printed on stderr.
        said: String,
    },
    /// `openssl` printed something that is not text.
    #[error("`openssl pkcs12` printed non-UTF-8 PEM for `{path}`; convert the PFX to PEM yourself")]
    PfxNotText {
        /// The file.
        path: PathBuf,
    },
    /// The managed identity endpoint is not a URL.
    #[error(
        "The managed identity endpoint `{endpoint}` is not a URL; check IDENTITY_ENDPOINT or AZURE_POD_IDENTITY_AUTHORITY_HOST"
    )]
    IdentityEndpoint {
        /// The text.
        endpoint: String,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// The token endpoint is not a URL.
    #[error("The token endpoint `{url}` is not a URL; check --authority-host and the tenant")]
    TokenUrl {
        /// The text.
        url: String,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// The federated token file cannot be read.
    #[error("Cannot read the federated token file `{path}`; check AZURE_FEDERATED_TOKEN_FILE")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Signing the client assertion failed.
    #[error("Signing the client assertion with the key in `{path}` failed")]
    Sign {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// Errors of a live run (fetch into a spool folder, then ingest it).
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Reading from the source failed; nothing was written to the lake.
    #[error(
        "Failed to read from {endpoint}; nothing was written to the lake and the watermarks are unchanged (pages so far: {})",
        spool.display()
    )]
    Fetch {
        /// The endpoint.
        endpoint: String,
        /// The spool folder.
        spool: PathBuf,
        /// Why.
        #[source]
        source: Error,
    },
    /// The client could not be set up.
    #[error(transparent)]
    Client(#[from] Error),
    /// The spool's `_export.json` could not be written.
    #[error("Failed to write `{}`; check that the spool folder is writable and has space (or choose another with --spool)", path.display())]
    Export {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lake could not say where the last run stopped.
    #[error(
        "Cannot read where the last run stopped (`{table}` in the lake); check the lake (`govlake tables`), or pass --full"
    )]
    Lake {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: Box<crate::lake::Error>,
    },
    /// Ingesting the spool folder failed.
    #[error("Failed to ingest into `{lake}` (the pages fetched are in `{}`)", spool.display())]
    Ingest {
        /// The lake.
        lake: String,
        /// The spool folder.
        spool: PathBuf,
        /// Why.
        #[source]
        source: Box<crate::ingest::Error>,
    },
}
