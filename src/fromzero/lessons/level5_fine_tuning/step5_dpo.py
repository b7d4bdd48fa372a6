"""Preference tuning (DPO): prefer the chosen answer over the rejected one, relative to where we started."""

from __future__ import annotations

from fromzero.finetune.recipe import dpo_settings
from fromzero.finetune.dpo import DPOConfig, dpo
from fromzero.finetune.losses import dpo_loss
from fromzero.finetune.tuned import fine_tune_record
from fromzero.lessons.course import Step

TITLE = "Preferring better answers (DPO)"
NEEDS = ("5.3",)


def run(step: Step) -> None:
    step.say("""
        SFT shows the model good answers. **Preference tuning** shows it pairs — a chosen and a rejected
        answer to the same prompt — and raises the chosen one's likelihood *relative to a frozen reference*
        (the SFT model), so the model cannot drift far from what it already knew. DPO does this with one
        loss, no reward model and no sampling:
    """)
    step.show(dpo_loss)
    settings = dpo_settings(step.output("5.2").parent, step.pick(1, 2))
    settings.update(model=str(step.output("5.2")), adapter=str(step.output("5.3")), out=str(step.output("5.5")))
    dpo(DPOConfig(**settings), overwrite=True, quiet=step.quick)
    result = fine_tune_record(step.output("5.5"))["result"]
    step.figure("held-out pairs: reward margin", round(result["val_reward_margin"], 4))
    step.figure("held-out pairs: preference accuracy", f"{result['val_preference_accuracy']:.0%}")
    step.say("""
        The accuracy is the share of held-out pairs where the tuned model's implicit reward for the chosen
        answer is above the rejected one's. Before the first step both rewards are zero, so it starts at 0%.
    """)
