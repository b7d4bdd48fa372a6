"""LoRA adapters in PEFT's file format, both ways, so adapters travel between fromzero and ``peft``.

An adapter folder (what ``peft.PeftModel.save_pretrained`` writes) holds:

* ``adapter_config.json``: PEFT's ``LoraConfig`` (``peft_type: "LORA"``, ``r``, ``lora_alpha``,
  ``lora_dropout``, ``target_modules`` ...);
* ``adapter_model.safetensors``: A and B of every adapted layer under its full module name inside
  PEFT's wrapper, e.g. ``base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`` (r, in) and
  ``...lora_B.weight`` (out, r). The adapter's own name is not part of the keys.

Our GPT has the module names of transformers' ``GPT2LMHeadModel``, so the keys map one to one.
transformers' GPT-2 computes its projections with ``Conv1D``, whose weight is stored transposed
(in, out); PEFT then records ``fan_in_fan_out: true``, which only tells it to transpose ``B A``
when merging into that weight. A and B themselves have the same shapes as ours, so the tensors
are copied unchanged.

Only plain LoRA is read. A PEFT option that changes what the adapter computes (DoRA, rsLoRA,
per-layer ranks, trained biases, ``modules_to_save`` ...) is refused by name instead of being
ignored into different outputs; options that only shaped A and B's starting values, or are
bookkeeping, are ignored. Files are read with safetensors and JSON only, never with pickle (an
``adapter_model.bin`` could run code when loaded).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.files import atomic_path, read_json, write_json
from fromzero.finetune.lora import (
    LoRAConfig,
    active_adapter,
    adapter_config,
    add_adapter,
    lora_layers,
    match_targets,
    targetable_modules,
)
from fromzero.models.pretrained import read_safetensors

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
GPT2_DEFAULT_TARGETS = ("c_attn",)  # what PEFT adapts in a GPT-2 when target_modules is null

# Read into LoRAConfig (or checked) below.
_READ = {"peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias", "init_lora_weights"}
# Bookkeeping, or settings that only mattered for A's and B's starting values (now in the file).
_IGNORED = {"base_model_name_or_path", "revision", "peft_version", "inference_mode", "auto_mapping",
            "fan_in_fan_out", "megatron_core", "qalora_group_size", "ensure_weight_tying",
            "eva_config", "corda_config", "loftq_config", "lora_ga_config"}
# Initialisations that leave the base weights alone; PiSSA, OLoRA, LoftQ ... change them.
_PLAIN_INITS = (True, False, "gaussian")
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


def peft_config(config: LoRAConfig, base_model: str | None = None) -> dict[str, Any]:
    """The ``adapter_config.json`` dict PEFT writes for this adapter on a GPT-2-family model.

    Fields left out take PEFT's defaults, which are the "off" values of the options we do not support.
    """
    targets = config.target_modules
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": targets if isinstance(targets, str) else list(targets),
        "bias": config.bias,
        "fan_in_fan_out": True,  # transformers' GPT-2 uses Conv1D (module docstring)
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": None,
        "layers_pattern": None,
        "revision": None,
    }


def config_from_peft(raw: dict[str, Any], source: Path | str = ADAPTER_CONFIG) -> LoRAConfig:
    """Translate a PEFT ``adapter_config.json`` dict to :class:`LoRAConfig`, refusing what is not plain LoRA."""
    if raw.get("peft_type") != "LORA":
        raise InputError(f"{source}: peft_type {raw.get('peft_type')!r} is not supported; fromzero reads LoRA "
                         f"adapters (peft_type LORA)")
    if raw.get("task_type") not in (None, "CAUSAL_LM"):
        raise InputError(f"{source}: task_type {raw['task_type']!r} is not supported; fromzero's GPT is a causal "
                         f"language model (task_type CAUSAL_LM)")
    if raw.get("init_lora_weights", True) not in _PLAIN_INITS:
        raise InputError(f"{source}: PEFT option init_lora_weights={raw['init_lora_weights']!r} is not supported: "
                         f"it changes the base weights too (convert the adapter to plain LoRA with PEFT first)")
    # Every other option must be off: null, false, {} or [].
    unsupported = {key: value for key, value in raw.items() if key not in _READ | _IGNORED and value}
    if raw.get("bias", "none") != "none":
        unsupported["bias"] = raw["bias"]
    if unsupported:
        named = ", ".join(f"{key}={value!r}" for key, value in unsupported.items())
        raise InputError(f"{source}: unsupported PEFT option(s) {named}; fromzero reads plain LoRA adapters only")
    targets = raw.get("target_modules") or GPT2_DEFAULT_TARGETS
    try:
        return LoRAConfig(r=raw.get("r", 8), alpha=raw.get("lora_alpha", 8), dropout=raw.get("lora_dropout", 0.0),
                          target_modules=targets if isinstance(targets, str) else tuple(targets))
    except (InputError, TypeError) as err:
        raise InputError(f"{source}: {err}") from None


def save_adapter(model: torch.nn.Module, directory: str | os.PathLike, name: str | None = None,
                 base_model: str | None = None) -> None:
    """Write adapter ``name`` (default: the active one) as a PEFT adapter folder, each file atomically.

    ``base_model`` (a hub name or folder) is recorded as ``base_model_name_or_path``, which PEFT's
    ``AutoPeftModel`` uses to find the base. The weights are written first, the config last, so a
    folder with a config always has its weights.
    """
    name = name or active_adapter(model)
    config = adapter_config(model, name)
    tensors: dict[str, torch.Tensor] = {}
    for module_name, layer in lora_layers(model).items():
        if name in layer.configs:
            for part, linear in (("A", layer.lora_A[name]), ("B", layer.lora_B[name])):
                tensors[f"{PEFT_PREFIX}{module_name}.lora_{part}.weight"] = linear.weight.detach().cpu().contiguous()
    directory = Path(directory)
    with atomic_path(directory / ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json(directory / ADAPTER_CONFIG, peft_config(config, base_model))


def load_adapter(model: torch.nn.Module, directory: str | os.PathLike, name: str = "default") -> LoRAConfig:
    """Add the PEFT adapter in ``directory`` to ``model`` as adapter ``name`` (made active); returns its config.

    Everything is checked before the model is touched: a refused option, a missing file or an
    adapter made for another base leaves ``model`` as it was.
    """
    directory = Path(directory)
    raw = read_json(directory / ADAPTER_CONFIG,
                    hint=f"an adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    if not isinstance(raw, dict):
        raise CorruptFileError(f"{directory / ADAPTER_CONFIG} must hold a JSON object")
    config = config_from_peft(raw, directory / ADAPTER_CONFIG)
    weights = _read_weights(directory)
    _check_fits(model, config, weights, directory)
    add_adapter(model, name, config)
    with torch.no_grad():
        for module_name, layer in lora_layers(model).items():
            if name in layer.configs:
                layer.lora_A[name].weight.copy_(weights[module_name]["A"])
                layer.lora_B[name].weight.copy_(weights[module_name]["B"])
    return config


def _read_weights(directory: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The adapter's tensors as ``{full module name in our GPT: {"A": ..., "B": ...}}``."""
    path = directory / ADAPTER_WEIGHTS
    if not path.is_file():
        if (directory / "adapter_model.bin").is_file():
            raise InputError(f"{directory} holds adapter_model.bin, a pickle file fromzero does not open (it could "
                             f"run code); save the adapter with PEFT's safe_serialization=True")
        raise MissingFileError(f"{path} does not exist; an adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    tensors = read_safetensors(path)
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key.removeprefix(PEFT_PREFIX))
        if not key.startswith(PEFT_PREFIX) or not match:
            raise InputError(f"{path}: tensor {key!r} is not a plain LoRA weight (base_model.model.<module>."
                             f"lora_A/lora_B.weight); fromzero reads plain LoRA adapters only")
        module = match["module"]
        if module.startswith("h."):
            module = "transformer." + module  # saved from a bare GPT2Model rather than GPT2LMHeadModel
        weights.setdefault(module, {})[match["part"]] = tensor
    return weights


def _check_fits(model: torch.nn.Module, config: LoRAConfig, weights: dict[str, dict[str, torch.Tensor]],
                directory: Path) -> None:
    """Raise unless ``weights`` are exactly the A and B that ``config`` needs on this model."""
    modules = targetable_modules(model)
    targets = match_targets(model, config.target_modules)
    different = f"{directory} was made for a different base model"
    for module in weights:
        if module not in targets:
            held = "does not adapt" if module in modules else "does not have"
            raise InputError(f"{different}: it has weights for {module}, which this model {held}")
    for module in targets:
        layer = modules[module]
        pair = weights.get(module, {})
        if set(pair) != {"A", "B"}:
            raise InputError(f"{different}: it has no lora_A/lora_B weights for this model's {module}")
        expected = {"A": (config.r, layer.in_features), "B": (layer.out_features, config.r)}
        found = {part: tuple(pair[part].shape) for part in "AB"}
        if found != expected:
            raise InputError(f"{different}: {module} ({layer.in_features} -> {layer.out_features}) needs lora_A "
                             f"{expected['A']} and lora_B {expected['B']}, the adapter has {found['A']} and "
                             f"{found['B']}")
