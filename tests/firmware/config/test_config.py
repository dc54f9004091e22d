"""The config file: typed, validated, and every error names the key at fault."""

from __future__ import annotations

import pytest

from firmware.config import UmbraConfig, load, parse, to_toml
from firmware.errors import ConfigError

GOOD = """
[device]
id = "shop-42"

[camera]
kind = "video"
source = "vtest.avi"

[detector]
tiles = [2, 2]
edgetpu = "off"

[loop]
detect_hz = 7.0
emit_hz = 2.0

[geometry]
homography = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

[[geometry.zones]]
name = "door"
polygon = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]]

[[geometry.lines]]
name = "entry"
a = [0.0, 0.0]
b = [0.0, 5.0]
"""


def test_good_config_parses_to_typed_values():
    cfg = parse(GOOD)
    assert cfg.device.id == "shop-42"
    assert cfg.camera.kind == "video"
    assert cfg.detector.tiles == (2, 2)
    assert cfg.loop.detect_hz == 7.0
    assert cfg.geometry.zones[0].name == "door"
    assert cfg.geometry.zones[0].polygon[2] == (2.0, 2.0)
    assert cfg.geometry.lines[0].b == (0.0, 5.0)
    assert cfg.quantize.grid_m == 0.5  # default
    assert cfg.quantize.time_bucket_s == 5


def test_empty_config_gives_device_defaults():
    cfg = parse("")
    assert cfg == UmbraConfig()
    assert cfg.camera.kind == "pi"
    assert cfg.loop.emit_hz == 2.0


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[loop]\ndetect_hz = 7\nbogus = 1\n", ["loop.bogus", "detect_hz"]),  # unknown key, allowed listed
        ("[nonsense]\nx = 1\n", ["nonsense"]),
        ("[detector]\nedgetpu = \"maybe\"\n", ["detector.edgetpu", "'auto'"]),
        ("[detector]\ntiles = [2]\n", ["detector.tiles", "exactly 2"]),
        ("[detector]\nthreads = \"two\"\n", ["detector.threads", "whole number"]),
        ("[loop]\nemit_hz = 5.0\n", ["emit_hz", "at most 2"]),
        ("[quantize]\ngrid_m = 0.01\n", ["grid_m", "0.1"]),
        ("[camera]\nkind = \"video\"\n", ["source"]),
        ("[geometry]\nhomography = [[0,0,0],[0,0,0],[0,0,0]]\n", ["homography", "singular"]),
        ("[[geometry.zones]]\nname = \"a\"\npolygon = [[0,0],[1,1]]\n", ["zone 'a'", "3 points"]),
        ("[[geometry.zones]]\nname = \"a\"\n", ["geometry.zones[0].polygon", "no default"]),
        ("[device]\nid = \"bad id!\"\n", ["id", "letters"]),
        ("loop = 3\n", ["[loop]", "table"]),
        ("[loop\n", ["not valid TOML"]),
    ],
)
def test_bad_config_names_the_key(text, names):
    with pytest.raises(ConfigError) as e:
        parse(text, "umbra.toml")
    msg = str(e.value)
    assert msg.startswith("umbra.toml")
    for n in names:
        assert n in msg, msg


def test_load_reports_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(bad)


def test_to_toml_round_trips():
    table = {
        "camera": {"kind": "video", "source": 'a "b".avi'},
        "geometry": {
            "homography": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "lines": [{"name": "l", "a": [0.0, 0.0], "b": [1.0, 1.0]}],
        },
    }
    cfg = parse(to_toml(table))
    assert cfg.camera.source == 'a "b".avi'
    assert cfg.geometry.lines[0].name == "l"


def test_sync_needs_the_fleet_root_key_only_when_it_runs():
    tls = '\n[sync.tls]\nkey_file = "pki/device.key"\ncert_file = "pki/device.pem"\n'
    cfg = parse(GOOD + tls)  # sync off: the key files may be named (the audit head is signed with the key)
    assert cfg.sync.tls.key_file == "pki/device.key"
    with pytest.raises(ConfigError, match=r"\[sync\] tls\.fleet_root_public_key"):
        parse(GOOD + "\n[sync]\nenabled = true\n" + tls)
    with pytest.raises(ConfigError, match=r"fleet_root_public_key"):  # a bad one is refused even with sync off
        parse(GOOD + tls + 'fleet_root_public_key = "not base64!"\n')
