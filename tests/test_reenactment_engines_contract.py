"""Contract of the HyperReenact and GAN-directions engines through gradio_client, on stand-in weights.

Same endpoints as StyleMask (``/reenact_image``, ``/reenact_video``), only the engine argument changes;
plus the GAN-directions sliders (``/move_directions``). Real-size stand-ins: the first call builds the
hypernetwork (302.6 M values), so the module shares one app.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from backends.media import read_video, write_video
from tests.app_server import running_app

skimage_data = pytest.importorskip("skimage.data")
N_SLIDERS = 15


@pytest.fixture(scope="module")
def client():
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    with running_app(standin=True) as url:
        yield Client(url, verbose=False)
    from backends.reenactment.common import release_vox_models

    release_vox_models()  # the suite runs in one process: give the 2.5 GB back (kept from the backend test)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines")
    astronaut = skimage_data.astronaut()
    source, driving = folder / "source.png", folder / "driving.png"
    Image.fromarray(astronaut).save(source)
    Image.fromarray(np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])).save(driving)
    frames = [np.ascontiguousarray(astronaut[d : d + 448, d : d + 448]) for d in (0, 32)]
    video = write_video(frames, folder / "driving.mp4", fps=8)
    return {"source": source, "driving": driving, "video": video}


@pytest.mark.parametrize("engine", ["hyperreenact", "gan_directions"])
def test_reenact_image_per_engine(client, files, engine):
    result, slider, stages, png, details = client.predict(
        handle_file(files["source"]), handle_file(files["driving"]), engine, True, False,
        api_name="/reenact_image",
    )
    assert Image.open(result).size == (256, 256)  # the VoxCeleb generator's crop
    assert len(stages) == 5 and Image.open(png).format == "PNG"
    assert details["engine"] == engine and details["standin"] is True and details["truncation_psi"] == 0.7
    assert "Stand-in weights are in use: the images are not results of " in " ".join(details["notices"])
    if engine == "hyperreenact":
        assert details["mean_abs_weight_offset"] > 0
    else:
        assert set(details["delta_p"]) == {"yaw", "pitch", "roll", "jaw", *(f"exp{k}" for k in range(11))}


def test_reenact_video_gan_directions(client, files):
    comparison, result, downloads, stages, details = client.predict(
        handle_file(files["source"]), handle_file(files["video"]), "gan_directions", False, True,
        api_name="/reenact_video",
    )
    result_path = result["video"] if isinstance(result, dict) else result
    assert len(read_video(result_path)) == 2 and len(downloads) == 2 and len(stages) == 3
    assert details["engine"] == "gan_directions" and details["frames"] == 2 and details["truncation_psi"] == 1.0


def test_directions_sliders(client, files):
    zeros = [0.0] * N_SLIDERS
    still, details = client.predict(handle_file(files["source"]), True, False, *zeros, api_name="/move_directions")
    assert details["mode"] == "directions" and details["delta_p"] == [0.0] * N_SLIDERS
    turned, details = client.predict(
        handle_file(files["source"]), True, False, 25.0, *zeros[1:], api_name="/move_directions"
    )
    assert details["values"]["yaw"] == 25.0 and details["delta_p"][0] == pytest.approx(25.0 * 6.0 / 40.0)
    a = np.asarray(Image.open(still), np.int16)
    b = np.asarray(Image.open(turned), np.int16)
    assert a.shape == (256, 256, 3) and np.abs(a - b).max() > 0
    with pytest.raises(AppError, match="^Please upload a source photo"):
        client.predict(None, True, False, *zeros, api_name="/move_directions")
