"""Loading a fine-tuned result to use it: the base model, its adapters, the tokenizer and the template.

A model must be asked the way it was taught. ``fromzero finetune`` writes ``finetune.json`` next to
its result (:mod:`fromzero.finetune.run`), and that record is what lets ``generate``, ``chat`` and
``serve`` take a folder and need no other flag:

* an **adapter folder** (LoRA, ``adapter_config.json``): the record names the base model, which is
  loaded, and the adapter goes on top of it under the folder's name;
* a **fine-tuned model folder** (``--lora-r 0`` or ``finetune merge``): the folder is the model;
* a **plain model** (a ``fromzero train`` folder, a transformers folder, ``gpt2``): no template, the
  model continues text.

More adapters of the same base can be added (``NAME=DIR``); they share the base's weights, and
:func:`fromzero.finetune.lora.set_adapter` switches between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fromzero.data.settings import DOCUMENT_SEPARATOR
from fromzero.errors import InputError
from fromzero.files import read_json
from fromzero.finetune.lora import set_adapter
from fromzero.finetune.peft_format import ADAPTER_CONFIG, load_adapter
from fromzero.finetune.run import FINETUNE_JSON
from fromzero.finetune.templates import END, TEMPLATES, ChatTemplate, Template, TextTemplate, get_template
from fromzero.finetune.vocab import load_model_tokenizer
from fromzero.models import GPT
from fromzero.tokenizers import Tokenizer

NO_TEMPLATE = "none"  # plain continuation: the prompt is given to the model as it is


@dataclass
class TunedModel:
    """A model ready to answer: ``model`` holds the base and every adapter (the first one active)."""

    model: GPT
    tokenizer: Tokenizer
    template: Template | None  # None: plain continuation
    base: str  # the base model: folder or hub name
    adapters: dict[str, Path] = field(default_factory=dict)  # name -> folder, in loading order
    record: dict[str, Any] | None = None  # finetune.json of the folder given, if it has one

    @property
    def stop_strings(self) -> list[str]:
        return stop_strings(self.template, self.tokenizer)

    @property
    def eos_ids(self) -> list[int]:
        return eos_ids(self.template, self.tokenizer)


def fine_tune_record(folder: str | Path) -> dict[str, Any] | None:
    """``finetune.json`` of ``folder``, or None when it has none (or ``folder`` is a hub name)."""
    path = Path(folder).expanduser() / FINETUNE_JSON
    return read_json(path) if path.is_file() else None


def is_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / ADAPTER_CONFIG).is_file()


def parse_adapter_specs(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=DIR`` flags as ``(name, dir)``; a bare ``DIR`` is named after its folder."""
    pairs: list[tuple[str, str]] = []
    for spec in specs:
        name, _, folder = spec.partition("=") if "=" in spec else ("", "", spec)
        name = name or Path(folder).name
        if not name or not folder:
            raise InputError(f"--adapter {spec!r}: give NAME=DIR (or DIR)")
        if any(name == other for other, _ in pairs):
            raise InputError(f"--adapter: two adapters are named {name!r}; give each its own NAME=DIR")
        pairs.append((name, folder))
    return pairs


def load_tuned(
    spec: str,
    adapters: Sequence[tuple[str, str]] = (),
    template: str | None = None,
    template_file: str | None = None,
    device: str = "cpu",
) -> TunedModel:
    """Load ``spec`` (adapter folder, model folder or hub name) with extra ``adapters`` on its base.

    The template is ``template`` (or ``template_file``) when given, ``"none"`` for plain
    continuation; else the one in the fine-tune record of ``spec`` or of the first adapter; else none.
    """
    record = fine_tune_record(spec) if Path(spec).expanduser().is_dir() else None
    pairs = list(adapters)
    if is_adapter_folder(spec):
        if record is None or not record.get("base_model"):
            raise InputError(f"{spec} is a LoRA adapter without {FINETUNE_JSON} naming its base model: "
                             f"give the base as --model and the adapter as --adapter {spec}")
        base = record["base_model"]
        pairs.insert(0, (Path(spec).name, spec))
    else:
        base = spec
    records = [record] + [fine_tune_record(folder) for _, folder in pairs]
    model = GPT.from_pretrained(base, device=device)
    # An adapter folder holds the tokenizer it was tuned with (the base's): prefer it when there is one.
    tokenizer_source = next((folder for _, folder in pairs if (Path(folder) / "fromzero_tokenizer.json").is_file()),
                            spec if not is_adapter_folder(spec) else base)
    tokenizer = load_model_tokenizer(tokenizer_source)
    loaded: dict[str, Path] = {}
    for name, folder in pairs:
        load_adapter(model, folder, name)
        loaded[name] = Path(folder)
    if loaded:
        set_adapter(model, next(iter(loaded)))
    model.requires_grad_(False).eval()
    chosen = chosen_template(template, template_file, next((r for r in records if r), None))
    if chosen is not None:
        missing = [token for token in chosen.special_tokens if token not in tokenizer.special_tokens]
        if missing:
            raise InputError(f"--template {chosen.name} needs the special tokens {', '.join(missing)}, which the "
                             f"tokenizer of {spec} lacks: a model must be fine-tuned with that template first")
    return TunedModel(model, tokenizer, chosen, base, loaded, record)


def chosen_template(name: str | None, file: str | None, record: dict[str, Any] | None) -> Template | None:
    """The template to ask in: ``name`` or ``file`` when given (``"none"``: plain continuation), else the one
    a fine-tune ``record`` was trained with, else none."""
    if name == NO_TEMPLATE:
        return None
    if name is not None or file is not None:
        return get_template(name, file)
    if record is None:
        return None
    if record.get("template_text"):
        return TextTemplate("file", record["template_text"])
    if record.get("template") in TEMPLATES:
        return TEMPLATES[record["template"]]
    raise InputError(f"{FINETUNE_JSON} names the template {record.get('template')!r}, which this fromzero does not "
                     f"know; give --template ({', '.join(TEMPLATES)} or none)")


def stop_strings(template: Template | None, tokenizer: Tokenizer) -> list[str]:
    """Text that ends an answer even when the model misses its end token.

    A text template's answer also ends where a next question would begin: at the line that
    introduces ``{instruction}`` (``### Question:`` for ``qa``). A tokenizer without an end-of-text
    token (the character tokenizer) learnt the blank line between documents as its end.
    """
    stops = [] if getattr(tokenizer, "eot_id", None) is not None else [DOCUMENT_SEPARATOR]
    if isinstance(template, ChatTemplate):
        stops.append("<|user|>")
    elif isinstance(template, TextTemplate):
        before = next(literal for literal, name in template.form.prompt if name == "instruction")
        header = [line for line in before.splitlines() if line.strip()]
        if header:
            stops.append(f"\n{header[-1]}")
    return stops


def eos_ids(template: Template | None, tokenizer: Tokenizer) -> list[int]:
    """The ids that end an answer: end of text, and for the chat template its end-of-turn token."""
    ids = [int(tokenizer.eot_id)] if getattr(tokenizer, "eot_id", None) is not None else []
    if isinstance(template, ChatTemplate) and END in tokenizer.special_tokens:
        ids.append(tokenizer.special_tokens[END])
    return ids
