//! What the simulator serves, and how a page is cut: the Graph path of a collection (the
//! `@odata.context` path its pages named, expansions stripped, or, for Azure Monitor
//! archives, `auditLogs/directoryAudits` with each envelope's `properties`), a page request's
//! `$top`, `$skiptoken` and `$filter`, a page's body and its absolute `@odata.nextLink`. The
//! records themselves are indexed by `index` and read back from the export's files.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::index::{Entry, Export};

pub(crate) const AUDITS: &str = "auditLogs/directoryAudits";
pub(crate) const GRAPH_CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata#";

/// Why an export directory could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory could not be listed.
    #[error("cannot read `{}`: {source}", dir.display())]
    Discover {
        dir: PathBuf,
        source: govlake::ingest::error::Error,
    },
    /// A file could not be opened.
    #[error("cannot open `{}`: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is not a readable export (what the reader said, and where).
    #[error("`{}`: {message} {location}", path.display())]
    Read {
        path: PathBuf,
        message: String,
        location: String,
    },
    /// More files than the index numbers.
    #[error("`{}` holds more than 16 million files: serve a smaller export", dir.display())]
    TooMany { dir: PathBuf },
    /// More distinct `state` values than the index numbers.
    #[error("`{}`: more than 65,000 distinct `state` values across the export; the simulator filters on a few (such as `delivered`)", path.display())]
    States { path: PathBuf },
    /// A record read while loading did not read back from its file.
    #[error("{0}")]
    ReadBack(String),
}

/// The collection path of an `@odata.context`: after `$metadata#`, with the last segment's
/// expansion list (`assignments(target(),…)`) dropped but key segments (`definitions('…')`)
/// kept.
pub(crate) fn collection_path(context: &str) -> String {
    let path = context.split_once("$metadata#").map_or(context, |(_, p)| p);
    let path = path.split_once("/$entity").map_or(path, |(p, _)| p);
    match path.rfind('/') {
        Some(i) => {
            let (head, last) = path.split_at(i + 1);
            format!("{head}{}", strip_expansion(last))
        }
        None => strip_expansion(path).to_string(),
    }
}

fn strip_expansion(segment: &str) -> &str {
    match segment.find('(') {
        Some(i) if !segment[i..].starts_with("('") => &segment[..i],
        _ => segment,
    }
}

/// What a page request asked for.
pub(crate) struct PageQuery {
    pub(crate) top: usize,
    pub(crate) skip: usize,
    pub(crate) filter: Vec<Clause>,
}

impl PageQuery {
    /// `$top` (default 100, clamped to 1..=999), `$skiptoken` and `$filter`; an error names
    /// the bad parameter.
    pub(crate) fn parse(query: &HashMap<String, String>) -> Result<Self, String> {
        let top: usize = match query.get("$top") {
            Some(t) => t.parse().map_err(|_| format!("Invalid $top value `{t}`"))?,
            None => 100,
        };
        let skip: usize = match query.get("$skiptoken") {
            Some(t) => t.parse().map_err(|_| format!("Invalid $skiptoken `{t}`"))?,
            None => 0,
        };
        let filter = match query.get("$filter") {
            Some(f) => parse_filter(f)?,
            None => vec![],
        };
        Ok(Self {
            top: top.clamp(1, 999),
            skip,
            filter,
        })
    }
}

/// One page's JSON body: `@odata.context`, `@odata.nextLink` when there is a next page,
/// and the records' JSON as they are.
pub(crate) fn page_body(context: &str, next_link: Option<&str>, records: &[String]) -> String {
    let mut body = format!(
        "{{\"@odata.context\":{}",
        serde_json::to_string(context).unwrap_or_default()
    );
    if let Some(next) = next_link {
        body.push_str(&format!(
            ",\"@odata.nextLink\":{}",
            serde_json::to_string(next).unwrap_or_default()
        ));
    }
    body.push_str(",\"value\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r);
    }
    body.push_str("]}");
    body
}

/// The `@odata.nextLink` of a page that ends at `end`: the same `$top`, `$filter` and
/// `$expand`, absolute on the host the client called.
pub(crate) fn next_link(
    host: &str,
    key: &str,
    top: usize,
    end: usize,
    query: &HashMap<String, String>,
) -> String {
    let mut next = format!("http://{host}/v1.0/{key}?$top={top}&$skiptoken={end}");
    for name in ["$filter", "$expand"] {
        if let Some(v) = query.get(name) {
            next.push_str(&format!("&{name}={}", percent_encode(v)));
        }
    }
    next
}

/// One `field op value` clause of a `$filter`.
pub(crate) struct Clause {
    field: String,
    op: String,
    ts: Option<i64>,
    text: String,
}

impl Clause {
    pub(crate) fn matches(&self, r: &Entry, export: &Export) -> bool {
        use std::cmp::Ordering::*;
        let ord = match self.field.as_str() {
            "createddatetime" | "activitydatetime" => {
                let v = if self.field == "createddatetime" {
                    r.created()
                } else {
                    r.activity()
                };
                match (v, self.ts) {
                    (Some(v), Some(t)) => v.cmp(&t),
                    _ => return false,
                }
            }
            "state" => match export.state(r) {
                Some(s) => s.cmp(self.text.as_str()),
                None => return false,
            },
            _ => return false,
        };
        match self.op.as_str() {
            "eq" => ord == Equal,
            "ge" => ord != Less,
            "gt" => ord == Greater,
            "le" => ord != Greater,
            "lt" => ord == Less,
            _ => false,
        }
    }
}

pub(crate) fn parse_filter(filter: &str) -> Result<Vec<Clause>, String> {
    let mut out = vec![];
    for clause in filter.split(" and ") {
        let parts: Vec<&str> = clause.split_whitespace().collect();
        let [field, op, value] = parts.as_slice() else {
            return Err(format!("Invalid filter clause `{clause}`"));
        };
        let field = field.to_ascii_lowercase();
        if !matches!(
            field.as_str(),
            "createddatetime" | "activitydatetime" | "state"
        ) {
            return Err(format!(
                "Invalid filter clause: filtering on `{field}` is not supported"
            ));
        }
        let op = op.to_ascii_lowercase();
        if !matches!(op.as_str(), "eq" | "ge" | "gt" | "le" | "lt") {
            return Err(format!("Invalid filter operator `{op}`"));
        }
        let text = value.trim_matches('\'').to_string();
        out.push(Clause {
            ts: govlake::time::parse_ts(&text),
            field,
            op,
            text,
        });
    }
    Ok(out)
}

/// A query string's parameters (`+` is a space there, as in a form).
pub(crate) fn parse_query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A request path with `%XX` decoded; a `+` in a path is a `+` (only query strings use it
/// for a space).
pub(crate) fn decode_path(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths_drop_expansions_keep_keys() {
        assert_eq!(
            collection_path(
                "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/entitlementManagement/accessPackages(catalog(),resourceRoleScopes(role(),scope()))"
            ),
            "identityGovernance/entitlementManagement/accessPackages"
        );
        assert_eq!(
            collection_path(
                "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/accessReviews/definitions('a')/instances('b')/decisions"
            ),
            "identityGovernance/accessReviews/definitions('a')/instances('b')/decisions"
        );
    }

    #[test]
    fn filters_and_query_coding() {
        let f = parse_filter("activityDateTime ge 2026-08-01T00:00:00Z and state eq 'delivered'")
            .unwrap();
        assert_eq!(f.len(), 2);
        assert!(parse_filter("displayName eq 'x'").is_err());
        let s = "activityDateTime ge 2026-08-01T00:00:00Z";
        assert_eq!(
            parse_query(&format!("$filter={}", percent_encode(s)))["$filter"],
            s
        );
    }

    #[test]
    fn a_path_decodes_percent_escapes_and_keeps_plus() {
        assert_eq!(decode_path("definitions('a%27b')"), "definitions('a'b')");
        assert_eq!(decode_path("users('a+b%2Bc')"), "users('a+b+c')");
        assert_eq!(decode_path("x%20y"), "x y");
    }
}
