"""A fleet on loopback: N simulated devices (1,000 by default), each with its own TUF state and A/B slots,
checking the reference cloud over pinned mutual TLS while ops run a staged rollout (1%, 10%, 50%, 100%, one
simulated day apart, 2% failure budget). Three releases in turn: a good one, one that crashes at start (the
bootloader falls back), and one that runs but never reaches the cloud (the health check rolls it back). The
controller halts a rollout from device reports; it prints, per stage, the share that was meant to update and
the share that did.

`python -m bench.ota_fleet [--devices 1000]`"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.lib.ota_site import HW, Site
from hal.boot import DirectoryBootControl
from ota.client import OtaClient, OtaClientConfig
from ota.health import after_boot
from ota.rollout import evaluate, make_plan, position

PERCENTS = (1, 10, 50, 100)
DAY = 86_400.0


class Device:
    def __init__(self, site: Site, root: Path, device_id: str) -> None:
        self.id = device_id
        self.version = "1.0.0"
        self.boot = DirectoryBootControl(root / "boot")
        self.root = root
        self.site = site

    def client(self) -> OtaClient:
        cfg = OtaClientConfig(f"https://localhost:{self.site.cloud.port}/ota", self.id, HW, self.version)
        return OtaClient(cfg, self.root / "ota", self.site.root, self.site.fetcher, self.boot)

    def step(self, now: float) -> str | None:
        """Check; if an update is offered, install it, reboot into it and run it. Returns the result."""
        client = self.client()
        update = client.check(now=now)
        if update is None:
            return None
        client.install(update, client.download(update))
        slot = self.boot.boot()
        behavior = (self.boot.slot_path(slot) / "behavior").read_text()
        if behavior == "crash":
            self.boot.boot()  # the process died before its health check: the next boot falls back
            return "rolled_back"
        ticks = iter(range(10_000))
        res = after_boot(self.boot, {"loop": lambda: True, "camera": lambda: True,
                                     "cloud": lambda: behavior != "offline"}, 300,
                         clock=lambda: float(next(ticks)), sleep=lambda s: None)
        if res.ok:
            self.version = update.version
            return "committed"
        return "rolled_back"


def rollout(site: Site, devices: list[Device], release: str, behavior: str, start: float) -> list[str]:
    tree = site.tmp / f"tree-{release}"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "behavior").write_text(behavior)
    (tree / "VERSION").write_text(release)
    from ota import bundle

    out = site.tmp / f"{release}.tar"
    bundle.build(tree, out, release, [HW], "1.0.0")
    site.repo.publish_release(out, release, [HW], "1.0.0")
    plan = make_plan(release, PERCENTS, [start + i * DAY for i in range(len(PERCENTS))], [0.02] * len(PERCENTS))
    site.repo.set_rollout(plan)
    reports: dict[str, str] = {}
    fleet = [d.id for d in devices]
    lines = []
    for i, pct in enumerate(PERCENTS):
        now = start + i * DAY + 3600
        for d in devices:
            if d.id not in reports:
                result = d.step(now)
                if result:
                    reports[d.id] = result
        meant = sum(1 for d in fleet if position(d, release) < pct / 100)
        took = len(reports)
        committed = sum(1 for r in reports.values() if r == "committed")
        plan, status = evaluate(site.repo.rollout(release), reports, fleet, now)
        state = plan["state"]
        lines.append(f"  stage {i + 1} ({pct:>3}%): meant {meant / len(fleet):6.1%} ({meant:4d}), installed "
                     f"{took / len(fleet):6.1%} ({took:4d}), committed {committed:4d}, rolled back "
                     f"{took - committed:4d}; rollout {state}")
        if state != "running":
            site.repo.set_rollout(plan)  # the halt is signed and published: devices see it at their next check
            after = 0
            for d in devices:
                if d.id not in reports and d.step(now + DAY):
                    after += 1
            lines.append(f"  halted: {plan['reason']}; devices that installed after the halt: {after}")
            break
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ota_fleet", description=__doc__)
    ap.add_argument("--devices", type=int, default=1000)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="umbra-ota-fleet-"))
    site = Site(tmp)
    t0 = time.perf_counter()
    try:
        devices = [Device(site, tmp / "fleet" / f"{i:05d}", f"unit-{i:05d}") for i in range(args.devices)]
        start = time.time()
        for release, behavior, title in (("1.1.0", "ok", "a good release"),
                                          ("1.2.0", "crash", "a release that crashes at start"),
                                          ("1.3.0", "offline", "a release that never reaches the cloud")):
            print(f"{release}: {title}, {args.devices} devices")
            for line in rollout(site, devices, release, behavior, start):
                print(line)
            start += len(PERCENTS) * DAY
        print(f"{site.fetcher.connections} TLS connections, {site.fetcher.bytes_received / 2**20:.1f} MB fetched, "
              f"{time.perf_counter() - t0:.0f} s")
    finally:
        site.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
