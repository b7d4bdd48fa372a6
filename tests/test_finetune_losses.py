"""The fine-tuning losses against their references: the SFT loss against transformers' GPT-2 loss,
DPO and IPO against trl's DPOTrainer, and the masking: no gradient reaches the prompt."""

from __future__ import annotations

import collections
import types

import pytest
import torch

from fromzero.errors import InputError
from fromzero.finetune.batches import IGNORE_INDEX, build_sft_data, collate
from fromzero.finetune.instructions import Example, Message
from fromzero.finetune.losses import answer_lengths, dpo_loss, sequence_logprobs, sft_loss, token_logprobs
from fromzero.finetune.templates import get_template
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import CharTokenizer


def _masked_batch(vocab: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two rows of different lengths: a masked prompt, an answer, right padding."""
    torch.manual_seed(0)
    ids = torch.randint(0, vocab, (2, 12))
    labels = ids.clone()
    labels[0, :5] = IGNORE_INDEX  # prompt of row 0
    labels[1, :3] = IGNORE_INDEX  # prompt of row 1
    labels[1, 9:] = IGNORE_INDEX  # padding of row 1
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return ids, labels, mask


@pytest.fixture(scope="module")
def hf_gpt2(transformers):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(config).eval()


def test_sft_loss_equals_transformers_gpt2_loss(hf_gpt2):
    ids, labels, mask = _masked_batch()
    out = hf_gpt2(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(sft_loss(out.logits, labels), out.loss, rtol=1e-6, atol=1e-6)


def test_sequence_logprobs_are_the_summed_answer_log_probs(hf_gpt2):
    ids, labels, mask = _masked_batch()
    logits = hf_gpt2(input_ids=ids, attention_mask=mask).logits
    for row in range(2):  # transformers' mean loss of one row, times its scored tokens, is minus the sum
        alone = hf_gpt2(input_ids=ids[row:row + 1], attention_mask=mask[row:row + 1], labels=labels[row:row + 1])
        count = int((labels[row, 1:] != IGNORE_INDEX).sum())
        torch.testing.assert_close(sequence_logprobs(logits, labels)[row], -alone.loss * count, rtol=1e-5, atol=1e-5)
    assert answer_lengths(labels).tolist() == [11 - 4, 8 - 2]
    by_hand = torch.log_softmax(logits[0, 4], dim=-1)[ids[0, 5]]  # the first scored token of row 0
    torch.testing.assert_close(token_logprobs(logits, labels)[0, 4], by_hand)
    assert token_logprobs(logits, labels)[0, :4].eq(0).all()


def test_prompt_and_padding_get_no_gradient_and_the_end_token_is_trained():
    text = "### Question:\nAnswer. abcdefghijklmnopqrstuvwxyz?"
    tokenizer = CharTokenizer.train(text)
    pairs = (("why?", "because."), ("how so?", "so."))
    examples = [Example((Message("user", q), Message("assistant", a))) for q, a in pairs]
    data = build_sft_data(examples, get_template("qa"), tokenizer, max_length=100)
    batch = collate(data.examples)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size))
    logits = model(batch["input_ids"]).logits
    logits.retain_grad()
    sft_loss(logits, batch["labels"]).backward()
    # the logits at t predict token t + 1: they get a gradient exactly when that token is labelled
    predicts_label = torch.zeros_like(batch["labels"], dtype=torch.bool)
    predicts_label[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
    grad_norm = logits.grad.abs().sum(dim=-1)
    assert grad_norm[~predicts_label].eq(0).all()  # prompt and padding: exactly no gradient
    assert grad_norm[predicts_label].gt(0).all()
    end = tokenizer.encode("\n\n\n")
    for row, example in enumerate(data.examples):
        assert example.labels[-3:] == end  # the end of text is labelled...
        assert grad_norm[row, len(example) - 2] > 0  # ...and the position before its last token learns it


# ----- DPO and IPO against trl ----------------------------------------------------------------


def _trl_dpo(loss_type, beta, chosen, rejected, ref_chosen, ref_rejected, chosen_len, rejected_len):
    """trl's own DPO loss computation (``DPOTrainer._compute_loss``, trl 1.x) on given log-probs.

    That method computes the policy's log-probs with a model forward and then the loss inline; a
    stand-in model returns per-token log-probs that sum to the given sequence log-probs (zeros off the
    completion, as trl's fused head gives), and a minimal trainer stand-in carries the settings it reads.
    Returns the loss and trl's logged metrics (batch means of the rewards, margins and accuracy).
    """
    from trl import DPOTrainer

    batch, width = len(chosen), int(max(chosen_len.max(), rejected_len.max())) + 2
    lengths = torch.cat([chosen_len, rejected_len])
    completion_mask = (torch.arange(width) >= width - lengths[:, None]).long()
    per_token = torch.zeros(2 * batch, width - 1)
    per_token[:, -1] = torch.cat([chosen, rejected])  # one completion position carries each sequence's sum
    zeros = torch.zeros(2 * batch, width - 1)

    def model(**kwargs):
        return types.SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    model.training = False
    accelerator = types.SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)
    trainer = types.SimpleNamespace(
        model=model, accelerator=accelerator, aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
        f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0], beta=beta, use_weighting=False,
        label_smoothing=0.0, _total_train_tokens=0, _tp_size=1,
        _metrics=collections.defaultdict(lambda: collections.defaultdict(list)),
    )  # fmt: skip
    inputs = {
        "input_ids": torch.zeros(2 * batch, width, dtype=torch.long),
        "attention_mask": torch.ones(2 * batch, width, dtype=torch.long),
        "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected,
    }  # fmt: skip
    loss = DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    return loss, {name: values[-1] for name, values in trainer._metrics["eval"].items()}


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_and_rewards_equal_trl(loss_type, beta):
    pytest.importorskip("trl")
    torch.manual_seed(1)
    batch = 8
    logps = [-torch.rand(batch) * 40 for _ in range(4)]  # policy chosen/rejected, reference chosen/rejected
    chosen_len, rejected_len = torch.randint(1, 30, (batch,)), torch.randint(1, 30, (batch,))
    ours = dpo_loss(*logps, beta=beta, loss_type=loss_type, chosen_lengths=chosen_len, rejected_lengths=rejected_len)
    trl_loss, metrics = _trl_dpo(loss_type, beta, *logps, chosen_len, rejected_len)
    torch.testing.assert_close(ours.loss, trl_loss, rtol=1e-6, atol=1e-6)
    assert ours.chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"], rel=1e-6)
    assert ours.rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"], rel=1e-6)
    assert ours.margins.mean().item() == pytest.approx(metrics["rewards/margins"], rel=1e-5)
    assert ours.accuracy.item() == pytest.approx(metrics["rewards/accuracies"])
    assert 0 < ours.accuracy < 1  # the draw has pairs either way, so the accuracy comparison means something
    for i in range(3):  # each pair's own rewards, not only the batch means
        one = [x[i:i + 1] for x in (*logps, chosen_len, rejected_len)]
        _, metrics = _trl_dpo(loss_type, beta, *one)
        assert ours.chosen_rewards[i].item() == pytest.approx(metrics["rewards/chosen"], rel=1e-6)
        assert ours.rejected_rewards[i].item() == pytest.approx(metrics["rewards/rejected"], rel=1e-6)


def test_dpo_loss_pushes_the_chosen_answer_up():
    policy_chosen = torch.tensor([-10.0], requires_grad=True)
    policy_rejected = torch.tensor([-10.0], requires_grad=True)
    out = dpo_loss(policy_chosen, policy_rejected, torch.tensor([-10.0]), torch.tensor([-10.0]))
    assert out.loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())  # -log sigmoid(0)
    out.loss.backward()
    assert policy_chosen.grad < 0 < policy_rejected.grad  # descending raises chosen, lowers rejected
    assert not out.chosen_rewards.requires_grad


def test_dpo_loss_bad_settings_are_one_line():
    logps = [torch.zeros(2)] * 4
    with pytest.raises(InputError, match="--beta must be positive"):
        dpo_loss(*logps, beta=0)
    with pytest.raises(InputError, match="unknown DPO loss 'hinge'; --loss is one of sigmoid, ipo"):
        dpo_loss(*logps, loss_type="hinge")
    with pytest.raises(InputError, match="give chosen_lengths and rejected_lengths"):
        dpo_loss(*logps, loss_type="ipo")
    with pytest.raises(InputError, match="do not match"):
        sft_loss(torch.zeros(2, 5, 10), torch.zeros(2, 4, dtype=torch.long))


def test_the_loss_on_answer_positions_only_equals_the_full_loss_and_its_gradients():
    """SFT computes logits only where a label is scored (the output layer skips the prompt): same loss, same grads."""
    from fromzero.finetune.losses import sft_model_loss
    from fromzero.finetune.lora import LoRAConfig, add_adapter, lora_layers

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    add_adapter(model, "a", LoRAConfig(r=4, dropout=0.0, target_modules=("c_attn", "c_fc")))
    for layer in lora_layers(model).values():  # B starts at zero: make it matter
        torch.nn.init.normal_(layer.lora_B["a"].weight, std=0.1)
    ids = torch.randint(0, 50, (3, 20))
    labels = ids.clone()
    labels[0, :12] = IGNORE_INDEX  # a prompt
    labels[1, :5] = IGNORE_INDEX
    labels[2, 15:] = IGNORE_INDEX  # padding at the end
    full = sft_loss(model(ids).logits, labels)
    full.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    scored = sft_model_loss(model, ids, labels)
    scored.backward()
    torch.testing.assert_close(scored, full)
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, expected[name], msg=name)
    with pytest.raises(InputError, match="bool with the shape"):
        model(ids, logits_to_keep=torch.ones(3, 5, dtype=torch.bool))
