"""The OSM pipeline: georeferenced imagery + OpenStreetMap -> tiles with pixel truth -> records.

Flow, per source (rasters + one OSM file):

1. open the rasters (corrupt files and CRS mismatches are counted and skipped);
2. read the OSM features the tag table keeps, within the rasters' lon/lat box;
3. per raster: draw footprints in metres, carry them to the raster's CRS, plan tile windows,
   give each tile its split by area (see :func:`data_builders.tiling.area_split`; tiles that
   straddle blocks of two splits are dropped), and group tiles into shard jobs;
4. run the jobs (in this process, a process pool, or Ray Data): each reads its tiles, clips
   the footprints to pixel truth, writes PNGs, calls ``generate`` for records and commits
   its shards atomically (:mod:`data_builders.shards`);
5. sum the jobs' counts into ``summary.json`` and write the final ``manifest.json``.

Jobs are deterministic (ids, contents and the random generator of each tile), so any engine
and worker count, and any interrupted-then-resumed build, give the same files.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from PIL import Image
from pyproj import Transformer
from rasterio.errors import RasterioError
from tqdm import tqdm

from geochat.data_builders import shards
from geochat.data_builders.build_summary import Planning, bump, manifest_counts, summarise
from geochat.data_builders.osm import OsmError, OsmFeature, read_features, reproject
from geochat.data_builders.tags import TagTable, load_tag_table
from geochat.data_builders.tile import Tile
from geochat.data_builders.tiling import (
    Footprint,
    RasterError,
    RasterInfo,
    TileWindow,
    area_split,
    metric_bounds,
    open_raster,
    plan_windows,
    raster_bounds,
    read_tile,
    tile_objects,
)
from geochat.fileio import atomic_path
from geochat.imagery import ImagerySettings
from geochat.ray_session import ray_session
from geochat.records import Record, check_record

Generate = Callable[[Tile, np.random.Generator, Mapping[str, Any]], list[Record]]
DEFAULT_GENERATOR = "geochat.data_builders.tasks:generate_records"
ENGINES = ("process", "ray")
# zlib level 3: about 4x faster than the default 6 for about 3% larger PNGs (synthetic tiles).
_PNG_COMPRESSION = 3
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Source:
    """Rasters and the OSM file that maps them.

    Attributes:
        imagery: GeoTIFFs (or any georeferenced raster GDAL reads).
        osm: ``.osm.pbf``, ``.osm`` or ``.geojson``.
    """

    imagery: tuple[str, ...]
    osm: str


@dataclass(frozen=True)
class BuildOptions:
    """Everything that decides a build's output (recorded in the manifest).

    Attributes:
        tile_size: Tile side in pixels.
        overlap: Pixels shared by neighbouring tiles.
        gsd: Resample to this many metres per pixel; None keeps each raster's own.
        seed: Seed of the split hash and of every tile's record generator.
        val_fraction: Share of area blocks in the validation split.
        test_fraction: Share of area blocks in the test split.
        split_block_m: Side of the square area blocks that decide splits, in metres.
        max_tile_nodata: Tiles with a larger no-data share are dropped.
        max_object_nodata: Objects with a larger share of their pixels on no-data are dropped.
        imagery: Band choice, no-data and stretch of the rasters (:mod:`geochat.imagery`),
            recorded in the manifest; training copies them into the checkpoint.
        shard_tiles: Tiles per shard job (the unit of resume).
        tags: Tag table file; None is the bundled ``tags.yaml``.
        task_options: Passed to ``generate`` as its ``options``.
    """

    tile_size: int = 512
    overlap: int = 64
    gsd: float | None = None
    seed: int = 0
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    split_block_m: float = 1000.0
    max_tile_nodata: float = 0.5
    max_object_nodata: float = 0.5
    imagery: ImagerySettings = field(default_factory=ImagerySettings)
    shard_tiles: int = 16
    tags: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raises ValueError naming the first option out of range."""
        if self.tile_size <= 0 or not 0 <= self.overlap < self.tile_size:
            raise ValueError(
                f"need tile_size > 0 and 0 <= overlap < tile_size, got {self.tile_size} "
                f"and {self.overlap}"
            )
        if self.gsd is not None and self.gsd <= 0:
            raise ValueError(f"gsd must be positive, got {self.gsd}")
        if (
            min(self.val_fraction, self.test_fraction) < 0
            or self.val_fraction + self.test_fraction > 1
        ):
            raise ValueError("val_fraction and test_fraction must be >= 0 and sum to at most 1")
        if self.split_block_m <= 0 or self.shard_tiles <= 0:
            raise ValueError("split_block_m and shard_tiles must be positive")
        for name in ("max_tile_nodata", "max_object_nodata"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")


@dataclass(frozen=True)
class PlannedTile:
    """A tile window with its split and the indexes of the footprints that may touch it."""

    window: TileWindow
    split: str
    candidates: tuple[int, ...]


@dataclass(frozen=True)
class ShardJob:
    """One unit of work: a group of tiles of one raster, with what they need."""

    index: int
    out_dir: str
    osm: str
    raster: RasterInfo
    tiles: tuple[PlannedTile, ...]
    footprints: tuple[Footprint, ...]
    options: BuildOptions
    generate: Generate


def build(
    sources: Iterable[Source],
    out_dir: str | Path,
    options: BuildOptions | None = None,
    *,
    generate: Generate | None = None,
    workers: int | None = None,
    engine: str = "process",
    overwrite: bool = False,
    progress: bool = True,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Builds (or resumes) a record dataset from imagery and OSM.

    Args:
        sources: Rasters and the OSM file of each group.
        out_dir: Build folder (see :mod:`data_builders.shards` for its layout).
        options: What to build; defaults to :class:`BuildOptions`.
        generate: ``generate(tile, rng, options) -> list[record]``, a module-level function
            (workers import it by name); None loads ``DEFAULT_GENERATOR``, the task
            generators.
        workers: Parallel jobs; None uses every CPU, 1 runs in this process.
        engine: ``"process"`` (a process pool) or ``"ray"`` (Ray Data).
        overwrite: Remove a previous build in ``out_dir`` first.
        progress: Show a tqdm bar.
        ray_address: Ray cluster address for ``engine="ray"``; None starts a local Ray.

    Returns:
        The summary (also saved as ``summary.json``).

    Raises:
        ValueError: for bad options or engine.
        data_builders.shards.BuildDirectoryError: if ``out_dir`` holds another build.
    """
    options = options or BuildOptions()
    options.check()
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    sources = [Source(tuple(map(str, s.imagery)), str(s.osm)) for s in sources]
    table = load_tag_table(options.tags)
    generate = generate or load_generator(DEFAULT_GENERATOR)
    keys = _raster_keys([path for source in sources for path in source.imagery])
    arguments = _arguments(sources, options, table, generate)
    out_dir = Path(out_dir)
    done = shards.completed_jobs(out_dir) if shards.prepare(out_dir, arguments, overwrite) else {}
    planning = Planning()
    plans = _plan_rasters(sources, keys, options, planning)
    jobs = _plan_jobs(sources, plans, table, options, str(out_dir), generate, planning)
    total = sum(len(plan.tiles) for plan in plans)
    with tqdm(total=total, unit="tile", disable=not progress, desc="geochat build") as bar:

        def pending() -> Iterator[ShardJob]:
            for job in jobs:
                if job.index in done:
                    bar.update(len(job.tiles))
                else:
                    yield job

        for entry in _execute(pending(), workers or os.cpu_count() or 1, engine, ray_address):
            done[entry["index"]] = entry
            bar.update(entry["tiles"])
    summary = summarise(planning, [done[index] for index in sorted(done)])
    shards.write_json(out_dir / shards.SUMMARY, summary)
    shards.finish(out_dir, arguments, list(done.values()), manifest_counts(summary))
    return summary


@dataclass(frozen=True)
class _RasterPlan:
    """A raster's tiles (with their splits) before the OSM data is read."""

    source: int
    info: RasterInfo
    tiles: tuple[tuple[TileWindow, str], ...]


def _plan_rasters(
    sources: list[Source], keys: dict[str, str], options: BuildOptions, planning: Planning
) -> list[_RasterPlan]:
    """Opens every raster, plans its tiles and splits them by area; failures are recorded."""
    fractions = {"val": options.val_fraction, "test": options.test_fraction}
    plans = []
    for source_index, source in enumerate(sources):
        for path in source.imagery:
            try:
                info = open_raster(path, keys[path], options.imagery)
                windows = plan_windows(info, options.tile_size, options.overlap, options.gsd)
            except RasterError as error:
                planning.error(error.kind, path, str(error))
                continue
            tiles = []
            for window in windows:
                bounds = metric_bounds(info, window)
                split = area_split(
                    bounds, info.metric_crs, options.split_block_m, options.seed, fractions
                )
                if split is None:
                    bump(planning.counts, "tiles", "dropped", "split_border")
                else:
                    tiles.append((window, split))
                bump(planning.counts, "tiles", "planned")
            plans.append(_RasterPlan(source_index, info, tuple(tiles)))
    return plans


def _plan_jobs(
    sources: list[Source],
    plans: list[_RasterPlan],
    table: TagTable,
    options: BuildOptions,
    out_dir: str,
    generate: Generate,
    planning: Planning,
) -> Iterator[ShardJob]:
    """Reads each source's OSM data once and yields its rasters' shard jobs, in a fixed order."""
    index = 0
    for source_index, source in enumerate(sources):
        source_plans = [plan for plan in plans if plan.source == source_index]
        features = _read_source(source, source_plans, table, planning) if source_plans else None
        if features is None:
            continue
        lonlat_tree = shapely.STRtree([feature.geometry for feature in features])
        for plan in source_plans:
            nearby = [
                features[i]
                for i in sorted(lonlat_tree.query(shapely.box(*plan.info.lonlat_bounds)))
            ]
            footprints = _footprints(nearby, plan.info)
            if not footprints:
                planning.error(
                    "no_intersection", plan.info.path, _no_intersection(source, plan.info)
                )
                continue
            tree = shapely.STRtree([footprint.geometry for footprint in footprints])
            for chunk in _chunks(plan.tiles, options.shard_tiles):
                yield _shard_job(
                    index, chunk, footprints, tree, plan.info, source, options, out_dir, generate
                )
                index += 1


def _read_source(
    source: Source, plans: list[_RasterPlan], table: TagTable, planning: Planning
) -> list[OsmFeature] | None:
    """Reads the features within the rasters' lon/lat box; a broken file is recorded, None."""
    boxes = np.array([plan.info.lonlat_bounds for plan in plans])
    box = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
    try:
        read = read_features(source.osm, table, box)
    except OsmError as error:
        planning.error("broken_osm", source.osm, f"{error} (its {len(plans)} raster(s) skipped)")
        return None
    for feature in read.features:
        bump(planning.counts, "features", "read", feature.rule.category)
    for reason, count in read.skipped.items():
        bump(planning.counts, "features", "skipped", reason, by=count)
    return read.features


def _footprints(features: list[OsmFeature], info: RasterInfo) -> list[Footprint]:
    """Draws features' footprints in metres and carries them to the raster's CRS."""
    to_metric = Transformer.from_crs("EPSG:4326", info.metric_crs, always_xy=True)
    to_raster = None
    if info.metric_crs != info.crs:
        to_raster = Transformer.from_crs(info.metric_crs, info.crs, always_xy=True)
    frame = shapely.box(*raster_bounds(info))
    footprints = []
    for feature in features:
        shape = feature.rule.footprint(
            feature.kind, reproject(feature.geometry, to_metric), feature.tags
        )
        if to_raster is not None:
            shape = reproject(shape, to_raster)
        if not shape.is_valid:
            shape = shapely.make_valid(shape)  # so that clipping to tiles cannot fail
        if shape.is_empty or not shape.intersects(frame):
            continue
        rule = feature.rule
        footprints.append(
            Footprint(
                feature.id,
                rule.category,
                feature.tags,
                rule.phrases(feature.tags),
                rule.max_gsd,
                rule.min_pixels,
                shape,
            )
        )
    return footprints


def _shard_job(
    index: int,
    chunk: tuple[tuple[TileWindow, str], ...],
    footprints: list[Footprint],
    tree: shapely.STRtree,
    info: RasterInfo,
    source: Source,
    options: BuildOptions,
    out_dir: str,
    generate: Generate,
) -> ShardJob:
    """Packs a group of tiles with only the footprints they touch (what a worker receives)."""
    candidates = [sorted(tree.query(shapely.box(*window.bounds()))) for window, _ in chunk]
    used = sorted({i for found in candidates for i in found})
    position = {footprint_index: n for n, footprint_index in enumerate(used)}
    tiles = tuple(
        PlannedTile(window, split, tuple(position[i] for i in found))
        for (window, split), found in zip(chunk, candidates, strict=True)
    )
    return ShardJob(
        index,
        out_dir,
        source.osm,
        info,
        tiles,
        tuple(footprints[i] for i in used),
        options,
        generate,
    )


def run_shard(job: ShardJob) -> dict[str, Any]:
    """Runs one shard job: tiles -> truth -> PNGs -> records -> committed shard.

    Returns:
        The job's manifest entry (see :func:`data_builders.shards.commit_shard`) plus
        ``"tiles"``, the number of tiles it covered.
    """
    stats: dict[str, Any] = {}
    records: list[Record] = []
    try:
        dataset = rasterio.open(job.raster.path)
    except RasterioError as error:
        bump(stats, "tiles", "dropped", "unreadable", by=len(job.tiles))
        _tile_error(stats, job, f"cannot open raster {job.raster.path}: {error}")
    else:
        with dataset:
            for planned in job.tiles:
                records += _run_tile(dataset, job, planned, stats)
    entry = shards.commit_shard(job.out_dir, job.index, records, stats)
    return {**entry, "tiles": len(job.tiles)}


def _run_tile(
    dataset: Any, job: ShardJob, planned: PlannedTile, stats: dict[str, Any]
) -> list[Record]:
    window, options = planned.window, job.options
    try:
        rgb, valid = read_tile(dataset, job.raster, window)
    except RasterError as error:
        bump(stats, "tiles", "dropped", "unreadable")
        _tile_error(stats, job, str(error))
        return []
    if 1.0 - valid.mean() > options.max_tile_nodata:
        bump(stats, "tiles", "dropped", "nodata")
        return []
    footprints = [job.footprints[i] for i in planned.candidates]
    objects, dropped = tile_objects(footprints, window, valid, options.max_object_nodata)
    image = f"{shards.IMAGES_DIR}/{window.id}.png"
    _write_png(Path(job.out_dir) / image, rgb)
    tile = Tile(
        image=image,
        width=window.width,
        height=window.height,
        objects=objects,
        gsd=round(window.gsd_m, 6),
        georef={"crs": job.raster.crs, "transform": list(window.transform)},
        source={
            "raster": job.raster.path,
            "osm": job.osm,
            "tile": window.id,
            "window": list(window.window),
        },
        split=planned.split,
    )
    records = job.generate(tile, _tile_rng(options.seed, window.id), _task_options(options))
    for record in records:
        record.setdefault("split", tile.split)
        check_record(record)
    _count_tile(stats, tile, records, dropped)
    return records


def _tile_error(stats: dict[str, Any], job: ShardJob, message: str) -> None:
    stats.setdefault("errors", []).append(
        {"kind": "unreadable_tile", "path": job.raster.path, "message": message}
    )


def _task_options(options: BuildOptions) -> dict[str, Any]:
    """The generator's options; a custom tag table is passed on so both read the same one."""
    if options.tags is None or "tags" in options.task_options:
        return dict(options.task_options)
    return {"tags": options.tags, **options.task_options}


def _count_tile(stats: dict[str, Any], tile: Tile, records: list[Record], dropped: Counter) -> None:
    bump(stats, "tiles", "written")
    for obj in tile.objects:
        bump(stats, "objects", "kept", obj.category)
        bump(stats, "objects", "truncated", by=int(obj.truncated))
    for (reason, category), count in dropped.items():
        bump(stats, "objects", "dropped", reason, category, by=count)
    for record in records:
        bump(stats, "records", "total")
        bump(stats, "records", "by_task", record["task"])
        bump(stats, "records", "by_split", record["split"])
        for category in sorted({obj["category"] for obj in record.get("objects", [])}):
            bump(stats, "records", "by_category", category)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        Image.fromarray(rgb).save(temporary, format="PNG", compress_level=_PNG_COMPRESSION)


def _tile_rng(seed: int, tile_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the tile, never on the worker or order."""
    digest = hashlib.sha256(tile_id.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "big")])


def _execute(
    jobs: Iterator[ShardJob], workers: int, engine: str, ray_address: str | None
) -> Iterator[dict[str, Any]]:
    """Runs jobs and yields their entries as they finish."""
    if engine == "ray":
        yield from _run_ray(jobs, workers, ray_address)
    elif workers <= 1:
        yield from map(run_shard, jobs)
    else:
        yield from _run_pool(jobs, workers)


def _run_pool(jobs: Iterator[ShardJob], workers: int) -> Iterator[dict[str, Any]]:
    """A process pool with a bounded queue, so planning never runs far ahead of the workers."""
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: set[Future] = set()
    try:
        for job in jobs:
            pending.add(pool.submit(run_shard, job))
            if len(pending) >= 2 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in finished)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(
    jobs: Iterator[ShardJob], workers: int, address: str | None
) -> Iterator[dict[str, Any]]:
    """Runs the same jobs as Ray Data tasks, a batch of datasets at a time (memory stays flat).

    With ``address`` (a cluster), the build folder must be on storage every node shares.
    """
    from ray import cloudpickle

    # Our tqdm bar reports progress; Ray Data's own bars and INFO lines would garble it.
    with ray_session(address, workers) as ray:
        for chunk in _chunks(jobs, 4 * workers):
            items = [{"job": cloudpickle.dumps(job)} for job in chunk]
            dataset = ray.data.from_items(items).map(_ray_run_shard)
            for row in dataset.iter_rows():
                yield json.loads(row["entry"])


def _ray_run_shard(row: dict[str, Any]) -> dict[str, Any]:
    from ray import cloudpickle

    return {"entry": json.dumps(run_shard(cloudpickle.loads(row["job"])))}


def _arguments(
    sources: list[Source], options: BuildOptions, table: TagTable, generate: Generate
) -> dict[str, Any]:
    return {
        "sources": [asdict(source) for source in sources],
        "options": asdict(options),
        "tag_table": {"version": table.version, "digest": table.digest},
        "generate": generator_name(generate),
    }


def generator_name(generate: Generate) -> str:
    """``module:qualified.name`` of a generator (recorded in the manifest)."""
    qualname = getattr(generate, "__qualname__", type(generate).__qualname__)
    return f"{generate.__module__}:{qualname}"


def load_generator(name: str) -> Generate:
    """Imports a generator named ``module:function``.

    Raises:
        ValueError: if the name is malformed or the module or function cannot be found.
    """
    module_name, separator, attribute = name.partition(":")
    if not separator or not module_name or not attribute:
        raise ValueError(f"a generator is named module:function, got {name!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load the record generator {name!r}: {error}") from error
    if not callable(target):
        raise ValueError(f"the record generator {name!r} is not callable")
    return target


def _raster_keys(paths: list[str]) -> dict[str, str]:
    """Short unique names for tile ids: each path relative to the rasters' common folder."""
    if len(set(paths)) != len(paths):
        raise ValueError(
            f"a raster is given twice: {sorted(p for p in paths if paths.count(p) > 1)}"
        )
    resolved = {path: Path(path).resolve() for path in paths}
    common = Path(os.path.commonpath([p.parent for p in resolved.values()])) if resolved else Path()
    keys = {}
    for path, full in resolved.items():
        relative = full.relative_to(common).with_suffix("")
        keys[path] = _UNSAFE.sub("_", "-".join(relative.parts))
    if len(set(keys.values())) != len(keys):
        raise ValueError(f"two rasters give the same tile names: {sorted(paths)}")
    return keys


def _no_intersection(source: Source, info: RasterInfo) -> str:
    west, south, east, north = info.lonlat_bounds
    return (
        f"no OSM feature of the tag table in {source.osm} lies on raster {info.path} "
        f"(lon/lat {west:.5f}, {south:.5f}, {east:.5f}, {north:.5f}); "
        "is it the wrong OSM extract, or does the raster declare the wrong CRS?"
    )


def _chunks(items: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk
