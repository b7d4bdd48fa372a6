"""Pretraining the mini GPT on the stories: the loss going down, and what it writes on the way."""

from __future__ import annotations

import json

from fromzero.lessons.course import Step
from fromzero.models import GPT, GPTConfig
from fromzero.models.summary import summarize
from fromzero.tokenizers import load_tokenizer
from fromzero.training.config import TrainConfig
from fromzero.training.run import train
from fromzero.training.trainer import Trainer

TITLE = "Pretraining the mini GPT"


def run(step: Step) -> None:
    step.say("""
        **Pretraining** is the next-character game played millions of times: take a window of text, let
        the model score every possible next character at every position, and nudge all its weights to
        make the true next characters a little more likely (cross-entropy loss, AdamW, a learning rate
        that warms up and then decays). One step of the library's trainer:
    """)
    step.show(Trainer.train_step)
    out = step.output("4.2")
    if step.quick:  # a tiny model for a few steps: the same code, seconds instead of minutes
        settings = TrainConfig(preset="tiny", max_steps=8, warmup_steps=2, eval_interval=4, eval_batches=1,
                               sample_tokens=40, log_interval=4, out=str(out))
    else:  # the course's recipe, what `fromzero train` runs by default
        settings = TrainConfig(out=str(out))
    step.say(f"""
        Training the `{settings.preset}` preset for {settings.max_steps:,} steps of {settings.batch_size} windows.
        Every {settings.eval_interval} steps it measures the loss on held-out stories and writes a sample,
        so you can watch it go from noise to words.
    """)
    result = train(settings, overwrite=True)
    model = GPT.from_pretrained(out)
    tokenizer = load_tokenizer(out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first = next(r["loss"] for r in records if "loss" in r)
    step.figure("parameters", model.num_params())
    step.figure("loss at the first logged step", round(first, 3), "nats per character")
    step.figure("validation loss at the end", round(result.val_loss, 3), "nats per character")
    step.figure("best validation loss", round(result.best_val_loss, 3))
    step.figure("characters seen", result.tokens_seen)
    step.saved(out / "loss.png")

    mini = GPTConfig.preset("mini", vocab_size=tokenizer.vocab_size)
    e, layers = mini.n_embd, mini.n_layer
    count = summarize(mini).total
    step.figure("the course's mini GPT (mini preset, this vocabulary)", f"{count:,} parameters ({count / 1e6:.2f}M)")
    step.say(f"""
        *Corrected figure:* the course this one grew from says its mini GPT has about 1.5M parameters. With
        {layers} blocks of width {e} it cannot: the blocks hold {layers} x (12 x {e}² + 13 x {e}) =
        {layers * (12 * e * e + 13 * e):,}, the token and position tables {tokenizer.vocab_size} x {e} +
        {mini.block_size} x {e} = {(tokenizer.vocab_size + mini.block_size) * e:,}, the final norm {2 * e}, and the
        output layer is the token table again (tied): {count:,}, {count / 1e6:.2f}M in all.

        The model is in `{out}`: `fromzero generate --model {out} --prompt "Once upon a time"` lets it write.
    """)
