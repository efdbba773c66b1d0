//! The simulator binary over a real socket: a `+` in a path is a `+` (a key segment holding
//! one finds its collection), a body over the limit is answered 413 and its unread bytes are
//! never taken for the next request on the connection, a connection carries several
//! requests, the sample tenant is served page by page with absolute next links, and an
//! export in every shape the simulator reads (indented pages behind a byte order mark,
//! compact pages, archive envelopes, UTF-16, a top-level record) is served record for
//! record and byte for byte as the values written, in pages of any size and under filters;
//! a file changed while served is an error that names it.
//!
//! The HTTP client here is raw bytes on a `TcpStream`, so the test controls exactly what is
//! sent on one connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running simulator; killed when dropped.
struct Sim {
    child: Child,
    addr: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_govlake-graph-sim"))
        .arg("--from")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the simulator prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected simulator output: {line:?}"))
        .to_string();
    Sim { child, addr }
}

fn connect(sim: &Sim) -> TcpStream {
    let s = TcpStream::connect(&sim.addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// One response read off a connection: status, lower-cased headers, body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Reads one Content-Length-framed response; `None` when the connection ends first.
fn read_response(r: &mut BufReader<TcpStream>) -> Option<Response> {
    let mut status_line = String::new();
    if r.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some(Response {
        status,
        headers,
        body,
    })
}

fn get(path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: sim\r\n{auth}\r\n").into_bytes()
}

fn token_request() -> Vec<u8> {
    let form = "grant_type=client_credentials&client_id=test&client_secret=sim-secret&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default";
    format!(
        "POST /woodgrove/oauth2/v2.0/token HTTP/1.1\r\nHost: sim\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .into_bytes()
}

/// Sends requests one after another on one connection and reads their responses.
fn exchange(conn: &TcpStream, requests: &[Vec<u8>]) -> Vec<Response> {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn.try_clone().unwrap();
    requests
        .iter()
        .map(|req| {
            writer.write_all(req).unwrap();
            read_response(&mut reader).expect("a response")
        })
        .collect()
}

fn token(sim: &Sim) -> String {
    let r = exchange(&connect(sim), &[token_request()]).remove(0);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["access_token"].as_str().unwrap().to_string()
}

fn request_log(sim: &Sim) -> Vec<Value> {
    let r = exchange(&connect(sim), &[get("/_sim/log", None)]).remove(0);
    r.json().as_array().unwrap().clone()
}

/// An export holding one page of review decisions under an instance whose key has a `+`.
fn export_with_plus_key(dir: &Path) {
    let page = serde_json::json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/accessReviews/definitions('def+1')/instances('inst+2')/decisions",
        "value": [{"id": "decision-1", "decision": "Approve"}],
    });
    std::fs::write(dir.join("decisions.json"), page.to_string()).unwrap();
}

#[test]
fn a_plus_in_a_path_stays_a_plus() {
    let dir = tempfile::tempdir().unwrap();
    export_with_plus_key(dir.path());
    let sim = start(dir.path());
    let token = token(&sim);
    let conn = connect(&sim);
    let base = "/v1.0/identityGovernance/accessReviews/definitions('def+1')";
    let responses = exchange(
        &conn,
        &[
            get(
                &format!("{base}/instances('inst+2')/decisions"),
                Some(&token),
            ),
            // The same path with the `+` percent-encoded.
            get(
                &format!("{base}/instances('inst%2B2')/decisions"),
                Some(&token),
            ),
        ],
    );
    for r in &responses {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let page = r.json();
        let ids: Vec<&str> = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["decision-1"], "the `+` key finds its collection");
    }
    // A space is another key: Graph has the path, the export holds nothing there.
    let r = exchange(
        &conn,
        &[get(
            &format!("{base}/instances('inst%202')/decisions"),
            Some(&token),
        )],
    )
    .remove(0);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["value"], serde_json::json!([]));
}

#[test]
fn an_over_limit_body_is_refused_and_never_read_as_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    export_with_plus_key(dir.path());
    let sim = start(dir.path());
    let conn = connect(&sim);
    // A body one request longer than the limit: a server that reads only up to the limit
    // would take its tail for the next request on this connection.
    let smuggled = b"GET /v1.0/smuggled HTTP/1.1\r\nHost: sim\r\n\r\n";
    let limit = govlake_graph_sim::BODY_LIMIT;
    let mut request = format!(
        "POST /woodgrove/oauth2/v2.0/token HTTP/1.1\r\nHost: sim\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        limit + smuggled.len()
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'a', limit));
    request.extend_from_slice(smuggled);
    let mut writer = conn.try_clone().unwrap();
    // The server may stop reading once it has refused: a failed write is not the test's end.
    let _ = writer.write_all(&request);
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let first = read_response(&mut reader).expect("an answer to the large request");
    assert_eq!(
        first.status,
        413,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert!(
        first
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v == "close"),
        "the refused connection is closed: {:?}",
        first.headers
    );
    // Whatever follows on this connection is not an answer to the body's tail.
    let _ = writer.write_all(&get("/_sim/log", None));
    if let Some(next) = read_response(&mut reader) {
        assert!(
            next.status == 200 && next.json().is_array(),
            "the next answer is the log's, not the smuggled request's: {} {}",
            next.status,
            String::from_utf8_lossy(&next.body)
        );
    }
    let log = request_log(&sim);
    assert!(
        log.iter().all(|e| e["target"] != "/v1.0/smuggled"),
        "the body's tail was never served as a request: {log:?}"
    );
    assert!(
        log.iter()
            .any(|e| e["target"] == "/woodgrove/oauth2/v2.0/token" && e["status"] == 413),
        "the refusal is in the log: {log:?}"
    );
    // A body within the limit still gets its token, on a new connection.
    assert!(!token(&sim).is_empty());
}

#[test]
fn the_sample_tenant_is_served_page_by_page_on_one_connection() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-data");
    let sim = start(&sample);
    let conn = connect(&sim);
    let token = {
        let r = exchange(&conn, &[token_request()]).remove(0);
        assert_eq!(r.status, 200);
        r.json()["access_token"].as_str().unwrap().to_string()
    };
    let path = "/v1.0/identityGovernance/entitlementManagement/accessPackages";
    let mut next = Some(format!("{path}?$top=2"));
    let (mut pages, mut ids) = (0, vec![]);
    while let Some(target) = next.take() {
        let r = exchange(&conn, &[get(&target, Some(&token))]).remove(0);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let page = r.json();
        pages += 1;
        let value = page["value"].as_array().unwrap();
        assert!(value.len() <= 2);
        ids.extend(value.iter().map(|v| v["id"].as_str().unwrap().to_string()));
        next = page["@odata.nextLink"].as_str().map(|link| {
            let rest = link
                .strip_prefix("http://sim")
                .unwrap_or_else(|| panic!("an absolute link on the host called: {link}"));
            rest.to_string()
        });
    }
    // What the export holds, counted from its files independently of the simulator.
    let mut expected = std::collections::BTreeSet::new();
    for entry in walk(&sample) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let context = v["@odata.context"].as_str().unwrap_or_default();
        if context.ends_with("#identityGovernance/entitlementManagement/accessPackages")
            || context.contains("#identityGovernance/entitlementManagement/accessPackages(")
        {
            for r in v["value"].as_array().unwrap() {
                expected.insert(r["id"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(!expected.is_empty(), "the sample has access packages");
    let served: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(served.len(), ids.len(), "no record served twice");
    assert_eq!(served, expected);
    assert_eq!(pages, expected.len().div_ceil(2));
    // Without a token, Graph refuses.
    let r = exchange(&conn, &[get(path, None)]).remove(0);
    assert_eq!(r.status, 401);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    out
}

const GRAPH: &str = "https://graph.microsoft.com/v1.0/$metadata#";

/// An export in every shape the simulator indexes, and the records it must serve, from the
/// values written (not from the simulator): per Graph path, the records in the order served.
fn export_in_every_shape(dir: &Path) -> Vec<(&'static str, Vec<Value>)> {
    use serde_json::json;
    let audit = |id: &str, at: &str, extra: Value| {
        let mut v = json!({"id": id, "activityDateTime": at, "category": "EntitlementManagement"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    // Two events at one time whose ids share their first 16 bytes: the whole ids decide.
    let a2 = audit("IGA_same16prefix_2", "2026-03-01T10:00:02Z", json!({}));
    let a1 = audit(
        "IGA_same16prefix_1",
        "2026-03-01T10:00:02Z",
        json!({"n": 1.5}),
    );
    let b = audit(
        "b",
        "2026-03-01T10:00:01Z",
        json!({"targetResources": [{"id": "x"}]}),
    );
    // Indented, behind a byte order mark, with escapes compact JSON writes otherwise.
    let d_text = r#"{"id": "d", "activityDateTime": "2026-01-01T09:00:00Z", "displayName": "caf\u00e9 \/ x\ty"}"#;
    let d: Value = serde_json::from_str(d_text).unwrap();
    let page_1 = format!(
        "\u{feff}{{\n  \"@odata.context\": \"{GRAPH}auditLogs/directoryAudits\",\n  \"value\": [\n    {},\n    {},\n    {},\n    {d_text}\n  ]\n}}\n",
        serde_json::to_string_pretty(&a2).unwrap(),
        serde_json::to_string(&b).unwrap(),
        serde_json::to_string(&a1).unwrap(),
    );
    std::fs::create_dir_all(dir.join("auditLogs")).unwrap();
    std::fs::write(dir.join("auditLogs/directoryAudits-0001.json"), page_1).unwrap();
    // Compact, as Graph and `govlake generate` write.
    let e = audit("e", "2026-03-02T00:00:00Z", json!({"result": "success"}));
    let f = audit("f", "2025-12-31T23:59:59.5Z", json!({}));
    let page_2 =
        json!({"@odata.context": format!("{GRAPH}auditLogs/directoryAudits"), "value": [e, f]});
    std::fs::write(
        dir.join("auditLogs/directoryAudits-0002.json"),
        page_2.to_string(),
    )
    .unwrap();
    // An archive (JSON Lines of envelopes): `e` again, changed (the page's, read first, is
    // kept), and `g`.
    let g = audit("g", "2026-03-03T00:00:00Z", json!({"fromArchive": true}));
    let e_again = audit("e", "2026-03-02T00:00:00Z", json!({"fromArchive": true}));
    let envelope = |p: &Value| json!({"category": "AuditLogs", "properties": p, "time": "x"});
    let archive = dir.join("insights-logs-auditlogs/y=2026/m=03");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::write(
        archive.join("PT1H.json"),
        format!("{}\n{}\n", envelope(&e_again), envelope(&g)),
    )
    .unwrap();
    // UTF-16 (as Windows PowerShell writes): records kept as text.
    let assignments: Vec<Value> = (1..=5)
        .map(|i| {
            let state = if i % 2 == 0 { "expired" } else { "delivered" };
            json!({"id": format!("as{i}"), "state": state, "createdDateTime": format!("2026-0{i}-01T00:00:00Z")})
        })
        .collect();
    let page_3 = json!({"@odata.context": format!("{GRAPH}identityGovernance/entitlementManagement/assignments(target(),accessPackage())"), "value": assignments});
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in page_3.to_string().encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    std::fs::write(dir.join("assignments-ps.json"), utf16).unwrap();
    // One record as a top-level object naming its own context.
    let user = json!({"id": "u1", "displayName": "Ana"});
    let mut user_file = user.clone();
    user_file["@odata.context"] = json!(format!("{GRAPH}users/$entity"));
    std::fs::write(dir.join("user.json"), user_file.to_string()).unwrap();
    let mut audits = vec![a1, a2, b, d, e, f, g];
    audits.sort_by(|x, y| {
        let key = |v: &Value| {
            (
                v["activityDateTime"].as_str().unwrap().to_string(),
                v["id"].as_str().unwrap().to_string(),
            )
        };
        key(x).cmp(&key(y))
    });
    vec![
        ("auditLogs/directoryAudits", audits),
        (
            "identityGovernance/entitlementManagement/assignments",
            assignments,
        ),
        ("users", vec![user]),
    ]
}

/// Every page of a listing from `first`, following `@odata.nextLink`: (body, records).
fn listing(conn: &TcpStream, token: &str, first: &str) -> Vec<(String, Vec<Value>)> {
    let mut next = Some(first.to_string());
    let mut pages = vec![];
    while let Some(target) = next.take() {
        let r = exchange(conn, &[get(&target, Some(token))]).remove(0);
        assert_eq!(
            r.status,
            200,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let page = r.json();
        next = page["@odata.nextLink"].as_str().map(|link| {
            link.strip_prefix("http://sim")
                .unwrap_or_else(|| panic!("an absolute link on the host called: {link}"))
                .to_string()
        });
        let records = page["value"].as_array().unwrap().clone();
        pages.push((String::from_utf8(r.body).unwrap(), records));
    }
    pages
}

#[test]
fn every_page_holds_the_export_files_records_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let expected = export_in_every_shape(dir.path());
    let sim = start(dir.path());
    let token = token(&sim);
    let conn = connect(&sim);
    for (path, records) in &expected {
        for top in [1, 2, 999] {
            let pages = listing(&conn, &token, &format!("/v1.0/{path}?$top={top}"));
            assert_eq!(
                pages.len(),
                records.len().div_ceil(top).max(1),
                "{path} $top={top}"
            );
            for ((body, served), want) in pages.iter().zip(records.chunks(top)) {
                assert_eq!(served, want, "{path} $top={top}: the records, in order");
                // Byte for byte: each record as compact JSON (what Graph sends), in order.
                let texts: Vec<String> = want.iter().map(Value::to_string).collect();
                let value = format!("\"value\":[{}]}}", texts.join(","));
                assert!(
                    body.ends_with(&value),
                    "{path} $top={top}: {body}\nwanted {value}"
                );
            }
        }
    }
    // Filters page as they did: `state` and times, counted among the matching records, with
    // `$skiptoken` the number of matching records before the page.
    let assignments = &expected[1].1;
    let delivered: Vec<&Value> = assignments
        .iter()
        .filter(|a| a["state"] == "delivered")
        .collect();
    let filter = "$filter=state%20eq%20%27delivered%27";
    let base = "/v1.0/identityGovernance/entitlementManagement/assignments";
    let pages = listing(&conn, &token, &format!("{base}?$top=1&{filter}"));
    let served: Vec<&Value> = pages.iter().flat_map(|(_, r)| r).collect();
    assert_eq!(served, delivered);
    assert!(
        pages[0].0.contains("$skiptoken=1&$filter="),
        "{}",
        pages[0].0
    );
    // A page asked for directly (no page before it was answered) is the same page.
    let direct = listing(
        &conn,
        &token,
        &format!("{base}?$top=1&$skiptoken=2&{filter}"),
    );
    assert_eq!(direct.len(), 1);
    assert_eq!(&direct[0].1, &[delivered[2].clone()]);
    let audits = &expected[0].1;
    let march: Vec<&Value> = audits
        .iter()
        .filter(|a| a["activityDateTime"].as_str().unwrap() >= "2026-03-01T10:00:02Z")
        .collect();
    let pages = listing(
        &conn,
        &token,
        "/v1.0/auditLogs/directoryAudits?$top=2&$filter=activityDateTime%20ge%202026-03-01T10:00:02Z",
    );
    let served: Vec<&Value> = pages.iter().flat_map(|(_, r)| r).collect();
    assert_eq!(served, march);
}

#[test]
fn a_file_changed_while_served_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    export_in_every_shape(dir.path());
    let sim = start(dir.path());
    let token = token(&sim);
    let file = dir.path().join("auditLogs/directoryAudits-0002.json");
    std::fs::write(&file, "{}").unwrap();
    let r = exchange(
        &connect(&sim),
        &[get("/v1.0/auditLogs/directoryAudits", Some(&token))],
    )
    .remove(0);
    assert_eq!(r.status, 500);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("restart"),
        "{message}"
    );
}
