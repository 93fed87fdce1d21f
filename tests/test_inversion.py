"""The shared inversion step: caching, reconstruction, truncation choice; private result folders."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from backends import inversion
from backends.media import results_dir
from backends.standin import enable_standin


def test_lru_cache_evicts_the_least_recently_used():
    cache = inversion.LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2


def test_content_hash_tells_images_and_codes_apart():
    a = np.zeros((4, 4, 3), np.uint8)
    assert inversion.content_hash(a) == inversion.content_hash(a.copy())
    assert inversion.content_hash(a) != inversion.content_hash(a.reshape(4, 12))
    assert inversion.content_hash(torch.ones(2)) != inversion.content_hash(torch.zeros(2))


def test_psi_and_pixels():
    assert inversion.psi_for(True) == 0.7 and inversion.psi_for(False) == 1.0
    img = inversion.tensor_to_pil(torch.tensor([-2.0, -1.0, 0.0, 1.0]).reshape(1, 1, 2, 2).expand(1, 3, 2, 2))
    assert np.asarray(img)[..., 0].tolist() == [[0, 0], [128, 255]]


@pytest.fixture(scope="module")
def standin_models():
    enable_standin(True)
    inversion.clear_caches()
    yield inversion.get_models()
    enable_standin(False)
    inversion.clear_caches()


def test_photo_is_inverted_once_and_reconstructed(standin_models, shared_weights, monkeypatch):
    astronaut = pytest.importorskip("skimage.data").astronaut()
    calls = []
    original = inversion.encode
    monkeypatch.setattr(inversion, "encode", lambda m, x: calls.append(x.shape) or original(m, x))
    first = inversion.invert_photo(astronaut)
    again = inversion.invert_photo(astronaut.copy())
    assert again.wplus is first.wplus and again.aligned is first.aligned and calls == [(1, 3, 256, 256)]
    assert first.wplus.shape == (1, 18, 512)
    assert first.aligned.image.size == (1024, 1024)
    faithful = inversion.reconstruction(first, truncate=True)
    assert faithful.size == (1024, 1024)
    assert inversion.reconstruction(first, truncate=True) is faithful
    assert not np.array_equal(np.asarray(faithful), np.asarray(inversion.reconstruction(first, truncate=False)))


def test_cached_inversion_words_notices_for_each_caller(standin_models, shared_weights, monkeypatch):
    """A cache hit keeps the tensors but names the photo of this call (it used to repeat the first caller's)."""
    astronaut = pytest.importorskip("skimage.data").astronaut()
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    pair = np.concatenate([astronaut, np.pad(small, ((0, 256), (0, 0), (0, 0)))], axis=1)  # two faces
    calls = []
    original = inversion.encode
    monkeypatch.setattr(inversion, "encode", lambda m, x: calls.append(x.shape) or original(m, x))
    as_source = inversion.invert_photo(pair, what="source photo")
    as_driving = inversion.invert_photo(pair, what="driving photo")
    assert len(calls) == 1 and as_driving.wplus is as_source.wplus
    assert as_source.notices == ["2 faces were found in the source photo; the largest one was used."]
    assert as_driving.notices == ["2 faces were found in the driving photo; the largest one was used."]
    as_driving.notices.append("changed by a caller")
    assert inversion.invert_photo(pair, what="source photo").notices == as_source.notices


def test_results_dir_sweeps_old_requests(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_RESULTS_DIR", str(tmp_path))
    old = results_dir("reenactment")
    (old / "result.png").write_bytes(b"x")
    past = time.time() - 7 * 3600
    os.utime(old, (past, past))
    new = results_dir("reenactment")
    assert new.is_dir() and new.parent == tmp_path
    assert not old.exists()
