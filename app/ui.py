"""The geochat web app (Gradio): upload an image, chat about it, see and download the geometry.

:func:`build_ui` makes the page around any object with the engine's ``Assistant.chat``
interface (the embedded transformers model, a vLLM server, or a fake in tests); ``geochat
app`` (:func:`app.cli.app_main`) launches it on 127.0.0.1.

What a user does:

- upload a PNG, JPEG or GeoTIFF, or pick an example: an image and a short conversation,
  whose questions are asked in order. The engine reads the image at full resolution; the
  page shows a copy at most ``display_max_side`` pixels wide (:mod:`app.overlay`).
- choose the bands (a preset such as colour-infrared or a sensor's natural colour, or band
  numbers like 3,2,1) and the stretch; the image is read again and the page says what was
  applied before anything is asked (:mod:`geochat.imagery`; the default is the model's own
  settings).
- ask questions; the answer streams in token by token. Buttons fill the question box with the
  common tasks (describe, find, count, segment, identify a region).
- draw one box on the image to ask about that region: it reaches the model in pixels of the
  original image.
- see the answer's boxes, oriented boxes and masks over the image, one colour and one legend
  entry per phrase, and download them as GeoJSON: WGS84 lon/lat for a georeferenced image,
  pixel coordinates otherwise.
- in the "Whole scene" tab, upload a scene of any size (a GeoTIFF, or a PNG/JPEG with its GSD)
  and ask one question of all of it: tiles run at the model's native GSD with a progress bar
  (:func:`geochat.engine.scene.run_scene`); the page shows the answer for the whole scene, an
  overview with the merged geometry, a table of the objects, and offers ``scene.geojson`` and
  ``scene.gpkg`` (:mod:`geochat.engine.scene_output`).

Bad files and failed answers are reported in the page with what went wrong.
"""

from __future__ import annotations

import html
import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import gradio as gr
import shapely
from gradio_image_annotation import image_annotator

from geochat import prompts
from geochat.app.overlay import (
    DISPLAY_MAX_SIDE,
    DisplayImage,
    answer_summary,
    display_copy,
    overlay_annotations,
    region_to_original,
)
from geochat.draw import UNNAMED
from geochat.engine import Assistant, LoadedImage, Reply, load_image
from geochat.engine.assistant import prepare_messages, task_question
from geochat.engine.scene import ScenePlan, SceneResult, run_scene
from geochat.engine.scene_output import scene_files, write_scene
from geochat.fileio import atomic_writer
from geochat.grammar import format_region, readable

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = [".png", ".jpg", ".jpeg", ".tif", ".tiff"]
EXAMPLES_DIR = Path(__file__).parent / "examples"
# (file in EXAMPLES_DIR, questions asked in order in one conversation): the images are made
# by app/examples/make_examples.py, and each conversation is about objects its image holds.
# The questions are the training tasks' (geochat.prompts): find-all grounding, presence and the
# follow-ups that refer back to the objects just located.
EXAMPLES = (
    (
        "harbour.png",
        (
            prompts.PRESENCE_QUESTIONS[0].format(a_category="a ship"),
            prompts.GROUND_QUESTIONS["quad"][1].format(
                plural="ships", **prompts.form_words("quad", plural=True)
            ),
        ),
    ),
    (
        "suburb.jpg",
        (prompts.FIND_ALL.format(plural="buildings"), prompts.FOLLOW_UP_QUESTIONS["count"][0]),
    ),
    (
        "port.tif",
        (
            prompts.FIND_ALL.format(plural="industrial areas"),
            prompts.FOLLOW_UP_QUESTIONS["segment"][0].format(them="them"),
        ),
    ),
)
# Question templates of the task buttons; {target} is the object field. They follow the
# wording of the training tasks (geochat.prompts), which the bundled model knows. The region
# button's question is asked as the identify task, with the drawn region inside it.
TASKS = (
    ("Describe", prompts.DESCRIBE),
    ("Find all", prompts.locate("all {target}")),
    ("Count", prompts.count("{target}")),
    ("Segment", prompts.segment("the {target}")),
    ("What is in the region?", "What is in the region?"),
)
REGION_QUESTION = TASKS[-1][1]
# The imagery controls: "" keeps the model's settings (geochat.imagery.ImagerySettings).
BAND_PRESETS = [
    ("Model default (the file's colour interpretation, else 1,2,3)", ""),
    ("Natural colour (red, green, blue from the file)", "auto"),
    ("Colour-infrared (NIR, red, green)", "cir"),
    ("Landsat 8/9: natural colour (4,3,2)", "landsat8"),
    ("Landsat 8/9: colour-infrared (5,4,3)", "landsat8:cir"),
    ("Sentinel-2: natural colour (B4,B3,B2)", "sentinel2"),
    ("Sentinel-2: colour-infrared (B8,B4,B3)", "sentinel2:cir"),
    ("PlanetScope 4-band: natural colour", "planetscope"),
    ("PlanetScope 4-band: colour-infrared", "planetscope:cir"),
    ("NAIP: natural colour", "naip"),
    ("NAIP: colour-infrared", "naip:cir"),
]
STRETCH_CHOICES = [
    ("Model default (8-bit kept, else 2-98 % of valid pixels)", ""),
    ("Percentile 2-98 % of valid pixels", "percentile:2,98"),
    ("Percentile 0.5-99.5 % of valid pixels", "percentile:0.5,99.5"),
    ("None (8-bit data as it is)", "none"),
]
REGION_COLOUR = (255, 215, 0)  # the drawn region, in the annotator's RGB form
DEFAULT_TARGET = "buildings"
MAX_NEW_TOKENS = 256
IMAGE_HEIGHT = 400  # pixels of the region and answer images on the page
CHAT_HEIGHT = 560


@dataclass(frozen=True)
class ImageSession:
    """The image a browser session talks about.

    Attributes:
        loaded: The image at full resolution, with its georeference.
        display: The copy the page shows.
        name: The file's name, for the page and the download.
    """

    loaded: LoadedImage
    display: DisplayImage
    name: str


def _image_info(session: ImageSession) -> str:
    """Markdown describing the image: size, georeference, display scale."""
    loaded = session.loaded
    info = f"**{html.escape(session.name)}**: {loaded.width} × {loaded.height} px"
    if loaded.georef is not None:
        info += f", georeferenced ({loaded.georef.crs}, {loaded.georef.gsd:.2f} m/px)"
    display_width, display_height = session.display.size
    if (display_width, display_height) != (loaded.width, loaded.height):
        info += f"; shown at {display_width} × {display_height}, analysed at full resolution"
    if loaded.imagery is not None:
        info += f"  \nImagery: {html.escape(loaded.imagery.describe())}"
    return info


def _region_note(region: list[float]) -> str:
    x0, y0, x1, y1 = region
    return f"*region: x {x0:.0f}–{x1:.0f}, y {y0:.0f}–{y1:.0f} px*"


def _answer_markdown(reply: Reply) -> str:
    """The final chat bubble: the answer's text without tags, then what was drawn."""
    parts = [html.escape(reply.parsed.text.strip())]
    parts.append(answer_summary(reply.parsed.objects))
    if reply.parsed.problems:
        parts.append(
            "*Part of the answer could not be read: "
            + "; ".join(html.escape(problem) for problem in reply.parsed.problems)
            + ".*"
        )
    return "\n\n".join(part for part in parts if part) or "*(empty answer)*"


def answer_geojson(reply: Reply) -> dict[str, Any]:
    """The answer's geometry to download: lon/lat when georeferenced, else pixel coordinates."""
    return reply.to_geojson()


def write_geojson(collection: dict[str, Any], directory: Path, stem: str) -> Path:
    """Writes ``collection`` atomically to a new folder under ``directory`` as ``stem.geojson``.

    Each answer gets its own folder, so the download keeps the image's name.
    """
    folder = directory / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / f"{stem}.geojson"
    with atomic_writer(path) as stream:
        json.dump(collection, stream, indent=1)
    return path


def fill_task(template: str, target: str) -> str:
    """A task button's question, with the object field filled in.

    Raises:
        gradio.Error: when the template needs an object and the field is empty.
    """
    target = target.strip()
    if "{target}" in template and not target:
        raise gr.Error("Type the kind of object first (e.g. ships, buildings, storage tanks).")
    return template.format(target=target)


@dataclass(frozen=True)
class SceneAnswer:
    """What the scene tab shows after a run.

    Attributes:
        result: The scene run.
        summary: Markdown: the answer for the whole scene, then how the scene was read.
        headers: Column names of ``rows``.
        rows: One row per merged object: phrase, category, kind and its centre (lon/lat for a
            georeferenced scene, else pixels), taken from the ``scene.geojson`` offered.
        files: The files written, by name (:data:`geochat.engine.scene_output.FILES`; no
            ``scene.gpkg`` without a georeference).
    """

    result: SceneResult
    summary: str
    headers: list[str]
    rows: list[list[Any]]
    files: dict[str, Path]


def answer_scene(
    assistant: Assistant,
    path: str | Path,
    question: str,
    out_dir: Path,
    gsd: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SceneAnswer:
    """Asks one question of a whole scene and writes its files into a new folder of ``out_dir``.

    Args:
        assistant: The engine; its imagery settings read the scene.
        path: A GeoTIFF of any size, or a PNG/JPEG (with ``gsd``).
        question: Asked of every tile.
        out_dir: Each run writes into its own new folder under it.
        gsd: Metres per pixel of an image without a georeference.
        progress: Called with (tiles done, tiles in all) before the first tile and after each
            batch.

    Raises:
        FileNotFoundError, ImageError, SceneError: For a scene that cannot be run.
    """
    total = done = 0

    def on_plan(plan: ScenePlan) -> None:
        nonlocal total
        total = len(plan.tiles)
        if progress is not None:
            progress(0, total)

    def on_tiles(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    result = run_scene(assistant, path, question, gsd=gsd, progress=on_tiles, on_plan=on_plan)
    files = scene_files(result, path, assistant.imagery, gsd)
    folder = out_dir / uuid.uuid4().hex
    written = write_scene(result, folder, files)
    collection = json.loads(files["scene.geojson"])
    rows = []
    for feature in collection["features"]:
        centre = shapely.geometry.shape(feature["geometry"]).centroid
        properties = feature["properties"]
        digits = 6 if result.georef is not None else 1  # 6 decimals of a degree: 0.1 m
        rows.append(
            [
                properties["phrase"] or UNNAMED,
                properties["category"] or "",
                properties["kind"],
                round(centre.x, digits),
                round(centre.y, digits),
            ]
        )
    centre_names = ["lon", "lat"] if result.georef is not None else ["x (px)", "y (px)"]
    return SceneAnswer(
        result,
        _scene_summary(result),
        ["phrase", "category", "kind", *centre_names],
        rows,
        {written_path.name: written_path for written_path in written},
    )


def _scene_summary(result: SceneResult) -> str:
    """Markdown: the answer, the tiles run, the plan's notes and what could not be read."""
    plan = result.plan
    parts = [
        f"**{html.escape(result.answer)}**",
        f"{result.tiles_run} of {len(plan.tiles)} tiles answered"
        f" ({result.tiles_skipped} skipped as no-data); scene {plan.width} × {plan.height} px; "
        + "; ".join(html.escape(note) for note in plan.notes)
        + ".",
    ]
    if result.problems:
        parts.append(f"*{len(result.problems)} parts of the tiles' answers could not be read.*")
    if result.georef is None:
        parts.append("*No georeference: scene.geojson is in pixel coordinates; no GeoPackage.*")
    return "\n\n".join(parts)


class _Handlers:
    """The event handlers of one page, around one assistant."""

    def __init__(self, assistant: Assistant, display_max_side: int) -> None:
        self.assistant = assistant
        self.display_max_side = display_max_side
        self.export_dir = Path(tempfile.mkdtemp(prefix="geochat-app-"))

    def open_image(self, path: str | None, bands: str = "", stretch: str = "") -> tuple[Any, ...]:
        """Loads an uploaded file; resets the chat, the region and the overlay.

        Args:
            path: The uploaded file.
            bands: A band preset (``BAND_PRESETS``) or band numbers such as ``3,2,1``; ""
                keeps the model's settings.
            stretch: A stretch (``STRETCH_CHOICES`` or e.g. ``minmax:0,3000``); "" keeps the
                model's.

        Returns:
            Session, annotator value, image info, chat, history, overlay, download button.

        Raises:
            gradio.Error: for a file that is not a readable PNG, JPEG or GeoTIFF.
        """
        cleared: tuple[list[dict[str, Any]], list[dict[str, Any]], None, gr.DownloadButton]
        cleared = ([], [], None, gr.DownloadButton(value=None, visible=False))
        if path is None:
            return (None, None, "", *cleared)
        name = Path(path).name
        try:
            imagery = self.assistant.imagery.updated(stretch=stretch.strip() or None)
            if bands.strip():
                numbers = bands.replace(",", "").replace(" ", "").isdigit()
                imagery = imagery.updated(**{"bands" if numbers else "preset": bands.strip()})
            loaded = load_image(path, imagery=imagery)
        except (ValueError, OSError) as error:
            # The upload's server path means nothing to the user; its name does.
            reason = str(error).replace(f"{path}: ", "").replace(path, name)
            raise gr.Error(f"Cannot open {name}: {reason}", title="Unreadable image") from error
        session = ImageSession(loaded, display_copy(loaded.image, self.display_max_side), name)
        annotator_value = {"image": session.display.image, "boxes": []}
        return (session, annotator_value, _image_info(session), *cleared)

    def run_example(
        self,
        path: str | None,
        questions: str,
        bands: str,
        stretch: str,
        max_new_tokens: float,
        temperature: float,
    ) -> Iterator[tuple[Any, ...]]:
        """Opens an example's image, then asks its questions in order in one conversation.

        Each answer streams and is drawn as a typed question's is (:meth:`ask`); a later
        question sees the earlier turns, so a follow-up ("Segment them.") refers to them.

        Args:
            path: The example's image.
            questions: One question a line.
            bands: As :meth:`open_image`'s.
            stretch: As :meth:`open_image`'s.
            max_new_tokens: Answer length limit of each question.
            temperature: Sampling temperature of each question.

        Yields:
            Session, annotator value, image info, chat, history, overlay, download button:
            the opened image, then every update of each answer.
        """
        opened = self.open_image(path, bands, stretch)
        yield opened
        session, _, _, chat, history, _, _ = opened
        for question in filter(str.strip, questions.splitlines()):
            updates = self.ask(question, None, max_new_tokens, temperature, session, history, chat)
            for chat_update, _, history_update, overlay, download in updates:
                # ask skips the outputs it leaves unchanged; the next question needs them all.
                chat = chat_update if isinstance(chat_update, list) else chat
                history = history_update if isinstance(history_update, list) else history
                yield (gr.skip(),) * 3 + (chat_update, history_update, overlay, download)

    def clear_chat(self) -> tuple[Any, ...]:
        """Forgets the conversation; keeps the image.

        Returns:
            Chat, history, overlay, download button.
        """
        return [], [], None, gr.DownloadButton(value=None, visible=False)

    def ask(
        self,
        question: str,
        region_value: dict[str, Any] | None,
        max_new_tokens: float,
        temperature: float,
        session: ImageSession | None,
        history: list[dict[str, str]],
        chat: list[dict[str, Any]],
    ) -> Iterator[tuple[Any, ...]]:
        """Streams the answer to one question, then draws its geometry.

        Yields:
            Chat, question box, history, overlay, download button; one update per generated
            piece of text, then the final one.

        Raises:
            gradio.Error: when the assistant fails or stops without a final reply.
        """
        question = question.strip()
        if not question:
            gr.Warning("Type a question first, or click one of the task buttons.")
            yield (gr.skip(),) * 5
            return
        region = self._region(region_value, session)
        shown = html.escape(question) + (f"\n\n{_region_note(region)}" if region else "")
        chat = [*chat, {"role": "user", "content": shown}, {"role": "assistant", "content": ""}]
        yield chat, "", gr.skip(), gr.skip(), gr.skip()
        image = session.loaded if session is not None else None
        content, region = self._question(question, region, image)
        messages = [*history, {"role": "user", "content": content}]
        text, reply = "", None
        try:
            stream = self.assistant.chat(
                image,
                messages,
                region=region,
                max_new_tokens=int(max_new_tokens),
                temperature=float(temperature),
                stream=True,
            )
            with closing(stream):  # a page closed mid-answer stops the generation
                for item in stream:
                    if isinstance(item, str):
                        text += item
                        shown = readable(text, partial=True).text  # as the final answer will be
                        chat[-1] = {"role": "assistant", "content": html.escape(shown)}
                        yield chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()
                    else:
                        reply = item
        except Exception as error:  # the page must say what failed, whatever the backend
            logger.exception("the assistant failed")
            message = f"The model failed to answer: {type(error).__name__}: {error}"
            raise gr.Error(message, title="Model error") from error
        if reply is None:
            raise gr.Error("The model stopped without finishing its answer.", title="Model error")
        chat[-1] = {"role": "assistant", "content": _answer_markdown(reply)}
        # The history keeps what the model saw (the image place, the region), so that later
        # turns still know which region a question was about.
        asked = prepare_messages(messages, image, region)
        history = [*asked, {"role": "assistant", "content": reply.text}]
        yield (
            chat,
            gr.skip(),
            history,
            self._overlay(reply, session),
            self._download(reply, session),
        )

    def _question(
        self, question: str, region: list[float] | None, image: LoadedImage | None
    ) -> tuple[str, list[float] | None]:
        """The question as the model is asked it, and the region the engine is to append.

        The region button's question becomes the identify task's (`prompts.identify`, the
        region inside the sentence as training writes it), in the family's own words where it
        has them (`geochat.engine.task_question`); any other question keeps the region appended.
        """
        if question != REGION_QUESTION or region is None or image is None:
            return question, region
        place = format_region(region, image.width, image.height)
        asked = prompts.identify(place)
        return task_question(self.assistant.family, "identify", asked, region=place), None

    @staticmethod
    def _region(
        region_value: dict[str, Any] | None, session: ImageSession | None
    ) -> list[float] | None:
        """The drawn box in pixels of the original image, or None when none is drawn."""
        if session is None or not region_value or not region_value.get("boxes"):
            return None
        loaded = session.loaded
        return region_to_original(
            region_value["boxes"][-1], session.display, loaded.width, loaded.height
        )

    @staticmethod
    def _overlay(reply: Reply, session: ImageSession | None) -> Any:
        if session is None:
            return None
        annotations, colours = overlay_annotations(reply.refined_objects(), session.display)
        value = (session.display.image, annotations)
        # gradio's stub types the annotations as a list (invariant); it only reads them.
        return gr.AnnotatedImage(value=value, color_map=colours)  # type: ignore[arg-type]

    def _download(self, reply: Reply, session: ImageSession | None) -> gr.DownloadButton:
        collection = answer_geojson(reply)
        if not collection["features"]:
            return gr.DownloadButton(value=None, visible=False)
        stem = Path(session.name).stem if session is not None else "answer"
        path = write_geojson(collection, self.export_dir, stem)
        space = "lon/lat" if reply.geojson is not None else "pixels"
        return gr.DownloadButton(f"Download GeoJSON ({space})", value=str(path), visible=True)

    def scene(
        self,
        path: str | None,
        question: str,
        gsd: float | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (how Gradio passes its progress bar)
    ) -> tuple[Any, ...]:
        """Runs one question over a whole scene (:func:`answer_scene`), tiles on a progress bar.

        Returns:
            Answer, overview image, object table, GeoJSON and GeoPackage download buttons.

        Raises:
            gradio.Error: without a scene or a question, for a scene that cannot be run, and
                when the model fails.
        """
        question = question.strip()
        if path is None:
            raise gr.Error("Upload a scene first (a GeoTIFF, or a PNG/JPEG with its GSD).")
        if not question:
            raise gr.Error("Type a question first, e.g. Where are the buildings?")
        name = Path(path).name

        def tiles_done(done: int, total: int) -> None:
            progress((done, total), desc="Tiles", unit="tiles")

        try:
            scene = answer_scene(
                self.assistant, path, question, self.export_dir, gsd or None, tiles_done
            )
        except (OSError, ValueError) as error:
            reason = str(error).replace(f"{path}: ", "").replace(path, name)
            raise gr.Error(f"Cannot run {name}: {reason}", title="Unusable scene") from error
        except Exception as error:  # the page must say what failed, whatever the backend
            logger.exception("the scene run failed")
            message = f"The model failed to answer: {type(error).__name__}: {error}"
            raise gr.Error(message, title="Model error") from error
        gpkg = scene.files.get("scene.gpkg")
        space = "lon/lat" if scene.result.georef is not None else "pixels"
        return (
            scene.summary,
            str(scene.files["overview.png"]),
            gr.Dataframe(value=scene.rows, headers=scene.headers),
            gr.DownloadButton(
                f"Download scene.geojson ({space})",
                value=str(scene.files["scene.geojson"]),
                visible=True,
            ),
            gr.DownloadButton(
                "Download scene.gpkg (scene CRS)",
                value=None if gpkg is None else str(gpkg),
                visible=gpkg is not None,
            ),
        )


def _examples() -> list[list[str]]:
    """The shipped example images with their questions, one a line (those that exist)."""
    return [
        [str(EXAMPLES_DIR / name), "\n".join(questions)]
        for name, questions in EXAMPLES
        if (EXAMPLES_DIR / name).is_file()
    ]


@dataclass
class _Page:
    """The components of the page that events read or write."""

    session: gr.State
    history: gr.State
    upload: gr.File
    bands: gr.Dropdown
    stretch: gr.Dropdown
    image_info: gr.Markdown
    region: image_annotator
    overlay: gr.AnnotatedImage
    download: gr.DownloadButton
    chatbot: gr.Chatbot
    question: gr.Textbox
    send: gr.Button
    clear: gr.Button
    target: gr.Textbox
    task_buttons: list[tuple[gr.Button, str]]
    token_limit: gr.Slider
    temperature: gr.Slider


class _ImageParts(TypedDict):
    """The components of the image column (fields of :class:`_Page`)."""

    upload: gr.File
    bands: gr.Dropdown
    stretch: gr.Dropdown
    image_info: gr.Markdown
    region: image_annotator
    overlay: gr.AnnotatedImage
    download: gr.DownloadButton


class _ChatParts(TypedDict):
    """The components of the chat column (fields of :class:`_Page`)."""

    chatbot: gr.Chatbot
    question: gr.Textbox
    send: gr.Button
    clear: gr.Button
    target: gr.Textbox
    task_buttons: list[tuple[gr.Button, str]]
    token_limit: gr.Slider
    temperature: gr.Slider


class _SceneParts(TypedDict):
    """The components of the scene tab."""

    upload: gr.File
    gsd: gr.Number
    question: gr.Textbox
    run: gr.Button
    answer: gr.Markdown
    overview: gr.Image
    table: gr.Dataframe
    geojson: gr.DownloadButton
    gpkg: gr.DownloadButton


def _image_column() -> _ImageParts:
    """Upload, the image to draw a region on, the answer drawn on the image, the download."""
    upload = gr.File(
        label="Image (PNG, JPEG or GeoTIFF)",
        file_types=IMAGE_SUFFIXES,
        type="filepath",
        height=110,
        elem_id="upload",
    )
    with gr.Accordion("Bands and stretch", open=True), gr.Row():
        bands = gr.Dropdown(
            BAND_PRESETS,
            value="",
            label="Bands (a preset, or type band numbers such as 3,2,1)",
            allow_custom_value=True,
            elem_id="bands",
        )
        stretch = gr.Dropdown(
            STRETCH_CHOICES,
            value="",
            label="Stretch (or type minmax:LOW,HIGH)",
            allow_custom_value=True,
            elem_id="stretch",
        )
    image_info = gr.Markdown()
    region = image_annotator(
        label="Image: draw a box to ask about a region (delete it to ask about the whole image)",
        single_box=True,
        sources=[],  # images come through the upload above, which reads GeoTIFFs too
        image_type="filepath",
        label_list=["region"],
        label_colors=[REGION_COLOUR],
        use_default_label=True,
        disable_edit_boxes=True,
        show_clear_button=False,
        show_download_button=False,
        show_remove_button=True,
        height=IMAGE_HEIGHT,
        elem_id="region",
    )
    overlay = gr.AnnotatedImage(label="Answer on the image", height=IMAGE_HEIGHT, elem_id="overlay")
    download = gr.DownloadButton("Download GeoJSON", visible=False, elem_id="download")
    return {
        "upload": upload,
        "bands": bands,
        "stretch": stretch,
        "image_info": image_info,
        "region": region,
        "overlay": overlay,
        "download": download,
    }


def _chat_column(max_new_tokens: int) -> _ChatParts:
    """The conversation, the question box, the task buttons and the generation settings."""
    chatbot = gr.Chatbot(label="Chat", height=CHAT_HEIGHT, elem_id="chat")
    question = gr.Textbox(
        label="Question",
        placeholder="Ask about the image, e.g. Where are the ships?",
        elem_id="question",
    )
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="send")
        clear = gr.Button("Clear chat")
    target = gr.Textbox(label="Object for the task buttons", value=DEFAULT_TARGET)
    with gr.Row():
        task_buttons = [(gr.Button(name, size="sm"), text) for name, text in TASKS]
    with gr.Accordion("Generation", open=False):
        token_limit = gr.Slider(1, 1024, value=max_new_tokens, step=1, label="Max new tokens")
        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature")
    return {
        "chatbot": chatbot,
        "question": question,
        "send": send,
        "clear": clear,
        "target": target,
        "task_buttons": task_buttons,
        "token_limit": token_limit,
        "temperature": temperature,
    }


def _scene_tab() -> _SceneParts:
    """The scene, its GSD, the question; the answer, overview, object table and downloads."""
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(
                label="Scene (a GeoTIFF of any size, or a PNG/JPEG with its GSD)",
                file_types=IMAGE_SUFFIXES,
                type="filepath",
                height=110,
                elem_id="scene-upload",
            )
            gsd = gr.Number(
                label="GSD in metres per pixel of a PNG/JPEG (0: unknown; a GeoTIFF has its own)",
                value=None,
                minimum=0,
                elem_id="scene-gsd",
            )
            question = gr.Textbox(
                label="Question, asked of every tile",
                placeholder="e.g. Where are the buildings?",
                elem_id="scene-question",
            )
            run = gr.Button("Run on the whole scene", variant="primary", elem_id="scene-run")
            answer = gr.Markdown(elem_id="scene-answer")
            with gr.Row():
                geojson = gr.DownloadButton(
                    "Download scene.geojson", visible=False, elem_id="scene-geojson"
                )
                gpkg = gr.DownloadButton("Download scene.gpkg", visible=False, elem_id="scene-gpkg")
        with gr.Column(scale=1):
            overview = gr.Image(
                label="Overview with the objects found",
                type="filepath",
                interactive=False,
                height=IMAGE_HEIGHT,
                elem_id="scene-overview",
            )
            table = gr.Dataframe(
                headers=["phrase", "category", "kind", "lon", "lat"],
                label="Objects",
                interactive=False,
                elem_id="scene-objects",
            )
    return {
        "upload": upload,
        "gsd": gsd,
        "question": question,
        "run": run,
        "answer": answer,
        "overview": overview,
        "table": table,
        "geojson": geojson,
        "gpkg": gpkg,
    }


def _wire_scene(parts: _SceneParts, handlers: _Handlers) -> None:
    """Connects the scene tab; ``scene`` is its API."""
    gr.on(
        [parts["question"].submit, parts["run"].click],
        handlers.scene,
        inputs=[parts["upload"], parts["question"], parts["gsd"]],
        outputs=[
            parts["answer"],
            parts["overview"],
            parts["table"],
            parts["geojson"],
            parts["gpkg"],
        ],
        api_name="scene",
        concurrency_id="model",  # shares the model with the chat
        concurrency_limit=1,
    )


def _opened(page: _Page) -> list[Any]:
    """What opening an image sets: session, region, image info, chat, history, overlay, download."""
    return [
        page.session,
        page.region,
        page.image_info,
        page.chatbot,
        page.history,
        page.overlay,
        page.download,
    ]


def _wire(page: _Page, handlers: _Handlers) -> None:
    """Connects the events; ``open_image``, ``ask`` and ``clear`` are the page's API."""
    opened = _opened(page)
    reading = [page.upload, page.bands, page.stretch]
    # Uploads and clears only, not every change: an example sets the file and opens it itself
    # (run_example), before asking its questions.
    gr.on(
        [page.upload.upload, page.upload.clear],
        handlers.open_image,
        reading,
        opened,
        api_name="open_image",
    )
    # A new band or stretch choice reads the image again (and starts a new conversation).
    gr.on(
        [page.bands.change, page.stretch.change],
        handlers.open_image,
        reading,
        opened,
        api_visibility="private",
    )
    gr.on(
        [page.question.submit, page.send.click],
        handlers.ask,
        inputs=[
            page.question,
            page.region,
            page.token_limit,
            page.temperature,
            page.session,
            page.history,
            page.chatbot,
        ],
        outputs=[page.chatbot, page.question, page.history, page.overlay, page.download],
        api_name="ask",
        concurrency_id="model",
        concurrency_limit=1,  # one generation at a time: the model is shared by every session
    )
    page.clear.click(
        handlers.clear_chat,
        outputs=[page.chatbot, page.history, page.overlay, page.download],
        api_name="clear",
    )
    for button, template in page.task_buttons:
        button.click(
            partial(fill_task, template),
            inputs=page.target,
            outputs=page.question,
            api_visibility="private",
        )


def _example_conversations(page: _Page, handlers: _Handlers) -> None:
    """The examples under the chat: a click opens the image and asks its questions in order.

    ``run_example`` is its API: an image and questions, one a line.
    """
    if not (rows := _examples()):
        return
    questions = gr.Textbox(label="Questions", visible=False)
    examples = gr.Examples(
        rows,
        inputs=[page.upload, questions],
        label="Examples (synthetic world): click one to ask its questions in order",
    )
    examples.load_input_event.then(
        handlers.run_example,
        inputs=[
            page.upload,
            questions,
            page.bands,
            page.stretch,
            page.token_limit,
            page.temperature,
        ],
        outputs=_opened(page),
        api_name="run_example",
        concurrency_id="model",  # shares the model with the chat
        concurrency_limit=1,
    )


def build_ui(
    assistant: Assistant,
    *,
    display_max_side: int = DISPLAY_MAX_SIDE,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> gr.Blocks:
    """Builds the page around an assistant (see the module docs).

    Args:
        assistant: Anything with the engine's ``Assistant.chat`` interface (``stream=True``
            yields text pieces, then the ``Reply``), plus ``model_name`` and ``backend``.
        display_max_side: Longest side of the image copy the page shows.
        max_new_tokens: Initial answer length limit (the page has a slider).

    Returns:
        The page; ``launch()`` it. Its API names: ``open_image``, ``ask``, ``clear``,
        ``run_example``, ``scene``.
    """
    handlers = _Handlers(assistant, display_max_side)
    with gr.Blocks(title="geochat", analytics_enabled=False) as blocks:
        gr.Markdown(
            "## geochat: ask about a remote-sensing image\n"
            f"Model **{html.escape(str(assistant.model_name))}** ({assistant.backend}). "
            "Upload an image, ask a question, or draw a box on the image to ask about a region; "
            "the *Whole scene* tab asks one question of a scene of any size."
        )
        session, history = gr.State(None), gr.State([])
        with gr.Tabs():
            with gr.Tab("Chat about an image", id="chat-tab"):
                with gr.Row():
                    with gr.Column(scale=1):
                        image_parts = _image_column()
                    with gr.Column(scale=1):
                        chat_parts = _chat_column(max_new_tokens)
                page = _Page(session=session, history=history, **image_parts, **chat_parts)
                _example_conversations(page, handlers)
            with gr.Tab("Whole scene", id="scene-tab", elem_id="scene-tab"):
                scene_parts = _scene_tab()
        _wire(page, handlers)
        _wire_scene(scene_parts, handlers)
    return blocks
