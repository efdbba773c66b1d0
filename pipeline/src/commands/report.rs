//! `govlake report`, `pack`, `verify`, `keygen` and `sample`: the evidence commands over
//! `govlake::report`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use govlake::query::AsOf;
use govlake::query::views::{self, QueryFile};
use govlake::report::pack::{PackSettings, PackSummary};
use govlake::report::sign::{PublicKey, SecretKey};
use govlake::report::{Period, package, render::Templates};

use super::{Access, ExitStatus, Printer, open_lake};
use crate::cli::{
    GlobalArgs, KeygenArgs, OutputFormat, PackArgs, PeriodArgs, ReportArgs, ReportFormat,
    SampleArgs, VerifyArgs,
};

fn period(args: &PeriodArgs) -> anyhow::Result<Period> {
    Ok(match (&args.period, &args.from, &args.to) {
        (Some(q), _, _) => Period::quarter(q)?,
        (None, Some(f), Some(t)) => Period::range(f, t)?,
        _ => anyhow::bail!("Give `--period 2026Q3` or both `--from` and `--to`"),
    })
}

pub(crate) fn queries(dir: Option<&Path>) -> anyhow::Result<Vec<QueryFile>> {
    Ok(match dir {
        Some(d) => views::load_dir(d)
            .with_context(|| format!("Cannot read queries from `{}`", d.display()))?,
        None => views::embedded(),
    })
}

fn as_of(text: Option<&str>) -> anyhow::Result<AsOf> {
    match text {
        Some(s) => AsOf::parse(s).map_err(|e| anyhow::anyhow!("`--as-of {s}`: {e}")),
        None => Ok(AsOf::Latest),
    }
}

/// Runs `govlake report`.
pub async fn report(
    global: &GlobalArgs,
    args: &ReportArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let period = period(&args.period)?;
    let queries = queries(args.queries.as_deref())?;
    let lake = open_lake(global, "govlake-data", Access::Read).await?;
    let versions =
        govlake::report::pack::pin_versions(&lake, &as_of(args.as_of.as_deref())?).await?;
    let ctx = govlake::query::session_as_of(&lake, &AsOf::Versions(versions.clone())).await?;
    views::register(&ctx, &queries).await?;
    let (id, name) = package::find(&ctx, &args.package).await?;
    let report = package::build(&ctx, &queries, &id, &name, &period).await?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("Cannot create `{}`", args.out.display()))?;
    let stem = format!(
        "{}-{}",
        report.file_stem,
        period.label.replace(['.', ':'], "")
    );
    let mut written: Vec<PathBuf> = Vec::new();
    match args.output {
        ReportFormat::Html | ReportFormat::Md => {
            let templates = Templates::load(args.templates.as_deref())?;
            let (html, md) =
                govlake::report::pack::render_package(&templates, &report, &period, &versions, "")?;
            let (ext, text) = if args.output == ReportFormat::Html {
                ("html", html)
            } else {
                ("md", md)
            };
            let path = args.out.join(format!("{stem}.{ext}"));
            std::fs::write(&path, text)
                .with_context(|| format!("Cannot write `{}`", path.display()))?;
            written.push(path);
        }
        ReportFormat::Csv => {
            let dir = args.out.join(&stem);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("Cannot create `{}`", dir.display()))?;
            for s in &report.sections {
                let path = dir.join(format!("{}.csv", s.key));
                std::fs::write(
                    &path,
                    govlake::report::csv::table_to_csv(&s.table.to_table()),
                )
                .with_context(|| format!("Cannot write `{}`", path.display()))?;
                written.push(path);
            }
        }
    }
    if printer.format == OutputFormat::Json {
        let sections: Vec<_> = report
            .sections
            .iter()
            .map(|s| serde_json::json!({"key": s.key, "rows": s.table.len(), "sql_sha256": s.sql_sha256}))
            .collect();
        printer.json("report", "ok", &serde_json::json!({
            "package_id": id, "period": period, "files": written, "sections": sections, "table_versions": versions,
        }))?;
    } else if printer.quiet == 0 {
        for p in &written {
            println!("{}", p.display());
        }
    }
    Ok(ExitStatus::Success)
}

/// The signing key: `--key FILE`, else `GOVLAKE_SIGNING_KEY`. Never printed.
pub(crate) fn signing_key(path: Option<&Path>) -> anyhow::Result<Option<SecretKey>> {
    if let Some(p) = path {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("Cannot read the key file `{}`", p.display()))?;
        return Ok(Some(
            SecretKey::parse(&text).with_context(|| format!("`{}`", p.display()))?,
        ));
    }
    match std::env::var("GOVLAKE_SIGNING_KEY") {
        Ok(text) if !text.trim().is_empty() => Ok(Some(
            SecretKey::parse(&text).context("GOVLAKE_SIGNING_KEY")?,
        )),
        _ => Ok(None),
    }
}

/// Builds a pack (shared by `pack` and `demo`).
pub async fn build_pack(
    lake: &govlake::lake::Lake,
    settings: &PackSettings,
    printer: &Printer,
) -> anyhow::Result<PackSummary> {
    let spinner = if printer.progress {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!(
            "Building the {} evidence pack",
            settings.period.label
        ));
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    let summary = govlake::report::pack::build(lake, settings).await;
    spinner.finish_and_clear();
    Ok(summary?)
}

/// Records the table versions a finished pack read, so `govlake vacuum` keeps them.
pub async fn pin_pack(
    lake: &govlake::lake::Lake,
    summary: &PackSummary,
    period: &str,
) -> anyhow::Result<()> {
    govlake::lake::retention::record_pins(
        lake,
        &summary.pack_id,
        period,
        &summary.dir.to_string_lossy(),
        &summary.versions,
    )
    .await
    .context("The pack is complete, but its table versions could not be pinned in the lake")
}

/// Runs `govlake pack`.
pub async fn pack(
    global: &GlobalArgs,
    args: &PackArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let key = signing_key(args.key.as_deref())?;
    if key.is_none() && !args.unsigned {
        anyhow::bail!(
            "No signing key: pass `--key FILE` (make one with `govlake keygen`), set GOVLAKE_SIGNING_KEY, or pass `--unsigned`"
        );
    }
    let settings = PackSettings {
        out: args.out.clone(),
        period: period(&args.period)?,
        as_of: as_of(args.as_of.as_deref())?,
        queries: queries(args.queries.as_deref())?,
        templates: args.templates.clone(),
        key,
        archive: args.archive,
        samples: args
            .samples
            .iter()
            .map(|s| parse_sample(s))
            .collect::<anyhow::Result<_>>()?,
        memory: super::sql::memory_limit(
            args.memory_limit.as_deref(),
            &govlake::config::PipelineConfig::load(global.config.as_deref())?,
        )?,
    };
    let lake = open_lake(global, "govlake-data", Access::Write).await?;
    let summary = build_publish_pin(global, &lake, settings, printer).await?;
    print_pack(&summary, printer)?;
    Ok(ExitStatus::Success)
}

/// Builds the pack `settings.out` names (a folder, or an object-storage URL: built and
/// signed in a staging folder, then published there), and pins its table versions.
pub async fn build_publish_pin(
    global: &GlobalArgs,
    lake: &govlake::lake::Lake,
    mut settings: PackSettings,
    printer: &Printer,
) -> anyhow::Result<PackSummary> {
    // A pack for object storage is built and signed in a staging folder, then published.
    let remote = govlake::report::remote::remote_target(&settings.out.to_string_lossy());
    let staging = match &remote {
        Some(_) => Some(super::Staging::new("pack")?),
        None => None,
    };
    if let (Some(url), Some(s)) = (&remote, &staging) {
        settings.out = s.0.join(
            url.path_segments()
                .and_then(|mut p| p.next_back())
                .filter(|n| !n.is_empty() && *n != "..")
                .unwrap_or("pack"),
        );
    }
    let mut summary = build_pack(lake, &settings, printer).await?;
    if let Some(url) = &remote {
        let config = govlake::config::PipelineConfig::load(global.config.as_deref())?;
        let options = super::storage_options(global, &config);
        let objects = govlake::report::remote::publish(
            &settings.out,
            summary.archive.as_deref(),
            url,
            &options,
        )
        .await?;
        tracing::info!(objects, "Published the pack to {url}.");
        summary.index = PathBuf::from(format!("{}/index.html", url.as_str().trim_end_matches('/')));
        summary.dir = PathBuf::from(url.as_str());
        summary.archive = summary
            .archive
            .as_ref()
            .map(|_| PathBuf::from(format!("{}.tar", url.as_str().trim_end_matches('/'))));
    }
    pin_pack(lake, &summary, &settings.period.label).await?;
    Ok(summary)
}

/// Parses `VIEW:SIZE:SEED`.
fn parse_sample(text: &str) -> anyhow::Result<(String, usize, u64)> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [view, size, seed] => Ok((
            (*view).to_string(),
            size.parse()
                .with_context(|| format!("`--sample {text}`: the size must be a whole number"))?,
            seed.parse()
                .with_context(|| format!("`--sample {text}`: the seed must be a whole number"))?,
        )),
        _ => anyhow::bail!("`--sample {text}` is not VIEW:SIZE:SEED (e.g. approval_trail:25:7)"),
    }
}

/// Runs `govlake sample`.
pub async fn sample(
    global: &GlobalArgs,
    args: &SampleArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let queries = queries(args.queries.as_deref())?;
    let lake = open_lake(global, "govlake-data", Access::Read).await?;
    let ctx = govlake::query::session_as_of(&lake, &as_of(args.as_of.as_deref())?).await?;
    let registered = views::register(&ctx, &queries).await?;
    let Some(q) = queries
        .iter()
        .find(|q| q.name == args.view && registered.contains(&q.name))
    else {
        anyhow::bail!(
            "`{}` is not a view (`govlake sql --list` shows them)",
            args.view
        );
    };
    let population = govlake::report::table::query(&ctx, &q.name, &q.sql, &[]).await?;
    let drawn = govlake::report::sample::draw(&population, args.size, args.seed);
    if printer.format == OutputFormat::Json {
        return printer
            .json("sample", "ok", &serde_json::json!({
                "view": args.view, "seed": args.seed, "population": population.rows.len(), "sample": drawn,
            }))
            .map(|()| ExitStatus::Success);
    }
    let csv = govlake::report::csv::table_to_csv(&drawn);
    match &args.out {
        Some(p) => {
            std::fs::write(p, csv).with_context(|| format!("Cannot write `{}`", p.display()))?
        }
        None => print!("{csv}"),
    }
    if printer.quiet == 0 {
        eprintln!(
            "{} of {} rows of {} drawn with seed {}.",
            drawn.rows.len(),
            population.rows.len(),
            args.view,
            args.seed
        );
    }
    Ok(ExitStatus::Success)
}

/// Prints a pack summary.
pub fn print_pack(summary: &PackSummary, printer: &Printer) -> anyhow::Result<()> {
    if printer.format == OutputFormat::Json {
        return printer.json("pack", "ok", summary);
    }
    if printer.quiet == 0 {
        println!(
            "Evidence pack: {} files, {} bytes, {} packages, {} SoD violations, {}.",
            summary.files,
            summary.bytes,
            summary.packages,
            summary.sod_violations,
            summary
                .signed_by
                .as_ref()
                .map_or("unsigned".to_string(), |k| format!("signed by key {k}"))
        );
        if let Some(a) = &summary.archive {
            println!("Archive: {}", a.display());
        }
    }
    println!("{}", summary.index.display());
    Ok(())
}

/// The keys `verify` trusts: `--public-key`, else the config file's `[verify] trusted_keys`
/// (files, relative to the config file, or key lines); none means the signer is unpinned.
fn trusted_keys(
    public_key: Option<&Path>,
    config: &govlake::config::PipelineConfig,
) -> anyhow::Result<Vec<PublicKey>> {
    let read = |p: &Path| -> anyhow::Result<PublicKey> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("Cannot read `{}`", p.display()))?;
        PublicKey::parse(&text).with_context(|| format!("`{}`", p.display()))
    };
    if let Some(p) = public_key {
        return Ok(vec![read(p)?]);
    }
    let base = config
        .source
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new(""));
    config
        .verify
        .trusted_keys
        .iter()
        .map(|entry| match PublicKey::parse(entry) {
            Ok(key) => Ok(key),
            Err(_) => {
                read(&base.join(entry)).context("In the config file's `[verify] trusted_keys`")
            }
        })
        .collect()
}

/// Runs `govlake verify`: exit 0 when the pack verifies against a pinned signer, 1 when it
/// does not verify, 3 when it is whole but no pinned key vouches for its signer. A pack on
/// object storage is downloaded into a staging folder first.
pub async fn verify(
    global: &GlobalArgs,
    args: &VerifyArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let config = govlake::config::PipelineConfig::load(global.config.as_deref())?;
    let staging;
    let dir = match govlake::report::remote::remote_target(&args.pack.to_string_lossy()) {
        Some(url) => {
            let options = super::storage_options(global, &config);
            staging = super::Staging::new("verify")?;
            govlake::report::remote::fetch(&url, &options, &staging.0).await?
        }
        None => args.pack.clone(),
    };
    let trusted = trusted_keys(args.public_key.as_deref(), &config)?;
    let verdict = govlake::report::verify::verify(&dir, &trusted)?;
    let (status, word) = if !verdict.passed() {
        (ExitStatus::Failure, "failed")
    } else if verdict.verified() {
        (ExitStatus::Success, "ok")
    } else {
        (ExitStatus::Unverified, "unverified_signer")
    };
    if printer.format == OutputFormat::Json {
        printer.json("verify", word, &verdict)?;
        return Ok(status);
    }
    for (path, reason) in &verdict.failures {
        println!("FAIL {path}: {reason}");
    }
    let key = verdict.signed_by.as_deref().unwrap_or("?");
    match status {
        ExitStatus::Success => println!(
            "OK: {} files match the manifest; signature by key {key} (pinned).",
            verdict.files_checked
        ),
        ExitStatus::Unverified => println!(
            "UNVERIFIED: {} files match the manifest and the signature matches the key the pack carries ({key}), but the signer is not verified: anyone can re-sign an edited pack. Pin the expected signer with --public-key FILE or the config file's [verify] trusted_keys.",
            verdict.files_checked
        ),
        _ => println!(
            "Verification FAILED: {} problem(s).",
            verdict.failures.len()
        ),
    }
    Ok(status)
}

/// Runs `govlake keygen`.
pub fn keygen(args: &KeygenArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let secret = PathBuf::from(format!("{}.key", args.out.display()));
    let public = PathBuf::from(format!("{}.pub", args.out.display()));
    for p in [&secret, &public] {
        if p.exists() {
            anyhow::bail!("`{}` exists: keygen never overwrites a key", p.display());
        }
    }
    let key = SecretKey::generate()?;
    write_secret(&secret, &key.to_file_text())?;
    std::fs::write(&public, key.public().to_file_text())
        .with_context(|| format!("Cannot write `{}`", public.display()))?;
    if printer.format == OutputFormat::Json {
        printer.json("keygen", "ok", &serde_json::json!({"key_id": key.public().id_text(), "secret_key": secret, "public_key": public}))?;
    } else {
        println!(
            "Key {}: secret {} (keep it safe), public {}.",
            key.public().id_text(),
            secret.display(),
            public.display()
        );
    }
    Ok(ExitStatus::Success)
}

/// Writes a secret file readable by its owner only.
pub fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("Cannot create `{}`", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("Cannot write `{}`", path.display()))
}
