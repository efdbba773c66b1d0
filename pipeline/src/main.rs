//! The `govlake` binary: parse the command line, set up logging, run the command, and turn
//! its outcome into an exit code (0 ok, 1 finished with failures, 2 error, 3 pack whole but
//! its signer unverified, 130 interrupted).

mod cli;
mod commands;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

// jemalloc fragments less than glibc malloc under tokio's many threads: on a 20,000-user
// tenant it cut ingest peak RSS by 12 % and wall time by 27 % (the former bench/ingest.sh).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings (`_RJEM_MALLOC_CONF` in the environment still overrides them): one
/// arena for every thread instead of four per core, pages freed return to the system after
/// 2 s instead of 10, and at once instead of lingering as "muzzy" pages that still count in
/// RSS. An ingest frees as much as it allocates, all the time, on threads that hand their
/// records to one another (likely why one arena holds less: each of many kept pages of the
/// others' work; not profiled). At 1M audit events the decay settings cut an ingest's peak
/// RSS from ~540 to ~500 MiB in the same time (a background purging thread cut as much but
/// cost 10–15 % of the time on two cores). One arena, in single runs: the 10M ingest 1,025
/// → 984 MiB, `approval_trail` at 1M ~1,200 → ~1,100 MiB in the same time, and the 10M pack
/// 6,428 → 5,220 MiB but 306.5 → 328.2 s (inside this machine's 10–20 % noise, not shown to
/// be noise).
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: JemallocConf =
    JemallocConf(c"narenas:1,dirty_decay_ms:2000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads once at start (`const char *malloc_conf`).
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: it points at a static string and is never written.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for JemallocConf {}

fn init_logging(global: &cli::GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        // delta-rs logs a missing table at ERROR while we probe for it; real failures reach
        // us as errors anyway.
        (q, _) if q > 0 => "error,deltalake_core=off,buoyant_kernel=off",
        (_, 0) => "warn,govlake=info,deltalake_core=off,buoyant_kernel=off",
        (_, 1) => "warn,govlake=debug,deltalake_core=warn,buoyant_kernel=off",
        (_, 2) => "warn,govlake=trace,deltalake_core=debug,buoyant_kernel=warn",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

/// The causes of an error worth printing: a cause whose text the line before already shows
/// (DataFusion wraps an error in itself) is left out.
fn causes(err: &anyhow::Error) -> Vec<String> {
    let mut shown = err.to_string();
    let mut out = vec![];
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            out.push(text.clone());
        }
        shown = text;
    }
    out
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    // The name clap matched (`ingest`, `job`): what the JSON error document reports.
    let command = matches.subcommand_name().unwrap_or_default().to_string();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(&cli.global);
    let json = cli.global.format == cli::OutputFormat::Json;
    tokio::select! {
        result = commands::run(cli) => match result {
            Ok(status) => status.into(),
            Err(err) => {
                let chain = causes(&err);
                if json {
                    let doc = serde_json::json!({
                        "schema_version": 1, "command": command, "status": "error",
                        "error": {"message": err.to_string(), "causes": chain},
                    });
                    println!("{doc}");
                }
                eprintln!("error: {err}");
                for cause in &chain {
                    eprintln!("  Caused by: {cause}");
                }
                commands::ExitStatus::Error.into()
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("error: interrupted");
            ExitCode::from(130)
        }
    }
}
