"""The memory budget: loaders are released least recently used first once the process passes the budget,
shared ones never. Fake loaders with given sizes and a simulated RSS stand in for real networks."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch

from backends import memory


@dataclass
class FakeModel:
    name: str
    size: int


class World:
    """A registry whose RSS is a base plus the sizes of the models its loaders hold, and a hand-set clock."""

    def __init__(self, budget: int | None, base: int = 10, protect_seconds: float = 0.0):
        self.now = 0.0
        self.base = base
        self.releases = 0
        self.registry = memory.MemoryRegistry(
            budget=budget, rss=self.rss, clock=lambda: self.now, release=self.release,
            estimate=lambda value: value.size, protect_seconds=protect_seconds)
        self.loaders: dict[str, callable] = {}

    def release(self) -> None:
        self.releases += 1

    def rss(self) -> int:
        held = sum(e.size * e.loader.cache_info().currsize for e in self.registry.entries.values())
        return self.base + held

    def loader(self, name: str, size: int, shared: bool = False):
        @self.registry.managed(name, shared=shared)
        @functools.lru_cache(maxsize=1)
        def load(variant: str = "a") -> FakeModel:
            return FakeModel(f"{name}/{variant}", size)

        self.loaders[name] = load
        return load

    def use(self, name: str, at: float, variant: str = "a") -> FakeModel:
        self.now = at
        return self.loaders[name](variant)

    def loaded(self) -> set[str]:
        return {e.name for e in self.registry.entries.values() if e.loader.cache_info().currsize}


def test_least_recently_used_goes_first_and_shared_models_stay():
    world = World(budget=100)
    world.loader("inversion", 30, shared=True)
    world.loader("falco", 40)
    world.loader("sd-turbo", 40)
    world.loader("clip", 15)
    world.use("inversion", at=0)
    world.use("falco", at=10)
    world.use("clip", at=15)
    assert world.loaded() == {"inversion", "falco", "clip"} and world.registry.evicted == []  # 95 <= 100
    world.use("inversion", at=18)  # the shared model is the most recent one now, falco the oldest
    world.use("sd-turbo", at=20)  # 135 > 100: falco (LRU, not shared) is enough
    assert world.registry.evicted == ["falco"]
    assert world.loaded() == {"inversion", "clip", "sd-turbo"} and world.rss() == 95
    assert world.releases == 1  # gc + malloc_trim after a release, not per model
    world.use("falco", at=30)  # its size is known: room is made before it loads (peak stays in budget)
    assert world.registry.evicted == ["falco", "clip", "sd-turbo"]
    assert world.loaded() == {"inversion", "falco"} and world.rss() <= 100
    entries = {e["name"]: e for e in world.registry.snapshot()}
    assert entries["falco"]["loads"] == 2 and entries["falco"]["evictions"] == 1
    assert entries["inversion"]["evictions"] == 0


def test_shared_models_are_kept_even_when_nothing_else_can_go():
    world = World(budget=50)
    world.loader("inversion", 45, shared=True)
    world.loader("falco", 40)
    world.use("inversion", at=0)
    world.use("falco", at=10)  # over budget, but falco is the one loading and inversion is shared
    assert world.registry.evicted == [] and world.loaded() == {"inversion", "falco"}
    world.use("inversion", at=20)  # a cache hit: no load, no release
    assert world.registry.evicted == []


def test_recently_used_models_are_protected():
    world = World(budget=100, protect_seconds=30)
    for name in ("a", "b", "c"):
        world.loader(name, 40)
    world.use("a", at=0)
    world.use("b", at=25)
    world.use("c", at=40)  # 130 > 100; a was used 40 s ago, b only 15 s ago
    assert world.registry.evicted == ["a"]
    world.use("a", at=45)  # b (20 s) and c (5 s) are both in use by recent requests: nothing goes
    assert world.registry.evicted == ["a"] and world.loaded() == {"a", "b", "c"}


def test_no_budget_keeps_everything():
    world = World(budget=None)
    for name in ("a", "b", "c"):
        world.loader(name, 10**12)
        world.use(name, at=1)
    assert world.loaded() == {"a", "b", "c"} and world.registry.evicted == [] and world.releases == 0


def test_a_new_key_of_a_loader_is_a_load_and_cache_clear_resets_the_entry():
    world = World(budget=100)
    load = world.loader("clip", 30)
    assert world.use("clip", at=0, variant="a").name == "clip/a"
    assert world.use("clip", at=1, variant="b").name == "clip/b"  # maxsize=1: a new load
    entry = load.memory_entry
    assert entry.loads == 2 and entry.loaded
    load.cache_clear()  # what tests and clear_caches() call
    assert not entry.loaded and load.cache_info().currsize == 0
    with pytest.raises(TypeError, match="lru_cache"):
        world.registry.managed("plain")(lambda: None)


def test_budget_from_the_environment(monkeypatch):
    monkeypatch.delenv(memory.BUDGET_ENV, raising=False)
    assert memory.budget_bytes_from_env() == 12 * memory.GB
    monkeypatch.setenv(memory.BUDGET_ENV, "6.5")
    assert memory.budget_bytes_from_env() == int(6.5 * memory.GB)
    for off in ("0", "off"):
        monkeypatch.setenv(memory.BUDGET_ENV, off)
        assert memory.budget_bytes_from_env() is None


def test_size_estimate_counts_parameters_and_buffers_once():
    conv = torch.nn.Conv2d(3, 8, 3)  # 8*3*3*3 + 8 float32
    norm = torch.nn.BatchNorm2d(8)  # weight, bias, running mean/var (float32) + num_batches_tracked (int64)
    expected = (8 * 27 + 8) * 4 + 4 * 8 * 4 + 8

    @dataclass
    class Models:
        conv: torch.nn.Module
        norm: torch.nn.Module
        centre: torch.Tensor

    value = (Models(conv, norm, torch.zeros(512)), conv, {"again": norm}, "label", True)
    assert memory.estimate_bytes(value) == expected + 512 * 4
    assert memory.current_rss() > 0


def test_the_backends_cached_loaders_are_registered():
    from backends import inversion
    from backends.anonymization import models as falco_models
    from backends.pos_subspaces import text_to_image

    names = {e["name"]: e for e in memory.REGISTRY.snapshot()}
    assert names[inversion._cached_models.memory_entry.name]["shared"] is True
    for loader in (falco_models._generator_and_arcface, falco_models._farl, text_to_image._t2i_model):
        assert names[loader.memory_entry.name]["shared"] is False
