"""The REST API of ``geochat api``: grounding, segmentation and OpenAI-compatible chat.

Endpoints (the OpenAPI schema is at ``/openapi.json``, its pages at ``/docs``):

- ``POST /v1/ground``: an image and a referring expression -> horizontal boxes or quads in pixels,
  and RFC 7946 GeoJSON in lon/lat when the image is a georeferenced GeoTIFF.
- ``POST /v1/segment``: an image and an expression (``mode=referring``) or a question
  (``mode=reasoning``) -> full-resolution masks as COCO RLE and as GeoJSON polygons; refined by
  SAM when the server was started with ``--sam``.
- ``POST /v1/chat/completions``: OpenAI's chat format; the image is a data URL in an
  ``image_url`` content part of the first user message; ``stream=true`` answers with server-sent
  events ``data: {chunk}`` and a last ``data: [DONE]``.
- ``POST /v1/scenes``, ``GET``/``DELETE /v1/scenes/{id}``, ``GET /v1/scenes/{id}/files/{name}``:
  whole-scene jobs in the background (:mod:`app.api_scenes`).
- ``GET /v1/models`` (OpenAI's model list) and ``GET /healthz`` (no key needed).

Images for ground and segment come as ``multipart/form-data`` (the primary form: a file field
``image``, the other fields as form fields; fit for GeoTIFFs of many megabytes) or as
``application/json`` with ``image`` a base64 data URL. Every image is decoded by
:func:`geochat.engine.load_image`.

Limits (:class:`ApiSettings`): request body bytes (413); image pixels, checked from the header
before decoding against decompression bombs (400, like any unusable image); prompt characters
and new tokens (400). Inference runs in worker threads, a bounded number at once, with a bounded
queue (503 with Retry-After when full or waited on too long) and a deadline (504); see
:mod:`app.api_runtime`. With an API key, every ``/v1`` route wants ``Authorization: Bearer
<key>`` (401 otherwise). Every error body is ``{"error": {"message", "type", "code",
"request_id"}}``; a 500 says only that, and the traceback goes to the server log under the
request id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from geochat import __version__, geometry, prompts
from geochat.app import api_chat, api_scenes
from geochat.app.api_runtime import (
    INTERNAL_ERROR,
    SCHEMA_REF,
    ApiError,
    InferenceGate,
    RequestContextMiddleware,
    error_response,
    logger,
    request_id_of,
)
from geochat.app.api_service import (
    ERROR_RESPONSES,
    IMAGE_MEDIA_TYPES,
    ApiService,
    ApiSettings,
    Service,
    check_api_key,
    decode_data_url,
    detected,
    image_info,
    read_json_object,
    usage,
    validated,
)
from geochat.app.schemas import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    GroundParams,
    GroundResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    SegmentParams,
)
from geochat.engine import (
    Assistant,
    BackendError,
    ImageError,
    LoadedImage,
    Reply,
    task_question,
)
from geochat.georef import to_geojson, to_pixel_geojson

if TYPE_CHECKING:
    from geochat.refine import Refiner

__all__ = ["ApiSettings", "create_app"]

P = TypeVar("P", bound=BaseModel)

# Geometry forms of the grounding kinds, in the wording of the training questions.
GROUND_FORMS = {"hbb": "box", "quad": "quad"}
_ERROR_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def create_app(
    assistant: Assistant, settings: ApiSettings | None = None, refiner: Refiner | None = None
) -> FastAPI:
    """Builds the API around an engine.

    Args:
        assistant: The engine (:func:`geochat.engine.load`), or anything with its ``chat``,
            ``model_name``, ``backend`` and ``family``.
        settings: Limits and the API key; the defaults of :class:`ApiSettings` when None.
        refiner: SAM, for ``/v1/segment``'s refinement; None: masks come from the model alone.

    Returns:
        The FastAPI app; serve it with uvicorn (its lifespan starts the inference threads).
    """
    settings = settings or ApiSettings()
    service = ApiService(assistant, settings, refiner)
    scenes = api_scenes.SceneJobs(service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.gate = InferenceGate(
            settings.max_concurrency, settings.max_queue, settings.queue_timeout_s
        )
        scenes.start(service.gate)
        try:
            yield
        finally:
            await scenes.stop()
            service.gate.close()

    app = _GeochatApp(
        title="geochat",
        version=__version__,
        summary="Grounding, segmentation and chat about remote-sensing images.",
        description=__doc__,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.scenes = scenes
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        path_limits={"/v1/scenes": settings.max_scene_bytes},
    )
    for error_type, handler in _ERROR_HANDLERS.items():
        app.add_exception_handler(error_type, handler)
    app.include_router(health)
    app.include_router(v1)
    app.include_router(api_chat.router)
    app.include_router(api_scenes.router)
    return app


class _GeochatApp(FastAPI):
    """FastAPI whose schema also has the models that routes read or stream themselves."""

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema plus the chat request and the streamed chunk.

        The chat route reads its request itself, after the API key check, and streams its
        chunks, so FastAPI does not see either model.
        """
        if self.openapi_schema is not None:
            return self.openapi_schema
        schema = super().openapi()  # which keeps it in self.openapi_schema
        components = schema["components"]["schemas"]
        models: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
            (ChatCompletionRequest, "validation"),
            (ChatCompletionChunk, "serialization"),
        )
        for model, mode in models:
            definition = model.model_json_schema(ref_template=SCHEMA_REF, mode=mode)
            for name, part in definition.pop("$defs", {}).items():
                components.setdefault(name, part)
            components[model.__name__] = definition
        return schema


health = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)], responses=ERROR_RESPONSES)


@health.get("/healthz")
async def healthz(service: Service) -> HealthResponse:
    """Liveness and load: the model, whether SAM is there, calls running and queued."""
    gate = service.gate
    return HealthResponse(
        status="ok",
        model=service.assistant.model_name,
        backend=service.assistant.backend,
        refiner=service.refiner is not None,
        running=0 if gate is None else gate.running,
        queued=0 if gate is None else gate.waiting,
    )


@v1.get("/models")
async def models(service: Service) -> ModelList:
    """OpenAI's model list: the one model this server runs."""
    return ModelList(data=[ModelCard(id=service.assistant.model_name)])


def _image_request_body(params: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body of an image endpoint: multipart (primary) or JSON with a data URL."""
    fields = params.model_json_schema()
    required = ["image", *fields.get("required", [])]

    def schema(image: dict[str, Any]) -> dict[str, Any]:
        properties = {"image": image, **fields["properties"]}
        return {**fields, "properties": properties, "required": required}

    file_field = {"type": "string", "format": "binary", "description": "PNG, JPEG or GeoTIFF."}
    url_field = {"type": "string", "description": "data:image/...;base64,... of the image."}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": schema(file_field)},
                "application/json": {"schema": schema(url_field)},
            },
        }
    }


@v1.post("/ground", openapi_extra=_image_request_body(GroundParams))
async def ground(request: Request, service: Service) -> GroundResponse:
    """Finds what an expression refers to: boxes (``kind=hbb``) or oriented boxes (``quad``)."""
    params, data = await read_image_request(request, GroundParams)
    _check_expression(service, params.expression, "expression")
    phrase = _sentence_part(params.expression)
    question = prompts.locate(phrase, GROUND_FORMS[params.kind])
    prompt = task_question(service.assistant.family, "refer", question, phrase=phrase)
    max_new_tokens = service.check_new_tokens(params.max_new_tokens)
    work = partial(service.ask, data, params.imagery_options(), prompt, max_new_tokens, "grounding")
    image, reply = await service.running_gate().run(work, service.settings.inference_timeout_s)
    objects = [detected(obj) for obj in reply.parsed.objects if obj.kind != "none"]
    return _response(request, service, image, reply, objects, reply.geojson, reply.pixel_geojson)


@v1.post("/segment", openapi_extra=_image_request_body(SegmentParams))
async def segment(request: Request, service: Service) -> GroundResponse:
    """Masks what an expression refers to, or the answer to a question (``mode=reasoning``)."""
    params, data = await read_image_request(request, SegmentParams)
    _check_expression(service, params.query, "query")
    if params.refine and service.refiner is None:
        raise ApiError(400, "this server has no SAM refiner; start it with --sam PATH")
    if params.mode == "referring":
        prompt = prompts.segment(_sentence_part(params.query))
    else:
        prompt = prompts.reason(params.query.strip(), "mask")
    service.check_new_tokens(params.max_new_tokens)
    refine = params.refine is not False and service.refiner is not None
    work = partial(service.segment, data, params, prompt, refine)
    result = await service.running_gate().run(work, service.settings.inference_timeout_s)
    georef = result.image.georef
    return _response(
        request,
        service,
        result.image,
        result.reply,
        result.objects,
        None if georef is None else to_geojson(result.masks, georef),
        to_pixel_geojson(result.masks),
    )


async def read_image_request(request: Request, params_model: type[P]) -> tuple[P, bytes]:
    """Reads an image request: multipart/form-data (primary) or JSON with a data URL.

    Returns:
        The validated fields other than the image, and the image file's bytes.

    Raises:
        ApiError: 415 for another content type or an upload that is not an image; 400 for bad
            base64 or JSON.
        RequestValidationError: For missing or invalid fields (422).
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        where, (fields, data) = "form", await _read_multipart(request)
    elif media_type == "application/json":
        where, (fields, data) = "body", await _read_json(request)
    else:
        raise ApiError(
            415,
            "send multipart/form-data with an 'image' file (or application/json with 'image' a "
            f"data URL), not {media_type or 'a body without Content-Type'}",
            "unsupported_media_type",
        )
    errors = []
    if data is None:
        message = "an image file is required" if where == "form" else "a data URL is required"
        errors.append({"loc": (where, "image"), "msg": message, "type": "missing"})
    params = validated(params_model, fields, where, errors)
    assert data is not None  # else validated raised, naming the missing image with the rest
    return params, data


async def _read_multipart(request: Request) -> tuple[dict[str, Any], bytes | None]:
    form = await request.form(max_files=1, max_fields=32)
    fields: dict[str, Any] = {}
    for name in form:
        if name != "image":
            values = form.getlist(name)
            fields[name] = values[0] if len(values) == 1 else values
    upload = form.get("image")
    if upload is None:
        return fields, None
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "'image' must be a file field (a multipart upload), not text")
    declared = (upload.content_type or "application/octet-stream").lower()
    if not IMAGE_MEDIA_TYPES.fullmatch(declared):
        raise ApiError(
            415, f"the uploaded file is {declared}, not an image", "unsupported_media_type"
        )
    return fields, await upload.read()


async def _read_json(request: Request) -> tuple[dict[str, Any], bytes | None]:
    body = await read_json_object(request)
    image = body.pop("image", None)
    if image is None:
        return body, None
    if not isinstance(image, str):
        raise ApiError(400, "'image' must be a data URL string: data:image/png;base64,...")
    return body, decode_data_url(image)


def _check_expression(service: ApiService, text: str, what: str) -> None:
    service.check_text(text, what)
    if "<" in text or ">" in text:
        raise ApiError(400, f"{what} cannot contain '<' or '>' (they open grammar tags)")


def _sentence_part(text: str) -> str:
    """An expression as it goes inside a question: no surrounding spaces or final stop."""
    return text.strip().rstrip(".?!").strip()


def _response(
    request: Request,
    service: ApiService,
    image: LoadedImage,
    reply: Reply,
    objects: list[Any],
    geojson: dict[str, Any] | None,
    pixel_geojson: dict[str, Any],
) -> GroundResponse:
    return GroundResponse(
        id=request_id_of(request.scope) or "",
        model=service.assistant.model_name,
        text=reply.text,
        answer=reply.parsed.text,
        objects=objects,
        problems=reply.parsed.problems,
        image=image_info(image),
        geojson=geojson,
        pixel_geojson=pixel_geojson,
        usage=usage(reply),
        timings=reply.timings,
    )


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(
        error.status, error.message, error.type, request_id_of(request.scope), error.headers
    )


async def _image_error(request: Request, error: ImageError) -> JSONResponse:
    return error_response(400, str(error), "invalid_image", request_id_of(request.scope))


async def _geometry_error(request: Request, error: geometry.GeometryError) -> JSONResponse:
    message = f"invalid region: {error}"
    return error_response(400, message, "invalid_request_error", request_id_of(request.scope))


async def _backend_error(request: Request, error: BackendError) -> JSONResponse:
    request_id = request_id_of(request.scope)
    logger.error("request %s: the model server failed: %s", request_id, error)
    return error_response(
        502, f"the model server failed; {INTERNAL_ERROR}", "bad_gateway", request_id
    )


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    status = error.status_code
    return error_response(
        status,
        str(error.detail),
        _ERROR_TYPES.get(status, "invalid_request_error"),
        request_id_of(request.scope),
        dict(error.headers or {}),
    )


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
    ]
    message = "; ".join(problems)
    return error_response(422, message, "invalid_request_error", request_id_of(request.scope))


# Each handler takes the exception type it is registered for, which a Callable cannot say.
_ERROR_HANDLERS: dict[type[Exception], Callable[..., Awaitable[JSONResponse]]] = {
    ApiError: _api_error,
    ImageError: _image_error,
    geometry.GeometryError: _geometry_error,
    BackendError: _backend_error,
    StarletteHTTPException: _http_error,
    RequestValidationError: _validation_error,
}
