// The fmnist page: send the chosen, dropped or pasted images to /predict and show each result.
// Plain browser JavaScript, no libraries: the page works offline and from the package alone.
"use strict";
const $ = (id) => document.getElementById(id);
let tokenRequired = false;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function loadModels() {
  try {
    const response = await fetch("/models");
    const info = await response.json();
    tokenRequired = info.token_required;
    $("token-box").hidden = !tokenRequired;
    const select = $("model");
    select.replaceChildren();
    for (const model of info.models) {
      const option = new Option(`${model.name} (${model.runtime}, ${model.architecture.name || "spec"})`, model.name);
      select.append(option);
    }
    if (!info.ready) { $("status").textContent = "Models are loading…"; setTimeout(loadModels, 500); }
    else $("status").textContent = "";
  } catch (error) {
    showError(`Cannot reach the server: ${error}`);
  }
}

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function resultItem(file, record, seconds) {
  const original = element("img", { src: URL.createObjectURL(file), alt: `the image ${file.name}` });
  const item = element("li", { className: "result" }, original);
  if (record.error) {
    item.append(element("div"), element("div", {}, element("h2", { className: "failed", textContent: `${file.name}: could not be predicted` }),
                                       element("p", { className: "failed", textContent: record.error })));
    return item;
  }
  const seen = element("img", { className: "seen", src: `data:image/png;base64,${record.input_png}`,
                                alt: `the 28×28 image the model saw for ${file.name}` });
  const bars = record.top_k.map((entry) => element("div", { className: "bar" },
    element("span", { textContent: entry.label }),
    element("meter", { min: 0, max: 1, value: entry.probability, title: `${(entry.probability * 100).toFixed(1)}%` }),
    element("span", { textContent: `${(entry.probability * 100).toFixed(1)}%` })));
  item.append(seen, element("div", {},
    element("h2", { className: "label", textContent: `${record.label} (${(record.probability * 100).toFixed(1)}%)` }),
    ...bars,
    element("p", { className: "muted", textContent: `${file.name} · ${(seconds * 1000).toFixed(0)} ms` })));
  return item;
}

async function predict(files) {
  if (!files.length) return;
  showError("");
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  const query = new URLSearchParams({ top_k: $("top-k").value || "3", invert: $("invert").value, show_input: "true" });
  const headers = tokenRequired ? { Authorization: `Bearer ${$("token").value}` } : {};
  $("status").textContent = `Predicting ${files.length} image${files.length > 1 ? "s" : ""}…`;
  const started = performance.now();
  let response, body;
  try {
    response = await fetch(`/models/${encodeURIComponent($("model").value)}/predict?${query}`, { method: "POST", body: form, headers });
    body = await response.json();
  } catch (error) {
    $("status").textContent = "";
    showError(`The request failed: ${error}`);
    return;
  }
  const seconds = (performance.now() - started) / 1000;
  $("status").textContent = response.ok ? `Predicted in ${(seconds * 1000).toFixed(0)} ms.` : "";
  if (!response.ok) showError(`Error ${response.status}: ${body.error || response.statusText}`);
  const records = body.records || [];
  const list = $("results");
  records.forEach((record, position) => list.prepend(resultItem(files[position], record, seconds)));
}

function setUp() {
  const drop = $("drop"), input = $("files");
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  drop.addEventListener("click", (event) => { if (event.target === drop) input.click(); });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    predict([...event.dataTransfer.files]);
  });
  input.addEventListener("change", () => { predict([...input.files]); input.value = ""; });
  document.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (files.length) { event.preventDefault(); predict(files); }
  });
  loadModels();
}

setUp();
