"""How few weights LoRA trains: the arithmetic, checked on a DistilGPT-2-shaped model."""

from __future__ import annotations

from fromzero.finetune.lora import LoRAConfig, LoRALinear, add_adapter, trainable_parameters
from fromzero.lessons.course import Step
from fromzero.models import GPT, GPTConfig

TITLE = "LoRA: training 0.18% of a model"


def run(step: Step) -> None:
    step.say("""
        Fine-tuning every weight of a model means a second copy of it for every task, and an optimizer state
        twice its size. **LoRA** freezes the model and learns, next to a chosen weight matrix W (d_in x d_out),
        a low-rank update B·A with A: d_in x r and B: r x d_out. Only A and B train; B starts at zero, so the
        model starts out exactly as it was. Here is the layer:
    """)
    step.show(LoRALinear.forward)
    config = GPTConfig.preset("distilgpt2")
    step.figure("DistilGPT-2: layers", config.n_layer)
    step.figure("c_attn (query, key and value together): inputs", config.n_embd)
    step.figure("c_attn: outputs", 3 * config.n_embd)
    lora = LoRAConfig(r=8, alpha=16, target_modules=("c_attn",))
    per_layer = lora.r * (config.n_embd + 3 * config.n_embd)
    step.figure("LoRA weights per layer: r x (768 + 2304)", per_layer)
    step.figure("LoRA weights in all layers", per_layer * config.n_layer)

    step.say("Now the same count from a real model, built with random weights (no download needed):")
    model = GPT(config)
    add_adapter(model, "default", lora)
    trainable, total = trainable_parameters(model)
    step.figure("trainable parameters (counted)", trainable)
    step.figure("all parameters", total)
    step.figure("share trained", f"{100 * trainable / total:.2f}%")
    assert trainable == per_layer * config.n_layer  # the arithmetic and the model agree
    step.say("""
        *Corrected figure:* the course this one grew from says LoRA on c_attn at r=8 trains **0.29%** of
        DistilGPT-2. It cannot: c_attn maps 768 inputs to 2,304 outputs (query, key and value at once), so
        each layer adds 8 x (768 + 2,304) = 24,576 weights, 147,456 in six layers, which is 0.18% of
        82 million.
    """)
