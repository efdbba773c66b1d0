//! `govlake verify`: checks an evidence pack against its manifests and signature, naming
//! every failure (a changed, missing or extra file, an edited manifest or bag-info, a
//! signature that does not match or comes from another key). A pack holds regular files
//! only: a symbolic link (even to an identical file) or an empty folder fails.
//!
//! Integrity is not authenticity: anyone can edit a pack, rehash it and sign it with their
//! own key, and its `signer.pub` then matches. Only a signer pinned by the verifier
//! (`--public-key`, or the config file's `[verify] trusted_keys`) makes a pack verified;
//! without one the verdict says the signer is unverified.
//!
//! Order: entries are looked up by path, but the manifest's exact bytes are covered by the
//! signed tag manifest, so a reordered manifest fails (`manifest-sha256.txt: changed`), as
//! any edit does. Duplicate or unsafe paths fail too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sha2::Digest as _;

use super::pack::{
    BAG_INFO, BAGIT, MANIFEST, SIGNATURE, SIGNER, TAG_MANIFEST, files_under, relative_path,
};
use super::sign::PublicKey;
use super::{Result, io_err};

/// The verdict.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verdict {
    /// Payload files checked.
    pub files_checked: usize,
    /// Key id of a valid signature.
    pub signed_by: Option<String>,
    /// Whether the signature is by a pinned key (`--public-key`, trusted keys); else the
    /// key was read from the pack, which proves integrity only.
    pub signer_pinned: bool,
    /// The signature's trusted comment.
    pub trusted_comment: Option<String>,
    /// Each failure: (path, reason).
    pub failures: Vec<(String, String)>,
}

impl Verdict {
    /// No failure: the pack is whole and consistent (signed by a pinned key or not).
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
    /// No failure, and the signature is by a pinned key.
    pub fn verified(&self) -> bool {
        self.passed() && self.signer_pinned
    }
    fn fail(&mut self, path: &str, reason: impl Into<String>) {
        self.failures.push((path.to_string(), reason.into()));
    }
}

/// SHA-256 of a regular file; why not when it is missing or something else (a symbolic
/// link is not followed, even to an identical file).
fn sha256(path: &Path) -> Result<String, &'static str> {
    let meta = std::fs::symlink_metadata(path).map_err(|_| "missing")?;
    if meta.file_type().is_symlink() {
        return Err("a symbolic link, not a file: a pack holds regular files only");
    }
    if !meta.is_file() {
        return Err("not a regular file: a pack holds regular files only");
    }
    file_sha256(path).map_err(|_| "unreadable")
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
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

/// Verifies the pack at `dir`. `trusted` pins the expected signers (one of them must have
/// signed); without any, the pack's own `signer.pub` is used, which proves integrity, not
/// who signed (`signer_pinned` stays false).
pub fn verify(dir: &Path, trusted: &[PublicKey]) -> Result<Verdict> {
    if !dir.is_dir() {
        return Err(super::Error::Invalid(format!(
            "`{}` is not a folder",
            dir.display()
        )));
    }
    let mut v = Verdict::default();
    if let Err(reason) = sha256(&dir.join(BAGIT)) {
        v.fail(BAGIT, format!("{reason}: not an evidence pack (BagIt)"));
    }
    match std::fs::symlink_metadata(dir.join("data")) {
        Ok(m) if m.is_dir() => {}
        _ => v.fail("data", "missing or not a folder"),
    }
    let tag_text = check_tag_files(dir, &mut v);
    check_payload(dir, &mut v)?;
    check_signature(dir, &tag_text, trusted, &mut v);
    Ok(v)
}

/// A tag file's text, read only when it is a regular file (a link could point anywhere).
fn read(dir: &Path, name: &str) -> std::io::Result<String> {
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => std::fs::read_to_string(&path),
        _ => Err(std::io::ErrorKind::NotFound.into()),
    }
}

/// Checks the tag manifest covers the tag files and their hashes; its text (empty when
/// it is missing).
fn check_tag_files(dir: &Path, v: &mut Verdict) -> String {
    let tag_text = match read(dir, TAG_MANIFEST) {
        Ok(t) => t,
        Err(_) => {
            v.fail(TAG_MANIFEST, "missing");
            String::new()
        }
    };
    let tags = parse_manifest(&tag_text, TAG_MANIFEST, v);
    for required in [BAGIT, BAG_INFO, MANIFEST] {
        if !tags.contains_key(required) {
            v.fail(TAG_MANIFEST, format!("does not cover `{required}`"));
        }
    }
    for (path, hash) in &tags {
        match sha256(&dir.join(path)) {
            Ok(h) if &h == hash => {}
            Ok(_) => v.fail(path, "changed: its SHA-256 differs from the tag manifest"),
            Err(reason) => v.fail(path, reason),
        }
    }
    tag_text
}

/// Checks the payload against the manifest (changed, missing and extra files) and the
/// bag-info's Payload-Oxum.
fn check_payload(dir: &Path, v: &mut Verdict) -> Result<()> {
    let manifest = read(dir, MANIFEST).unwrap_or_default();
    let entries = parse_manifest(&manifest, MANIFEST, v);
    for (path, hash) in &entries {
        if !path.starts_with("data/") {
            v.fail(MANIFEST, format!("`{path}` is outside data/"));
            continue;
        }
        match sha256(&dir.join(path)) {
            Ok(h) if &h == hash => v.files_checked += 1,
            Ok(_) => v.fail(path, "changed: its SHA-256 differs from the manifest"),
            Err("missing") => v.fail(path, "missing: listed in the manifest but not in the pack"),
            Err(reason) => v.fail(path, reason),
        }
    }
    let listed: BTreeSet<&String> = entries.keys().collect();
    for path in files_under(dir, "data")? {
        if !listed.contains(&path) {
            v.fail(&path, "extra: in the pack but not in the manifest");
        }
    }
    for path in empty_folders(dir, "data") {
        v.fail(&path, "extra: an empty folder, not in the manifest");
    }
    let known: BTreeSet<&str> = [BAGIT, BAG_INFO, MANIFEST, TAG_MANIFEST, SIGNATURE, SIGNER].into();
    for entry in std::fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "data" && !known.contains(name.as_str()) {
            v.fail(&name, "extra: in the pack but not in the manifest");
        }
    }
    if let Ok(info) = read(dir, BAG_INFO) {
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
    Ok(())
}

/// Checks the signature of the tag manifest: by one of the `trusted` keys, else by the
/// pack's own `signer.pub`.
fn check_signature(dir: &Path, tag_text: &str, trusted: &[PublicKey], v: &mut Verdict) {
    match read(dir, SIGNATURE) {
        Err(_) => v.fail(SIGNATURE, "missing: the pack is not signed"),
        Ok(signature) => {
            let pinned = !trusted.is_empty();
            let key = if pinned {
                // The trusted key that made it, else the first (which names the mismatch).
                let signer = super::sign::signer_key_id(&signature);
                trusted
                    .iter()
                    .find(|k| Some(k.id_text()) == signer)
                    .or(trusted.first())
                    .cloned()
            } else {
                match read(dir, SIGNER).ok().map(|t| PublicKey::parse(&t)) {
                    Some(Ok(k)) => Some(k),
                    _ => {
                        v.fail(SIGNER, "missing or not a public key: pass --public-key");
                        None
                    }
                }
            };
            if let Some(key) = key {
                match key.verify(tag_text.as_bytes(), &signature) {
                    Ok(comment) => {
                        v.signed_by = Some(key.id_text());
                        v.signer_pinned = pinned;
                        v.trusted_comment = Some(comment);
                    }
                    Err(reason) if trusted.len() > 1 => v.fail(
                        SIGNATURE,
                        format!("{reason} (nor by any other trusted key)"),
                    ),
                    Err(reason) => v.fail(SIGNATURE, reason.to_string()),
                }
            }
        }
    }
}

/// Folders under `root/dir` with nothing in them, as `/`-separated relative paths.
fn empty_folders(root: &Path, dir: &str) -> Vec<String> {
    walkdir::WalkDir::new(root.join(dir))
        .min_depth(1)
        .into_iter()
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_type().is_dir())
        .filter(|e| std::fs::read_dir(e.path()).is_ok_and(|mut entries| entries.next().is_none()))
        .map(|e| relative_path(root, e.path()))
        .collect()
}
