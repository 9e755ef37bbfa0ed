// The chat page torchlm serve shows at `/`, as llama-server has one: a conversation streamed from
// /v1/chat/completions, with stop and regenerate, the model and its sampling options in view. One self-contained
// page (no framework, no build step); it talks to the server it came from.
export const CHAT_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>torchlm chat</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d1d1f; background: #f5f5f7; }
  body { margin: 0; display: flex; flex-direction: column; height: 100vh; }
  header { padding: 10px 16px; background: #fff; border-bottom: 1px solid #ddd; display: flex; flex-wrap: wrap;
    gap: 12px; align-items: center; }
  header h1 { font-size: 16px; margin: 0 12px 0 0; }
  header label { font-size: 13px; display: flex; gap: 4px; align-items: center; }
  header input { width: 70px; }
  #system { width: 260px; }
  #api-key { width: 120px; }
  main { flex: 1; overflow-y: auto; padding: 16px; display: flex; flex-direction: column; gap: 10px; }
  .message { max-width: 75%; padding: 8px 12px; border-radius: 12px; white-space: pre-wrap; line-height: 1.4; }
  .user { align-self: flex-end; background: #0a84ff; color: #fff; }
  .assistant { align-self: flex-start; background: #fff; border: 1px solid #ddd; }
  .assistant[data-state="stopped"]::after { content: " [stopped]"; color: #888; font-size: 12px; }
  #error { color: #b00020; padding: 0 16px; min-height: 1.2em; }
  form { display: flex; gap: 8px; padding: 12px 16px; background: #fff; border-top: 1px solid #ddd; }
  textarea#prompt { flex: 1; resize: none; height: 48px; font: inherit; }
  button { font: inherit; padding: 0 14px; }
</style>
</head>
<body>
<header>
  <h1>torchlm chat: <span id="model">…</span></h1>
  <label>system <input id="system" placeholder="system prompt (optional)"></label>
  <label>temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.7"></label>
  <label>top_p <input id="top-p" type="number" min="0.01" max="1" step="0.05" value="1"></label>
  <label>max_tokens <input id="max-tokens" type="number" min="1" step="1" value="256"></label>
  <label>seed <input id="seed" type="number" min="0" step="1" placeholder="none"></label>
  <label>API key <input id="api-key" type="password" placeholder="if the server has one"></label>
</header>
<main id="conversation" aria-live="polite"></main>
<div id="error" role="alert"></div>
<form id="send-form">
  <textarea id="prompt" placeholder="Message (Enter sends, Shift+Enter a new line)"></textarea>
  <button id="send" type="submit">Send</button>
  <button id="stop" type="button" disabled>Stop</button>
  <button id="regenerate" type="button" disabled>Regenerate</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const messages = []; // the conversation: { role, content }
let modelId = null;
let controller = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function showError(text) {
  $("error").textContent = text;
}

function addBubble(role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  div.textContent = text;
  $("conversation").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function render() {
  $("conversation").textContent = "";
  for (const m of messages) {
    const div = addBubble(m.role, m.content);
    if (m.role === "assistant") div.dataset.state = m.state || "done";
  }
}

function busy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
  $("regenerate").disabled = on || !messages.some((m) => m.role === "assistant");
}

async function loadModel() {
  try {
    const res = await fetch("/v1/models", { headers: headers() });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : "HTTP " + res.status);
    modelId = body.data[0].id;
    $("model").textContent = modelId;
    showError("");
  } catch (e) {
    $("model").textContent = "unknown";
    showError("Cannot list the model: " + e.message);
  }
}

function requestBody() {
  const system = $("system").value.trim();
  const body = {
    model: modelId,
    messages: (system ? [{ role: "system", content: system }] : []).concat(
      messages.map((m) => ({ role: m.role, content: m.content })),
    ),
    stream: true,
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

// Streams the assistant's reply to the conversation so far into a new bubble.
async function complete() {
  if (modelId === null) await loadModel();
  if (modelId === null) return;
  showError("");
  const reply = { role: "assistant", content: "", state: "streaming" };
  const bubble = addBubble("assistant", "");
  bubble.dataset.state = "streaming";
  controller = new AbortController();
  busy(true);
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(requestBody()),
      signal: controller.signal,
    });
    if (!res.ok) {
      let message = "HTTP " + res.status;
      try {
        const body = await res.json();
        if (body.error) message = body.error.message;
      } catch (_) {}
      throw new Error(message);
    }
    messages.push(reply);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let at;
      while ((at = buffered.indexOf("\\n\\n")) >= 0) {
        const event = buffered.slice(0, at);
        buffered = buffered.slice(at + 2);
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
        const chunk = JSON.parse(event.slice(6));
        const choice = chunk.choices && chunk.choices[0];
        if (choice && choice.delta && choice.delta.content) {
          reply.content += choice.delta.content;
          bubble.textContent = reply.content;
          bubble.scrollIntoView({ block: "end" });
        }
      }
    }
    reply.state = "done";
  } catch (e) {
    if (e.name === "AbortError") {
      reply.state = "stopped";
      if (!messages.includes(reply)) messages.push(reply);
    } else {
      bubble.remove();
      showError(e.message);
    }
  } finally {
    bubble.dataset.state = reply.state;
    controller = null;
    busy(false);
  }
}

$("send-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("prompt").value;
  if (!text.trim() || controller) return;
  $("prompt").value = "";
  messages.push({ role: "user", content: text });
  addBubble("user", text);
  complete();
});
$("prompt").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("send-form").requestSubmit();
  }
});
$("stop").addEventListener("click", () => {
  if (controller) controller.abort();
});
$("regenerate").addEventListener("click", () => {
  if (controller) return;
  while (messages.length && messages[messages.length - 1].role === "assistant") messages.pop();
  render();
  complete();
});
$("api-key").addEventListener("change", loadModel);
loadModel();
</script>
</body>
</html>
`;
