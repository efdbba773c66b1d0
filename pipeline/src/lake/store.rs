//! Where the lake lives: turns `--lake` (a path or URL) into the base URL that every table
//! location hangs off, plus the storage options shared by delta-rs and DataFusion.

use std::collections::HashMap;
use std::path::Path;

use url::Url;

use super::error::{Error, Result};

/// A resolved lake location.
#[derive(Debug, Clone)]
pub struct LakeLocation {
    /// Base URL, always ending in `/`.
    pub url: Url,
    /// Options handed to object_store (endpoints, `allow_http`, ...). Never printed.
    pub storage_options: HashMap<String, String>,
}

impl LakeLocation {
    /// Resolves a user-given lake location. Plain paths (relative or absolute) are local
    /// folders, created if missing; `file://` and `memory://` URLs are used as given.
    pub fn resolve(location: &str, storage_options: HashMap<String, String>) -> Result<Self> {
        let bad = |reason: &str| Error::BadLocation {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        let mut url = if location.contains("://") {
            Url::parse(location).map_err(|e| bad(&e.to_string()))?
        } else {
            let path = Path::new(location);
            std::fs::create_dir_all(path).map_err(|source| Error::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
            let abs = std::fs::canonicalize(path).map_err(|source| Error::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
            Url::from_directory_path(&abs).map_err(|()| bad("not an absolute path"))?
        };
        match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|()| bad("not a local path"))?;
                std::fs::create_dir_all(&path)
                    .map_err(|source| Error::CreateDir { path, source })?;
            }
            "memory" => {}
            other => {
                return Err(bad(&format!(
                    "the `{other}` scheme is not supported yet; use a local path, file:// or memory://"
                )));
            }
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self {
            url,
            storage_options,
        })
    }

    /// URL of one table's folder.
    pub fn table_url(&self, table: &str) -> Url {
        // Table names are our own snake_case constants, so joining cannot escape the lake.
        self.url
            .join(&format!("{table}/"))
            .expect("table names are valid URL segments")
    }

    /// A human-readable form of the location (a local path when local).
    pub fn display(&self) -> String {
        if self.url.scheme() == "file"
            && let Ok(p) = self.url.to_file_path()
        {
            return p.display().to_string();
        }
        self.url.to_string()
    }
}
