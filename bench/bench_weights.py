"""Cost of accepting a first download: sha256 and the strict-loader structure check, per checkpoint.

Run from the repository root:  .venv/bin/python bench/bench_weights.py [KEY ...]

Each key runs in its own process (so its peak RSS is its own): the stand-in checkpoint is written at its
real size in the official structure, then hashed and checked exactly as a download without a published
sha256 is before it takes its final name. A last row fetches the StyleMask file end to end from a loopback
HTTP server (download into .part, check, lock file, rename). Stand-in weights cost what real ones do.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_KEYS = ["stylemask_1024", "ir_se50", "e4e_ffhq_encode", "stylegan2_ffhq1024", "clip_vit_b32", "dfer_clip_dfew"]


def measure_one(key: str) -> dict:
    import torch

    from backends import weights

    entry = weights.get_entry(key)
    obj = entry.standin_builder()()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / entry.filename
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(obj, str(path))
        else:
            torch.save(obj, path)
        del obj
        start = time.perf_counter()
        weights.sha256_of(path)
        sha_s = time.perf_counter() - start
        start = time.perf_counter()
        weights.check_structure(entry, path)
        check_s = time.perf_counter() - start
        size = path.stat().st_size
    return {"key": key, "size": size, "sha_s": sha_s, "check_s": check_s, "rss": peak_rss_mb()}


def loopback_fetch() -> dict:
    """stylemask_1024 through the whole download path from a loopback server."""
    import dataclasses
    import io

    import torch

    from backends import weights
    from backends.networks.stylemask import standin_checkpoint_mask_network

    buffer = io.BytesIO()
    torch.save(standin_checkpoint_mask_network(), buffer)
    body = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/mask.pt"
    entry = weights.get_entry("stylemask_1024")
    weights.REGISTRY[entry.key] = dataclasses.replace(entry, sources=(weights.Source(url=url),))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"FACELAB_CACHE_DIR": tmp, "HF_HUB_OFFLINE": "0", "FACELAB_WEIGHTS_DIR": ""})
        result = weights.fetch(entry.key, progress=False)
    httpd.shutdown()
    assert result.status == "downloaded", result.message
    return {"key": "stylemask_1024 fetched over loopback", "size": result.size, "sha_s": float("nan"),
            "check_s": result.seconds, "rss": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", nargs="*", default=DEFAULT_KEYS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--loopback", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one)))
        return
    if args.loopback:
        print(json.dumps(loopback_fetch()))
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    runs = [[sys.executable, __file__, "--one", key] for key in args.keys]
    runs.append([sys.executable, __file__, "--loopback"])
    rows = []
    for command in runs:
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print("| checkpoint | file size | sha256 | strict check (or whole fetch) | peak RSS |")
    print("|---|---|---|---|---|")
    for r in rows:
        sha = "-" if r["sha_s"] != r["sha_s"] else f"{r['sha_s']:.2f} s"
        print(f"| {r['key']} | {r['size'] / 2**20:.1f} MB | {sha} | {r['check_s']:.2f} s | {r['rss']:.0f} MB |")


if __name__ == "__main__":
    main()
