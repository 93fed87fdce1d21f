"""A memory budget for the models the tabs keep loaded.

Every tab loads its networks lazily through an ``functools.lru_cache`` function and keeps them, so a
server that has served every tab holds every model at once (6.8 GB after three engines, 7.4 GB at the
PoS tab's peak). A CPU Space has 16 GB. The cached loaders therefore register here::

    @memory.managed("FALCO generator + ArcFace")
    @functools.lru_cache(maxsize=1)
    def _generator_and_arcface(...): ...

The registry records, per loader, when it was last used and an estimate of what it holds (the bytes of
every parameter and buffer of the modules in the returned value). After a load, when the process's
resident memory passes the budget (``FACELAB_MEMORY_BUDGET_GB``, default 12, sized for a 16 GB Space;
``0`` or ``off`` disables it), loaders are released least recently used first (``cache_clear``, then
garbage collection and :func:`backends.allocator.release_free_memory`) until their estimated sizes cover
the excess. Before a load whose size is known from an earlier one, room is made the same way, so the
peak stays near the budget rather than budget + model.

Never released: loaders marked ``shared=True`` (models several tabs use, such as the FFHQ generator and
e4e of :mod:`backends.inversion`), the loader being loaded, and loaders used within the last
:data:`PROTECT_SECONDS` (a request that loads two models must not lose the first while loading the
second). A released model that a running request still holds stays in memory until that request ends;
the next use simply loads it again.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import torch

log = logging.getLogger("facelab.memory")

BUDGET_ENV = "FACELAB_MEMORY_BUDGET_GB"
DEFAULT_BUDGET_GB = 12.0
PROTECT_SECONDS = 30.0
GB = 1024**3


def budget_bytes_from_env() -> int | None:
    """The budget in bytes from ``FACELAB_MEMORY_BUDGET_GB`` (default 12 GB); None when switched off."""
    raw = os.environ.get(BUDGET_ENV, "").strip().lower()
    if raw in {"0", "off", "none", "no", "false"}:
        return None
    try:
        gigabytes = float(raw) if raw else DEFAULT_BUDGET_GB
    except ValueError:
        log.warning("%s=%r is not a number of GB; using %g", BUDGET_ENV, raw, DEFAULT_BUDGET_GB)
        gigabytes = DEFAULT_BUDGET_GB
    return int(gigabytes * GB) if gigabytes > 0 else None


def current_rss() -> int:
    """Resident memory of this process in bytes (0 where /proc is absent)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def estimate_bytes(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes of the parameters and buffers of every module (and every tensor) reachable in ``value``.

    Walks tuples, lists, dicts, dataclasses and objects' attributes one level into plain containers;
    a module or tensor reached twice is counted once.
    """
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.nn.Module):
        total = 0
        for tensor in (*value.parameters(), *value.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
        # Tensors kept as plain attributes (w_avg, cached kernels) are not buffers.
        for item in vars(value).values():
            if isinstance(item, torch.Tensor):
                total += estimate_bytes(item, seen)
        return total
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return 0
    if isinstance(value, (tuple, list, set, frozenset)):
        return sum(estimate_bytes(v, seen) for v in value)
    if isinstance(value, dict):
        return sum(estimate_bytes(v, seen) for v in value.values())
    if is_dataclass(value) and not isinstance(value, type):
        return sum(estimate_bytes(getattr(value, f.name, None), seen) for f in fields(value))
    attrs = getattr(value, "__dict__", None)  # a pipeline object, a wrapper class
    if isinstance(attrs, dict):
        return sum(estimate_bytes(v, seen) for v in attrs.values())
    return 0


def _release_freed_memory() -> None:
    gc.collect()
    from .allocator import release_free_memory

    release_free_memory()


@dataclass
class Entry:
    """One registered loader and what the registry knows about it."""

    name: str
    loader: Callable[..., Any]  # the lru_cache function (has cache_clear)
    shared: bool
    size: int = 0  # estimated bytes of one load (an lru_cache of maxsize > 1 may hold several)
    last_used: float = float("-inf")
    loaded: bool = False
    loads: int = 0
    evictions: int = 0
    keys: set = field(default_factory=set)  # call keys loaded since the last clear


class MemoryRegistry:
    """Loaders, their last use and size, and the budget they are released against.

    ``rss``, ``clock`` and ``release`` are injectable so the policy can be tested with fake sizes.
    """

    def __init__(self, budget: int | None | Callable[[], int | None] = budget_bytes_from_env,
                 rss: Callable[[], int] = current_rss, clock: Callable[[], float] = time.monotonic,
                 release: Callable[[], None] = _release_freed_memory,
                 estimate: Callable[[Any], int] = estimate_bytes, protect_seconds: float = PROTECT_SECONDS):
        self._budget = budget
        self.rss = rss
        self.clock = clock
        self.release = release
        self.estimate = estimate
        self.protect_seconds = protect_seconds
        self.entries: dict[str, Entry] = {}
        self.evicted: list[str] = []  # names, in the order they were released (reports, tests)
        self._lock = threading.RLock()

    @property
    def budget(self) -> int | None:
        return self._budget() if callable(self._budget) else self._budget

    # ------------------------------------------------------------------ registration

    def managed(self, name: str, shared: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator for an ``lru_cache`` loader: record its use and size, keep the process in budget."""

        def wrap(loader: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(getattr(loader, "cache_clear", None)):
                raise TypeError(f"{name}: memory.managed wraps an lru_cache function")
            entry = Entry(name, loader, shared)
            with self._lock:
                self.entries[name] = entry

            @functools.wraps(loader)
            def call(*args: Any, **kwargs: Any) -> Any:
                key = (args, tuple(sorted(kwargs.items())))
                if key not in entry.keys and entry.size:
                    self.make_room(entry.size, keep=entry)  # a load of known size is coming
                misses = loader.cache_info().misses
                value = loader(*args, **kwargs)
                now = self.clock()
                with self._lock:
                    entry.last_used = now
                    if loader.cache_info().misses != misses:  # it was loaded now
                        entry.keys.add(key)
                        entry.size = self.estimate(value)
                        entry.loaded = True
                        entry.loads += 1
                        loaded = True
                    else:
                        loaded = False
                if loaded:
                    self.make_room(0, keep=entry)
                return value

            def cache_clear() -> None:
                loader.cache_clear()
                with self._lock:
                    entry.loaded = False
                    entry.keys.clear()

            call.cache_clear = cache_clear  # type: ignore[attr-defined]
            call.cache_info = loader.cache_info  # type: ignore[attr-defined]
            call.memory_entry = entry  # type: ignore[attr-defined]
            return call

        return wrap

    # ------------------------------------------------------------------ the policy

    def make_room(self, incoming: int = 0, keep: Entry | None = None) -> list[str]:
        """Release loaders, least recently used first, until RSS + ``incoming`` fits the budget.

        Returns the names released. Sizes are the estimates of the loads (a model a running request
        still holds is freed only when that request ends, so RSS is not re-read in between).
        """
        budget = self.budget
        if budget is None:
            return []
        with self._lock:
            excess = self.rss() + incoming - budget
            if excess <= 0:
                return []
            now = self.clock()
            candidates = sorted(
                (e for e in self.entries.values()
                 if e.loaded and not e.shared and e is not keep and now - e.last_used >= self.protect_seconds),
                key=lambda e: e.last_used,
            )
            released: list[str] = []
            for entry in candidates:
                if excess <= 0:
                    break
                held = entry.size * max(1, entry.loader.cache_info().currsize)
                entry.loader.cache_clear()
                entry.loaded = False
                entry.keys.clear()
                entry.evictions += 1
                excess -= held
                released.append(entry.name)
            self.evicted.extend(released)
        if released:
            self.release()
            log.info("memory budget %.1f GB passed: released %s", budget / GB, ", ".join(released))
        return released

    def snapshot(self) -> list[dict[str, Any]]:
        """What each loader holds now: name, shared, loaded, estimated MB held, loads, evictions."""
        with self._lock:
            return [{"name": e.name, "shared": e.shared, "loaded": e.loaded,
                     "mb": round(e.size * e.loader.cache_info().currsize / 2**20),
                     "loads": e.loads, "evictions": e.evictions} for e in self.entries.values()]


REGISTRY = MemoryRegistry()
managed = REGISTRY.managed
