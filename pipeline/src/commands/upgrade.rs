//! `govlake migrate` (a lake written by an older govlake brought to this format) and
//! `govlake rebuild` (typed tables replayed from `_raw`): parse, call [`govlake::upgrade`],
//! print.

use govlake::lake::format::FORMAT_VERSION;

use super::{Access, ExitStatus, Printer, open_lake, resolve_lake, text_table};
use crate::cli::{GlobalArgs, MigrateArgs, OutputFormat, RebuildArgs};

fn bar(printer: &Printer) -> indicatif::ProgressBar {
    printer.bar(
        "replaying observations",
        "{msg} [{bar:30}] {pos}/{len} eta {eta}",
    )
}

fn tick(bar: &indicatif::ProgressBar) -> impl Fn(usize, usize) + Sync + '_ {
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

fn print_rebuild(outcome: &govlake::upgrade::RebuildOutcome) {
    let r = &outcome.replay;
    let rows: Vec<Vec<String>> = outcome
        .tables
        .iter()
        .map(|(t, v)| vec![t.clone(), v.to_string()])
        .collect();
    print!("{}", text_table(&["table", "new version"], &rows));
    println!(
        "Replayed {} observations ({} to {}): {} objects fed, {} versions whose JSON the history's row hash could not confirm.",
        r.observations,
        r.from.as_deref().unwrap_or("-"),
        r.to.as_deref().unwrap_or("-"),
        r.objects_fed,
        r.unverified
    );
    for (entity, n) in &r.unknown_raw {
        println!(
            "warning: {n} `_raw` records of `{entity}`, an entity this govlake does not map, were kept in `_raw` but not replayed."
        );
    }
}

/// Runs `govlake migrate`.
pub async fn migrate(
    global: &GlobalArgs,
    args: &MigrateArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let lake = resolve_lake(global, "govlake-data")?;
    let bar = bar(printer);
    let outcome = govlake::upgrade::migrate(&lake, args.dry_run, &tick(&bar)).await?;
    bar.finish_and_clear();
    if printer.format == OutputFormat::Json {
        printer.json("migrate", "ok", &outcome)?;
        return Ok(ExitStatus::Success);
    }
    let location = lake.location().display();
    if outcome.steps.is_empty() {
        println!("The lake at {location} is already in format {FORMAT_VERSION}: nothing to do.");
        return Ok(ExitStatus::Success);
    }
    let verb = if outcome.changed {
        "Migrated"
    } else {
        "Would migrate"
    };
    println!(
        "{verb} the lake at {location} from format {} to {}:",
        outcome.from, outcome.to
    );
    for s in &outcome.steps {
        println!("  {s}");
    }
    if !outcome.columns_added.is_empty() {
        println!("Columns added: {}", outcome.columns_added.join(", "));
    }
    if let Some(r) = &outcome.rebuild {
        print_rebuild(r);
    }
    if let Some(why) = &outcome.rebuild_skipped {
        println!("warning: the rebuild was skipped, the tables keep their rows: {why}");
    }
    Ok(ExitStatus::Success)
}

/// Runs `govlake rebuild`.
pub async fn rebuild(
    global: &GlobalArgs,
    args: &RebuildArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let lake = open_lake(global, "govlake-data", Access::Write).await?;
    let bar = bar(printer);
    let outcome = govlake::upgrade::rebuild(&lake, &args.tables, &tick(&bar)).await?;
    bar.finish_and_clear();
    if printer.format == OutputFormat::Json {
        printer.json("rebuild", "ok", &outcome)?;
    } else if printer.quiet == 0 {
        print_rebuild(&outcome);
    }
    Ok(ExitStatus::Success)
}
