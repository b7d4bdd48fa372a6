"""Decoding with a real model: token-for-token equal to transformers' ``generate``.

A random GPT-2 (vocab 1000, 3 layers, n_embd 64) is made with transformers, saved with
``save_pretrained`` and loaded into ours with ``GPT.from_pretrained``. Its weights are drawn with a
large standard deviation (0.5) so the next-token scores are far apart: greedy decoding then wanders
over many tokens instead of repeating one, and a match with transformers means something.
The tests that need no comparison use ``ours``, the same shape made by fromzero alone, so they also
run without the hf extra.
"""

from __future__ import annotations

import pytest
import torch

from fromzero.errors import InputError
from fromzero.generation import GenerationConfig, generate, stream
from fromzero.generation.stopping import finished_text
from fromzero.models import GPT, GPTConfig

VOCAB = 1000
SHAPE = dict(n_embd=64, n_layer=3, n_head=4, initializer_range=0.5, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)


@pytest.fixture(scope="module")
def models(transformers, tmp_path_factory):
    """(transformers model, our model loaded from its save_pretrained directory)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=128, **SHAPE)
    hf = transformers.GPT2LMHeadModel(config).eval()
    directory = tmp_path_factory.mktemp("random_gpt2")
    hf.save_pretrained(directory)
    return hf, GPT.from_pretrained(directory).eval()


@pytest.fixture(scope="module")
def ours():
    """A random GPT of the same shape and initialisation, made by fromzero alone."""
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=128, **SHAPE)).eval()


def prompts(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB - 1, (batch, length), generator=torch.Generator().manual_seed(seed))


def hf_generate(hf, input_ids, attention_mask=None, **kwargs):
    kwargs.setdefault("pad_token_id", VOCAB - 1)
    kwargs.setdefault("eos_token_id", None)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        return hf.generate(input_ids, attention_mask=attention_mask, **kwargs)


def test_greedy_64_tokens_equals_transformers(models):
    hf, ours = models
    ids = prompts(3, 7)
    expected = hf_generate(hf, ids, max_new_tokens=64, do_sample=False)
    got = generate(ours, ids, GenerationConfig(max_new_tokens=64))
    assert got.shape == (3, 7 + 64)
    assert torch.equal(got, expected)
    assert len(set(got[0, 7:].tolist())) > 10  # the comparison is not between two constant runs


def test_left_padded_batch_equals_transformers_and_unpadded_rows(models):
    hf, ours = models
    lengths = [9, 4, 1, 6]
    rows = [prompts(1, n, seed=n)[0] for n in lengths]
    width = max(lengths)
    ids = torch.full((len(rows), width), VOCAB - 1)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    config = GenerationConfig(max_new_tokens=24)
    got = generate(ours, ids, config, attention_mask=mask)
    assert torch.equal(got, hf_generate(hf, ids, mask, max_new_tokens=24))
    for i, row in enumerate(rows):
        alone = generate(ours, row[None], config)
        assert torch.equal(got[i, width:], alone[0, len(row):])


@pytest.mark.parametrize("kwargs", [
    dict(repetition_penalty=1.5),
    dict(no_repeat_ngram_size=2),
    dict(repetition_penalty=0.8, no_repeat_ngram_size=3),
])
def test_greedy_with_penalties_equals_transformers(models, kwargs):
    hf, ours = models
    ids = prompts(2, 6, seed=1)
    expected = hf_generate(hf, ids, max_new_tokens=64, do_sample=False, **kwargs)
    got = generate(ours, ids, GenerationConfig(max_new_tokens=64, **kwargs))
    assert torch.equal(got, expected)
    assert not torch.equal(got, generate(ours, ids, GenerationConfig(max_new_tokens=64)))


def common_tokens(ours, count: int) -> list[int]:
    """Tokens greedy decoding produces often: as eos ids they make rows and beams finish early."""
    run = generate(ours, prompts(4, 5, seed=3), GenerationConfig(max_new_tokens=30))[:, 5:]
    tokens, counts = run.flatten().unique(return_counts=True)
    return tokens[counts.argsort(descending=True)][:count].tolist()


def test_greedy_with_eos_pads_finished_rows_like_transformers(models):
    hf, ours = models
    eos = common_tokens(ours, 1)[0]
    ids = prompts(4, 5, seed=3)
    expected = hf_generate(hf, ids, max_new_tokens=30, eos_token_id=eos, pad_token_id=7)
    got = generate(ours, ids, GenerationConfig(max_new_tokens=30, eos_token_id=eos, pad_token_id=7))
    assert torch.equal(got, expected)
    assert (got == 7).any()


@pytest.mark.parametrize("length_penalty", [1.0, 0.6, 2.0])
@pytest.mark.parametrize("early_stopping", [True, False, "never"])
def test_beam_search_equals_transformers(models, length_penalty, early_stopping):
    hf, ours = models
    eos = common_tokens(ours, 3)  # several eos ids: many hypotheses finish, at different lengths
    ids = prompts(3, 5, seed=4)
    settings = dict(num_beams=4, length_penalty=length_penalty, early_stopping=early_stopping,
                    num_return_sequences=2, max_new_tokens=16)
    expected = hf_generate(hf, ids, eos_token_id=eos, do_sample=False, **settings)
    got = generate(ours, ids, GenerationConfig(eos_token_id=eos, pad_token_id=VOCAB - 1, **settings))
    assert torch.equal(got, expected)


def test_beam_search_without_eos_and_with_padding_equals_transformers(models):
    hf, ours = models
    ids = prompts(2, 6, seed=5)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    settings = dict(num_beams=3, max_new_tokens=12, no_repeat_ngram_size=2)
    expected = hf_generate(hf, ids, mask, do_sample=False, **settings)
    got = generate(ours, ids, GenerationConfig(pad_token_id=VOCAB - 1, **settings), attention_mask=mask)
    assert torch.equal(got, expected)


def test_beams_beat_greedy_on_total_log_probability(ours):
    ids = prompts(1, 5, seed=6)

    def log_prob(sequence):
        logits = ours(sequence[None, :-1]).logits[0, 4:].log_softmax(-1)
        return float(logits.gather(1, sequence[5:, None]).sum().detach())

    greedy = generate(ours, ids, GenerationConfig(max_new_tokens=8))[0]
    beam = generate(ours, ids, GenerationConfig(max_new_tokens=8, num_beams=8, early_stopping="never"))[0]
    assert log_prob(beam) >= log_prob(greedy) - 1e-4


def test_sampling_with_global_seed_equals_transformers(models):
    hf, ours = models
    ids = prompts(2, 5, seed=7)
    settings = dict(do_sample=True, temperature=0.8, top_k=40, top_p=0.9, max_new_tokens=32,
                    num_return_sequences=2)
    torch.manual_seed(123)
    expected = hf_generate(hf, ids, **settings)
    torch.manual_seed(123)
    got = generate(ours, ids, GenerationConfig(**settings))
    assert torch.equal(got, expected)


def test_beam_sampling_with_global_seed_equals_transformers(models):
    hf, ours = models
    ids = prompts(2, 5, seed=12)
    eos = common_tokens(ours, 2)
    settings = dict(do_sample=True, num_beams=3, temperature=0.9, top_k=20, max_new_tokens=12,
                    num_return_sequences=2)
    torch.manual_seed(5)
    expected = hf_generate(hf, ids, eos_token_id=eos, **settings)
    torch.manual_seed(5)
    got = generate(ours, ids, GenerationConfig(eos_token_id=eos, pad_token_id=VOCAB - 1, **settings))
    assert torch.equal(got, expected)


def test_seeded_sampling_is_reproducible(ours):
    ids = prompts(2, 5, seed=8)

    def run(seed, **kwargs):
        config = GenerationConfig(do_sample=True, min_p=0.05, max_new_tokens=32, seed=seed, **kwargs)
        return generate(ours, ids, config)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    assert torch.equal(run(1, temperature=0.0), generate(ours, ids, GenerationConfig(max_new_tokens=32)))


class ByteTokenizer:
    """A toy byte-level tokenizer whose tokens often hold half of a 4-byte emoji (like GPT-2's BPE).

    Even ids are the first two bytes of a character, odd ids the last two, so random output mixes
    whole emojis, dangling halves and stray continuation bytes.
    """

    CHARS = ["😀", "🙂", "🚀", "🌍", "𝄞"]

    def piece(self, i: int) -> bytes:
        raw = self.CHARS[(i // 2) % len(self.CHARS)].encode()
        return raw[:2] if i % 2 == 0 else raw[2:]

    def decode(self, ids) -> str:
        return b"".join(self.piece(i) for i in ids).decode("utf-8", errors="replace")

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError("the tests give prompts as ids")


def test_stream_reassembles_and_never_splits_a_character(ours):
    tokenizer = ByteTokenizer()
    prompt = prompts(1, 5, seed=9)[0].tolist()
    config = GenerationConfig(max_new_tokens=48, do_sample=True, seed=0)
    pieces = list(stream(ours, tokenizer, prompt, config))
    full = generate(ours, torch.tensor([prompt]), config)[0, 5:].tolist()
    text = tokenizer.decode(full)
    assert "".join(pieces) == text
    assert any(char in text for char in ByteTokenizer.CHARS)  # whole emojis were assembled
    shown = ""
    for piece in pieces:
        shown += piece
        assert text.startswith(shown)  # nothing shown is ever taken back or changed
    assert len(pieces) > 5


class DigitTokenizer:
    """Token i reads as its decimal digits followed by a space."""

    def decode(self, ids) -> str:
        return "".join(f"{i} " for i in ids)

    def encode(self, text: str) -> list[int]:
        return [int(word) for word in text.split()]


def test_finished_text_reads_a_row_up_to_eos_padding_or_a_stop_string():
    tokenizer = DigitTokenizer()
    config = GenerationConfig(eos_token_id=9, stop_strings=["3 4"])
    assert finished_text(tokenizer, [1, 2, 9, 9, 9], config) == "1 2 "
    assert finished_text(tokenizer, [1, 2, 3, 4, 5], config) == "1 2 "
    assert finished_text(tokenizer, [1, 2, 3, 5], config) == "1 2 3 5 "
    # beam search without a pad or eos id fills the shorter finished rows with -1
    assert finished_text(tokenizer, [1, 2, -1, -1], GenerationConfig()) == "1 2 "


def test_stop_strings_end_rows_and_are_cut_from_the_stream(ours):
    tokenizer = DigitTokenizer()
    ids = prompts(1, 5, seed=10)
    free = generate(ours, ids, GenerationConfig(max_new_tokens=30))[0, 5:].tolist()
    stop = f" {free[12]} {free[13]}"  # ends inside token 13: generation must stop right there
    config = GenerationConfig(max_new_tokens=30, stop_strings=[stop], pad_token_id=VOCAB - 1)
    got = generate(ours, ids, config, tokenizer=tokenizer)[0, 5:].tolist()
    assert got == free[:14]
    streamed = "".join(stream(ours, tokenizer, ids[0].tolist(), config))
    assert streamed == tokenizer.decode(free[:12]).rstrip(" ")
    with pytest.raises(InputError, match="tokenizer"):
        generate(ours, ids, config)


def test_decoding_uses_the_kv_cache(ours):
    seen = []
    handle = ours.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[1]))
    try:
        generate(ours, prompts(2, 6), GenerationConfig(max_new_tokens=10))
        generate(ours, prompts(2, 6), GenerationConfig(max_new_tokens=10, num_beams=3))
    finally:
        handle.remove()
    assert seen == [6] + [1] * 9 + [6] + [1] * 9


def test_output_is_an_ordinary_tensor_and_model_mode_is_restored(ours):
    ours.train()
    try:
        out = generate(ours, prompts(1, 4), GenerationConfig(max_new_tokens=3))
        assert ours.training
    finally:
        ours.eval()
    assert not out.is_inference() and torch.is_grad_enabled()
    out[0, 0] = 1  # usable in place, e.g. as training data


def test_generation_past_the_context_slides_the_window(ours):
    """Past block_size, each token is the greedy choice given the window the engine keeps:
    when the window is full, its oldest quarter is dropped and the rest re-encoded."""
    context = ours.config.block_size
    keep = context - context // 4
    prompt = prompts(1, 10, seed=4)
    out = generate(ours, prompt, GenerationConfig(max_new_tokens=2 * context))[0]
    assert out.numel() == 10 + 2 * context
    fitting = generate(ours, prompt, GenerationConfig(max_new_tokens=context - 10))[0]
    assert torch.equal(out[:context], fitting)
    start = 0
    with torch.no_grad():
        for position in range(context, out.numel()):
            if position - start > context:
                start = position - keep
            logits = ours(out[None, start:position]).logits[0, -1]
            assert int(logits.argmax()) == int(out[position]), position


def test_bad_inputs_raise_input_errors(ours):
    ids = prompts(2, 5)
    with pytest.raises(InputError, match="left"):
        generate(ours, ids, attention_mask=torch.tensor([[1, 1, 1, 1, 0]] * 2))
    with pytest.raises(InputError, match="shape"):
        generate(ours, ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(InputError, match="token ids"):
        generate(ours, ids + VOCAB)
    with pytest.raises(InputError, match="longer than the model's context"):
        generate(ours, prompts(1, 129))
    with pytest.raises(InputError, match="cannot slide"):
        generate(ours, ids, GenerationConfig(max_new_tokens=124, num_beams=2))
    with pytest.raises(InputError, match="cannot slide"):
        generate(ours, ids, GenerationConfig(max_new_tokens=124),
                 attention_mask=torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]))
    with pytest.raises(InputError, match="top_p"):
        generate(ours, ids, GenerationConfig(do_sample=True, top_p=0.0))
    with pytest.raises(InputError, match="integer"):
        generate(ours, ids.float())
    with pytest.raises(InputError, match="one sequence"):
        next(stream(ours, DigitTokenizer(), "1 2 3", GenerationConfig(num_beams=2)))
    with pytest.raises(InputError, match="empty"):
        next(stream(ours, DigitTokenizer(), "", GenerationConfig()))


@pytest.mark.parametrize("mode,tolerance", [("bf16", 0.05), ("int8", 0.05)])
def test_lighter_weights_stay_close_to_fp32(ours, mode, tolerance):
    import copy

    from fromzero.generation.inference_layers import Int8Linear, PackedLinear, onednn_packing_works
    from fromzero.generation.quantize import quantize

    light = quantize(copy.deepcopy(ours), mode)
    ids = prompts(4, 12, seed=11)
    with torch.inference_mode():
        reference = ours(ids).logits.log_softmax(-1)
        approx = light(ids).logits.float().log_softmax(-1)
    # the two next-token distributions are close (KL divergence, nats per token)
    kl = (reference.exp() * (reference - approx)).sum(-1).mean()
    assert float(kl) < tolerance
    assert (approx.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9
    if mode == "int8":
        assert isinstance(light.lm_head, Int8Linear) and not any(
            isinstance(m, torch.nn.Linear) for m in light.modules())
    if mode == "bf16" and onednn_packing_works(torch.bfloat16):
        assert isinstance(light.lm_head, PackedLinear) and light.lm_head.packed_weight.dtype == torch.bfloat16
    out = generate(light, ids, GenerationConfig(max_new_tokens=5))
    assert out.shape == (4, 17)
    with pytest.raises(InputError, match="weight mode"):
        quantize(ours, "int4")


def test_fp32_inference_layout_gives_the_same_numbers_and_tokens(models, tmp_path):
    import copy

    from fromzero.generation.inference_layers import PackedLinear, onednn_packing_works
    from fromzero.generation.quantize import quantize

    if not onednn_packing_works():
        pytest.skip("this torch build has no oneDNN, so fp32 weights stay in plain Linear layers")
    hf, ours = models
    packed = quantize(copy.deepcopy(ours), "fp32")
    assert isinstance(packed.lm_head, PackedLinear)
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.modules())
    ids = prompts(3, 9, seed=12)
    with torch.inference_mode():
        torch.testing.assert_close(packed(ids).logits, ours(ids).logits, rtol=1e-5, atol=1e-4)
    config = GenerationConfig(max_new_tokens=32)
    assert torch.equal(generate(packed, ids, config), hf_generate(hf, ids, max_new_tokens=32, do_sample=False))
    assert not packed(ids).logits.requires_grad  # an inference model, also outside inference_mode
    with pytest.raises(InputError, match="converted for inference"):
        packed.save_pretrained(tmp_path)
    assert not any(tmp_path.iterdir())
    # packing is for CPUs: a model elsewhere (here the shape-only "meta" device) keeps its Linear layers
    elsewhere = quantize(copy.deepcopy(ours).to("meta"), "fp32")
    assert isinstance(elsewhere.lm_head, torch.nn.Linear)
    with pytest.raises(InputError, match="CPU decoding mode"):
        quantize(copy.deepcopy(ours).to("meta"), "int8")
    # oneDNN's op has no backward: training through it must fail, not give wrong gradients
    packed.requires_grad_(True)
    with pytest.raises(InputError, match="inference only"):
        packed(ids).logits.sum().backward()


def test_settings_that_forbid_every_token_fall_back_to_the_model_scores():
    from fromzero.generation import GenerationConfig, generate
    from fromzero.models import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=6, block_size=32)).eval()
    prompt = torch.tensor([[0, 1, 2, 3, 4, 5]])  # every token used: no_repeat_ngram_size=1 forbids them all
    for sample in (True, False):
        config = GenerationConfig(max_new_tokens=5, do_sample=sample, min_p=0.05, no_repeat_ngram_size=1, seed=0)
        out = generate(model, prompt, config)
        assert out.shape == (1, 11) and int(out.max()) < 6
