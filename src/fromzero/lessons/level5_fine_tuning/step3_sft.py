"""Supervised fine-tuning with LoRA: the loss is on the answers, and on the token that ends them."""

from __future__ import annotations

from fromzero.finetune.recipe import sft_settings
from fromzero.finetune.batches import build_sft_data
from fromzero.finetune.instructions import load_instructions
from fromzero.finetune.losses import sft_loss
from fromzero.finetune.sft import SFTConfig, sft
from fromzero.finetune.templates import get_template
from fromzero.lessons.course import Step
from fromzero.tokenizers import load_tokenizer

TITLE = "Teaching it to answer (SFT with LoRA)"
NEEDS = ("5.2",)


def run(step: Step) -> None:
    base = step.output("5.2")
    step.say("""
        Each example is written out with the **qa template**, and the model is trained to continue the
        prompt with the answer. The prompt is what it will be given later, so it gets no loss (its labels
        are -100); the answer, and the end-of-text token after it, are what it learns: that is how it
        learns to stop by itself. Here is one example as the model sees it:
    """)
    template = get_template("qa")
    tokenizer = load_tokenizer(base)
    example = load_instructions("education_qa")[0]
    data = build_sft_data([example], template, tokenizer, 256)
    row = data.examples[0]
    trained = sum(label != -100 for label in row.labels)
    step.figure("tokens in the first example", len(row))
    step.figure("of them trained (answer + end)", trained)
    step.say(f"```\n{template.text(example)}\n```")
    step.show(sft_loss)
    settings = sft_settings(base.parent, step.pick(1, 3))
    settings.update(model=str(base), out=str(step.output("5.3")))
    result = sft(SFTConfig(**settings), overwrite=True, quiet=step.quick)
    step.figure("validation loss after SFT", round(result.val_loss, 3), "nats per answer token")
    step.figure("best validation loss", round(result.best_val_loss, 3))
