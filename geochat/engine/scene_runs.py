"""Many scenes in one run: in this process, or on Ray Data with one model replica per actor.

Each scene gets its own output folder (:mod:`geochat.engine.scene_output`'s files, then
``run.json``: the question and every option that shapes the answer, written last). A scene whose
folder already holds every output of the same run (same question, model, SAM checkpoint and
reading options) is skipped, so an interrupted run resumes where it stopped. Both engines run
each scene through the same :func:`run_job`, so they write the same bytes.

On Ray, scenes are rows of a Ray Data dataset mapped by an actor pool
(:class:`SceneActor`): each actor loads the model once (on its own GPU when ``num_gpus`` is 1,
or as a client of a vLLM server) and writes each scene's files itself, atomically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geochat.engine.assistant import Assistant, BackendError
from geochat.engine.scene import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GDAL_CACHE_MB,
    DEFAULT_OVERLAP,
    MERGE_IOU,
    SceneError,
    ScenePlan,
    run_scene,
)
from geochat.engine.scene_output import FILES, scene_files, write_scene
from geochat.fileio import atomic_write_bytes
from geochat.ray_session import ray_session

RUN_FILE = "run.json"
SCENE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".vrt")


@dataclass(frozen=True)
class SceneOptions:
    """How every scene of a run is read and answered (:func:`run_scene`'s options).

    Attributes:
        question: The question asked of every tile.
        gsd: Metres per pixel of images without a georeference.
        overlap: Share of a tile that neighbouring tiles overlap.
        batch_size: Tiles answered together.
        merge_iou: IoU at which two views of one phrase are one object.
        max_new_tokens: Longest answer per tile.
        imagery: Bands, preset, stretch and fill asked for, put over the model's own settings
            (:meth:`~geochat.imagery.ImagerySettings.updated`'s arguments; None keeps).
        gdal_cache_mb: GDAL's block cache while a scene is read, in MB.
        answered_by: What answers, as it was asked for (model, base, backend, SAM checkpoint):
            a folder's outputs belong to this run only when they were answered the same way.
    """

    question: str
    gsd: float | None = None
    overlap: float = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE
    merge_iou: float = MERGE_IOU
    max_new_tokens: int = 256
    imagery: dict[str, Any] = field(default_factory=dict)
    gdal_cache_mb: int = DEFAULT_GDAL_CACHE_MB
    answered_by: dict[str, str | None] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """What ``run.json`` records: the options that change a scene's outputs.

        The batch size and GDAL's cache change only how fast a scene runs, so a scene finished
        with other values of them is still finished.
        """
        return {
            name: value
            for name, value in asdict(self).items()
            if name not in ("batch_size", "gdal_cache_mb")
        }


@dataclass(frozen=True)
class SceneJob:
    """One scene and the folder its files go to."""

    scene: str
    out: str


@dataclass
class SceneOutcome:
    """What became of one scene.

    Attributes:
        scene: The scene file.
        out: Its output folder.
        status: ``"done"``, ``"skipped"`` (its outputs were all present) or ``"failed"``.
        answer: The whole scene's answer (done and skipped scenes).
        tiles_run: Tiles the model answered (done scenes).
        tiles_skipped: Tiles skipped as no-data (done scenes).
        problems: Parse problems of the tiles' answers (done scenes).
        georeferenced: Whether the scene has a georeference.
        written: The files written, by name.
        error: Why it failed, one sentence.
    """

    scene: str
    out: str
    status: str
    answer: str = ""
    tiles_run: int = 0
    tiles_skipped: int = 0
    problems: int = 0
    georeferenced: bool = False
    written: list[str] = field(default_factory=list)
    error: str = ""


def find_scenes(images: Sequence[str | Path]) -> list[Path]:
    """The scene files of ``images``: files as given, folders by their scene files (sorted).

    Raises:
        FileNotFoundError: For a path that does not exist.
        SceneError: For a folder without scenes, or two scenes of the same name (their output
            folders would collide).
    """
    scenes: list[Path] = []
    for image in map(Path, images):
        if image.is_dir():
            found = sorted(p for p in image.iterdir() if p.suffix.lower() in SCENE_SUFFIXES)
            if not found:
                raise SceneError(f"no scene files ({', '.join(SCENE_SUFFIXES)}) in {image}")
            scenes += found
        elif image.is_file():
            scenes.append(image)
        else:
            raise FileNotFoundError(f"no such image: {image}")
    names: dict[str, Path] = {}
    for scene in scenes:
        if scene.stem in names:
            raise SceneError(
                f"{names[scene.stem]} and {scene} would share the output folder {scene.stem}; "
                "rename one"
            )
        names[scene.stem] = scene
    return scenes


def scene_jobs(scenes: Sequence[Path], out: str | Path, separate: bool) -> list[SceneJob]:
    """Each scene's job: its folder is ``out/<scene name>`` when ``separate``, else ``out``."""
    return [
        SceneJob(str(scene), str(Path(out) / scene.stem) if separate else str(out))
        for scene in scenes
    ]


def finished(job: SceneJob, options: SceneOptions) -> SceneOutcome | None:
    """The outcome of a scene whose folder holds all the outputs of this run, else None.

    ``run.json`` must record the same options (:meth:`SceneOptions.fingerprint`): another
    question, model or SAM checkpoint is another run. The GeoPackage is expected only where
    ``objects.json`` records a CRS.
    """
    out = Path(job.out)
    try:
        run = json.loads((out / RUN_FILE).read_text())
        document = json.loads((out / "objects.json").read_text())
        answer = (out / "answer.txt").read_text().rstrip("\n")
    except (OSError, ValueError):
        return None
    # Through JSON, as written: tuples become lists, keys strings.
    if run != json.loads(json.dumps(options.fingerprint())) or not isinstance(document, dict):
        return None
    georeferenced = document.get("crs") is not None
    expected = [name for name in FILES if georeferenced or name != "scene.gpkg"]
    if not all((out / name).is_file() for name in expected):
        return None
    return SceneOutcome(job.scene, job.out, "skipped", answer, georeferenced=georeferenced)


def run_job(
    assistant: Assistant,
    job: SceneJob,
    options: SceneOptions,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[ScenePlan], None] | None = None,
) -> SceneOutcome:
    """Runs one scene and writes its files; a scene that cannot be run fails alone.

    Args:
        assistant: The engine (any backend).
        job: The scene and its folder.
        options: How it is read and answered.
        progress: Called with the number of tiles done after each batch.
        on_plan: Called with the plan before the first tile.
    """
    try:
        settings = assistant.imagery.updated(**options.imagery)
        result = run_scene(
            assistant,
            job.scene,
            options.question,
            gsd=options.gsd,
            overlap=options.overlap,
            batch_size=options.batch_size,
            merge_iou=options.merge_iou,
            settings=settings,
            max_new_tokens=options.max_new_tokens,
            progress=progress,
            on_plan=on_plan,
            gdal_cache_mb=options.gdal_cache_mb,
        )
        files = scene_files(result, job.scene, settings, options.gsd)
        written = write_scene(result, job.out, files)
        # run.json goes last: a folder holding it holds every file of this run.
        run = (json.dumps(options.fingerprint(), indent=1) + "\n").encode()
        atomic_write_bytes(Path(job.out) / RUN_FILE, run)
        written.append(Path(job.out) / RUN_FILE)
    except (OSError, ValueError, BackendError) as error:
        return SceneOutcome(job.scene, job.out, "failed", error=str(error))
    return SceneOutcome(
        job.scene,
        job.out,
        "done",
        result.answer,
        result.tiles_run,
        result.tiles_skipped,
        len(result.problems),
        result.georef is not None,
        [path.name for path in written],
    )


def run_local(
    jobs: Iterable[SceneJob],
    load_model: Callable[[], Assistant],
    options: SceneOptions,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[ScenePlan], None] | None = None,
) -> Iterator[SceneOutcome]:
    """Runs the scenes one after another in this process, with one model."""
    assistant = load_model()
    try:
        for job in jobs:
            yield run_job(assistant, job, options, progress, on_plan)
    finally:
        assistant.close()


class SceneActor:
    """A Ray Data actor: one model replica that runs the scenes of the rows it is given."""

    def __init__(self, load_model: Callable[[], Assistant], options: SceneOptions) -> None:
        self.assistant = load_model()
        self.options = options

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """Runs the batch's scenes; their outcomes as JSON, one per row."""
        outcomes = []
        for scene, out in zip(batch["scene"], batch["out"], strict=True):
            outcome = run_job(self.assistant, SceneJob(str(scene), str(out)), self.options)
            outcomes.append(json.dumps(asdict(outcome)))
        return {"outcome": outcomes}


def run_ray(
    jobs: Sequence[SceneJob],
    load_model: Callable[[], Assistant],
    options: SceneOptions,
    workers: int = 1,
    num_gpus: float = 0,
    address: str | None = None,
) -> Iterator[SceneOutcome]:
    """Runs the scenes on Ray Data: an actor pool of ``workers`` model replicas.

    Args:
        jobs: The scenes and their folders (on storage every node shares, on a cluster).
        load_model: Builds the model in each actor (pickled to it: a ``functools.partial`` of
            :func:`geochat.engine.load`).
        options: How every scene is read and answered.
        workers: Actors, each with its own model.
        num_gpus: GPUs per actor (1 for a local model on CUDA, 0 on CPU or for vLLM clients).
        address: A Ray cluster's address; None starts a local Ray with ``workers`` CPUs (or
            joins the one this process already started).

    Yields:
        Each scene's outcome, as the actors finish them.
    """
    if workers < 1:
        raise SceneError(f"workers must be >= 1, got {workers}")
    if not jobs:
        return
    # The summary reports progress; Ray Data's own bars and INFO lines would garble stderr.
    with ray_session(address, workers, logging.ERROR) as ray:
        dataset = ray.data.from_items([asdict(job) for job in jobs]).map_batches(
            SceneActor,
            fn_constructor_kwargs={"load_model": load_model, "options": options},
            batch_size=1,  # a scene is already many batches of tiles
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(jobs))),
            num_cpus=1,
            num_gpus=num_gpus,
        )
        for row in dataset.iter_rows():
            yield SceneOutcome(**json.loads(row["outcome"]))
