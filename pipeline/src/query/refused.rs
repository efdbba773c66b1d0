//! SQL that govlake refuses before planning, because DataFusion 55 (or the parser under it)
//! answers it wrongly and no rewrite of the plan can tell: each refusal says how to write
//! the query instead. Found by a differential run of ad-hoc queries against DuckDB.
//!
//! - `a IS [NOT] DISTINCT FROM b AND c` is parsed as `a IS DISTINCT FROM (b AND c)`
//!   (sqlparser-rs 2436): a right operand that is an unparenthesized AND / OR / XOR.
//! - `INTERSECT ALL` and `EXCEPT ALL` ignore duplicate counts (apache/datafusion 12955,
//!   12956): `{1, 1, 2} INTERSECT ALL {1}` gave two rows.

use std::ops::ControlFlow;

use deltalake::datafusion::sql::parser::Statement as DFStatement;
use deltalake::datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, SetOperator, SetQuantifier, Visit, Visitor,
};

/// Why `statement` is refused, with the way to write it, or `None`.
pub fn reason(statement: &DFStatement) -> Option<String> {
    match statement {
        DFStatement::Statement(statement) => match statement.visit(&mut Refusals) {
            ControlFlow::Break(reason) => Some(reason),
            ControlFlow::Continue(()) => None,
        },
        DFStatement::Explain(explain) => reason(&explain.statement),
        _ => None,
    }
}

struct Refusals;

impl Visitor for Refusals {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        match set_operation_all(&query.body) {
            Some(op) => ControlFlow::Break(format!(
                "govlake refuses {op} ALL: DataFusion 55 ignores how often a row occurs on each \
                 side (apache/datafusion#12955). Use {op} (distinct rows), or join the two sides \
                 with their rows counted"
            )),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        let (Expr::IsDistinctFrom(_, right) | Expr::IsNotDistinctFrom(_, right)) = expr else {
            return ControlFlow::Continue(());
        };
        match right.as_ref() {
            Expr::BinaryOp {
                op: BinaryOperator::And | BinaryOperator::Or | BinaryOperator::Xor,
                ..
            } => ControlFlow::Break(format!(
                "govlake refuses `{expr}` as written: the SQL parser reads `a IS DISTINCT FROM b \
                 AND c` as `a IS DISTINCT FROM (b AND c)` (sqlparser-rs#2436). Put the comparison \
                 in parentheses: `(a IS DISTINCT FROM b) AND c`"
            )),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// `INTERSECT` or `EXCEPT` when a set operation of the body is `… ALL`.
fn set_operation_all(body: &SetExpr) -> Option<&'static str> {
    let SetExpr::SetOperation {
        op,
        set_quantifier,
        left,
        right,
    } = body
    else {
        return None;
    };
    let all = matches!(set_quantifier, SetQuantifier::All);
    match op {
        SetOperator::Intersect if all => Some("INTERSECT"),
        SetOperator::Except | SetOperator::Minus if all => Some("EXCEPT"),
        _ => set_operation_all(left).or_else(|| set_operation_all(right)),
    }
}

#[cfg(test)]
mod tests {
    use deltalake::datafusion::prelude::SessionContext;

    use super::*;

    fn refused(sql: &str) -> Option<String> {
        let state = SessionContext::new().state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).expect(sql);
        reason(&statement)
    }

    #[test]
    fn misparsed_and_miscounted_shapes_are_refused_with_the_way_to_write_them() {
        for (sql, says) in [
            (
                "select a is distinct from b and c from t",
                "(a IS DISTINCT FROM b) AND c",
            ),
            (
                "select * from t where a is not distinct from b or c",
                "parentheses",
            ),
            (
                "select x from t intersect all select x from u",
                "INTERSECT (distinct rows)",
            ),
            (
                "explain select x from t intersect all select x from u",
                "INTERSECT",
            ),
            (
                "select * from (select x from t except all select x from u) s",
                "EXCEPT (distinct rows)",
            ),
            (
                "select * from t where x in (select y from u union select z from v intersect all select w from k)",
                "INTERSECT",
            ),
        ] {
            let reason = refused(sql).unwrap_or_else(|| panic!("not refused: {sql}"));
            assert!(reason.contains(says), "{sql}: {reason}");
        }
    }

    #[test]
    fn the_same_shapes_written_safely_pass() {
        for sql in [
            "select (a is distinct from b) and c from t",
            "select a is distinct from (b and c) from t",
            "select a is distinct from b from t where c and d",
            "select x from t intersect select x from u",
            "select x from t union all select x from u",
            "select x from t except select x from u",
        ] {
            assert_eq!(refused(sql), None, "{sql}");
        }
    }
}
