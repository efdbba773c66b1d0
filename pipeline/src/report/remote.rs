//! Evidence packs on object storage. A pack is always built and signed in a local staging
//! folder (so its bytes are the same wherever it lands); `publish` then uploads every file
//! under the target URL, the tag manifest and its signature last, so a reader who finds the
//! signature finds a complete pack. `fetch` downloads a published pack into a staging folder
//! for `govlake verify`. Object names are the pack's own relative paths, which `pack` keeps
//! inside the pack folder (no `..`, no absolute paths).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::logstore::object_store::{
    ObjectStore, ObjectStoreExt, buffered::BufWriter, path::Path as ObjectPath,
};
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;
use url::Url;

use super::{Error, Result, io_err};
use crate::lake::backends::{self, Cloud};

/// The files uploaded last, in this order: they vouch for everything before them.
const LAST: [&str; 2] = ["tagmanifest-sha256.txt", "tagmanifest-sha256.txt.minisig"];

/// The object-storage URL a pack target names, `None` for a local folder.
pub fn remote_target(target: &str) -> Option<Url> {
    let url = Url::parse(target).ok()?;
    Cloud::of_scheme(url.scheme()).map(|_| url)
}

fn store_err(what: String) -> impl FnOnce(deltalake::logstore::object_store::Error) -> Error {
    move |e| Error::Invalid(format!("{what}: {e}"))
}

fn open(url: &Url, options: &HashMap<String, String>) -> Result<(Arc<dyn ObjectStore>, String)> {
    let (store, prefix) = backends::build(url, options)
        .map_err(|e| Error::Invalid(format!("Cannot open `{url}`: {e}")))?;
    Ok((store, prefix.to_string()))
}

fn join(prefix: &str, rel: &str) -> ObjectPath {
    if prefix.is_empty() {
        ObjectPath::from(rel)
    } else {
        ObjectPath::from(format!("{prefix}/{rel}"))
    }
}

/// Uploads the pack folder `dir` (and its archive, to `<url>.tar`) to `url`. Returns the
/// number of objects written.
pub async fn publish(
    dir: &Path,
    archive: Option<&Path>,
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<usize> {
    let (store, prefix) = open(url, options)?;
    let mut files: Vec<String> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.to_string_lossy().replace('\\', "/"))
        })
        .collect();
    files.sort_by_key(|f| (LAST.iter().position(|l| l == f), f.clone()));
    for rel in &files {
        upload(&store, &dir.join(rel), join(&prefix, rel), url).await?;
    }
    let mut n = files.len();
    if let Some(tar) = archive {
        let object = ObjectPath::from(format!("{prefix}.tar"));
        upload(&store, tar, object, url).await?;
        n += 1;
    }
    Ok(n)
}

async fn upload(
    store: &Arc<dyn ObjectStore>,
    file: &Path,
    object: ObjectPath,
    url: &Url,
) -> Result<()> {
    let mut src = tokio::fs::File::open(file)
        .await
        .map_err(io_err("read", file))?;
    // Multipart above the buffer size, one PUT below it; never the whole file in memory.
    let mut dst = BufWriter::new(store.clone(), object.clone());
    tokio::io::copy(&mut src, &mut dst)
        .await
        .map_err(io_err("upload", file))?;
    dst.shutdown()
        .await
        .map_err(|e| Error::Invalid(format!("Cannot upload `{object}` to `{url}`: {e}")))?;
    Ok(())
}

/// Downloads the pack under `url` into `into` (created), returning the local folder.
pub async fn fetch(url: &Url, options: &HashMap<String, String>, into: &Path) -> Result<PathBuf> {
    let (store, prefix) = open(url, options)?;
    let base = ObjectPath::from(prefix.as_str());
    let listed: Vec<_> = store
        .list(Some(&base))
        .try_collect()
        .await
        .map_err(store_err(format!("Cannot list `{url}`")))?;
    if listed.is_empty() {
        return Err(Error::Invalid(format!("No evidence pack at `{url}`")));
    }
    for meta in listed {
        let rel = meta
            .location
            .prefix_match(&base)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
            .unwrap_or_default();
        if rel.is_empty() || rel.iter().any(|p| p == ".." || p.is_empty()) {
            continue;
        }
        let local = rel.iter().fold(into.to_path_buf(), |p, part| p.join(part));
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let mut stream = store
            .get(&meta.location)
            .await
            .map_err(store_err(format!("Cannot read `{}`", meta.location)))?
            .into_stream();
        let mut out = tokio::fs::File::create(&local)
            .await
            .map_err(io_err("write", &local))?;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(store_err(format!("Cannot read `{}`", meta.location)))?
        {
            out.write_all(&chunk)
                .await
                .map_err(io_err("write", &local))?;
        }
        out.flush().await.map_err(io_err("write", &local))?;
    }
    Ok(into.to_path_buf())
}
