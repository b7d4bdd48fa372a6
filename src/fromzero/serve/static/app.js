// fromzero chat: the page the server shows at "/".
//
// It talks to the same OpenAI-compatible API any client uses (GET /v1/models, POST
// /v1/chat/completions with stream: true), so everything it does can be done with curl too.
// No framework and no build step: the file the server sends is the file you read.
//
// Two rules the code keeps everywhere:
// * model output is inserted as text (textContent, Text nodes), never as HTML, so an answer that
//   contains "<script>" shows those characters instead of running them;
// * the conversation lives in this page only; each request sends the history it needs.
// A server started with --rag sends the chunks each question was asked with ("sources", in the
// first chunk of the stream); they are listed under the answer.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "fromzero.apiKey";

const state = {
  models: [],        // the entries of GET /v1/models
  turns: [],         // {user: string, replies: [{model, text, ok}]}, oldest first
  controller: null,  // aborts the answers being streamed (Stop, Clear)
};

// ---- talking to the server -------------------------------------------------------------------

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

// The message of an error response: OpenAI's {"error": {"message": ...}}, or the HTTP status.
async function errorMessage(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
    else if (body && typeof body.detail === "string") message = body.detail;
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) message += " (enter the server's API key in Settings)";
  return message;
}

async function loadModels() {
  let response;
  try {
    response = await fetch("/v1/models", { headers: headers() });
  } catch (error) {
    return showError(`cannot reach the server: ${error.message}`);
  }
  if (!response.ok) return showError(await errorMessage(response));
  state.models = (await response.json()).data || [];
  const select = $("model");
  const previous = select.value;
  select.replaceChildren(...state.models.map((entry) => {
    const info = entry.fromzero || {};
    const option = document.createElement("option");
    option.value = entry.id;
    option.textContent = [entry.id, info.kind, info.template].filter(Boolean).join(" · ");
    return option;
  }));
  if (state.models.some((entry) => entry.id === previous)) select.value = previous;
  hideError();
  describeModel();
}

// Reads one streamed answer (server-sent events), handing each piece of text to onText and the
// retrieved chunks the question was asked with (a server started with --rag sends them in the
// first chunk) to onSources. Returns the finish reason ("stop", "length", ...) or throws with the
// server's message.
async function streamAnswer(model, messages, { onText, onSources }, signal) {
  const body = { model, messages, stream: true, ...sampling() };
  const response = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers(), body: JSON.stringify(body), signal,
  });
  if (!response.ok) throw new Error(await errorMessage(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let finish = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const lines = buffer.split(/\r?\n/);
    buffer = lines.pop();  // an incomplete line waits for the next read
    for (const line of lines) {
      if (!line.startsWith("data:")) continue;  // blank separators, comments, event names
      const data = line.slice(5).trim();
      if (data === "[DONE]") return finish;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the server stopped the answer");
      if (Array.isArray(chunk.sources)) onSources(chunk.sources);
      const choice = (chunk.choices || [])[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) onText(choice.delta.content);
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return finish;
}

// ---- settings --------------------------------------------------------------------------------

// The sampling fields of a request, from the settings panel. Empty fields are left out, so the
// server's defaults apply; top_k is fromzero's extra field (OpenAI's API has no top-k).
function sampling() {
  const fields = {
    temperature: Number($("temperature").value),
    max_tokens: Number($("max-tokens").value),
  };
  const topK = $("top-k").value.trim();
  if (topK) fields.top_k = Number(topK);
  const topP = $("top-p").value.trim();
  if (topP && Number(topP) < 1) fields.top_p = Number(topP);
  const seed = $("seed").value.trim();
  if (seed) fields.seed = Number(seed);
  return fields;
}

function temperatureWord(value) {
  if (value === 0) return "greedy";
  if (value < 0.4) return "focused";
  if (value < 0.8) return "balanced";
  if (value < 1.2) return "natural";
  return "creative";
}

function showTemperature() {
  const value = Number($("temperature").value);
  $("temperature-value").textContent = `${value.toFixed(2)} (${temperatureWord(value)})`;
}

function modelInfo(id) {
  return state.models.find((entry) => entry.id === id) || { id };
}

// The models one message goes to: the selected one, or in compare view the base and an adapter.
function lanes() {
  const selected = $("model").value;
  if (!$("compare").checked) return [selected];
  const kind = (entry) => (entry.fromzero || {}).kind;
  const base = state.models.find((entry) => kind(entry) === "base");
  const adapter = kind(modelInfo(selected)) === "adapter"
    ? modelInfo(selected) : state.models.find((entry) => kind(entry) === "adapter");
  if (!base || !adapter) {
    throw new Error("compare needs the base model and an adapter: start the server with --adapter NAME=DIR");
  }
  return [base.id, adapter.id];
}

function describeModel() {
  const info = modelInfo($("model").value).fromzero || {};
  const template = info.template;
  $("model-note").textContent = !template || template === "none"
    ? "continues your text"
    : template === "chat" ? "chat template: remembers the conversation" : `${template} template: answers one question at a time`;
}

// ---- the conversation ------------------------------------------------------------------------

// The messages that ask `model` the last question: the system prompt, then every earlier turn
// with the answer this model gave (or the one shown, if it was not asked), then the question.
function conversation(model, question) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const turn of state.turns) {
    const answered = turn.replies.filter((reply) => reply.ok);
    const reply = answered.find((r) => r.model === model) || answered[0];
    if (!reply) continue;  // a failed turn is left out: the model never answered it
    messages.push({ role: "user", content: turn.user }, { role: "assistant", content: reply.text });
  }
  messages.push({ role: "user", content: question });
  return messages;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function replyCard(model) {
  const card = element("article", "reply");
  card.dataset.model = model;
  card.dataset.state = "streaming";
  const head = element("header", "reply-head");
  head.append(element("span", "who", model));
  const copy = element("button", "copy", "Copy");
  copy.type = "button";
  head.append(copy);
  const text = element("div", "text");
  const sources = element("section", "sources");
  sources.hidden = true;
  const meta = element("footer", "meta", "writing…");
  card.append(head, text, sources, meta);
  return { card, text, sources, meta, copy };
}

// The retrieved chunks an answer was given, under it: where each came from (file, document,
// character offsets), how close it was to the question, and its text. All of it is set as text:
// a document may hold "<script>" as well as an answer may.
function showSources(box, sources) {
  box.replaceChildren(element("h2", "", sources.length ? "Sources" : "Sources: none (no retrieved text fits "
    + "in the model's context beside the question)"));
  const list = element("ol");
  for (const source of sources) {
    const item = element("li");
    item.append(
      element("div", "where", `${source.source}, document ${source.document}, characters ${source.start}-${source.end}`
        + ` (similarity ${Number(source.score).toFixed(2)})`),
      element("div", "chunk", source.text),
    );
    list.append(item);
  }
  if (sources.length) box.append(list);
  box.hidden = false;
}

async function send(question) {
  let models;
  try {
    models = lanes();
  } catch (error) {
    return showError(error.message);
  }
  if (!models[0]) return showError("no model to ask: the server lists none (is it still loading?)");
  hideError();
  $("empty").hidden = true;
  const histories = models.map((model) => conversation(model, question));
  const turn = { user: question, replies: [] };
  const row = element("section", "turn");
  row.append(element("div", "user", question));
  const answers = element("div", models.length > 1 ? "answers compare" : "answers");
  row.append(answers);
  $("messages").append(row);

  state.controller = new AbortController();
  busy(true);
  await Promise.all(models.map(async (model, lane) => {
    const reply = { model, text: "", ok: false };
    turn.replies.push(reply);
    const view = replyCard(model);
    answers.append(view.card);
    view.copy.addEventListener("click", () => copyText(reply.text, view.copy));
    const textNode = document.createTextNode("");
    view.text.append(textNode);
    try {
      const onText = (piece) => {
        reply.text += piece;
        textNode.appendData(piece);
        scrollDown();
      };
      const onSources = (sources) => showSources(view.sources, sources);
      const finish = await streamAnswer(model, histories[lane], { onText, onSources }, state.controller.signal);
      reply.ok = true;
      view.card.dataset.state = "done";
      view.meta.textContent = finish === "length" ? "stopped at the token limit" : "";
    } catch (error) {
      const stopped = error.name === "AbortError";
      reply.ok = stopped && reply.text.length > 0;
      view.card.dataset.state = stopped ? "stopped" : "error";
      view.meta.textContent = stopped ? "stopped" : `error: ${error.message}`;
      if (!stopped) showError(`${model}: ${error.message}`);
    }
  }));
  state.turns.push(turn);
  state.controller = null;
  busy(false);
}

function busy(on) {
  $("send").disabled = on;
  $("stop").hidden = !on;
  document.body.dataset.busy = on ? "yes" : "no";
}

function clearConversation() {
  if (state.controller) state.controller.abort();
  state.turns = [];
  $("messages").replaceChildren($("empty"));
  $("empty").hidden = false;
  hideError();
}

function scrollDown() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

// The clipboard API exists only in secure contexts (https, localhost); elsewhere a hidden
// text area and the older copy command do the same.
async function copyText(text, button) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {
      const area = element("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
  } catch (error) {
    button.textContent = "Copy failed";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// ---- wiring ----------------------------------------------------------------------------------

function start() {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, key.value.trim());
    loadModels();
  });
  $("temperature").addEventListener("input", showTemperature);
  showTemperature();
  $("model").addEventListener("change", describeModel);
  $("clear").addEventListener("click", clearConversation);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("settings-toggle").addEventListener("click", () => {
    const open = document.body.classList.toggle("settings-open");
    $("settings-toggle").setAttribute("aria-expanded", String(open));
  });
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = prompt.value.trim();
    if (!question || state.controller) return;
    prompt.value = "";
    send(question);
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  loadModels();
}

start();
