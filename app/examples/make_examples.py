"""Writes the app's example images from the synthetic world (data_builders.synthetic).

Run from the repository root: ``python app/examples/make_examples.py``. The images are
deterministic by seed and small (the three together stay under 300 KB), so they are committed;
rerun this script only to change them. One of each format the app reads: PNG, JPEG and a
georeferenced GeoTIFF (UTM zone 33N), whose answers download as lon/lat GeoJSON.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from data_builders.synthetic import World, build_world, write_tif

HERE = Path(__file__).parent
JPEG_QUALITY = 85


def _write_picture(world: World, path: Path, **options: object) -> None:
    """Writes the world's image with PIL (format from the suffix), atomically."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(descriptor)
    try:
        Image.fromarray(world.image).save(temporary, **options)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def main() -> None:
    """Writes harbour.png, suburb.jpg and port.tif beside this script."""
    harbour = build_world(seed=0, width=256, height=256, gsd=0.6, scene="harbour")
    _write_picture(harbour, HERE / "harbour.png", optimize=True)
    suburb = build_world(seed=1, width=320, height=320, gsd=0.5, scene="suburban")
    _write_picture(suburb, HERE / "suburb.jpg", quality=JPEG_QUALITY)
    port = build_world(seed=3, width=256, height=256, gsd=1.0, scene="harbour")
    write_tif(port, HERE / "port.tif")
    for name in ("harbour.png", "suburb.jpg", "port.tif"):
        path = HERE / name
        path.chmod(0o644)  # temporary files are created private; the examples are public
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
