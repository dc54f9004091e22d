"""The amd64 package as `bash packaging/build.sh amd64` builds it: no private key, default password or token in
any file or wheel; every wheel locked by hash; units, user, folders and the config template in place."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("scan_secrets", REPO / "packaging" / "scan_secrets.py")
assert spec and spec.loader
scan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scan)

# the build and the scan of ~140 MB of wheels take ~40 s on 2 idle cores; the bound is for a loaded machine
pytestmark = [pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed"),
              pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    """Built from this tree into a temporary folder; the wheels come from the build cache when a build ran
    before (copied, then hash-checked by pip as always), else from PyPI."""
    tmp = tmp_path_factory.mktemp("deb")
    cached = REPO / "packaging" / "build" / "wheelhouse" / "amd64"
    if cached.is_dir():
        shutil.copytree(cached, tmp / "wheels" / "amd64")
    env = dict(os.environ, UMBRA_DEB_OUT=str(tmp / "dist"), UMBRA_WHEEL_CACHE=str(tmp / "wheels"))
    subprocess.run(["bash", str(REPO / "packaging" / "build.sh"), "amd64"], check=True, env=env,
                   capture_output=True, text=True)
    (found,) = (tmp / "dist").glob("umbra_*_amd64.deb")
    return found


@pytest.fixture(scope="module")
def tree(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    return root


def test_no_private_key_password_or_token_anywhere_in_the_package(tree):
    n, found = scan.scan_tree(tree)
    assert n > 1000  # the wheels' members were opened too
    assert found == []


def test_the_scanner_finds_what_it_looks_for(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "usr/share/umbra").mkdir(parents=True)
    (tmp_path / "usr/share/umbra/sensor.toml.template").write_text('[cloud]\napi_token = "s3cr3t-value"\n')
    with zipfile.ZipFile(tmp_path / "usr/share/umbra/umbra-9-py3-none-any.whl", "w") as z:
        z.writestr("firmware/dev.key", key)
        z.writestr("firmware/x.py", 'ADMIN_PASSWORD = "hunter22"\ntoken_id = "inst-1234"\n')  # an id is public
    (tmp_path / "DEBIAN").mkdir()
    (tmp_path / "DEBIAN/postinst").write_text("echo 'umbra:umbra' | chpasswd\n")
    header = "-----BEGIN PRIVATE KEY-----"
    (tmp_path / "opt.txt").write_text(f"key AKIAABCDEFGHIJKLMNOP and {header} only a header")
    _, found = scan.scan_tree(tmp_path)
    text = "\n".join(found)
    assert "dev.key: a PKCS#8 private key block" in text
    assert "api_token set to a literal value" in text and "ADMIN_PASSWORD set to a literal value" in text
    assert "postinst: sets a user's password" in text and "AWS access key" in text
    assert len(found) == 5  # a bare header string (as libraries carry) is not a key


def test_every_wheel_is_locked_by_hash_and_nothing_else_is_shipped(tree):
    wh = tree / "usr/lib/umbra/wheelhouse"
    lock = {line.split("#")[1].strip(): line.split("--hash=sha256:")[1].split()[0]
            for line in (wh / "requirements.lock").read_text().splitlines() if line and not line.startswith("#")}
    wheels = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wh.glob("*.whl")}
    assert wheels == lock and any(n.startswith("ai_edge_litert-") for n in wheels)
    assert all("x86_64" in n or "none-any" in n or "abi3-manylinux" in n for n in wheels if "aarch64" not in n)


def test_units_user_folders_template_and_control(tree):
    assert sorted(p.name for p in (tree / "lib/systemd/system").iterdir()) == [
        "boot-firmware.mount.d", "umbra-boot-switch.path", "umbra-boot-switch.service", "umbra-ota-check.service",
        "umbra-ota-check.timer", "umbra-provision.service", "umbra.service"]
    users = (tree / "usr/lib/sysusers.d/umbra.conf").read_text()
    assert "m umbra video" in users and "m umbra dialout" in users
    assert "d /var/lib/umbra 0750 umbra umbra" in (tree / "usr/lib/tmpfiles.d/umbra.conf").read_text()
    control = (tree / "DEBIAN/control").read_text()
    assert "Architecture: amd64" in control and "Recommends: python3-picamera2" in control
    assert "Suggests: libedgetpu1-std" in control
    assert "Recommends: python3-picamera2, python3-libcamera, polkitd" in control  # the switch's reboot: polkit
    assert (tree / "usr/share/polkit-1/rules.d/10-umbra-boot-switch.rules").is_file()
    assert (tree / "lib/systemd/system/boot-firmware.mount.d/umbra-boot-switch.conf").is_file()
    assert 'u umbra-boot - "Umbra tryboot switch"' in users
    assert (tree / "usr/share/umbra/models/ssd_mobilenet_v1_coco_quant/detect.tflite").is_file()
    for face in ("full", "short"):  # the samples' and the installer view's face detectors: no sample without them
        assert (tree / f"usr/share/umbra/models/blazeface_{face}_range/face_detection_{face}_range.tflite").is_file()
    assert "--require-hashes" in (tree / "DEBIAN/postinst").read_text()


def test_the_boot_switch_ships_as_root_s_files_and_runs_from_them_alone(deb, tree, tmp_path):
    """umbra-boot-switch.service runs /usr/lib/umbra/boot-switch (as umbra-boot): dpkg's (root) files, standard
    library and trust.files only (never the venv), so the shipped copy answers a request by itself."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    rows = {line.split()[-1]: line.split()[:2] for line in listing.splitlines()}
    assert rows["./usr/lib/umbra/boot-switch/umbra-boot-switch"] == ["-rwxr-xr-x", "root/root"]
    assert rows["./usr/lib/umbra/boot-switch/trust/files.py"] == ["-rw-r--r--", "root/root"]
    boot, req = tmp_path / "boot", tmp_path / "req"
    boot.mkdir(), req.mkdir()
    (boot / "autoboot.txt").write_text("[all]\ntryboot_a_b=1\nboot_partition=2\n")
    (req / "request").write_text("00112233445566778899aabbccddeeff try b\n")
    program = tree / "usr/lib/umbra/boot-switch/umbra-boot-switch"
    out = subprocess.run(["python3", "-E", "-s", "-B", str(program), "--dir", str(req), "--boot-dir", str(boot),
                          "--busctl", "/bin/false"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert (req / "result").read_text() == "00112233445566778899aabbccddeeff ok\n"
    assert "[tryboot]\nboot_partition=3" in (boot / "autoboot.txt").read_text()


def test_the_agent_ships_without_install_and_its_generator_is_root_s_executable(deb, tree):
    """The provisioning agent is in no boot by its unit (no [Install]: nothing enables it, `systemctl enable`
    has nothing to do); the generator, root's 0755 in systemd 252's generator folder on Debian 12, wants it until the
    device is locked and masks it after (tests/packaging/test_provision_generator.py)."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    rows = {line.split()[-1]: line.split()[:2] for line in listing.splitlines()}
    assert rows["./lib/systemd/system-generators/umbra-provision-generator"] == ["-rwxr-xr-x", "root/root"]
    shipped = tree / "lib/systemd/system-generators/umbra-provision-generator"
    assert shipped.read_bytes() == (REPO / "packaging/systemd/umbra-provision-generator").read_bytes()
    agent = (tree / "lib/systemd/system/umbra-provision.service").read_text()
    sections = [line for line in agent.splitlines() if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]"] and not re.search(r"^(WantedBy|RequiredBy|Alias)=", agent, re.M)
    assert "ExecCondition=/opt/umbra/current/bin/umbra-device is-unlocked" in agent  # the second guard stays
    for other in ("umbra.service", "umbra-ota-check.timer", "umbra-boot-switch.path"):
        assert "\n[Install]\n" in (tree / "lib/systemd/system" / other).read_text(), other
