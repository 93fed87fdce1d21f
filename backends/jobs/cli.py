"""The command-line options every folder job shares (``--ray``, ``--workers``...), and its progress line."""

from __future__ import annotations

import argparse
import sys

from .recorder import MAX_RETRIES, Progress, RunOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("running at scale (resumable; see the README's Ray section)")
    group.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                       help="run on Ray: 'local' starts an instance on this machine, 'auto' joins the running "
                            "cluster, or give its address (default: in this process, without Ray)")
    group.add_argument("--workers", type=int, default=None,
                       help="Ray actors (default: one per GPU, else one); each loads the models once")
    group.add_argument("--cpus-per-worker", type=int, default=None,
                       help="threads of each CPU actor (default: the cluster's CPUs divided by --workers)")
    group.add_argument("--max-retries", type=int, default=MAX_RETRIES,
                       help=f"times an item is retried when its worker dies (default {MAX_RETRIES})")
    group.add_argument("--retry-failed", action="store_true", help="redo the items an earlier run recorded as failed")


def run_options(args: argparse.Namespace) -> RunOptions:
    if args.workers is not None and args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    return RunOptions(ray=args.ray, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                      max_retries=max(0, args.max_retries), retry_failed=args.retry_failed)


def print_progress(progress: Progress, key: str) -> None:
    """One progress line on stderr, rewritten in place."""
    print(f"\r{progress.line()}  {key[-40:]:<40}", end="", file=sys.stderr, flush=True)
