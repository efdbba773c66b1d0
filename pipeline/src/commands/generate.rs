//! `govlake generate`: write a synthetic tenant in export-directory form.

use super::{ExitStatus, Printer};
use crate::cli::{GenerateArgs, OutputFormat};

/// Runs `govlake generate`.
pub fn run(args: &GenerateArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let started = std::time::Instant::now();
    let stats = govlake::generate::write_tenant(&govlake::generate::TenantSpec {
        users: args.users,
        seed: args.seed,
        page_size: args.page_size.max(1),
        extra_packages: args.packages.map(|p| p.saturating_sub(3)),
        out: args.out.clone(),
    })?;
    if printer.format == OutputFormat::Json {
        printer.json("generate", "ok", &stats)?;
    } else if printer.quiet == 0 {
        println!(
            "Wrote a tenant of {} users to {} in {:.1} s: {} files, {} records ({} audit events, {} requests, {} assignments).",
            args.users,
            args.out.display(),
            started.elapsed().as_secs_f64(),
            stats.files,
            stats.records,
            stats.audit_events,
            stats.requests,
            stats.assignments
        );
    }
    Ok(ExitStatus::Success)
}
