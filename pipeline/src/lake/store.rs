//! Where the lake lives: turns `--lake` (a path or URL) into the base URL that every table
//! location hangs off, plus the storage options shared by delta-rs and DataFusion.

use std::collections::HashMap;
use std::path::Path;

use url::Url;

use super::backends::Cloud;
use super::error::{Error, Result};

impl std::fmt::Debug for LakeLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Option values may hold endpoints with embedded credentials: keys only.
        let mut keys: Vec<&String> = self.storage_options.keys().collect();
        keys.sort();
        f.debug_struct("LakeLocation")
            .field("url", &self.url.as_str())
            .field("storage_option_keys", &keys)
            .finish()
    }
}

/// A resolved lake location.
#[derive(Clone)]
pub struct LakeLocation {
    /// Base URL, always ending in `/`.
    pub url: Url,
    /// Options handed to object_store (endpoints, `allow_http`, ...). Never printed.
    pub storage_options: HashMap<String, String>,
}

impl LakeLocation {
    /// Resolves a user-given lake location. Plain paths (relative or absolute) are local
    /// folders; `file://` and `memory://` URLs are used as given. Nothing is created here:
    /// a local folder appears when the first table is written (see [`super::Lake::exists`]).
    pub fn resolve(location: &str, storage_options: HashMap<String, String>) -> Result<Self> {
        let bad = |reason: &str| Error::BadLocation {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        let mut url = if location.contains("://") {
            Url::parse(location).map_err(|e| bad(&e.to_string()))?
        } else {
            let path = Path::new(location);
            // An existing folder is canonicalised (symlinks resolved); a missing one is only
            // made absolute, and stays missing.
            let abs = std::fs::canonicalize(path)
                .or_else(|_| std::path::absolute(path))
                .map_err(|source| Error::CreateDir {
                    path: path.to_path_buf(),
                    source,
                })?;
            Url::from_directory_path(&abs).map_err(|()| bad("not an absolute path"))?
        };
        match url.scheme() {
            "file" => {
                super::backends::register();
                url.to_file_path().map_err(|()| bad("not a local path"))?;
            }
            "memory" => {}
            scheme if Cloud::of_scheme(scheme).is_some() => {
                super::backends::register();
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(bad("the URL names no bucket or container"));
                }
            }
            other => {
                return Err(bad(&format!(
                    "the `{other}` scheme is not supported; use a folder, file://, s3://, az://, abfss://, gs:// or memory://"
                )));
            }
        }
        for key in storage_options.keys() {
            if Cloud::is_secret_option(key) {
                return Err(bad(&format!(
                    "the storage option `{key}` carries a secret; set it in the environment (e.g. {}) instead of the command line or a config file",
                    key.to_ascii_uppercase()
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

    /// Whether the lake is on a local disk (or in memory) rather than object storage.
    pub fn is_local(&self) -> bool {
        Cloud::of_scheme(self.url.scheme()).is_none()
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
