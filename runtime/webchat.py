"""The web chat page serve.py answers at GET /chat (LLaMA-Factory's ``webchat``).

One static page, no build step and no third-party script: it posts the conversation to the same
server's /v1/chat/completions with ``stream: true`` and shows the answer as it arrives. Written by
hand because it is ~100 lines and a framework (Gradio) would be a second server for one text box;
the web UI's Chat tab (``ffc ui``) remains the richer client. Messages are shown with textContent,
never as HTML, and the page's Content-Security-Policy allows connections to its own server only.
"""

from __future__ import annotations

# Sent with the page: inline script and style only, requests to this origin only, never framed.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ffc chat</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; display: flex; flex-direction: column; height: 100vh; }
header { padding: .5em 1em; background: #f3f3f3; display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
header input { width: 5em; }
#system { flex: 1; min-width: 12em; width: auto; }
#log { flex: 1; overflow-y: auto; padding: 1em; }
.turn { margin: .4em 0; padding: .5em .8em; border-radius: 8px; white-space: pre-wrap; max-width: 80ch; }
.user { background: #e3efff; margin-left: auto; }
.assistant { background: #f1f1f1; }
.error { background: #ffe3e3; }
form { display: flex; gap: .5em; padding: .8em 1em; border-top: 1px solid #ddd; }
textarea { flex: 1; font: inherit; min-height: 2.5em; }
</style>
</head>
<body>
<header>
  <strong id="model">ffc chat</strong>
  <label>system <input id="system" placeholder="the template's default"></label>
  <label>temperature <input id="temperature" type="number" min="0" max="2" step="0.1"></label>
  <label>max tokens <input id="max_tokens" type="number" min="1" step="1"></label>
  <button id="clear" type="button">Clear</button>
</header>
<div id="log"></div>
<form id="form">
  <textarea id="input" placeholder="Message (Enter sends, Shift+Enter for a new line)" autofocus></textarea>
  <button id="send">Send</button>
</form>
<script>
"use strict";
const log = document.getElementById("log"), input = document.getElementById("input");
let history = [], apiKey = null, modelId = null, busy = false;

function show(role, text) {
  const div = document.createElement("div");
  div.className = "turn " + role;
  div.textContent = text;  // never HTML: the model's text is data
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

async function models() {  // the model id every request names; asks for the API key when the server wants one
  let r = await fetch("v1/models", {headers: auth()});
  if (r.status === 401) {
    apiKey = prompt("This server needs its API key:");
    r = await fetch("v1/models", {headers: auth()});
  }
  if (!r.ok) throw new Error((await r.json()).error.message);
  modelId = (await r.json()).data[0].id;
  document.getElementById("model").textContent = modelId;
}

function auth() { return apiKey ? {"Authorization": "Bearer " + apiKey} : {}; }

async function send(text) {
  const system = document.getElementById("system").value.trim();
  const messages = (system ? [{role: "system", content: system}] : []).concat(history, [{role: "user", content: text}]);
  if (!modelId) await models();
  const body = {model: modelId, messages: messages, stream: true};
  const temperature = document.getElementById("temperature").value;
  const maxTokens = document.getElementById("max_tokens").value;
  if (temperature !== "") body.temperature = Number(temperature);
  if (maxTokens !== "") body.max_tokens = Number(maxTokens);
  show("user", text);
  const out = show("assistant", "");
  const r = await fetch("v1/chat/completions", {
    method: "POST", headers: Object.assign({"Content-Type": "application/json"}, auth()), body: JSON.stringify(body),
  });
  if (r.status === 401) { apiKey = null; modelId = null; }  // asked again with the next message
  if (!r.ok) throw new Error((await r.json()).error.message);
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let buffer = "", answer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const events = buffer.split("\\n\\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices[0].delta.content || "";
      answer += delta;
      out.textContent = answer;
      log.scrollTop = log.scrollHeight;
    }
  }
  history.push({role: "user", content: text}, {role: "assistant", content: answer});
}

document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || busy) return;
  const button = document.getElementById("send");
  busy = true; button.disabled = true; input.value = "";  // one answer at a time
  try { await send(text); } catch (e) { show("error", String(e.message || e)); }
  busy = false; button.disabled = false; input.focus();
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); document.getElementById("form").requestSubmit(); }
});
document.getElementById("clear").addEventListener("click", () => { history = []; log.textContent = ""; });
models().catch((e) => show("error", String(e.message || e)));
</script>
</body>
</html>
"""
