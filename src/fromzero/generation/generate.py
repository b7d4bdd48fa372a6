"""``generate``: the one entry point that turns prompts into continuations, like transformers'.

It checks the inputs, builds the logits processors and stop condition from the config, runs the
prompt through the model once (the KV cache keeps it), and hands over to greedy/sampling or beam
search. Rows finish independently; the result is padded like transformers' output.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from fromzero.errors import InputError
from fromzero.generation.beam_search import beam_search
from fromzero.generation.config import GenerationConfig
from fromzero.generation.engine import CachedDecoder, StepDecoder
from fromzero.generation.processors import build_processors
from fromzero.generation.sampling import sample_steps
from fromzero.generation.stopping import Decoder, StopCondition
from fromzero.machine import threads
from fromzero.models.context import can_slide, check_prompt


def generate(model: torch.nn.Module, input_ids: torch.Tensor, config: GenerationConfig | None = None,
             attention_mask: torch.Tensor | None = None, *,
             tokenizer: Decoder | None = None) -> torch.Tensor:
    """Continue each prompt in ``input_ids`` (B, T); return prompt + new tokens as a LongTensor.

    ``attention_mask`` (B, T) is 1 for real tokens and 0 for padding; pad prompts of different
    lengths on the LEFT, so every row's next token comes right after its last real token. Rows that
    stop early are filled with ``pad_token_id`` (else the eos id). With ``num_return_sequences=n``
    the output has B * n rows, the n results of prompt i being rows i*n ... i*n + n - 1.
    ``tokenizer`` is only needed for ``stop_strings``.

    The prompt must fit in the model's context (``block_size``); a longer one raises
    :class:`InputError` rather than silently forgetting its start. Greedy decoding and sampling of
    unpadded prompts may go on past the context: the window then slides (the oldest tokens are
    forgotten, see :mod:`fromzero.generation.engine`). Beam search and padded batches must fit
    (the policy: :mod:`fromzero.models.context`).
    """
    config = (config or GenerationConfig()).validate()
    input_ids, attention_mask = check_inputs(model, input_ids, attention_mask, config)
    with torch.inference_mode(), eval_mode(model), threads.following(input_ids.device):
        decoder, logits, prompt, stop, generator = start(model, input_ids, attention_mask, config,
                                                          tokenizer)
        result = decode(decoder, logits, prompt, config, stop, generator)
    # a clone made outside inference mode is an ordinary tensor, usable for training later
    return result.clone()


def decode(decoder: StepDecoder, logits: torch.Tensor, prompt: torch.Tensor, config: GenerationConfig,
           stop: StopCondition, generator: torch.Generator | None) -> torch.Tensor:
    """Run the chosen strategy (beam search, or greedy / sampling) from the first next-token ``logits``."""
    processors = build_processors(config)
    if config.num_beams > 1:
        return beam_search(decoder, logits, prompt, config, processors, stop, generator)
    for result in sample_steps(decoder, logits, prompt, config, processors, stop, generator):
        pass
    return result


def start(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
          config: GenerationConfig, tokenizer: Decoder | None
          ) -> tuple[CachedDecoder, torch.Tensor, torch.Tensor, StopCondition, torch.Generator | None]:
    """Prefill: run the prompts once; return the decoder and the first next-token logits."""
    decoder = CachedDecoder(model, input_ids, attention_mask, config.max_new_tokens)
    logits, prompt = copies_for_sampling(decoder, decoder.prefill(), input_ids, config)
    stop = StopCondition(config, input_ids.size(1), tokenizer)
    return decoder, logits, prompt, stop, sampling_generator(config, input_ids.device)


def copies_for_sampling(decoder: StepDecoder, logits: torch.Tensor, prompt: torch.Tensor, config: GenerationConfig
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling several sequences per prompt copies each prompt's cache rather than re-running it."""
    copies = config.num_return_sequences
    if config.num_beams == 1 and copies > 1:
        rows = torch.arange(prompt.size(0), device=prompt.device).repeat_interleave(copies)
        decoder.select(rows)
        return logits[rows], prompt[rows]
    return logits, prompt


def sampling_generator(config: GenerationConfig, device: torch.device) -> torch.Generator | None:
    """The seeded random generator of ``config.seed`` when sampling; None uses torch's global one."""
    if config.seed is not None and config.samples:
        return torch.Generator(device=device).manual_seed(config.seed)
    return None


def check_inputs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 config: GenerationConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate shapes, ids and the context length; a 1-D prompt becomes a batch of one."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        raise InputError("input_ids must be an integer torch tensor of token ids, shape (batch, length)")
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
        attention_mask = attention_mask.unsqueeze(0) if attention_mask is not None else None
    if input_ids.dim() != 2 or input_ids.numel() == 0:
        raise InputError(f"input_ids must have shape (batch, length) with length >= 1, "
                         f"got {tuple(input_ids.shape)}")
    input_ids = input_ids.long()
    model_config = getattr(model, "config", None)
    vocab = getattr(model_config, "vocab_size", None)
    if vocab is not None and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
        raise InputError(f"token ids must be in [0, {vocab}) for this model, got "
                         f"[{int(input_ids.min())}, {int(input_ids.max())}]")
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise InputError(f"attention_mask shape {tuple(attention_mask.shape)} does not match "
                             f"input_ids shape {tuple(input_ids.shape)}")
        if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise InputError("attention_mask must hold only 0 (padding) and 1 (real token)")
        if not bool(attention_mask[:, -1].all()):
            raise InputError("every prompt must end with a real token: pad on the left "
                             "(tokenizer padding_side='left')")
    context = getattr(model_config, "block_size", None)
    if context is not None:
        padded = attention_mask is not None and not bool(attention_mask.all())
        check_prompt(input_ids.size(1), context, config.max_new_tokens, can_slide(config.num_beams, padded))
    return input_ids, attention_mask


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Switch dropout off while generating, then restore the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
