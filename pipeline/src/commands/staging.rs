//! Staging folders: scratch space under the system temp dir that a command removes when it
//! is done (or fails).

/// A staging folder under the system temp dir, removed when dropped.
pub struct Staging(pub std::path::PathBuf);

impl Staging {
    /// Creates a fresh staging folder.
    pub fn new(what: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("govlake-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("Cannot create `{}`: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
