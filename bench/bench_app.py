"""Cold start of ``python app.py`` to a served page, and the server's memory after real requests.

Run from the repository root: ``.venv/bin/python bench/bench_app.py [--stand-in-weights]``.
Starts the app as a subprocess on a free loopback port, times until the page answers, then
(with stand-in weights) sends one photo reenactment and one expression request through
gradio_client and reads the server's peak RSS (VmHWM). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(url: str, timeout: float = 180.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stand-in-weights", action="store_true", help="also time requests on stand-in weights")
    args = parser.parse_args()
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))
    cmd = [sys.executable, "app.py", "--port", str(port)] + (["--stand-in-weights"] if args.stand_in_weights else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url)
        rows.append(("cold start: `python app.py` to a served page", f"{time.perf_counter() - start:.1f} s"))
        rows.append(("server RSS, idle after start", f"{rss_mb(proc.pid, 'VmRSS'):.0f} MB"))
        if args.stand_in_weights:
            from gradio_client import Client, handle_file

            client = Client(url, verbose=False)
            photo, driving = REPO / "assets" / "astronaut.png", REPO / "assets" / "camera.png"
            t = time.perf_counter()
            client.predict(handle_file(photo), handle_file(driving), "stylemask", True, False, False,
                           api_name="/reenact_image")
            rows.append(("first photo reenactment (loads G + e4e + mask net)", f"{time.perf_counter() - t:.1f} s"))
            t = time.perf_counter()
            client.predict(handle_file(driving), handle_file(photo), "stylemask", True, False, False,
                           api_name="/reenact_image")
            rows.append(("second photo reenactment (both photos cached)", f"{time.perf_counter() - t:.1f} s"))
            t = time.perf_counter()
            client.predict(handle_file(photo), "dfer_clip", api_name="/expression_photo")
            rows.append(("first DFER-CLIP photo request (loads the model)", f"{time.perf_counter() - t:.1f} s"))
        rows.append(("server peak RSS (VmHWM)", f"{rss_mb(proc.pid, 'VmHWM'):.0f} MB"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
