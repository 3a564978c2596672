import pytest
import torch
from PIL import Image
from transformers.modeling_outputs import CausalLMOutput

from geochat.modeling import tiny
from geochat.training.collator import ChatCollator
from geochat.training.losses import (
    CoordinateLossError,
    CoordinateTargets,
    TrainingLoss,
    patch_position_loss,
    position_code,
)
from geochat.training.recipe import RecipeError, load_recipe
from geochat.training.trainer import build_loss

CONVERSATION = [
    {"from": "human", "value": "<image>\nWhere is the pool?"},
    {"from": "gpt", "value": "<box>[[100,200,300,400]]</box>"},
    {"from": "human", "value": "How many pools are there?"},
    {"from": "gpt", "value": "3"},
]


@pytest.fixture(scope="module")
def nano():
    """A tiny model whose tokenizer has location tokens, and a batch of one conversation."""
    model, processor = tiny(image_size=32, patch_size=8, max_tiles_per_side=1, loc_tokens=True)
    image = Image.new("RGB", (32, 32), (90, 120, 60))
    item = {"record": {"conversations": CONVERSATION}, "image": image}
    batch = ChatCollator(processor, 256)([item])
    return model, processor, batch


def value_of(processor, text):
    return processor.tokenizer.convert_tokens_to_ids(text)


def test_only_numbers_inside_boxes_are_coordinates(nano):
    _, processor, batch = nano
    loss = CoordinateTargets(processor.tokenizer, sigma=10)
    targets = batch["labels"][:, 1:]
    marked = targets[loss.coordinate_mask(targets)].tolist()
    assert processor.tokenizer.decode(marked) == "100200300400"
    # The count "3" is learned too, but outside any tag: plain cross-entropy.
    assert value_of(processor, "3") in targets.tolist()[0]


def test_a_narrow_target_is_plain_cross_entropy(nano):
    model, processor, batch = nano
    with torch.no_grad():
        outputs = model(**batch)
    narrow = TrainingLoss(CoordinateTargets(processor.tokenizer, sigma=1e-3))
    torch.testing.assert_close(narrow(outputs, batch["labels"]), outputs.loss, rtol=1e-4, atol=1e-4)
    plain = TrainingLoss()(outputs, batch["labels"])
    torch.testing.assert_close(plain, outputs.loss, rtol=1e-4, atol=1e-4)


def test_a_near_miss_costs_less_than_a_far_one(nano):
    _, processor, batch = nano
    labels = batch["labels"]
    first = (labels[0, 1:] == value_of(processor, "100")).nonzero()[0, 0]  # truth 100

    def loss_when_guessing(guess: str, sigma: float) -> torch.Tensor:
        # Every learned token is predicted right, except the first coordinate: a fifth of the
        # probability on `guess`, the rest spread over the vocabulary.
        logits = torch.zeros(1, labels.shape[1], len(processor.tokenizer))
        for position in range(labels.shape[1] - 1):
            target = int(labels[0, position + 1])
            if target >= 0:
                logits[0, position, target] = 20.0
        logits[0, first] = 0.0
        logits[0, first, value_of(processor, guess)] = 6.0
        loss = TrainingLoss(CoordinateTargets(processor.tokenizer, sigma))
        return loss(CausalLMOutput(logits=logits), labels)

    near, middle, far = (loss_when_guessing(guess, 15) for guess in ("104", "130", "900"))
    assert near < middle < far
    # Plain cross-entropy cannot tell a near miss from a far one.
    near, far = loss_when_guessing("104", 1e-3), loss_when_guessing("900", 1e-3)
    torch.testing.assert_close(near, far)


def test_a_tokenizer_without_location_tokens_is_refused():
    _, processor = tiny(image_size=32, patch_size=8, max_tiles_per_side=1)
    with pytest.raises(CoordinateLossError, match="one token"):
        CoordinateTargets(processor.tokenizer, sigma=10)
    recipe = load_recipe("nano-synthetic", ["loss.coordinate_sigma=10"])
    with pytest.raises(RecipeError, match="location tokens"):
        build_loss(recipe, processor)


def test_bad_loss_options_are_refused(nano):
    valid = "valid keys of loss: coordinate_sigma, position_weight"
    with pytest.raises(RecipeError, match=f"unknown key 'loss.label_smoothing'; {valid}"):
        load_recipe("nano-synthetic", ["loss.label_smoothing=0.1"])
    recipe = load_recipe("nano-synthetic", ["loss.position_weight=-1"])
    with pytest.raises(RecipeError, match="position_weight"):
        build_loss(recipe, nano[1])


def test_position_loss_is_zero_only_where_tokens_hold_their_place():
    torch.manual_seed(0)
    side = 4
    code = position_code(side)  # [16 tokens, C]
    placed = torch.randn(2, side * side, 32)
    for _ in range(20):  # the code is in units of the tokens' RMS, which the code moves
        unit = placed.pow(2).mean().sqrt()
        placed[..., : code.shape[-1]] = unit * code
    assert patch_position_loss(placed) < 1e-3
    shuffled = placed.clone()
    shuffled[:, :, : code.shape[-1]] = placed[:, torch.randperm(side * side), : code.shape[-1]]
    assert patch_position_loss(shuffled) > 0.1


def test_the_position_code_peaks_where_places_agree():
    code = position_code(8)
    similarity = code @ code.T  # [64, 64]
    assert torch.equal(similarity.argmax(-1), torch.arange(64))


def test_position_loss_teaches_visual_tokens_their_place():
    model, processor = tiny(image_size=32, patch_size=8, max_tiles_per_side=1, seed=1)
    images = [Image.new("RGB", (32, 32), colour) for colour in ((200, 30, 30), (30, 30, 200))]
    pixels = processor.image_processor([[image] for image in images], return_tensors="pt")
    pixel_values = pixels["pixel_values"]  # [2 images, 1 view, 3, 32, 32]

    def position_loss() -> torch.Tensor:
        # The connector output, [2, tokens, D], is the pooled output of the image features.
        return patch_position_loss(model.model.get_image_features(pixel_values).pooler_output)

    before = float(position_loss())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        position_loss().backward()
        optimizer.step()
    after = float(position_loss())
    assert after < before / 10, (before, after)


def test_the_training_loss_adds_the_position_term(nano):
    model, _, batch = nano
    with torch.no_grad():
        outputs = model(**batch)
    without = TrainingLoss()(outputs, batch["labels"])
    with_position = TrainingLoss(position_weight=0.5)(outputs, batch["labels"])
    expected = without + 0.5 * patch_position_loss(outputs.image_hidden_states)
    torch.testing.assert_close(with_position, expected)
