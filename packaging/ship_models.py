"""Copy the models the default config uses into the package, each checked against its manifest's sha256.

    python3 packaging/ship_models.py DEST     # DEST/<name>/<file> (+ labels), found locally or downloaded
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402  (the project's resolver; standard library only)

SHIPPED = ("ssd_mobilenet_v1_coco_quant",)  # the Edge TPU twin has no pinned hash yet (models/manifests)


def main(dest: Path) -> int:
    for name in SHIPPED:
        m = models.manifest(name)
        path = models.resolve(name)
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / m.file)
        labels = path.parent / m.labels if getattr(m, "labels", "") else None
        if labels is not None and labels.is_file():
            shutil.copyfile(labels, folder / m.labels)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
