import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
)

from geochat.modeling import (
    COMPRESSORS,
    GeoChatConfig,
    GeoChatForConditionalGeneration,
    GeoChatModel,
    GeoChatProcessor,
    ImageTokenMismatchError,
    load_pretrained,
    tiny,
)


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_forward_and_generate_run(compressor, wide_image, question):
    model, processor = tiny(compressor)
    inputs = processor.build_chat_inputs(wide_image, question).inputs

    out = logits(model, inputs)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)

    assert out.shape == (*inputs["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(out).all()
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3


def test_save_and_load_through_auto_classes_gives_identical_logits(tmp_path, wide_image, question):
    model, processor = tiny("conv", 2)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)

    assert isinstance(loaded, GeoChatForConditionalGeneration)
    assert isinstance(loaded_processor, GeoChatProcessor)
    assert isinstance(loaded_processor.image_processor, Idefics3ImageProcessorPil)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GeoChatConfig)
    assert isinstance(AutoModel.from_config(model.config), GeoChatModel)
    assert loaded.config.compressor == "conv"
    inputs = processor.build_chat_inputs(wide_image, question).inputs
    reloaded_inputs = loaded_processor.build_chat_inputs(wide_image, question).inputs
    assert torch.equal(inputs["input_ids"], reloaded_inputs["input_ids"])
    assert torch.equal(logits(model, inputs), logits(loaded, reloaded_inputs))


def test_load_pretrained_returns_model_and_processor(tmp_path):
    model, processor = tiny("pool", 4)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    loaded, loaded_processor = load_pretrained(tmp_path)

    assert not loaded.training
    assert loaded_processor.image_seq_len == loaded.config.image_seq_len == 4


def test_load_pretrained_refuses_a_processor_of_another_compression(tmp_path):
    model, _ = tiny("pixel_shuffle", 2)
    _, other_processor = tiny("pixel_shuffle", 4)
    model.save_pretrained(tmp_path)
    other_processor.save_pretrained(tmp_path)

    with pytest.raises(ValueError, match="image tokens per tile"):
        load_pretrained(tmp_path)


def test_idefics3_checkpoint_loads_unchanged_with_identical_outputs(tmp_path, wide_image):
    ours, processor = tiny()
    config = Idefics3Config(
        vision_config=ours.config.vision_config.to_dict(),
        text_config=ours.config.text_config.to_dict(),
        image_token_id=ours.config.image_token_id,
        pad_token_id=ours.config.pad_token_id,
        scale_factor=2,
    )
    torch.manual_seed(1)
    idefics3 = Idefics3ForConditionalGeneration(config).eval()
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 128}, max_image_size={"longest_edge": 64}
    )
    idefics3_processor = Idefics3Processor(image_processor, processor.tokenizer, image_seq_len=16)
    idefics3.save_pretrained(tmp_path)
    idefics3_processor.save_pretrained(tmp_path)

    model, loaded_processor = load_pretrained(tmp_path)

    assert (model.config.compressor, model.config.scale_factor) == ("pixel_shuffle", 2)
    inputs = idefics3_processor(
        images=[wide_image], text=["User:<image>Where?"], return_tensors="pt"
    )
    ours_inputs = loaded_processor(
        images=[wide_image], text=["User:<image>Where?"], return_tensors="pt"
    )
    assert all(torch.equal(inputs[key], ours_inputs[key]) for key in inputs)
    assert torch.equal(logits(idefics3, inputs), logits(model, inputs))


@pytest.mark.parametrize("as_embeddings", [False, True])
def test_image_token_count_mismatch_raises_a_clear_error(as_embeddings, wide_image, question):
    model, processor = tiny()
    inputs = dict(processor.build_chat_inputs(wide_image, question).inputs)
    input_ids = inputs.pop("input_ids").clone()
    first_image_token = (input_ids[0] == model.config.image_token_id).nonzero()[0, 0]
    input_ids[0, first_image_token] = model.config.pad_token_id
    if as_embeddings:
        inputs["inputs_embeds"] = model.get_input_embeddings()(input_ids)
    else:
        inputs["input_ids"] = input_ids

    with pytest.raises(
        ImageTokenMismatchError, match=r"47 image tokens .* 3 tiles x 16 features = 48"
    ):
        model(**inputs)


def test_tiny_is_deterministic_with_its_seed():
    first = tiny("conv", 2, seed=0)[0].state_dict()
    again = tiny("conv", 2, seed=0)[0].state_dict()
    other = tiny("conv", 2, seed=1)[0].state_dict()

    assert first.keys() == again.keys()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])


def test_tiny_sets_the_requested_sizes():
    model, _ = tiny(text_layers=3, hidden=96, vision_hidden=64, vision_layers=1)
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.num_hidden_layers, text.hidden_size, text.head_dim) == (3, 96, 32)
    assert (vision.num_hidden_layers, vision.hidden_size) == (1, 64)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"head_dim": 16}, "head_dim"), ({"hidden": 80}, "multiple")]
)
def test_tiny_refuses_head_dims_vllm_cannot_serve(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)
