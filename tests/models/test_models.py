"""Model resolution: mirror folders in order, hashes always checked, downloads from a real HTTP server."""

from __future__ import annotations

import http.server
import shutil
import threading

import pytest

import models
from models import ModelError, manifest, resolve

NAME = "blazeface_short_range"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No model anywhere: env mirrors unset, the shared data and the cache point at empty folders."""
    monkeypatch.delenv("UMBRA_MODEL_DIR", raising=False)
    monkeypatch.delenv("UMBRA_DATA_DIR", raising=False)
    monkeypatch.setenv("UMBRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "REPO", tmp_path / "repo")
    return tmp_path


@pytest.fixture
def original(shared_data):
    return shared_data / "models/blazeface" / manifest(NAME).file


def test_umbra_model_dir_comes_first_and_is_hash_checked(isolated, original, monkeypatch):
    mirror = isolated / "mirror"
    mirror.mkdir()
    shutil.copy(original, mirror)
    monkeypatch.setenv("UMBRA_MODEL_DIR", str(mirror))
    assert resolve(NAME) == mirror / original.name
    (mirror / original.name).write_bytes(original.read_bytes()[:-1] + b"\x00")  # one byte changed
    with pytest.raises(ModelError, match="does not match"):
        resolve(NAME)


def test_nowhere_local_it_downloads_checks_and_caches(isolated, original):
    body = original.read_bytes()
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/face.tflite"
        path = resolve(NAME, fetch=lambda _u, limit: models.urllib_fetch(url, limit))
        assert path.parent == isolated / "cache" / "models" and path.read_bytes() == body
        assert resolve(NAME, fetch=lambda *_: pytest.fail("cached: no second download")) == path
    finally:
        srv.shutdown()
    assert served == ["/face.tflite"]


def test_a_wrong_or_failed_download_is_refused_and_says_what_to_do(isolated):
    with pytest.raises(ModelError, match="expected"):
        resolve(NAME, fetch=lambda url, limit: b"an html error page")
    assert not (isolated / "cache" / "models" / manifest(NAME).file).exists()

    def offline(url, limit):
        raise OSError("Network is unreachable")

    with pytest.raises(ModelError, match="UMBRA_MODEL_DIR"):
        resolve(NAME, fetch=offline)


def test_unpinned_and_unknown_models_are_refused():
    with pytest.raises(ModelError, match="no pinned sha256"):
        resolve("ssd_mobilenet_v2_coco_quant_postprocess")
    with pytest.raises(ModelError):
        manifest("no_such_model")
