"""Loading and saving Hugging Face GPT-2 checkpoints, checked against transformers' GPT2LMHeadModel.

Every model here is a random-weight model saved into tmp_path: nothing is downloaded. The tests that
compare with transformers take the ``transformers`` fixture and skip without the hf extra.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import save_file

from fromzero.errors import CorruptFileError, InputError, MissingFileError, OfflineError
from fromzero.models import GPT, GPTConfig
from fromzero.models.pretrained import model_directory

SHAPES = {
    "gpt2-like": dict(vocab_size=211, n_positions=64, n_embd=64, n_layer=2, n_head=4),
    "distilgpt2-like": dict(vocab_size=300, n_positions=128, n_embd=96, n_layer=6, n_head=12),
}


def make_hf_model(transformers, seed: int = 0, **shape):
    """A transformers GPT-2 with every weight, bias and LayerNorm randomised (not just the init)."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(bos_token_id=0, eos_token_id=0, **shape)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1)
    return model


def write_hub_style(model, directory, fmt: str) -> None:
    """The original hub layout: no ``transformer.`` prefix, plus the attn.bias / masked_bias buffers."""
    model.config.save_pretrained(directory)
    n = model.config.n_positions
    state = {}
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight":
            continue
        state[key.removeprefix("transformer.")] = tensor.clone()
    for layer in range(model.config.n_layer):
        state[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
        state[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    if fmt == "safetensors":
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, directory / "pytorch_model.bin")


@pytest.fixture(scope="module")
def hf_models(transformers):
    return {name: make_hf_model(transformers, seed=i, **shape) for i, (name, shape) in enumerate(SHAPES.items())}


@pytest.fixture
def saved(hf_models, tmp_path):
    """Write one of the HF models in one of three layouts; returns (hf_model, directory)."""

    def _save(name: str, layout: str = "prefixed"):
        model, directory = hf_models[name], tmp_path / f"{name}-{layout}"
        directory.mkdir()
        if layout == "prefixed":
            model.save_pretrained(directory)
        else:
            write_hub_style(model, directory, layout)
        return model, directory

    return _save


def inputs(vocab_size: int, seed: int = 1):
    """A batch of 3 with left padding of 0, 3 and 7 tokens; positions the way generate counts them."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :7] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


@pytest.mark.parametrize("layout", ["prefixed", "safetensors", "bin"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_logits_equal_transformers(saved, name, layout):
    hf, directory = saved(name, layout)
    model = GPT.from_pretrained(directory)
    assert model.config.n_layer == hf.config.n_layer and not model.training
    ids, mask, positions = inputs(hf.config.vocab_size)
    with torch.no_grad():
        plain = (model(ids).logits - hf(ids).logits).abs().max()
        ours = model(ids, attention_mask=mask).logits  # positions derived from the mask
        theirs = hf(ids, attention_mask=mask, position_ids=positions).logits
    assert plain < 1e-4
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max() < 1e-4
    assert not ours.isnan().any()


def test_explicit_position_ids_match_a_plain_transformers_forward(saved):
    hf, directory = saved("gpt2-like")
    model = GPT.from_pretrained(directory)
    ids, mask, _ = inputs(hf.config.vocab_size)
    plain_positions = torch.arange(12).expand(3, 12)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, position_ids=plain_positions).logits
        theirs = hf(ids, attention_mask=mask).logits  # transformers' plain forward counts 0..T-1
    assert (ours[mask.bool()] - theirs[mask.bool()]).abs().max() < 1e-4


def test_attention_weights_equal_transformers(saved, transformers):
    _, directory = saved("distilgpt2-like")
    eager = transformers.GPT2LMHeadModel.from_pretrained(directory, attn_implementation="eager").eval()
    model = GPT.from_pretrained(directory)
    ids, mask, positions = inputs(eager.config.vocab_size)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, output_attentions=True)
        theirs = eager(ids, attention_mask=mask, position_ids=positions, output_attentions=True)
    assert len(ours.attentions) == len(theirs.attentions) == 6
    real_queries = mask.bool()[:, None, :].expand(-1, 12, -1)  # (B, heads, T): rows that are not padding
    for mine, reference in zip(ours.attentions, theirs.attentions):
        assert mine.shape == reference.shape == (3, 12, 12, 12)
        assert (mine - reference)[real_queries].abs().max() < 1e-5


@pytest.mark.parametrize("name", list(SHAPES))
def test_save_pretrained_loads_in_transformers_with_identical_logits(saved, transformers, tmp_path, name):
    hf, directory = saved(name)
    model = GPT.from_pretrained(directory)
    out = tmp_path / "ours"
    model.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_positions"] == hf.config.n_positions
    assert config["fromzero"]["config"]["pos_encoding"] == "learned"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids, _, _ = inputs(hf.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, hf(ids).logits)
        assert torch.equal(GPT.from_pretrained(out)(ids).logits, model(ids).logits)
    assert not list(out.glob("*.tmp"))


def test_untied_head_and_exact_gelu_round_trip_through_transformers(transformers, tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, tie_weights=False,
                          activation="gelu", n_inner=24)).eval()
    assert model.lm_head.weight is not model.transformer.wte.weight
    model.save_pretrained(tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert hf.config.activation_function == "gelu" and not hf.config.tie_word_embeddings
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        assert (hf(ids).logits - model(ids).logits).abs().max() < 1e-5
    hf.save_pretrained(tmp_path / "from_hf")
    again = GPT.from_pretrained(tmp_path / "from_hf")
    assert again.config.activation == "gelu" and not again.config.tie_weights
    assert torch.equal(again(ids).logits, model(ids).logits)


FROMZERO_ONLY = [dict(pos_encoding="sinusoidal"), dict(bias=False)]


@pytest.mark.parametrize("change", FROMZERO_ONLY)
def test_fromzero_only_models_round_trip(tmp_path, change):
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", **change)).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "fromzero-gpt" and "transformers cannot load" in config["note"]
    loaded = GPT.from_pretrained(tmp_path)
    assert loaded.config == model.config
    ids = torch.randint(0, 256, (2, 10))
    assert torch.equal(loaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("change", FROMZERO_ONLY)
def test_transformers_refuses_fromzero_only_models(transformers, tmp_path, change):
    GPT(GPTConfig.preset("tiny", **change)).save_pretrained(tmp_path)
    with pytest.raises((ValueError, KeyError)):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_loading_ties_the_head_to_the_embedding(saved):
    _, directory = saved("gpt2-like", "safetensors")
    model = GPT.from_pretrained(directory, dropout=0.0)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.config.dropout == 0.0
    assert GPT.from_pretrained(directory, dtype=torch.bfloat16).lm_head.weight.dtype == torch.bfloat16


# ----- errors a user can make -----


def test_unknown_names_and_missing_directories(tmp_path):
    with pytest.raises(InputError, match="unknown model 'gpt5'"):
        GPT.from_pretrained("gpt5")
    with pytest.raises(MissingFileError, match="no model directory"):
        GPT.from_pretrained(tmp_path / "nowhere" / "model")
    with pytest.raises(InputError, match="is a file"):
        (tmp_path / "file.txt").write_text("x")
        GPT.from_pretrained(tmp_path / "file.txt")
    with pytest.raises(MissingFileError, match="config.json"):
        GPT.from_pretrained(tmp_path)


def test_hub_names_say_clearly_when_offline(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for name in ("distilgpt2", "someone/their-gpt"):
        with pytest.raises(OfflineError, match="HF_HUB_OFFLINE") as info:
            model_directory(name)
        assert name in str(info.value) and "local model directory" in str(info.value)


@pytest.mark.parametrize("argv", [["generate", "--model", "distilgpt2", "--prompt", "Paris is"],
                                  ["model", "info", "openai-community/gpt2"]])
def test_hub_names_without_huggingface_hub_say_which_extra_to_install(argv, monkeypatch, capsys):
    from fromzero.cli import main

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # the base install: no hf extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert 'pip install "fromzero[hf]"' in err and err.count("\n") == 1


def test_missing_truncated_and_mismatched_checkpoints(saved):
    hf, directory = saved("gpt2-like")
    weights = directory / "model.safetensors"
    data = weights.read_bytes()

    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="model.safetensors"):
        GPT.from_pretrained(directory)
    weights.write_bytes(data[:5])
    with pytest.raises(CorruptFileError, match="safetensors"):
        GPT.from_pretrained(directory)
    weights.unlink()
    with pytest.raises(MissingFileError, match="no weights"):
        GPT.from_pretrained(directory)

    (directory / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptFileError, match="pytorch_model.bin"):
        GPT.from_pretrained(directory)
    (directory / "pytorch_model.bin").unlink()

    weights.write_bytes(data)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "n_embd": 32}))
    with pytest.raises(CorruptFileError, match=r"'transformer\.wte\.weight' has shape \(211, 64\)"):
        GPT.from_pretrained(directory)
    (directory / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(CorruptFileError, match=r"no weight 'transformer\.h\.2"):
        GPT.from_pretrained(directory)
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(InputError, match="not a GPT-2-family model"):
        GPT.from_pretrained(directory)
    (directory / "config.json").write_text("{broken")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        GPT.from_pretrained(directory)


def test_sharded_checkpoints_and_extra_heads_load(hf_models, tmp_path):
    hf = hf_models["gpt2-like"]
    hf.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and len(list(tmp_path.glob("model-*"))) > 1
    ids, _, _ = inputs(hf.config.vocab_size)
    with torch.no_grad():
        assert (GPT.from_pretrained(tmp_path)(ids).logits - hf(ids).logits).abs().max() < 1e-4

    extra = tmp_path / "double-heads"
    write_hub_style(hf, extra, "safetensors")
    from safetensors.torch import load_file

    state = load_file(extra / "model.safetensors")
    state["multiple_choice_head.summary.weight"] = torch.zeros(1, 64)  # GPT2DoubleHeadsModel's extra head
    save_file(state, str(extra / "model.safetensors"))
    with torch.no_grad():
        assert (GPT.from_pretrained(extra)(ids).logits - hf(ids).logits).abs().max() < 1e-4


def test_checkpoint_weights_load_into_a_model_without_building_another(tmp_path, monkeypatch):
    """Resuming reads the saved state dict and checks it by from_pretrained's rule; it builds no second GPT."""
    from fromzero.training.checkpoint import load_weights

    torch.manual_seed(0)
    saved = GPT(GPTConfig.preset("tiny", tie_weights=False))
    saved.save_pretrained(tmp_path)
    target = GPT(GPTConfig.preset("tiny", tie_weights=False))
    built = []
    init = GPT.__init__
    monkeypatch.setattr(GPT, "__init__", lambda self, config: built.append(config) or init(self, config))
    load_weights(target, tmp_path)
    assert built == []
    ids = torch.randint(0, 256, (2, 10))
    assert torch.equal(target(ids).logits, saved(ids).logits)
    other = GPT(GPTConfig.preset("tiny", n_embd=32))
    with pytest.raises(InputError, match=r"'transformer\.wte\.weight' has shape \(256, 64\), but the model"):
        load_weights(other, tmp_path)
