"""vLLM plugin: teaches vLLM the geochat architecture and the `model_type="geochat"` config.

Declared in pyproject.toml under the entry-point group `vllm.general_plugins`, which vLLM loads
in every one of its processes (API server, engine core, workers) before it reads a checkpoint::

    [project.entry-points."vllm.general_plugins"]
    geochat = "geochat.app.vllm_plugin:register"

Set `VLLM_PLUGINS=geochat` to load only this plugin.
"""

ARCHITECTURE = "GeoChatForConditionalGeneration"  # `architectures[0]` of our config.json
MODEL_CLASS = "geochat.app.vllm_model:GeoChatForConditionalGeneration"


def register() -> None:
    """Registers the geochat config, processor and architecture; safe to call more than once.

    Importing `geochat.modeling` registers `GeoChatConfig` with transformers' AutoConfig and
    `GeoChatProcessor` with AutoProcessor, which is how vLLM reads the checkpoint's config.json
    and processor files. The model class is registered by name, so vLLM imports it (and torch
    modules with it) only in the processes that build the model.
    """
    from vllm import ModelRegistry

    import geochat.modeling  # noqa: F401  (the import registers the Auto classes)

    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)  # a second call re-registers it
