"""A base model that can read questions: a small BPE GPT pretrained on the stories and the Q&A answers."""

from __future__ import annotations

from fromzero.finetune.recipe import pretrain_settings
from fromzero.lessons.course import Step
from fromzero.training.config import TrainConfig
from fromzero.training.run import train

TITLE = "A base model to fine-tune"


def run(step: Step) -> None:
    step.say("""
        Fine-tuning starts from a *pretrained* model: one that has read a lot of text and continues it
        well, but does not know it is supposed to answer questions. Online you would start from GPT-2 or
        DistilGPT-2 (`fromzero finetune sft --model distilgpt2`). Offline, we pretrain a small one: a GPT
        with a byte-level BPE tokenizer of 2,048 tokens (the level-4 character model has never seen
        characters such as `#`, which the question template uses), on the stories and on the *answers*
        of the education Q&A train split. The test questions are never read.
    """)
    settings = pretrain_settings(step.output("5.2").parent, step.pick(20, 600))
    settings["out"] = str(step.output("5.2"))
    if step.quick:
        settings.update(tokenizer="bpe:400", n_layer=1, n_embd=32, n_head=2, block_size=128, eval_interval=10)
    step.figure("pretraining steps", settings["max_steps"])
    result = train(TrainConfig(**settings, sample_tokens=0), overwrite=True, quiet=step.quick)
    step.figure("validation loss", round(result.val_loss, 3), "nats per token")
    step.say(f"The base model is in `{step.output('5.2')}`. Next we teach it to answer.")
