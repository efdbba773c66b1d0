//! `govlake sql`: read-only SQL over the lake, with the governance views registered and
//! parameters bound as values (never formatted into the SQL).

use std::io::Write;
use std::path::PathBuf;

use futures::TryStreamExt as _;

use anyhow::{Context as _, bail};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::scalar::ScalarValue;
use govlake::query::views::{self, QueryFile};
use govlake::query::{AsOf, MemoryLimit};

use super::{Access, ExitStatus, Printer, open_lake};
use crate::cli::{GlobalArgs, SqlArgs, SqlFormat};

/// Runs `govlake sql`.
pub async fn run(
    global: &GlobalArgs,
    args: &SqlArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let files = match &args.queries {
        Some(dir) => views::load_dir(dir)
            .with_context(|| format!("Cannot read queries from `{}`", dir.display()))?,
        None => views::embedded(),
    };
    let lake = open_lake(global, "govlake-data", Access::Read).await?;
    let as_of = match &args.as_of {
        Some(s) => AsOf::parse(s).map_err(|e| anyhow::anyhow!("`--as-of {s}`: {e}"))?,
        None => AsOf::Latest,
    };
    let config = govlake::config::PipelineConfig::load(global.config.as_deref())?;
    let memory = memory_limit(args.memory_limit.as_deref(), &config)?;
    let ctx = govlake::query::session_with(&lake, &as_of, memory).await?;
    if args.list {
        let registered = views::register(&ctx, &files).await?;
        return list(&ctx, &files, &registered, printer).await;
    }
    let output = match (printer.format, args.output) {
        (crate::cli::OutputFormat::Json, SqlFormat::Table) => SqlFormat::Json,
        (_, o) => o,
    };
    let params = parse_params(&args.params)?;
    let target = Target {
        format: output,
        file: args.out.clone(),
        limit: match (args.limit, output) {
            (Some(0), _) => None,
            (Some(n), _) => Some(n),
            (None, SqlFormat::Table) => Some(TABLE_ROWS),
            (None, _) => None,
        },
        memory,
    };
    let sql = match (&args.command, &args.file) {
        (Some(c), None) => c.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("Cannot read `{}`", f.display()))?
        }
        (Some(_), Some(_)) => bail!("Give either `-c` or `-f`, not both"),
        (None, None) => {
            use std::io::IsTerminal as _;
            if std::io::stdin().is_terminal() {
                views::register(&ctx, &files).await?;
                return prompt(&ctx, &params, &target, printer).await;
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("Cannot read SQL from stdin")?;
            text
        }
    };
    // One statement: only the views it reads are registered (a view a statement does not
    // read changes nothing in its answer).
    let read = views::read_by(&ctx, &files, &sql);
    views::register(&ctx, read.as_deref().unwrap_or(&files)).await?;
    run_one(&ctx, &sql, &params, &target, printer).await?;
    Ok(ExitStatus::Success)
}

/// The memory limit of a query command: the flag (or its variable), else the config
/// file's `[query] memory_limit`, else half of the machine's memory.
pub fn memory_limit(
    flag: Option<&str>,
    config: &govlake::config::PipelineConfig,
) -> anyhow::Result<MemoryLimit> {
    match flag.or(config.query.memory_limit.as_deref()) {
        Some(text) => MemoryLimit::parse(text).map_err(|e| anyhow::anyhow!("Memory limit: {e}")),
        None => Ok(MemoryLimit::machine_default()),
    }
}

fn parse_params(raw: &[String]) -> anyhow::Result<Vec<(String, ScalarValue)>> {
    let mut params = Vec::new();
    for p in raw {
        let Some((k, v)) = p.split_once('=') else {
            bail!("`--param {p}` is not of the form name=value");
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("`--param {p}`: `{k}` is not a parameter name (letters, digits, _)");
        }
        params.push((k.to_string(), ScalarValue::Utf8(Some(v.to_string()))));
    }
    Ok(params)
}

/// Rows the table output shows unless `--limit` says otherwise: it keeps them all in
/// memory to align the columns.
const TABLE_ROWS: usize = 1000;

/// Where and how a result is written.
struct Target {
    format: SqlFormat,
    /// `None`: stdout.
    file: Option<PathBuf>,
    /// Rows written at most; the rest are counted, not kept.
    limit: Option<usize>,
    /// The session's memory limit, for the message when a query exceeds it.
    memory: MemoryLimit,
}

/// Cuts a stream of batches at a row limit and counts what it leaves out.
struct Limited {
    limit: Option<usize>,
    kept: usize,
    left_out: u64,
}

impl Limited {
    /// The part of `b` still within the limit (`None`: nothing of it).
    fn take(&mut self, b: RecordBatch) -> Option<RecordBatch> {
        let n = b.num_rows();
        let room = self.limit.map_or(n, |l| l - self.kept).min(n);
        self.kept += room;
        self.left_out += (n - room) as u64;
        match room {
            0 => None,
            r if r == n => Some(b),
            r => Some(b.slice(0, r)),
        }
    }
}

/// The next batch; an error says whether the query ran out of memory.
async fn next_batch(
    stream: &mut deltalake::datafusion::physical_plan::SendableRecordBatchStream,
    memory: MemoryLimit,
) -> anyhow::Result<Option<RecordBatch>> {
    use deltalake::datafusion::error::DataFusionError;
    match stream.try_next().await {
        Ok(b) => Ok(b),
        Err(e) => {
            let exhausted = matches!(e.find_root(), DataFusionError::ResourcesExhausted(_));
            let e = anyhow::Error::new(e);
            Err(if exhausted {
                e.context(format!(
                    "The query needs more memory than its limit of {} allows, even spilling to disk: raise --memory-limit (or GOVLAKE_MEMORY_LIMIT, or [query] memory_limit), or narrow the query",
                    memory.display()
                ))
            } else {
                e.context("The query failed")
            })
        }
    }
}

impl Target {
    fn open(&self) -> anyhow::Result<Box<dyn Write + Send>> {
        match &self.file {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("Cannot create `{}`", path.display()))?;
                Ok(Box::new(std::io::BufWriter::new(file)))
            }
            None => {
                use std::io::IsTerminal as _;
                if self.format == SqlFormat::Parquet && std::io::stdout().is_terminal() {
                    bail!("Parquet is binary: give `--out FILE` or redirect stdout");
                }
                Ok(Box::new(std::io::BufWriter::new(std::io::stdout())))
            }
        }
    }
}

/// Refuses the shapes DataFusion 55 answers wrongly whatever the plan
/// ([`govlake::query::refused`]); a statement that does not parse is left to DataFusion's
/// own error.
fn refuse_known_wrong(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    sql: &str,
) -> anyhow::Result<()> {
    let state = ctx.state();
    if let Ok(statement) = state.sql_to_statement(
        sql.trim().trim_end_matches(';'),
        &state.config().options().sql_parser.dialect,
    ) && let Some(reason) = govlake::query::refused::reason(&statement)
    {
        bail!(reason);
    }
    Ok(())
}

/// Rows of a row group of `govlake sql -o parquet` (DuckDB writes 122,880): each is encoded
/// in the background while the query produces the next
/// ([`govlake::query::parquet_out`]), so smaller groups overlap more of the query and hold
/// less (two groups at most: 1M-row groups held ~550 MB more than parquet's own writer on a
/// 2.3M-row result of 13 columns, 128k-row groups ~60 MB).
const SQL_PARQUET_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Runs one read-only statement and streams its result to the target.
async fn run_one(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    sql: &str,
    params: &[(String, ScalarValue)],
    target: &Target,
    printer: &Printer,
) -> anyhow::Result<()> {
    let needed = QueryFile {
        name: String::new(),
        sql: sql.to_string(),
    }
    .parameters();
    for n in &needed {
        if !params.iter().any(|(k, _)| k == n) {
            bail!("The query needs `--param {n}=…`");
        }
    }
    refuse_known_wrong(ctx, sql)?;
    let df = match ctx
        .sql_with_options(
            sql.trim().trim_end_matches(';'),
            govlake::query::read_only(),
        )
        .await
    {
        Ok(df) => df,
        Err(e) => {
            if let Some(message) = unknown_table(ctx, &e) {
                bail!(message);
            }
            return Err(anyhow::Error::new(e).context(
                "The query was refused or does not plan (govlake sql is read-only: no DDL, DML, COPY or SET)",
            ));
        }
    };
    let used: Vec<(String, ScalarValue)> = params
        .iter()
        .filter(|(k, _)| needed.contains(k))
        .cloned()
        .collect();
    let df = if used.is_empty() {
        df
    } else {
        df.with_param_values(used)
            .context("Cannot bind the parameters")?
    };
    let mut stream = df.execute_stream().await.context("The query failed")?;
    let schema = stream.schema();
    let mut out = target.open()?;
    let mut lim = Limited {
        limit: target.limit,
        kept: 0,
        left_out: 0,
    };
    let memory = target.memory;
    // Each format writes the batches within the limit; the rest is only counted.
    macro_rules! each_batch {
        (|$b:ident| $body:expr) => {
            while let Some(batch) = next_batch(&mut stream, memory).await? {
                if let Some($b) = lim.take(batch) {
                    $body;
                }
            }
        };
    }
    match target.format {
        SqlFormat::Table => {
            let mut batches = Vec::new();
            each_batch!(|b| batches.push(b));
            writeln!(
                out,
                "{}",
                deltalake::arrow::util::pretty::pretty_format_batches(&batches)?
            )?;
        }
        SqlFormat::Csv => {
            let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            govlake::report::csv::write_line(&mut out, &header)?;
            each_batch!(|b| write_csv_rows(&mut out, &b)?);
        }
        SqlFormat::Json => {
            let mut w = deltalake::arrow::json::ArrayWriter::new(&mut out);
            each_batch!(|b| w.write(&b)?);
            w.finish()?;
            writeln!(out)?;
        }
        SqlFormat::Ndjson => {
            let mut w = deltalake::arrow::json::LineDelimitedWriter::new(&mut out);
            each_batch!(|b| w.write(&b)?);
            w.finish()?;
        }
        SqlFormat::Parquet => {
            let props = deltalake::parquet::file::properties::WriterProperties::builder()
                .set_compression(deltalake::parquet::basic::Compression::SNAPPY)
                .set_max_row_group_row_count(Some(SQL_PARQUET_ROW_GROUP_ROWS))
                .build();
            let mut w = govlake::query::parquet_out::ParallelParquetWriter::try_new(
                &mut out, schema, props,
            )?;
            each_batch!(|b| w.write(&b)?);
            w.close()?;
        }
    }
    out.flush().context("Cannot write the result")?;
    let rows = lim.kept;
    if lim.left_out > 0 && printer.quiet == 0 {
        eprintln!(
            "{} row(s) left out by the row limit of {rows} (`--limit N` to change it, `--limit 0` for all; -o csv streams any number)",
            lim.left_out
        );
    }
    if printer.quiet == 0 {
        match &target.file {
            Some(p) => eprintln!("{rows} row(s) written to {}", p.display()),
            None if target.format == SqlFormat::Table => eprintln!("{rows} row(s)"),
            None => {}
        }
    }
    Ok(())
}

/// The message for a query naming a table or view the session does not have: the closest
/// names it does have and where to list them all. `None` for any other planning error.
fn unknown_table(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    e: &deltalake::datafusion::error::DataFusionError,
) -> Option<String> {
    let text = e.find_root().to_string();
    let quoted = text.split("table '").nth(1)?.split("' not found").next()?;
    let name = quoted.rsplit('.').next().unwrap_or(quoted);
    if govlake::query::table_names().iter().any(|t| t == name) {
        return Some(format!(
            "The lake has no `{name}` table yet: nothing of it has been ingested (`govlake tables` shows what the lake holds)"
        ));
    }
    let known: Vec<String> = ctx
        .catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let near = govlake::suggest::closest(name, &known, 3);
    let hint = if near.is_empty() {
        String::new()
    } else {
        format!("did you mean {}? ", govlake::suggest::or_list(&near))
    };
    Some(format!(
        "No table or view is called `{name}`: {hint}`govlake sql --list` lists the tables and views"
    ))
}

/// Where the prompt keeps its history: `GOVLAKE_HISTORY`, else `~/.govlake_sql_history`.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("GOVLAKE_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".govlake_sql_history")))
}

/// A line-editing prompt on a terminal, with history kept across sessions: statements end
/// with `;`; `\q`, Ctrl-D or Ctrl-C on an empty line quits. Errors are printed and the
/// prompt goes on.
async fn prompt(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    params: &[(String, ScalarValue)],
    target: &Target,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    use rustyline::error::ReadlineError;
    eprintln!(
        "govlake sql — read-only. End statements with `;`, `\\q` to quit. Try `select * from sod_violations;`"
    );
    let mut editor = rustyline::DefaultEditor::new().context("Cannot start the prompt")?;
    let history = history_path();
    if let Some(h) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(h);
    }
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "govlake> "
        } else {
            "    ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) if !buffer.is_empty() => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => break,
            Err(e) => return Err(e).context("Cannot read from the terminal"),
        };
        if buffer.is_empty() && line.trim() == "\\q" {
            break;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if line.trim_end().ends_with(';') {
            let _ = editor.add_history_entry(buffer.trim());
            if let Err(e) = run_one(ctx, &buffer, params, target, printer).await {
                eprintln!("error: {e}");
                for cause in e.chain().skip(1) {
                    eprintln!("  Caused by: {cause}");
                }
            }
            buffer.clear();
        }
    }
    if let Some(h) = &history
        && let Err(e) = editor.save_history(h)
    {
        tracing::warn!("Cannot save the prompt history to `{}`: {e}", h.display());
    }
    Ok(ExitStatus::Success)
}

async fn list(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    files: &[QueryFile],
    registered: &[String],
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for name in govlake::query::table_names() {
        if ctx.table_exist(name.as_str())? {
            let about = govlake::catalog::ENTITIES
                .iter()
                .find(|e| e.table == name || format!("{}_history", e.table) == name)
                .map_or("govlake bookkeeping", |e| e.about);
            rows.push(vec![name.clone(), "table".into(), about.into()]);
        }
    }
    for f in files {
        let kind = if registered.contains(&f.name) {
            "view".to_string()
        } else if f.parameters().is_empty() {
            "view (unavailable: the lake lacks a table it reads)".to_string()
        } else {
            format!(
                "query: govlake sql -f queries/{}.sql --param {}",
                f.name,
                f.parameters().join("=… --param ") + "=…"
            )
        };
        rows.push(vec![f.name.clone(), kind, f.description()]);
    }
    if printer.format == crate::cli::OutputFormat::Json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"name": r[0], "kind": r[1], "description": r[2]}))
            .collect();
        printer.json("sql", "ok", &items)?;
    } else {
        print!(
            "{}",
            super::text_table(&["name", "kind", "description"], &rows)
        );
    }
    Ok(ExitStatus::Success)
}

fn write_csv_rows(out: &mut impl Write, b: &RecordBatch) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    govlake::report::table::append_rows(&mut rows, b)?;
    for r in &rows {
        govlake::report::csv::write_line(out, r)?;
    }
    Ok(())
}
