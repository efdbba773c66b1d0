//! Which lake a command works on (`--lake`, `GOVLAKE_LAKE`, the config file, the default)
//! and whether it may: the lake must exist unless the command creates one, and its format
//! version must allow the access (`govlake::lake::format`).

/// What a command does with the lake it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a lake that exists (sql, tables, report, sample). A typo in `--lake` must never
    /// leave a new lake behind; a lake in an older format is read as it is where its
    /// migration steps allow.
    Read,
    /// Write into a lake that exists (pack, vacuum, rebuild).
    Write,
    /// Write, creating the lake if there is none (ingest, demo).
    Create,
}

/// Resolves the lake location of a command (`--lake`, the config file, the default),
/// without looking at what is there.
pub fn resolve_lake(
    global: &crate::cli::GlobalArgs,
    default: &str,
) -> anyhow::Result<govlake::lake::Lake> {
    let config = govlake::config::PipelineConfig::load(global.config.as_deref())?;
    let options = storage_options(global, &config);
    let location = global
        .lake
        .clone()
        .or(config.lake.location)
        .unwrap_or_else(|| default.to_string());
    let loc = govlake::lake::LakeLocation::resolve(&location, options)?;
    Ok(govlake::lake::Lake::new(loc).with_retention(config.lake.retention))
}

/// Resolves the lake for a command and checks it may be used for `access`: a lake must be
/// there unless the command creates one (exit 2 otherwise, saying how to make one), and its
/// format version must allow the use (a lake from a newer govlake is refused; an older one
/// may need `govlake migrate`).
pub async fn open_lake(
    global: &crate::cli::GlobalArgs,
    default: &str,
    access: Access,
) -> anyhow::Result<govlake::lake::Lake> {
    use govlake::lake::format::{self, Found, Intent};
    let lake = resolve_lake(global, default)?;
    let intent = match access {
        Access::Read => Intent::Read,
        Access::Write | Access::Create => Intent::Write,
    };
    if format::check(&lake, intent).await? == Found::NoLake && access != Access::Create {
        anyhow::bail!(
            "no govlake lake at {}: create one with `govlake --lake {} ingest --from EXPORT_DIR` (or `ingest --graph`), or try `govlake demo`; or point --lake, GOVLAKE_LAKE or the config's [lake] location at an existing lake",
            lake.location().display(),
            lake.location().display()
        );
    }
    Ok(lake)
}

/// Storage options: the config file's `[lake.storage_options]`, then `--storage-option`.
pub fn storage_options(
    global: &crate::cli::GlobalArgs,
    config: &govlake::config::PipelineConfig,
) -> std::collections::HashMap<String, String> {
    let mut options: std::collections::HashMap<String, String> = config
        .lake
        .storage_options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    options.extend(global.storage_options.iter().cloned());
    options
}
