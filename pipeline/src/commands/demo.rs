//! `govlake demo`: ingest the bundled sample tenant into a local lake, show what it holds and
//! write its signed evidence pack for the quarter.

use std::path::PathBuf;

use govlake::ingest::IngestSettings;

use super::{Access, ExitStatus, Printer, open_lake};
use crate::cli::{DemoArgs, GlobalArgs, OutputFormat};

/// Finds sample-data/: the flag, else ./sample-data, else the source checkout's.
fn sample_dir(args: &DemoArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.sample_data {
        return Ok(p.clone());
    }
    for candidate in [
        PathBuf::from("sample-data"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-data"),
    ] {
        if candidate.join("_export.json").is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "Cannot find the sample tenant: run from the govlake checkout or pass `--sample-data DIR` (make one with `govlake generate --out DIR`)"
    )
}

/// Runs `govlake demo`.
pub async fn run(
    global: &GlobalArgs,
    args: &DemoArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let dir = sample_dir(args)?;
    let lake = open_lake(global, "govlake-demo", Access::Create).await?;
    let (summary, graph) = if args.live {
        let (graph, summary) = live_sample(&lake, &dir, args, printer).await?;
        (summary, Some(graph))
    } else {
        let settings = IngestSettings {
            inputs: vec![dir.clone()],
            ..IngestSettings::default()
        };
        let summary = super::summary::ingest_with_progress(&lake, &settings, printer).await?;
        (summary, None)
    };
    let infos = super::tables::collect(&lake).await?;
    let pack = demo_pack(&lake, args, printer).await?;
    if printer.format == OutputFormat::Json {
        printer.json(
            "demo",
            "ok",
            &serde_json::json!({"ingest": summary, "graph": graph, "tables": infos, "pack": pack}),
        )?;
        return Ok(ExitStatus::Success);
    }
    match &graph {
        Some(g) => println!(
            "Read the sample tenant live from the Graph simulator: {} pages, {} requests, {} throttled (429) and waited out, {} retries.",
            g.pages, g.requests, g.throttled, g.retries
        ),
        None => println!("Ingested the sample tenant from {}.", dir.display()),
    }
    println!(
        "{} files, {} records in {:.2} s ({:.0} records/s); snapshots observed at {}.\n",
        summary.files,
        summary.records,
        summary.elapsed_secs,
        summary.records_per_sec(),
        summary.observed_at
    );
    super::tables::print(&infos, printer, &lake.location().display())?;
    println!(
        "\nThe lake is plain Delta Lake: point Spark, DuckDB (delta_scan) or Polars at {} to read it.",
        lake.location().display()
    );
    let at = lake.location().display();
    println!(
        "Run `govlake --lake {at} tables` to see it again; rerun the demo and nothing is stored twice."
    );
    println!(
        "Ask it a question: govlake --lake {at} sql -c \"select user_principal_name, both_held_since, grandfathered from sod_violations\""
    );
    println!(
        "\nEvidence pack for {}: {} files, {} SoD violations, signed by key {}. Check it: govlake verify {} --public-key {}.pub",
        args.period,
        pack.files,
        pack.sod_violations,
        pack.signed_by.as_deref().unwrap_or("-"),
        pack.dir.display(),
        args.pack.display()
    );
    println!("{}", pack.index.display());
    Ok(if summary.rejected > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// The simulator binary: `--simulator`, else `govlake-graph-sim` next to this executable (as
/// cargo and the release archive place it), else on PATH.
fn simulator_binary(args: &DemoArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.simulator {
        return Ok(p.clone());
    }
    let name = format!("govlake-graph-sim{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(&name)));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(&name)).collect())
        .unwrap_or_else(Vec::new);
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`govlake demo --live` runs the Graph simulator, and `{name}` is neither next to this govlake nor on PATH: build it with `cargo build -p govlake-graph-sim` (in the checkout) or pass `--simulator PATH`"
            )
        })
}

/// A simulator child process, killed when dropped.
struct SimProcess(std::process::Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `govlake-graph-sim` on 127.0.0.1 serving `dir` with a fresh secret (every 9th
/// request throttled for a second, every 13th answered 503); returns it and its URL.
fn start_simulator(
    binary: &std::path::Path,
    dir: &std::path::Path,
    secret: &str,
) -> anyhow::Result<(SimProcess, String)> {
    use std::io::{BufRead, Read};
    use std::process::{Command, Stdio};
    let child = Command::new(binary)
        .arg("--from")
        .arg(dir)
        .args(["--addr", "127.0.0.1:0", "--throttle-every", "9"])
        .args(["--retry-after", "1", "--unavailable-every", "13"])
        .env("GOVLAKE_SIM_CLIENT_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the Graph simulator `{}`: {e}",
                binary.display()
            )
        })?;
    let mut sim = SimProcess(child);
    let mut line = String::new();
    if let Some(out) = sim.0.stdout.take() {
        std::io::BufReader::new(out).read_line(&mut line)?;
    }
    match line.trim().strip_prefix("listening on ") {
        Some(url) => Ok((sim, url.to_string())),
        None => {
            let _ = sim.0.kill();
            let mut stderr = String::new();
            if let Some(mut err) = sim.0.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            let said: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
            let why = if said.is_empty() {
                "it printed no address".to_string()
            } else {
                said.join("; ")
            };
            anyhow::bail!(
                "the Graph simulator `{}` did not start: {why}",
                binary.display()
            )
        }
    }
}

/// Serves the sample tenant with the Graph simulator (a child process on 127.0.0.1) and
/// ingests it live through it.
async fn live_sample(
    lake: &govlake::lake::Lake,
    dir: &std::path::Path,
    args: &DemoArgs,
    printer: &Printer,
) -> anyhow::Result<(
    govlake::graph::crawl::CrawlSummary,
    govlake::ingest::IngestSummary,
)> {
    use govlake::graph::client::{ClientSettings, Credential, Secret};
    use std::time::Duration;
    let secret = uuid::Uuid::new_v4().to_string();
    let (sim, url) = start_simulator(&simulator_binary(args)?, dir, &secret)?;
    let endpoint = url::Url::parse(&url)?;
    let settings = ClientSettings {
        endpoint: endpoint.clone(),
        authority: endpoint,
        tenant: "woodgrove".into(),
        client_id: "govlake-demo".into(),
        credential: Credential::Secret(Secret::new(secret)),
        max_attempts: 8,
        backoff_base: Duration::from_millis(100),
        request_timeout: Duration::from_secs(60),
        deadline: Duration::from_secs(600),
        audit_rate_limit: None,
    };
    let run = govlake::graph::live::LiveRun {
        source: govlake::graph::live::Source::Graph(govlake::graph::crawl::Plan {
            requests: govlake::graph::crawl::Window::All,
            audits: govlake::graph::crawl::Window::All,
            page_size: 50,
            approval_stages: false,
            concurrency: 4,
        }),
        spool: None,
        // The export's own observation time, so the live demo lake equals the file one.
        observed_at: govlake::ingest::files::discover(&[dir.to_path_buf()])?
            .exported_at
            .first()
            .map(|(_, t)| *t),
        chunk_rows: IngestSettings::default().chunk_rows,
        endpoint: url,
        extra_gaps: vec![],
    };
    let out = super::live::fetch_and_ingest(lake, settings, run, printer).await;
    drop(sim);
    out
}

/// Writes the demo's evidence pack, replacing the previous one (only if it is a pack), with
/// a key pair made on the first run.
async fn demo_pack(
    lake: &govlake::lake::Lake,
    args: &DemoArgs,
    printer: &Printer,
) -> anyhow::Result<govlake::report::pack::PackSummary> {
    use govlake::report::sign::SecretKey;
    let key_path = PathBuf::from(format!("{}.key", args.pack.display()));
    let key = if key_path.is_file() {
        SecretKey::parse(&std::fs::read_to_string(&key_path)?)?
    } else {
        let key = SecretKey::generate()?;
        super::report::write_secret(&key_path, &key.to_file_text())?;
        std::fs::write(
            format!("{}.pub", args.pack.display()),
            key.public().to_file_text(),
        )?;
        key
    };
    if args.pack.join(govlake::report::pack::BAGIT).is_file() {
        std::fs::remove_dir_all(&args.pack)?;
    }
    let settings = govlake::report::pack::PackSettings {
        out: args.pack.clone(),
        period: govlake::report::Period::quarter(&args.period)?,
        as_of: govlake::query::AsOf::Latest,
        queries: govlake::query::views::embedded(),
        templates: None,
        key: Some(key),
        archive: true,
        samples: vec![("approval_trail".into(), 25, 7)],
        memory: govlake::query::MemoryLimit::machine_default(),
    };
    let tar = PathBuf::from(format!("{}.tar", args.pack.display()));
    if tar.is_file() {
        std::fs::remove_file(&tar)?;
    }
    let summary = super::report::build_pack(lake, &settings, printer).await?;
    super::report::pin_pack(lake, &summary, &settings.period.label).await?;
    Ok(summary)
}
