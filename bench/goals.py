"""The goals table of bench/RESULTS.md, computed from the figures bench/suite.sh leaves in
bench/results/ (one folder per size and layout, one `N-stage.json` per stage measured): one
row per goal of the scale issue, with the figures it rests on and **met**, **not met** or
**not measured**, decided here from those figures and never typed by hand.

Usage: goals.py RESULTS_DIR        prints the Markdown section on stdout

Folders: `100k`, `1m`, `10m` (the generated layout) and `LAYOUT-SIZE` for other export
layouts (`neutral-100k`: bench/relayout.py's neutral file names, pages of 1,000, audit pages
last). A goal whose figures are missing (stage not run, or failed) is not measured; a figure
taken in one run rather than as a median is marked so.
"""
import json
import pathlib
import sys

GIB = 1024
SIZES = [("100k", "100k"), ("1m", "1M"), ("10m", "10M")]


def load(root: pathlib.Path, folder: str, stage: str) -> dict | None:
    p = root / folder / f"{stage}.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        sys.exit(f"goals.py: {p} is not valid JSON ({e}); rerun that stage of bench/suite.sh")


def runs_note(fig: dict | None) -> str:
    return " (one run)" if fig and fig.get("runs", 0) == 1 else ""


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def ingest_ratio(fig: dict | None) -> float | None:
    if not fig:
        return None
    g, d = fig.get("govlake") or {}, fig.get("duckdb") or {}
    if not (g.get("s") and d.get("s") and g.get("records") and d.get("records")):
        return None
    return (g["records"] / g["s"]) / (d["records"] / d["s"])


def us_per_record(fig: dict | None) -> float | None:
    g = (fig or {}).get("govlake") or {}
    return g["s"] * 1e6 / g["records"] if g.get("s") and g.get("records") else None


def ingest_rows(root: pathlib.Path, layouts: list[str]) -> list[tuple[str, str, bool | None]]:
    rows = []
    for folder, label in SIZES:
        fig = load(root, folder, "1-ingest")
        r = ingest_ratio(fig)
        text = "—" if r is None else f"{fmt(r)}× DuckDB's records/s{runs_note(fig)}"
        rows.append((f"ingest throughput ≥ 2× DuckDB, {label}", text, None if r is None else r >= 2))
    measured = [(f, load(root, f, "1-ingest")) for f in layouts]
    measured = [(f, fig) for f, fig in measured if ingest_ratio(fig) is not None]
    if not measured:
        rows.append(("ingest throughput ≥ 2× DuckDB, second layout", "—", None))
    for folder, fig in measured:
        r = ingest_ratio(fig)
        rows.append(
            (
                f"ingest throughput ≥ 2× DuckDB, layout `{folder}`",
                f"{fmt(r)}×{runs_note(fig)}",
                r >= 2,
            )
        )
    costs = {label: us_per_record(load(root, folder, "1-ingest")) for folder, label in SIZES}
    text = ", ".join(f"{k} {fmt(v, 1)} µs" for k, v in costs.items() if v is not None) or "—"
    ok = None
    if all(v is not None for v in costs.values()):
        spread = max(costs.values()) / min(costs.values())
        text += f" per record: highest / lowest {fmt(spread)}"
        ok = spread <= 1.2
    rows.append(("per-record ingest cost flat within 20 %, 100k → 10M", text, ok))
    return rows


def memory_rows(root: pathlib.Path) -> list[tuple[str, str, bool | None]]:
    rows = []
    ing = (load(root, "10m", "1-ingest") or {}).get("govlake") or {}
    m = ing.get("mib")
    rows.append(
        ("peak RSS of ingest < 1 GiB, 10M", "—" if m is None else f"{m:,} MiB", None if m is None else m < GIB)
    )
    every = (load(root, "10m", "2-views") or {}).get("views", [])
    views = [v for v in every if v.get("govlake_mib") is not None]
    if views:
        top = max(views, key=lambda v: v["govlake_mib"])
        within = top["govlake_mib"] < 2 * GIB
        rows.append(
            (
                "peak RSS of each view < 2 GiB, 10M",
                f"highest `{top['name']}` {top['govlake_mib']:,} MiB ({len(views)} of {len(every)} views measured)",
                within if not within or len(views) == len(every) else None,
            )
        )
    else:
        rows.append(("peak RSS of each view < 2 GiB, 10M", "—", None))
    pack = load(root, "10m", "3-pack") or {}
    m = pack.get("mib")
    if pack.get("failed"):
        rows.append(("peak RSS of pack < 2 GiB, 10M", f"the pack failed: {pack['failed']}", False))
    else:
        rows.append(
            ("peak RSS of pack < 2 GiB, 10M", "—" if m is None else f"{m:,} MiB", None if m is None else m < 2 * GIB)
        )
    return rows


def view_rows(root: pathlib.Path) -> list[tuple[str, str, bool | None]]:
    rows = []
    for folder, label in SIZES[1:]:
        fig = load(root, folder, "2-views")
        every = (fig or {}).get("views", [])
        views = [v for v in every if v.get("govlake_s") and v.get("duckdb_s")]
        if not views:
            rows.append((f"each view ≤ DuckDB's time, {label}", "—", None))
            continue
        slow = sorted(
            (v for v in views if v["govlake_s"] > v["duckdb_s"]),
            key=lambda v: v["duckdb_s"] / v["govlake_s"],
        )
        missing = [v["name"] for v in every if v not in views]
        text = f"{len(views) - len(slow)} of {len(every)} views ≤ DuckDB"
        if slow:
            text += "; slower: " + ", ".join(
                f"`{v['name']}` {fmt(v['govlake_s'] / v['duckdb_s'])}×" for v in slow
            )
        if missing:
            text += "; failed (no figure): " + ", ".join(f"`{n}`" for n in missing)
        ok = False if slow else (None if missing else True)
        rows.append((f"each view ≤ DuckDB's time, {label}", text + runs_note(fig), ok))
    return rows


def pack_rows(pack: dict) -> list[tuple[str, str, bool | None]]:
    time_goal = "pack of one quarter < 5 min, 10M"
    disk_goal = "pack: disk written ≤ 2× the pack's size, 10M"
    if pack.get("failed"):
        why = f"the pack failed{runs_note(pack)}: {pack['failed']}"
        return [(time_goal, why, False), (disk_goal, "the pack failed", False)]
    s = pack.get("s")
    rows = [(time_goal, "—" if s is None else f"{fmt(s, 1)} s{runs_note(pack)}", None if s is None else s < 300)]
    w, size = pack.get("written_mib"), pack.get("pack_mib")
    if w is None or not size:
        rows.append((disk_goal, "—", None))
    else:
        rows.append((disk_goal, f"{w:,} MiB written for a {size:,} MiB pack ({fmt(w / size)}×)", w <= 2 * size))
    return rows


def pack_live_rows(root: pathlib.Path) -> list[tuple[str, str, bool | None]]:
    rows = pack_rows(load(root, "10m", "3-pack") or {})
    live = load(root, "10m", "4-live") or {}
    if live.get("records") and live.get("s"):
        rows.append(
            (
                "live: 10M through the simulator, records/s and RSS reported",
                f"{live['records'] / live['s']:,.0f} records/s, govlake {live.get('mib', '?'):,} MiB{runs_note(live)}",
                True,
            )
        )
    else:
        why = live.get("skipped") or "—"
        rows.append(("live: 10M through the simulator, records/s and RSS reported", why, None))
    return rows


def main() -> None:
    root = pathlib.Path(sys.argv[1])
    layouts = sorted(
        p.name for p in root.iterdir() if p.is_dir() and "-" in p.name and p.name.split("-", 1)[0] == "neutral"
    )
    rows = ingest_rows(root, layouts) + memory_rows(root) + view_rows(root) + pack_live_rows(root)
    met = sum(1 for *_, ok in rows if ok)
    unmeasured = sum(1 for *_, ok in rows if ok is None)
    print("## Goals")
    print()
    print(
        "Computed by bench/goals.py from the figures in bench/results/ (not typed by hand): "
        f"**{met} of {len(rows)} met**, {len(rows) - met - unmeasured} not met, {unmeasured} not measured. "
        "Each figure comes from its size's section below, with the date it was measured."
    )
    print()
    print("| goal | figures | state |")
    print("|---|---|---|")
    for goal, text, ok in rows:
        print(f"| {goal} | {text} | {verdict(ok)} |")
    print()


if __name__ == "__main__":
    main()
