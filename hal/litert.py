"""Loading a TFLite model through the LiteRT runtime (ai-edge-litert), or tflite-runtime where only that
exists, with the Edge TPU delegate when asked for or found. Imported lazily: nothing here runs at import."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hal.errors import DelegateError, DetectorError

log = logging.getLogger(__name__)

EDGETPU_LIB = "libedgetpu.so.1"
DelegateLoader = Callable[[str], Any]
Runtime = tuple[Callable[..., Any], DelegateLoader]  # (Interpreter class, load_delegate)


def runtime() -> tuple[type, DelegateLoader]:
    """(Interpreter class, load_delegate) of the first runtime installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate  # type: ignore[no-redef]

        return Interpreter, load_delegate
    except ImportError as e:
        raise DetectorError(
            "no TFLite runtime: `pip install ai-edge-litert` (or tflite-runtime on boards it lacks wheels for)"
        ) from e


def edgetpu_library_present() -> bool:
    import ctypes.util
    import glob

    return bool(ctypes.util.find_library("edgetpu") or glob.glob(f"/usr/lib/*/{EDGETPU_LIB}*")
                or glob.glob(f"/usr/lib/{EDGETPU_LIB}*") or glob.glob(f"/usr/local/lib/{EDGETPU_LIB}*"))


def load_interpreter(
    model_path: Path,
    *,
    edgetpu: bool | None = None,
    num_threads: int = 2,
    delegate_loader: DelegateLoader | None = None,
    rt: Runtime | None = None,
) -> tuple[Any, str]:
    """(interpreter with tensors allocated, backend). `edgetpu`: True requires the Edge TPU (DelegateError if
    it cannot load), None uses it when it loads and falls back to the CPU with one warning, False never.
    `rt` replaces the installed runtime (hal.faults.VanishingEdgeTpu stands in for a Coral this way)."""
    interpreter_cls, load_delegate = rt or runtime()
    loader = delegate_loader or load_delegate
    if edgetpu is None and rt is None and delegate_loader is None and not edgetpu_library_present():
        # Asking LiteRT for a library that is not there prints a stray traceback from Delegate.__del__.
        log.warning("no Edge TPU (%s is not installed); running %s on the CPU", EDGETPU_LIB, Path(model_path).name)
        edgetpu = False
    if edgetpu is not False:
        try:
            delegate = loader(EDGETPU_LIB)
            interp = interpreter_cls(model_path=str(model_path), experimental_delegates=[delegate])
            interp.allocate_tensors()
            return interp, "edgetpu"
        except (ValueError, OSError, RuntimeError) as e:
            if edgetpu:
                raise DelegateError(f"Edge TPU delegate {EDGETPU_LIB} failed to load: {e}") from e
            log.warning("no Edge TPU (%s: %s); running %s on the CPU", EDGETPU_LIB, e, Path(model_path).name)
    try:
        interp = interpreter_cls(model_path=str(model_path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise DetectorError(f"cannot load model {model_path}: {e}") from e
    return interp, "cpu"
