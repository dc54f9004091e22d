"""Copy the models the default config uses into the package, each checked against its manifest's sha256.

    python3 packaging/ship_models.py DEST     # DEST/<name>/<file> (+ labels), found locally or downloaded
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402  (the project's resolver; standard library only)

# the person detector, and the face detectors the sample images and the installer view blur with (without them
# the sensor takes no sample: it refuses rather than send an unchecked picture). The Edge TPU twin has no pinned
# hash yet (models/manifests); the demographics models stay out: that stream is off by default and opt-in
SHIPPED = ("ssd_mobilenet_v1_coco_quant", "blazeface_full_range", "blazeface_short_range")


def main(dest: Path) -> int:
    for name in SHIPPED:
        m = models.manifest(name)
        try:
            path = models.resolve(name)
        except (models.ModelError, OSError) as e:
            print(f"ship_models: {e}", file=sys.stderr)
            return 1
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / m.file)
        labels = path.parent / m.labels if getattr(m, "labels", "") else None
        if labels is not None and labels.is_file():
            shutil.copyfile(labels, folder / m.labels)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
