"""Scene jobs of the REST API (app.api_scenes) as clients use them.

The model is scripted: `SteppedAssistant` subclasses the engine's `Assistant`, so the engine's
own `chat_batch` reads each tile and parses the answer; each tile waits for a permit from the
test, so the test decides how far a job gets.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Generator

import numpy as np
import pyogrio
import pytest
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from geochat.app.api import ApiSettings, create_app
from geochat.engine import Assistant, BackendError
from geochat.engine.assistant import NativeInput, Request

SIZE = 256  # px; 128 px tiles at 0.25 overlap: 3 x 3 = 9 tiles
GSD = 0.5
TILES = 9
BATCH = 2
KEY = "s3cret-key"
ANSWER = "<ref>ship</ref><box>[[400,400,600,600]]</box>"  # the centre of every tile


class SteppedAssistant(Assistant):
    """Answers one ship per tile, each tile after the test releases a permit."""

    backend = "scripted"
    model_name = "stepped"

    def __init__(self, permits: int = 1_000, error: Exception | None = None) -> None:
        self.native_input = NativeInput(128, (GSD, GSD))
        self.permits = threading.Semaphore(permits)
        self.tiles = 0
        self.error = error

    def close(self) -> None:
        pass

    def _generate(self, request: Request) -> Generator[str, None, None]:
        assert self.permits.acquire(timeout=10), "the test never released this tile"
        if self.error is not None:
            raise self.error
        self.tiles += 1
        return (piece for piece in [ANSWER])


def scene_bytes() -> bytes:
    pixels = np.random.default_rng(2).integers(1, 256, size=(3, SIZE, SIZE), dtype=np.uint8)
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(GSD, 0.0, 500_000.0, 0.0, -GSD, 4_650_000.0),
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(pixels)
        return memory.read()


def client_for(assistant, jobs_dir, **settings) -> TestClient:
    app = create_app(assistant, ApiSettings(jobs_dir=jobs_dir, **settings))
    return TestClient(app, raise_server_exceptions=False)


def post_scene(client, data=None, headers=None, **fields):
    form = {"question": "Where are the ships?", "batch_size": str(BATCH), **fields}
    files = {"image": ("scene.tif", io.BytesIO(data or scene_bytes()), "image/tiff")}
    return client.post("/v1/scenes", data=form, files=files, headers=headers or {})


def wait_for(client, job_id, predicate, headers=None, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/scenes/{job_id}", headers=headers or {}).json()
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"timed out waiting; the job is {job}"
        time.sleep(0.02)


def error_of(response):
    error = response.json()["error"]
    assert error["code"] == response.status_code
    return error


def test_a_job_answers_at_once_its_progress_goes_up_and_its_files_are_served(tmp_path):
    model = SteppedAssistant(permits=0)
    with client_for(model, tmp_path) as client:
        posted = post_scene(client)
        assert posted.status_code == 202
        job = posted.json()
        assert job["status"] in ("queued", "running") and job["files"] == {}
        seen = []
        for released in range(BATCH, TILES + BATCH, BATCH):
            model.permits.release(BATCH)
            target = min(released, TILES)
            job = wait_for(client, job["id"], lambda j, n=target: j["progress"]["done"] >= n)
            seen.append(job["progress"]["done"])
            if job["status"] == "done":
                break
        assert seen == sorted(seen) and len(set(seen)) >= 4  # it went up batch by batch
        job = wait_for(client, job["id"], lambda j: j["status"] == "done")
        assert job["progress"] == {"done": TILES, "total": TILES}
        # One ship per tile, in the centre of each: nine distinct ships after the merge.
        assert job["answer"].startswith("9 objects") and len(job["objects"]) == 9
        assert all(obj["map_geometry"]["type"] == "Polygon" for obj in job["objects"])
        names = {"scene.geojson", "scene.gpkg", "overview.png", "objects.json", "answer.txt"}
        assert set(job["files"]) == names
        geojson = client.get(job["files"]["scene.geojson"])
        assert geojson.headers["content-type"] == "application/geo+json"
        assert len(geojson.json()["features"]) == 9
        overview = client.get(job["files"]["overview.png"])
        assert overview.content.startswith(b"\x89PNG")
        gpkg = tmp_path / "copy.gpkg"
        gpkg.write_bytes(client.get(job["files"]["scene.gpkg"]).content)
        assert pyogrio.read_info(gpkg, layer="objects")["features"] == 9
        assert not list((tmp_path / job["id"]).glob("scene.*"))  # the upload is not kept


def test_a_cancelled_job_stops_and_leaves_no_files(tmp_path):
    model = SteppedAssistant(permits=BATCH)
    with client_for(model, tmp_path) as client:
        job = post_scene(client).json()
        job = wait_for(client, job["id"], lambda j: j["progress"]["done"] >= BATCH)
        cancelled = client.delete(f"/v1/scenes/{job['id']}")
        assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"]
        model.permits.release(TILES)  # a batch already started may finish; no new one starts
        job = wait_for(client, job["id"], lambda j: j["status"] == "cancelled")
        assert job["progress"]["done"] < TILES and job["files"] == {}
        assert model.tiles <= 2 * BATCH
        assert sorted(p.name for p in (tmp_path / job["id"]).iterdir()) == ["job.json"]
        missing = client.get(f"/v1/scenes/{job['id']}/files/scene.geojson")
        assert missing.status_code == 404 and "cancelled" in error_of(missing)["message"]
        again = client.delete(f"/v1/scenes/{job['id']}")
        assert again.status_code == 409


def test_a_queued_job_is_cancelled_before_it_runs(tmp_path):
    model = SteppedAssistant(permits=0)
    with client_for(model, tmp_path) as client:
        first = post_scene(client).json()
        second = post_scene(client).json()  # waits: jobs run one at a time
        assert client.get(f"/v1/scenes/{second['id']}").json()["status"] == "queued"
        assert client.delete(f"/v1/scenes/{second['id']}").json()["status"] == "cancelled"
        model.permits.release(TILES)
        wait_for(client, first["id"], lambda j: j["status"] == "done")
        assert model.tiles == TILES  # the cancelled job never ran a tile


def test_results_outlive_the_client_and_the_server_that_made_them(tmp_path):
    with client_for(SteppedAssistant(), tmp_path) as client:
        job_id = post_scene(client).json()["id"]
        wait_for(client, job_id, lambda j: j["status"] == "done")
    # A new server on the same jobs folder, a new client: the results are there.
    with client_for(SteppedAssistant(), tmp_path) as later:
        job = later.get(f"/v1/scenes/{job_id}").json()
        assert job["status"] == "done" and len(job["objects"]) == 9
        objects = later.get(job["files"]["objects.json"]).json()
        assert objects["counts"] == {"ship": 9}


def test_a_scene_over_the_limit_is_a_413_naming_the_limit(tmp_path):
    with client_for(SteppedAssistant(), tmp_path, max_scene_bytes=10_000) as client:
        response = post_scene(client)
        assert response.status_code == 413
        assert "10,000" in error_of(response)["message"]
        assert list(tmp_path.iterdir()) == []  # nothing was kept


def test_scene_uploads_have_their_own_limit_above_the_image_limit(tmp_path):
    # A scene larger than the body limit of the image endpoints is taken.
    with client_for(SteppedAssistant(), tmp_path, max_body_bytes=10_000) as client:
        assert post_scene(client).status_code == 202


def test_the_api_key_guards_every_scene_route(tmp_path):
    with client_for(SteppedAssistant(), tmp_path, api_key=KEY) as client:
        assert post_scene(client).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        job_id = post_scene(client, headers=auth).json()["id"]
        job = wait_for(client, job_id, lambda j: j["status"] == "done", headers=auth)
        for method, path in [
            ("get", f"/v1/scenes/{job_id}"),
            ("get", job["files"]["answer.txt"]),
            ("delete", f"/v1/scenes/{job_id}"),
        ]:
            response = getattr(client, method)(path)
            assert response.status_code == 401, path
            assert error_of(response)["type"] == "authentication_error"


def test_bad_scene_requests_get_clear_errors_and_leave_no_job(tmp_path):
    with client_for(SteppedAssistant(), tmp_path) as client:
        corrupt = post_scene(client, data=b"II*\x00 not a tiff")
        assert corrupt.status_code == 400
        missing = client.post("/v1/scenes", data={"question": "Where?"}, files={"x": b"1"})
        assert missing.status_code == 422 and "image" in error_of(missing)["message"]
        overlap = post_scene(client, overlap="2")
        assert overlap.status_code == 422 and "overlap" in error_of(overlap)["message"]
        as_json = client.post("/v1/scenes", json={"question": "Where?"})
        assert as_json.status_code == 415
        assert [p for p in tmp_path.iterdir() if p.is_dir()] == []
        for path in ("/v1/scenes/0123", "/v1/scenes/" + "0" * 32, "/v1/scenes/../x/files/a"):
            assert client.get(path).status_code == 404, path


def test_chat_gets_a_turn_between_the_batches_of_a_scene(tmp_path):
    model = SteppedAssistant(permits=0)
    with client_for(model, tmp_path) as client:
        job = post_scene(client).json()
        model.permits.release(BATCH)
        wait_for(client, job["id"], lambda j: j["progress"]["done"] >= BATCH)
        answers: list[int] = []
        body = {"model": "stepped", "messages": [{"role": "user", "content": "Hello?"}]}
        chat = threading.Thread(
            target=lambda: answers.append(
                client.post("/v1/chat/completions", json=body).status_code
            )
        )
        chat.start()
        # The chat waits for the batch running now; then it runs before the next batch. It must
        # be in the gate's queue before that batch ends (else the next batch may ask first).
        deadline = time.monotonic() + 60
        while client.get("/healthz").json()["queued"] < 1:
            assert time.monotonic() < deadline, "the chat never queued for the inference slot"
            time.sleep(0.05)
        model.permits.release(BATCH + 1)
        chat.join(timeout=60)
        assert answers == [200]
        done = client.get(f"/v1/scenes/{job['id']}").json()["progress"]["done"]
        assert done <= 2 * BATCH
        model.permits.release(TILES)
        job = wait_for(client, job["id"], lambda j: j["status"] == "done")
        assert json.loads((tmp_path / job["id"] / "job.json").read_text())["status"] == "done"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (BackendError("vLLM at http://10.0.0.1 (secret) refused"), "the model server failed"),
        (RuntimeError("a secret internal detail"), "internal server error"),
    ],
)
def test_a_failing_model_fails_the_job_with_a_message_and_no_files(tmp_path, error, message):
    with client_for(SteppedAssistant(error=error), tmp_path) as client:
        job_id = post_scene(client).json()["id"]
        job = wait_for(client, job_id, lambda j: j["status"] == "failed")
        assert message in job["error"] and "secret" not in job["error"]
        assert job["files"] == {} and not (tmp_path / job_id / "files").exists()


def test_a_job_whose_server_died_reads_as_failed(tmp_path):
    folder = tmp_path / ("a" * 32)
    folder.mkdir()
    state = {
        "id": "a" * 32,
        "status": "running",
        "cancel_requested": False,
        "progress": {"done": 4, "total": 9},
        "question": "Where?",
        "model": "stepped",
        "answer": None,
        "error": None,
    }
    (folder / "job.json").write_text(json.dumps(state))
    with client_for(SteppedAssistant(), tmp_path) as client:
        job = client.get(f"/v1/scenes/{'a' * 32}").json()
        assert job["status"] == "failed" and "stopped" in job["error"]
        assert client.delete(f"/v1/scenes/{'a' * 32}").status_code == 409
