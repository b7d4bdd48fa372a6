"""The web chat page (``/`` of ``fromzero serve``) in a real headless Chromium, driven by Playwright.

The real server runs in a thread on 127.0.0.1 with a tiny random GPT (character tokenizer) and a
LoRA adapter tuned here for a few steps, so the page talks to the same routes any client uses. The
model is slowed to a few milliseconds per forward pass, so that an answer takes long enough for the
test to watch it grow. Skipped, with the reason, where Playwright or the Chromium binary is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install playwright)")
pytest.importorskip("uvicorn", reason="the browser tests need the serve extra (pip install 'fromzero[serve]')")
CHROMIUM = next((path for path in (os.environ.get("FROMZERO_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"))
                 if path and Path(path).is_file()), None)
if CHROMIUM is None:
    pytest.skip("no Chromium binary (/usr/bin/chromium, or chromium on PATH; apt install chromium)",
                allow_module_level=True)


from fromzero.models import GPT  # noqa: E402

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
API_KEY = "test-key"
FACTS = [("What colour is the sky?", "The sky is blue."), ("What do cats say?", "Cats say meow."),
         ("What do dogs say?", "Dogs say woof."), ("Where do fish live?", "Fish live in water.")]
STEP_DELAY_S = 0.004  # per forward pass: a 40-token answer takes > 0.16 s, long enough to watch it stream


@pytest.fixture(scope="module")
def models(make_qa_models) -> tuple[Path, Path]:
    """``(base folder, adapter folder)``: a random tiny GPT and a LoRA adapter tuned on it with the qa template."""
    return make_qa_models("web", FACTS)


@pytest.fixture(scope="module")
def server(models):
    """The base URL of the real server (base model + adapter ``tuned``, API key ``test-key``)."""
    import uvicorn

    from fromzero.serve.app import create_app

    forward = GPT.forward

    def slow_forward(self, *args, **kwargs):
        time.sleep(STEP_DELAY_S)
        return forward(self, *args, **kwargs)

    base, adapter = models
    app = create_app(str(base), adapters=[("tuned", str(adapter))], api_key=API_KEY)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GPT, "forward", slow_forward)
        thread.start()
        deadline = time.monotonic() + 20
        while not uvicorn_server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        uvicorn_server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, server):
    """``open_page(key=API_KEY, width=1200)``: the chat page, loaded; page errors fail the test."""
    contexts, errors = [], []

    def open_(key: str | None = API_KEY, width: int = 1200):
        context = browser.new_context(viewport={"width": width, "height": 800})
        contexts.append(context)
        if key:  # as if typed in an earlier visit of this tab
            context.add_init_script(f"sessionStorage.setItem('fromzero.apiKey', {json.dumps(key)})")
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server + "/")
        if key:
            page.wait_for_selector("#model option[value='tuned']", state="attached")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, errors


def requests_to(page, path: str) -> list[dict]:
    """The JSON bodies of the POSTs the page sends to ``path``, collected as they are sent."""
    bodies: list[dict] = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if r.method == "POST" and r.url.endswith(path) else None)
    return bodies


def watch_text_growth(page) -> None:
    """Record (time, length) of the first answer's text each time it changes, from inside the page."""
    page.evaluate("""() => {
        window.growth = [];
        new MutationObserver(() => {
            const text = document.querySelector('.reply .text');
            const card = document.querySelector('.reply');
            if (text && card.dataset.state === 'streaming') window.growth.push([performance.now(), text.textContent.length]);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    }""")


def ask(page, text: str, replies: int = 1) -> list:
    """Send ``text`` and wait until ``replies`` more answers have finished; return all answer cards."""
    before = page.locator(".reply").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function(
        f"document.querySelectorAll('.reply').length >= {before + replies} && "
        "[...document.querySelectorAll('.reply')].every(r => r.dataset.state !== 'streaming')", timeout=15_000)
    return page.locator(".reply").all()


def test_an_answer_streams_in_and_the_settings_go_with_it(open_page, tmp_path):
    page = open_page()
    sent = requests_to(page, "/v1/chat/completions")
    page.select_option("#model", "base")
    page.fill("#max-tokens", "40")
    page.fill("#seed", "3")
    watch_text_growth(page)
    [card] = ask(page, "The sky is")
    answer = card.locator(".text").text_content()
    growth = page.evaluate("window.growth")
    lengths = [length for _, length in growth if length > 0]
    assert answer and card.get_attribute("data-state") == "done"
    # streamed: the text grew in several steps while the request was still under way
    assert len(set(lengths)) >= 3 and lengths[0] < len(answer), growth
    assert growth[-1][0] - next(t for t, length in growth if length > 0) > 50, growth  # milliseconds
    assert sent[0]["stream"] is True and sent[0]["model"] == "base" and sent[0]["max_tokens"] == 40
    assert sent[0]["seed"] == 3 and sent[0]["messages"] == [{"role": "user", "content": "The sky is"}]

    # a changed setting goes with the next request, and the conversation is sent as history
    page.fill("#max-tokens", "5")
    page.locator("#temperature").fill("0.3")
    page.fill("#system", "Be brief.")
    cards = ask(page, "Fish live")
    short = cards[-1].locator(".text").text_content()
    assert sent[1]["max_tokens"] == 5 and sent[1]["temperature"] == 0.3
    assert 0 < len(short) <= 5  # one character per token
    assert sent[1]["messages"] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "The sky is"},
                                   {"role": "assistant", "content": answer},
                                   {"role": "user", "content": "Fish live"}]
    assert "0.30 (focused)" in page.text_content("#temperature-value")

    page.click("#clear")
    assert page.locator(".reply").count() == 0
    cards = ask(page, "Cats")
    assert [m["role"] for m in sent[2]["messages"]] == ["system", "user"]
    screenshot(page, tmp_path)


def test_compare_streams_the_base_and_the_adapter_side_by_side(open_page, tmp_path):
    page = open_page()
    sent = requests_to(page, "/v1/chat/completions")
    page.select_option("#model", "tuned")
    page.check("#compare")
    page.fill("#max-tokens", "20")
    left, right = ask(page, "What do cats say?", replies=2)
    assert {left.get_attribute("data-model"), right.get_attribute("data-model")} == {"base", "tuned"}
    assert sorted(body["model"] for body in sent) == ["base", "tuned"]
    for card in (left, right):
        assert card.get_attribute("data-state") == "done" and card.locator(".text").text_content()
    first, second = left.bounding_box(), right.bounding_box()
    assert first["y"] == second["y"] and first["x"] < second["x"]  # side by side on a wide screen
    screenshot(page, tmp_path, "web_chat_compare.png")


def test_on_a_narrow_screen_settings_fold_away_and_compare_stacks(open_page):
    page = open_page(width=390)
    assert not page.is_visible("#temperature")
    page.click("#settings-toggle")
    assert page.is_visible("#temperature")
    page.check("#compare")
    page.fill("#max-tokens", "8")
    page.click("#settings-toggle")
    left, right = ask(page, "Dogs", replies=2)
    assert left.bounding_box()["y"] < right.bounding_box()["y"]  # one above the other
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen


def test_model_output_is_shown_as_text_never_run_as_html(open_page):
    page = open_page()
    hostile = ['<img src=x onerror="window.pwned=1">', "<script>window.pwned=2</script>", "<b>bold</b>"]
    chunks = "".join("data: " + json.dumps({"object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}) + "\n\n" for piece in hostile)
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, content_type="text/event-stream", body=chunks + "data: [DONE]\n\n"))
    [card] = ask(page, "<i>question</i>")
    assert card.locator(".text").text_content() == "".join(hostile)
    assert page.locator(".user").last.text_content() == "<i>question</i>"
    assert page.locator("#messages img, #messages script, #messages b, #messages i").count() == 0
    assert page.evaluate("window.pwned") is None


def test_the_api_key_is_asked_for_kept_for_the_tab_and_errors_show_in_the_page(open_page):
    page = open_page(key=None)
    page.wait_for_selector("#error:not([hidden])")
    assert "API key" in page.text_content("#error")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector("#model option[value='tuned']", state="attached")
    assert page.is_hidden("#error")
    assert page.evaluate("sessionStorage.getItem('fromzero.apiKey')") == API_KEY
    page.reload()
    page.wait_for_selector("#model option[value='tuned']", state="attached")
    assert page.input_value("#api-key") == API_KEY

    # a question longer than the model's context: the server's one-line error, shown in the page
    page.fill("#max-tokens", "10")
    [card] = ask(page, "The sky is blue. " * 12)
    assert card.get_attribute("data-state") == "error"
    assert page.is_visible("#error") and "token" in page.text_content("#error")
    sent = requests_to(page, "/v1/chat/completions")
    ask(page, "The sky")
    assert len(sent[0]["messages"]) == 1  # the failed turn is not sent as history


def screenshot(page, tmp_path: Path, name: str = "web_chat.png") -> None:
    """Write a screenshot to ``tmp_path``; also to ``$FROMZERO_SCREENSHOT`` (a folder) when it is set."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    if os.environ.get("FROMZERO_SCREENSHOT"):
        folder = Path(os.environ["FROMZERO_SCREENSHOT"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / name)
