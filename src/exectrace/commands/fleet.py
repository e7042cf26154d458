"""Questions about a fleet's history, answered from the fleet index alone
(the summary rows `exectrace ship` writes beside each trace, as Parquet under
PREFIX/_index/date=<yyyy-mm-dd>/host=<host>/), with DuckDB embedded: no trace
file is downloaded.

  exectrace fleet top s3://my-traces/prod --since 1h --by blocking --host 'web-*'

top: the functions (by self time), blocking call sites, user regions,
asyncio tasks or GC generations (by total time) summed over every selected
window of every selected host, with the number of hosts and windows each was
seen in. Index objects are downloaded (in parallel) to the cache and queried
locally. The same layout answers the same query in Athena, Trino or Spark:
see docs/fleet.md. Needs the s3 extra: pip install 'exectrace[s3]'."""

from __future__ import annotations

import argparse
import json
from typing import Any

from exectrace.fleet import layout

HELP = "what a fleet's windows spent their time on, from the fleet index (fleet top)"

BY = ("function", "blocking", "region", "task", "gc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="fleet_command", metavar="QUESTION", required=True)
    top = sub.add_parser("top", help="the top functions, blocking call sites, regions, tasks or GC over a selection",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("url", metavar="s3://BUCKET/PREFIX", help="where exectrace ship ships to")
    top.add_argument("--by", choices=BY, default="function", help="what to rank (default: function)")
    top.add_argument("--top", type=int, default=20, metavar="N", help="rows (default 20)")
    top.add_argument("--json", action="store_true", help="print one JSON object")
    layout.add_selection_options(top)
    layout.add_store_options(top)


def _fmt_s(ns: Any) -> str:
    return "-" if ns is None else f"{ns / 1e9:.4f}"


def run(args: argparse.Namespace) -> int:
    from exectrace.fleet import remote

    result = remote.fleet_top(args)
    rows = result["rows"]
    for r in rows:
        for k in ("total_ns", "self_ns", "max_ns"):
            r[k.replace("_ns", "_s")] = None if r[k] is None else round(r[k] / 1e9, 9)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    hosts = result["hosts"]
    print(f"{result['source']}: {result['windows']} window(s) from {len(hosts)} host(s)"
          + (f" ({', '.join(hosts[:8])}{', ...' if len(hosts) > 8 else ''})" if hosts else "")
          + (f", since {result['since']}" if result["since"] else "")
          + (f", until {result['until']}" if result["until"] else ""))
    if not rows:
        print("no rows in the index for this selection")
        return 0
    by = args.by
    if by == "function":
        head = f"{'function':<48} {'calls':>10} {'inclusive s':>12} {'self s':>10} {'hosts':>6} {'windows':>8}"
        lines = [f"{_label(r['name'], r['source'], r['line']):<48} {r['count']:>10} {_fmt_s(r['total_ns']):>12} "
                 f"{_fmt_s(r['self_ns']):>10} {r['hosts']:>6} {r['windows']:>8}" for r in rows]
    else:
        if by == "blocking":
            labels = [f"{r['caller']} -> {r['name']}" for r in rows]
            first = "blocking (caller -> function)"
            extra = [r["blocking"] for r in rows]
        elif by == "task":
            labels = [f"{r['name']} ({r['source']})" for r in rows]
            first, extra = "asyncio task", ["" for _ in rows]
        else:
            labels = [str(r["name"]) for r in rows]
            first, extra = ("region" if by == "region" else "GC generation"), ["" for _ in rows]
        head = f"{first:<48} {'reason' if by == 'blocking' else '':<10} {'count':>10} {'total s':>10} {'max s':>9} {'hosts':>6} {'windows':>8}"
        lines = [f"{label[:48]:<48} {x:<10} {r['count']:>10} {_fmt_s(r['total_ns']):>10} {_fmt_s(r['max_ns']):>9} "
                 f"{r['hosts']:>6} {r['windows']:>8}" for label, x, r in zip(labels, extra, rows)]
    print(head)
    print("\n".join("  " + line for line in lines))
    return 0


def _label(name: str, source: str, line: Any) -> str:
    where = f" ({source.rsplit('/', 1)[-1]}:{line})" if source else ""
    return (name + where)[:48]
