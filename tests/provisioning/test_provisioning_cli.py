"""`umbra provision`: a CA, fake devices behind ptys, the log; errors are clear."""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.cli.main import main
from trust import pki


def test_init_run_and_show(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["provision", "init-ca", "--dir", "ca"]) == 0
    assert main(["provision", "init-ca", "--dir", "ca"]) == 2  # never replaces a CA
    root = Ed25519PrivateKey.generate()
    (tmp_path / "fleet.json").write_text(json.dumps({
        "cloud_url": "https://cloud.example:8443", "keys_out": "issued.jsonl",
        "pins": pki.sign_pin_update(root, ["A" * 43 + "=", "B" * 43 + "="], 1, int(time.time())),
        "fleet_root_public_key": pki.root_public_b64(root)}))
    assert main(["provision", "run", "--ca", "ca", "--fleet", "fleet.json", "--log", "st.sqlite", "--fake", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 provisioned" in out and out.count("[8/8] lock") == 3
    assert len((tmp_path / "issued.jsonl").read_text().splitlines()) == 3
    assert main(["provision", "show", "--log", "st.sqlite"]) == 0
    assert capsys.readouterr().out.count("done") == 3
    assert main(["provision", "run", "--ca", "ca", "--fleet", "fleet.json"]) == 2  # no ports
