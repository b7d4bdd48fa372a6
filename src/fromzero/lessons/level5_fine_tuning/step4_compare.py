"""Base versus tuned: the same questions, the adapter switched off and on, scored on held-out data."""

from __future__ import annotations

from fromzero.evaluate.qa import answer_loss, answers
from fromzero.finetune.instructions import load_instructions
from fromzero.finetune.lora import disabled_adapters
from fromzero.finetune.tuned import load_tuned
from fromzero.lessons.course import Step

TITLE = "Base versus tuned"
NEEDS = ("5.3",)


def run(step: Step) -> None:
    step.say("""
        A LoRA adapter sits beside the frozen base, so switching it off gives the base model back exactly,
        with no second copy in memory. That makes an honest comparison: the same weights, the same
        questions, adapter off and on. (The course this grew from compared the adapted model with itself,
        because its "base" was the same object after fine-tuning.) The questions come from the
        education_qa **test** split, which no stage has read.
    """)
    step.show(disabled_adapters)
    tuned = load_tuned(str(step.output("5.3")))
    test = load_instructions("education_qa/test")
    questions = [example.turns[0].content for example in test[: step.pick(2, 5)]]
    with disabled_adapters(tuned.model):
        before = answer_loss(tuned.model, tuned.tokenizer, tuned.template, test)
        base_answers = answers(tuned.model, tuned.tokenizer, tuned.template, questions, step.pick(20, 60))
    after = answer_loss(tuned.model, tuned.tokenizer, tuned.template, test)
    tuned_answers = answers(tuned.model, tuned.tokenizer, tuned.template, questions, step.pick(20, 60))
    step.figure("held-out answer loss, base", round(before, 3))
    step.figure("held-out answer loss, tuned", round(after, 3))
    for question, old, new in zip(questions, base_answers, tuned_answers):
        step.say(f"**Q:** {question}\n\n*base:* {old or '(nothing)'}\n\n*tuned:* {new or '(nothing)'}")
    step.say("""
        A model of two million parameters learns the *shape* of an answer (a sentence or two, then it
        stops) long before it learns facts: the loss on held-out answers goes down, the answers are
        still not right. DistilGPT-2, 40 times larger and pretrained on far more text, gets much further
        with the same recipe.
    """)
