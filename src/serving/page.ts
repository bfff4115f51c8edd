// The web demo served at GET /: one self-contained page (inline CSS and JS, no CDN, works offline) that talks to this
// server's own /v1/chat/completions with fetch and reads the server-sent events from the response's ReadableStream.
// Pick or drop an image, chat with streamed answers; temperature / top-p / max tokens start at Factory's demo
// defaults (0.2 / 0.7 / 512); regenerate, stop, clear; a new image starts a new conversation (as Factory's demo);
// errors are shown in the page; an API key field appears when the server needs one.
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TinyLLaVA chat</title>
<style>
  :root { --bg: #f6f7f9; --panel: #fff; --line: #d9dde3; --text: #1d2330; --muted: #667085; --accent: #2f6fde;
          --user: #e8f0fe; --bot: #fff; --err: #b42318; --errbg: #fef3f2; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--text);
         background: var(--bg); height: 100vh; display: flex; flex-direction: column; }
  header { display: flex; align-items: baseline; gap: 12px; padding: 10px 18px; border-bottom: 1px solid var(--line);
           background: var(--panel); }
  header h1 { font-size: 17px; margin: 0; }
  header .model { color: var(--muted); font-size: 13px; }
  header .status { margin-left: auto; font-size: 13px; color: var(--muted); }
  main { flex: 1; display: flex; min-height: 0; }
  aside { width: 300px; padding: 14px; border-right: 1px solid var(--line); background: var(--panel);
          overflow-y: auto; display: flex; flex-direction: column; gap: 14px; }
  #drop { border: 2px dashed var(--line); border-radius: 10px; min-height: 170px; display: flex; align-items: center;
          justify-content: center; text-align: center; color: var(--muted); cursor: pointer; padding: 8px;
          position: relative; }
  #drop.over { border-color: var(--accent); background: #f0f5ff; }
  #drop img { width: 100%; max-height: 240px; object-fit: contain; border-radius: 6px; display: block; }
  #image-input { display: none; }
  label.ctl { display: grid; grid-template-columns: 1fr 64px; gap: 4px 8px; align-items: center; font-size: 13px; }
  label.ctl span { grid-column: 1 / 3; color: var(--muted); }
  label.ctl input[type=number] { width: 64px; }
  .key input { width: 100%; }
  .hidden { display: none !important; }
  button { font: inherit; padding: 7px 14px; border-radius: 8px; border: 1px solid var(--line); background: #fff;
           cursor: pointer; }
  button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
  button:disabled { opacity: .5; cursor: default; }
  .row { display: flex; gap: 8px; flex-wrap: wrap; }
  section.chat { flex: 1; display: flex; flex-direction: column; min-width: 0; }
  #log { flex: 1; overflow-y: auto; padding: 18px; display: flex; flex-direction: column; gap: 12px; }
  .msg { max-width: 760px; padding: 10px 14px; border-radius: 12px; border: 1px solid var(--line);
         white-space: pre-wrap; word-wrap: break-word; }
  .msg.user { align-self: flex-end; background: var(--user); border-color: #c9dafc; }
  .msg.assistant { align-self: flex-start; background: var(--bot); }
  .msg.assistant.streaming::after { content: "▍"; color: var(--accent); }
  .msg img { max-width: 180px; max-height: 140px; display: block; margin-bottom: 6px; border-radius: 6px; }
  .msg .meta { display: block; font-size: 12px; color: var(--muted); margin-top: 4px; white-space: normal; }
  .empty { color: var(--muted); margin: auto; text-align: center; }
  #error { margin: 0 18px 10px; padding: 9px 12px; border-radius: 8px; background: var(--errbg); color: var(--err);
           border: 1px solid #fecdca; white-space: pre-wrap; }
  form { display: flex; gap: 8px; padding: 12px 18px 16px; border-top: 1px solid var(--line); background: var(--panel); }
  textarea { flex: 1; font: inherit; padding: 9px 12px; border-radius: 8px; border: 1px solid var(--line); resize: none;
             height: 46px; }
  @media (max-width: 760px) { main { flex-direction: column; } aside { width: auto; border-right: 0;
             border-bottom: 1px solid var(--line); } }
</style>
</head>
<body>
<header>
  <h1>TinyLLaVA</h1><span class="model" id="model">…</span>
  <span class="status" id="status">connecting…</span>
</header>
<main>
  <aside>
    <div id="drop" tabindex="0" role="button" aria-label="Choose or drop an image">
      <span id="drop-hint">Drop an image here, or click to choose one<br><small>PNG, JPEG, WebP, GIF</small></span>
    </div>
    <input type="file" id="image-input" accept="image/png,image/jpeg,image/webp,image/gif">
    <label class="ctl">Temperature <input type="number" id="temperature-n" min="0" max="2" step="0.05">
      <input type="range" id="temperature" min="0" max="2" step="0.05" value="0.2"></label>
    <label class="ctl">Top-p <input type="number" id="top-p-n" min="0" max="1" step="0.05">
      <input type="range" id="top-p" min="0" max="1" step="0.05" value="0.7"></label>
    <label class="ctl">Max new tokens <input type="number" id="max-tokens-n" min="1" max="4096" step="1">
      <input type="range" id="max-tokens" min="1" max="2048" step="1" value="512"></label>
    <label class="ctl key hidden" id="key-box"><span>API key (this server needs one)</span>
      <input type="password" id="api-key" autocomplete="off" placeholder="Bearer key" style="grid-column: 1 / 3"></label>
    <div class="row">
      <button type="button" id="regenerate" disabled>Regenerate</button>
      <button type="button" id="clear">Clear</button>
    </div>
  </aside>
  <section class="chat">
    <div id="log" aria-live="polite"><p class="empty" id="empty">Choose an image and ask a question about it.</p></div>
    <div id="error" class="hidden" role="alert"></div>
    <form id="form">
      <textarea id="prompt" placeholder="Ask about the image… (Enter sends, Shift+Enter: new line)"></textarea>
      <button type="submit" class="primary" id="send">Send</button>
      <button type="button" id="stop" class="hidden">Stop</button>
    </form>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const state = { image: null, modelId: null, messages: [], busy: false, controller: null };

// ---- controls: a range and a number box per setting, kept in step ----
for (const id of ["temperature", "top-p", "max-tokens"]) {
  const range = $(id), box = $(id + "-n");
  box.value = range.value;
  range.addEventListener("input", () => { box.value = range.value; });
  box.addEventListener("input", () => { if (box.value !== "") range.value = box.value; });
}
const setting = (id) => Number($(id + "-n").value);

const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("tinyllava-key") || "";
keyInput.addEventListener("input", () => sessionStorage.setItem("tinyllava-key", keyInput.value));

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.classList.toggle("hidden", !msg);
}

// ---- server status ----
async function refreshHealth() {
  try {
    const r = await fetch("/health", { cache: "no-store" });
    const h = await r.json();
    state.modelId = h.model;
    $("model").textContent = h.model;
    $("status").textContent = h.status === "ok"
      ? (h.in_flight + h.queue_length > 0 ? h.in_flight + " generating, " + h.queue_length + " waiting" : "ready")
      : "error: " + (h.error || h.status);
    $("key-box").classList.toggle("hidden", !h.auth_required);
  } catch (err) {
    $("status").textContent = "server unreachable";
  }
}
refreshHealth();
setInterval(refreshHealth, 5000);

// ---- the image: a new one starts a new conversation ----
const drop = $("drop"), fileInput = $("image-input"), dropHint = $("drop-hint");
drop.addEventListener("click", () => fileInput.click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
fileInput.addEventListener("change", () => { if (fileInput.files[0]) useFile(fileInput.files[0]); fileInput.value = ""; });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) useFile(f);
});
document.addEventListener("paste", (e) => {
  const f = [...(e.clipboardData?.files || [])].find((x) => x.type.startsWith("image/"));
  if (f) useFile(f);
});

function useFile(file) {
  if (!file.type.startsWith("image/")) { showError(file.name + " is not an image."); return; }
  const reader = new FileReader();
  reader.onerror = () => showError("Could not read " + file.name + ".");
  reader.onload = () => {
    stopGeneration();
    state.image = reader.result;
    state.messages = [];
    drop.replaceChildren();
    const img = document.createElement("img");
    img.src = state.image;
    img.alt = file.name;
    drop.append(img);
    showError("");
    render();
    $("prompt").focus();
  };
  reader.readAsDataURL(file);
}

// ---- the conversation ----
function render() {
  const log = $("log");
  log.replaceChildren();
  if (state.messages.length === 0) {
    const p = document.createElement("p");
    p.className = "empty";
    p.id = "empty";
    p.textContent = state.image ? "Ask a question about the image." : "Choose an image and ask a question about it.";
    log.append(p);
  }
  state.messages.forEach((m, i) => {
    const div = document.createElement("div");
    div.className = "msg " + m.role + (m.streaming ? " streaming" : "");
    if (i === 0 && state.image) {
      const img = document.createElement("img");
      img.src = state.image;
      img.alt = "image";
      div.append(img);
    }
    div.append(document.createTextNode(m.content));
    if (m.meta) {
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = m.meta;
      div.append(meta);
    }
    m.el = div;
    log.append(div);
  });
  log.scrollTop = log.scrollHeight;
  const last = state.messages[state.messages.length - 1];
  $("regenerate").disabled = state.busy || !last || last.role !== "assistant";
  $("send").disabled = state.busy;
  $("stop").classList.toggle("hidden", !state.busy);
}

function apiMessages() {
  return state.messages.filter((m) => !m.streaming).map((m, i) =>
    i === 0 && state.image
      ? { role: "user", content: [{ type: "text", text: m.content }, { type: "image_url", image_url: { url: state.image } }] }
      : { role: m.role, content: m.content });
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value.trim()) h.Authorization = "Bearer " + keyInput.value.trim();
  return h;
}

async function errorText(res) {
  try {
    const j = await res.json();
    if (j && j.error && j.error.message) return j.error.message + (j.error.code ? " (" + j.error.code + ")" : "");
  } catch (e) {}
  return "HTTP " + res.status + " " + res.statusText;
}

// onFail: undo what led to this request when no answer came (the question goes back to the input box)
async function generate(onFail) {
  showError("");
  const body = {
    messages: apiMessages(),
    stream: true,
    stream_options: { include_usage: true },
    temperature: setting("temperature"),
    top_p: setting("top-p"),
    max_tokens: Math.round(setting("max-tokens")),
  };
  if (state.modelId) body.model = state.modelId;
  const answer = { role: "assistant", content: "", streaming: true };
  state.messages.push(answer);
  state.busy = true;
  state.controller = new AbortController();
  render();
  const t0 = performance.now();
  let finish = null, usage = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: state.controller.signal,
    });
    if (!res.ok) {
      if (res.status === 401) $("key-box").classList.remove("hidden");
      throw new Error(await errorText(res));
    }
    // server-sent events: "data: {json}" blocks separated by a blank line, ending with "data: [DONE]"
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let ended = false;
    while (!ended) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\\n\\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of block.split("\\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") { ended = true; break; }
          const ev = JSON.parse(data);
          if (ev.error) throw new Error(ev.error.message || "generation failed");
          if (ev.usage) usage = ev.usage;
          const ch = ev.choices && ev.choices[0];
          if (!ch) continue;
          if (ch.delta && ch.delta.content) {
            answer.content += ch.delta.content;
            answer.el.textContent = answer.content;
            $("log").scrollTop = $("log").scrollHeight;
          }
          if (ch.finish_reason) finish = ch.finish_reason;
        }
      }
    }
    if (!ended) throw new Error("The connection closed before the answer was complete.");
    const secs = (performance.now() - t0) / 1000;
    answer.meta = (finish === "length" ? "stopped at max tokens · " : "") +
      (usage ? usage.completion_tokens + " tokens · " : "") + secs.toFixed(1) + " s";
  } catch (err) {
    if (err.name === "AbortError") answer.meta = "stopped";
    else {
      showError(err.message || String(err));
      if (answer.content === "") {
        state.messages.pop();
        if (onFail) onFail();
      } else answer.meta = "incomplete";
    }
  } finally {
    answer.streaming = false;
    state.busy = false;
    state.controller = null;
    render();
  }
}

function stopGeneration() {
  if (state.controller) state.controller.abort();
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (state.busy) return;
  const text = $("prompt").value.trim();
  if (!text) return;
  if (!state.image && state.messages.length === 0) {
    showError("Choose an image first (or drop one on the left).");
    return;
  }
  $("prompt").value = "";
  const question = { role: "user", content: text };
  state.messages.push(question);
  generate(() => {
    state.messages.splice(state.messages.indexOf(question), 1);
    if (!$("prompt").value) $("prompt").value = text;
  });
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});
$("stop").addEventListener("click", stopGeneration);
$("regenerate").addEventListener("click", () => {
  if (state.busy) return;
  const last = state.messages[state.messages.length - 1];
  const old = last && last.role === "assistant" ? state.messages.pop() : null;
  if (state.messages.length > 0) generate(() => { if (old) state.messages.push(old); });
});
$("clear").addEventListener("click", () => {
  stopGeneration();
  state.messages = [];
  state.image = null;
  drop.replaceChildren(dropHint);
  showError("");
  render();
});
</script>
</body>
</html>
`;
