"""LoRA (fromzero.finetune.lora) against peft, and the PEFT adapter format both ways.

Every comparison uses a tiny random GPT-2 made here with transformers and loaded into our GPT from
the same folder, so both sides hold identical base weights; nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fromzero.errors import InputError
from fromzero.finetune.lora import (
    LoRAConfig,
    LoRALinear,
    add_adapter,
    disabled_adapters,
    lora_layers,
    merge,
    merge_and_unload,
    set_adapter,
    trainable_parameters,
    trainable_summary,
    unmerge,
)
from fromzero.finetune.peft_format import ADAPTER_CONFIG, ADAPTER_WEIGHTS, load_adapter, save_adapter
from fromzero.models import GPT, GPTConfig

# peft says so each time it adapts transformers' GPT-2 (its Conv1D layers); that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to False:UserWarning")

IDS = torch.tensor([[5, 17, 99, 3, 42, 8, 64, 1], [0, 11, 23, 57, 100, 2, 76, 30]])
TOL = 1e-5


def _save_hf_gpt2(transformers, directory, n_embd=32, seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=n_embd, vocab_size=101, n_positions=32,
                                     bos_token_id=100, eos_token_id=100)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


@pytest.fixture
def base_dir(tmp_path, transformers):
    return _save_hf_gpt2(transformers, tmp_path / "base")


def _hf(transformers, base_dir):
    return transformers.GPT2LMHeadModel.from_pretrained(base_dir).eval()


def _randomize(model, seed=1):
    """Give every adapter non-zero A and B (B starts at zero, which would hide any mistake)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in (p for n, p in model.named_parameters() if "lora_" in n):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def _ours(base_dir, seed=1, **config):
    model = GPT.from_pretrained(base_dir)
    add_adapter(model, "default", LoRAConfig(**{"r": 4, "alpha": 8, "dropout": 0.1, **config}))
    _randomize(model, seed)
    return model.eval()


def _logits(model, ids=IDS):
    with torch.no_grad():
        out = model(ids) if isinstance(model, GPT) else model(input_ids=ids)
    return out.logits


def _peft_layer_names(peft_model):
    from peft.tuners.lora import LoraLayer

    inner = peft_model.base_model.model
    return sorted(n for n, m in inner.named_modules() if isinstance(m, LoraLayer))


@pytest.mark.parametrize("targets", [("c_attn", "mlp.c_proj"), "all-linear", r"transformer\.h\.1\..*c_proj"])
def test_lora_forward_equals_peft_with_the_same_weights(base_dir, transformers, targets):
    peft = pytest.importorskip("peft")
    ours = _ours(base_dir, target_modules=targets)
    reference = peft.get_peft_model(_hf(transformers, base_dir), peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.1, target_modules=targets if isinstance(targets, str) else list(targets)))
    reference.eval()
    assert sorted(lora_layers(ours)) == _peft_layer_names(reference)  # the names select the same layers
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            theirs = reference.base_model.model.get_submodule(name)
            theirs.lora_A["default"].weight.copy_(layer.lora_A["default"].weight)
            theirs.lora_B["default"].weight.copy_(layer.lora_B["default"].weight)

    adapted = _logits(ours)
    assert (adapted - _logits(reference)).abs().max() < TOL
    assert (adapted - _logits(GPT.from_pretrained(base_dir))).abs().max() > 1e-3  # the adapter does something


def test_our_saved_adapter_loads_in_peft(base_dir, transformers, tmp_path):
    peft = pytest.importorskip("peft")
    ours = _ours(base_dir, target_modules=("c_attn", "c_proj"))
    save_adapter(ours, tmp_path / "adapter", base_model=str(base_dir))
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]

    loaded = peft.PeftModel.from_pretrained(_hf(transformers, base_dir), tmp_path / "adapter").eval()
    assert (_logits(ours) - _logits(loaded)).abs().max() < TOL

    # The config means to peft exactly what peft's own file for the same settings means.
    native = peft.get_peft_model(_hf(transformers, base_dir), peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["c_attn", "c_proj"], task_type="CAUSAL_LM"))
    native.save_pretrained(tmp_path / "native")
    skip = {"peft_version", "base_model_name_or_path", "target_modules"}
    mine, theirs = (peft.LoraConfig.from_pretrained(tmp_path / d).to_dict() for d in ("adapter", "native"))
    assert {k: v for k, v in mine.items() if k not in skip} == {k: v for k, v in theirs.items() if k not in skip}
    assert set(mine["target_modules"]) == set(theirs["target_modules"])


def test_peft_saved_adapter_loads_in_fromzero(base_dir, transformers, tmp_path):
    peft = pytest.importorskip("peft")
    reference = peft.get_peft_model(_hf(transformers, base_dir), peft.LoraConfig(
        r=4, lora_alpha=16, lora_dropout=0.05, target_modules=["c_attn", "c_fc"], task_type="CAUSAL_LM"))
    _randomize(reference, seed=3)
    reference.save_pretrained(tmp_path / "adapter")

    ours = GPT.from_pretrained(base_dir)
    config = load_adapter(ours, tmp_path / "adapter")
    assert not any(m.training for m in ours.modules())  # the new layers keep the model's eval mode (dropout)
    assert (config.r, config.alpha, config.dropout) == (4, 16, 0.05)
    assert (_logits(ours) - _logits(reference.eval())).abs().max() < TOL


def test_merged_weights_equal_peft_merge_and_unload(base_dir, transformers, tmp_path):
    peft = pytest.importorskip("peft")
    ours = _ours(base_dir, target_modules=("c_attn", "c_fc"))
    adapted = _logits(ours)
    save_adapter(ours, tmp_path / "adapter")
    theirs = peft.PeftModel.from_pretrained(_hf(transformers, base_dir), tmp_path / "adapter").merge_and_unload()

    plain = merge_and_unload(ours)
    assert not lora_layers(plain) and type(plain.transformer.h[0].attn.c_attn) is nn.Linear
    assert all(p.requires_grad for p in plain.parameters())
    for i in range(2):
        for ours_w, conv_w in ((plain.transformer.h[i].attn.c_attn.weight, theirs.transformer.h[i].attn.c_attn.weight),
                               (plain.transformer.h[i].mlp.c_fc.weight, theirs.transformer.h[i].mlp.c_fc.weight)):
            assert (ours_w - conv_w.t()).abs().max() < 1e-6  # Conv1D stores (in, out)
    assert (_logits(plain) - adapted).abs().max() < TOL

    plain.save_pretrained(tmp_path / "merged")  # a normal HF checkpoint
    assert (_logits(_hf(transformers, tmp_path / "merged")) - _logits(theirs.eval())).abs().max() < TOL


def test_unmerge_restores_the_base_weights_and_merge_twice_is_refused(base_dir):
    ours = _ours(base_dir, target_modules=("c_attn", "attn.c_proj"))
    base = {k: v.clone() for k, v in GPT.from_pretrained(base_dir).state_dict().items()}
    adapted = _logits(ours)

    merge(ours)
    merged_c_attn = ours.transformer.h[0].attn.c_attn.base.weight.clone()
    assert not torch.allclose(merged_c_attn, base["transformer.h.0.attn.c_attn.weight"])
    assert (_logits(ours) - adapted).abs().max() < TOL
    with pytest.raises(InputError, match="already|merged into the weights"):
        merge(ours)
    with pytest.raises(InputError, match="unmerge"):
        with disabled_adapters(ours):
            pass

    unmerge(ours)
    for name, layer in lora_layers(ours).items():
        assert torch.allclose(layer.base.weight, base[f"{name}.weight"], atol=1e-6)
    assert (_logits(ours) - adapted).abs().max() < TOL
    with pytest.raises(InputError, match="nothing to unmerge"):
        unmerge(ours)


def test_two_adapters_switch_and_each_equals_peft(base_dir, transformers, tmp_path):
    peft = pytest.importorskip("peft")
    ours = GPT.from_pretrained(base_dir)
    add_adapter(ours, "a", LoRAConfig(r=2, alpha=4, target_modules=("c_attn",)))
    add_adapter(ours, "b", LoRAConfig(r=4, alpha=4, target_modules=("c_attn", "c_fc")))
    _randomize(ours, seed=5)
    ours.eval()
    logits = {}
    for name in ("a", "b"):
        set_adapter(ours, name)
        logits[name] = _logits(ours)
        save_adapter(ours, tmp_path / name)
    assert (logits["a"] - logits["b"]).abs().max() > 1e-3

    reference = peft.PeftModel.from_pretrained(_hf(transformers, base_dir), tmp_path / "a", adapter_name="a")
    reference.load_adapter(tmp_path / "b", adapter_name="b")
    reference.eval()
    for name in ("a", "b"):
        reference.set_adapter(name)
        assert (logits[name] - _logits(reference)).abs().max() < TOL

    with pytest.raises(InputError, match="no adapter named 'c'; the model has: a, b"):
        set_adapter(ours, "c")
    with pytest.raises(InputError, match="already has an adapter named 'a'"):
        add_adapter(ours, "a")


def test_disabled_adapters_give_the_base_logits_exactly(base_dir):
    ours = _ours(base_dir, target_modules="all-linear")
    assert len(lora_layers(ours)) == 8  # 4 projections x 2 layers
    base_logits = _logits(GPT.from_pretrained(base_dir))
    assert not torch.equal(_logits(ours), base_logits)
    with disabled_adapters(ours):
        assert torch.equal(_logits(ours), base_logits)
    assert not torch.equal(_logits(ours), base_logits)  # switched back on afterwards


def test_only_the_active_adapter_trains(base_dir):
    ours = GPT.from_pretrained(base_dir)
    add_adapter(ours, "old", LoRAConfig(r=2, target_modules=("c_proj",)))
    add_adapter(ours, "new", LoRAConfig(r=2, target_modules=("c_attn",)))
    nn.init.normal_(ours.transformer.h[0].attn.c_attn.lora_B["new"].weight)
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {f"transformer.h.{i}.attn.c_attn.lora_{p}.new.weight" for i in range(2) for p in "AB"}

    ours.train()
    ours(IDS, targets=IDS.roll(-1, 1)).loss.backward()
    with_grad = {n for n, p in ours.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    assert ours.transformer.h[0].attn.c_attn.lora_A["new"].weight.grad.abs().sum() > 0
    assert ours.transformer.h[1].attn.c_attn.lora_B["new"].weight.grad.abs().sum() > 0


def test_distilgpt2_c_attn_r8_trains_147456_parameters():
    with torch.device("meta"):  # the real shape, no memory
        model = GPT(GPTConfig.preset("distilgpt2"))
        assert model.num_params() == 81_912_576
        add_adapter(model, "default", LoRAConfig())  # the course's defaults: r=8 on c_attn
    assert trainable_parameters(model) == (147_456, 81_912_576 + 147_456)
    assert trainable_summary(model) == "trainable params: 147,456 of 82,060,032 (0.18%)"


@pytest.mark.parametrize(("settings", "message"), [
    (dict(r=0), r"rank r \(--lora-r\) must be a positive integer, got 0"),
    (dict(r=-2), "got -2"),
    (dict(alpha=0), r"alpha \(--lora-alpha\) must be a positive number, got 0"),
    (dict(alpha=-1.5), "got -1.5"),
    (dict(dropout=1.0), r"dropout \(--lora-dropout\) must be in \[0, 1\)"),
    (dict(bias="all"), "bias must be 'none'"),
    (dict(target_modules=()), "non-empty"),
])
def test_bad_lora_settings_are_one_clear_line(settings, message):
    with pytest.raises(InputError, match=message):
        LoRAConfig(**settings)


def test_unknown_target_lists_the_valid_names(base_dir):
    model = GPT.from_pretrained(base_dir)
    valid = "c_attn, c_proj, c_fc, attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj"
    for target in (("c_attn", "q_proj"), ("lm_head",)):
        with pytest.raises(InputError, match=f"'{target[-1]}' .* matches no layer of this model; valid names: {valid}$"):
            add_adapter(model, "default", LoRAConfig(target_modules=target))
    with pytest.raises(InputError, match=f"pattern 'c_attn' matches no layer .* give a list for short names: {valid}"):
        add_adapter(model, "default", LoRAConfig(target_modules="c_attn"))  # one string is a regex, as in PEFT
    assert not lora_layers(model)  # nothing wrapped by the failed attempts


@pytest.mark.parametrize(("change", "named"), [
    ({"use_dora": True}, "use_dora=True"),
    ({"use_rslora": True}, "use_rslora=True"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save=['lm_head']"),
    ({"bias": "lora_only"}, "bias='lora_only'"),
    ({"rank_pattern": {"c_attn": 2}}, "rank_pattern="),
    ({"layers_to_transform": [0]}, "layers_to_transform=[0]"),
    ({"peft_type": "PREFIX_TUNING"}, "peft_type 'PREFIX_TUNING'"),
    ({"task_type": "SEQ_CLS"}, "task_type 'SEQ_CLS'"),
    ({"init_lora_weights": "pissa"}, "init_lora_weights='pissa'"),
])
def test_unsupported_peft_options_are_named(base_dir, tmp_path, change, named):
    save_adapter(_ours(base_dir), tmp_path / "adapter")
    config_path = tmp_path / "adapter" / ADAPTER_CONFIG
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **change}))
    model = GPT.from_pretrained(base_dir)
    with pytest.raises(InputError, match=r"adapter_config\.json: .*" + named.replace("[", r"\[").replace("(", r"\(")):
        load_adapter(model, tmp_path / "adapter")
    assert not lora_layers(model)


def test_adapter_for_a_different_base_names_the_module_and_shapes(base_dir, transformers, tmp_path):
    save_adapter(_ours(base_dir), tmp_path / "adapter")  # n_embd 32
    wider = GPT.from_pretrained(_save_hf_gpt2(transformers, tmp_path / "wider", n_embd=48))
    with pytest.raises(InputError, match=r"different base model: transformer\.h\.0\.attn\.c_attn \(48 -> 144\) "
                                         r"needs lora_A \(4, 48\) and lora_B \(144, 4\), "
                                         r"the adapter has \(4, 32\) and \(96, 4\)"):
        load_adapter(wider, tmp_path / "adapter")
    assert not lora_layers(wider)


def test_adapter_files_are_read_without_pickle(base_dir, tmp_path):
    save_adapter(_ours(base_dir), tmp_path / "adapter")
    (tmp_path / "adapter" / ADAPTER_WEIGHTS).rename(tmp_path / "adapter" / "adapter_model.bin")
    with pytest.raises(InputError, match="adapter_model.bin, a pickle file"):
        load_adapter(GPT.from_pretrained(base_dir), tmp_path / "adapter")


def test_lora_linear_starts_as_its_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base)
    layer.add("default", LoRAConfig(r=2))
    x = torch.randn(3, 6)
    assert torch.equal(layer.lora_B["default"].weight, torch.zeros(5, 2))  # B = 0: no change at step 0
    assert layer.lora_A["default"].weight.abs().max() <= 1 / 6 ** 0.5  # kaiming-uniform(a=sqrt(5)) bound
    layer.active = "default"
    assert torch.equal(layer.eval()(x), base(x))
