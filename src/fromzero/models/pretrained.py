"""Reading and writing Hugging Face GPT-2-family checkpoints (GPT-2, DistilGPT-2, your own).

A checkpoint directory holds ``config.json`` (the shape) and the weights: ``model.safetensors``
(or a sharded ``model.safetensors.index.json``), or an older ``pytorch_model.bin`` that we read
with ``torch.load(weights_only=True)`` so it cannot run code. Three details differ from our
:class:`~fromzero.models.GPT`:

* **Key layout.** ``GPT2LMHeadModel.save_pretrained`` writes ``transformer.h.0...`` keys; the
  original hub files of ``gpt2``/``distilgpt2`` have no ``transformer.`` prefix and also store
  ``attn.bias``/``attn.masked_bias``, constant causal-mask buffers we drop.
* **Conv1D.** GPT-2's projections (``c_attn``, ``c_proj``, ``c_fc``) store their weight as
  (in, out); ``nn.Linear`` stores (out, in), so those matrices are transposed.
* **Tied head.** ``lm_head.weight`` is usually absent: it is the token embedding ``wte``.

:func:`save_pretrained` writes the same format back, so transformers loads our models too. Our
own settings (sinusoidal positions, ``bias=False``) go into ``config.json`` under ``"fromzero"``;
such models are marked ``model_type: "fromzero-gpt"`` so transformers refuses them loudly
instead of loading wrong weights silently.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fromzero import __version__
from fromzero.console import console
from fromzero.errors import CorruptFileError, FromzeroError, InputError, MissingFileError, OfflineError
from fromzero.files import atomic_path, read_json, write_json
from fromzero.models.config import GPTConfig

HUB_MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2")
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
FROMZERO_MODEL_TYPE = "fromzero-gpt"

# Weights GPT-2 stores transposed, as (in_features, out_features).
_CONV1D_SUFFIXES = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")
# Top-level names inside GPT2Model (the "transformer." part of GPT2LMHeadModel).
_TRANSFORMER_PARTS = ("wte.", "wpe.", "h.", "ln_f.")
# Constant causal-mask buffers in older GPT-2 checkpoints, e.g. "h.3.attn.bias".
_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
HF_EXTRA = 'pip install "fromzero[hf]"'

Model = TypeVar("Model", bound=torch.nn.Module)


def load_pretrained(
    model_class: type[Model],
    name_or_dir: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    dropout: float | None = None,
) -> Model:
    """Load a checkpoint directory or a hub name (``gpt2``, ``distilgpt2``, ``org/name``) into ``model_class``.

    ``model_class`` is :class:`fromzero.models.GPT` (``GPT.from_pretrained`` passes itself), given
    rather than imported so that this module and the model do not import each other.
    Weights are converted to ``dtype`` (default float32) and moved to ``device`` (default CPU).
    ``dropout`` overrides the checkpoint's dropout (GPT-2's is 0.1). The model is returned in
    eval mode; call ``.train()`` to fine-tune.
    """
    directory = model_directory(name_or_dir)
    config = read_config(directory)
    if dropout is not None:
        config = GPTConfig.from_dict({**config.to_dict(), "dropout": dropout})
    state = read_state(directory, config)
    with torch.device("meta"):
        model = model_class(config)  # on "meta": shapes only, no memory, no random init
    check_state(state, model.state_dict(), f"the checkpoint in {directory}", expected_by="config.json")
    dtype = dtype or torch.float32
    state = {key: tensor.to(dtype=dtype, device=device or "cpu") for key, tensor in state.items()}
    model.load_state_dict(state, assign=True)
    model.tie_weights()  # assign=True replaced the shared parameter with two separate ones
    return model.eval()


def model_directory(name_or_dir: str | os.PathLike) -> Path:
    """The local directory for ``name_or_dir``: itself if it exists, else a hub download/cache hit."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise InputError(f"{path} is a file; give the directory that holds config.json and the weights")
    name = str(name_or_dir)
    if name in HUB_MODELS or _HUB_ID.match(name):
        return _download(name)
    if os.sep in name or name.startswith((".", "~")):
        raise MissingFileError(f"no model directory at {path}")
    raise InputError(
        f"unknown model {name!r}: not a directory and not a known name "
        f"({', '.join(HUB_MODELS)}, or a Hugging Face id such as org/name)"
    )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _download(repo_id: str) -> Path:
    """Fetch the config, weights and tokenizer files of ``repo_id`` (or find them in the HF cache)."""
    try:  # an optional dependency (the hf extra): the base install reads local model folders only
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ModuleNotFoundError:
        raise InputError(f"{repo_id} comes from the Hugging Face hub, which needs the hf extra: {HF_EXTRA}") from None

    offline = _hub_offline()
    common = [CONFIG_FILE, "generation_config.json", "vocab.json", "merges.txt", "tokenizer*.json",
              "special_tokens_map.json"]
    try:
        if not offline:
            console.print(f"fetching {repo_id} from the Hugging Face hub (cached after the first time)")
        path = Path(snapshot_download(repo_id, allow_patterns=[*common, "model*.safetensors*"],
                                      local_files_only=offline))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(repo_id, allow_patterns=[*common, PYTORCH_FILE],
                                          local_files_only=offline))
    except (RepositoryNotFoundError, GatedRepoError):
        raise InputError(f"{repo_id!r} is not a public model on the Hugging Face hub (nor a local directory)") from None
    except LocalEntryNotFoundError:
        why = "downloads are off (HF_HUB_OFFLINE is set)" if offline else "the hub cannot be reached"
        raise OfflineError(
            f"{repo_id} is not in the local Hugging Face cache and {why}; run once with internet access "
            f"(unset HF_HUB_OFFLINE) to download it, or pass a local model directory"
        ) from None
    except OSError as err:
        raise OfflineError(f"could not download {repo_id} from the Hugging Face hub: {err}") from None
    return path


def read_config(directory: Path) -> GPTConfig:
    """Parse ``config.json``: ours (``"fromzero"`` section) or any transformers GPT-2 config."""
    path = directory / CONFIG_FILE
    raw = read_json(path, hint="a model directory needs config.json next to its weights")
    if not isinstance(raw, dict):
        raise CorruptFileError(f"{path} must hold a JSON object")
    if isinstance(raw.get("fromzero"), dict) and "config" in raw["fromzero"]:
        return GPTConfig.from_dict(raw["fromzero"]["config"])
    return config_from_hf(raw, path)


def config_from_hf(raw: dict[str, Any], source: Path | str = CONFIG_FILE) -> GPTConfig:
    """Translate a transformers ``GPT2Config`` dict to :class:`GPTConfig`, refusing what we cannot run."""
    if raw.get("model_type") != "gpt2":
        raise InputError(f"{source}: model_type {raw.get('model_type')!r} is not a GPT-2-family model")
    for field, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                      ("add_cross_attention", False)):
        if raw.get(field, ok) != ok:
            raise InputError(f"{source}: {field}={raw[field]} is not supported (fromzero runs standard GPT-2)")
    activation = raw.get("activation_function", "gelu_new")
    if activation in _TANH_GELUS:
        activation = "gelu_new"
    elif activation != "gelu":
        raise InputError(f"{source}: activation_function {activation!r} is not supported (gelu_new or gelu)")
    try:
        return GPTConfig(
            vocab_size=raw.get("vocab_size", 50257),
            block_size=raw.get("n_positions", raw.get("n_ctx", 1024)),
            n_layer=raw.get("n_layer", 12),
            n_head=raw.get("n_head", 12),
            n_embd=raw.get("n_embd", 768),
            n_inner=raw.get("n_inner"),
            dropout=raw.get("resid_pdrop", 0.1),
            activation=activation,
            layer_norm_epsilon=raw.get("layer_norm_epsilon", 1e-5),
            initializer_range=raw.get("initializer_range", 0.02),
            tie_weights=raw.get("tie_word_embeddings", True),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_id=_single_id(raw.get("eos_token_id")),
        )
    except InputError as err:
        raise InputError(f"{source}: {err}") from None


def _single_id(value: Any) -> int | None:
    """transformers allows a list of eos ids; GPT-2 has one, so keep the first."""
    return value[0] if isinstance(value, list) and value else value


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in ``directory``, with the file's own key names."""
    if (directory / SAFETENSORS_FILE).is_file():
        return read_safetensors(directory / SAFETENSORS_FILE)
    if (directory / SAFETENSORS_INDEX).is_file():
        index_path = directory / SAFETENSORS_INDEX
        try:
            shards = sorted(set(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise CorruptFileError(f"{index_path} is not a valid safetensors index: {err}") from None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            if not (directory / shard).is_file():
                raise MissingFileError(f"{directory / shard} (listed in {index_path.name}) is missing")
            state.update(read_safetensors(directory / shard))
        return state
    if (directory / PYTORCH_FILE).is_file():
        return _read_pytorch_bin(directory / PYTORCH_FILE)
    raise MissingFileError(
        f"no weights in {directory}: expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX} or {PYTORCH_FILE}"
    )


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing or damaged one is a one-line error (checkpoints,
    model folders and adapters all read their weights through here)."""
    if not path.is_file():
        raise MissingFileError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptFileError(f"{path} is not a readable safetensors file (truncated or damaged?): {err}") from None


def _read_pytorch_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types here (zip, pickle, EOF, RuntimeError)
        raise CorruptFileError(f"{path} is not a readable PyTorch checkpoint (truncated or damaged?): {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{path} does not hold a plain state dict of tensors")
    return state


def read_state(directory: Path, config: GPTConfig) -> dict[str, torch.Tensor]:
    """The checkpoint in ``directory`` as a state dict of our GPT with ``config``: keys renamed, layouts converted."""
    return _to_fromzero_keys(read_weights(directory), config)


def _to_fromzero_keys(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename HF keys to ours, drop mask buffers, transpose Conv1D weights, tie the head."""
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key == "lm_head.weight":
            if not config.tie_weights:
                converted[key] = tensor
            continue
        bare = key.removeprefix("transformer.")
        if _MASK_BUFFER.match(bare):
            continue
        if not bare.startswith(_TRANSFORMER_PARTS):
            converted[key] = tensor  # not part of the GPT (e.g. a classification head): reported, then dropped
            continue
        if bare.endswith(_CONV1D_SUFFIXES) and tensor.dim() == 2:
            tensor = tensor.t().contiguous()
        converted["transformer." + bare] = tensor
    if config.tie_weights and "transformer.wte.weight" in converted:
        converted["lm_head.weight"] = converted["transformer.wte.weight"]
    return converted


def check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str,
                expected_by: str, error: type[FromzeroError] = CorruptFileError) -> None:
    """Raise ``error`` naming the first missing weight or wrong shape; drop (and report) extra weights.

    ``source`` names the checkpoint ("the checkpoint in DIR"), ``expected_by`` what sets the shapes
    it should have: the checkpoint's own config.json (a mismatch means a damaged checkpoint), or a
    model built elsewhere (a mismatch means the wrong checkpoint: an :class:`InputError`).
    """
    for key, reference in expected.items():
        if key not in state:
            raise error(f"{source} has no weight {key!r} ({expected_by} expects it)")
        if state[key].shape != reference.shape:
            raise error(
                f"{source}: {key!r} has shape {tuple(state[key].shape)}, "
                f"but {expected_by} expects {tuple(reference.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        console.print(f"[yellow]ignoring {len(extra)} weight(s) the GPT does not use: {', '.join(extra[:5])}")
        for key in extra:
            del state[key]


def hf_config(config: GPTConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The config.json dict: transformers' GPT2Config fields plus our full config under "fromzero"."""
    raw: dict[str, Any] = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.n_inner,
        "activation_function": config.activation,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": config.initializer_range,
        "scale_attn_weights": True,
        "tie_word_embeddings": config.tie_weights,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
        "fromzero": {"version": __version__, "config": config.to_dict()},
    }
    if not config.hf_compatible:
        del raw["architectures"]
        raw["model_type"] = FROMZERO_MODEL_TYPE
        raw["note"] = (
            "fromzero-only model (sinusoidal positions or no biases): transformers cannot load it; "
            "use fromzero's GPT.from_pretrained"
        )
    return raw


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Write ``config.json`` and ``model.safetensors`` of a GPT (HF GPT-2 key names and layout), each atomically."""
    if not isinstance(model.lm_head, torch.nn.Linear):
        raise InputError("this model was converted for inference (fromzero.generation.quantize); "
                         "save the model as it was before the conversion")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and model.config.tie_weights:
            continue  # it is transformer.wte.weight; transformers re-ties it
        if key.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        tensors[key] = tensor.detach().to("cpu").contiguous()
    with atomic_path(directory / SAFETENSORS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json(directory / CONFIG_FILE, hf_config(model.config, model.lm_head.weight.dtype))
