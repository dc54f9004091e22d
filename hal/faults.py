"""Hardware faults, for tests and bench runs: a Coral Edge TPU that can be unplugged.

`VanishingEdgeTpu` is a runtime pair `(Interpreter class, load_delegate)` for `hal.litert.load_interpreter`:
while "plugged in", the Edge TPU delegate loads and inference runs (on the real CPU interpreter underneath,
so results are real); after `unplug()`, `invoke()` raises what libedgetpu raises when the USB device goes
away, and loading the delegate fails as it does with no device. Camera stalls and detector errors live with
their fakes (hal.synthetic, hal.scripted, hal.fakepicam)."""

from __future__ import annotations

from typing import Any

from hal.litert import runtime


class VanishingEdgeTpu:
    def __init__(self, fail_after: int | None = None) -> None:
        self.plugged = True
        self.fail_after = fail_after  # unplug by itself after this many invokes
        self.invokes = 0
        self.loads = 0
        self._interpreter_cls, _ = runtime()

    def unplug(self) -> None:
        self.plugged = False

    @property
    def rt(self) -> tuple[Any, Any]:
        return self._make, self._load_delegate

    def _load_delegate(self, library: str) -> object:
        if not self.plugged:
            raise ValueError(f"Failed to load delegate from {library}")  # what load_delegate says with no device
        self.loads += 1
        return _EDGETPU

    def _make(self, model_path: str, experimental_delegates: list | None = None, num_threads: int = 2) -> Any:
        inner = self._interpreter_cls(model_path=model_path, num_threads=num_threads)
        return _Interpreter(inner, self) if experimental_delegates else inner


_EDGETPU = object()


class _Interpreter:
    """The real interpreter, with invoke() failing once the device is gone."""

    def __init__(self, inner: Any, tpu: VanishingEdgeTpu) -> None:
        self._inner, self._tpu = inner, tpu

    def invoke(self) -> None:
        tpu = self._tpu
        if tpu.fail_after is not None and tpu.invokes >= tpu.fail_after:
            tpu.plugged = False
        if not tpu.plugged:
            raise RuntimeError("Node number 0 (EdgeTpuDelegateForCustomOp) failed to invoke.")
        tpu.invokes += 1
        self._inner.invoke()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
