"""The house's layer order, checked on every import in the shipped packages and the bench, imports inside
functions included: each module imports only its own part or parts below it, and no imports close a circle.
The order (bottom first) is written down here and in docs/ARCHITECTURE.md."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("trust", "models", "hal", "ota", "firmware", "cloud", "provisioning", "bench")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("trust",),  # certificates, TLS, key ring, atomic files, canonical JSON: standard library and cryptography
    ("models",),  # model manifests and the resolver
    ("hal",),  # the hardware boundary: camera, detector, faces, embedder, clock, serial, boot control
    ("ota",),  # signed updates: bundles, TUF repository and client, rollout plans, health check
    ("firmware.base",),  # firmware/__init__ (the version) and firmware/errors (its exception family)
    ("firmware.config", "firmware.schemas"),  # every config section; the record schemas
    ("firmware.sensing",),  # loop, tick types, tracker, geometry, calibration, quantizer, pseudonym
    ("firmware.privacy",),  # dp, accountant, analytics, audit log, DPIA, data-subject requests
    ("firmware.samples", "firmware.flows", "firmware.demographics", "firmware.alerts"),  # sample images and
    # customer grants; customer-flow groups; demographics; zone alerts
    ("firmware.sync", "firmware.installer"),  # outbox, uploader, sync service; the installer view and editor
    ("firmware.cli",),  # the umbra command; the one place that wires a sensor
    ("cloud",),  # the reference cloud
    ("provisioning",),  # the serial protocol, device agent, factory station (registers devices in the cloud)
    ("bench.lib",),  # what the benchmarks share
    ("bench",),  # the benchmarks, each on its own
)
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def part_of(module: str) -> str:
    bits = module.split(".")
    if bits[0] == "firmware":
        if len(bits) == 1 or bits[1] == "errors":
            return "firmware.base"
        return ".".join(bits[:2])
    if bits[0] == "bench" and len(bits) > 1 and bits[1] == "lib":
        return "bench.lib"
    return bits[0]


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    assert not [m for m in MODULES if part_of(m) not in RANK]


def test_imports_go_down_or_stay_within_their_part() -> None:
    wrong = []
    for m, targets in GRAPH.items():
        for t in targets:
            a, b = part_of(m), part_of(t)
            if a != b and RANK[b] >= RANK[a]:
                wrong.append(f"{m} ({a}) imports {t} ({b})")
    assert not wrong, "\n".join(sorted(wrong))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module."""
    names = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    at = {n: i for i, n in enumerate(names)}
    pairs = [(at[m], at[t]) for m, ts in graph.items() for t in ts]
    rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
    adj = csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(names), len(names)))
    _, label = connected_components(adj, directed=True, connection="strong")
    comps: dict[int, list[str]] = {}
    for n, lab in zip(names, label, strict=True):
        comps.setdefault(int(lab), []).append(n)
    return sorted(c for c in comps.values() if len(c) > 1)


def test_no_import_cycles() -> None:
    assert not cycles(GRAPH)


def test_the_checker_sees_a_wrong_import() -> None:
    """The rules can fail: an upward import and a circle are both caught."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    GRAPH["trust.files"].add("firmware.cli.main")
    try:
        assert part_of("firmware.cli.main") == "firmware.cli" and RANK["firmware.cli"] > RANK["trust"]
        wrong = [t for t in GRAPH["trust.files"] if RANK[part_of(t)] > RANK["trust"]]
        assert wrong == ["firmware.cli.main"]
    finally:
        GRAPH["trust.files"].discard("firmware.cli.main")


def test_no_benchmark_imports_another() -> None:
    wrong = [(m, t) for m, ts in GRAPH.items() if part_of(m) == "bench" for t in ts
             if part_of(t) == "bench" and t not in ("bench",)]
    assert not wrong
