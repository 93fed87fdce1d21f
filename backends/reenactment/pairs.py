"""A list of (source photo, driving video or photo) pairs reenacted into a folder, resumably, locally or on Ray.

The list is a CSV file with two columns, ``source,driving`` (a header row with those names is
optional; ``#`` lines are skipped; relative paths are relative to the list's folder). Each pair goes
through the tab's own flow (:func:`.common.reenact_video`, or :func:`.common.reenact_images` for a
driving photo); the results land in the output folder as ``<source>__<driving>.mp4`` (plus
``_side_by_side.mp4``) or ``.png``, with ``report.csv`` and the manifest (:mod:`backends.jobs`).

CLI: ``python -m backends.reenactment --pairs LIST.csv --out FOLDER [--ray auto]`` (``__main__`` routes
``--pairs`` here; :func:`.common.main` keeps the one-pair command).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import FaceLabError, InputError, NoFaceError
from ..jobs import FolderJob, Item, JobReport, Outcome, ProgressFn, RunOptions, run_job
from ..jobs import cli as jobs_cli
from ..standin import enable_standin, standin_enabled
from . import common

REPORT_FIELDS = ("pair", "status", "output", "frames", "frames_without_face", "seconds", "message")


def read_pairs(path: str | Path) -> list[tuple[Path, Path]]:
    """(source, driving) paths from the list file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The pairs list {path} does not exist.")
    pairs = []
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for number, row in enumerate(csv.reader(lines), start=1):
        cells = [cell.strip() for cell in row]
        if number == 1 and [c.lower() for c in cells] == ["source", "driving"]:
            continue
        if len(cells) != 2 or not all(cells):
            raise InputError(f"{path.name}, row {number}: expected 'source,driving', got {','.join(cells)!r}.")
        pairs.append(tuple(p if p.is_absolute() else path.parent / p for p in map(Path, cells)))
    if not pairs:
        raise InputError(f"{path.name} lists no pairs.")
    return pairs


def pair_items(pairs: list[tuple[Path, Path]]) -> list[Item]:
    """One item per pair: key ``source -> driving``, payload (source, driving, output name)."""
    items, used = [], set()
    for source, driving in pairs:
        video = driving.suffix.lower() in common.VIDEO_SUFFIXES
        stem = f"{source.stem}__{driving.stem}"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        items.append(Item(f"{source} -> {driving}", (str(source), str(driving), name + (".mp4" if video else ".png"))))
    return items


class ReenactPairsJob(FolderJob):
    """One (source, driving) pair per item through the tab's photo or video flow."""

    name = "reenact_pairs"
    fields = REPORT_FIELDS
    key_field = "pair"

    def __init__(self, engine: str = "stylemask", truncate: bool = True, paste_back: bool = False, *,
                 preload: bool = False):
        self.engine, self.truncate, self.paste_back = engine, truncate, paste_back
        self.standin = standin_enabled()
        self.preload = preload

    @property
    def options(self) -> dict[str, Any]:
        return {"engine": self.engine, "truncate": self.truncate, "paste_back": self.paste_back,
                "standin": self.standin}

    def setup(self) -> None:
        if self.standin:
            enable_standin(True)
        if self.preload:  # a Ray worker: load the engine's networks before the first pair
            common.require_engine(self.engine).load()

    def failure_status(self, error: InputError) -> str:
        return "no_face" if isinstance(error, NoFaceError) else "failed"

    def run(self, state: None, item: Item, progress: Any = None) -> Outcome:
        source, driving, name = item.payload
        opts = {"truncate": self.truncate, "paste_back": self.paste_back, "engine": self.engine}
        row = self.blank_row(item.key)
        if name.endswith(".mp4"):
            with tempfile.TemporaryDirectory() as tmp:
                res = common.reenact_video(source, driving, progress=progress, out_dir=tmp, **opts)
                files = {name: Path(res.result_video).read_bytes(),
                         name[:-4] + "_side_by_side.mp4": Path(res.comparison_video).read_bytes()}
            row.update(frames=str(res.frames), frames_without_face=str(res.frames_without_face))
        else:
            res = common.reenact_images(source, driving, **opts)
            buffer = io.BytesIO()
            res.final.save(buffer, format="PNG")
            files = {name: buffer.getvalue()}
        row.update(status="ok", output=name)
        return Outcome(row, files=files, extra={"standin": bool(res.standin)})


def reenact_pairs(pairs_list: str | Path, out_dir: str | Path, run: RunOptions | None = None, *,
                  on_progress: ProgressFn | None = None, engine: str = "stylemask", truncate: bool = True,
                  paste_back: bool = False) -> JobReport:
    """Reenact every pair of the list into ``out_dir`` (resumable; see the module docstring)."""
    run = run or RunOptions()
    job = ReenactPairsJob(engine, truncate, paste_back, preload=run.ray is not None)
    return run_job(job, pair_items(read_pairs(pairs_list)), out_dir, run, on_progress=on_progress)


# --------------------------------------------------------------------------- every engine on every pair

COMPARE_FIELDS = ("pair", "source", "driving", "engine", "status", "reason", "result_seconds", "metrics_seconds",
                  *common.COMPARE_KEYS, "psnr", "lpips", "meaningful")


def compare_rows(number: int, source: Path, driving: Path, *, truncate: bool = True,
                 engines: Sequence[str] = common.ENGINES) -> list[dict[str, Any]]:
    """One CSV row per engine for one pair: its metrics and times, or why it did not run.

    A pair that cannot run (no face, unreadable file, a driving video) gives every available engine's row the
    status ``no_face`` or ``failed`` and the reason; an engine without its weights gives ``unavailable``.
    """
    base = {"pair": number, "source": str(source), "driving": str(driving)}
    if driving.suffix.lower() in common.VIDEO_SUFFIXES:
        return [base | {"engine": e, "status": "failed", "reason": "compare reads driving photos; this is a video"}
                for e in engines]
    try:
        runs = common.compare_engines(str(source), str(driving), truncate=truncate, engines=engines)
    except FaceLabError as exc:
        status = "no_face" if isinstance(exc, NoFaceError) else "failed"
        rows = []
        for engine in engines:  # an engine without its weights is still listed as such
            known = common.engine_status(engine)
            rows.append(base | {"engine": engine, "status": status if known.available else "unavailable",
                                "reason": str(exc) if known.available else known.reason})
        return rows
    rows = []
    for run in runs:
        row = base | {"engine": run.engine}
        if run.result is None:
            rows.append(row | {"status": "unavailable", "reason": run.reason})
            continue
        row |= {"status": "ok", "result_seconds": round(run.seconds, 3),
                "metrics_seconds": round(run.metrics_seconds, 3), "meaningful": not run.result.standin}
        row |= {key: run.value(key) for key in (*common.COMPARE_KEYS, "psnr", "lpips")}
        rows.append(row)
    return rows


def compare_pairs(pairs_list: str | Path, csv_path: str | Path, *, truncate: bool = True,
                  engines: Sequence[str] = common.ENGINES,
                  on_pair: common.ProgressFn | None = None) -> list[dict[str, Any]]:
    """Every engine on every pair of the list (``source,driving`` rows), one CSV row per pair and engine.

    The CSV is written as the pairs finish (a stopped run keeps its rows); returns every row.
    """
    pairs = read_pairs(pairs_list)
    out = Path(csv_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COMPARE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for number, (source, driving) in enumerate(pairs, start=1):
            if on_pair is not None:
                on_pair((number - 1) / len(pairs), f"pair {number} of {len(pairs)}: {source.name} -> {driving.name}")
            pair_rows = compare_rows(number, source, driving, truncate=truncate, engines=engines)
            writer.writerows(pair_rows)
            handle.flush()
            rows += pair_rows
    return rows


def compare_main(argv: Sequence[str]) -> int:
    """``python -m backends.reenactment compare --pairs LIST.csv --csv OUT.csv``: the CSV and a summary line."""
    from collections import Counter

    parser = argparse.ArgumentParser(prog="python -m backends.reenactment compare --pairs",
                                     description="Every engine on every 'source,driving' row of a CSV list: one "
                                                 "row per pair and engine (metrics, times, or why it did not run).")
    parser.add_argument("--pairs", required=True, metavar="LIST.csv", help="rows 'source,driving' (paths)")
    parser.add_argument("--csv", dest="csv_out", required=True, metavar="OUT.csv", help="the rows are written here")
    parser.add_argument("--no-truncation", action="store_true", help="skip the psi 0.7 truncation (higher fidelity)")
    parser.add_argument("--stand-in-weights", action="store_true",
                        help="deterministic random weights instead of checkpoints (outputs are not results)")
    args = parser.parse_args(argv)
    if args.stand_in_weights:
        enable_standin(True)

    def progress(_fraction: float, desc: str) -> None:
        print(desc, file=sys.stderr)

    try:
        rows = compare_pairs(args.pairs, args.csv_out, truncate=not args.no_truncation, on_pair=progress)
    except FaceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = Counter(row["status"] for row in rows)
    print(f"wrote {args.csv_out}: {len(rows)} rows ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})")
    if any(row.get("meaningful") is False for row in rows):
        print("note: stand-in weights: the numbers are not meaningful", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m backends.reenactment --pairs LIST.csv --out FOLDER``: the CLI's list mode."""
    parser = argparse.ArgumentParser(
        prog="python -m backends.reenactment --pairs",
        description="Reenact every 'source,driving' row of a CSV list into a folder (resumable; report.csv).",
    )
    parser.add_argument("--pairs", required=True, metavar="LIST.csv", help="rows 'source,driving' (paths)")
    parser.add_argument("--out", required=True, help="output folder (results, report.csv, manifest.jsonl)")
    parser.add_argument("--engine", default="stylemask", choices=common.ENGINES)
    parser.add_argument("--no-truncation", action="store_true", help="skip the psi 0.7 truncation (higher fidelity)")
    parser.add_argument("--paste-back", action="store_true", help="blend each result back into its source photo")
    parser.add_argument("--stand-in-weights", action="store_true",
                        help="deterministic random weights instead of checkpoints (outputs are not results)")
    jobs_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    run = jobs_cli.run_options(args)
    if args.stand_in_weights:
        enable_standin(True)
    try:
        report = reenact_pairs(args.pairs, args.out, run, on_progress=jobs_cli.print_progress, engine=args.engine,
                               truncate=not args.no_truncation, paste_back=args.paste_back)
    except FaceLabError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(report.table(), file=sys.stderr)
    print(f"{report.succeeded} reenacted, {report.failed} failed, {report.skipped} already done; "
          f"report: {report.report_path}")
    if any(entry.get("extra", {}).get("standin") for entry in report.entries):
        print("note: stand-in weights were used: the videos are not results.", file=sys.stderr)
    return 0
