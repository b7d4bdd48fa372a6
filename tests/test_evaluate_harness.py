"""fromzero.evaluate.harness: lm_eval's ``fromzero`` model against lm_eval's own Hugging Face backend.

One tiny random GPT-2 with GPT-2's real vocabulary is saved by transformers; both backends load that
folder and answer the same requests, so every log-likelihood, every generated answer and every
metric must agree. The bundled ``fromzero_*`` tasks supply the requests (all three kinds).
"""

from __future__ import annotations

import math

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="the harness backend needs lm_eval (pip install lm_eval)")

import torch  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from fromzero.errors import InputError  # noqa: E402
from fromzero.evaluate.harness import TASKS_DIR, FromzeroLM, task_manager  # noqa: E402
from fromzero.evaluate.tasks import corpora  # noqa: E402
from fromzero.finetune.lora import LoRAConfig, add_adapter, lora_layers  # noqa: E402
from fromzero.finetune.peft_format import save_adapter  # noqa: E402
from fromzero.finetune.tuned import load_tuned  # noqa: E402
from fromzero.models import GPT, GPTConfig  # noqa: E402
from fromzero.tokenizers import CharTokenizer  # noqa: E402

TASKS = ["fromzero_education_qa", "fromzero_preferences_mc", "fromzero_stories_ppl"]
LONG_TEXT = ("Meera lay on the terrace and looked up at the sky. Why is it blue and not white? Her uncle held "
             "up a glass prism and said that sunlight is a mixture of every colour of the rainbow. ") * 4


@pytest.fixture(scope="module")
def offline():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory, gpt2_files, transformers, offline):
    """A random 2-layer GPT-2 (context 128) and GPT-2's tokenizer, saved by transformers."""
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = transformers.GPT2TokenizerFast(vocab=str(gpt2_files["encoder.json"]),
                                               merges=str(gpt2_files["vocab.bpe"]))
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=128, vocab_size=len(tokenizer))
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def evaluate(model, model_args=None, tasks=TASKS, limit=3):
    return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=tasks, limit=limit,
                                   task_manager=task_manager(include_defaults=False), log_samples=True,
                                   bootstrap_iters=0, gen_kwargs={"max_gen_toks": 12}, batch_size=2)


@pytest.fixture(scope="module")
def runs(tiny_gpt2):
    """The same tasks through both backends: {"hf": results, "fromzero": results}."""
    return {"hf": evaluate("hf", f"pretrained={tiny_gpt2},device=cpu,dtype=float32"),
            "fromzero": evaluate("fromzero", f"pretrained={tiny_gpt2},device=cpu")}


def responses(results: dict, task: str) -> list:
    """Each request's answer in document order: (log-likelihood, is greedy), a float, or a text."""
    return [response[0] for sample in results["samples"][task] for response in sample["resps"]]


def max_abs_diff(ours: list, theirs: list) -> float:
    """Largest log-likelihood difference; greedy flags and texts must be equal."""
    assert len(ours) == len(theirs) > 0
    worst = 0.0
    for a, b in zip(ours, theirs):
        if isinstance(a, str):
            assert a == b
        elif isinstance(a, tuple):
            assert a[1] == b[1]
            worst = max(worst, abs(a[0] - b[0]))
        else:
            worst = max(worst, abs(a - b))
    return worst


def test_every_request_and_metric_equals_the_hf_backend(runs):
    for task in TASKS:
        diff = max_abs_diff(responses(runs["fromzero"], task), responses(runs["hf"], task))
        assert diff <= 1e-4, (task, diff)
        ours, theirs = runs["fromzero"]["results"][task], runs["hf"]["results"][task]
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            if isinstance(value, float):
                assert math.isclose(value, theirs[key], rel_tol=1e-6), (task, key, value, theirs[key])
            else:
                assert value == theirs[key]
    kinds = [type(responses(runs["fromzero"], task)[0]) for task in TASKS]
    assert kinds == [str, tuple, float]  # generate_until, loglikelihood, loglikelihood_rolling
    assert runs["fromzero"]["results"]["fromzero_stories_ppl"]["word_perplexity,none"] > 1


def test_an_already_loaded_model_gives_the_same_answers(tiny_gpt2, runs):
    results = evaluate(FromzeroLM(load_tuned(str(tiny_gpt2)), batch_size=3), tasks=["fromzero_preferences_mc"])
    assert responses(results, "fromzero_preferences_mc") == responses(runs["fromzero"], "fromzero_preferences_mc")


@pytest.fixture(scope="module")
def hf_lm(tiny_gpt2):
    """lm_eval's Hugging Face backend with a short context, so a text needs several windows."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(tiny_gpt2), device="cpu", dtype="float32", max_length=32, batch_size=2)


def requests(kind: str, *arguments: tuple) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(arguments)]


def test_rolling_loglikelihood_of_texts_longer_than_the_context_equals_the_hf_backend(tiny_gpt2, hf_lm):
    ours = FromzeroLM(str(tiny_gpt2), device="cpu", max_length=32, batch_size=3)
    texts = [(LONG_TEXT,), ("A short one.",), (LONG_TEXT[:150],)]
    assert len(ours.tok_encode(LONG_TEXT)) > 4 * 32
    scores = ours.loglikelihood_rolling(requests("loglikelihood_rolling", *texts))
    expected = hf_lm.loglikelihood_rolling(requests("loglikelihood_rolling", *texts))
    assert max(abs(a - b) for a, b in zip(scores, expected)) <= 1e-4
    assert scores[0] < scores[2] < 0


def test_loglikelihood_batches_keep_the_order_and_the_values(tiny_gpt2, hf_lm):
    pairs = [("The sky is", " blue"), ("", "An empty context starts a document."),
             (LONG_TEXT, " It is too long to fit."), ("Why? ", "Because light scatters.")]
    one = FromzeroLM(str(tiny_gpt2), device="cpu", max_length=32).loglikelihood(requests("loglikelihood", *pairs))
    many = FromzeroLM(str(tiny_gpt2), device="cpu", max_length=32, batch_size=4).loglikelihood(
        requests("loglikelihood", *pairs))
    theirs = hf_lm.loglikelihood(requests("loglikelihood", *pairs))
    assert max_abs_diff(many, one) <= 1e-5
    assert max_abs_diff(many, theirs) <= 1e-4


def test_generate_until_stops_at_until_and_after_max_gen_toks(tiny_gpt2, hf_lm):
    lm = FromzeroLM(str(tiny_gpt2), device="cpu", max_length=32, batch_size=3)
    prompts = ["### Question:\nWhat is osmosis?\n\n### Answer:\n", "Once upon a time", LONG_TEXT]

    def answers(model, **settings):
        return model.generate_until(requests("generate_until", *((prompt, settings) for prompt in prompts)))

    free, short = answers(lm, until=[], max_gen_toks=10), answers(lm, until=[], max_gen_toks=3)
    assert free == answers(hf_lm, until=[], max_gen_toks=10)  # the long prompt keeps its last 22 tokens
    for whole, start in zip(free[:2], short[:2]):  # the long prompt keeps more of itself for 3 new tokens
        assert len(whole) > len(start) > 0 and whole.startswith(start)
    stop = free[0][3:6]
    cut = answers(lm, until=[stop], max_gen_toks=10)
    assert cut[0] == free[0][:free[0].index(stop)]
    assert cut == answers(hf_lm, until=[stop], max_gen_toks=10)


def test_the_adapter_argument_scores_like_the_hf_backend_with_peft(tiny_gpt2, tmp_path):
    pytest.importorskip("peft")
    from lm_eval.models.huggingface import HFLM

    model = GPT.from_pretrained(tiny_gpt2)
    torch.manual_seed(1)
    add_adapter(model, "kind", LoRAConfig(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["kind"].weight.normal_(0, 0.5)  # B starts at zero: make the adapter change something
    save_adapter(model, tmp_path / "kind", "kind", base_model=str(tiny_gpt2))
    pairs = requests("loglikelihood", ("The sky is", " blue"), ("Why? ", "Because light scatters."))
    tuned = FromzeroLM(str(tiny_gpt2), adapter=f"kind={tmp_path / 'kind'}", device="cpu")
    assert list(tuned.tuned.adapters) == ["kind"]
    scores = tuned.loglikelihood(pairs)
    assert max_abs_diff(scores, HFLM(pretrained=str(tiny_gpt2), peft=str(tmp_path / "kind"), device="cpu",
                                     dtype="float32").loglikelihood(pairs)) <= 1e-4
    assert max_abs_diff(scores, FromzeroLM(str(tiny_gpt2), device="cpu").loglikelihood(pairs)) > 1e-3


def test_the_tasks_are_found_in_the_package_and_read_its_corpora():
    manager = task_manager(include_defaults=False)
    assert set(TASKS) <= set(manager.all_tasks) and "fromzero" in manager.all_tags
    assert sorted(path.name for path in TASKS_DIR.glob("*.yaml")) == sorted(f"{task}.yaml" for task in TASKS)
    questions = corpora.education_qa()
    assert questions["test"].num_rows == 86 and questions["train"].num_rows == 508
    assert questions["test"][0]["prompt"] == "### Question:\nWhat is osmosis?\n\n### Answer:\n"
    pairs = corpora.preferences()["test"]
    assert {doc["label"] for doc in pairs} == {0, 1}  # the better answer is not always first
    assert [doc["label"] for doc in pairs] == [doc["label"] for doc in corpora.preferences()["test"]]
    assert all(doc["prompt"].startswith("### Question:\n") and len(doc["choices"]) == 2 for doc in pairs)
    stories = corpora.stories()["test"]["text"]
    assert len(stories) == 27 and all("\n\n\n" not in story for story in stories)


def test_answers_are_scored_as_fromzero_evaluate_scores_them():
    from fromzero.evaluate.answer_metrics import score_answer

    doc = {"answer": "The Sun is a star.", "keywords": ["sun", "star"]}
    assert corpora.score_answer(doc, ["the sun is a star"]) == {
        "exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0, "keyword_recall": 1.0}
    doc = {"answer": "a cat sat down", "keywords": ["cat", "sat", "down"]}
    scores = corpora.score_answer(doc, ["The cat sat."])
    assert scores["exact_match"] == 0.0 and scores["token_f1"] == pytest.approx(0.8)  # precision 1, recall 2/3
    ours = score_answer("The cat sat.", doc["answer"], doc["keywords"])
    assert scores == {"exact_match": ours["exact_match"], "token_f1": ours["f1"], "rouge_l": ours["rouge_l"],
                      "keyword_recall": ours["keyword_recall"]}
    assert all(keywords for keywords in corpora.education_qa()["test"]["keywords"])  # stored with the test split


def test_user_mistakes_are_one_line_input_errors(tiny_gpt2, tmp_path):
    char_model = tmp_path / "char"
    tokenizer = CharTokenizer.train("abcdefgh .")
    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=32)).save_pretrained(char_model)
    tokenizer.save(char_model)
    mistakes = {
        "no model directory": lambda: evaluate("fromzero", f"pretrained={tmp_path / 'missing'}"),
        "unknown model_args tokens": lambda: FromzeroLM.create_from_arg_string(f"pretrained={tiny_gpt2},tokens=3"),
        "batch_size must be a whole number": lambda: FromzeroLM(str(tiny_gpt2), batch_size="auto"),
        "longer than the model's context of 128": lambda: FromzeroLM(str(tiny_gpt2), max_length=500),
        "leaves no room for a prompt": lambda: FromzeroLM(str(tiny_gpt2), max_length=32).generate_until(
            requests("generate_until", ("Hi", {"max_gen_toks": 32}))),
        "unknown generation_kwargs beams": lambda: FromzeroLM(str(tiny_gpt2)).generate_until(
            requests("generate_until", ("Hi", {"beams": 2}))),
        "<|endoftext|>, which the model's char tokenizer lacks": lambda: FromzeroLM(str(char_model)).loglikelihood_rolling(
            requests("loglikelihood_rolling", ("abc",))),
    }
    for message, mistake in mistakes.items():
        with pytest.raises(InputError, match=message.replace("|", r"\|")) as error:
            mistake()
        assert "\n" not in str(error.value)
