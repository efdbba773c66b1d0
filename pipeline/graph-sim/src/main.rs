//! `govlake-graph-sim`: a Microsoft Graph simulator on 127.0.0.1 serving an export
//! directory, with OData paging, filters, a token endpoint and injected faults (the library
//! of this crate). Prints `listening on http://ADDR` once ready.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use govlake_graph_sim::{Faults, READ_ROLES, SimAuth, Simulator};

/// Serve an export directory as Microsoft Graph (for tests, demos and benchmarks).
#[derive(Debug, Parser)]
#[command(name = "govlake-graph-sim", version, max_term_width = 100)]
struct Args {
    /// Export directory to serve (sample-data, a `govlake generate` tenant, a real export).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Address to listen on; loopback only.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "IP:PORT")]
    addr: std::net::SocketAddr,
    /// The client secret the token endpoint accepts.
    #[arg(
        long,
        env = "GOVLAKE_SIM_CLIENT_SECRET",
        default_value = "sim-secret",
        hide_env_values = true
    )]
    client_secret: String,
    /// Accept client assertions signed by this certificate (PEM with a CERTIFICATE block).
    #[arg(long, value_name = "PEM")]
    client_certificate: Option<PathBuf>,
    /// The X-IDENTITY-HEADER the managed identity endpoint (/msi/token) expects.
    #[arg(
        long,
        default_value = "sim-identity-header",
        value_name = "VALUE",
        hide_default_value = true
    )]
    identity_header: String,
    /// App roles every token carries (comma-separated); default: the read-only ones govlake
    /// needs. Add a write role to see govlake's least-privilege warning.
    #[arg(long, value_delimiter = ',', value_name = "ROLES")]
    roles: Vec<String>,
    /// Answer every Nth Graph request with 429 and Retry-After.
    #[arg(long, value_name = "N")]
    throttle_every: Option<u64>,
    /// Seconds in Retry-After.
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    retry_after: u64,
    /// Send Retry-After as an HTTP date.
    #[arg(long)]
    retry_after_date: bool,
    /// Answer every Nth Graph request with 503.
    #[arg(long, value_name = "N")]
    unavailable_every: Option<u64>,
    /// Cut every Nth response body in half and close the connection.
    #[arg(long, value_name = "N")]
    truncate_every: Option<u64>,
    /// Tokens stop working after N Graph requests (401 mid-run).
    #[arg(long, value_name = "N")]
    token_lifetime: Option<u64>,
    /// Delay every page by this many milliseconds.
    #[arg(long, value_name = "MS")]
    slow_ms: Option<u64>,
    /// Hold back this many audit events until a listing has reached its end (late arrivals).
    #[arg(long, default_value_t = 0, value_name = "N")]
    late_events: usize,
    /// Answer this collection (a path prefix such as auditLogs/directoryAudits) with 403, as
    /// when the app lacks the permission (repeatable).
    #[arg(long, value_name = "PATH")]
    forbid: Vec<String>,
    /// Keep audit events this many days before now; older ones are gone from
    /// directoryAudits (Log Analytics still has them).
    #[arg(long, value_name = "DAYS")]
    retention_days: Option<u64>,
    /// The token endpoint's clock runs this many seconds ahead (negative: behind).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    clock_skew: i64,
    /// Rows a Log Analytics query returns before answering PartialError.
    #[arg(long, value_name = "N")]
    log_analytics_row_limit: Option<usize>,
    /// Device code sign-ins: answer `authorization_pending` this many times before the
    /// person has "signed in".
    #[arg(long, default_value_t = 1, value_name = "N")]
    device_code_polls: u32,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "error: the simulator listens on loopback addresses only, not {}",
            args.addr
        );
        return std::process::ExitCode::from(2);
    }
    let faults = Faults {
        throttle_every: args.throttle_every,
        retry_after_secs: args.retry_after,
        retry_after_as_date: args.retry_after_date,
        unavailable_every: args.unavailable_every,
        truncate_every: args.truncate_every,
        token_lifetime_requests: args.token_lifetime,
        slow_page: args.slow_ms.map(Duration::from_millis),
        late_events: args.late_events,
        forbidden: args.forbid,
        retention_days: args.retention_days,
        clock_skew_secs: args.clock_skew,
        log_analytics_row_limit: args.log_analytics_row_limit,
        device_code_polls: args.device_code_polls,
    };
    let certificate = match &args.client_certificate {
        None => None,
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read `{}`: {e}", path.display());
                    return std::process::ExitCode::from(2);
                }
            };
            match pem::parse_many(&text)
                .unwrap_or_default()
                .into_iter()
                .find(|block| block.tag() == "CERTIFICATE")
            {
                Some(block) => Some(block.into_contents()),
                None => {
                    eprintln!(
                        "error: `{}` holds no PEM CERTIFICATE block: pass the certificate the app's assertions are signed with",
                        path.display()
                    );
                    return std::process::ExitCode::from(2);
                }
            }
        }
    };
    let auth = SimAuth {
        certificate,
        identity_header: args.identity_header,
        roles: if args.roles.is_empty() {
            READ_ROLES.iter().map(|r| (*r).to_string()).collect()
        } else {
            args.roles
        },
        ..SimAuth::secret(args.client_secret)
    };
    let started = std::time::Instant::now();
    let sim = match Simulator::load(&args.from, faults, auth) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let collections = sim.collections();
    for (path, n) in &collections {
        eprintln!("serving {n:>8} records at /v1.0/{path}");
    }
    let records: usize = collections.iter().map(|(_, n)| n).sum();
    eprintln!(
        "indexed {records} records in {:.1} s ({} bytes of memory each; their JSON stays in the files)",
        started.elapsed().as_secs_f64(),
        govlake_graph_sim::INDEX_BYTES_PER_RECORD
    );
    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.addr);
            return std::process::ExitCode::from(2);
        }
    };
    let addr = listener.local_addr().expect("bound");
    println!("listening on http://{addr}");
    if let Err(e) = sim.serve(listener).await {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    std::process::ExitCode::SUCCESS
}
