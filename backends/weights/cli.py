"""Command line: ``python -m backends.weights list | fetch KEY... | fetch --tab TAB | fetch --all | verify |
tabs | preload``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import MissingWeightsError
from . import registry
from .download import fetch_many
from .registry import CLI, TABS, get_entry, keys_for_tab
from .report import preload_lines, summary_line, summary_rows, tab_rows, table_rows, verify

FETCH_COLUMNS = ["key", "status", "source used", "size", "sha256", "seconds", "reason"]


def _print_table(rows: list[dict[str, str]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=CLI, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="table of every checkpoint and whether it is present")
    fetch_cmd = sub.add_parser("fetch", help="download checkpoints (by key, for a tab, or all)")
    fetch_cmd.add_argument("keys", nargs="*", metavar="KEY")
    fetch_cmd.add_argument("--tab", choices=TABS, action="append", help="everything a tab needs (repeatable)")
    fetch_cmd.add_argument("--all", action="store_true", help="every checkpoint in the registry")
    fetch_cmd.add_argument("--verbose", action="store_true",
                           help="also print what each source answered for every file that failed")
    sub.add_parser("verify", help="check every checkpoint on disk against its sha256 (registry or lock file)")
    sub.add_parser("tabs", help="per tab: what is missing and the command that fetches it")
    sub.add_parser("preload", help="the README's preload_from_hub lines (every public hub file)")
    args = parser.parse_args(argv)

    if args.command == "list":
        _print_table(table_rows(), ["key", "tabs", "status", "size", "licence", "source"])
        return 0
    if args.command == "tabs":
        _print_table(tab_rows(), ["tab", "needs", "missing", "command", "host supplies"])
        return 0
    if args.command == "preload":
        print("preload_from_hub:")
        for line in preload_lines():
            print(f"  - {line}")
        return 0
    if args.command == "fetch":
        return _fetch_command(args, parser)
    results = verify()
    for key, verdict in results:
        print(f"{key}: {verdict}")
    if not results:
        print("no checkpoint files on disk")
    return 1 if any(v.startswith("CORRUPT") for _, v in results) else 0


def _fetch_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    keys = list(args.keys)
    for tab in args.tab or ():
        keys += keys_for_tab(tab)
    if args.all:
        keys += list(registry.REGISTRY)
    if not keys:
        parser.error("name checkpoint keys, --tab TAB or --all")
    keys = list(dict.fromkeys(keys))
    try:
        for key in keys:
            get_entry(key)
    except MissingWeightsError as exc:
        print(exc, file=sys.stderr)
        return 2
    quiet_libraries(not args.verbose)
    results = fetch_many(keys)
    print()
    _print_table(summary_rows(results), FETCH_COLUMNS)
    if args.verbose:
        for r in results:
            if r.status in {"failed", "host supplies", "offline"}:
                print(f"\n{r.key}: {r.message}", file=sys.stderr)
    print(summary_line(results))
    return 1 if any(r.status in {"failed", "offline"} for r in results) else 0


def quiet_libraries(quiet: bool = True) -> None:
    """Keep each failed source out of the terminal (the table has a reason per file; --verbose the rest).

    Without this, Face Lab's own warnings and huggingface_hub's retry notices fill the screen.
    """
    level = logging.ERROR if quiet else logging.WARNING
    for name in ("facelab.weights", "huggingface_hub"):
        logging.getLogger(name).setLevel(level)
