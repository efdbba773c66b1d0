//! The governance queries of `queries/*.sql`: embedded in the binary (a directory given with
//! `--queries` replaces them), each file one query whose leading comment says which auditor
//! question it answers. Files without parameters are registered as views of the same name in
//! every session; files with `$name` parameters are run with `govlake sql -f` and `--param`.

use std::path::Path;

use deltalake::datafusion::prelude::SessionContext;

use super::{Error, Result};

/// One query file.
#[derive(Debug, Clone)]
pub struct QueryFile {
    /// View name (the file stem).
    pub name: String,
    /// The SQL, comments included.
    pub sql: String,
}

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../queries/", $name, ".sql")))),*]
    };
}

/// The queries shipped in `queries/`, in a fixed order.
const EMBEDDED: &[(&str, &str)] = embedded![
    "assignment_holdings",
    "approval_trail",
    "recertification_coverage",
    "sod_violations",
    "sod_group_violations",
    "sod_history",
    "expiration_compliance",
    "policy_findings",
    "access_as_of",
    "approval_latency",
    "direct_admin_grants",
    "external_access",
    "control_changes",
    "remediation_timeliness",
    "review_completeness",
];

impl QueryFile {
    /// The first line of the leading comment (`name: what it answers`), without the name.
    pub fn description(&self) -> String {
        let first = self
            .sql
            .lines()
            .find_map(|l| l.trim().strip_prefix("--"))
            .unwrap_or("")
            .trim();
        first.split_once(": ").map_or(first, |(_, d)| d).to_string()
    }

    /// The row key its leading comment declares (`-- Key: user_object_id, access_package_id`):
    /// the columns that name one finding, so `govlake changes` tells a row whose other
    /// columns changed from a new one. `None` when the file declares no key.
    pub fn key(&self) -> Option<Vec<String>> {
        self.comment_list("key:")
    }

    /// Columns its leading comment declares volatile (`-- Volatile: days_overdue`): they move
    /// with every snapshot, so `govlake changes` does not call a row changed for them.
    pub fn volatile(&self) -> Vec<String> {
        self.comment_list("volatile:").unwrap_or_default()
    }

    /// The comma-separated names of the leading comment's line `-- <label> a, b`.
    fn comment_list(&self, label: &str) -> Option<Vec<String>> {
        self.sql
            .lines()
            .map_while(|l| l.trim().strip_prefix("--"))
            .find_map(|l| {
                let l = l.trim();
                l.get(..label.len())
                    .filter(|p| p.eq_ignore_ascii_case(label))
                    .map(|_| &l[label.len()..])
            })
            .map(|cols| {
                cols.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|cols| !cols.is_empty())
    }

    /// Named parameters (`$as_of`) the query needs, in order of first use. Found with the
    /// SQL parser's own tokenizer, so a `$` inside a string literal, a quoted name or a
    /// comment is not one; positional `$1` neither. SQL that does not tokenize has none
    /// (planning it reports the error).
    pub fn parameters(&self) -> Vec<String> {
        use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
        use deltalake::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
        let Ok(tokens) = Tokenizer::new(&GenericDialect {}, &self.sql).tokenize() else {
            return vec![];
        };
        let mut out: Vec<String> = Vec::new();
        for token in tokens {
            if let Token::Placeholder(p) = token
                && let Some(name) = p.strip_prefix('$')
                && !name.is_empty()
                && !name.chars().all(|c| c.is_ascii_digit())
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
        }
        out
    }
}

/// The embedded queries.
pub fn embedded() -> Vec<QueryFile> {
    EMBEDDED
        .iter()
        .map(|(n, s)| QueryFile {
            name: (*n).into(),
            sql: (*s).into(),
        })
        .collect()
}

/// Loads `*.sql` from a folder (sorted by name). File names must be lowercase identifiers.
pub fn load_dir(dir: &Path) -> std::io::Result<Vec<QueryFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "`{}`: a query file's name becomes a view and file name, so it may hold only a-z, 0-9 and _",
                        path.display()
                    ),
                ));
            }
            files.push(QueryFile {
                name,
                sql: std::fs::read_to_string(&path)?,
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Registers every parameterless query as a view. A view may read other views whatever
/// their order in the list (or their file names): a view whose table is not there yet is
/// retried after the others, until a pass registers nothing new. A view over a table the
/// lake does not have yet is then skipped, not an error.
pub async fn register(ctx: &SessionContext, files: &[QueryFile]) -> Result<Vec<String>> {
    let mut registered = Vec::new();
    let mut pending: Vec<&QueryFile> = files.iter().filter(|f| f.parameters().is_empty()).collect();
    loop {
        let tried = pending.len();
        let mut waiting = Vec::new();
        for f in pending {
            let body = f.sql.trim().trim_end_matches(';');
            let create = format!("CREATE OR REPLACE VIEW \"{}\" AS {body}", f.name);
            if let Some(missing) =
                missing_relation(ctx, &create).map_err(|e| Error::view(&f.name, e))?
            {
                tracing::debug!(view = %f.name, table = %missing, "View waits: a table or view it reads is not registered (yet).");
                waiting.push(f);
                continue;
            }
            let df = ctx
                .sql(&create)
                .await
                .map_err(|e| Error::view(&f.name, e))?;
            df.collect().await.map_err(|e| Error::view(&f.name, e))?;
            registered.push(f.name.clone());
        }
        if waiting.is_empty() || waiting.len() == tried {
            for f in &waiting {
                tracing::debug!(view = %f.name, "View skipped: the lake lacks a table it reads.");
            }
            break;
        }
        pending = waiting;
    }
    Ok(registered)
}

/// The query files a statement reads as views, with the views those read in turn: what
/// `govlake sql` registers for one statement, instead of planning every view (about 0.1 s
/// of each run). `None`, every file, when the statement is not a plain query (or an
/// `EXPLAIN` of one), reads the catalog (`information_schema`) or a name that is neither a
/// table nor a query file, or does not parse (running it then reports the error, naming
/// the closest table or view).
pub fn read_by(ctx: &SessionContext, files: &[QueryFile], sql: &str) -> Option<Vec<QueryFile>> {
    use deltalake::datafusion::sql::parser::Statement;
    use deltalake::datafusion::sql::sqlparser::ast::Statement as SqlStatement;
    let state = ctx.state();
    let statement = state
        .sql_to_statement(
            sql.trim().trim_end_matches(';'),
            &state.config().options().sql_parser.dialect,
        )
        .ok()?;
    let query = match &statement {
        Statement::Statement(s) => matches!(**s, SqlStatement::Query(_)),
        Statement::Explain(e) => {
            matches!(&*e.statement, Statement::Statement(s) if matches!(**s, SqlStatement::Query(_)))
        }
        _ => false,
    };
    if !query {
        return None;
    }
    let references = state.resolve_table_references(&statement).ok()?;
    // A name that is neither a table nor a query file: every view, so that the error names
    // the closest of them all ("did you mean `sod_violations`").
    let unknown = |r: &deltalake::datafusion::common::TableReference| {
        !files.iter().any(|f| f.name == r.table()) && !ctx.table_exist(r.clone()).unwrap_or(false)
    };
    if references.iter().any(|r| {
        r.schema()
            .is_some_and(|s| s.eq_ignore_ascii_case("information_schema"))
            || unknown(r)
    }) {
        return None;
    }
    let mut wanted: Vec<QueryFile> = Vec::new();
    let mut to_visit: Vec<String> = references.iter().map(|r| r.table().to_string()).collect();
    while let Some(name) = to_visit.pop() {
        let Some(file) = files.iter().find(|f| f.name == name) else {
            continue;
        };
        if wanted.iter().any(|w| w.name == file.name) {
            continue;
        }
        // A view whose SQL does not parse is registered anyway: registering reports it.
        to_visit.extend(relations(ctx, file.sql.trim().trim_end_matches(';')).unwrap_or_default());
        wanted.push(file.clone());
    }
    Some(wanted)
}

/// The first table or view `sql` reads that the session does not have, found by
/// DataFusion's own parser and reference resolver (common table expressions are not
/// references, and a table function such as `generate_series` is there).
fn missing_relation(
    ctx: &SessionContext,
    sql: &str,
) -> std::result::Result<Option<String>, deltalake::datafusion::error::DataFusionError> {
    for reference in references(ctx, sql)? {
        if !ctx.table_exist(reference.clone())? {
            return Ok(Some(reference.to_string()));
        }
    }
    Ok(None)
}

/// The tables and views `sql` reads, by name (common table expressions and table
/// functions are not among them), found by DataFusion's own parser and reference resolver.
pub fn relations(
    ctx: &SessionContext,
    sql: &str,
) -> std::result::Result<Vec<String>, deltalake::datafusion::error::DataFusionError> {
    Ok(references(ctx, sql)?
        .into_iter()
        .map(|r| r.table().to_string())
        .collect())
}

fn references(
    ctx: &SessionContext,
    sql: &str,
) -> std::result::Result<
    Vec<deltalake::datafusion::common::TableReference>,
    deltalake::datafusion::error::DataFusionError,
> {
    let state = ctx.state();
    let statement = state.sql_to_statement(sql, &state.config().options().sql_parser.dialect)?;
    Ok(state
        .resolve_table_references(&statement)?
        .into_iter()
        .filter(|r| !state.table_functions().contains_key(r.table()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, sql: &str) -> QueryFile {
        QueryFile {
            name: name.into(),
            sql: sql.into(),
        }
    }

    /// One statement registers the views it reads and those they read, nothing else; the
    /// catalog, other statements and SQL that does not parse get every view.
    #[test]
    fn a_statement_reads_its_views_and_theirs() {
        let files = [
            file("a", "-- reads b\nSELECT * FROM b JOIN c_table USING (id);"),
            file("b", "SELECT id FROM t"),
            file("c", "SELECT 2 AS two"),
            file("d", "SELECT * FROM a"),
        ];
        let ctx = SessionContext::new();
        for table in ["t", "c_table"] {
            ctx.register_batch(
                table,
                deltalake::arrow::array::RecordBatch::try_from_iter([(
                    "id",
                    std::sync::Arc::new(deltalake::arrow::array::Int64Array::from(vec![1]))
                        as deltalake::arrow::array::ArrayRef,
                )])
                .expect("batch"),
            )
            .expect("table");
        }
        let names = |sql: &str| {
            read_by(&ctx, &files, sql).map(|read| {
                let mut names: Vec<String> = read.into_iter().map(|f| f.name).collect();
                names.sort();
                names.join(" ")
            })
        };
        assert_eq!(
            names("SELECT * FROM a JOIN t ON true"),
            Some("a b".to_string())
        );
        assert_eq!(names("select * from D"), Some("a b d".to_string()));
        assert_eq!(names("EXPLAIN SELECT * FROM c"), Some("c".to_string()));
        // A common table expression named like a view is not the view.
        assert_eq!(
            names("WITH c AS (SELECT 1) SELECT * FROM c"),
            Some("".to_string())
        );
        assert_eq!(names("SELECT * FROM information_schema.tables"), None);
        assert_eq!(names("SHOW TABLES"), None);
        assert_eq!(names("CREATE VIEW x AS SELECT * FROM a"), None);
        assert_eq!(names("SELEC nothing"), None);
        // A misspelt name: every view, for the error's suggestions.
        assert_eq!(names("SELECT * FROM bb"), None);
    }

    #[test]
    fn every_file_in_queries_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
        let on_disk: Vec<String> = load_dir(&dir)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        let mut embedded: Vec<String> = embedded().into_iter().map(|f| f.name).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "add new queries/*.sql files to EMBEDDED in query/views.rs"
        );
    }

    #[test]
    fn parameters_and_descriptions_are_read_from_the_file() {
        let q = embedded()
            .into_iter()
            .find(|q| q.name == "access_as_of")
            .unwrap();
        assert_eq!(q.parameters(), ["as_of"]);
        assert!(q.description().starts_with("who held each access package"));
        let s = embedded()
            .into_iter()
            .find(|q| q.name == "sod_violations")
            .unwrap();
        assert!(s.parameters().is_empty());
    }

    #[test]
    fn keys_are_read_from_the_leading_comment_only() {
        let q = |sql: &str| QueryFile {
            name: "q".into(),
            sql: sql.into(),
        };
        assert_eq!(
            q("-- q: x\n-- key: a, b ,c\nSELECT 1").key(),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(q("-- q: x\nSELECT 1 -- Key: a").key(), None);
        assert_eq!(q("-- Key:\nSELECT 1").key(), None);
        let sod = embedded()
            .into_iter()
            .find(|q| q.name == "sod_violations")
            .unwrap();
        assert_eq!(
            sod.key().unwrap(),
            [
                "user_object_id",
                "access_package_id",
                "incompatible_access_package_id"
            ]
        );
    }

    #[test]
    fn dollars_in_strings_quoted_names_and_comments_are_not_parameters() {
        let q = QueryFile {
            name: "q".into(),
            sql: "select '$x', 'it''s $y', \"$col\", $z -- $c\n/* $d */ from t where a = $z and b = $w and c = $1".into(),
        };
        assert_eq!(q.parameters(), ["z", "w"]);
    }

    #[tokio::test]
    async fn a_view_with_a_missing_column_names_the_view_and_the_column() {
        let files = [
            QueryFile {
                name: "base".into(),
                sql: "SELECT CAST(1 AS BIGINT) AS x".into(),
            },
            QueryFile {
                name: "sod_violations".into(),
                sql: "-- sod_violations: broken\nSELECT x, no_such_column FROM base".into(),
            },
        ];
        let err = register(&SessionContext::new(), &files).await.unwrap_err();
        assert!(
            matches!(&err, Error::ViewColumn { view, column, .. } if view == "sod_violations" && column == "no_such_column"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("`sod_violations`"), "{text}");
        assert!(text.contains("`no_such_column`"), "{text}");
        assert!(text.contains("queries/sod_violations.sql"), "{text}");
    }

    #[tokio::test]
    async fn a_view_that_does_not_plan_is_an_error_not_a_wait() {
        let files = [QueryFile {
            name: "bad".into(),
            sql: "SELECT unknown_function_xyz(1)".into(),
        }];
        let err = register(&SessionContext::new(), &files).await.unwrap_err();
        assert!(
            matches!(&err, Error::View { view, .. } if view == "bad"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn common_table_expressions_and_table_functions_are_not_missing_tables() {
        let files = [
            QueryFile {
                name: "cte".into(),
                sql: "WITH t AS (SELECT 1 AS x) SELECT x FROM t".into(),
            },
            QueryFile {
                name: "series".into(),
                sql: "SELECT value FROM generate_series(1, 3)".into(),
            },
        ];
        assert_eq!(
            register(&SessionContext::new(), &files).await.unwrap(),
            ["cte", "series"]
        );
    }

    #[tokio::test]
    async fn a_view_may_read_a_view_listed_after_it() {
        let files = [
            file("a_first", "SELECT x + 1 AS y FROM z_last"),
            file("m_missing", "SELECT * FROM no_such_table"),
            file("z_last", "SELECT CAST(1 AS BIGINT) AS x"),
        ];
        let ctx = SessionContext::new();
        let mut registered = register(&ctx, &files).await.unwrap();
        registered.sort();
        assert_eq!(registered, ["a_first", "z_last"]);
        let rows = ctx
            .sql("SELECT y FROM a_first")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);
    }
}
