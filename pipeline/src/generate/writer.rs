//! Page writers for synthetic exports: Graph list pages with `@odata.context` and
//! `@odata.nextLink`, written as records arrive so a tenant of any size streams to disk.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Error, Result};

/// Graph's metadata prefix used in every `@odata.context`.
pub const CONTEXT_BASE: &str = "https://graph.microsoft.com/v1.0/$metadata#";

/// Writes one entity as a series of page files `<dir>/<stem>-0001.json`, ...
pub struct PageWriter {
    dir: PathBuf,
    stem: String,
    context: String,
    page_size: usize,
    current: Vec<String>,
    held: Option<Vec<String>>,
    pages: usize,
    /// Records written.
    pub records: u64,
    /// Files written.
    pub files: u64,
}

impl PageWriter {
    /// A writer for `context` (the part after `$metadata#`).
    pub fn new(dir: &Path, stem: &str, context: &str, page_size: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            context: format!("{CONTEXT_BASE}{context}"),
            page_size,
            current: Vec::new(),
            held: None,
            pages: 0,
            records: 0,
            files: 0,
        }
    }

    /// Adds one record.
    pub fn push(&mut self, record: &Value) -> Result<()> {
        if self.current.len() == self.page_size {
            if let Some(held) = self.held.take() {
                self.write_page(held, true)?;
            }
            self.held = Some(std::mem::take(&mut self.current));
        }
        self.current.push(record.to_string());
        self.records += 1;
        Ok(())
    }

    fn write_page(&mut self, records: Vec<String>, more: bool) -> Result<()> {
        self.pages += 1;
        let path = self
            .dir
            .join(format!("{}-{:04}.json", self.stem, self.pages));
        let mut out =
            String::with_capacity(records.iter().map(|r| r.len() + 2).sum::<usize>() + 256);
        out.push_str("{\"@odata.context\":");
        out.push_str(&Value::String(self.context.clone()).to_string());
        out.push_str(",\"value\":[");
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(r);
        }
        out.push_str("\n]");
        if more {
            let link = format!(
                "https://graph.microsoft.com/v1.0/{}?$skiptoken=page{}",
                self.context.split_once('#').map_or("", |(_, p)| p),
                self.pages + 1
            );
            out.push_str(",\"@odata.nextLink\":");
            out.push_str(&Value::String(link).to_string());
        }
        out.push_str("}\n");
        write_file(&path, out.as_bytes())?;
        self.files += 1;
        Ok(())
    }

    /// Writes what is left (an empty page when nothing was pushed: an empty list is data too).
    pub fn finish(mut self) -> Result<(u64, u64)> {
        if let Some(held) = self.held.take() {
            self.write_page(held, true)?;
        }
        let last = std::mem::take(&mut self.current);
        self.write_page(last, false)?;
        Ok((self.records, self.files))
    }
}

/// Writes a file, creating its folder.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
