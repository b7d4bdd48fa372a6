// fromzero chat: the page the server shows at "/".
//
// It talks to the same OpenAI-compatible API any client uses (GET /v1/models, POST
// /v1/chat/completions with stream: true, POST /v1/feedback), so everything it does can be done
// with curl too. No framework and no build step: the file the server sends is the file you read.
//
// Two rules the code keeps everywhere:
// * model output is inserted as text (textContent, Text nodes), never as HTML, so an answer that
//   contains "<script>" shows those characters instead of running them;
// * the conversation lives in this page only; each request sends the history it needs. Export
//   saves it as a JSON file, Import reads one back.
// A server started with --rag sends the chunks each question was asked with ("sources", in the
// first chunk of the stream); they are listed under the answer.
//
// Under each answer: 👍/👎 and Edit store feedback (POST /v1/feedback: training data for
// `fromzero feedback export`), Regenerate asks for a second answer to the same messages and then
// "This one is better" stores which won, Continue asks the model to go on with the answer
// (continue_final_message). While an answer streams, its card says "reading the prompt…" until the
// first token comes, then how many tokens a second arrive; Stop aborts it.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "fromzero.apiKey";
const EXPORT_FORMAT = "fromzero-chat";

const state = {
  models: [],        // the entries of GET /v1/models
  turns: [],         // {user, replies: [reply], answers: element}, oldest first
  controller: null,  // aborts the answers being streamed (Stop, Clear)
};
// A reply: {model, text, ok, history (the messages it answered), settings (the sampling fields it
// was asked with), chosen (true/false once a choice between two was made), view (its card's parts)}.

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

// Reads one streamed answer (server-sent events), handing each piece of text to onText, the
// retrieved chunks the question was asked with (a server started with --rag sends them in the
// first chunk) to onSources and the token counts (the last chunk) to onUsage. Returns the finish
// reason ("stop", "length", ...) or throws with the server's message.
async function streamAnswer(body, { onText, onSources, onUsage }, signal) {
  const request = { ...body, stream: true, stream_options: { include_usage: true } };
  const response = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers(), body: JSON.stringify(request), signal,
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
      if (chunk.usage) onUsage(chunk.usage);
      const choice = (chunk.choices || [])[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) onText(choice.delta.content);
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return finish;
}

// Stores one feedback record; resolves with its id once the server has it on disk.
async function postFeedback(record) {
  const response = await fetch("/v1/feedback", { method: "POST", headers: headers(), body: JSON.stringify(record) });
  if (!response.ok) throw new Error(await errorMessage(response));
  return (await response.json()).id;
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

// The answer of a turn that later questions see: the one chosen as better, else the one this
// model gave, else the first one shown.
function keptReply(turn, model) {
  const answered = turn.replies.filter((reply) => reply.ok);
  return answered.find((r) => r.chosen === true) || answered.find((r) => r.model === model) || answered[0];
}

// The messages that ask `model` the next question: the system prompt, then every earlier turn
// with its kept answer (a failed turn is left out: the model never answered it), then the question.
function conversation(model, question) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const turn of state.turns) {
    const reply = keptReply(turn, model);
    if (reply) messages.push({ role: "user", content: turn.user }, { role: "assistant", content: reply.text });
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

function button(className, label, title, onClick) {
  const node = element("button", className, label);
  node.type = "button";
  if (title) {
    node.title = title;
    node.setAttribute("aria-label", title);
  }
  node.addEventListener("click", onClick);
  return node;
}

// A turn's row: the question, and the answers under it (side by side when there are two).
function turnRow(turn) {
  const row = element("section", "turn");
  row.append(element("div", "user", turn.user));
  turn.answers = element("div", "answers");
  row.append(turn.answers);
  $("messages").append(row);
  $("empty").hidden = true;
  return row;
}

// The card of one reply, with its buttons; it is added to its turn's answers.
function addCard(turn, reply) {
  const card = element("article", "reply");
  card.dataset.model = reply.model;
  card.dataset.state = "streaming";
  const head = element("header", "reply-head");
  head.append(element("span", "who", reply.model));
  const copy = button("copy", "Copy", "", () => copyText(reply.text, copy));
  head.append(copy);
  const text = element("div", "text");
  const textNode = document.createTextNode(reply.text);
  text.append(textNode);
  const sources = element("section", "sources");
  sources.hidden = true;
  const meta = element("footer", "meta");
  const status = element("span", "status");
  const speed = element("span", "speed");
  const saved = element("span", "saved");
  saved.setAttribute("role", "status");
  meta.append(status, speed, saved);

  const editor = element("div", "editor");
  editor.hidden = true;
  const area = element("textarea");
  area.rows = 4;
  area.setAttribute("aria-label", "a better answer");
  const save = button("save-edit", "Save the better answer", "", () => saveEdit(reply));
  const cancel = button("cancel-edit", "Cancel", "", () => { editor.hidden = true; });
  editor.append(area, save, cancel);

  const actions = element("div", "actions");
  // the words too: a system without an emoji font still shows what the buttons mean
  const up = button("rate-up", "👍 Good", "a good answer", () => rate(reply, "up"));
  const down = button("rate-down", "👎 Bad", "a bad answer", () => rate(reply, "down"));
  up.setAttribute("aria-pressed", "false");
  down.setAttribute("aria-pressed", "false");
  const edit = button("edit", "Edit", "write a better answer", () => {
    area.value = reply.text;
    editor.hidden = false;
    area.focus();
  });
  const again = button("regenerate", "Regenerate", "a second answer to the same question",
    () => regenerate(turn, reply));
  const more = button("continue", "Continue", "the model goes on with this answer", () => continueReply(reply));
  const better = button("choose", "This one is better", "store this answer as the better of the two",
    () => choose(turn, reply));
  actions.append(up, down, edit, again, more, better);

  card.append(head, text, sources, meta, editor, actions);
  turn.answers.append(card);
  turn.answers.classList.toggle("compare", turn.replies.length > 1);
  reply.view = { card, textNode, sources, status, speed, saved, editor, area, up, down, again, better };
  return reply.view;
}

// Which buttons of a turn's cards can be used now: nothing while an answer streams; Regenerate
// while the turn has one answer; "This one is better" once it has two good ones and no choice.
function updateActions(turn) {
  const busyNow = state.controller !== null;
  const answered = turn.replies.filter((reply) => reply.ok);
  const choosing = turn.replies.length === 2 && answered.length === 2 && !turn.replies.some((r) => r.chosen);
  for (const reply of turn.replies) {
    const { card, again, better } = reply.view;
    card.querySelectorAll(".actions button").forEach((node) => { node.disabled = busyNow || !reply.ok; });
    again.hidden = turn.replies.length > 1;
    better.hidden = !choosing;
    if (reply.chosen !== undefined) card.dataset.chosen = reply.chosen ? "yes" : "no";
  }
}

function updateAllActions() {
  state.turns.forEach(updateActions);
}

// Streams one answer into `reply`'s card: "reading the prompt…" until the first token, then the
// tokens per second as they come; adds to reply.text (Continue goes on from what is there).
async function streamInto(reply, body) {
  const view = reply.view;
  view.card.dataset.state = "streaming";
  view.status.textContent = "reading the prompt…";
  view.speed.textContent = "";
  view.saved.textContent = "";
  let pieces = 0;
  let first = null;
  let tokens = null;
  const perSecond = (count, until) => (count > 1 && until > first ? `${((count - 1) * 1000 / (until - first)).toFixed(1)} tokens/s` : "");
  try {
    const onText = (piece) => {
      const now = performance.now();
      if (first === null) {
        first = now;
        view.status.textContent = "writing…";
      }
      pieces += 1;
      reply.text += piece;
      view.textNode.appendData(piece);
      view.speed.textContent = perSecond(pieces, now);
      scrollDown();
    };
    const onSources = (sources) => showSources(view.sources, sources);
    const onUsage = (usage) => { tokens = usage.completion_tokens; };
    const finish = await streamAnswer(body, { onText, onSources, onUsage }, state.controller.signal);
    reply.ok = true;
    view.card.dataset.state = "done";
    view.status.textContent = finish === "length" ? "stopped at the token limit" : "";
    if (tokens !== null && first !== null) {
      view.speed.textContent = `${tokens} tokens · ${perSecond(tokens, performance.now())}`.replace(/ · $/, "");
    }
  } catch (error) {
    const stopped = error.name === "AbortError";
    reply.ok = reply.ok || (stopped && reply.text.length > 0);
    view.card.dataset.state = stopped ? "stopped" : "error";
    view.status.textContent = stopped ? "stopped" : `error: ${error.message}`;
    if (!stopped) showError(`${reply.model}: ${error.message}`);
  }
}

// Runs `work` (which streams answers) with the Stop button on and every other button off.
async function streaming(work) {
  state.controller = new AbortController();
  busy(true);
  try {
    await work();
  } finally {
    state.controller = null;
    busy(false);
  }
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
  const turn = { user: question, replies: [] };
  const settings = sampling();
  const replies = models.map((model) => ({ model, text: "", ok: false, history: conversation(model, question), settings }));
  turnRow(turn);
  for (const reply of replies) {
    turn.replies.push(reply);
    addCard(turn, reply);
  }
  state.turns.push(turn);
  await streaming(() => Promise.all(replies.map((reply) => streamInto(reply, {
    model: reply.model, messages: reply.history, ...reply.settings,
  }))));
}

// A second answer to the same messages, beside the first; with a seed, the next one (else the
// same seed would give the same answer).
async function regenerate(turn, first) {
  if (state.controller || turn.replies.length > 1) return;
  const settings = { ...first.settings };
  if (settings.seed !== undefined) settings.seed += 1;
  const reply = { model: first.model, text: "", ok: false, history: first.history, settings };
  turn.replies.push(reply);
  addCard(turn, reply);
  await streaming(() => streamInto(reply, { model: reply.model, messages: reply.history, ...settings }));
}

// The model goes on with its answer: the messages end with it, and the server continues it.
async function continueReply(reply) {
  if (state.controller || !reply.ok) return;
  const messages = [...reply.history, { role: "assistant", content: reply.text }];
  await streaming(() => streamInto(reply, {
    model: reply.model, messages, continue_final_message: true, ...sampling(),
  }));
}

// ---- feedback --------------------------------------------------------------------------------

async function store(reply, record, done) {
  reply.view.saved.textContent = "saving…";
  try {
    await postFeedback({ model: reply.model, messages: reply.history, settings: reply.settings, ...record });
    done();
  } catch (error) {
    reply.view.saved.textContent = "not saved";
    showError(`feedback not saved: ${error.message}`);
  }
}

function rate(reply, verdict) {
  return store(reply, { kind: "rating", rating: verdict, answer: reply.text }, () => {
    reply.view.up.setAttribute("aria-pressed", String(verdict === "up"));
    reply.view.down.setAttribute("aria-pressed", String(verdict === "down"));
    reply.view.saved.textContent = verdict === "up" ? "saved: a good answer" : "saved: a bad answer";
  });
}

// Stores the person's better answer; the conversation goes on with it.
function saveEdit(reply) {
  const better = reply.view.area.value.trim();
  if (!better || better === reply.text.trim()) {
    reply.view.saved.textContent = "write a different answer first";
    return;
  }
  return store(reply, { kind: "edit", answer: reply.text, better }, () => {
    reply.text = better;
    reply.view.textNode.data = better;
    reply.view.editor.hidden = true;
    reply.view.saved.textContent = "saved: your better answer";
  });
}

function choose(turn, winner) {
  const [first, second] = turn.replies;
  const record = {
    kind: "choice", answer: first.text, other: second.text, other_model: second.model,
    chosen: winner === first ? 1 : 2,
  };
  return store(first, record, () => {
    for (const reply of turn.replies) reply.chosen = reply === winner;
    first.view.saved.textContent = "";
    winner.view.saved.textContent = "saved: the better answer";
    updateActions(turn);
  });
}

// ---- export and import -----------------------------------------------------------------------

function exportConversation() {
  const data = {
    format: EXPORT_FORMAT, version: 1, exported: new Date().toISOString(),
    model: $("model").value, system: $("system").value,
    turns: state.turns.map((turn) => ({
      user: turn.user,
      replies: turn.replies.map(({ model, text, ok, history, settings, chosen }) => ({ model, text, ok, history, settings, chosen })),
    })),
  };
  const link = element("a");
  link.href = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  link.download = `fromzero-chat-${data.exported.slice(0, 19).replace(/[:T]/g, "-")}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

const isText = (value) => typeof value === "string";
const isMessage = (m) => m && ["system", "user", "assistant"].includes(m.role) && isText(m.content);

// A conversation exported by this page, checked field by field: a file is data, never trusted.
function readConversation(text) {
  const data = JSON.parse(text);
  if (!data || data.format !== EXPORT_FORMAT || !Array.isArray(data.turns)) {
    throw new Error("it is not a conversation exported by this page");
  }
  return {
    system: isText(data.system) ? data.system : "",
    turns: data.turns.map((turn, i) => {
      if (!turn || !isText(turn.user) || !Array.isArray(turn.replies) || turn.replies.length > 2
          || !turn.replies.every((r) => r && isText(r.model) && isText(r.text))) {
        throw new Error(`turn ${i + 1} needs a question and at most two answers, each with its model and text`);
      }
      return {
        user: turn.user,
        replies: turn.replies.map((r) => ({
          model: r.model, text: r.text, ok: r.ok !== false,
          history: Array.isArray(r.history) && r.history.every(isMessage) && r.history.length ? r.history : null,
          settings: r.settings && typeof r.settings === "object" && !Array.isArray(r.settings) ? r.settings : {},
          chosen: typeof r.chosen === "boolean" ? r.chosen : undefined,
        })),
      };
    }),
  };
}

async function importConversation(file) {
  let imported;
  try {
    imported = readConversation(await file.text());
  } catch (error) {
    return showError(`cannot import ${file.name}: ${error.message}`);
  }
  clearConversation();
  $("system").value = imported.system;
  for (const turn of imported.turns) {
    turnRow(turn);
    for (const reply of turn.replies) {
      reply.history = reply.history || conversation(reply.model, turn.user);
      const view = addCard(turn, reply);
      view.card.dataset.state = reply.ok ? "done" : "error";
      view.status.textContent = reply.ok ? "imported" : "imported (unanswered)";
    }
    state.turns.push(turn);
  }
  updateAllActions();
  scrollDown();
}

// ---- the page --------------------------------------------------------------------------------

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

function busy(on) {
  $("send").disabled = on;
  $("stop").hidden = !on;
  $("import").disabled = on;
  document.body.dataset.busy = on ? "yes" : "no";
  updateAllActions();
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
async function copyText(text, node) {
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
    node.textContent = "Copied";
  } catch (error) {
    node.textContent = "Copy failed";
  }
  setTimeout(() => { node.textContent = "Copy"; }, 1500);
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
  $("export").addEventListener("click", exportConversation);
  $("import").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", () => {
    const [file] = $("import-file").files;
    $("import-file").value = "";
    if (file) importConversation(file);
  });
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
