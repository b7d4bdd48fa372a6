"""The chat page's feedback and answer controls in a real headless Chromium, driven by Playwright.

👍/👎, Edit, Regenerate then "This one is better", Continue, Stop, the tokens/s display, and the
export and import of a conversation. The real server runs in a thread on 127.0.0.1 with a tiny
random GPT (character tokenizer) and a LoRA adapter, slowed to a few milliseconds per forward pass
so that an answer streams long enough to watch; what the buttons store is read back from the
server's feedback file. Skipped, with the reason, where Playwright or Chromium is missing (the
helpers are those of tests/test_serve_web.py).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

web = pytest.importorskip("test_serve_web")  # skips, saying why, where there is no Chromium or Playwright
from test_serve_web import API_KEY, FACTS, ask, browser, requests_to, screenshot  # noqa: E402,F401 (browser: a fixture)

from fromzero.chat.feedback import FeedbackStore  # noqa: E402
from fromzero.models import GPT  # noqa: E402

STEP_DELAY_S = 0.01  # per forward pass: a 20-token answer takes > 0.2 s


@pytest.fixture(scope="module")
def served(make_qa_models, tmp_path_factory):
    """``(base URL, feedback store)`` of the real server (base model + adapter ``tuned``, API key ``test-key``)."""
    import uvicorn

    from fromzero.serve.app import create_app

    forward = GPT.forward

    def slow_forward(self, *args, **kwargs):
        time.sleep(STEP_DELAY_S)
        return forward(self, *args, **kwargs)

    base, adapter = make_qa_models("feedback-web", FACTS)
    folder = tmp_path_factory.mktemp("page-feedback")
    app = create_app(str(base), adapters=[("tuned", str(adapter))], api_key=API_KEY, feedback_dir=folder)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GPT, "forward", slow_forward)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", FeedbackStore(folder)
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def page(browser, served):
    """The chat page with the key set, the base model chosen (it continues text: its answers are rarely empty)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    context.add_init_script(f"sessionStorage.setItem('fromzero.apiKey', {json.dumps(API_KEY)})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(served[0] + "/")
    page.wait_for_selector("#model option[value='tuned']", state="attached")
    page.select_option("#model", "base")
    page.fill("#max-tokens", "20")
    yield page
    context.close()
    assert not errors, errors


def wait_saved(card, text: str) -> None:
    card.locator(".saved", has_text=text).wait_for(timeout=10_000)


def new_records(store: FeedbackStore, before: int) -> list:
    return store.records()[before:]


def test_thumbs_up_then_regenerate_and_choose_store_what_the_page_showed(page, served, tmp_path):
    _, store = served
    before = len(store.records())
    sent = requests_to(page, "/v1/chat/completions")
    page.fill("#seed", "3")
    [card] = ask(page, "The sky is")
    first = card.locator(".text").text_content()
    assert first and re.fullmatch(r"\d+ tokens · [\d.]+ tokens/s", card.locator(".speed").text_content())
    assert page.locator(".choose:visible").count() == 0  # one answer: nothing to choose between

    card.locator(".rate-up").click()
    wait_saved(card, "saved: a good answer")
    [rating] = new_records(store, before)
    assert (rating.kind, rating.rating, rating.answer, rating.adapter) == ("rating", "up", first, None)
    assert rating.messages == [{"role": "user", "content": "The sky is"}]
    assert rating.settings["seed"] == 3 and rating.settings["max_tokens"] == 20 and rating.prompt == "The sky is"
    assert card.locator(".rate-up").get_attribute("aria-pressed") == "true"

    card.locator(".regenerate").click()
    page.wait_for_function("document.querySelectorAll('.reply').length === 2 && "
                           "[...document.querySelectorAll('.reply')].every(r => r.dataset.state === 'done')")
    left, right = page.locator(".reply").all()
    second = right.locator(".text").text_content()
    assert sent[1]["messages"] == sent[0]["messages"] and sent[1]["seed"] == 4  # the same question, the next seed
    assert page.locator(".regenerate:visible").count() == 0 and page.locator(".choose:visible").count() == 2
    assert left.bounding_box()["y"] == right.bounding_box()["y"]  # side by side
    right.locator(".choose").click()
    wait_saved(right, "saved: the better answer")
    [choice] = new_records(store, before + 1)
    assert (choice.kind, choice.answer, choice.other, choice.chosen) == ("choice", first, second, 2)
    assert right.get_attribute("data-chosen") == "yes" and page.locator(".choose:visible").count() == 0

    ask(page, "Fish", replies=1)
    assert sent[2]["messages"][1] == {"role": "assistant", "content": second}  # the chosen answer goes on
    screenshot(page, tmp_path, "web_chat_feedback.png")


def test_edit_saves_a_better_answer_and_continue_goes_on_with_it(page, served):
    _, store = served
    before = len(store.records())
    sent = requests_to(page, "/v1/chat/completions")
    [card] = ask(page, "Cats")
    original = card.locator(".text").text_content()
    card.locator(".rate-down").click()
    wait_saved(card, "saved: a bad answer")
    card.locator(".edit").click()
    card.locator(".editor textarea").fill("Cats say meow.")
    card.locator(".save-edit").click()
    wait_saved(card, "saved: your better answer")
    down, edit = new_records(store, before)
    assert (down.rating, edit.kind, edit.answer, edit.better) == ("down", "edit", original, "Cats say meow.")
    assert card.locator(".text").text_content() == "Cats say meow." and card.locator(".editor").is_hidden()

    card.locator(".continue").click()
    page.wait_for_function("document.querySelector('.reply').dataset.state === 'done'")
    assert sent[1]["continue_final_message"] is True
    assert sent[1]["messages"] == [{"role": "user", "content": "Cats"}, {"role": "assistant", "content": "Cats say meow."}]
    assert card.locator(".text").text_content().startswith("Cats say meow.")


def test_while_an_answer_streams_the_page_shows_reading_then_tokens_per_second_and_stop_aborts_it(page):
    page.evaluate("""() => {
        window.seen = {status: [], speed: []};
        new MutationObserver(() => {
            for (const [name, list] of Object.entries(window.seen)) {
                const node = document.querySelector('.reply .' + name);
                if (node && node.textContent && list[list.length - 1] !== node.textContent) list.push(node.textContent);
            }
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    }""")
    page.fill("#max-tokens", "80")
    page.fill("#prompt", "The")
    page.press("#prompt", "Enter")
    page.wait_for_function("window.seen.speed.some(s => / tokens\\/s$/.test(s))", timeout=10_000)
    assert page.is_visible("#stop") and page.is_disabled("#send")
    page.click("#stop")
    page.wait_for_function("document.querySelector('.reply').dataset.state !== 'streaming'")
    card = page.locator(".reply").first
    assert card.get_attribute("data-state") == "stopped" and card.locator(".status").text_content() == "stopped"
    assert page.is_hidden("#stop") and not page.is_disabled("#send")
    seen = page.evaluate("window.seen")
    assert seen["status"][:2] == ["reading the prompt…", "writing…"], seen
    assert any(re.fullmatch(r"[\d.]+ tokens/s", speed) for speed in seen["speed"]), seen
    assert card.locator(".rate-up").is_enabled()  # a stopped answer can be rated too


def test_a_conversation_is_exported_and_imported_as_text(page, tmp_path):
    [card] = ask(page, "The sky is")
    answer = card.locator(".text").text_content()
    with page.expect_download() as download:
        page.click("#export")
    path = tmp_path / "chat.json"
    download.value.save_as(path)
    exported = json.loads(path.read_text(encoding="utf-8"))
    assert exported["format"] == "fromzero-chat" and exported["turns"][0]["user"] == "The sky is"
    assert exported["turns"][0]["replies"][0]["text"] == answer

    hostile = '<img src=x onerror="window.pwned=1">'
    exported["turns"].append({"user": hostile, "replies": [{"model": "base", "text": hostile + "<b>x</b>"}]})
    path.write_text(json.dumps(exported), encoding="utf-8")
    page.click("#clear")
    page.set_input_files("#import-file", str(path))
    page.wait_for_function("document.querySelectorAll('.reply').length === 2")
    assert [t.text_content() for t in page.locator(".reply .text").all()] == [answer, hostile + "<b>x</b>"]
    assert page.locator("#messages img, #messages b").count() == 0 and page.evaluate("window.pwned") is None
    sent = requests_to(page, "/v1/chat/completions")
    ask(page, "Cats")
    assert [m["content"] for m in sent[0]["messages"]] == ["The sky is", answer, hostile, hostile + "<b>x</b>", "Cats"]

    Path(tmp_path / "bad.json").write_text('{"turns": 3}', encoding="utf-8")
    page.set_input_files("#import-file", str(tmp_path / "bad.json"))
    page.wait_for_selector("#error:not([hidden])")
    assert "cannot import bad.json" in page.text_content("#error")
