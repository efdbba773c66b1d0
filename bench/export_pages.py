"""Reading Graph list pages for the benchmark scripts (bench/relayout.py,
bench/duckdb_ingest.py): a page's `@odata.context` read from its head, and the entity that
context names (its last path segment, without keys or `$expand` options), the way govlake
tells a file's entity when its name says nothing (`export-000001.json`).
"""
import json
import pathlib
import re

CONTEXT_HEAD = re.compile(rb'"@odata\.context"\s*:\s*"((?:[^"\\]|\\.)*)"')


def context_of(path: pathlib.Path, head_bytes: int = 8192) -> str | None:
    """The `@odata.context` found in the first `head_bytes` of the file (Graph and
    `govlake generate` write it first), or None."""
    with open(path, "rb") as f:
        m = CONTEXT_HEAD.search(f.read(head_bytes))
    return json.loads(b'"' + m.group(1) + b'"') if m else None


def entity_of_context(context: str) -> str:
    """The collection a context names: `…/$metadata#identityGovernance/accessReviews/
    definitions('d')/instances('i')/decisions` → `decisions`,
    `…#identityGovernance/entitlementManagement/assignments(accessPackage())` → `assignments`."""
    path = context.split("$metadata#", 1)[-1].split("?", 1)[0]
    segments, depth, start = [], 0, 0
    for i, ch in enumerate(path):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "/" and depth == 0:
            segments.append(path[start:i])
            start = i + 1
    segments.append(path[start:])
    named = [s for s in segments if s and not s.startswith("$")]
    return named[-1].split("(", 1)[0] if named else ""
