"""What the routes of the REST API share: settings, access, engine calls and response parts.

The engine calls here are blocking; the routes run them through the inference gate
(:mod:`app.api_runtime`), which hands them a cancel event. Generation is always streamed from
the engine, so that a cancelled call (deadline passed, client gone) stops at the next token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from geochat import geometry
from geochat.app.api_runtime import ApiError, InferenceGate
from geochat.app.schemas import DetectedObject, ErrorResponse, ImageInfo, SegmentParams, Usage
from geochat.engine import Assistant, LoadedImage, Reply, load_image
from geochat.engine.refinement import mask_object, refine_reply
from geochat.grammar import GroundedObject
from geochat.records import Rle

if TYPE_CHECKING:
    from geochat.refine import RefinedMask, Refiner

P = TypeVar("P", bound=BaseModel)

IMAGE_PLACEHOLDER = "<image>"  # the processor's image token; images come as files or parts
IMAGE_MEDIA_TYPES = re.compile(r"image/[\w.+-]+|application/octet-stream")
_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+-]+)*;base64,")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Bad input: an unreadable image, a prompt or a token count over the limits.",
        401: "Missing or wrong API key.",
        404: "Another model was asked for.",
        413: "The request body is over the size limit.",
        415: "Not multipart/form-data or JSON, or not an image.",
        422: "A field is missing or invalid.",
        500: "Internal error; the server log has it under the request id.",
        502: "The model server (vLLM) failed.",
        503: "Every inference slot is busy and the queue is full; see Retry-After.",
        504: "Inference did not finish in time.",
    }.items()
}


# Inference slots by backend: the embedded engine uses every CPU core (or the GPU) for one call;
# vLLM batches concurrent requests, so more in flight means more throughput.
DEFAULT_CONCURRENCY = {"transformers": 1, "vllm": 8}


class InferenceCancelledError(Exception):
    """A call stopped because its request was abandoned; nobody reads its result."""


@dataclass(frozen=True)
class ApiSettings:
    """Limits and access of the API.

    Attributes:
        api_key: The key clients must send as ``Authorization: Bearer <key>``; None: no key.
        max_body_bytes: Largest request body (64 MiB: a 4-band 16-bit GeoTIFF of 8 megapixels).
        max_pixels: Largest image in pixels (50 MP, a 7000 x 7000 scene; a decompression bomb
            of 100 KB can declare 100 MP). Checked from the header, before decoding.
        max_prompt_chars: Longest text of a request (all messages together).
        max_new_tokens: Most tokens a request may ask the model to write.
        max_concurrency: Inference calls at once (1 for the embedded CPU engine).
        max_queue: Requests allowed to wait for a slot; more get 503 at once, with a
            ``Retry-After`` estimated from recent calls. 64: a small team's burst (a few people,
            each with a script sending a dozen requests) waits instead of being refused.
        queue_timeout_s: Longest wait for a slot before a 503; as long as the inference
            deadline, so that a request waits at most about as long as it may run.
        inference_timeout_s: Deadline of one inference call (image decoding included) -> 504.
        max_scene_bytes: Largest scene upload of ``POST /v1/scenes`` (2 GiB).
        jobs_dir: Folder of the scene jobs (uploads and results); None: a new temporary
            folder under the working directory, made at the first job.
    """

    api_key: str | None = None
    max_body_bytes: int = 64 * 2**20
    max_pixels: int = 50_000_000
    max_prompt_chars: int = 8_000
    max_new_tokens: int = 1_024
    max_concurrency: int = 1
    max_queue: int = 64
    queue_timeout_s: float = 120.0
    inference_timeout_s: float = 120.0
    max_scene_bytes: int = 2 * 2**30
    jobs_dir: Path | None = None


@dataclass(frozen=True)
class Segmentation:
    """What ``/v1/segment`` computes in its worker.

    Attributes:
        image: The decoded image.
        reply: The engine's reply.
        objects: One object per geometry of the answer, each with a full-resolution mask.
        masks: The same objects as kind-``mask`` geometry (for GeoJSON).
    """

    image: LoadedImage
    reply: Reply
    objects: list[DetectedObject]
    masks: list[GroundedObject]


@dataclass
class ApiService:
    """What the routes share: the engine, the settings, SAM and the inference gate.

    Attributes:
        assistant: The engine.
        settings: Limits and access.
        refiner: SAM, or None.
        gate: The inference gate; set while the app runs (its lifespan).
    """

    assistant: Assistant
    settings: ApiSettings
    refiner: Refiner | None = None
    gate: InferenceGate | None = None

    def running_gate(self) -> InferenceGate:
        """The inference gate; raises RuntimeError outside the app's lifespan."""
        if self.gate is None:
            raise RuntimeError("the inference gate starts with the app's lifespan; serve the app")
        return self.gate

    def check_text(self, text: str, what: str) -> None:
        """Raises a 400 for text over the length limit or holding the image placeholder."""
        limit = self.settings.max_prompt_chars
        if len(text) > limit:
            raise ApiError(400, f"{what} is {len(text)} characters long; the limit is {limit}")
        if IMAGE_PLACEHOLDER in text:
            raise ApiError(
                400, f"{what} cannot contain {IMAGE_PLACEHOLDER!r}; send the image as an image"
            )

    def check_new_tokens(self, count: int) -> int:
        """Returns ``count``, or raises a 400 when it is over the limit."""
        limit = self.settings.max_new_tokens
        if count > limit:
            raise ApiError(400, f"max tokens {count} is over this server's limit {limit}")
        return count

    def load(self, data: bytes, imagery: Mapping[str, Any]) -> LoadedImage:
        """Decodes an image within the pixel limit (ImageError for a bad one).

        Args:
            data: The file's bytes.
            imagery: The request's choices (``_ImageParams.imagery_options``), put over the
                model's imagery settings.
        """
        settings = self.assistant.imagery.updated(**imagery)
        return load_image(data, imagery=settings, max_pixels=self.settings.max_pixels)

    def answer(
        self,
        image: LoadedImage | None,
        messages: list[dict[str, str]],
        cancel: threading.Event,
        **options: Any,
    ) -> Reply:
        """Runs the engine, stopping at the next token once ``cancel`` is set.

        Args:
            image: The image, or None.
            messages: The engine's messages.
            cancel: Set when the request is abandoned.
            **options: Other keyword arguments of ``Assistant.chat``.

        Raises:
            InferenceCancelledError: When ``cancel`` was set.
        """
        items = self.assistant.chat(image, messages, stream=True, **options)
        try:
            for item in items:
                if cancel.is_set():
                    raise InferenceCancelledError
                if not isinstance(item, str):
                    return item
        finally:
            items.close()  # stops the generation when we leave early
        raise RuntimeError("the engine's stream ended without a reply")

    def ask(
        self,
        data: bytes,
        imagery: Mapping[str, Any],
        prompt: str,
        max_new_tokens: int,
        constrain: str | None,
        cancel: threading.Event,
    ) -> tuple[LoadedImage, Reply]:
        """Decodes an image and asks one question about it."""
        image = self.load(data, imagery)
        messages = [{"role": "user", "content": prompt}]
        reply = self.answer(
            image, messages, cancel, max_new_tokens=max_new_tokens, constrain=constrain
        )
        return image, reply

    def segment(
        self,
        data: bytes,
        params: SegmentParams,
        prompt: str,
        refine: bool,
        cancel: threading.Event,
    ) -> Segmentation:
        """Asks for a mask; every geometry of the answer becomes a full-resolution mask.

        With ``refine`` (and SAM) SAM makes the masks, by the engine's rule for a question that
        asks for a mask (:mod:`geochat.engine.refinement`); otherwise a text-mask is taken as
        it is and a box or quad is filled.
        """
        image, reply = self.ask(
            data, params.imagery_options(), prompt, params.max_new_tokens, None, cancel
        )
        if refine and self.refiner is not None:
            reply = refine_reply(reply, image, self.refiner, mask_asked=True)
        refined = reply.refined or [None] * len(reply.parsed.objects)
        objects, masks = [], []
        for obj, sam in zip(reply.parsed.objects, refined, strict=True):
            if obj.kind == "none":
                continue
            mask = sam.mask if sam else _filled_mask(obj, image.height, image.width)
            objects.append(detected(obj, mask, sam))
            masks.append(mask_object(obj, mask))
        return Segmentation(image, reply, objects, masks)


def _filled_mask(obj: GroundedObject, height: int, width: int) -> dict[str, Any]:
    """The model's own mask, or its box or quad filled, at the image's size."""
    if obj.mask is not None:  # kind "mask"
        return obj.mask
    return geometry.polygon_to_rle(geometry.quad_to_polygon(obj.quad), height, width)


def get_service(request: Request) -> ApiService:
    """The app's :class:`ApiService` (a FastAPI dependency)."""
    return request.app.state.service


Service = Annotated[ApiService, Depends(get_service)]
_bearer = HTTPBearer(auto_error=False, description="The server's --api-key / GEOCHAT_API_KEY.")


async def check_api_key(
    service: Service,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Raises a 401 unless the request carries the server's API key (when it has one)."""
    expected = service.settings.api_key
    if expected is None:
        return
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        message = "missing API key: send 'Authorization: Bearer <key>'"
        raise ApiError(401, message, "authentication_error", challenge)
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(401, "invalid API key", "authentication_error", challenge)


async def read_json_object(request: Request) -> dict[str, Any]:
    """The JSON object of a request body, read the same way by every endpoint.

    Read by the route, after the API key was checked: a client without the key learns nothing
    about its body.

    Raises:
        ApiError: 400 for a body that is not valid JSON or not a JSON object.
    """
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the JSON body must be an object")
    return body


def validated(model: type[P], fields: dict[str, Any], where: str, errors: list[Any]) -> P:
    """``model`` made from ``fields``; raises one 422 naming every problem, ``errors`` included.

    Args:
        model: The pydantic model of the fields.
        fields: The fields as received.
        where: Where they came from (``body``, ``form``), the first part of each error's place.
        errors: Problems found before (FastAPI's error items), reported with the model's own.

    Raises:
        RequestValidationError: For missing or invalid fields (422).
    """
    try:
        result = model.model_validate(fields)
    except ValidationError as error:
        errors = [
            *errors,
            *({**item, "loc": (where, *item["loc"])} for item in error.errors(include_input=False)),
        ]
    if errors:
        raise RequestValidationError(errors)
    return result


def decode_data_url(url: str) -> bytes:
    """Returns the bytes of a base64 image data URL (``data:image/png;base64,...``).

    Raises:
        ApiError: 400 for anything but a base64 data URL (remote URLs are never fetched) or bad
            base64; 415 for a media type that is not an image.
    """
    match = _DATA_URL.match(url)
    if match is None:
        raise ApiError(
            400, "images must be base64 data URLs (data:image/png;base64,...); URLs are not fetched"
        )
    media = (match["media"] or "application/octet-stream").lower()
    if not IMAGE_MEDIA_TYPES.fullmatch(media):
        raise ApiError(415, f"the data URL holds {media}, not an image", "unsupported_media_type")
    try:
        return base64.b64decode(url[match.end() :], validate=True)
    except binascii.Error as error:
        raise ApiError(400, f"the data URL's base64 is invalid: {error}") from None


def detected(
    obj: GroundedObject, mask: dict[str, Any] | None = None, sam: RefinedMask | None = None
) -> DetectedObject:
    """A parsed object of an answer as the API returns it.

    Args:
        obj: The parsed object, not an explicit "nothing found" (kind ``none``).
        mask: A mask in place of the model's own (segmentation); None keeps the model's.
        sam: SAM's refinement, whose mask and score are given.

    Raises:
        ValueError: For kind ``none``, which is no object.
    """
    if obj.kind == "none":
        raise ValueError("an explicit 'nothing found' (<none>) is not an object")
    rle = obj.mask if mask is None else mask
    return DetectedObject(
        phrase=obj.phrase,
        kind=obj.kind,
        hbb=obj.hbb,
        quad=obj.quad,
        mask=None if rle is None else Rle(size=rle["size"], counts=rle["counts"]),
        score=None if sam is None else sam.score,
        refined=sam is not None,
    )


def image_info(image: LoadedImage) -> ImageInfo:
    """Size and georeference of a decoded image."""
    georef = image.georef
    return ImageInfo(
        width=image.width,
        height=image.height,
        crs=None if georef is None else georef.crs,
        gsd_m=None if georef is None else georef.gsd,
        imagery=None if image.imagery is None else image.imagery.to_dict(),
    )


def usage(reply: Reply) -> Usage:
    """The token counts of a reply."""
    return Usage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        total_tokens=reply.prompt_tokens + reply.completion_tokens,
    )
