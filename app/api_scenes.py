"""Scene jobs of the REST API: a whole scene is asked about in the background.

- ``POST /v1/scenes``: ``multipart/form-data`` with the scene as the file field ``image`` (a
  GeoTIFF/COG, or a PNG/JPEG with ``gsd``; at most ``max_scene_bytes``, else 413) and the
  fields of :class:`~geochat.app.schemas.SceneParams`; answers 202 with the job at once.
- ``GET /v1/scenes/{id}``: the job: status (``queued``, ``running``, ``done``, ``failed``,
  ``cancelled``), progress (tiles done of total) and, once done, the answer, the objects and the
  URLs of its files.
- ``GET /v1/scenes/{id}/files/{name}``: ``scene.geojson``, ``scene.gpkg``, ``overview.png``,
  ``objects.json``, ``answer.txt`` (:mod:`geochat.engine.scene_output`).
- ``DELETE /v1/scenes/{id}``: cancels the job; a running one stops before its next batch.

Every job has a folder under the jobs folder (``--jobs-dir``): the upload while it runs, its
state in ``job.json`` (rewritten atomically at each change) and, once done, ``files/`` (written
into a temporary folder, then renamed: a job has all its files or none). A client that
disconnects loses nothing, and a server started again on the same folder serves finished jobs.

Jobs run one at a time in one worker thread. Each batch of tiles goes through the inference gate
like any request (:class:`~geochat.app.api_runtime.InferenceGate`), so chat and grounding
requests take their turn between batches instead of waiting for the whole scene.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse

from geochat.app.api_runtime import INTERNAL_ERROR, ApiError, InferenceGate, logger
from geochat.app.api_service import ERROR_RESPONSES, ApiService, Service, check_api_key, validated
from geochat.app.schemas import SceneJob, SceneParams, SceneProgress
from geochat.engine import Assistant, BackendError, ImageError
from geochat.engine.scene import SceneCancelledError, SceneError, open_scene, run_scene
from geochat.engine.scene_output import scene_files, write_scene
from geochat.fileio import atomic_write_text

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED = ("done", "failed", "cancelled")
MEDIA_TYPES = {
    "scene.geojson": "application/geo+json",
    "scene.gpkg": "application/geopackage+sqlite3",
    "overview.png": "image/png",
    "objects.json": "application/json",
    "answer.txt": "text/plain; charset=utf-8",
}
SCENE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2")
_JOB_ID = re.compile(r"[0-9a-f]{32}")
POLL_S = 0.2  # how often a job waiting on the gate looks at its cancel flag
BUSY_WAIT_S = 1.0  # before a job asks a full gate again


@dataclass
class Job:
    """One scene job and its state (``job.json`` holds the same, for a later server)."""

    id: str
    folder: Path
    params: SceneParams
    model: str
    scene: Path | None = None
    status: Status = "queued"
    done: int = 0
    total: int | None = None
    answer: str | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def state(self) -> dict[str, Any]:
        """What ``job.json`` holds."""
        return {
            "id": self.id,
            "status": self.status,
            "cancel_requested": self.cancel.is_set(),
            "progress": {"done": self.done, "total": self.total},
            "question": self.params.question,
            "model": self.model,
            "answer": self.answer,
            "error": self.error,
        }

    def save(self, status: Status | None = None) -> None:
        """Writes ``job.json`` atomically, with ``status`` in place of the job's own if given."""
        state = self.state() if status is None else {**self.state(), "status": status}
        atomic_write_text(self.folder / "job.json", json.dumps(state, indent=1) + "\n")


class SceneJobs:
    """The scene jobs of one app: their folder, a queue and the worker thread that runs them."""

    def __init__(self, service: ApiService) -> None:
        self.service = service
        self._folder = service.settings.jobs_dir
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: InferenceGate | None = None
        # A queued job is either started by the worker or cancelled by a request, never both.
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        """The jobs folder, made at first use."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="geochat-jobs-", dir=Path.cwd()))
        self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder

    def start(self, gate: InferenceGate) -> None:
        """Starts the worker thread (the app's lifespan, inside its event loop)."""
        self._loop, self._gate = asyncio.get_running_loop(), gate
        self._worker = threading.Thread(target=self._work, name="geochat-scenes", daemon=True)
        self._worker.start()

    async def stop(self) -> None:
        """Cancels the running and queued jobs and waits for the worker to end."""
        for job in list(self._jobs.values()):
            with self._lock:
                if job.status in ("queued", "running"):
                    job.error = "the server stopped"
                    job.cancel.set()
                    if job.status == "queued":
                        self._finish(job, "cancelled")
        self._queue.put(None)
        if self._worker is not None:
            # The worker may wait on the gate, which needs this loop: wait off the loop.
            await asyncio.to_thread(self._worker.join, 60)

    def new(self, params: SceneParams, model: str) -> Job:
        """A job with its own folder (not queued yet)."""
        job_id = uuid.uuid4().hex
        folder = self.folder / job_id
        folder.mkdir()
        return Job(job_id, folder, params, model)

    def submit(self, job: Job) -> None:
        """Queues a job whose scene is in its folder."""
        job.save()
        self._jobs[job.id] = job
        self._queue.put(job)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancels a queued or running job; returns its state.

        Raises:
            ApiError: 404 for an unknown job, 409 for a finished one.
        """
        job = self._jobs.get(job_id)
        if job is None:
            status = self.state(job_id)["status"]  # a 404 for an unknown id
            raise ApiError(409, f"scene job {job_id} is {status}; there is nothing to cancel")
        with self._lock:
            if job.status in FINISHED:
                message = f"scene job {job_id} is {job.status}; there is nothing to cancel"
                raise ApiError(409, message)
            job.cancel.set()
            if job.status == "queued":
                self._finish(job, "cancelled")  # the worker skips it
            else:
                job.save()
        return job.state()

    def state(self, job_id: str) -> dict[str, Any]:
        """A job's state, from memory or, for a job of an earlier server, from its folder.

        Raises:
            ApiError: 404 for an unknown job.
        """
        if job_id in self._jobs:
            return self._jobs[job_id].state()
        path = self.job_folder(job_id) / "job.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ApiError(404, f"no scene job {job_id}", "not_found_error") from None
        if state["status"] not in FINISHED:  # its server stopped without a word (killed)
            state.update(status="failed", error="the server stopped before the job ended")
        return state

    def job_folder(self, job_id: str) -> Path:
        """The folder of a job id (404 for an id that is no job id: no path escapes)."""
        if not _JOB_ID.fullmatch(job_id):
            raise ApiError(404, f"no scene job {job_id}", "not_found_error")
        return self.folder / job_id

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._lock:
                if job.status != "queued":
                    continue  # cancelled while queued
                job.status = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        """Runs one job to its end: done with its files, failed, or cancelled without files."""
        job.save()
        assistant = self.service.assistant
        params = job.params
        partial = job.folder / "files.partial"
        try:
            scene = cast(Path, job.scene)
            settings = assistant.imagery.updated(**params.imagery_options())
            result = run_scene(
                cast(Assistant, _GatedAssistant(assistant, self._through_gate, job)),
                scene,
                params.question,
                gsd=params.gsd,
                overlap=params.overlap,
                batch_size=params.batch_size,
                merge_iou=params.merge_iou,
                settings=settings,
                max_new_tokens=params.max_new_tokens,
                progress=lambda count: self._advance(job, count),
                on_plan=lambda plan: setattr(job, "total", len(plan.tiles)),
                cancel=job.cancel.is_set,
            )
            files = scene_files(result, scene, settings, params.gsd)
            if job.cancel.is_set():
                raise SceneCancelledError("cancelled before its files were written")
            write_scene(result, partial, files)
            partial.rename(job.folder / "files")  # all the files at once, or none
            job.answer = result.answer
            self._finish(job, "done")
        except SceneCancelledError:
            self._finish(job, "cancelled")
        except (ImageError, SceneError, ApiError, OSError) as error:
            job.error = error.message if isinstance(error, ApiError) else str(error)
            self._finish(job, "failed")
        except BackendError as error:
            # As for requests (a 502): the model server's address stays in the server log.
            logger.error("scene job %s: the model server failed: %s", job.id, error)
            job.error = f"the model server failed; {INTERNAL_ERROR} (the scene job id)"
            self._finish(job, "failed")
        except Exception:
            logger.exception("scene job %s failed", job.id)
            job.error = f"{INTERNAL_ERROR} (the scene job id)"
            self._finish(job, "failed")

    def _advance(self, job: Job, count: int) -> None:
        job.done += count
        job.save()

    def _finish(self, job: Job, status: Status) -> None:
        """Removes the upload and any partial files, then saves the job's last status."""
        shutil.rmtree(job.folder / "files.partial", ignore_errors=True)
        if job.scene is not None:
            job.scene.unlink(missing_ok=True)  # uploads are large; results are kept
        # On disk before it is seen: a client told "cancelled" or "done" finds job.json saying
        # so, with its write finished (no temporary file beside it).
        job.save(status)
        job.status = status

    def _through_gate(self, job: Job, work: Callable[[threading.Event], Any]) -> Any:
        """Runs ``work`` in an inference slot (from the worker thread); waits while busy.

        Raises:
            SceneCancelledError: When the job is cancelled while it waits.
        """
        if self._loop is None or self._gate is None:
            raise RuntimeError("scene jobs start with the app's lifespan")
        timeout_s = self.service.settings.inference_timeout_s * job.params.batch_size
        while True:
            call = self._gate.run(work, timeout_s)
            future = asyncio.run_coroutine_threadsafe(call, self._loop)
            try:
                return _result_unless(future, job.cancel)
            except ApiError as error:
                if error.status != 503:
                    raise
            # The queue was full or slow: a scene waits its turn rather than failing.
            if job.cancel.wait(BUSY_WAIT_S):
                raise SceneCancelledError("cancelled while waiting for the model")


def _result_unless(future: concurrent.futures.Future[Any], cancel: threading.Event) -> Any:
    """The future's result; cancels it and raises SceneCancelledError once ``cancel`` is set."""
    while True:
        if cancel.is_set():
            future.cancel()  # the gate lets a started batch end, then frees its slot
            raise SceneCancelledError("cancelled while waiting for the model")
        try:
            return future.result(timeout=POLL_S)
        except concurrent.futures.TimeoutError:
            continue


class _GatedAssistant:
    """The engine as :func:`run_scene` sees it, each batch going through the inference gate."""

    def __init__(
        self,
        assistant: Assistant,
        through_gate: Callable[[Job, Callable[[threading.Event], Any]], Any],
        job: Job,
    ) -> None:
        self._assistant = assistant
        self._through_gate = through_gate
        self._job = job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._assistant, name)

    def chat_batch(self, conversations: Any, **options: Any) -> Any:
        if not conversations:
            return []
        return self._through_gate(
            self._job, lambda _: self._assistant.chat_batch(conversations, **options)
        )


def get_jobs(request: Request) -> SceneJobs:
    """The app's :class:`SceneJobs` (a FastAPI dependency)."""
    return request.app.state.scenes


Jobs = Annotated[SceneJobs, Depends(get_jobs)]
router = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)], responses=ERROR_RESPONSES)


def _scene_request_body() -> dict[str, Any]:
    fields = SceneParams.model_json_schema()
    file_field = {"type": "string", "format": "binary", "description": "GeoTIFF/COG, PNG, JPEG."}
    schema = {
        **fields,
        "properties": {"image": file_field, **fields["properties"]},
        "required": ["image", *fields.get("required", [])],
    }
    body = {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    return {"requestBody": body}


@router.post("/scenes", status_code=202, openapi_extra=_scene_request_body())
async def create_scene(request: Request, service: Service, jobs: Jobs) -> SceneJob:
    """Starts a scene job; answers at once (202) with its id. Poll ``GET /v1/scenes/{id}``."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        raise ApiError(
            415,
            "send the scene as multipart/form-data with an 'image' file field",
            "unsupported_media_type",
        )
    if getattr(service.assistant, "native_input", None) is None:
        raise ApiError(400, f"{service.assistant.model_name} does not declare its input size")
    form = await request.form(max_files=1, max_fields=32)
    fields = {name: form[name] for name in form if name != "image"}
    upload = form.get("image")
    errors = []
    if not isinstance(upload, UploadFile):
        message = "a scene file is required"
        errors.append({"loc": ("form", "image"), "msg": message, "type": "missing"})
    params = validated(SceneParams, fields, "form", errors)
    service.check_text(params.question, "question")
    service.check_new_tokens(params.max_new_tokens)
    job = jobs.new(params, service.assistant.model_name)
    try:
        job.scene = await run_in_threadpool(_save_upload, cast(UploadFile, upload), job.folder)
        await run_in_threadpool(_check_scene, job.scene, params.gsd)
    except Exception:
        shutil.rmtree(job.folder, ignore_errors=True)
        raise
    jobs.submit(job)
    return _response(request, jobs, job.state(), None)


def _save_upload(upload: UploadFile, folder: Path) -> Path:
    suffix = Path(upload.filename or "").suffix.lower()
    path = folder / f"scene{suffix if suffix in SCENE_SUFFIXES else '.tif'}"
    with path.open("wb") as handle:
        shutil.copyfileobj(upload.file, handle, 2**20)
    return path


def _check_scene(path: Path, gsd: float | None) -> None:
    """Opens the scene once, so that an unreadable one is a 400 now, not a failed job later."""
    try:
        with open_scene(path, gsd):
            pass
    except SceneError as error:
        raise ApiError(400, str(error)) from None


@router.get("/scenes/{job_id}")
async def get_scene(request: Request, job_id: str, jobs: Jobs) -> SceneJob:
    """A job's status and progress; once done, its answer, objects and file URLs."""
    state = jobs.state(job_id)
    objects = None
    if state["status"] == "done":
        document = json.loads((jobs.job_folder(job_id) / "files" / "objects.json").read_text())
        objects = document["objects"]
    return _response(request, jobs, state, objects)


@router.delete("/scenes/{job_id}", status_code=202)
async def cancel_scene(request: Request, job_id: str, jobs: Jobs) -> SceneJob:
    """Cancels a job: a queued one at once, a running one before its next batch (poll it)."""
    jobs.job_folder(job_id)  # a 404 for an id that is no job id
    return _response(request, jobs, jobs.cancel(job_id), None)


@router.get(
    "/scenes/{job_id}/files/{name}",
    response_class=FileResponse,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}},
)
async def scene_file(job_id: str, name: str, jobs: Jobs) -> FileResponse:
    """One file of a finished job (``scene.gpkg`` only for a georeferenced scene)."""
    path = jobs.job_folder(job_id) / "files" / name
    if name not in MEDIA_TYPES or not path.is_file():
        status = jobs.state(job_id)["status"]
        raise ApiError(404, f"scene job {job_id} ({status}) has no file {name}", "not_found_error")
    return FileResponse(path, media_type=MEDIA_TYPES[name], filename=name)


def _response(
    request: Request,
    jobs: SceneJobs,
    state: dict[str, Any],
    objects: list[dict[str, Any]] | None,
) -> SceneJob:
    files = {}
    if state["status"] == "done":
        folder = jobs.job_folder(state["id"]) / "files"
        files = {
            name: request.url_for("scene_file", job_id=state["id"], name=name).path
            for name in MEDIA_TYPES
            if (folder / name).is_file()
        }
    return SceneJob(
        **{**state, "progress": SceneProgress(**state["progress"])},
        objects=objects,
        files=files,
    )
