"""The package's slot layout: a release's wheelhouse installed offline into a real venv in the other slot,
`current` moved by the boot decision (directory boot control), committed on a passing health check, back on
the old venv after a failing one."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from bench.lib.ota_site import HW, Site
from hal.boot import DirectoryBootControl
from ota import bundle
from ota.errors import OtaError, Refused
from ota.health import after_boot
from ota.slots import SlotLinks, has_wheelhouse, install_venv, slot_venv

pytestmark = pytest.mark.timeout(300)  # each venv is ~3-6 s on a loaded machine (ensurepip)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(folder: Path, name: str, version: str, source: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel with one module, as a build backend writes it (METADATA, WHEEL, RECORD)."""
    dist = f"{name}-{version}.dist-info"
    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    files = {f"{name}.py": source.encode(), f"{dist}/METADATA": meta.encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(_record_line(n, d) + "\n" for n, d in files.items()) + f"{dist}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(f"{dist}/RECORD", record)
    return path


def wheelhouse(folder: Path, version: str, health: str = "True", lock_dependency: bool = True) -> Path:
    """slotprobe (VERSION, HEALTHY) needing slotdep, and the hash lock of both (or of slotprobe alone)."""
    wh = folder / "wheelhouse"
    wheels = [make_wheel(wh, "slotdep", "1.0", "ANSWER = 42\n"),
              make_wheel(wh, "slotprobe", version, f"import slotdep\nVERSION = {version!r}\nHEALTHY = {health}\n",
                         ("slotdep==1.0",))]
    lines = [f"{'=='.join(w.name.split('-')[:2])} --hash=sha256:{hashlib.sha256(w.read_bytes()).hexdigest()}"
             for w in wheels if lock_dependency or "slotprobe" in w.name]
    (wh / "requirements.lock").write_text("\n".join(lines) + "\n")
    return wh


def run_in(venv: Path, code: str) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_folder_without_a_lock_is_not_a_wheelhouse(tmp_path):
    wheelhouse(tmp_path / "rel", "1.0.0")
    assert has_wheelhouse(tmp_path / "rel") and not has_wheelhouse(tmp_path)
    venv = tmp_path / "slots" / "slot-b" / "1.0.0"
    with pytest.raises(OtaError, match="not a wheelhouse"):
        install_venv(tmp_path / "rel", venv)
    assert not venv.exists() and slot_venv(venv.parent) is None


def publish(site: Site, version: str, health: str = "True") -> None:
    tree = site.tmp / f"tree-{version}"
    wheelhouse(tree, version, health)
    (tree / "VERSION").write_text(version)
    out = site.tmp / f"{version}.tar"
    bundle.build(tree, out, version, [HW], "1.0.0")
    site.repo.publish_release(out, version, [HW], "1.0.0")


def healthy(links: SlotLinks) -> dict:
    """The probe the new firmware answers: the venv that `current` points at imports and says it is healthy."""
    return {"venv": lambda: run_in(links.root / "current", "import slotprobe; print(slotprobe.HEALTHY)") == "True"}


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def test_ota_installs_into_the_other_slot_commits_then_rolls_back_a_failing_release(site, tmp_path):
    device = tmp_path / "device"
    links = SlotLinks(device, DirectoryBootControl(device / "slots"))
    site.boot = links  # type: ignore[assignment]
    # the package's postinst: version 1.0.0 in slot A, current on it
    install_venv(wheelhouse(tmp_path / "pkg", "1.0.0"), links.slot_path("a") / "1.0.0")
    links.point_current()
    assert (device / "current").readlink() == Path("slots/current")
    assert (device / "slots" / "current").readlink() == Path("slot-a/1.0.0")
    assert run_in(device / "current", "import slotprobe, slotdep; print(slotprobe.VERSION, slotdep.ANSWER)") \
        == "1.0.0 42"

    publish(site, "2.0.0")
    client = site.client("1.0.0")
    update = client.check()
    assert update is not None and client.install(update, client.download(update)) == "b"
    assert slot_venv(links.slot_path("b")) == links.slot_path("b") / "2.0.0"
    assert (device / "slots" / "current").readlink() == Path("slot-a/1.0.0")  # installed, not yet booted
    assert links.boot() == "b"
    assert run_in(device / "current", "import slotprobe; print(slotprobe.VERSION)") == "2.0.0"
    assert after_boot(links, healthy(links), 5).ok and links.state()["committed"] == "b"
    assert links.current() == links.slot_path("b") / "2.0.0"

    publish(site, "3.0.0", health="False")  # installs and imports, but its health check fails
    client = site.client("2.0.0")
    update = client.check()
    assert update is not None and client.install(update, client.download(update)) == "a"
    assert slot_venv(links.slot_path("a")) == links.slot_path("a") / "3.0.0"  # 1.0.0 replaced
    assert links.boot() == "a" and links.current() == links.slot_path("a") / "3.0.0"
    ticks = iter(range(100))
    result = after_boot(links, healthy(links), 3, clock=lambda: next(ticks), sleep=lambda s: None)
    assert not result.ok and "venv" in result.reason
    st = links.state()
    assert st["committed"] == "b" and st["booted"] == "b" and st["last_rollback"] == result.reason
    assert links.current() == links.slot_path("b") / "2.0.0"
    assert run_in(device / "current", "import slotprobe; print(slotprobe.VERSION)") == "2.0.0"


def test_a_release_whose_venv_cannot_be_built_is_refused_and_not_tried(site, tmp_path):
    device = tmp_path / "device"
    links = SlotLinks(device, DirectoryBootControl(device / "slots"))
    site.boot = links  # type: ignore[assignment]
    tree = tmp_path / "tree-2.0.0"
    wheelhouse(tree, "2.0.0", lock_dependency=False)
    out = tmp_path / "2.0.0.tar"
    bundle.build(tree, out, "2.0.0", [HW], "1.0.0")
    site.repo.publish_release(out, "2.0.0", [HW], "1.0.0")
    client = site.client("1.0.0")
    update = client.check()
    assert update is not None
    with pytest.raises(Refused, match="install: .*slotdep"):
        client.install(update, client.download(update))
    # pip's refusal is the reason, and nothing half-built is left in the slot
    assert links.state()["trying"] is None and slot_venv(links.slot_path("b")) is None
    assert not (links.slot_path("b") / "2.0.0").exists()
    with pytest.raises(OtaError, match="holds no installed venv"):
        links.try_next("b")
