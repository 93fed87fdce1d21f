"""The server's memory when one visitor uses every tab in turn, with the memory budget on and off.

Run from the repository root:
    .venv/bin/python bench/bench_memory.py [--budgets off,12,6] [--tabs reenactment,latent_paths,...]

For each budget, starts ``python app.py --stand-in-weights`` (real-size networks, deterministic random
weights) with ``FACELAB_MEMORY_BUDGET_GB`` set, sends each tab's main request through gradio_client
(StyleMask photo reenactment, a ContraCLIP edit, PoS text-to-image, a FALCO photo with a pool of 2 and
1 step, DFER-CLIP on the example video), and reads the server's resident memory after each request
and its peak (VmHWM). "settled" is the RSS a few seconds after the last request. A budget below what
the tabs need together shows the eviction at work: the models of the tabs used least recently are
released, the FFHQ generator + e4e (shared by three tabs) stay.

Prints one markdown table per budget and a summary table. Timings on a busy machine are inflated;
the memory figures are not.
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
ASSETS = REPO / "assets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(url: str, timeout: float = 300.0) -> None:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def requests(handle_file) -> dict[str, tuple[str, tuple]]:
    """Each tab's main request: (endpoint, arguments), with the UI's defaults where they matter."""
    sys.path.insert(0, str(REPO))
    from backends.pos_subspaces import DEFAULT_K, DEFAULT_LAM, default_model_id
    from demos.latent_paths import _path_labels

    astronaut, camera = handle_file(str(ASSETS / "astronaut.png")), handle_file(str(ASSETS / "camera.png"))
    return {
        "reenactment": ("/reenact_image", (astronaut, camera, "stylemask", True, False, False)),
        "latent_paths": ("/edit_latent_path", ("photo", astronaut, 0, "attributes", _path_labels("attributes")[0],
                                               3.0, 0.2, "stored", False)),
        "pos_subspaces": ("/pos_generate", ("a portrait of a woman in a sunlit garden, painted by Claude Monet",
                                            "artists", "", DEFAULT_LAM, DEFAULT_K, "tangent", 0, False, 1,
                                            default_model_id())),
        "anonymization": ("/anonymize", (astronaut, 0.0, 1, 0, 1, "official", False, 2)),
        "expression": ("/expression_video", (handle_file(str(ASSETS / "astronaut_pan.mp4")), "auto", "dfew", False)),
    }


def run_budget(budget: str, tabs: list[str]) -> tuple[list[tuple[str, str]], dict[str, float]]:
    from gradio_client import Client, handle_file

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", FACELAB_FALCO_POOL_SIZE="2",
               FACELAB_MEMORY_BUDGET_GB=budget)
    env.setdefault("FACELAB_WEIGHTS_DIR", str(REPO.parent / "shared" / "weights"))  # YuNet
    env.setdefault("FACELAB_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"facelab_bench_{port}"))
    log = open(Path(env["FACELAB_CACHE_DIR"] + ".log"), "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "app.py", "--stand-in-weights", "--port", str(port)], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    rows: list[tuple[str, str]] = []
    try:
        wait_for(f"http://127.0.0.1:{port}/")
        rows.append(("started", f"RSS {proc_mb(proc.pid, 'VmRSS'):.0f} MB"))
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        todo = requests(handle_file)
        for tab in tabs:
            endpoint, args = todo[tab]
            start = time.perf_counter()
            try:
                client.predict(*args, api_name=endpoint)
                outcome = "ok"
            except Exception as exc:  # a tab that fails is reported, the others still run
                outcome = f"failed: {str(exc).splitlines()[0][:80]}"
            seconds = time.perf_counter() - start
            rows.append((f"{tab} ({endpoint})", f"RSS {proc_mb(proc.pid, 'VmRSS'):.0f} MB, "
                                                f"peak so far {proc_mb(proc.pid, 'VmHWM'):.0f} MB, {seconds:.0f} s, "
                                                f"{outcome}"))
        time.sleep(5)
        summary = {"peak": proc_mb(proc.pid, "VmHWM"), "settled": proc_mb(proc.pid, "VmRSS")}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    released = [line.split("released ", 1)[1].strip() for line in Path(log.name).read_text().splitlines()
                if "memory budget" in line and "released" in line]
    rows.append(("released by the budget", "; ".join(released) if released else "nothing"))
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="off,6", help="FACELAB_MEMORY_BUDGET_GB values, comma-separated")
    parser.add_argument("--tabs", default="reenactment,latent_paths,pos_subspaces,anonymization,expression")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import print_table

    tabs = [t.strip() for t in args.tabs.split(",") if t.strip()]
    summaries = []
    for budget in [b.strip() for b in args.budgets.split(",") if b.strip()]:
        rows, summary = run_budget(budget, tabs)
        print(f"\n### FACELAB_MEMORY_BUDGET_GB={budget}\n")
        print_table(rows, first="step")
        summaries.append((f"budget {budget}", f"peak {summary['peak']:.0f} MB, settled {summary['settled']:.0f} MB"))
    print("\n### Summary (server process, stand-in weights of real size)\n")
    print_table([("CPU cores", str(os.cpu_count())), *summaries], first="run")


if __name__ == "__main__":
    main()
