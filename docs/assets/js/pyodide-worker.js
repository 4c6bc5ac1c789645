// The one Web Worker that owns Pyodide for the whole visit (a module worker: Pyodide needs one).
// It loads the self-hosted Pyodide core (assets/pyodide/, copied from the pinned npm package at build
// time), unpacks assets/snippets.zip (the snippets/loracalc and snippets/lora_course files the tests import) and then answers
// {id, kind: "call", name, kwargs} and {id, kind: "run", source} with plain JSON text from Python.
// No Python lives here: lora_course.widgets.call_json and run_code_json do the work.
import { loadPyodide } from "../pyodide/pyodide.mjs";

const started = performance.now();

const ready = (async () => {
  // snippets.zip downloads while Pyodide starts (it was fetched after, in series): Python starts on the
  // reader's first touch, so every part of the wait is felt.
  const snippets = fetch(new URL("../snippets.zip", import.meta.url)).then((response) => {
    if (!response.ok) throw new Error(`snippets.zip: HTTP ${response.status}`);
    return response.arrayBuffer();
  });
  snippets.catch(() => {}); // reported below, once Pyodide is up
  const pyodide = await loadPyodide({ indexURL: new URL("../pyodide/", import.meta.url).href });
  pyodide.unpackArchive(await snippets, "zip", { extractDir: "/home/pyodide/site-packages" });
  pyodide.pyimport("sys").path.insert(0, "/home/pyodide/site-packages");
  return pyodide.pyimport("lora_course.widgets");
})();

ready.then(
  () => postMessage({ type: "ready", ms: performance.now() - started }),
  (error) => postMessage({ type: "failed", message: String(error && error.message || error) }),
);

self.onmessage = async (event) => {
  const { id, kind, name, kwargs, source } = event.data;
  try {
    const widgets = await ready;
    const json = kind === "run"
      ? widgets.run_code_json(String(source))
      : widgets.call_json(String(name), JSON.stringify(kwargs || {}));
    postMessage({ id, ok: true, json });
  } catch (error) {
    postMessage({ id, ok: false, message: String(error && error.message || error) });
  }
};
