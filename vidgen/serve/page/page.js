// vidgen serve's page: plain JavaScript, no build step, nothing loaded from elsewhere.
//
// The page is a client of the API like any other. With a key it sends `Authorization: Bearer KEY` on
// every request; a <video src> cannot send that header, so a finished video is fetched into a blob and
// a growing stream into a MediaSource. The key is held in sessionStorage (gone when the tab closes) and
// never put in a URL.
"use strict";

const POLL_MS = 1000;
const KEY_ITEM = "vidgen-api-key";
const $ = (id) => document.getElementById(id);

const page = {
  key: sessionStorage.getItem(KEY_ITEM),
  model: null, // GET /page/model.json: name, streams, images, defaults
  cards: new Map(), // video id -> its card
  needKey: false,
};

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// One request to the server; an error answer becomes an ApiError with the API's one-line message.
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (page.key) headers.set("Authorization", "Bearer " + page.key);
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (error) {
    throw new ApiError("the server cannot be reached (" + error.message + ")", 0);
  }
  if (response.ok) return response;
  let message = response.status + " " + response.statusText;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (ignored) {
    // not JSON: the status line says it
  }
  if (response.status === 401) askForKey(message);
  throw new ApiError(message, response.status);
}

const videoPath = (id) => "/v1/videos/" + encodeURIComponent(id);

// --- the key ---------------------------------------------------------------------------------------

function askForKey(message) {
  if (page.key) {
    sessionStorage.removeItem(KEY_ITEM);
    page.key = null;
  }
  if (page.needKey) return;
  page.needKey = true;
  $("key-form").hidden = false;
  $("list-error").textContent = message;
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) return;
  page.key = key;
  sessionStorage.setItem(KEY_ITEM, key);
  $("key").value = "";
  $("key-form").hidden = true;
  page.needKey = false;
  $("list-error").textContent = "";
  $("prompt").focus();
  refresh();
});

// --- the model and the form ------------------------------------------------------------------------

async function loadModel() {
  try {
    page.model = await (await api("/page/model.json")).json();
  } catch (error) {
    $("health").textContent = "Cannot read the model: " + error.message;
    return;
  }
  const model = page.model;
  const defaults = model.defaults;
  $("size").placeholder = defaults.size;
  $("frames").placeholder = String(defaults.frames);
  $("seconds").placeholder = (defaults.frames / defaults.fps).toFixed(2).replace(/\.?0+$/, "");
  $("steps").placeholder = String(defaults.steps);
  $("guidance").placeholder = String(defaults.guidance);
  $("negative_prompt").placeholder = defaults.negative_prompt || "";
  $("stream-option").hidden = !model.streams;
  $("image-option").hidden = !model.images;
  if (!model.text) {
    $("image-label").textContent = "Start from an image (required)";
    $("input_reference").required = true;
  }
}

async function watchHealth() {
  let state = "unreachable";
  try {
    const response = await fetch("/health", { cache: "no-store" });
    const body = await response.json();
    state = body.status;
    const name = body.model || (page.model && page.model.model) || "";
    const says = {
      ready: "ready",
      loading: "loading the model…",
      draining: "shutting down: no new videos",
      failed: body.error || "the worker failed",
    };
    $("health").textContent = "Model " + name + ": " + (says[state] || state);
  } catch (error) {
    $("health").textContent = "The server cannot be reached.";
  }
  if (state !== "ready" && state !== "failed") setTimeout(watchHealth, 2000);
}

// The form's fields as the API takes them: only those filled in, so the server's defaults fill the rest.
function formFields() {
  const fields = { prompt: $("prompt").value };
  for (const name of ["size", "frames", "seconds", "steps", "guidance", "seed", "negative_prompt"]) {
    const value = $(name).value.trim();
    if (value !== "") fields[name] = value;
  }
  if (page.model && page.model.streams && $("stream").checked) fields.stream = "true";
  return fields;
}

$("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("create-error");
  error.textContent = "";
  if (!$("prompt").value.trim()) {
    error.textContent = "Write a prompt first.";
    $("prompt").focus();
    return;
  }
  const fields = formFields();
  const image = page.model && page.model.images ? $("input_reference").files[0] : undefined;
  if (page.model && !page.model.text && !image) {
    error.textContent = "This model animates an image: choose one first.";
    $("input_reference").focus();
    return;
  }
  let options;
  if (image) {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("input_reference", image);
    options = { method: "POST", body: form };
  } else {
    options = { method: "POST", body: JSON.stringify(fields), headers: { "Content-Type": "application/json" } };
  }
  const button = $("submit");
  button.disabled = true;
  try {
    const video = await (await api("/v1/videos", options)).json();
    showVideos([video], false);
    announce("Queued: " + video.prompt);
  } catch (failure) {
    error.textContent = failure.message;
  } finally {
    button.disabled = false;
  }
});

// --- the job list ----------------------------------------------------------------------------------

async function refresh() {
  if (page.needKey) return;
  try {
    const list = await (await api("/v1/videos?limit=50")).json();
    if (!page.needKey) $("list-error").textContent = "";
    showVideos(list.data, true);
  } catch (error) {
    if (error.status !== 401) $("list-error").textContent = error.message;
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}

// Cards for `videos` (newest first), updated in place so players keep playing; `whole`: the list is all
// there is, so cards of videos no longer in it go.
function showVideos(videos, whole) {
  const list = $("jobs");
  const seen = new Set();
  let before = list.firstElementChild;
  for (const video of videos) {
    seen.add(video.id);
    let card = page.cards.get(video.id);
    if (!card) {
      card = makeCard(video);
      page.cards.set(video.id, card);
      if (whole) list.insertBefore(card.item, before);
      else list.prepend(card.item);
    }
    if (whole) before = card.item.nextElementSibling;
    updateCard(card, video);
  }
  if (whole) {
    for (const [id, card] of page.cards) if (!seen.has(id)) dropCard(id, card);
  }
  $("empty").hidden = page.cards.size > 0;
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function makeCard(video) {
  const id = video.id;
  const item = element("li", { class: "job", id: "job-" + id, "data-id": id });
  const title = element("h3", { id: "title-" + id }, video.prompt || "(no prompt)");
  const meta = element("p", { class: "meta" });
  const status = element("p", { class: "status" });
  const bar = element("progress", { max: "100", value: "0", "aria-labelledby": "title-" + id });
  const error = element("p", { class: "error", role: "alert" });
  const video_ = element("video", { controls: "", muted: "", playsinline: "", preload: "auto", hidden: "" });
  video_.muted = true; // generated videos are silent; muted lets a stream start playing by itself
  video_.setAttribute("aria-label", "Video: " + (video.prompt || id));
  const actions = element("div", { class: "actions" });
  const play = element("button", { type: "button", class: "play", hidden: "" }, "Play");
  const save = element("a", { class: "save", hidden: "" }, "Save");
  const remove = element("button", { type: "button", class: "delete" }, "Delete");
  actions.append(play, remove, save);
  item.append(title, meta, status, bar, error, video_, actions);
  const card = { id, item, meta, status, bar, error, video: video_, play, save, remove, stream: !!video.stream };
  card.steer = video.stream ? makeSteer(card) : null;
  if (card.steer) item.insertBefore(card.steer.form, actions);
  play.addEventListener("click", () => playFinished(card));
  remove.addEventListener("click", () => deleteVideo(card));
  return card;
}

function updateCard(card, video) {
  const previous = card.video_status;
  card.video_status = video.status;
  const words = { queued: "queued", in_progress: "in progress", completed: "completed", failed: "failed" };
  card.meta.textContent = [video.id, video.size, video.seconds + " s", video.stream ? "stream" : ""]
    .filter(Boolean)
    .join(" · ");
  card.status.textContent = (words[video.status] || video.status) + " · " + video.progress + "%";
  card.bar.value = video.progress;
  card.bar.setAttribute("aria-valuetext", video.progress + "%");
  card.error.textContent = video.status === "failed" && video.error ? video.error.message : card.error.textContent;
  // Only a running stream is watched: a browser holds few connections to one server, and a queued
  // stream's would wait open. One that ends between two polls plays from the Play button.
  const running = video.status === "in_progress";
  if (card.stream && running && !card.live) watchStream(card);
  if (card.steer) card.steer.form.hidden = !running; // a queued stream takes no lines
  card.play.hidden = !(video.status === "completed" && !card.loaded && !card.watching);
  if (previous && previous !== video.status && (video.status === "completed" || video.status === "failed")) {
    announce((video.prompt || video.id) + ": " + words[video.status]);
  }
}

function dropCard(id, card) {
  if (card.url) URL.revokeObjectURL(card.url);
  if (card.abort) card.abort.abort();
  card.item.remove();
  page.cards.delete(id);
}

function announce(text) {
  $("announce").textContent = text;
}

async function deleteVideo(card) {
  const running = card.video_status === "queued" || card.video_status === "in_progress";
  const question = running ? "Cancel and delete this video?" : "Delete this video and its files?";
  if (!window.confirm(question)) return;
  card.error.textContent = "";
  try {
    await api(videoPath(card.id), { method: "DELETE" });
    dropCard(card.id, card);
    $("empty").hidden = page.cards.size > 0;
    announce("Deleted.");
    $("prompt").focus();
  } catch (error) {
    card.error.textContent = error.message;
  }
}

// --- players ---------------------------------------------------------------------------------------

// A finished video: fetched with the key into a blob, played from there.
async function playFinished(card) {
  card.error.textContent = "";
  card.play.disabled = true;
  try {
    const response = await api(videoPath(card.id) + "/content");
    const blob = await response.blob();
    if (card.url) URL.revokeObjectURL(card.url);
    card.url = URL.createObjectURL(new Blob([blob], { type: "video/mp4" }));
    card.video.src = card.url;
    card.video.hidden = false;
    card.loaded = true;
    card.play.hidden = true;
    card.save.href = card.url;
    card.save.download = card.id + ".mp4";
    card.save.hidden = false;
    await card.video.play();
    card.video.focus();
  } catch (error) {
    card.error.textContent = error.message;
  } finally {
    card.play.disabled = false;
  }
}

// A stream: its fragmented MP4 read as it grows and appended to a MediaSource, played while it grows.
async function watchStream(card) {
  card.live = true;
  if (!window.MediaSource) {
    card.error.textContent = "This browser cannot play a growing video; it plays here once finished.";
    return;
  }
  card.watching = true;
  const source = new MediaSource();
  card.url = URL.createObjectURL(source);
  card.video.src = card.url;
  card.video.hidden = false;
  card.abort = new AbortController();
  try {
    await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    const response = await api(videoPath(card.id) + "/content", { signal: card.abort.signal });
    await appendGrowing(card, source, response.body.getReader());
    if (source.readyState === "open") source.endOfStream();
    card.loaded = true;
  } catch (error) {
    if (error.name !== "AbortError") card.error.textContent = error.message;
  } finally {
    card.watching = false; // not watched again; once finished, the Play button fetches the whole video
  }
}

async function appendGrowing(card, source, reader) {
  const queue = [];
  let buffer = null;
  let head = new Uint8Array(0); // the bytes before the codec is known (the header holds it)
  const pump = () => {
    if (buffer && !buffer.updating && queue.length && source.readyState === "open") {
      buffer.appendBuffer(queue.shift());
    }
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!buffer) {
      head = joined(head, value);
      const codec = avcCodec(head);
      if (!codec) {
        if (head.length > 1 << 20) throw new Error("the stream's header names no H.264 codec");
        continue;
      }
      const type = 'video/mp4; codecs="' + codec + '"';
      if (!MediaSource.isTypeSupported(type)) throw new Error("this browser cannot play " + type);
      buffer = source.addSourceBuffer(type);
      buffer.addEventListener("updateend", pump);
      queue.push(head);
      pump();
      card.video.play().catch(() => {}); // may wait for data; the controls play it too
      continue;
    }
    queue.push(value);
    pump();
  }
  while (buffer && (queue.length || buffer.updating)) {
    await new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
  }
}

function joined(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// "avc1.PPCCLL" from the avcC box in the MP4's header: profile, compatibility and level.
function avcCodec(bytes) {
  for (let i = 0; i + 11 < bytes.length; i++) {
    if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) {
      const hex = (n) => n.toString(16).padStart(2, "0");
      return "avc1." + hex(bytes[i + 5]) + hex(bytes[i + 6]) + hex(bytes[i + 7]);
    }
  }
  return null;
}

// --- steering --------------------------------------------------------------------------------------

function makeSteer(card) {
  const id = card.id;
  const form = element("form", { class: "steer", hidden: "" });
  const label = element("label", { for: "steer-" + id }, "Steer: a line takes over from the next chunk");
  const row = element("div", { class: "row" });
  const input = element("input", { id: "steer-" + id, type: "text", autocomplete: "off" });
  const send = element("button", { type: "submit" }, "Send");
  const end = element("button", { type: "button", class: "end" }, "End stream");
  const sent = element("ol", { class: "sent", "aria-label": "Lines sent" });
  row.append(input, send);
  form.append(label, row, end, sent);
  const steer = async (line) => {
    card.error.textContent = "";
    try {
      await api(videoPath(id) + "/prompts", {
        method: "POST",
        body: JSON.stringify({ prompt: line }),
        headers: { "Content-Type": "application/json" },
      });
      sent.append(element("li", {}, line));
      return true;
    } catch (error) {
      card.error.textContent = error.message;
      return false;
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const line = input.value.trim();
    if (line && (await steer(line))) input.value = "";
    input.focus();
  });
  end.addEventListener("click", () => steer("/quit")); // as `vidgen stream --live` ends: chunks kept
  return { form, input };
}

// --- start -----------------------------------------------------------------------------------------

loadModel();
watchHealth();
poll();
