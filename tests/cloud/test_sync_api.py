"""The reference cloud against its own OpenAPI document: the routes match it, and a schemathesis run over
real mutual TLS finds no server error; requests without a client certificate never get in."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from cloud import customers
from cloud.app import Cloud, CloudConfig
from hal.clock import FakeClock

OPENAPI = Path(__file__).resolve().parents[2] / "cloud" / "openapi.yaml"
schema = schemathesis.openapi.from_path(OPENAPI)
device_ops = schema.include(path_regex="^/(v1|ota)/")
api_ops = schema.include(path_regex="^/(api|ops)/")


@schemathesis.serializer("application/pkcs10")
def _pkcs10(ctx: object, value: object) -> bytes:  # a CSR travels as PEM text
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


class Running:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner, self.port = self.loop.run_until_complete(cloud.start(port=0))
            self.api_runner, self.api_port = self.loop.run_until_complete(cloud.start_api(port=0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api_runner.cleanup(), self.loop).result(10)
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    cloud = Cloud(CloudConfig(data_dir=str(tmp_path_factory.mktemp("cloud")), api_burst=10_000),
                  FakeClock(start_wall=time.time()))
    (cloud.ota_dir / "1.root.json").write_text('{"signed": {}}')
    customers.assign_sensor(cloud.store, "shop-1", "acme")
    cloud.store.store_batch("shop-1", "a" * 32, "0" * 16, 1, time.time(), [(1, "umbra.aggregate/1", json.dumps(
        {"schema": "umbra.aggregate/1", "window_start": 0, "window_s": 300, "metric": "line_flow", "zone": "door",
         "values": [3, 1], "k": 5, "epsilon": 0.5, "sensitivity": 1, "mechanism": "discrete_laplace"}))])
    r = Running(cloud)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def session(running: Running) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace our CA otherwise
    p = running.cloud.pki
    s.cert = (str(p.device_cert), str(p.device_key))
    s.verify = str(p.ca_cert)
    return s


def test_routes_match_the_openapi_document(running: Running) -> None:
    doc = yaml.safe_load(OPENAPI.read_text())
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    served = set()
    routes = [*running.cloud.app().router.routes(), *running.cloud.api_app().router.routes()]
    for route in routes:
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or (info.get("prefix", "") + "/{path}")
        if route.method in ("HEAD", "OPTIONS"):
            continue
        served.add((route.method, path))
    assert served == documented


def test_ota_files_are_served_and_unauthenticated_clients_refused(running: Running, session: requests.Session
                                                                  ) -> None:
    base = f"https://localhost:{running.port}"
    r = session.get(base + "/ota/1.root.json", timeout=5)
    assert r.status_code == 200 and r.json() == {"signed": {}}
    assert session.get(base + "/ota/../cloud.sqlite", timeout=5).status_code in (403, 404)
    with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is one: TLS 1.3 may report a reset
        bare = requests.Session()
        bare.trust_env = False
        bare.get(base + "/v1/health", verify=session.verify, timeout=5)  # no client certificate
    r = session.post(base + "/v1/batches", data=b"x" * 100, headers={"Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 415 and r.json()["error"] == "content_type"


@device_ops.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case: schemathesis.Case, running: Running,
                                            session: requests.Session) -> None:
    response = case.call(base_url=f"https://localhost:{running.port}", session=session, timeout=10,
                         verify=session.verify, cert=session.cert)
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500 or response.status_code == 503


@pytest.fixture(scope="module")
def api_key(running: Running) -> str:
    return customers.create_key(running.cloud.store, "acme", "customer", time.time())


@api_ops.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error_in_the_read_api(case: schemathesis.Case, running: Running,
                                                            api_key: str) -> None:
    s = requests.Session()
    s.trust_env = False
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {api_key}"}
    if case.path_parameters and "sensor" in case.path_parameters and case.path_parameters["sensor"][:1] == "s":
        case.path_parameters["sensor"] = "shop-1"  # some cases reach a sensor that holds data
    response = case.call(base_url=f"https://localhost:{running.api_port}", session=s, timeout=10,
                         verify=str(running.cloud.pki.ca_cert))
    case.validate_response(response, checks=[not_a_server_error])
    assert 200 <= response.status_code < 500


def test_no_500_was_counted(running: Running) -> None:
    assert not [k for k in running.cloud.refusals if k.startswith("5") and k != "503"]
    assert ssl.OPENSSL_VERSION
