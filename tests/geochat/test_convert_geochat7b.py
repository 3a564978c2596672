"""`geochat convert geochat-7b`: GeoChat-7B's released layout -> transformers' LLaVA.

`tests/data/geochat7b/data.py` writes a tiny checkpoint in the original LLaVA-1.5 key layout.
The converted folder must give the logits of a reference forward written here straight from
the original layout: CLIP hidden states of the selected layer without the class token (position
embeddings interpolated bicubically, corners aligned, to the new size), a GELU MLP, spliced
where the image goes, then the LLaMA model; and its processor must pad to a square in the
truncated mean colour and resize, as GeoChat does.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from geochat import cli
from geochat.engine import load
from geochat.modeling.families import family_of, load_backbone
from geochat.modeling.llava15 import ConversionError, convert_llava15, interpolate_positions

DATA = Path(__file__).resolve().parents[1] / "data" / "geochat7b" / "data.py"
IMAGE_SIZE = 32  # 4 x 4 patches of 8 px (the tiny tower was made at 24 px: 3 x 3)
WIDTH, HEIGHT = 48, 20
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _data():
    spec = importlib.util.spec_from_file_location("geochat7b_data", DATA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _data().build(tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory):
    return convert_llava15(source, tmp_path_factory.mktemp("out") / "geochat7b", IMAGE_SIZE)


@pytest.fixture
def image():
    pixels = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _reference_pixels(image: Image.Image) -> torch.Tensor:
    """GeoChat's preprocessing: centred on a square of int(mean * 255), resized, normalised."""
    side = max(image.size)
    square = Image.new("RGB", (side, side), tuple(int(255 * m) for m in CLIP_MEAN))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    resized = square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    array = np.asarray(resized, dtype=np.float32) / 255
    array = (array - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None]  # [1, 3, S, S]


def _reference_logits(
    source: Path, input_ids: torch.Tensor, image_token_id: int, pixel_values: torch.Tensor
) -> torch.Tensor:
    """The original LLaVA-1.5 forward, from the original weights and config."""
    config = json.loads((source / "config.json").read_text())
    weights = load_file(source / "model.safetensors")
    llm = LlamaForCausalLM(LlamaConfig(**config)).eval()
    llm.load_state_dict({k: v for k, v in weights.items() if "mm_projector" not in k})
    tower = CLIPVisionModel.from_pretrained(config["mm_vision_tower"])
    state = tower.state_dict()
    key = next(k for k in state if k.endswith("embeddings.position_embedding.weight"))
    old = state[key]
    grid, side = IMAGE_SIZE // 8, int((old.shape[0] - 1) ** 0.5)
    patches = old[1:].T.reshape(1, -1, side, side)
    patches = torch.nn.functional.interpolate(
        patches, size=(grid, grid), mode="bicubic", align_corners=True
    )
    state[key] = torch.cat([old[:1], patches.reshape(old.shape[1], -1).T])
    vision = CLIPVisionConfig.from_pretrained(config["mm_vision_tower"])
    vision.image_size = IMAGE_SIZE
    tower = CLIPVisionModel(vision).eval()
    tower.load_state_dict(state)
    with torch.no_grad():
        hidden = tower(pixel_values, output_hidden_states=True).hidden_states
        selected = hidden[config["mm_vision_select_layer"]][:, 1:]  # "patch": no class token
        w = {k.removeprefix("model.mm_projector."): v for k, v in weights.items() if "mm_" in k}
        features = torch.nn.functional.gelu(selected @ w["0.weight"].T + w["0.bias"])
        features = features @ w["2.weight"].T + w["2.bias"]  # [1, grid * grid, D]
        where = input_ids[0] == image_token_id
        embeds = llm.model.embed_tokens(input_ids.masked_fill(input_ids == image_token_id, 0))
        embeds[0, where] = features[0]
        return llm(inputs_embeds=embeds).logits


def test_converted_logits_equal_the_original_forward(source, converted, image):
    backbone = load_backbone(converted)
    messages = [{"role": "user", "content": "<image>\n[refer] give me the location of the pool"}]
    inputs = backbone.inputs(image, messages).inputs

    with torch.no_grad():
        logits = backbone.model(**inputs).logits
    config = backbone.model.config
    reference = _reference_logits(
        source, inputs["input_ids"], config.image_token_id, _reference_pixels(image)
    )

    assert torch.allclose(inputs["pixel_values"], _reference_pixels(image), atol=1e-5)
    assert (inputs["input_ids"] == config.image_token_id).sum() == (IMAGE_SIZE // 8) ** 2
    vocab = reference.shape[-1]  # the converter adds <image> and <pad> after the original ids
    assert torch.allclose(logits[..., :vocab], reference, atol=1e-4)


def test_a_tower_inside_the_checkpoint_converts_the_same(tmp_path, converted):
    inside = _data().build(tmp_path / "released", tower_inside=True)
    out = convert_llava15(inside, tmp_path / "out", IMAGE_SIZE)

    ours, theirs = load_file(out / "model.safetensors"), load_file(converted / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_converted_folder_is_a_llava_family_checkpoint_with_geochats_prompt(converted):
    backbone = load_backbone(converted)
    text = backbone.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )

    assert family_of(converted).name == "LLaVA"
    assert backbone.dialect == "geochat"
    assert text.startswith("A chat between a curious user and an artificial intelligence")
    assert text.endswith("questions. USER: <image>\nHi ASSISTANT:")
    assert backbone.processor.image_processor.crop_size == {"height": 32, "width": 32}


def test_geochat_chat_runs_on_the_converted_folder(converted, tmp_path, image, capsys):
    image.save(tmp_path / "scene.png")

    assert load(converted).model_name.endswith("geochat7b")
    scene, model = str(tmp_path / "scene.png"), str(converted)
    code = cli.main(["chat", "--image", scene, "--model", model, "--max-new-tokens", "3", "Pool?"])

    assert code == 0, capsys.readouterr().err


def test_interpolation_keeps_the_class_row_and_the_original_samples():
    side, grid = 3, 5
    rows = torch.randn(side * side, 4, generator=torch.Generator().manual_seed(0))
    table = torch.cat([torch.full((1, 4), 7.0), rows])

    resized = interpolate_positions(table, grid)

    # corners aligned: patch (i, j) of 3 x 3 sits at (2i, 2j) of 5 x 5 and keeps its value
    new = resized[1:].reshape(grid, grid, 4)
    assert resized.shape == (1 + grid * grid, 4)
    assert torch.equal(resized[0], table[0])
    assert torch.allclose(new[::2, ::2], rows.reshape(side, side, 4), atol=1e-5)
    assert torch.equal(interpolate_positions(table, side), table)


def test_convert_verb_writes_the_folder_and_refuses_bad_sources(source, tmp_path, capsys):
    out = tmp_path / "converted"

    assert cli.main(["convert", "geochat-7b", "--src", str(source), "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and not list(tmp_path.glob(".converted.*"))
    assert json.loads((out / "config.json").read_text())["vision_config"]["image_size"] == 504
    assert cli.main(["convert", "geochat-7b", "--src", str(source), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["convert", "geochat-7b", "--src", str(tmp_path), "--out", str(out) + "2"]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_a_llama_checkpoint_without_multimodal_keys_is_refused(tmp_path, source):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))

    with pytest.raises(ConversionError, match=r"not a LLaVA-1\.5 checkpoint"):
        convert_llava15(tmp_path, tmp_path / "out")
