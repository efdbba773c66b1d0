//! Log Analytics `AuditLogs` rows as Graph directoryAudit objects, and back. The backfill
//! (`govlake ingest --log-analytics`) and saved query results (`az monitor log-analytics
//! query` JSON, read by `--from`) both arrive as rows with PascalCase columns whose dynamic
//! values (`InitiatedBy`, `TargetResources`, `AdditionalDetails`) are JSON text; this module
//! turns each row into the directoryAudit it came from (same `id`), so one event read from
//! Graph, from an archive and from Log Analytics is one row in `audit_events`. The column
//! list below is the only place that knows the mapping; the simulator uses it backwards.

use serde_json::{Map, Value};

/// (Log Analytics column, directoryAudit property, whether the column is `dynamic`).
pub const COLUMNS: &[(&str, &str, bool)] = &[
    ("Id", "id", false),
    ("Category", "category", false),
    ("CorrelationId", "correlationId", false),
    ("Result", "result", false),
    ("ResultReason", "resultReason", false),
    ("ActivityDisplayName", "activityDisplayName", false),
    ("ActivityDateTime", "activityDateTime", false),
    ("LoggedByService", "loggedByService", false),
    ("AADOperationType", "operationType", false),
    ("InitiatedBy", "initiatedBy", true),
    ("TargetResources", "targetResources", true),
    ("AdditionalDetails", "additionalDetails", true),
];

/// Whether an object is a Log Analytics `AuditLogs` row (saved query output) rather than a
/// directoryAudit.
pub fn is_row(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.contains_key("AADOperationType")
            || (o.contains_key("ActivityDateTime") && o.contains_key("Id"))
    })
}

/// The directoryAudit a row holds. Dynamic columns given as JSON text are parsed; text that
/// is not JSON stays text (the typed ingest then rejects or keeps it as it would any value).
pub fn row_to_directory_audit(row: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (column, property, dynamic) in COLUMNS {
        let Some(v) = row.get(*column) else { continue };
        let v = match v {
            Value::String(s) if *dynamic => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            Value::String(s) if s.is_empty() => Value::Null,
            other => other.clone(),
        };
        out.insert((*property).to_string(), v);
    }
    Value::Object(out)
}

/// The rows of a Log Analytics query answer (`{"tables":[{"columns":[…],"rows":[[…]]}]}`)
/// as objects keyed by column name.
pub fn answer_rows(answer: &Value) -> Vec<Map<String, Value>> {
    let mut out = vec![];
    for table in answer["tables"].as_array().into_iter().flatten() {
        let names: Vec<&str> = table["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["name"].as_str().unwrap_or_default())
            .collect();
        for row in table["rows"].as_array().into_iter().flatten() {
            let Some(cells) = row.as_array() else {
                continue;
            };
            out.push(
                names
                    .iter()
                    .zip(cells)
                    .map(|(n, v)| ((*n).to_string(), v.clone()))
                    .collect(),
            );
        }
    }
    out
}

/// A query answer holding `events` (directoryAudits) as the Log Analytics API sends them:
/// one `PrimaryResult` table, dynamic values as JSON text. Used by the simulator.
pub fn answer_of(events: &[Value]) -> Value {
    let mut columns = vec![serde_json::json!({"name": "TimeGenerated", "type": "datetime"})];
    for (column, _, dynamic) in COLUMNS {
        let ty = if *dynamic { "dynamic" } else { "string" };
        columns.push(serde_json::json!({"name": column, "type": ty}));
    }
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut row = vec![e["activityDateTime"].clone()];
            for (_, property, dynamic) in COLUMNS {
                let v = &e[*property];
                row.push(match v {
                    Value::Null => Value::String(String::new()),
                    v if *dynamic => Value::String(v.to_string()),
                    v => v.clone(),
                });
            }
            Value::Array(row)
        })
        .collect();
    serde_json::json!({"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_to_the_directory_audit_it_came_from() {
        let event = serde_json::json!({
            "id": "Directory_ABC",
            "category": "EntitlementManagement",
            "correlationId": "c-1",
            "result": "success",
            "resultReason": null,
            "activityDisplayName": "Approve access package assignment request",
            "activityDateTime": "2026-06-01T10:00:00.1234567Z",
            "loggedByService": "Entitlement Management",
            "operationType": "Update",
            "initiatedBy": {"user": {"id": "u1", "userPrincipalName": "a@contoso.com"}},
            "targetResources": [{"id": "r1", "type": "AccessPackageAssignmentRequest"}],
            "additionalDetails": [{"key": "RequestId", "value": "r1"}],
        });
        let answer = answer_of(std::slice::from_ref(&event));
        let rows = answer_rows(&answer);
        assert_eq!(rows.len(), 1);
        assert!(is_row(&Value::Object(rows[0].clone())));
        assert!(!is_row(&event));
        assert_eq!(row_to_directory_audit(&rows[0]), event);
    }

    #[test]
    fn saved_az_cli_rows_with_text_and_real_json_both_read() {
        let row: Map<String, Value> = serde_json::from_str(
            r#"{"TableName":"PrimaryResult","Id":"X","ActivityDateTime":"2026-06-01T10:00:00Z",
                "AADOperationType":"Add","InitiatedBy":"{\"app\":{\"displayName\":\"<b>x</b>\"}}",
                "TargetResources":[{"id":"t"}],"AdditionalDetails":"not json"}"#,
        )
        .unwrap();
        let e = row_to_directory_audit(&row);
        assert_eq!(e["initiatedBy"]["app"]["displayName"], "<b>x</b>");
        assert_eq!(e["targetResources"][0]["id"], "t");
        assert_eq!(e["additionalDetails"], "not json");
        assert_eq!(e["operationType"], "Add");
        assert!(e.get("TableName").is_none());
    }
}
