"""fromzero.finetune.tuned and fromzero.chat.conversation: a fine-tuned result loaded to be asked.

A tiny random GPT with a BPE tokenizer trained here is the base; a LoRA adapter with random B
weights stands in for an SFT result (what matters is that the loaded model computes what base +
adapter compute, with the template of its record).
"""

from __future__ import annotations

import pytest
import torch

from fromzero.chat.conversation import conversation_prompt
from fromzero.errors import InputError
from fromzero.files import write_json
from fromzero.finetune.batches import encode_prompt
from fromzero.finetune.instructions import Example, Message
from fromzero.finetune.lora import LoRAConfig, add_adapter, disabled_adapters, lora_layers
from fromzero.finetune.peft_format import load_adapter, save_adapter
from fromzero.finetune.run import FINETUNE_JSON
from fromzero.finetune.templates import TEMPLATES
from fromzero.finetune.tuned import TunedModel, eos_ids, load_tuned, parse_adapter_specs, stop_strings
from fromzero.finetune.vocab import add_special_tokens, resize_token_embeddings
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import BPETokenizer, CharTokenizer

TEXT = "What is the sun? The sun is a star. Why is the sky blue? Light scatters in the air. " * 30
IDS = torch.tensor([[5, 9, 40, 2, 77, 3]])


def make_adapter(model: GPT, folder, name: str, seed: int, base: str, template: str = "qa") -> None:
    torch.manual_seed(seed)
    add_adapter(model, name, LoRAConfig(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B[name].weight.normal_(0, 0.5)
    save_adapter(model, folder, name, base_model=base)
    write_json(folder / FINETUNE_JSON, {"method": "sft", "base_model": base, "adapter": "lora", "template": template})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    tokenizer = BPETokenizer.train(TEXT, 300)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=64))
    model.save_pretrained(root / "base")
    tokenizer.save(root / "base")
    make_adapter(model, root / "kind", "kind", 1, str(root / "base"))
    make_adapter(model, root / "brief", "brief", 2, str(root / "base"), template="alpaca")
    return root


def logits(model: GPT) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IDS).logits


def test_an_adapter_folder_brings_its_base_and_its_template(folders):
    tuned = load_tuned(str(folders / "kind"))
    expected = GPT.from_pretrained(folders / "base")
    load_adapter(expected, folders / "kind")
    assert torch.equal(logits(tuned.model), logits(expected))
    assert tuned.template is TEMPLATES["qa"] and list(tuned.adapters) == ["kind"]
    assert tuned.base == str(folders / "base")
    with disabled_adapters(tuned.model):
        assert torch.equal(logits(tuned.model), logits(GPT.from_pretrained(folders / "base")))


def test_more_adapters_share_one_base_and_the_first_is_active(folders):
    tuned = load_tuned(str(folders / "base"), parse_adapter_specs([f"kind={folders / 'kind'}", str(folders / "brief")]))
    assert list(tuned.adapters) == ["kind", "brief"]
    assert tuned.template is TEMPLATES["qa"]  # the first adapter's record
    expected = GPT.from_pretrained(folders / "base")
    load_adapter(expected, folders / "kind")
    assert torch.equal(logits(tuned.model), logits(expected))


def test_a_plain_model_has_no_template_unless_asked(folders):
    assert load_tuned(str(folders / "base")).template is None
    assert load_tuned(str(folders / "base"), template="alpaca").template is TEMPLATES["alpaca"]
    assert load_tuned(str(folders / "kind"), template="none").template is None


def test_loading_errors_are_one_clear_line(folders, tmp_path):
    orphan = tmp_path / "orphan"
    model = GPT.from_pretrained(folders / "base")
    add_adapter(model, "x", LoRAConfig(r=2))
    save_adapter(model, orphan)
    with pytest.raises(InputError, match="without finetune.json naming its base model"):
        load_tuned(str(orphan))
    with pytest.raises(InputError, match="needs the special tokens"):
        load_tuned(str(folders / "base"), template="chat")
    with pytest.raises(InputError, match="two adapters are named 'a'"):
        parse_adapter_specs(["a=x", "a=y"])


def test_stop_strings_and_end_ids_follow_the_template_and_tokenizer(folders):
    bpe = BPETokenizer.train(TEXT, 300)
    chars = CharTokenizer.train("abc\n")
    assert stop_strings(TEMPLATES["qa"], bpe) == ["\n### Question:"]
    assert stop_strings(TEMPLATES["alpaca"], bpe) == ["\n### Instruction:"]
    assert stop_strings(TEMPLATES["qa"], chars)[0] == "\n\n\n"  # the document separator it was tuned to end with
    chat = add_special_tokens(bpe, TEMPLATES["chat"].special_tokens)
    assert eos_ids(TEMPLATES["chat"], chat) == [chat.eot_id, chat.special_tokens["<|end|>"]]
    assert eos_ids(TEMPLATES["qa"], chat) == [chat.eot_id]


def chat_model(block_size: int) -> TunedModel:
    tokenizer = add_special_tokens(BPETokenizer.train(TEXT, 300), TEMPLATES["chat"].special_tokens)
    model = GPT(GPTConfig.preset("tiny", vocab_size=300, block_size=block_size))
    resize_token_embeddings(model, tokenizer.vocab_size)
    return TunedModel(model, tokenizer, TEMPLATES["chat"], "base")


CONVERSATION = [Message("user", "What is the sun?"), Message("assistant", "The sun is a star."),
                Message("user", "Why is the sky blue?")]


def test_the_chat_template_sees_the_whole_conversation_as_it_was_taught():
    tuned = chat_model(256)
    prompt = conversation_prompt(tuned, CONVERSATION, 20, system="Be brief.")
    expected = encode_prompt(tuned.tokenizer, tuned.template, Example((Message("system", "Be brief."), *CONVERSATION)))
    assert prompt.ids == expected and prompt.dropped_turns == 0


def test_a_long_conversation_drops_its_oldest_turns_and_says_how_many():
    tuned = chat_model(56)
    prompt = conversation_prompt(tuned, CONVERSATION, 10)
    assert prompt.dropped_turns == 1
    assert prompt.ids == encode_prompt(tuned.tokenizer, tuned.template, Example((Message("system", "You are a helpful assistant."), CONVERSATION[-1])))
    assert len(prompt.ids) <= 56 - 10
    with pytest.raises(InputError, match="more than the"):
        conversation_prompt(tuned, [Message("user", "Why is the sky blue? " * 10)], 10)


def test_one_question_templates_and_plain_models_see_the_last_question(folders):
    tuned = load_tuned(str(folders / "kind"))
    ids = conversation_prompt(tuned, CONVERSATION, 10).ids
    assert tuned.tokenizer.decode(ids) == "### Question:\nWhy is the sky blue?\n\n### Answer:\n"
    plain = load_tuned(str(folders / "base"))
    assert plain.tokenizer.decode(conversation_prompt(plain, CONVERSATION, 10).ids) == "Why is the sky blue?"
    with pytest.raises(InputError, match="must end with a user message"):
        conversation_prompt(tuned, CONVERSATION[:2], 10)
    with pytest.raises(InputError, match="role must be one of"):
        conversation_prompt(tuned, [Message("robot", "hi"), CONVERSATION[-1]], 10)
