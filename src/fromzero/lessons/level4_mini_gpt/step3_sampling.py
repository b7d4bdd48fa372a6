"""Sampling knobs side by side: temperature, top-k and top-p, as presets a chatbot offers."""

from __future__ import annotations

import torch

from fromzero.classic.plots import plot_bars
from fromzero.classic.render import show_token
from fromzero.generation import GenerationConfig, build_processors, generate, top_k, top_p
from fromzero.generation.processors import apply_processors
from fromzero.lessons.course import Step
from fromzero.models import GPT
from fromzero.tokenizers import load_tokenizer

TITLE = "Sampling knobs side by side"
NEEDS = ("4.2",)
PROMPT = "Once upon a time"
# The course's presets: how sure the model must be before a token may be picked.
PRESETS = {
    "greedy": dict(do_sample=False),
    "focused": dict(do_sample=True, temperature=0.5, top_k=10, top_p=1.0),
    "balanced": dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.95),
    "creative": dict(do_sample=True, temperature=1.1, top_k=None, top_p=0.98),
}


def run(step: Step) -> None:
    step.say("""
        The model gives a score to every possible next character; how we **pick** one is up to us:

        * **greedy**: always the likeliest. Safe, and soon repetitive;
        * **temperature** T divides the scores: T < 1 sharpens, T > 1 flattens;
        * **top-k** keeps only the k likeliest tokens;
        * **top-p** (nucleus) keeps the likeliest tokens until their probabilities add up to p: few when the
          model is sure, many when it is not.

        The filters are short functions of the library; here are top-k and top-p:
    """)
    step.show(top_k)
    step.show(top_p)
    out = step.output("4.2")
    model = GPT.from_pretrained(out).eval()
    tokenizer = load_tokenizer(out)
    prompt = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.no_grad():
        scores = model(prompt).logits[:, -1, :]
    order = torch.argsort(scores[0], descending=True)[:10].tolist()
    labels = [show_token(tokenizer.decode([i])) for i in order]
    shown = {}
    for name, settings in PRESETS.items():
        config = GenerationConfig(**settings)
        filtered = apply_processors(build_processors(config), prompt, scores)
        probs = filtered.softmax(-1)[0]
        kept = int(torch.isfinite(filtered).sum()) if config.samples else 1
        step.figure(f"{name}: settings", _describe(settings))
        step.figure(f"{name}: characters it may pick after {PROMPT!r}", kept)
        if config.samples:
            step.figure(f"{name}: chance of the likeliest", round(float(probs.max()), 3))
            shown[name] = [float(probs[i]) for i in order]
    path = plot_bars(labels, shown, step.picture("4_3_sampling_presets.png"),
                     title=f"the next character after {PROMPT!r}, per preset", ylabel="probability")
    step.saved(path)

    step.say("Now each preset writes from the same prompt, with the same seed:")
    for name, settings in PRESETS.items():
        config = GenerationConfig(max_new_tokens=step.pick(40, 200), seed=0, **settings)
        ids = generate(model, prompt, config)
        text = tokenizer.decode(ids[0, prompt.size(1):].tolist())
        step.figure(f"{name} writes", PROMPT + text)
        words = text.split()
        step.figure(f"{name}: distinct words", f"{len(set(words))} of {len(words)}")
    step.say("""
        Greedy tends to loop; creative invents words. Chatbots usually sit near *balanced*. Top-p adapts
        to the model's confidence: a trained model is sure what ends "Once upon a tim", and much less sure
        what starts the next word. Top-p alone (p = 0.9, no temperature, no top-k) keeps:
    """)
    nucleus = GenerationConfig(do_sample=True, top_k=None, top_p=0.9)
    for text in (PROMPT[:-1], PROMPT + " "):
        ids = torch.tensor([tokenizer.encode(text)])
        with torch.no_grad():
            logits = model(ids).logits[:, -1, :]
        kept = int(torch.isfinite(apply_processors(build_processors(nucleus), ids, logits)).sum())
        step.figure(f"top-p 0.9 after {text!r}: characters kept", kept)


def _describe(settings: dict) -> str:
    if not settings["do_sample"]:
        return "always the likeliest"
    return ", ".join(f"{key} {value}" for key, value in settings.items() if key != "do_sample")
