"""Request and response models of the REST API, OpenAI's chat completion format included.

Coordinates are pixels of the original image (x right, y down, origin at its top-left corner);
masks are COCO RLE at the image's full size. ``geojson`` is RFC 7946 (WGS84 lon/lat) and present
only for georeferenced images (GeoTIFFs); ``pixel_geojson`` holds the same features in pixels.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from geochat.engine.scene import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, MERGE_IOU
from geochat.imagery import ImagerySettings
from geochat.records import Hbb, Phrase, Quad, Rle, Score

FinishReason = Literal["stop", "length"]
"""Why a completion ended: the answer was complete, or it reached ``max_tokens``."""


class ErrorDetail(BaseModel):
    """What went wrong."""

    message: str = Field(description="For people; never holds internals (see request_id).")
    type: str = Field(description="Category, e.g. invalid_request_error, server_busy, timeout.")
    code: int = Field(description="The HTTP status.")
    request_id: str | None = Field(description="Quote it to find the request in the server log.")


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


class DetectedObject(BaseModel):
    """One object of an answer, in pixels of the original image.

    Its geometry fields are those of :class:`geochat.records.GeoObject`, the one object type.
    """

    phrase: Phrase | None = Field(description="The phrase the answer gave the object, if any.")
    kind: Literal["hbb", "quad", "mask"] = Field(description="The geometry the model answered.")
    hbb: Hbb | None = Field(description="[x0, y0, x1, y1]; null for an empty mask.")
    quad: Quad | None = Field(
        default=None, description="Four [x, y] corners, clockwise from the top-most one."
    )
    mask: Rle | None = Field(default=None, description="Full-resolution mask.")
    score: Score | None = Field(default=None, description="SAM's predicted IoU when refined.")
    refined: bool = Field(default=False, description="Whether SAM made the mask.")


class ImageInfo(BaseModel):
    """The image the server read."""

    width: int
    height: int
    crs: str | None = Field(description="The GeoTIFF's CRS; null when not georeferenced.")
    gsd_m: float | None = Field(description="Ground sample distance in metres per pixel.")
    imagery: dict[str, Any] | None = Field(
        default=None,
        description="What was read: bands, fill value and stretch limits "
        "(geochat.imagery.ImagerySettings).",
    )


class Usage(BaseModel):
    """Tokens of the prompt and the answer."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class _ImageParams(BaseModel):
    """Options shared by the requests that send one image."""

    model_config = ConfigDict(extra="forbid")

    bands: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="Bands (1-based) shown as RGB, or one for grey; a form field may say "
        "'4,3,2'. Default: the model's settings, else the file's colour interpretation or band "
        "descriptions, else 1,2,3.",
    )
    preset: str | None = Field(
        default=None,
        description="natural, cir (colour-infrared), or a sensor's bands: landsat8, landsat9, "
        "sentinel2, planetscope, planetscope8, naip, optionally with :cir.",
    )
    stretch: str | None = Field(
        default=None,
        description="auto, percentile[:LOW,HIGH] of the valid pixels, minmax:LOW,HIGH or none.",
    )
    fill: str | None = Field(
        default=None,
        description="No-data fill value: auto (a 0 framing the scene), none or a number.",
    )

    @field_validator("bands", mode="before")
    @classmethod
    def _split_bands(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        return value

    @model_validator(mode="after")
    def _check_imagery(self) -> _ImageParams:
        ImagerySettings().updated(**self.imagery_options())  # a ValueError is a 422
        return self

    def imagery_options(self) -> dict[str, Any]:
        """The imagery choices the request made (for ``ImagerySettings.updated``)."""
        return {
            "bands": self.bands,
            "preset": self.preset,
            "stretch": self.stretch,
            "fill": self.fill,
        }


class GroundParams(_ImageParams):
    """Fields of ``POST /v1/ground`` besides the image."""

    expression: str = Field(min_length=1, description="What to find, e.g. 'the largest ship'.")
    kind: Literal["hbb", "quad"] = Field(
        default="hbb", description="Horizontal boxes or oriented boxes (quads)."
    )
    max_new_tokens: int = Field(default=256, ge=1)


class SegmentParams(_ImageParams):
    """Fields of ``POST /v1/segment`` besides the image."""

    query: str = Field(
        min_length=1,
        description="A referring expression ('the harbour basin') or, in reasoning mode, a "
        "question whose answer is a region ('Where could a boat be launched?').",
    )
    mode: Literal["referring", "reasoning"] = "referring"
    refine: bool | None = Field(
        default=None,
        description="Refine masks with SAM: null does so when the server has SAM (--sam); true "
        "on a server without SAM is an error.",
    )
    max_new_tokens: int = Field(default=512, ge=1)


class SceneParams(_ImageParams):
    """Fields of ``POST /v1/scenes`` besides the scene file (see ``geochat scene``)."""

    question: str = Field(min_length=1, description="Asked of every tile, e.g. 'Where are ships?'")
    gsd: float | None = Field(
        default=None, gt=0, description="Metres per pixel of an image without a georeference."
    )
    overlap: float = Field(default=DEFAULT_OVERLAP, ge=0, le=0.9, description="Share of a tile.")
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=64, description="Tiles at once.")
    merge_iou: float = Field(default=MERGE_IOU, gt=0, le=1, description="IoU of one object.")
    max_new_tokens: int = Field(default=256, ge=1)


class SceneProgress(BaseModel):
    """Tiles of a scene job answered (or skipped as no-data) so far."""

    done: int
    total: int | None = Field(description="Null until the scene is planned.")


class SceneJob(BaseModel):
    """A scene job: ``POST /v1/scenes`` (202), ``GET`` and ``DELETE /v1/scenes/{id}``."""

    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    cancel_requested: bool = Field(description="DELETE was called; the job stops between batches.")
    progress: SceneProgress
    question: str
    model: str
    answer: str | None = Field(description="The whole scene's answer, once done.")
    objects: list[dict[str, Any]] | None = Field(
        description="Once done: the merged objects as in objects.json (scene pixels, map CRS)."
    )
    files: dict[str, str] = Field(description="Once done: file name -> its URL.")
    error: str | None = Field(description="Why the job failed or stopped.")


class GroundResponse(BaseModel):
    """The answer of ``POST /v1/ground`` and ``POST /v1/segment``."""

    id: str = Field(description="The request id.")
    model: str
    text: str = Field(description="The model's raw answer, geometry in grammar v1.")
    answer: str = Field(description="The answer without geometry tags (a reason, if any).")
    objects: list[DetectedObject] = Field(description="Empty when nothing was found.")
    problems: list[str] = Field(description="Parts of the answer that could not be read.")
    image: ImageInfo
    geojson: dict[str, Any] | None = Field(
        description="RFC 7946 FeatureCollection in lon/lat, for georeferenced images only."
    )
    pixel_geojson: dict[str, Any] = Field(description="The features in pixel coordinates.")
    usage: Usage
    timings: dict[str, float]


class HealthResponse(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"]
    model: str
    backend: str
    refiner: bool = Field(description="Whether SAM refinement is available.")
    running: int = Field(description="Inference calls running now.")
    queued: int = Field(description="Requests waiting for an inference slot.")


class ModelCard(BaseModel):
    """One model, as OpenAI's ``GET /v1/models`` lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "geochat"


class ModelList(BaseModel):
    """OpenAI's ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ImageUrl(BaseModel):
    """An image as a data URL: ``data:image/png;base64,...`` (remote URLs are not fetched)."""

    url: str
    detail: str | None = None


class TextPart(BaseModel):
    """Text in a message's content list."""

    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    """An image in a message's content list (only in the first user message, at most one)."""

    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    """One message of the conversation."""

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class StreamOptions(BaseModel):
    """OpenAI's stream options."""

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; unknown OpenAI fields are ignored.

    ``region`` and ``constrain`` are geochat's extensions.
    """

    model: str | None = Field(default=None, description="The served model's id, or null.")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="Wins over max_tokens."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 is greedy decoding.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only one choice is generated.")
    region: list[float] | list[list[float]] | None = Field(
        default=None,
        description="A pixel box [x0, y0, x1, y1] or quad [[x, y] * 4] the last user message "
        "asks about (geochat extension).",
    )
    constrain: str | None = Field(
        default=None,
        description="'grounding' constrains the answer to grammar v1's geometry (geochat "
        "extension; `geochat serve` reads it too).",
    )
    structured_outputs: dict[str, Any] | None = Field(
        default=None,
        description="vLLM's spelling of the same constraint: {'regex': GROUNDING_REGEX} "
        "equals constrain='grounding'; other constraints are refused (400).",
    )


class AssistantMessage(BaseModel):
    """The answer message."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason


class GeochatExtras(BaseModel):
    """The parsed geometry of an answer (geochat extension to OpenAI's format)."""

    objects: list[DetectedObject]
    problems: list[str]
    image: ImageInfo | None
    geojson: dict[str, Any] | None
    pixel_geojson: dict[str, Any] | None


class ChatCompletion(BaseModel):
    """OpenAI's chat completion, plus ``geochat``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    geochat: GeochatExtras


class ChunkDelta(BaseModel):
    """What a streamed chunk adds to the message."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a streamed chunk."""

    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion (``data: {...}``, then ``data: [DONE]``).

    The last chunk with a choice carries ``finish_reason`` and ``geochat``; with
    ``stream_options.include_usage`` a final chunk with no choices carries ``usage``.
    """

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    geochat: GeochatExtras | None = None
