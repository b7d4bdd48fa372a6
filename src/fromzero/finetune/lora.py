"""LoRA: fine-tune a big model by training two thin matrices beside each chosen layer.

Fine-tuning all 82M weights of DistilGPT-2 needs a gradient and two Adam moments per weight (four
copies of the model in memory) and a full new checkpoint per task. Hu et al. (2021, "LoRA: Low-Rank
Adaptation of Large Language Models") observed that the *change* fine-tuning makes to a weight
matrix has low rank, so they freeze ``W`` and learn the change as a product of two thin matrices::

    y = W x + (alpha / r) * B (A dropout(x))        A: (r, in)    B: (out, r)    r << in, out

* ``A`` starts random (kaiming-uniform with ``a = sqrt(5)``, nn.Linear's own init, as in PEFT) and
  ``B`` starts at zero, so before the first step the model *is* the base model.
* ``alpha / r`` scales the update, so that trying another ``r`` does not also change the
  learning rate that works. Dropout acts on the LoRA input only; the base path is untouched.
* After training ``(alpha / r) B A`` can be added into ``W`` (:func:`merge`): the tuned model then
  costs nothing extra per token. Subtracting it again (:func:`unmerge`) gives the base back, up
  to float rounding. :func:`merge_and_unload` makes the merge permanent: a plain GPT again.

**How many parameters?** DistilGPT-2 has 6 layers with ``n_embd = 768``. ``c_attn`` computes the
queries, keys and values of a layer in *one* fused matrix, 768 -> 2304 (3 x 768), so with ``r = 8``
``A`` is 8 x 768 = 6,144 and ``B`` is 2304 x 8 = 18,432 weights: (6,144 + 18,432) x 6 = 147,456
trainable parameters, 0.18% of the 82,060,032 total (81,912,576 frozen + the adapters). The
course's "0.29%" does not follow from these shapes; it is easy to get wrong when ``c_attn`` is
pictured as a single 768 -> 768 projection.

**Which layers.** Targets are the names of GPT-2 (and of transformers' ``GPT2LMHeadModel``, whose
module names our GPT shares): ``c_attn``, ``c_proj``, ``c_fc``, ``attn.c_proj``, ``mlp.c_proj``.
They match as in PEFT: a name matches every module whose full name (``transformer.h.3.attn.c_attn``)
equals it or ends with ``"." + name``, so ``c_proj`` means both projections and ``mlp.c_proj``
only the feed-forward one; a single string is a regular expression matched against the full
name, and ``"all-linear"`` means every projection in the blocks. A PEFT config therefore adapts
the same layers here as in PEFT. The output layer is not a target: it is tied to the token
embedding, so merging into it would change the input embedding too.

**Several adapters** (one per task) can sit on one base: :func:`add_adapter` adds one and makes
it active, :func:`set_adapter` switches, and only the active adapter's A and B require grad, so an
optimizer built from the trainable parameters trains just that one. :func:`disabled_adapters`
runs the bare base model, bit for bit: the base-vs-tuned comparison needs no second copy.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from fromzero.console import console
from fromzero.errors import InputError
from fromzero.generation.inference_layers import InferenceLinear

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoRAConfig:
    """One adapter's settings; the defaults are the course's (PEFT calls ``alpha`` ``lora_alpha``).

    ``target_modules`` is a sequence of module names, or one string: a regular expression over full
    module names, or ``"all-linear"`` (module docstring). ``bias`` exists for PEFT parity; only
    ``"none"`` (train no biases) is supported.
    """

    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = ("c_attn",)
    bias: str = "none"

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise InputError(f"LoRA rank r (--lora-r) must be a positive integer, got {self.r!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise InputError(f"LoRA alpha (--lora-alpha) must be a positive number, got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise InputError(f"LoRA dropout (--lora-dropout) must be in [0, 1), got {self.dropout!r}")
        targets = self.target_modules
        if not isinstance(targets, str):
            targets = tuple(targets)
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise InputError(f"LoRA target modules (--lora-targets) must be non-empty names, got {targets!r}")
            object.__setattr__(self, "target_modules", targets)
        if self.bias != "none":
            raise InputError(f"LoRA bias must be 'none' (PEFT's 'all' and 'lora_only' are not supported), "
                             f"got {self.bias!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


class LoRALinear(nn.Module):
    """An ``nn.Linear`` (``base``, frozen) with named LoRA adapters beside it; at most one is active.

    ``lora_A[name]`` and ``lora_B[name]`` are bias-free ``nn.Linear`` layers, (r, in) and (out, r)
    weights, PEFT's layout. ``merged`` names the adapter currently added into ``base.weight``.
    """

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.configs: dict[str, LoRAConfig] = {}
        self.active: str | None = None
        self.merged: str | None = None
        self.disabled = False
        self.train(base.training)  # a model loaded for inference stays in eval mode

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def add(self, name: str, config: LoRAConfig) -> None:
        like = _like(self.base)
        self.lora_A[name] = nn.Linear(self.in_features, config.r, bias=False, **like)
        self.lora_B[name] = nn.Linear(config.r, self.out_features, bias=False, **like)
        nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B[name].weight)
        self.lora_dropout[name] = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.configs[name] = config
        self.train(self.training)  # the new layers follow the model's train/eval mode (dropout)

    def remove(self, name: str) -> None:
        """Drop adapter ``name`` from this layer (nothing happens if it has none)."""
        if name in self.configs:
            for modules in (self.lora_A, self.lora_B, self.lora_dropout):
                del modules[name]
            del self.configs[name]
        if self.active == name:
            self.active = None

    def delta_weight(self, name: str) -> torch.Tensor:
        """``(alpha / r) B A``: what adapter ``name`` adds to ``base.weight`` (out, in)."""
        return (self.lora_B[name].weight @ self.lora_A[name].weight) * self.configs[name].scaling

    def merge(self) -> None:
        """Add the active adapter into ``base.weight`` (if this layer has it)."""
        if self.active in self.configs and self.merged is None:
            if not isinstance(self.base, nn.Linear):  # packed, bf16 or int8 for decoding: no fp32 weight to add to
                raise InputError("adapters can only be merged into a model's own Linear layers; merge before "
                                 "converting the model for decoding (quantize)")
            with torch.no_grad():
                self.base.weight += self.delta_weight(self.active)
            self.merged = self.active

    def unmerge(self) -> None:
        """Subtract the merged adapter from ``base.weight`` again."""
        if self.merged is not None:
            with torch.no_grad():
                self.base.weight -= self.delta_weight(self.merged)
            self.merged = None

    def active_update(self) -> tuple[nn.Module, nn.Module, float] | None:
        """``(A, B, scaling)`` of the update this layer adds to ``base`` now, or None: no adapter active,
        adapters disabled, or the adapter already inside ``base.weight`` (merged). The fused decoding
        step (:mod:`fromzero.generation.fused_step`) reads it to add the same update in C."""
        name = self.active
        if self.disabled or self.merged is not None or name not in self.configs:
            return None
        return self.lora_A[name], self.lora_B[name], self.configs[name].scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if (update := self.active_update()) is None:
            return y  # bare base layer (or the adapter is already inside its weight)
        lora_a, lora_b, scaling = update
        return y + lora_b(lora_a(self.lora_dropout[self.active](x))) * scaling


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every :class:`LoRALinear` of ``model`` by full module name (empty before :func:`add_adapter`)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def adapter_names(model: nn.Module) -> list[str]:
    """The adapters on ``model``, in the order they were added."""
    return list(dict.fromkeys(name for layer in lora_layers(model).values() for name in layer.configs))


def active_adapter(model: nn.Module) -> str:
    """The name of the active adapter."""
    return next(iter(_layers(model).values())).active


def adapter_config(model: nn.Module, name: str) -> LoRAConfig:
    """The :class:`LoRAConfig` adapter ``name`` was added with."""
    _check_name(model, name)
    return next(layer.configs[name] for layer in lora_layers(model).values() if name in layer.configs)


def targetable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The projections LoRA may adapt, by full name: every linear layer inside the blocks (or its wrapper)."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not name.startswith("transformer.h.") or any(name.startswith(f"{w}.") for w in found):
            continue  # outside the blocks, or a part of a LoRALinear found already
        if isinstance(module, (nn.Linear, LoRALinear, InferenceLinear)):  # packed for serving, too
            found[name] = module
    return found


def target_names(modules: dict[str, nn.Module]) -> list[str]:
    """The short names a target may use: ``c_attn, c_proj, c_fc, attn.c_attn, attn.c_proj, ...``."""
    parts = [name.split(".") for name in modules]
    return list(dict.fromkeys([p[-1] for p in parts] + [".".join(p[-2:]) for p in parts]))


def match_targets(model: nn.Module, targets: tuple[str, ...] | str) -> list[str]:
    """Full names of the modules ``targets`` selects, matched as PEFT matches (module docstring).

    Each listed name must match something: a typo would otherwise silently train fewer layers.
    """
    modules = targetable_modules(model)
    valid = ", ".join(target_names(modules))
    if isinstance(targets, str):
        try:
            chosen = [n for n in modules if targets == ALL_LINEAR or re.fullmatch(targets, n)]
        except re.error as err:
            raise InputError(f"LoRA target pattern {targets!r} is not a valid regular expression: {err}") from None
        if not chosen:
            raise InputError(f"LoRA target pattern {targets!r} matches no layer of this model (a single string is a "
                             f"regular expression over full names such as transformer.h.0.attn.c_attn; "
                             f"give a list for short names: {valid})")
        return chosen
    for target in targets:
        if not any(_matches(target, name) for name in modules):
            raise InputError(f"LoRA target module {target!r} (--lora-targets) matches no layer of this model; "
                             f"valid names: {valid}")
    return [name for name in modules if any(_matches(target, name) for target in targets)]


def _matches(target: str, name: str) -> bool:
    """PEFT's rule for a listed name: the full module name, or its ending after a dot."""
    return name == target or name.endswith("." + target)


def add_adapter(model: nn.Module, name: str = "default", config: LoRAConfig | None = None) -> None:
    """Wrap the target layers of ``model`` in :class:`LoRALinear`, add adapter ``name`` and make it active.

    Everything but the active adapter is frozen (``requires_grad=False``).
    """
    config = config or LoRAConfig()
    if not name or "." in name:
        raise InputError(f"an adapter name must be non-empty and contain no '.', got {name!r}")
    if name in adapter_names(model):
        raise InputError(f"the model already has an adapter named {name!r}; choose another name")
    _check_not_merged(model, "adding an adapter")
    for full_name in match_targets(model, config.target_modules):
        layer = model.get_submodule(full_name)
        if not isinstance(layer, LoRALinear):
            parent, _, child = full_name.rpartition(".")
            layer = LoRALinear(layer)
            setattr(model.get_submodule(parent), child, layer)
        layer.add(name, config)
    set_adapter(model, name)


def set_adapter(model: nn.Module, name: str) -> None:
    """Make adapter ``name`` the one that runs and trains; all other weights are frozen."""
    _check_name(model, name)
    _check_not_merged(model, "switching adapters")
    model.requires_grad_(False)
    for layer in lora_layers(model).values():
        layer.active = name
        if name in layer.configs:
            layer.lora_A[name].requires_grad_(True)
            layer.lora_B[name].requires_grad_(True)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` from every layer (PEFT's ``delete_adapter``): a server unloading it.

    If it was the active one, the first adapter left becomes active; the layers stay wrapped, and
    with no adapter left they compute the base model.
    """
    _check_name(model, name)
    _check_not_merged(model, "deleting an adapter")
    for layer in lora_layers(model).values():
        layer.remove(name)
    left = adapter_names(model)
    if left and active_adapter(model) is None:
        set_adapter(model, left[0])


def rename_adapter(model: nn.Module, name: str, new_name: str) -> None:
    """Call adapter ``name`` ``new_name`` from now on: a server swaps in a freshly loaded adapter this way."""
    _check_name(model, name)
    if new_name in adapter_names(model):
        raise InputError(f"the model already has an adapter named {new_name!r}; delete it first")
    for layer in lora_layers(model).values():
        if name in layer.configs:
            for modules in (layer.lora_A, layer.lora_B, layer.lora_dropout):
                modules[new_name] = modules.pop(name)
            layer.configs[new_name] = layer.configs.pop(name)
        if layer.active == name:
            layer.active = new_name


@contextlib.contextmanager
def disabled_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Inside ``with disabled_adapters(model):`` the model computes exactly what its base model does."""
    layers = _layers(model).values()
    # A merged adapter is inside the weights; unmerging would give the base back only up to rounding.
    _check_not_merged(model, "disabling adapters")
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


@contextlib.contextmanager
def using_adapter(model: nn.Module, name: str | None) -> Iterator[nn.Module]:
    """Inside ``with using_adapter(model, name):`` adapter ``name`` runs (None: the base model alone);
    the adapter that was active before is active again afterwards. A server that answers requests
    for several adapters of one base switches between them this way, without copying the base."""
    if name is None:
        if not lora_layers(model):  # a plain model is its own base
            yield model
            return
        with disabled_adapters(model):
            yield model
        return
    previous = active_adapter(model)
    set_adapter(model, name)
    try:
        yield model
    finally:
        set_adapter(model, previous)


def merge(model: nn.Module) -> None:
    """Add the active adapter into the base weights: same outputs, no extra cost per token."""
    layers = _layers(model).values()
    _check_not_merged(model, "merging again (it would be added twice)")
    for layer in layers:
        layer.merge()


def unmerge(model: nn.Module) -> None:
    """Undo :func:`merge`: the base weights are restored up to float rounding."""
    layers = _layers(model).values()
    if not any(layer.merged for layer in layers):
        raise InputError("no adapter is merged into the weights, so there is nothing to unmerge")
    for layer in layers:
        layer.unmerge()


def merge_and_unload(model: nn.Module, name: str | None = None) -> nn.Module:
    """Merge adapter ``name`` (default: the active one) for good and remove every LoRA layer.

    What is left is the plain model (for a GPT, ``save_pretrained`` writes a normal checkpoint),
    with all its parameters trainable again. Returns ``model`` itself, changed in place.
    """
    layers = _layers(model)
    if name is not None and name != active_adapter(model):
        set_adapter(model, name)
    if not any(layer.merged for layer in layers.values()):
        merge(model)
    for full_name, layer in layers.items():
        parent, _, child = full_name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.base)
    model.requires_grad_(True)
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; a tied matrix counts once, adapters count in the total."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def trainable_summary(model: nn.Module) -> str:
    """One line like PEFT's ``print_trainable_parameters``: "trainable params: 147,456 of 82,060,032 (0.18%)"."""
    trainable, total = trainable_parameters(model)
    return f"trainable params: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"


def print_trainable_parameters(model: nn.Module) -> None:
    console.print(trainable_summary(model))


def _like(layer: nn.Module) -> dict:
    """The device and dtype of new LoRA weights beside ``layer``: its weight's. A layer packed for serving
    (:mod:`fromzero.generation.quantize`) has no plain weight; its bias, or packed weight, tells instead."""
    if (dtype := getattr(layer, "compute_dtype", None)) is not None:  # its stored weight may be bf16 or int8
        return dict(device=layer.bias.device if layer.bias is not None else "cpu", dtype=dtype)
    for tensor in (getattr(layer, "weight", None), getattr(layer, "bias", None), getattr(layer, "packed_weight", None)):
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            return dict(device=tensor.device, dtype=tensor.dtype)
    raise InputError(f"cannot add a LoRA adapter beside a {type(layer).__name__} without a float weight or bias")


def _layers(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise InputError("the model has no LoRA adapter; add one with add_adapter() or load_adapter()")
    return layers


def _check_name(model: nn.Module, name: str) -> None:
    names = adapter_names(model)
    if name not in names:
        raise InputError(f"no adapter named {name!r}; the model has: {', '.join(names) or 'none'}")


def _check_not_merged(model: nn.Module, doing: str) -> None:
    merged = next((layer.merged for layer in lora_layers(model).values() if layer.merged), None)
    if merged:
        raise InputError(f"adapter {merged!r} is merged into the weights; call unmerge(model) before {doing}")
