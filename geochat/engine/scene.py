"""Whole-scene grounding: ask about a scene of any size, get every object in map coordinates.

A scene (a GeoTIFF/COG of any size, or a PNG/JPEG with a GSD) is read window by window, never
whole: each window is resampled on read (``out_shape``) to the model's native input
(:class:`~geochat.engine.assistant.NativeInput`: its tile size and GSD range), so a model sees
the scene as it saw its training tiles. Windows overlap by ``overlap`` of a tile; windows that
are all no-data are skipped. Tiles go through :meth:`Assistant.chat` in batches, and their
geometry is mapped back to scene pixels and merged:

- boxes and oriented boxes (quads) of one phrase are clustered. A piece that reaches an inner
  edge of its tile is cut by it, and clipped to its window (the tile saw nothing beyond). Two
  pieces of one window are one object when their IoU (rotated IoU of the polygons for quads)
  reaches ``merge_iou``; two pieces of different windows, also when they agree where both
  windows see (IoU of their parts in the windows' shared area at least :data:`AGREE_IOU`), so
  an object cut by tile edges becomes one object, and two neighbours that one cut piece touches
  stay two. A cluster that a whole view covers keeps its most central such view (a view far
  from its tile's edges is the least likely to be cut); else it becomes the union of its pieces
  (a box: their bounds; a quad: the union's minimum-area rectangle, each piece limited to where
  its window is the nearest of the cluster's, as a rectangle around a cut part overshoots the
  part). A cluster of slivers alone
  (cut pieces under :data:`SLIVER` tile pixels across their cut: the model draws them where an
  object barely enters a tile, and they were never its training targets) is dropped;
- masks of one phrase are stitched into one scene mask at the model's resolution and
  vectorised (``rasterio.features.shapes``, 4-connected): each connected region is an object.

Counts and presence are then answered from the merged objects, for the whole scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from PIL import Image
from rasterio import features
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from shapely.geometry import box as shapely_box
from shapely.geometry.base import BaseGeometry

from geochat import imagery
from geochat.draw import UNNAMED
from geochat.engine.assistant import Assistant, NativeInput, Reply
from geochat.geometry import min_area_rect, quad_to_polygon, rle_to_mask
from geochat.georef import Georef
from geochat.grammar.core import GroundedObject
from geochat.imagery import ImageError, ImagerySettings, LoadedImage

DEFAULT_OVERLAP = 0.25  # of a tile: an object smaller than this is seen whole in some tile
DEFAULT_BATCH_SIZE = 8
MERGE_IOU = 0.5
EDGE_TOLERANCE = 1.5  # tile pixels: geometry this close to an inner tile edge is cut by it
AGREE_IOU = 0.3  # IoU in the windows' shared area at which two windows' pieces are one object
SLIVER = 10  # tile pixels across its cut under which a cut piece is a sliver
COVERED = 0.9  # a whole view holding this share of every piece of its cluster is the object
OVERVIEW_SIDE = 1024  # longest side of the overview image
# GDAL's block cache defaults to 5 % of RAM and a windowed read of a large scene fills it
# (a 16k px scene took a run to 1.5 GB): each window is read once, so a small cache loses little.
DEFAULT_GDAL_CACHE_MB = 256


class SceneError(ValueError):
    """A scene that cannot be run: no GSD, a CRS without an EPSG code, bad options."""


class SceneCancelledError(Exception):
    """A scene run stopped between batches because its ``cancel`` said so."""


@dataclass(frozen=True)
class Tile:
    """One window of the scene and the size it is read at.

    Attributes:
        window: ``(col_off, row_off, width, height)`` in scene pixels.
        size: ``(width, height)`` of the tile the model sees.
    """

    window: tuple[int, int, int, int]
    size: tuple[int, int]

    def to_scene(self) -> Affine:
        """The transform from tile pixels to scene pixels."""
        col, row, width, height = self.window
        return Affine.translation(col, row) @ Affine.scale(
            width / self.size[0], height / self.size[1]
        )

    def points_to_scene(self, points: np.ndarray) -> np.ndarray:
        """Tile pixel points ``[N, 2]`` in scene pixels ``[N, 2]``."""
        col, row, width, height = self.window
        return points * [width / self.size[0], height / self.size[1]] + [col, row]


@dataclass
class ScenePlan:
    """How a scene is read: its size, GSDs and tiles.

    Attributes:
        width: Scene width in pixels.
        height: Scene height in pixels.
        scene_gsd: The scene's metres per pixel, None when unknown.
        gsd: Metres per pixel of the tiles the model sees (None: the scene's pixels).
        tiles: The windows, row by row.
        notes: What was assumed, for people.
    """

    width: int
    height: int
    scene_gsd: float | None
    gsd: float | None
    tiles: list[Tile]
    notes: list[str] = field(default_factory=list)


@dataclass
class SceneObject:
    """One merged object, in scene pixels.

    It has ``kind``, ``phrase``, ``hbb``, ``quad`` and ``mask`` as
    :class:`~geochat.grammar.core.GroundedObject` has them.

    Attributes:
        phrase: Its phrase, or None.
        kind: ``"hbb"``, ``"quad"`` or ``"mask"``.
        geometry: Its polygon in scene pixels.
        hbb: ``[x0, y0, x1, y1]`` in scene pixels.
        quad: Four corners in scene pixels (boxes and quads), else None.
        score: A confidence where the model gives one; None (the grammar carries none yet, so
            no backend does).
        windows: The tile windows that saw it.
        mask: Always None: a merged mask is its polygon (``geometry``).
    """

    phrase: str | None
    kind: str
    geometry: BaseGeometry
    hbb: list[float]
    quad: list[list[float]] | None
    score: float | None
    windows: list[tuple[int, int, int, int]]
    mask: None = None


@dataclass
class SceneResult:
    """What a scene run found.

    Attributes:
        question: The question asked of every tile.
        answer: The answer for the whole scene (counts after the merge).
        objects: Merged objects in scene pixels.
        georef: The scene's georeference, None for an image without one.
        plan: How the scene was read.
        tiles_run: Tiles the model answered.
        tiles_skipped: Tiles skipped as all no-data.
        model: The model's name.
        problems: Parse problems of the tiles' answers, with their window.
    """

    question: str
    answer: str
    objects: list[SceneObject]
    georef: Georef | None
    plan: ScenePlan
    tiles_run: int
    tiles_skipped: int
    model: str
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Objects per phrase (``unnamed`` for objects without one), in order of appearance."""
        return count_phrases(self.objects)


# ---------------------------------------------------------------------------------------------
# Reading the scene


@contextmanager
def open_scene(
    path: str | Path, gsd: float | None = None
) -> Iterator[tuple[DatasetReader, Georef | None, float | None]]:
    """Opens a scene for windowed reads.

    Args:
        path: A GeoTIFF/COG, or a PNG/JPEG (anything GDAL reads).
        gsd: Metres per pixel, for an image without a georeference (overrides nothing for a
            georeferenced one: its own GSD is used).

    Yields:
        The dataset, its georeference (None without one) and its GSD (None when unknown).

    Raises:
        FileNotFoundError: For a missing file.
        ImageError: For a file GDAL cannot read.
        SceneError: For a CRS without an EPSG code, or a GSD that is not positive.
    """
    if gsd is not None and not gsd > 0:
        raise SceneError(f"--gsd must be positive metres per pixel, got {gsd}")
    with imagery.open_raster(path) as dataset:
        georef = None
        if dataset.crs is not None:
            epsg = dataset.crs.to_epsg()
            if epsg is None:
                raise SceneError(
                    f"{path}: its CRS has no EPSG code ({dataset.crs.to_string()[:60]}...); "
                    "reproject it to an EPSG CRS first (gdalwarp -t_srs EPSG:...)"
                )
            georef = Georef(f"EPSG:{epsg}", tuple(dataset.transform)[:6])
        scene_gsd = georef.gsd_at(dataset.width / 2, dataset.height / 2) if georef else gsd
        yield dataset, georef, scene_gsd


def plan_scene(
    width: int,
    height: int,
    scene_gsd: float | None,
    native: NativeInput,
    overlap: float = DEFAULT_OVERLAP,
) -> ScenePlan:
    """Chooses the tile GSD and lays overlapping windows over a scene.

    The tiles' GSD is the scene's when it lies in the model's range, else the nearest end of
    the range; without a range or without a scene GSD, the scene's own pixels are used (said in
    the notes). Windows step by ``(1 - overlap)`` of a tile; the last one in a row or column is
    put against the scene's edge, and a scene smaller than a window is one smaller tile.

    Raises:
        SceneError: For an overlap outside ``[0, 0.9]``.
    """
    if not 0 <= overlap <= 0.9:
        raise SceneError(f"overlap must be in [0, 0.9] of a tile, got {overlap}")
    notes = [f"model input: {native.describe()}"]
    target = scene_gsd
    if scene_gsd is None:
        notes.append(
            f"the scene has no GSD (no georeference, no --gsd): read at its own pixels in "
            f"{native.image_size} px tiles"
        )
    elif native.gsd is None:
        notes.append(f"the model declares no GSD: read at the scene's {scene_gsd:.3g} m")
    else:
        target = min(max(scene_gsd, native.gsd[0]), native.gsd[1])
        notes.append(f"scene at {scene_gsd:.3g} m per pixel, read at {target:.3g} m")
    scale = 1.0 if target is None or scene_gsd is None else target / scene_gsd
    window = max(1, round(native.image_size * scale))  # scene pixels per tile side
    stride = max(1, round(window * (1 - overlap)))
    tiles = []
    rows, cols = _starts(height, window, stride), _starts(width, window, stride)
    for row in rows:
        for col in cols:
            w, h = min(window, width - col), min(window, height - row)
            size = (max(1, round(w / scale)), max(1, round(h / scale)))
            tiles.append(Tile((col, row, w, h), size))
    return ScenePlan(width, height, scene_gsd, target, tiles, notes)


def _starts(length: int, window: int, stride: int) -> list[int]:
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def read_tile(
    dataset: DatasetReader, resolved: ImagerySettings, tile: Tile, georef: Georef | None
) -> LoadedImage | None:
    """Reads one tile at the model's GSD; None when every pixel is no-data.

    Raises:
        ImageError: When the window cannot be read.
    """
    width, height = tile.size
    try:
        rgb, valid = imagery.read(
            dataset, resolved, tile.window, (height, width), Resampling.bilinear
        )
    except RasterioError as error:
        raise ImageError(f"window {list(tile.window)} cannot be read ({error})") from error
    if not valid.any():
        return None
    tile_georef = None
    if georef is not None:
        tile_georef = Georef(georef.crs, tuple(georef.affine @ tile.to_scene())[:6])
    image = Image.fromarray(rgb, mode="RGB")
    return LoadedImage(image, width, height, tile_georef, f"window {list(tile.window)}", resolved)


# ---------------------------------------------------------------------------------------------
# Running and merging


@dataclass
class _Piece:
    """One geometry of one tile, in scene pixels."""

    phrase: str | None
    kind: str
    polygon: BaseGeometry  # clipped to its window when cut
    quad: np.ndarray | None
    cut: bool
    sliver: bool  # cut, and under SLIVER tile pixels across its cut
    centrality: float  # distance from the object's centre to its tile's nearest edge, in px
    window: tuple[int, int, int, int]


def run_scene(
    assistant: Assistant,
    path: str | Path,
    question: str,
    *,
    gsd: float | None = None,
    native: NativeInput | None = None,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    merge_iou: float = MERGE_IOU,
    settings: ImagerySettings | None = None,
    max_new_tokens: int = 256,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[ScenePlan], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    gdal_cache_mb: int = DEFAULT_GDAL_CACHE_MB,
    on_tile: Callable[[Tile, Reply], None] | None = None,
) -> SceneResult:
    """Asks ``question`` about every tile of a scene and merges what they locate.

    Args:
        assistant: The engine (any backend).
        path: The scene (GeoTIFF/COG, or PNG/JPEG with ``gsd``).
        question: One user turn, asked of every tile.
        gsd: Metres per pixel of an image without a georeference.
        native: The model's input; None takes ``assistant.native_input``.
        overlap: Share of a tile that neighbouring tiles overlap.
        batch_size: Tiles read and answered together.
        merge_iou: IoU at which two views of one phrase are one object.
        settings: Bands, no-data and stretch; None takes the assistant's.
        max_new_tokens: Longest answer per tile.
        progress: Called with the number of tiles done after each batch.
        on_plan: Called with the plan before the first tile (e.g. to size a progress bar).
        cancel: Asked before each batch; True stops the run (nothing is returned).
        gdal_cache_mb: GDAL's block cache for the run, in MB (its default is 5 % of RAM).
        on_tile: Called with each answered tile and its reply (geometry in tile pixels:
            :meth:`Tile.points_to_scene` maps it), in plan order, before the merge.

    Raises:
        SceneCancelledError: When ``cancel`` returned True.
        FileNotFoundError, ImageError, SceneError: For a scene that cannot be run.
        SceneError: When the model's input size is unknown (pass ``native``).
    """
    if batch_size < 1:
        raise SceneError(f"batch_size must be >= 1, got {batch_size}")
    if gdal_cache_mb < 1:
        raise SceneError(f"the GDAL cache needs at least 1 MB, got {gdal_cache_mb}")
    native = native or assistant.native_input
    if native is None:
        raise SceneError(
            f"{assistant.model_name} does not say its input size; give the tile size "
            "(native=NativeInput(...))"
        )
    messages = [{"role": "user", "content": question}]
    pieces: list[_Piece] = []
    masks: dict[str | None, _MaskCanvas] = {}
    problems: list[str] = []
    run = skipped = 0
    with (
        rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb),
        open_scene(path, gsd) as (
            dataset,
            georef,
            scene_gsd,
        ),
    ):
        plan = plan_scene(dataset.width, dataset.height, scene_gsd, native, overlap)
        if on_plan is not None:
            on_plan(plan)
        try:
            resolved = imagery.resolve(dataset, settings or assistant.imagery)
        except RasterioError as error:
            raise ImageError(f"{path}: corrupt or unreadable raster ({error})") from error
        for start in range(0, len(plan.tiles), batch_size):
            if cancel is not None and cancel():
                raise SceneCancelledError(f"cancelled after {start} of {len(plan.tiles)} tiles")
            batch = plan.tiles[start : start + batch_size]
            loaded = [(tile, read_tile(dataset, resolved, tile, georef)) for tile in batch]
            valid = [(tile, image) for tile, image in loaded if image is not None]
            skipped += len(loaded) - len(valid)
            replies = assistant.chat_batch(
                [(image, messages) for _, image in valid], max_new_tokens=max_new_tokens
            )
            run += len(valid)
            for (tile, _), reply in zip(valid, replies, strict=True):
                problems += [f"window {list(tile.window)}: {p}" for p in reply.parsed.problems]
                # With SAM (the assistant's refiner) a tile's masks are refined before the merge.
                for obj in reply.refined_objects():
                    if obj.kind == "mask":
                        canvas = masks.setdefault(obj.phrase, _MaskCanvas(plan))
                        canvas.paste(tile, obj)
                    elif obj.kind in ("hbb", "quad"):
                        pieces.append(_piece(obj, tile, plan))
                if on_tile is not None:
                    on_tile(tile, reply)
            if progress is not None:
                progress(len(batch))
    objects = merge_pieces(pieces, merge_iou)
    for phrase, canvas in masks.items():
        objects += canvas.objects(phrase)
    answer = scene_answer(objects)
    return SceneResult(
        question, answer, objects, georef, plan, run, skipped, assistant.model_name, problems
    )


def _piece(obj: GroundedObject, tile: Tile, plan: ScenePlan) -> _Piece:
    """A tile's box or quad in scene pixels, whether an inner tile edge cuts it, and how thinly."""
    corners = np.asarray(obj.quad, dtype=np.float64)  # [4, 2] tile pixels
    scene_corners = tile.points_to_scene(corners)  # [4, 2]
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    width, height = tile.size
    col, row, w, h = tile.window
    # An edge of the tile cuts an object only where the scene goes on beyond it.
    cut_across_x = (x0 <= EDGE_TOLERANCE and col > 0) or (
        x1 >= width - EDGE_TOLERANCE and col + w < plan.width
    )
    cut_across_y = (y0 <= EDGE_TOLERANCE and row > 0) or (
        y1 >= height - EDGE_TOLERANCE and row + h < plan.height
    )
    # How much of it the tile shows across the edge that cuts it.
    sliver = (cut_across_x and min(x1, width) - max(x0, 0) < SLIVER) or (
        cut_across_y and min(y1, height) - max(y0, 0) < SLIVER
    )
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    centrality = min(cx, cy, width - cx, height - cy)
    polygon: BaseGeometry = quad_to_polygon(scene_corners)
    cut = cut_across_x or cut_across_y
    if cut:
        # A tile sees nothing beyond its window: the part of a cut piece's box (or rectangle)
        # past the edge is the box's shape, not the object's, so it is clipped there.
        polygon = polygon.intersection(_window_box(tile.window))
    return _Piece(
        obj.phrase, obj.kind, polygon, scene_corners, cut, sliver, centrality, tile.window
    )


def merge_pieces(pieces: Sequence[_Piece], merge_iou: float = MERGE_IOU) -> list[SceneObject]:
    """Merges the boxes and quads of all tiles into scene objects (see the module docs)."""
    objects = []
    for key in dict.fromkeys((p.phrase, p.kind) for p in pieces):
        group = [p for p in pieces if (p.phrase, p.kind) == key]
        for cluster in _clusters(group, merge_iou):
            if not all(piece.sliver for piece in cluster):
                objects.append(_merged(cluster))
    return objects


def _clusters(group: list[_Piece], merge_iou: float) -> list[list[_Piece]]:
    """Connected groups of pieces under "same object" (union-find)."""
    parent = list(range(len(group)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    polygons = np.array([p.polygon for p in group], dtype=object)
    # Only pieces that touch can be one object: a spatial index finds those pairs, so the work
    # and memory grow with the pieces, not with their square (a scene has many thousands).
    left, right = shapely.STRtree(polygons).query(polygons, predicate="intersects")
    pairs = left < right
    left, right = left[pairs], right[pairs]
    # Rotated IoU of the polygons themselves (never their axis-aligned hulls), one per pair.
    iou = _iou(polygons[left], polygons[right])
    # Where both windows see, two views of one object agree: the parts of the two pieces in
    # the windows' shared area overlap (the same area for two views inside it).
    windows = np.array([_window_box(p.window) for p in group], dtype=object)
    shared = shapely.intersection(windows[left], windows[right])
    agree = _iou(
        shapely.intersection(polygons[left], shared), shapely.intersection(polygons[right], shared)
    )
    for i, j, pair_iou, pair_agree in zip(left, right, iou, agree, strict=True):
        same = pair_iou >= merge_iou
        if not same and group[i].window != group[j].window:
            same = pair_agree >= AGREE_IOU
        if same:
            parent[root(i)] = root(j)
    clusters: dict[int, list[_Piece]] = {}
    for i, piece in enumerate(group):
        clusters.setdefault(root(i), []).append(piece)
    return list(clusters.values())


def _iou(polygons_a: np.ndarray, polygons_b: np.ndarray) -> np.ndarray:
    """IoU of two arrays of polygons, pair by pair (0 where both are empty)."""
    overlap = shapely.area(shapely.intersection(polygons_a, polygons_b))
    union = shapely.area(polygons_a) + shapely.area(polygons_b) - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def _nearest_cells(
    windows: list[tuple[int, int, int, int]],
) -> dict[tuple[int, int, int, int], BaseGeometry]:
    """Each window's part that is nearer its centre than any other of ``windows``' centres."""
    boxes = {window: _window_box(window) for window in windows}
    centres = {window: np.asarray(box.centroid.coords[0]) for window, box in boxes.items()}
    reach = 4 * max(max(w[2], w[3]) for w in windows)  # beyond every window: a half-plane
    cells = {}
    for window, cell in boxes.items():
        for other in windows:
            if other == window:
                continue
            # The half-plane of points nearer this centre: from the bisector back past the window.
            towards = centres[other] - centres[window]
            if not towards.any():
                continue
            towards = towards / np.hypot(*towards)
            across = np.array([-towards[1], towards[0]])
            middle = (centres[window] + centres[other]) / 2
            half_plane = shapely.Polygon(
                [
                    middle + reach * across,
                    middle - reach * across,
                    middle - reach * across - reach * towards,
                    middle + reach * across - reach * towards,
                ]
            )
            cell = cell.intersection(half_plane)
        cells[window] = cell
    return cells


def _merged(cluster: list[_Piece]) -> SceneObject:
    first = cluster[0]
    windows = list(dict.fromkeys(p.window for p in cluster))
    whole = [p for p in cluster if not p.cut]
    # A whole view that covers every cut piece already is the object; else the union is.
    best = max(whole, key=lambda p: p.centrality) if whole else None
    if best is not None and all(
        p.polygon.intersection(best.polygon).area >= COVERED * p.polygon.area for p in cluster
    ):
        quad = best.quad
    else:
        polygons = [p.polygon for p in cluster]
        if first.kind == "quad":
            # A rectangle drawn around a cut part overshoots the part, into windows that saw
            # that area themselves: each piece stands for its object where its window is the
            # nearest of the cluster's (a window that missed the object is not in it). A box
            # needs no such limit: the union's bounds are the parts' bounds.
            cells = _nearest_cells(windows)
            polygons = [p.polygon.intersection(cells[p.window]) for p in cluster]
        union = shapely.union_all(polygons)
        if union.is_empty:
            # Degenerate pieces (a zero-width box) have empty polygons: their corners remain.
            union = shapely.MultiPoint(
                np.concatenate([p.quad for p in cluster if p.quad is not None])
            )
        if first.kind == "hbb":
            x0, y0, x1, y1 = union.bounds
            quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        else:
            quad = min_area_rect(union)
    corners = np.asarray(quad, dtype=float)  # [4, 2]
    return SceneObject(
        first.phrase,
        first.kind,
        quad_to_polygon(corners),  # empty for a degenerate box: its corners say where it is
        [*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist()],
        corners.tolist(),
        None,  # the grammar carries no confidence
        windows,
    )


class _MaskCanvas:
    """One phrase's masks stitched over the scene at the model's resolution."""

    def __init__(self, plan: ScenePlan) -> None:
        scale = 1.0 if plan.gsd is None or plan.scene_gsd is None else plan.gsd / plan.scene_gsd
        self.scale = scale
        self.pixels = np.zeros(
            (max(1, math.ceil(plan.height / scale)), max(1, math.ceil(plan.width / scale))),
            dtype=np.uint8,
        )
        self.windows: list[tuple[int, int, int, int]] = []

    def paste(self, tile: Tile, obj: GroundedObject) -> None:
        if obj.mask is None:
            raise ValueError("only a mask object is pasted into a scene mask")
        mask = rle_to_mask(obj.mask)  # [h, w] tile pixels
        col, row = round(tile.window[0] / self.scale), round(tile.window[1] / self.scale)
        height = min(mask.shape[0], self.pixels.shape[0] - row)
        width = min(mask.shape[1], self.pixels.shape[1] - col)
        self.pixels[row : row + height, col : col + width] |= mask[:height, :width]
        self.windows.append(tile.window)

    def objects(self, phrase: str | None) -> list[SceneObject]:
        """Each 4-connected region of the stitched mask, as a polygon in scene pixels."""
        transform = Affine.scale(self.scale)
        found = []
        for geometry, _ in features.shapes(
            self.pixels, mask=self.pixels > 0, connectivity=4, transform=transform
        ):
            polygon = shapely.geometry.shape(geometry)
            windows = [w for w in dict.fromkeys(self.windows) if polygon.intersects(_window_box(w))]
            found.append(
                SceneObject(phrase, "mask", polygon, list(polygon.bounds), None, None, windows)
            )
        return found


def _window_box(window: tuple[int, int, int, int]) -> BaseGeometry:
    col, row, width, height = window
    return shapely_box(col, row, col + width, row + height)


def scene_answer(objects: Sequence[SceneObject]) -> str:
    """The whole scene's answer from the merged objects: a count per phrase, or nothing found."""
    if not objects:
        return "Nothing found in the scene."
    parts = "; ".join(f"{phrase}: {count}" for phrase, count in count_phrases(objects).items())
    return f"{len(objects)} object{'s' if len(objects) != 1 else ''} in the scene ({parts})."


def count_phrases(objects: Sequence[SceneObject]) -> dict[str, int]:
    """Objects per phrase (``unnamed`` for objects without one), in order of appearance."""
    counts: dict[str, int] = {}
    for obj in objects:
        key = obj.phrase or UNNAMED
        counts[key] = counts.get(key, 0) + 1
    return counts
