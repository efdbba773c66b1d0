//! When a snapshot is complete: the rule that decides whether objects missing from a run's
//! input may be closed in the lake.
//!
//! A snapshot scope (a whole table such as `assignments`, or one parent's list such as one
//! review instance's decisions) is complete only when its whole page chain was read: every
//! page parsed to its end with no unreadable record in it, exactly one last page (no
//! `@odata.nextLink`), every other page's `@odata.nextLink` distinct, and the first page
//! present. Live ingestion stamps each page with the URL it fetched it from
//! (`@govlake.requestUrl`), so the chain is walked link by link from the first page to the
//! last. Export files carry no such URL; there the file names speak for the first page:
//! files numbered like `assignments-0001.json`, `assignments-0002.json`, … form a family
//! whose numbers must run without a gap from 0 or 1, and the page without a next link must be
//! the family's last. A scope that fails any of this is a coverage gap: its objects are kept
//! open, and the run says why.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};

/// A scope left open, and why.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct SnapshotGap {
    /// Table.
    pub table: String,
    /// Scope within it ("" = the whole table; else the parent's id).
    pub scope: String,
    /// Why the snapshot of this scope is not complete.
    pub reason: String,
}

/// One page of a scope.
#[derive(Debug, Clone)]
struct Page {
    file: usize,
    next_link: Option<String>,
    request_url: Option<String>,
}

type ScopeKey = (&'static str, String);

/// Pages, broken scopes and embedded lists seen in one run.
#[derive(Debug, Default)]
pub struct Completeness {
    files: Vec<PathBuf>,
    /// Family (folder, name without the number) and page number of each file, when its
    /// name has one.
    numbers: Vec<Option<((PathBuf, String), u64)>>,
    /// Entities each file holds pages of.
    entities: HashMap<usize, BTreeSet<&'static str>>,
    pages: BTreeMap<ScopeKey, Vec<Page>>,
    broken: BTreeMap<ScopeKey, String>,
    /// Scopes of lists held whole inside their parents' records, by table, as keys of
    /// [`ScopeKeys`]: one for each request's answers at 10M is 2.7M scopes, which as owned
    /// strings in a tree set took ~85 bytes each (16 now).
    embedded: BTreeMap<&'static str, HashSet<u128>>,
    keys: ScopeKeys,
    /// Tables none of whose scopes is complete (a failed file named for the table, whose
    /// parent cannot be told), with why.
    blocked: BTreeMap<&'static str, String>,
    unattributed: Option<String>,
}

/// Keys for scopes: 128 bits of two SipHashes under this process's random keys (scopes
/// are ids from the input, hostile; two scopes sharing a key would need 2^64 tries).
#[derive(Debug, Clone, Default)]
struct ScopeKeys(RandomState, RandomState);

impl ScopeKeys {
    fn of(&self, scope: &str) -> u128 {
        (u128::from(self.0.hash_one(scope)) << 64) | u128::from(self.1.hash_one(scope))
    }
}

/// The scopes of one table whose snapshot is complete: objects of theirs missing from the
/// run may be closed.
#[derive(Debug, Default)]
pub struct CompleteScopes {
    /// Scopes whose pages form a whole chain.
    listed: BTreeSet<String>,
    /// Scopes whose list came whole inside its parent's record.
    embedded: HashSet<u128>,
    keys: ScopeKeys,
}

impl CompleteScopes {
    /// Whether `scope`'s snapshot is complete.
    pub fn contains(&self, scope: &str) -> bool {
        self.listed.contains(scope) || self.embedded.contains(&self.keys.of(scope))
    }

    /// How many complete scopes there are.
    pub fn len(&self) -> usize {
        self.listed.len() + self.embedded.len()
    }

    /// Whether no scope is complete.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Completeness {
    /// Starts with the run's input files (in reading order).
    pub fn new(files: &[PathBuf]) -> Self {
        let numbers = files
            .iter()
            .map(|f| {
                page_number(f).map(|(family, number)| {
                    let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
                    ((dir, family.to_ascii_lowercase()), number)
                })
            })
            .collect();
        Self {
            files: files.to_vec(),
            numbers,
            ..Self::default()
        }
    }

    /// Notes which entity a file holds pages of (any entity, snapshot or not).
    pub fn file_entity(&mut self, file: usize, entity: &'static str) {
        self.entities.entry(file).or_default().insert(entity);
    }

    /// Why each family of numbered files is not whole, by file. A family whose files all
    /// hold one entity must start at page 0 or 1; any family must run without a jump.
    fn family_gaps(&self) -> HashMap<usize, String> {
        let mut families: BTreeMap<&(PathBuf, String), Vec<(u64, usize)>> = BTreeMap::new();
        for (i, n) in self.numbers.iter().enumerate() {
            if let Some((family, number)) = n {
                families.entry(family).or_default().push((*number, i));
            }
        }
        let mut out = HashMap::new();
        for ((dir, family), mut members) in families {
            members.sort();
            let held: BTreeSet<&str> = members
                .iter()
                .filter_map(|(_, i)| self.entities.get(i))
                .flatten()
                .copied()
                .collect();
            let nums: Vec<u64> = members.iter().map(|(n, _)| *n).collect();
            let from = nums[0];
            let name = format!("{}{family}", show_dir(dir));
            let gap = if from > 1 && held.len() <= 1 {
                Some(format!(
                    "the page files `{name}…` start at page {from}: the pages before it are missing"
                ))
            } else {
                nums.windows(2).find(|w| w[1] != w[0] + 1).map(|w| {
                    if w[1] == w[0] {
                        format!("the page files `{name}…` hold page {} twice", w[0])
                    } else {
                        format!(
                            "the page files `{name}…` jump from page {} to page {}: the pages between are missing",
                            w[0], w[1]
                        )
                    }
                })
            };
            if let Some(g) = gap {
                for (_, i) in members {
                    out.insert(i, g.clone());
                }
            }
        }
        out
    }

    /// A page of `scope` read to its end.
    pub fn page(
        &mut self,
        table: &'static str,
        scope: String,
        file: usize,
        next_link: Option<String>,
        request_url: Option<String>,
    ) {
        // Compared as URLs: a link and the URL fetched from it may differ in escaping.
        let normal = |u: String| url::Url::parse(&u).map_or(u, |p| p.to_string());
        self.pages.entry((table, scope)).or_default().push(Page {
            file,
            next_link: next_link.map(normal),
            request_url: request_url.map(normal),
        });
    }

    /// A list held whole inside its parent's record (a policy's stages): complete with it.
    pub fn embedded(&mut self, table: &'static str, scope: &str) {
        let key = self.keys.of(scope);
        self.embedded.entry(table).or_default().insert(key);
    }

    /// Something of `scope` was lost (an unreadable record or page): it is not complete.
    pub fn broken(&mut self, table: &'static str, scope: String, reason: String) {
        self.broken.entry((table, scope)).or_insert(reason);
    }

    /// A file of `table` failed before its scope could be told: no scope of the table is
    /// complete.
    pub fn block_table(&mut self, table: &'static str, reason: String) {
        self.blocked.entry(table).or_insert(reason);
    }

    /// The file's name, for messages.
    pub fn file_name(&self, file: usize) -> String {
        self.name(file)
    }

    /// A file failed whose entity cannot be told: it may have been any snapshot's page, so
    /// no snapshot of this run is complete.
    pub fn unattributed(&mut self, reason: String) {
        self.unattributed.get_or_insert(reason);
    }

    /// The complete scopes of `table`, and the gaps of the ones that are not. Called once
    /// per table, at the end of the run: it hands the table's embedded scopes over.
    pub fn finish(&mut self, table: &'static str) -> (CompleteScopes, Vec<SnapshotGap>) {
        let mut listed = BTreeSet::new();
        let mut gaps = Vec::new();
        let gap = |scope: &str, reason: String| SnapshotGap {
            table: table.to_string(),
            scope: scope.to_string(),
            reason,
        };
        let mut embedded = self.embedded.remove(table).unwrap_or_default();
        let everything_broken = self.unattributed.as_ref().or(self.blocked.get(table));
        let scopes: BTreeSet<&String> = self
            .pages
            .keys()
            .chain(self.broken.keys())
            .filter(|(t, _)| *t == table)
            .map(|(_, s)| s)
            .collect();
        let family_gaps = self.family_gaps();
        for scope in scopes {
            let key = (table, scope.clone());
            // A scope with pages or a break is decided here, whether or not its list also
            // came inside a record: it leaves the embedded set either way.
            let in_record = embedded.remove(&self.keys.of(scope));
            let verdict = if let Some(reason) = everything_broken {
                Err(ChainBreak::Known(reason.clone()))
            } else if let Some(reason) = self.broken.get(&key) {
                Err(ChainBreak::Known(reason.clone()))
            } else if in_record {
                Ok(())
            } else {
                self.chain(
                    self.pages.get(&key).map_or(&[][..], Vec::as_slice),
                    &family_gaps,
                )
            };
            match verdict {
                Ok(()) => {
                    listed.insert(scope.clone());
                }
                Err(reason) => gaps.push(gap(scope, reason.to_string())),
            }
        }
        if let Some(reason) = everything_broken {
            // The embedded scopes are kept as keys, not names: one gap stands for them all.
            if !embedded.is_empty() {
                gaps.push(gap(
                    "",
                    format!(
                        "{reason} (the lists of {} records, held inside them)",
                        embedded.len()
                    ),
                ));
            }
            embedded.clear();
        }
        if gaps.is_empty()
            && let Some(reason) = self.blocked.get(table)
        {
            gaps.push(gap("", reason.clone()));
        }
        let complete = CompleteScopes {
            listed,
            embedded,
            keys: self.keys.clone(),
        };
        (complete, gaps)
    }

    fn name(&self, file: usize) -> String {
        self.files
            .get(file)
            .map_or_else(String::new, |p| p.display().to_string())
    }

    /// Whether the pages form one whole chain; if not, why.
    fn chain(
        &self,
        pages: &[Page],
        family_gaps: &HashMap<usize, String>,
    ) -> Result<(), ChainBreak> {
        if pages.is_empty() {
            return Err(ChainBreak::NoPage);
        }
        let mut links = BTreeSet::new();
        for p in pages {
            if let Some(l) = &p.next_link
                && !links.insert(l.as_str())
            {
                return Err(ChainBreak::SameNext { link: l.clone() });
            }
        }
        let lasts: Vec<&Page> = pages.iter().filter(|p| p.next_link.is_none()).collect();
        match lasts.len() {
            0 => {
                let p = pages.last().expect("not empty");
                return Err(ChainBreak::LastMissing {
                    file: self.name(p.file),
                });
            }
            1 => {}
            n => {
                return Err(ChainBreak::SeveralLasts {
                    n,
                    first: self.name(lasts[0].file),
                    second: self.name(lasts[1].file),
                });
            }
        }
        let with_url = pages.iter().filter(|p| p.request_url.is_some()).count();
        if with_url == pages.len() {
            return walk_links(pages);
        }
        if with_url > 0 {
            return Err(ChainBreak::LiveAndExport);
        }
        for p in pages {
            if let Some(g) = family_gaps.get(&p.file) {
                return Err(ChainBreak::Known(g.clone()));
            }
        }
        // Numbered files: the page without a next link comes last.
        let number = |p: &Page| {
            self.numbers
                .get(p.file)
                .and_then(|n| n.as_ref().map(|n| n.1))
        };
        if pages.iter().all(|p| number(p).is_some()) {
            let last = lasts[0];
            let highest = pages.iter().filter_map(number).max();
            if number(last) != highest {
                return Err(ChainBreak::NumberedAfterLast {
                    file: self.name(last.file),
                });
            }
        }
        Ok(())
    }
}

/// Why a listing's pages do not form one whole chain (the reason of a snapshot gap).
#[derive(Debug, thiserror::Error)]
enum ChainBreak {
    #[error("no page of it was read whole")]
    NoPage,
    #[error(
        "two pages link to the same next page (`{link}`): a page was read twice, or two listings were mixed"
    )]
    SameNext { link: String },
    #[error("its last page is missing: `{file}` links to a next page that is not in the input")]
    LastMissing { file: String },
    #[error(
        "{n} pages have no `@odata.nextLink` (`{first}`, `{second}`): two listings were mixed, or pages are missing between them"
    )]
    SeveralLasts {
        n: usize,
        first: String,
        second: String,
    },
    #[error("pages of a live run and export pages were mixed")]
    LiveAndExport,
    #[error(
        "`{file}` has no `@odata.nextLink`, but pages numbered after it follow: pages are out of order or from two listings"
    )]
    NumberedAfterLast { file: String },
    #[error("the pages do not form one chain ({n} pages are not linked from any other)")]
    SeveralFirsts { n: usize },
    #[error("its first page is missing: the earliest page read (`{url}`) continues an earlier one")]
    FirstMissing { url: String },
    #[error("the pages link in a cycle")]
    Cycle,
    #[error("the page `{link}` is missing")]
    PageMissing { link: String },
    #[error("{n} of its pages are not on the chain from its first page to its last")]
    OffChain { n: usize },
    /// A reason found before the chain was walked (a file family's gap, a broken page).
    #[error("{0}")]
    Known(String),
}

/// Walks a live run's pages from the first (the one no page links to) by their links.
fn walk_links(pages: &[Page]) -> Result<(), ChainBreak> {
    let by_url: HashMap<&str, &Page> = pages
        .iter()
        .filter_map(|p| p.request_url.as_deref().map(|u| (u, p)))
        .collect();
    let linked: BTreeSet<&str> = pages
        .iter()
        .filter_map(|p| p.next_link.as_deref())
        .collect();
    let firsts: Vec<&Page> = pages
        .iter()
        .filter(|p| !linked.contains(p.request_url.as_deref().unwrap_or_default()))
        .collect();
    let [first] = firsts.as_slice() else {
        return Err(ChainBreak::SeveralFirsts { n: firsts.len() });
    };
    let first_url = first.request_url.as_deref().unwrap_or_default();
    let lower = first_url.to_ascii_lowercase();
    if lower.contains("skiptoken=") || lower.contains("$skip=") || lower.contains("%24skip") {
        return Err(ChainBreak::FirstMissing {
            url: first_url.to_string(),
        });
    }
    let mut seen = 1;
    let mut at = *first;
    while let Some(link) = &at.next_link {
        match by_url.get(link.as_str()) {
            Some(next) => {
                at = next;
                seen += 1;
                if seen > pages.len() {
                    return Err(ChainBreak::Cycle);
                }
            }
            None => return Err(ChainBreak::PageMissing { link: link.clone() }),
        }
    }
    if seen != pages.len() {
        return Err(ChainBreak::OffChain {
            n: pages.len() - seen,
        });
    }
    Ok(())
}

fn show_dir(dir: &Path) -> String {
    let s = dir.display().to_string();
    if s.is_empty() {
        s
    } else {
        format!("{}{}", s, std::path::MAIN_SEPARATOR)
    }
}

/// The page number in a file name, and the name without it: `assignments-0002.json` →
/// (`assignments-`, 2); `decisions_page3.jsonl` → (`decisions_page`, 3). A number counts when
/// it ends the name's stem, has at most six digits, and follows `-`, `_`, `.`, a space or
/// `page`; a date at the end of the name (`2026-10-08`, `20261008`) is not a page number.
pub fn page_number(path: &Path) -> Option<(String, u64)> {
    let (path, _) = super::files::uncompressed_name(path);
    let stem = path.file_stem()?.to_str()?;
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 6 {
        return None;
    }
    let (family, number) = stem.split_at(stem.len() - digits);
    let lower = family.to_ascii_lowercase();
    let separated = family.ends_with(['-', '_', '.', ' ']) || lower.ends_with("page");
    if !separated || looks_like_date(family, number) {
        return None;
    }
    Some((family.to_string(), number.parse().ok()?))
}

/// `…2026-10-` + `08`, `…2026_10_` + `08`: the end of a date.
fn looks_like_date(family: &str, number: &str) -> bool {
    if number.len() != 2 {
        return false;
    }
    let b = family.as_bytes();
    // family ends with YYYY?MM? where ? is a separator
    b.len() >= 8 && {
        let t = &b[b.len() - 8..];
        t[..4].iter().all(u8::is_ascii_digit)
            && !t[4].is_ascii_digit()
            && t[5..7].iter().all(u8::is_ascii_digit)
            && !t[7].is_ascii_digit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `None` when the scope is complete, else the first gap's reason.
    fn run(files: &[&str], pages: &[(usize, Option<&str>, Option<&str>)]) -> Option<String> {
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        let mut c = Completeness::new(&files);
        for (file, next, url) in pages {
            c.file_entity(*file, "assignments");
            c.page(
                "assignments",
                String::new(),
                *file,
                next.map(str::to_string),
                url.map(str::to_string),
            );
        }
        let (complete, gaps) = c.finish("assignments");
        (!complete.contains("")).then(|| gaps[0].reason.clone())
    }

    const F: [&str; 4] = [
        "x/assignments-0001.json",
        "x/assignments-0002.json",
        "x/assignments-0003.json",
        "x/assignments-0004.json",
    ];

    #[test]
    fn a_whole_numbered_chain_is_complete() {
        let p = [
            (0, Some("n2"), None),
            (1, Some("n3"), None),
            (2, Some("n4"), None),
            (3, None, None),
        ];
        assert_eq!(run(&F, &p), None);
        assert_eq!(run(&["one.json"], &[(0, None, None)]), None);
    }

    #[test]
    fn partial_chains_are_gaps() {
        // One middle page.
        let e = run(&F[1..2], &[(0, Some("n3"), None)]).expect("a gap");
        assert!(e.contains("last page is missing"), "{e}");
        // The last page alone: its name says pages 1-3 are missing.
        let e = run(&F[3..], &[(0, None, None)]).expect("a gap");
        assert!(e.contains("start at page 4"), "{e}");
        // Pages 2-4.
        let e = run(
            &F[1..],
            &[
                (0, Some("n3"), None),
                (1, Some("n4"), None),
                (2, None, None),
            ],
        )
        .expect("a gap");
        assert!(e.contains("start at page 2"), "{e}");
        // Page 3 missing.
        let files = [F[0], F[1], F[3]];
        let e = run(
            &files,
            &[
                (0, Some("n2"), None),
                (1, Some("n3"), None),
                (2, None, None),
            ],
        )
        .expect("a gap");
        assert!(e.contains("jump from page 2 to page 4"), "{e}");
        // Two listings mixed; a page twice.
        let e = run(&F[..2], &[(0, None, None), (1, None, None)]).expect("a gap");
        assert!(e.contains("2 pages have no"), "{e}");
        let e = run(
            &["a.json", "b.json"],
            &[(0, Some("n"), None), (1, Some("n"), None)],
        )
        .expect("a gap");
        assert!(e.contains("same next page"), "{e}");
        // The last page out of order.
        let e = run(&F[..2], &[(0, None, None), (1, Some("n"), None)]).expect("a gap");
        assert!(e.contains("pages numbered after it"), "{e}");
    }

    #[test]
    fn a_family_of_many_entities_may_start_later() {
        // `download-0001.json` was the export marker: the data files start at 2.
        let files: Vec<PathBuf> = ["d/download-0002.json", "d/download-0003.json"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let mut c = Completeness::new(&files);
        c.file_entity(0, "catalogs");
        c.file_entity(1, "assignments");
        c.page("assignments", String::new(), 1, None, None);
        assert!(c.finish("assignments").0.contains(""));
    }

    #[test]
    fn live_pages_are_walked_by_their_urls() {
        let spool = ["s/0000007.json", "s/0000008.json", "s/0000009.json"];
        let whole = [
            (0, Some("u2"), Some("u1")),
            (1, Some("u3"), Some("u2")),
            (2, None, Some("u3")),
        ];
        assert_eq!(run(&spool, &whole), None);
        let later = [
            (0, Some("u?$skiptoken=3"), Some("u?$skiptoken=2")),
            (1, None, Some("u?$skiptoken=3")),
        ];
        let e = run(&spool[..2], &later).expect("a gap");
        assert!(e.contains("first page is missing"), "{e}");
        let e = run(
            &spool,
            &[
                (0, Some("u2"), Some("u1")),
                (1, Some("u9"), Some("u2")),
                (2, None, Some("u3")),
            ],
        )
        .expect("a gap");
        assert!(e.contains("not linked") || e.contains("missing"), "{e}");
    }

    #[test]
    fn broken_and_unattributed_scopes_are_gaps() {
        let files: Vec<PathBuf> = vec!["a.json".into()];
        let mut c = Completeness::new(&files);
        c.page("decisions", "i1".into(), 0, None, None);
        c.page("decisions", "i2".into(), 0, None, None);
        c.broken(
            "decisions",
            "i2".into(),
            "record 3 could not be read".into(),
        );
        c.embedded("stages", "p1");
        c.embedded("stages", "p2");
        c.broken("stages", "p2".into(), "item 1 could not be read".into());
        // p1 also has a page of its own: still one complete scope.
        c.page("stages", "p1".into(), 0, None, None);
        let mut after_junk = Completeness {
            embedded: c.embedded.clone(),
            keys: c.keys.clone(),
            ..Completeness::new(&files)
        };
        let (complete, gaps) = c.finish("decisions");
        assert!(complete.contains("i1"));
        assert!(!complete.contains("i2"));
        assert_eq!(complete.len(), 1);
        assert_eq!(gaps.len(), 1);
        let (stages, gaps) = c.finish("stages");
        assert!(stages.contains("p1"));
        assert!(
            !stages.contains("p2"),
            "a broken scope is a gap, inside a record too"
        );
        assert!(!stages.contains("p3"));
        assert_eq!((stages.len(), gaps.len()), (1, 1));

        after_junk.page("decisions", "i1".into(), 0, None, None);
        after_junk.unattributed("`junk.json` could not be read".into());
        let (complete, gaps) = after_junk.finish("decisions");
        assert!(complete.is_empty());
        assert_eq!(gaps.len(), 1);
        let (stages, gaps) = after_junk.finish("stages");
        assert!(stages.is_empty());
        assert_eq!(gaps.len(), 1, "one gap stands for the embedded scopes");
        assert!(gaps[0].reason.contains("2 records"), "{}", gaps[0].reason);
    }

    #[test]
    fn page_numbers_in_file_names() {
        let n = |s: &str| page_number(Path::new(s));
        assert_eq!(n("assignments-0002.json"), Some(("assignments-".into(), 2)));
        assert_eq!(
            n("decisions-a6117238-0001.json"),
            Some(("decisions-a6117238-".into(), 1))
        );
        assert_eq!(n("page3.json"), Some(("page".into(), 3)));
        assert_eq!(n("0000007.json"), None, "seven digits");
        assert_eq!(n("000007.json"), None, "nothing before it");
        assert_eq!(n("assignments.json"), None);
        assert_eq!(n("assignments-2026-10-08.json"), None);
        assert_eq!(n("decisions-3111a2d57cb7.json"), None);
        assert_eq!(n("assignments2.json"), None);
    }
}
