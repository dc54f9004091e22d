"""The cloud's HTTPS API with two tenants' sensors holding the same records, as the read API tests reach it
(the `tenant_api` fixture in tests/cloud/conftest.py makes one)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

import requests

from cloud import customers
from cloud.harness import CloudThread
from hal.clock import FakeClock


class TenantApi:
    """The cloud's HTTPS API as a client reaches it, over real TLS: `records` stored as one batch from each of two
    sensors, shop-1 (tenant acme's "Front door") and other-1 (tenant globex's); a customer key for each tenant
    (`acme`, `globex`) and an ops key (`ops`)."""

    def __init__(self, ct: CloudThread, clock: FakeClock, records: Sequence[Mapping]) -> None:
        self.ct, self.clock, self.store = ct, clock, ct.cloud.store
        self.base = f"https://localhost:{ct.api_port}"
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = str(ct.cloud.pki.ca_cert)
        rows = [(i + 1, r["schema"], json.dumps(r)) for i, r in enumerate(records)]
        self.store.store_batch("shop-1", "a" * 32, "0" * 16, 1, clock.wall(), rows)
        self.store.store_batch("other-1", "b" * 32, "1" * 16, 1, clock.wall(), rows)
        customers.assign_sensor(self.store, "shop-1", "acme", "Front door")
        customers.assign_sensor(self.store, "other-1", "globex")
        self.acme = customers.create_key(self.store, "acme", "customer", clock.wall())
        self.globex = customers.create_key(self.store, "globex", "customer", clock.wall())
        self.ops = customers.create_key(self.store, "umbra-ops", "ops", clock.wall())

    def get(self, path: str, key: str | None, **params: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.http.get(self.base + path, params=params, headers=headers, timeout=10)


MakeTenantApi = Callable[[float, Sequence[Mapping]], TenantApi]  # (clock's start wall, records) -> a TenantApi
