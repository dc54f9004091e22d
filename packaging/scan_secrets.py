"""Look through a built .deb for private keys, default passwords and tokens; print each finding.

    python3 packaging/scan_secrets.py packaging/dist/umbra_0.1.0-1_amd64.deb    # exit 1 on any finding

Every file is read, and every member of every wheel in it. Everywhere: PEM/OpenSSH/PuTTY private key blocks
(with a key body, not a mere header string), and token formats (AWS, GitHub, GitLab, Slack, Google, JWT).
In Umbra's own files (its wheel, the config template, units, maintainer scripts, sysusers): also any
password/secret/token/api key given a literal value, and any password set on a user.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

KEY_BLOCK = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----\s*[A-Za-z0-9+/=:,\s-]{64,}?-----END")
PUTTY = re.compile(rb"PuTTY-User-Key-File-\d: ")
# (what, literal prefixes that must occur first (a fast gate on large binaries), pattern)
TOKENS = (
    ("AWS access key", (b"AKIA", b"ASIA"), re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("GitLab token", (b"glpat-",), re.compile(rb"\bglpat-[A-Za-z0-9_-]{20,}\b")),
    ("Slack token", (b"xox",), re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("Google API key", (b"AIza",), re.compile(rb"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("JWT", (b"eyJ",), re.compile(rb"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
)
# a credential-looking name given a literal value of 4+ characters (not a path, not empty, not a placeholder)
ASSIGNED = re.compile(rb"(?i)\b([A-Za-z_]*(?:password|passwd|secret|token|api_?key)[A-Za-z_]*)\s*[:=]\s*"
                      rb"[\"']([^\"'\s/$<{][^\"'\s]{3,})[\"']")
USER_PASSWORD = re.compile(rb"(?m)^\s*(?:.*\b(?:chpasswd|usermod\s+(?:-\w+\s+)*-p|useradd\s+(?:.*\s)?-p)\b.*)$")
OWN = ("/usr/share/umbra/", "/lib/systemd/system/", "/usr/lib/sysusers.d/", "/usr/lib/tmpfiles.d/", "DEBIAN/")


def members(root: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every file under root, and of every member of each wheel, named wheel!member."""
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        name = "/" + str(p.relative_to(root)) if not str(p.relative_to(root)).startswith("DEBIAN") else str(
            p.relative_to(root))
        data = p.read_bytes()
        if p.suffix != ".whl":
            yield name, data
        else:  # its members, each whole (a wheel's raw bytes are deflated: nothing to see in them)
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for info in z.infolist():
                    if not info.is_dir():
                        yield f"{name}!{info.filename}", z.read(info)


def is_own(name: str) -> bool:
    """Umbra's own files: the package's config, units and scripts, and the members of Umbra's wheel."""
    outer, _, member = name.partition("!")
    return name.startswith(OWN) or (bool(member) and Path(outer).name.startswith("umbra-"))


def scan_bytes(name: str, data: bytes, own: bool) -> list[str]:
    found = []
    if b"PRIVATE KEY" in data:
        for m in KEY_BLOCK.finditer(data):
            found.append(f"{name}: a {m.group(1).decode().strip() or 'PKCS#8'} private key block")
    if b"PuTTY-User-Key-File" in data and PUTTY.search(data):
        found.append(f"{name}: a PuTTY private key")
    for what, prefixes, rx in TOKENS:
        if any(p in data for p in prefixes) and rx.search(data):
            found.append(f"{name}: looks like a {what}")
    if own:
        for m in ASSIGNED.finditer(data):
            if not m.group(1).lower().endswith(b"_id"):  # a token's id is public (revocation lists, the DPIA)
                found.append(f"{name}: {m.group(1).decode()} set to a literal value")
        if USER_PASSWORD.search(data):
            found.append(f"{name}: sets a user's password")
    return found


def scan_tree(root: Path) -> tuple[int, list[str]]:
    n, found = 0, []
    for name, data in members(root):
        n += 1
        found += scan_bytes(name, data, is_own(name))
    return n, found


def scan_deb(deb: Path) -> tuple[int, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        subprocess.run(["dpkg-deb", "-e", str(deb), f"{tmp}/DEBIAN"], check=True)
        return scan_tree(Path(tmp))


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: scan_secrets.py PACKAGE.deb ...", file=sys.stderr)
        return 2
    bad = 0
    for deb in argv:
        n, found = scan_deb(Path(deb))
        for f in found:
            print(f"FOUND {f}")
        bad += len(found)
        print(f"{deb}: {n} files and wheel members scanned, {len(found)} private keys, passwords or tokens")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
