//! `govlake verify`: checks an evidence pack against its manifests and signature, naming
//! every failure (a changed, missing or extra file, an edited manifest or bag-info, a
//! signature that does not match or comes from another key).
//!
//! Order: entries are looked up by path, but the manifest's exact bytes are covered by the
//! signed tag manifest, so a reordered manifest fails (`manifest-sha256.txt: changed`), as
//! any edit does. Duplicate or unsafe paths fail too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sha2::Digest as _;

use super::pack::{BAG_INFO, BAGIT, MANIFEST, SIGNATURE, SIGNER, TAG_MANIFEST, files_under};
use super::sign::PublicKey;
use super::{Result, io_err};

/// The verdict.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verdict {
    /// Payload files checked.
    pub files_checked: usize,
    /// Key id of a valid signature.
    pub signed_by: Option<String>,
    /// Whether the signer was pinned with `--public-key` (else read from the pack).
    pub signer_pinned: bool,
    /// The signature's trusted comment.
    pub trusted_comment: Option<String>,
    /// Each failure: (path, reason).
    pub failures: Vec<(String, String)>,
}

impl Verdict {
    /// No failure.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
    fn fail(&mut self, path: &str, reason: impl Into<String>) {
        self.failures.push((path.to_string(), reason.into()));
    }
}

fn sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Parses `HASH  path` lines; records malformed, unsafe and duplicate lines as failures.
fn parse_manifest(text: &str, name: &str, verdict: &mut Verdict) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((hash, path)) = line.split_once("  ").or_else(|| line.split_once(' ')) else {
            verdict.fail(name, format!("line {} is not `SHA256  path`", i + 1));
            continue;
        };
        let path = path.trim_start_matches('*').to_string();
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            verdict.fail(name, format!("line {}: `{hash}` is not a SHA-256", i + 1));
            continue;
        }
        if path.starts_with('/')
            || path.contains('\\')
            || path
                .split('/')
                .any(|p| p == ".." || p == "." || p.is_empty())
        {
            verdict.fail(name, format!("line {}: unsafe path `{path}`", i + 1));
            continue;
        }
        if entries
            .insert(path.clone(), hash.to_ascii_lowercase())
            .is_some()
        {
            verdict.fail(name, format!("`{path}` is listed twice"));
        }
    }
    entries
}

/// Verifies the pack at `dir`. `public_key` pins the expected signer; without it the pack's
/// own `signer.pub` is used (which proves integrity, not who signed).
pub fn verify(dir: &Path, public_key: Option<&PublicKey>) -> Result<Verdict> {
    if !dir.join(BAGIT).is_file() {
        return Err(super::Error::Invalid(format!(
            "`{}` is not an evidence pack (no {BAGIT})",
            dir.display()
        )));
    }
    let mut v = Verdict::default();
    let read = |name: &str| std::fs::read_to_string(dir.join(name));

    // Tag files.
    let tag_text = read(TAG_MANIFEST).map_err(io_err("read", &dir.join(TAG_MANIFEST)))?;
    let tags = parse_manifest(&tag_text, TAG_MANIFEST, &mut v);
    for required in [BAGIT, BAG_INFO, MANIFEST] {
        if !tags.contains_key(required) {
            v.fail(TAG_MANIFEST, format!("does not cover `{required}`"));
        }
    }
    for (path, hash) in &tags {
        match sha256(&dir.join(path)) {
            Ok(h) if &h == hash => {}
            Ok(_) => v.fail(path, "changed: its SHA-256 differs from the tag manifest"),
            Err(_) => v.fail(path, "missing"),
        }
    }

    // Payload.
    let manifest = read(MANIFEST).unwrap_or_default();
    let entries = parse_manifest(&manifest, MANIFEST, &mut v);
    for (path, hash) in &entries {
        if !path.starts_with("data/") {
            v.fail(MANIFEST, format!("`{path}` is outside data/"));
            continue;
        }
        match sha256(&dir.join(path)) {
            Ok(h) if &h == hash => v.files_checked += 1,
            Ok(_) => v.fail(path, "changed: its SHA-256 differs from the manifest"),
            Err(_) => v.fail(path, "missing: listed in the manifest but not in the pack"),
        }
    }
    let listed: BTreeSet<&String> = entries.keys().collect();
    for path in files_under(dir, "data")? {
        if !listed.contains(&path) {
            v.fail(&path, "extra: in the pack but not in the manifest");
        }
    }
    let known: BTreeSet<&str> = [BAGIT, BAG_INFO, MANIFEST, TAG_MANIFEST, SIGNATURE, SIGNER].into();
    for entry in std::fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "data" && !known.contains(name.as_str()) {
            v.fail(&name, "extra: in the pack but not in the manifest");
        }
    }
    if let Ok(info) = read(BAG_INFO) {
        let oxum = info
            .lines()
            .find_map(|l| l.strip_prefix("Payload-Oxum:"))
            .map(str::trim);
        let actual_files = entries.len();
        if let Some(oxum) = oxum {
            let files = oxum.split('.').nth(1).and_then(|f| f.parse::<usize>().ok());
            if files != Some(actual_files) {
                v.fail(BAG_INFO, format!("Payload-Oxum `{oxum}` does not match the {actual_files} files of the manifest"));
            }
        }
    }

    // Signature.
    match read(SIGNATURE) {
        Err(_) => v.fail(SIGNATURE, "missing: the pack is not signed"),
        Ok(signature) => {
            let key = match public_key {
                Some(k) => Some(k.clone()),
                None => match read(SIGNER).ok().map(|t| PublicKey::parse(&t)) {
                    Some(Ok(k)) => Some(k),
                    _ => {
                        v.fail(SIGNER, "missing or not a public key: pass --public-key");
                        None
                    }
                },
            };
            if let Some(key) = key {
                match key.verify(tag_text.as_bytes(), &signature) {
                    Ok(comment) => {
                        v.signed_by = Some(key.id_text());
                        v.signer_pinned = public_key.is_some();
                        v.trusted_comment = Some(comment);
                    }
                    Err(reason) => v.fail(SIGNATURE, reason),
                }
            }
        }
    }
    Ok(v)
}
