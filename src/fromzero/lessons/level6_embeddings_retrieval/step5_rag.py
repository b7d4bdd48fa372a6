"""Retrieval-augmented answers: the chunks nearest the question go in front of it."""

from __future__ import annotations

from fromzero.chat.conversation import default_answer_tokens, question_with_context
from fromzero.embeddings.index import Retriever
from fromzero.embeddings.rag import rag_question, source_line
from fromzero.evaluate.qa import MAX_NEW_TOKENS, answer_loss, answers, load_qa
from fromzero.finetune.instructions import Example, Message
from fromzero.finetune.tuned import load_tuned
from fromzero.lessons.course import Step

TITLE = "Answers from your documents (RAG)"
NEEDS = ("5.3", "6.4")


def run(step: Step) -> None:
    step.say("""
        Fine-tuning taught the model *how* to answer (level 5); it cannot teach it every fact. **Retrieval**
        supplies the *what*: search the textbook for the question (step 6.4) and put what was found in front
        of it, in a fixed template. The model's context is short, so the chunks are cut, best first, to what
        fits beside the question and the room left for the answer:
    """)
    step.show(rag_question)
    tuned = load_tuned(str(step.output("5.3")))
    retriever = Retriever(step.output("6.4"), k=3)
    items = load_qa()[: step.pick(8, 86)]
    step.figure("held-out questions", len(items))
    step.figure("model context", tuned.model.config.block_size, "tokens")

    room = min(MAX_NEW_TOKENS, default_answer_tokens(tuned.model.config.block_size))  # tokens kept for the answer
    plain, with_context, contexts = [], [], []
    for item in items:
        messages = [Message("user", item.question)]
        asked, used = question_with_context(tuned, messages, retriever.retrieve(item.question), room)
        contexts.append((asked, used))
        plain.append(Example((*messages, Message("assistant", item.reference))))
        with_context.append(Example((Message("user", asked), Message("assistant", item.reference))))
    step.figure("chunks that fit, on average", round(sum(len(used) for _, used in contexts) / len(items), 2))

    step.say("""
        Is the right answer more likely with the textbook in front of the question? The **answer loss** is
        the mean surprise (nats per token) of the reference answer, read by the model after the prompt:
        lower is better. Same model, same answers, with and without the retrieved text.
    """)
    without = step.figure("answer loss, question alone", round(answer_loss(tuned.model, tuned.tokenizer,
                                                                           tuned.template, plain), 3))
    helped = step.figure("answer loss, with retrieved text", round(answer_loss(tuned.model, tuned.tokenizer,
                                                                             tuned.template, with_context), 3))
    shown = step.pick(1, 3)
    replies = answers(tuned.model, tuned.tokenizer, tuned.template, [asked for asked, _ in contexts[:shown]],
                      step.pick(20, 60))
    for item, (_, used), reply in zip(items, contexts, replies):
        sources = "\n".join(f"- {source_line(rank, hit)}" for rank, hit in enumerate(used, start=1)) or "- none fit"
        step.say(f"**Q:** {item.question}\n\n*answer:* {reply or '(nothing)'}\n\n*sources:*\n{sources}")
    step.say(f"""
        With the textbook in front of it the reference answers are {'more' if helped < without else 'not more'}
        likely ({helped} against {without} nats per token). This model was fine-tuned on questions alone,
        never with retrieved text in its prompt; a model fine-tuned *with* such prompts learns to use them.
        Either way the sources, listed after each answer, let a reader check it. Try it: `fromzero chat --model {step.output('5.3')}
        --rag {step.output('6.4')}`.
    """)
