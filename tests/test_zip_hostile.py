"""Zips that are not what they claim, through the zip reader of the anonymization tab.

Each archive is built byte by byte (``raw_zip``), so a member can be encrypted, use Deflate64, carry a
wrong CRC or a name longer than any file system allows, or declare sizes that lie. Every one must end as
a clear message for the whole zip or as a failed row for that image while the others are processed; the
lying bomb must be stopped by the bytes that actually come out, with memory bounded whatever the headers say.
FALCO itself is replaced by a stand-in that reads the image through the real input policy (milliseconds).
"""

from __future__ import annotations

import csv
import io
import struct
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from backends import anonymization as falco
from backends.anonymization import folder
from backends.errors import InputError, NoFaceError


@dataclass
class Member:
    """One entry as it is written: what the headers say can differ from the data."""

    name: str
    data: bytes  # the stored bytes (already compressed when method is 8)
    method: int = 0
    flags: int = 0
    crc: int | None = None  # None: the true CRC of ``plain``
    usize: int | None = None  # None: len(plain)
    plain: bytes | None = None  # the uncompressed content (defaults to data)


def raw_zip(members: list[Member]) -> bytes:
    """A zip archive written field by field (local headers, data, central directory, end record)."""
    out, central = io.BytesIO(), io.BytesIO()
    for m in members:
        plain = m.data if m.plain is None else m.plain
        crc = zlib.crc32(plain) if m.crc is None else m.crc
        usize = len(plain) if m.usize is None else m.usize
        name = m.name.encode("utf-8")
        flags = m.flags | 0x800  # names are UTF-8
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, m.method, 0, 0x21, crc, len(m.data), usize,
                              len(name), 0))
        out.write(name + m.data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, m.method, 0, 0x21, crc,
                                  len(m.data), usize, len(name), 0, 0, 0, 0, 0, offset))
        central.write(name)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central.getvalue()),
                          start, 0))
    return out.getvalue()


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def zeros_deflated(megabytes: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = bytes(2**20)
    return b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()


@pytest.fixture(scope="module")
def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 120, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def write(tmp_path: Path, members: list[Member], name: str = "upload.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(raw_zip(members))
    return path


@dataclass
class FakeResult:
    pasted: Image.Image
    anonymized: Image.Image
    cos_final: float = 0.0
    attr_similarity: float = 1.0
    standin: bool = True


@pytest.fixture
def fake_falco(monkeypatch):
    """FALCO replaced by the real input policy and a copy: a failed row can only come from the zip reader."""
    from backends.media import load_image

    seen: list[str] = []

    def run(path, **options):
        seen.append(Path(path).name)
        image = load_image(path).image
        if Path(path).stem.endswith("wall"):
            raise NoFaceError("No face was found in the photo.")
        return FakeResult(image, image)

    monkeypatch.setattr(folder, "anonymize_photo", run)
    return seen


def rows_of(report) -> dict[str, tuple[str, str]]:
    return {row["file"]: (row["status"], row["message"]) for row in report.rows}


# --------------------------------------------------------------------------- one member at a time

ENCRYPTED = "The image is encrypted (password-protected); Face Lab cannot open it. Add the photo to the zip " \
            "without a password."
DEFLATE64 = "The image uses Deflate64 compression, which Face Lab does not read. Make the zip again with the " \
            "standard (Deflate) compression."
BAD_CRC = "The image is damaged: its checksum does not match its data."


def test_each_unreadable_member_is_a_failed_row_and_the_rest_is_processed(tmp_path, png, fake_falco):
    long_name = "ä" * 200 + ".png"  # 400 bytes of UTF-8: over the 255 a file name may have
    archive = write(tmp_path, [
        Member("good.png", png),
        Member("locked.png", png, flags=0x1),
        Member("d64.png", deflate(png), method=9, plain=png),
        Member("bz.png", b"BZh9", method=12, plain=png),
        Member(long_name, deflate(png), method=8, plain=png),
        Member("crc.png", png, crc=zlib.crc32(png) ^ 1),
        Member("short.png", deflate(png)[:40], method=8, plain=png),
    ])
    bundle, report = falco.anonymize_zip(archive, tmp_path / "work")
    long_local = "004_" + "ä" * 50 + ".png"  # 100 bytes of the member's own name are kept
    assert rows_of(report) == {
        "000_good.png": ("ok", ""),
        "001_locked.png": ("failed", ENCRYPTED),
        "002_d64.png": ("failed", DEFLATE64),
        "003_bz.png": ("failed", "The image uses bzip2 compression, which Face Lab does not read. Make the zip "
                                 "again with the standard (Deflate) compression."),
        long_local: ("ok", ""),
        "005_crc.png": ("failed", BAD_CRC),
        "006_short.png": ("failed", "The image is damaged: its data ends early (a truncated upload?)."),
    }
    assert fake_falco == ["000_good.png", long_local]  # only the readable images reach FALCO
    assert report.succeeded == 2 and report.failed == 5
    with open(report.report_path, newline="") as fh:  # the CSV says the same as the table
        assert [row["file"] for row in csv.DictReader(fh)] == sorted(rows_of(report))
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(zf.namelist()) == sorted(["report.csv", "000_good.png", "000_good_face.png",
                                                long_local, long_local.replace(".png", "_face.png")])
    assert sorted(p.name for p in (tmp_path / "work" / "in").iterdir()) == ["000_good.png", long_local]


def test_a_zip_whose_every_image_fails_gives_a_report_not_an_error(tmp_path, png, fake_falco):
    archive = write(tmp_path, [Member("locked.png", png, flags=0x1), Member("d64.jpg", png, method=9)])
    bundle, report = falco.anonymize_zip(archive, tmp_path / "work")
    assert rows_of(report) == {"000_locked.png": ("failed", ENCRYPTED), "001_d64.jpg": ("failed", DEFLATE64)}
    assert fake_falco == []
    with zipfile.ZipFile(bundle) as zf:
        assert zf.namelist() == ["report.csv"]


def test_a_bomb_whose_headers_lie_is_stopped_by_what_comes_out(tmp_path, png, fake_falco):
    """128 MB of zeros declaring 1 KB: stopped after the first step, in a few MB of memory."""
    bomb = zeros_deflated(128)
    archive = write(tmp_path, [Member("good.png", png),
                               Member("bomb.png", bomb, method=8, usize=1024, crc=0, plain=b"")])
    tracemalloc.start()
    try:
        contents = folder.extract_zip(archive, tmp_path / "in")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert contents.extracted == ["000_good.png"]
    assert contents.failed == {"001_bomb.png": "The image holds more data than the 1,024 bytes its header "
                                               "declares; it was stopped there (a zip built to expand without "
                                               "limit)."}
    assert peak < 8 * 2**20, f"extracting used {peak / 2**20:.0f} MB of Python memory"
    assert contents.bytes_read == len(png)
    assert not (tmp_path / "in" / "001_bomb.png").exists()


def test_a_member_shorter_than_declared_is_damaged(tmp_path, png):
    archive = write(tmp_path, [Member("a.png", deflate(png), method=8, plain=png, usize=len(png) + 10)])
    contents = folder.extract_zip(archive, tmp_path / "in")
    assert contents.failed == {"000_a.png": f"The image is damaged: it holds {len(png):,} bytes, its header "
                                            f"declares {len(png) + 10:,} bytes."}


def test_declared_sizes_over_the_cap_are_refused_before_reading(tmp_path, png):
    archive = write(tmp_path, [Member("big.png", png, usize=3 * 2**30)])
    with pytest.raises(InputError, match=r"^The zip's images add up to 3072\.0 MB uncompressed; the limit is 50 MB\.$"):
        folder.extract_zip(archive, tmp_path / "in")
    assert not (tmp_path / "in").exists()


def test_garbage_and_corrupt_directories_are_one_clear_message(tmp_path, png):
    good = raw_zip([Member("a.png", png)])
    cases = {
        "empty.zip": b"",
        "garbage.zip": b"PK\x03\x04" + b"\x00" * 100,
        "half.zip": good[: len(good) // 2],
        "bad_utf8.zip": raw_zip([Member("a.png", png)]).replace(b"a.png", b"\xff.png"),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=r"^The upload is not a readable zip archive\.$"):
            folder.extract_zip(tmp_path / name, tmp_path / "out")


def test_a_directory_of_many_entries_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    """The count comes from the end record: zipfile never parses 10 001 entries (it is not even called)."""
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(folder.MAX_ZIP_ENTRIES + 1):
            zf.writestr(f"e{i}.txt", b"")
    assert folder.listed_entries(path) == folder.MAX_ZIP_ENTRIES + 1

    def parse(*args, **kwargs):
        raise AssertionError("the directory was parsed")

    monkeypatch.setattr(folder.zipfile, "ZipFile", parse)
    with pytest.raises(InputError) as caught:
        folder.extract_zip(path, tmp_path / "out")
    assert str(caught.value) == "The zip lists 10,001 entries; at most 10,000 are read (and 20 images processed) " \
                                "per upload."


def test_the_entry_count_is_read_from_plain_zip64_and_commented_zips(tmp_path, png):
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("a.png", png)
        zf.writestr("b/c.png", png)
        zf.comment = b"x" * 1000
    assert folder.listed_entries(plain) == 2
    # zip64 end records (forced with 65 535 entries, where the 2-byte count overflows)
    big = tmp_path / "zip64.zip"
    with zipfile.ZipFile(big, "w") as zf:
        for i in range(65_536):
            zf.writestr(f"{i}", b"")
    assert folder.listed_entries(big) == 65_536
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"hello")
    assert folder.listed_entries(not_zip) is None


def test_a_member_whose_data_is_elsewhere_is_damaged(tmp_path, png):
    data = bytearray(raw_zip([Member("a.png", png), Member("b.png", png)]))
    second = data.index(b"PK\x03\x04", 4)
    data[second:second + 4] = b"XXXX"  # the directory points at a local header that is not one
    (tmp_path / "moved.zip").write_bytes(bytes(data))
    contents = folder.extract_zip(tmp_path / "moved.zip", tmp_path / "in")
    assert contents.extracted == ["000_a.png"]
    assert contents.failed == {"001_b.png": "The image is damaged: its data is not where the zip's directory says."}


def test_corrupt_deflate_data_is_damaged(tmp_path, png):
    archive = write(tmp_path, [Member("a.png", b"\xff" * 64, method=8, plain=png)])
    contents = folder.extract_zip(archive, tmp_path / "in")
    assert contents.failed == {"000_a.png": "The image is damaged: its compressed data cannot be read."}


def test_names_stay_flat_short_and_inside_the_job_folder(tmp_path, png):
    names = ["../../evil.png", "..\\..\\win.png", "/abs/root.png", "dir/sub/x.png", "new\nline.png",
             "a" * 1000 + ".JPG"]
    archive = write(tmp_path, [Member(n, png) for n in names])
    dest = tmp_path / "job" / "in"
    contents = folder.extract_zip(archive, dest)
    assert contents.failed == {}
    assert contents.extracted == ["000_evil.png", "001_win.png", "002_root.png", "003_x.png", "004_new_line.png",
                                  "005_" + "a" * 100 + ".jpg"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.*") if p.suffix != ".zip") == sorted(
        Path("job/in") / n for n in contents.extracted)


def test_a_zip_made_by_zipfile_still_reads(tmp_path, png):
    """The reader is held to the format as Python and common tools write it (stored, deflate, data descriptors)."""
    path = tmp_path / "normal.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("stored.png", png, compress_type=zipfile.ZIP_STORED)
        zf.writestr("deflated.png", png, compress_type=zipfile.ZIP_DEFLATED)
        with zf.open("streamed.png", "w") as fh:  # written with a data descriptor after the data
            fh.write(png)
    big = bytes(range(256)) * 20_000  # over one decompression step: the chunked path is taken
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bmp", big)
    contents = folder.extract_zip(path, tmp_path / "in")
    assert contents.failed == {}
    assert contents.extracted == ["000_stored.png", "001_deflated.png", "002_streamed.png", "003_big.bmp"]
    assert (tmp_path / "in" / "003_big.bmp").read_bytes() == big
    assert all((tmp_path / "in" / n).read_bytes() == png for n in contents.extracted[:3])
    assert contents.bytes_read == 3 * len(png) + len(big)


def test_random_damage_is_always_a_message_or_a_row(tmp_path, png):
    """400 seeded mutations of a small valid zip (bytes flipped, runs zeroed, cut short): extract_zip
    either refuses the whole zip with an InputError or lists each member as extracted or failed."""
    import random

    good = raw_zip([Member("a.png", deflate(png), method=8, plain=png), Member("b.png", png),
                    Member("c.png", deflate(png * 3), method=8, plain=png * 3)])
    rng = random.Random(0)
    outcomes = {"refused": 0, "rows": 0}
    for trial in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            kind, at = rng.randrange(3), rng.randrange(len(data))
            if kind == 0:
                data[at] = rng.randrange(256)
            elif kind == 1:
                data[at:at + rng.randint(1, 16)] = bytes(min(16, len(data) - at))
            else:
                del data[at:]
                if not data:
                    break
        path = tmp_path / f"{trial}.zip"
        path.write_bytes(bytes(data))
        dest = tmp_path / f"out{trial}"
        try:
            contents = folder.extract_zip(path, dest)
        except InputError:
            outcomes["refused"] += 1
            continue
        outcomes["rows"] += 1
        assert set(contents.extracted) == {p.name for p in dest.iterdir()}  # a failed member leaves no file
        assert not set(contents.extracted) & set(contents.failed)
        assert all(message.startswith("The image ") for message in contents.failed.values())
    assert outcomes["refused"] > 50 and outcomes["rows"] > 50, outcomes


# --------------------------------------------------------------------------- through the API

OPTIONS = (0.0, 1, 0, 1, "official", False)  # margin, steps, seed, candidates, variant, already aligned
RAW_OPTIONS = (*OPTIONS, 64)  # raw requests name every input: the fake pool size too (a CPU choice)


@pytest.fixture(scope="module")
def wall() -> bytes:
    """A photo without a face: it goes through the real detector (YuNet) and fails there, in milliseconds."""
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 130, 140)).save(buffer, "PNG")
    return buffer.getvalue()


def hostile_zip(wall: bytes) -> bytes:
    return raw_zip([
        Member("wall.png", wall),
        Member("locked.png", wall, flags=0x1),
        Member("d64.png", deflate(wall), method=9, plain=wall),
        Member("w" * 400 + "_wall.png", deflate(wall), method=8, plain=wall),
        Member("crc.png", wall, crc=zlib.crc32(wall) ^ 1),
        Member("bomb.png", zeros_deflated(64), method=8, usize=1024, crc=0, plain=b""),
    ])


HOSTILE_ROWS = {
    "000_wall.png": "no_face", "001_locked.png": "failed", "002_d64.png": "failed",
    "003_" + "w" * 100 + ".png": "no_face", "004_crc.png": "failed", "005_bomb.png": "failed",
}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on stand-in weights with its own gradio cache and results folder, both watched by the tests."""
    import os

    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    from tests.app_server import running_app

    root = tmp_path_factory.mktemp("zip_api")
    env = {"GRADIO_TEMP_DIR": str(root / "gradio"), "FACELAB_RESULTS_DIR": str(root / "results")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with running_app(standin=True) as url:
            yield url, root / "gradio", root / "results"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _call(http, api_name: str, data: list) -> tuple[str, object]:
    import json

    posted = http.post(f"gradio_api/call/{api_name}", json={"data": data})
    assert posted.status_code == 200, posted.text[:200]
    stream = http.get(f"gradio_api/call/{api_name}/{posted.json()['event_id']}").text
    event = [line[7:] for line in stream.splitlines() if line.startswith("event: ")][-1]
    payload = stream.rsplit("data: ", 1)[1].strip()
    return event, json.loads(payload)


def _upload(http, name: str, data: bytes) -> dict:
    """What a raw client does with a file: the upload route, then a FileData reference to what it answered."""
    answer = http.post("gradio_api/upload", files={"files": (name, data, "application/zip")})
    assert answer.status_code == 200, answer.text[:200]
    return {"path": answer.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def test_hostile_zip_through_gradio_client_is_a_report(app_url, wall, tmp_path):
    from gradio_client import Client, handle_file

    url, cache, results = app_url
    archive = tmp_path / "hostile.zip"
    archive.write_bytes(hostile_zip(wall))
    bundle, table, summary = Client(url, verbose=False).predict(handle_file(archive), *OPTIONS,
                                                                api_name="/anonymize_zip")
    rows = {row[0]: (row[1], row[-1]) for row in table["data"]}
    assert {name: status for name, (status, _) in rows.items()} == HOSTILE_ROWS
    assert rows["001_locked.png"][1] == ENCRYPTED and rows["002_d64.png"][1] == DEFLATE64
    assert rows["004_crc.png"][1] == BAD_CRC
    assert rows["005_bomb.png"][1].startswith("The image holds more data than the 1,024 bytes its header declares")
    assert summary["anonymised"] == 0 and summary["failed"] == 6
    with zipfile.ZipFile(bundle) as zf:
        assert zf.namelist() == ["report.csv"]


def test_whole_zip_problems_over_raw_http(app_url, png):
    import httpx

    cases = [
        (b"PK\x03\x04 not a zip", "The upload is not a readable zip archive."),
        (raw_zip([Member("big.png", png, usize=3 * 2**30)]),
         "The zip's images add up to 3072.0 MB uncompressed; the limit is 50 MB."),
        (raw_zip([Member(f"{i}.png", png) for i in range(21)]),
         "The zip holds 21 images; at most 20 are processed per upload."),
        (raw_zip([Member("notes.txt", b"hello")]), "The zip holds no images (jpg, png, webp, bmp, tif)."),
    ]
    with httpx.Client(base_url=app_url[0], timeout=120) as http:
        for data, message in cases:
            assert _call(http, "anonymize_zip", [_upload(http, "x.zip", data), *RAW_OPTIONS]) == ("error", {
                "error": message, "duration": 10, "visible": True, "title": "Error"})
        event, answer = _call(http, "anonymize_zip", [_upload(http, "notes.txt", b"hello"), *RAW_OPTIONS])
        assert (event, answer["error"]) == ("error", "Zip of photos (at most 20 images, 50 MB) must be a file of "
                                                     "type .zip.")
        event, (_, table, summary) = _call(http, "anonymize_zip", [
            _upload(http, "bomb.zip", raw_zip([Member("bomb.png", zeros_deflated(64), method=8, usize=1024, crc=0,
                                                      plain=b"")])), *RAW_OPTIONS])
        assert event == "complete" and summary["failed"] == 1 and table["data"][0][:2] == ["000_bomb.png", "failed"]
        assert _call(http, "models", [])[0] == "complete"  # and the server still answers


def test_zip_requests_leave_no_stray_file_and_keep_outputs_private(app_url, wall, tmp_path):
    """gradio's File made an empty temp file in its cache root per request; outputs were 0644 in 0755 folders."""
    import stat

    from gradio_client import Client, handle_file

    url, cache, results = app_url
    archive = tmp_path / "two.zip"
    archive.write_bytes(raw_zip([Member("wall.png", wall), Member("locked.png", wall, flags=0x1)]))
    before = {p for p in cache.iterdir() if p.is_file()}
    Client(url, verbose=False).predict(handle_file(archive), *OPTIONS, api_name="/anonymize_zip")
    assert {p for p in cache.iterdir() if p.is_file()} - before == set(), "a stray file in gradio's cache root"
    files = [p for p in cache.rglob("*") if p.is_file()]
    folders = [p for p in cache.rglob("*") if p.is_dir()]
    assert any(p.name == "anonymized.zip" for p in files)  # the output, as gradio keeps it for download
    from demos.common import ASSETS

    examples = {p.name for p in ASSETS.iterdir()}  # copies of the public example files keep their mode
    shared = {str(p.relative_to(cache)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files + folders
              if stat.S_IMODE(p.stat().st_mode) & 0o077 and p.name not in examples}
    assert shared == {}, "readable by other users"
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in folders)  # the examples' folders too
    assert {stat.S_IMODE(p.stat().st_mode) for p in results.rglob("*") if p.is_file()} == {0o600}


def test_sigterm_after_zip_requests_leaves_no_file_at_all(tmp_path, wall, shared_weights):
    """A real server: a hostile zip, then SIGTERM; neither gradio's cache nor the results folder keeps a file."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from gradio_client import handle_file

    from tests.app_server import connect_to_subprocess_app
    from tests.conftest import REPO

    cache, results = tmp_path / "gradio", tmp_path / "results"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "FACELAB_RESULTS_DIR": str(results),
           "FACELAB_WEIGHTS_DIR": str(shared_weights), "PYTHONUNBUFFERED": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--cpu", "--stand-in-weights"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = connect_to_subprocess_app(server, port, seconds=240)
        archive = tmp_path / "hostile.zip"
        archive.write_bytes(hostile_zip(wall))
        for _ in range(2):
            client.predict(handle_file(archive), *OPTIONS, api_name="/anonymize_zip")
        assert [p for p in cache.rglob("*") if p.is_file()], "the upload and the output are cached while it runs"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    left = [p for root in (cache, results) if root.exists() for p in root.rglob("*") if p.is_file()]
    assert left == []
