// The page of `unclip serve`: plain JavaScript against the server's own API, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("apiKey");
keyInput.value = localStorage.getItem("unclipApiKey") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("unclipApiKey", keyInput.value); loadModel(); });

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (keyInput.value) headers["Authorization"] = "Bearer " + keyInput.value;
  return headers;
}

function setStatus(text, fraction = null, error = false) {
  $("statusText").textContent = text;
  $("status").classList.toggle("error", error);
  if (fraction !== null) $("fill").style.width = Math.round(100 * Math.min(1, Math.max(0, fraction))) + "%";
}

async function loadModel() {
  try {
    const res = await fetch("/v1/models", { headers: authHeaders() });
    const body = await res.json();
    if (!res.ok) { setStatus(body.error.message, 0, true); return; }
    $("model").textContent = body.data.map((m) => m.id).join(" = ");
  } catch (e) { setStatus("The server cannot be reached: " + e, 0, true); }
}

// Tabs.
for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    document.querySelectorAll("#tabs button, .panel").forEach((el) => el.classList.remove("active"));
    button.classList.add("active");
    $(button.dataset.tab).classList.add("active");
  });
}

function newJobId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Polls the job's progress while its request runs: stage, step of step count.
function watch(jobId) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const res = await fetch("/v1/jobs/" + jobId, { headers: authHeaders() });
      if (res.ok) {
        const job = await res.json();
        if (job.status === "running") {
          setStatus(`${job.stage} ${job.step + 1}/${job.step_count} (stage ${job.stages_done + 1})`, (job.step + 1) / job.step_count);
        } else if (job.status === "queued" || job.status === "pending") {
          setStatus("Waiting in the queue…", 0);
        }
      }
    } catch (e) { /* the answer itself will say what went wrong */ }
    if (!stopped) setTimeout(tick, 300);
  };
  setTimeout(tick, 150);
  return () => { stopped = true; };
}

const busyButtons = () => document.querySelectorAll("button[type=submit]");

// Sends one request, shows its progress, and adds its images to the gallery.
async function submit(path, body, caption) {
  const jobId = newJobId();
  const json = !(body instanceof FormData);
  const headers = authHeaders({ "x-unclip-job-id": jobId, ...(json ? { "Content-Type": "application/json" } : {}) });
  busyButtons().forEach((b) => (b.disabled = true));
  setStatus("Sending…", 0);
  const stop = watch(jobId);
  const started = performance.now();
  try {
    const res = await fetch(path, { method: "POST", headers, body: json ? JSON.stringify(body) : body });
    const answer = await res.json();
    if (!res.ok) { setStatus(`${res.status}: ${answer.error.message}`, 0, true); return; }
    answer.data.forEach((item, i) => addToGallery(item, item.theta !== undefined ? `${caption} θ=${item.theta.toFixed(2)}` : `${caption} #${i + 1}`));
    setStatus(`${answer.data.length} image(s) in ${((performance.now() - started) / 1000).toFixed(1)} s.`, 1);
  } catch (e) {
    setStatus("Request failed: " + e, 0, true);
  } finally {
    stop();
    busyButtons().forEach((b) => (b.disabled = false));
  }
}

function addToGallery(item, caption) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = item.url || "data:image/png;base64," + item.b64_json;
  img.alt = caption;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  figure.append(img, text);
  $("gallery").prepend(figure);
}

// Integer fields: empty means "the server's default".
function numbers(form, names) {
  const out = {};
  for (const name of names) {
    const value = form.elements[name] && form.elements[name].value;
    if (value !== undefined && value !== "") out[name] = Number(value);
  }
  return out;
}

function formWith(form, names) {
  const data = new FormData();
  for (const name of names) {
    const el = form.elements[name];
    if (!el) continue;
    if (el.type === "file") { if (el.files[0]) data.append(name, el.files[0], el.files[0].name); }
    else if (el.value !== "") data.append(name, el.value);
  }
  data.append("response_format", "url");
  return data;
}

$("generateForm").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  const body = { prompt: form.elements.prompt.value, size: form.elements.size.value, response_format: "url",
                 ...numbers(form, ["n", "seed", "steps"]) };
  submit("/v1/images/generations", body, `“${body.prompt}”`);
});

$("varyForm").addEventListener("submit", (event) => {
  event.preventDefault();
  submit("/v1/images/variations", formWith(event.target, ["image", "n", "seed"]), "variation");
});

$("interpolateForm").addEventListener("submit", (event) => {
  event.preventDefault();
  submit("/v1/images/interpolations", formWith(event.target, ["image", "image2", "n"]), "interpolation");
});

$("theta").addEventListener("input", () => { $("thetaOut").textContent = Number($("theta").value).toFixed(2); });
$("textdiffForm").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  submit("/v1/images/text-diffs", formWith(form, ["image", "from", "to", "theta", "n"]),
         `“${form.elements.from.value}” → “${form.elements.to.value}”`);
});

// Edits: the image on a canvas; painting erases it there and clears the mask's alpha, which marks the region
// to repaint (alpha 0), as the API's mask does.
const canvas = $("editCanvas");
const ctx = canvas.getContext("2d");
const mask = document.createElement("canvas");
const maskCtx = mask.getContext("2d");
let editFile = null, editBitmap = null, painting = false;

function resetMask() {
  mask.width = canvas.width; mask.height = canvas.height;
  maskCtx.globalCompositeOperation = "source-over";
  maskCtx.fillStyle = "#fff";
  maskCtx.fillRect(0, 0, mask.width, mask.height);
  ctx.globalCompositeOperation = "source-over";
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (editBitmap) ctx.drawImage(editBitmap, 0, 0);
}

$("editImage").addEventListener("change", async (event) => {
  editFile = event.target.files[0];
  if (!editFile) return;
  editBitmap = await createImageBitmap(editFile);
  canvas.width = editBitmap.width; canvas.height = editBitmap.height;
  resetMask();
});
$("clearMask").addEventListener("click", resetMask);

function paint(event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  const r = Number($("brush").value) * canvas.width / Math.max(rect.width, 1) / 2;
  for (const c of [ctx, maskCtx]) {
    c.globalCompositeOperation = "destination-out";
    c.beginPath(); c.arc(x, y, r, 0, 2 * Math.PI); c.fill();
  }
}
canvas.addEventListener("pointerdown", (e) => { painting = true; paint(e); });
canvas.addEventListener("pointermove", (e) => { if (painting) paint(e); });
window.addEventListener("pointerup", () => { painting = false; });

$("editForm").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!editFile) { setStatus("Choose an image first.", 0, true); return; }
  const form = event.target;
  const data = formWith(form, ["prompt", "n", "seed"]);
  data.append("image", editFile, editFile.name);
  const maskBlob = await new Promise((resolve) => mask.toBlob(resolve, "image/png"));
  data.append("mask", maskBlob, "mask.png");
  submit("/v1/images/edits", data, `edit “${form.elements.prompt.value}”`);
});

loadModel();
