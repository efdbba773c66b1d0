"""Rewrites an export made by `govlake generate` into a second layout, the one real exports
take (bench/suite.sh, layout `neutral`): every Graph list page in one folder under a neutral
name, `export-000001.json`, `export-000002.json`, … (six digits, so name order is page
order up to a million pages), so the entity of a file is told only by the `@odata.context`
of its page; pages of `--page` records (1,000 by default, the page size of the export issue
18 describes); collections in a seeded random order. Each collection (one `@odata.context`:
a whole list, or one parent's list such as one review instance's decisions) keeps its records
in their order and Graph's page shape: an `@odata.nextLink` on every page but its last. Files that are not list pages (the
diagnostic-settings archives `PT1H.json`, the `_export.json` marker) are copied unchanged
under their own relative paths.

Usage: relayout.py SRC_TENANT OUT_DIR [--page N] [--seed N] [--order ORDER] [--window N]
  --order audit-last   collections shuffled, the audit log (`directoryAudits`) last (default)
          shuffled     collections shuffled, the audit log among them
          interleaved  pages of up to --window collections at a time interleaved at random
                       (each collection's pages stay in order, as one reader per list would
                       write them)

Streaming: one input page is parsed at a time (per open collection), and one output page is
held back until it is known whether another follows it, so memory stays at a few pages
whatever the tenant's size. Prints a JSON summary (files, pages, records per collection
count) on stdout. Exits 1, naming the file, if a list page has no `@odata.context`.
"""
import argparse
import json
import pathlib
import random
import re
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
import export_pages  # noqa: E402

AUDIT = "directoryAudits"


class LayoutError(Exception):
    """A file that cannot be rewritten; the message names it and says why."""


def page_context(path: pathlib.Path) -> str | None:
    """The `@odata.context` of a list page, read from its head (generated pages start with
    it), else from the whole page; None when the file is not a list page."""
    found = export_pages.context_of(path)
    if found is not None:
        return found
    with open(path, "rb") as f:
        if not f.read(64).lstrip().startswith(b"{"):
            return None
    try:
        page = json.loads(path.read_bytes())
    except ValueError:
        return None
    if isinstance(page, dict) and isinstance(page.get("value"), list):
        raise LayoutError(
            f"{path}: a list page without `@odata.context`; in the neutral layout the context is "
            "the only thing that tells the entity, so this file cannot be rewritten"
        )
    return None


def records(files: list[pathlib.Path]):
    """The records of one collection's pages, in order, one page parsed at a time."""
    for f in files:
        try:
            page = json.loads(f.read_bytes())
        except ValueError as e:
            raise LayoutError(f"{f}: not valid JSON ({e}); fix or remove the file") from e
        yield from page["value"]


def pages(context: str, files: list[pathlib.Path], size: int, serial: int):
    """One collection's output pages as (context, records, next_link or None); a page is held
    until it is known whether another follows."""
    base = context.split("$metadata#", 1)[-1]
    held: list | None = None
    buf: list = []
    n = 0
    for r in records(files):
        buf.append(r)
        if len(buf) == size:
            if held is not None:
                n += 1
                yield held, f"https://graph.microsoft.com/v1.0/{base}?$skiptoken=c{serial}p{n}"
            held, buf = buf, []
    if held is not None and buf:
        n += 1
        yield held, f"https://graph.microsoft.com/v1.0/{base}?$skiptoken=c{serial}p{n}"
        held = buf
    elif held is None:
        held = buf
    yield held, None


def write_page(path: pathlib.Path, context: str, recs: list, next_link: str | None) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"@odata.context":' + json.dumps(context) + ',"value":[\n')
        f.write(",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in recs))
        f.write("\n]")
        if next_link is not None:
            f.write(',"@odata.nextLink":' + json.dumps(next_link))
        f.write("}\n")


def collections(src: pathlib.Path, out: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    """List pages grouped by `@odata.context` (each group's files in name order, numbers
    compared as numbers: `directoryAudits-10000.json` after `-9999`); every other file is
    copied to OUT_DIR under its relative path."""
    groups: dict[str, list[pathlib.Path]] = {}
    natural = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]  # noqa: E731
    for f in sorted(src.rglob("*"), key=natural):
        rel = f.relative_to(src)
        if not f.is_file() or any(p.startswith(".") for p in rel.parts):
            continue
        ctx = page_context(f) if f.suffix.lower() == ".json" else None
        if ctx is None:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out / rel)
        else:
            groups.setdefault(ctx, []).append(f)
    return groups


def schedule(groups: dict[str, list[pathlib.Path]], args):
    """Output pages in the order asked for."""
    rng = random.Random(args.seed)
    order = sorted(groups)
    rng.shuffle(order)
    if args.order == "audit-last":
        order.sort(key=lambda c: export_pages.entity_of_context(c) == AUDIT)  # stable: shuffled, audit last
    streams = (
        pages(c, groups[c], args.page, serial) for serial, c in enumerate(order, start=1)
    )
    contexts = iter(order)
    if args.order != "interleaved":
        for c, s in zip(contexts, streams):
            for recs, link in s:
                yield c, recs, link
        return
    open_: list = []
    pending = zip(contexts, streams)
    while True:
        while len(open_) < args.window:
            nxt = next(pending, None)
            if nxt is None:
                break
            open_.append(nxt)
        if not open_:
            return
        i = rng.randrange(len(open_))
        c, s = open_[i]
        step = next(s, None)
        if step is None:
            open_.pop(i)
            continue
        yield c, step[0], step[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--page", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--order", choices=["audit-last", "shuffled", "interleaved"], default="audit-last")
    ap.add_argument("--window", type=int, default=8)
    args = ap.parse_args()
    if args.page < 1 or args.window < 1:
        ap.error("--page and --window must be at least 1")
    if not args.src.is_dir():
        ap.error(f"{args.src} is not a folder: give the folder `govlake generate --out` wrote")
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} is not empty: give a new folder (or remove it first)")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        groups = collections(args.src, args.out)
        n = total = 0
        for c, recs, link in schedule(groups, args):
            n += 1
            total += len(recs)
            write_page(args.out / f"export-{n:06d}.json", c, recs, link)
    except LayoutError as e:
        print(f"relayout: {e}", file=sys.stderr)
        return 1
    json.dump(
        {"collections": len(groups), "pages": n, "records": total, "order": args.order, "page": args.page},
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
