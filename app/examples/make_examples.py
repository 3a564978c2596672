"""Writes the app's example images from the synthetic world (data_builders.synthetic).

Run from the repository root: ``python app/examples/make_examples.py``. The images are
deterministic by seed and small (the three together stay under 300 KB), so they are committed;
rerun this script only to change them. One of each format the app reads: PNG, JPEG and a
georeferenced GeoTIFF (UTM zone 33N), whose answers download as lon/lat GeoJSON.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from geochat.data_builders.synthetic import World, build_world, write_tif
from geochat.fileio import atomic_path

HERE = Path(__file__).parent
JPEG_QUALITY = 85


def _write_picture(world: World, path: Path, **options: object) -> None:
    """Writes the world's image with PIL (format from the suffix), atomically."""
    with atomic_path(path) as temporary:
        Image.fromarray(world.image).save(
            temporary, format=Image.registered_extensions()[path.suffix], **options
        )


# name -> build_world arguments: each example is a synthetic world, so its truth is known.
EXAMPLE_WORLDS = {
    "harbour.png": {"seed": 0, "width": 256, "height": 256, "gsd": 0.6, "scene": "harbour"},
    "suburb.jpg": {"seed": 1, "width": 320, "height": 320, "gsd": 0.5, "scene": "suburban"},
    "port.tif": {"seed": 3, "width": 256, "height": 256, "gsd": 1.0, "scene": "harbour"},
}


def example_world(name: str) -> World:
    """The synthetic world that the example image ``name`` shows, truth included."""
    return build_world(**EXAMPLE_WORLDS[name])


def main() -> None:
    """Writes harbour.png, suburb.jpg and port.tif beside this script."""
    _write_picture(example_world("harbour.png"), HERE / "harbour.png", optimize=True)
    _write_picture(example_world("suburb.jpg"), HERE / "suburb.jpg", quality=JPEG_QUALITY)
    write_tif(example_world("port.tif"), HERE / "port.tif")
    for name in EXAMPLE_WORLDS:
        path = HERE / name
        path.chmod(0o644)  # temporary files are created private; the examples are public
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
