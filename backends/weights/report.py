"""Tables for the Models tab and the CLI: status per key and per tab, preload lines, fetch summaries."""

from __future__ import annotations

from collections.abc import Sequence

from ..standin import standin_enabled
from . import registry
from .download import FetchResult, find_local
from .entry import Checkpoint
from .folders import repo_path, verify_folder
from .lock import _verified_sha, known_sha256, read_lock
from .registry import CLI, TABS, get_entry, human_size, keys_for_tab

# --------------------------------------------------------------------------- listings

def status_of(key: str) -> str:
    """``present``, ``stand-in`` or ``missing`` for the listing."""
    if find_local(key) is not None:
        return "present"
    if standin_enabled() and get_entry(key).standin:
        return "stand-in"
    return "missing"


def needed_here(key: str) -> bool:
    """Whether ``key`` would have to be fetched before its network can run (a stand-in needs no file)."""
    return status_of(key) == "missing"


def _source_column(entry: Checkpoint) -> str:
    text = "; ".join(s.describe() for s in entry.sources)
    return text + (" [host supplies]" if entry.host_supplied else "")


def table_rows() -> list[dict[str, str]]:
    """One row per checkpoint, for the CLI and the Models tab."""
    rows = []
    for entry in registry.REGISTRY.values():
        local = find_local(entry.key)
        size = local.stat().st_size if local else entry.size_bytes
        rows.append(
            {
                "key": entry.key,
                "file": entry.filename,
                "tabs": ", ".join(entry.tabs),
                "status": status_of(entry.key),
                "size": human_size(size),
                "licence": entry.licence,
                "source": _source_column(entry),
                "stand-in": "yes" if entry.standin else "no",
            }
        )
    return rows


def tab_rows() -> list[dict[str, str]]:
    """Per tab: what it needs, what is missing, and the exact command that fetches it."""
    rows = []
    for tab in TABS:
        keys = keys_for_tab(tab)
        absent = [k for k in keys if needed_here(k)]
        missing = [k for k in absent if not get_entry(k).optional]
        optional = [f"{k} (optional: {get_entry(k).optional})" for k in absent if get_entry(k).optional]
        host = [k for k in missing if not get_entry(k).downloadable()]
        rows.append(
            {
                "tab": tab,
                "needs": str(len(keys)),
                "missing": ", ".join(missing + optional) or "nothing",
                "command": f"{CLI} fetch --tab {tab}" if len(missing) > len(host) else "",
                "host supplies": ", ".join(host),
            }
        )
    return rows


def preload_lines() -> list[str]:
    """``preload_from_hub`` lines for the README front matter: every public hub file, grouped by repo."""
    by_repo: dict[tuple[str, str], list[str]] = {}
    for entry in registry.REGISTRY.values():
        for source in entry.sources:
            if source.hub_repo:
                paths = [repo_path(source, n) for n in entry.folder_files] if entry.is_folder else [source.hub_path]
                by_repo.setdefault((source.hub_repo, source.revision), []).extend(paths)
    lines = []
    for (repo, revision), paths in by_repo.items():
        files = ",".join(dict.fromkeys(p for p in paths if p))
        line = f"{repo} {files}" if files and all(paths) else repo  # an empty hub_path means the whole repo
        lines.append(line if revision == "main" else f"{line} {revision}")
    return lines


def summary_rows(results: Sequence[FetchResult]) -> list[dict[str, str]]:
    """One row per file: what happened, from where, and (when it is not here) why, in a few words."""
    return [
        {
            "key": r.key,
            "status": r.status,
            "source used": r.source or "-",
            "size": human_size(r.size) if r.size is not None else "-",
            "sha256": (r.sha256[:16] + "...") if r.sha256 else "-",
            "seconds": f"{r.seconds:.1f}",
            "reason": r.reason or "-",
        }
        for r in results
    ]


SUMMARY_ORDER = ("present", "downloaded", "failed", "offline", "host supplies", "missing")


def summary_line(results: Sequence[FetchResult]) -> str:
    """The last line of ``fetch``: how many files, and how many ended in each state (in a fixed order)."""
    counts = {status: sum(r.status == status for r in results) for status in SUMMARY_ORDER}
    states = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    noun = "file" if len(results) == 1 else "files"
    line = f"{len(results)} {noun}: {states}."
    if counts["failed"] or counts["host supplies"]:
        line += " Add --verbose for what each source answered."
    return line


def verify() -> list[tuple[str, str]]:
    """(key, verdict) for every file on disk, checked against the registry's sha256 or the lock file's."""
    results = []
    for entry in registry.REGISTRY.values():
        path = find_local(entry.key)
        if path is None:
            continue
        expected, origin = known_sha256(entry.key, path)
        problem = verify_folder(entry.key, path) if entry.is_folder and origin == "lock" else ""
        if expected is None:
            results.append((entry.key, "unchecked (no sha256 known)"))
        elif _verified_sha(path) != expected:
            results.append((entry.key, f"CORRUPT (differs from the {origin}'s sha256)"))
        elif problem:
            results.append((entry.key, f"CORRUPT ({problem})"))
        elif origin == "registry":
            results.append((entry.key, "ok (sha256 from the registry)"))
        else:
            recorded = read_lock()[entry.key].get("recorded", "?")
            files = len(read_lock()[entry.key].get("files") or {}) if entry.is_folder else 0
            what = f"sha256 of {files} files" if files else "sha256"
            results.append((entry.key, f"ok ({what} from the lock file, recorded {recorded})"))
    return results
