// The page side of the site's Python: one bridge to the Pyodide worker, one generic widget script,
// the runnable code blocks and the "Python: loading / ready / failed" indicator.
// JavaScript computes nothing here: it reads form values, sends them to loracalc, and places what comes
// back. A classic script (not a module), so that from file:// it still runs and says why Python is off.
(function () {
  "use strict";

  var RUN_LIMIT_MS = 10000;
  var SERVE_COMMAND = "scripts/serve";
  var script = document.currentScript;
  var ASSETS = new URL("../", script ? script.src : location.href); // .../assets/

  // ------------------------------------------------------------------ the bridge to the worker
  var bridge = {
    state: "idle",          // idle | loading | ready | failed
    reason: "",
    worker: null,
    pending: new Map(),     // id -> {resolve, reject, timer}
    nextId: 1,
    waiters: [],            // callbacks waiting for ready (or failed)
    listeners: [],          // called with (state, reason) on every change
    readyMs: null,          // worker start -> Python ready, ms
    startedAt: null,        // page time when the first worker was created
    readyAt: null,          // page time (ms since navigation start) when Python first became ready
    restarts: 0,
    restarting: false,      // a fresh worker is loading after a Stop or a time limit
    running: 0,             // runnable examples in flight (widget calls wait behind them in the worker)
  };

  function setState(state, reason) {
    bridge.state = state;
    bridge.reason = reason || "";
    bridge.listeners.forEach(function (fn) { try { fn(state, bridge.reason); } catch (e) { /* keep going */ } });
    if (state === "ready" || state === "failed") {
      var waiters = bridge.waiters;
      bridge.waiters = [];
      waiters.forEach(function (fn) { fn(); });
    }
  }

  function whyUnavailable() {
    if (location.protocol === "file:") {
      return "this page was opened from a file (file://), where browsers do not let a page start Python";
    }
    if (typeof WebAssembly !== "object") return "this browser has WebAssembly turned off or does not support it";
    if (typeof Worker !== "function") return "this browser does not allow Web Workers";
    return "";
  }

  function startWorker() {
    if (bridge.state === "loading" || bridge.state === "ready") return;
    var why = whyUnavailable();
    if (why) { setState("failed", why); return; }
    setState("loading");
    if (bridge.startedAt === null) bridge.startedAt = performance.now();
    var worker;
    try {
      worker = new Worker(new URL("js/pyodide-worker.js", ASSETS), { type: "module" });
    } catch (error) {
      setState("failed", "the browser blocked the Python worker (" + error.message + ")");
      return;
    }
    bridge.worker = worker;
    worker.onmessage = function (event) {
      var msg = event.data;
      if (msg.type === "ready") {
        bridge.readyMs = msg.ms;
        if (bridge.readyAt === null) bridge.readyAt = performance.now(); // first ready of this visit
        bridge.restarting = false;
        setState("ready");
        keepPythonOffline();
      } else if (msg.type === "failed") {
        setState("failed", "Python could not load (" + msg.message + ")");
      } else if (bridge.pending.has(msg.id)) {
        var job = bridge.pending.get(msg.id);
        bridge.pending.delete(msg.id);
        clearTimeout(job.timer);
        if (msg.ok) job.resolve(JSON.parse(msg.json));
        else job.reject(new Error(msg.message));
      }
    };
    worker.onerror = function (event) {
      if (bridge.state === "loading") {
        event.preventDefault();
        setState("failed", "the Python worker could not start (" + (event.message || "blocked or failed to load") + ")");
      }
    };
  }

  // Ask the service worker (if any) to keep the Pyodide files for offline visits.
  function keepPythonOffline() {
    if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
    navigator.serviceWorker.ready.then(function (reg) {
      if (reg.active) reg.active.postMessage({ type: "cache-python" });
    }).catch(function () { /* no service worker: nothing to keep */ });
  }

  function whenSettled() {
    return new Promise(function (resolve) {
      if (bridge.state === "ready" || bridge.state === "failed") resolve();
      else bridge.waiters.push(resolve);
    });
  }

  function post(message, limitMs) {
    if (bridge.state === "idle") startWorker(); // a call is a reader's request: Python starts for it
    return whenSettled().then(function () {
      if (bridge.state !== "ready") throw new Error("python-unavailable");
      return new Promise(function (resolve, reject) {
        var id = bridge.nextId++;
        var job = { resolve: resolve, reject: reject, timer: null };
        if (limitMs) {
          job.timer = setTimeout(function () {
            bridge.pending.delete(id);
            var err = new Error("timeout");
            err.timeout = true;
            reject(err);
            restartWorker();
          }, limitMs);
        }
        bridge.pending.set(id, job);
        message.id = id;
        bridge.worker.postMessage(message);
      });
    });
  }

  // A run past the limit cannot be interrupted inside Pyodide without cross-origin isolation, so the
  // worker is terminated and a fresh one loaded; calls in flight are retried on the new worker.
  function restartWorker() {
    if (bridge.worker) bridge.worker.terminate();
    bridge.worker = null;
    bridge.restarts += 1;
    bridge.restarting = true;
    var pending = bridge.pending;
    bridge.pending = new Map();
    setState("idle");
    startWorker();
    pending.forEach(function (job) {
      clearTimeout(job.timer);
      var err = new Error("restarted");
      err.restarted = true;
      job.reject(err);
    });
  }

  /** call(name, kwargs) -> Promise of {ok, outputs} or {ok: false, field, message}: plain JSON from loracalc. */
  function call(name, kwargs) {
    return post({ kind: "call", name: name, kwargs: kwargs || {} }, 0);
  }

  /** run(source) -> Promise of {stdout, value, error, hidden_lines}; rejects with err.timeout after RUN_LIMIT_MS. */
  function run(source) {
    bridge.running += 1;
    notify();
    function done() { bridge.running -= 1; notify(); }
    return post({ kind: "run", source: source }, RUN_LIMIT_MS).then(function (r) { done(); return r; },
                                                                 function (e) { done(); throw e; });
  }

  // Tell the listeners (badge, run buttons, widgets) that busy/restarting changed, without a state change.
  function notify() { setState(bridge.state, bridge.reason); }

  window.loracalcPython = {
    call: call, run: run, start: startWorker, restart: restartWorker,
    get state() { return bridge.state; },
    get reason() { return bridge.reason; },
    get readyMs() { return bridge.readyMs; },
    get readyAt() { return bridge.readyAt; },
    get startedAt() { return bridge.startedAt; },
    get restarts() { return bridge.restarts; },
    get busy() { return bridge.running > 0; },
    get restarting() { return bridge.restarting; },
    whenSettled: whenSettled,
    onChange: function (fn) { bridge.listeners.push(fn); },
  };

  // ------------------------------------------------------------------ status indicator and notice
  var LABELS = { idle: "Python: starts when you use a calculator", loading: "Python: starting (once per visit)\u2026",
                 ready: "Python: ready", failed: "Python: failed" };

  // What the badge shows: the worker's state, and also whether it is busy with an example, restarting,
  // or off because the page was opened from a file (not an error: the numbers shown are still right).
  function badgeState() {
    if (bridge.state === "failed" && location.protocol === "file:") return ["off", "Python: off (read from a file)"];
    if (bridge.restarting && bridge.state !== "failed") return ["restarting", "Python: restarting\u2026"];
    if (bridge.state === "ready" && bridge.running > 0) return ["busy", "Python: busy (running an example)"];
    return [bridge.state, LABELS[bridge.state]];
  }

  function showStatus() {
    var badge = document.querySelector(".lc-py-status");
    var first = document.querySelector("[data-widget], [data-runnable]");
    if (!badge) {
      // In the text, just above the page's first widget or example, where it covers nothing (a fixed badge
      // covered the sidebar and, on phones, widget results). Instant navigation replaces it with the page.
      badge = document.createElement("div");
      badge.className = "lc-py-status";
      badge.setAttribute("role", "status");
      if (first) first.parentNode.insertBefore(badge, first);
      else document.body.appendChild(badge);
    }
    var shown = badgeState();
    badge.dataset.state = shown[0];
    if (badge.textContent !== shown[1]) badge.textContent = shown[1];
    badge.title = bridge.state === "failed" ? bridge.reason
      : bridge.state === "idle" ? "The numbers shown were computed when the site was built. Python (about 3 MB) downloads the first time you change an input or run an example, then stays for the whole visit."
      : "The calculators on this page run the module's Python in your browser.";

    var notice = document.querySelector(".lc-py-notice");
    if (bridge.state === "failed" && first) {
      var fromFile = location.protocol === "file:";
      if (!notice) {
        notice = document.createElement("div");
        // Read from disk nothing is broken: an info box, not a warning.
        notice.className = "admonition " + (fromFile ? "info" : "warning") + " lc-py-notice";
        first.parentNode.insertBefore(notice, first);
      }
      notice.innerHTML = "";
      var title = document.createElement("p");
      title.className = "admonition-title";
      title.textContent = fromFile ? "Reading from a file: every number shown is right, the inputs are fixed"
                                   : "The calculators are not interactive here";
      var body = document.createElement("p");
      body.append(fromFile
        ? "Every number on this page is correct for the inputs shown: it was computed by the module's Python when the site was built. Changing an input has no effect here, because " + bridge.reason + ". For the interactive version, run "
        : "Python could not start: " + bridge.reason + ". The numbers shown are correct for the default inputs, computed when the site was built. For the interactive version, run ");
      var code = document.createElement("code");
      code.textContent = SERVE_COMMAND;
      body.append(code, " in a copy of the project and open ");
      var link = document.createElement("code");
      link.textContent = "http://127.0.0.1:8000/";
      body.append(link, " (or serve this folder with ");
      var alt = document.createElement("code");
      alt.textContent = "python -m http.server";
      body.append(alt, ").");
      notice.append(title, body);
    } else if (notice) {
      notice.remove();
    }
  }
  bridge.listeners.push(function () { if (document.querySelector("[data-widget], [data-runnable]")) showStatus(); });

  // ------------------------------------------------------------------ reading and writing a form
  function fields(widget) {
    return Array.prototype.filter.call(widget.querySelectorAll("input[name], select[name], textarea[name]"), function (el) {
      return el.closest("[data-widget]") === widget && !el.disabled;
    });
  }

  // The same rules as hooks/widgets.py form_inputs(), which reads the defaults at build time.
  // A slider that shares its name with a typed field is only a second way to set it: the typed field's
  // value is the one sent (a slider cannot hold a bad value, so it would hide the field's error).
  function readInputs(widget) {
    var values = {};
    var typed = {};
    fields(widget).forEach(function (el) {
      var type = (el.type || "").toLowerCase();
      if (["button", "submit", "reset", "file", "image"].indexOf(type) >= 0) return;
      if (type === "range") {
        if (!typed[el.name]) values[el.name] = el.value;
      } else if (type === "radio") {
        if (el.checked) values[el.name] = el.value;
        else if (!(el.name in values)) values[el.name] = "";
      } else if (type === "checkbox") {
        values[el.name] = el.checked ? el.value : "";
      } else {
        values[el.name] = el.value;
        typed[el.name] = true;
      }
    });
    return values;
  }

  // A slider moved by the reader: its typed twin (same name) takes the value, which is what is sent.
  function copyToTypedTwin(widget, slider) {
    if ((slider.type || "").toLowerCase() !== "range") return;
    fields(widget).forEach(function (el) {
      if (el !== slider && el.name === slider.name && (el.type || "").toLowerCase() !== "range") el.value = slider.value;
    });
  }

  // After Python accepted the inputs, sliders show them (a value it refused leaves them where they were).
  function moveSliders(widget, inputs) {
    fields(widget).forEach(function (el) {
      if ((el.type || "").toLowerCase() === "range" && el.name in inputs) el.value = inputs[el.name];
    });
  }

  function writeInputs(widget, values) {
    fields(widget).forEach(function (el) {
      if (!(el.name in values)) return;
      var v = String(values[el.name]);
      var type = (el.type || "").toLowerCase();
      if (type === "radio") { if (el.checked !== (el.value === v)) el.checked = el.value === v; }
      else if (type === "checkbox") { if (el.checked !== (v !== "")) el.checked = v !== ""; }
      else {
        // A select marked data-other-option takes a value outside its list (a trainer's config's target modules,
        // a preset the list leaves out) as one more option, labelled with the value itself.
        if (el.tagName === "SELECT" && el.hasAttribute("data-other-option") && v !== "" &&
            !Array.prototype.some.call(el.options, function (o) { return o.value === v; })) {
          var other = document.createElement("option");
          other.value = v;
          other.textContent = v;
          el.appendChild(other);
        }
        if (el.value !== v) el.value = v; // an unchanged field is left alone (caret, selection)
      }
    });
  }

  function outputsOf(widget) {
    return Array.prototype.filter.call(widget.querySelectorAll("[data-output]"), function (el) {
      return el.closest("[data-widget]") === widget;
    });
  }

  function placeOutputs(widget, outputs) {
    outputsOf(widget).forEach(function (el) {
      var key = el.dataset.output;
      if (!(key in outputs)) return;
      var v = outputs[key];
      v = v === null || v === undefined ? "" : typeof v === "boolean" ? (v ? "yes" : "no") : typeof v === "string" ? v : String(v);
      if (el.hasAttribute("data-html")) { if (el.innerHTML !== v) el.innerHTML = v; }
      else if (el.textContent !== v) el.textContent = v;
    });
  }

  function showError(widget, field, message) {
    var slots = widget.querySelectorAll("[data-error-for]");
    var target = null;
    slots.forEach(function (slot) {
      if (slot.closest("[data-widget]") !== widget) return;
      if (slot.dataset.errorFor === (field || "")) target = slot;
      slot.textContent = "";
    });
    if (!target && field) {
      slots.forEach(function (slot) { if (!target && slot.dataset.errorFor === "" && slot.closest("[data-widget]") === widget) target = slot; });
    }
    fields(widget).forEach(function (el) {
      if (field && el.name === field) el.setAttribute("aria-invalid", "true");
      else el.removeAttribute("aria-invalid");
    });
    if (target && message) {
      target.textContent = message;
      openDisclosure(target);
    }
  }

  // A widget's settings behind a <details data-more> ("More settings"): a message for a field in there, or a
  // link or saved state that sets one away from its default, opens it, so nothing set or wrong is hidden.
  function openDisclosure(el) {
    var box = el.closest("details[data-more]");
    if (box && !box.open) box.open = true;
  }

  function openChangedDisclosures(widget) {
    fields(widget).forEach(function (el) {
      var changed = el.tagName === "SELECT"
        ? Array.prototype.some.call(el.options, function (o) { return o.selected !== o.defaultSelected; })
        : (el.type === "radio" || el.type === "checkbox") ? el.checked !== el.defaultChecked : el.value !== el.defaultValue;
      if (changed) openDisclosure(el);
    });
  }

  // A message that asks for an input not given yet (Python's "waiting") is a prompt: muted, and its field is
  // not marked invalid. promptFor(widget, null) turns every slot back into an error slot.
  function promptFor(widget, field) {
    widget.querySelectorAll("[data-error-for]").forEach(function (slot) {
      if (slot.closest("[data-widget]") !== widget) return;
      slot.classList.toggle("lc-prompt", field !== null && slot.dataset.errorFor === field);
    });
    if (field !== null) fields(widget).forEach(function (el) { if (el.name === field) el.removeAttribute("aria-invalid"); });
  }

  function announce(widget, text) {
    var live = widget.querySelector(":scope > .lc-live");
    if (!live) {
      live = document.createElement("p");
      live.className = "lc-live lc-visually-hidden";
      live.setAttribute("aria-live", "polite");
      widget.appendChild(live);
    }
    live.textContent = "";
    setTimeout(function () { live.textContent = text; }, 30);
  }

  // ------------------------------------------------------------------ state in the URL and localStorage
  // A widget marked data-url-state keeps its inputs in the address, one parameter per field. The attribute's
  // value names further parameters that are not fields but that Python reads and writes (config_z: a pasted
  // config.json, compressed by Python). Python's "_url" output says what the address holds instead of the
  // form's values: a parameter's value, or "" to leave it out (the raw config text never goes there).
  function urlKeys(widget) {
    var names = fields(widget).map(function (el) { return el.name; });
    return names.concat((widget.dataset.urlState || "").split(/\s+/).filter(Boolean));
  }

  function urlState(widget) {
    var params = new URLSearchParams(location.search);
    var found = {}, any = false;
    urlKeys(widget).forEach(function (n) { if (params.has(n)) { found[n] = params.get(n); any = true; } });
    return any ? found : null;
  }

  function saveUrlState(widget, inputs, fromPython) {
    var params = new URLSearchParams(location.search);
    Object.keys(inputs).forEach(function (k) { if (k !== "action") params.set(k, inputs[k]); });
    if (fromPython && typeof fromPython === "object") {
      Object.keys(fromPython).forEach(function (k) {
        if (fromPython[k] === "" || fromPython[k] === null) params.delete(k);
        else params.set(k, String(fromPython[k]));
      });
    }
    var url = location.pathname + "?" + params.toString() + location.hash;
    history.replaceState(history.state, "", url);
  }

  function storedState(key) {
    try {
      var parsed = JSON.parse(localStorage.getItem(key));
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return null;
      var clean = {};
      Object.keys(parsed).forEach(function (k) { if (typeof parsed[k] === "string") clean[k] = parsed[k]; });
      return clean;
    } catch (e) {
      return null; // unreadable or not JSON: ignored, the defaults stay
    }
  }

  function forget(key) { try { localStorage.removeItem(key); } catch (e) { /* storage blocked */ } }

  function save(key, inputs) {
    var copy = {};
    Object.keys(inputs).forEach(function (k) { if (k !== "action") copy[k] = inputs[k]; });
    try { localStorage.setItem(key, JSON.stringify(copy)); } catch (e) { /* storage full or blocked */ }
  }

  // ------------------------------------------------------------------ what the outputs stand for
  // A widget's outputs are always for some inputs. data-state says whether those are the inputs on screen:
  //   current  the outputs are for the inputs shown;
  //   pending  an answer for the inputs shown is on its way (Python computing, or still loading);
  //   stale    the inputs shown are not valid (or Python cannot run here): the outputs are for the last
  //            valid inputs, dimmed and labelled as such.
  // The label is one line in the widget (or in its [data-state-note] slot, e.g. a sticky result bar).
  function stateNote(widget) {
    var slot = Array.prototype.filter.call(widget.querySelectorAll("[data-state-note]"), function (el) {
      return el.closest("[data-widget]") === widget;
    })[0];
    if (slot) return slot;
    slot = document.createElement("p");
    slot.className = "lc-state-note";
    slot.setAttribute("data-state-note", "");
    var form = widget.querySelector(":scope > form");
    if (form) form.after(slot); else widget.prepend(slot);
    return slot;
  }

  function markState(widget, state, text, waiting) {
    if (widget.dataset.state !== state) widget.dataset.state = state;
    // stale because an input is not given yet (not because one is wrong): styled as a prompt, not in red
    if (waiting) widget.setAttribute("data-waiting", ""); else widget.removeAttribute("data-waiting");
    var note = stateNote(widget);
    if (note.textContent !== (text || "")) note.textContent = text || "";
    if (state === "current") widget.removeAttribute("aria-busy");
    else if (state === "pending") widget.setAttribute("aria-busy", "true");
    else widget.removeAttribute("aria-busy");
  }

  var PENDING_AFTER_MS = 120;

  function pendingText() {
    if (bridge.state === "ready" && bridge.running > 0) return "Waiting for the running code example to finish (or Stop it)\u2026 the numbers below are for the previous inputs.";
    if (bridge.state === "ready") return "Computing\u2026";
    return "Python is starting (a few seconds, once per visit)\u2026 the numbers below are for the previous inputs and update when it is ready.";
  }

  // ------------------------------------------------------------------ one widget
  function attachWidget(widget) {
    if (widget.__lc) return;
    var name = widget.dataset.widget;
    var me = widget.__lc = { seq: 0, shownFor: null };
    // The inputs the build prerendered the outputs for (hooks/widgets.py writes them); a browser that
    // restored other form values on reload makes those outputs stale until Python answers.
    try { me.shownFor = widget.dataset.renderedFor ? JSON.stringify(JSON.parse(widget.dataset.renderedFor)) : null; } catch (e) { me.shownFor = null; }
    var defaults = readInputs(widget);

    function sameAsShown(inputs) {
      if (me.shownFor === null) return false;
      var shown = JSON.parse(me.shownFor);
      return Object.keys(inputs).every(function (k) { return k === "action" || String(inputs[k]) === String(shown[k]); });
    }

    function update(extra, restore, changed) {
      var inputs = Object.assign(readInputs(widget), restore || {}, extra || {});
      // Same values as the last request: nothing to ask. The key leaves out which field fired, because a
      // text field's "change" comes on blur, when the reader moves to another field, with nothing new.
      var key = JSON.stringify(inputs);
      if (!extra && !restore && key === me.last) return Promise.resolve();
      if (changed) inputs._changed = changed;
      me.last = extra ? null : key;
      var seq = ++me.seq;
      // data-computing: an answer is on its way (set at once; aria-busy waits PENDING_AFTER_MS to avoid flicker).
      widget.setAttribute("data-computing", "");
      function settled() { if (seq === me.seq) widget.removeAttribute("data-computing"); }
      if (bridge.state === "failed") {
        settled();
        // No Python here: the outputs stay those of the last valid inputs, and say so if the form differs.
        if (sameAsShown(inputs)) markState(widget, "current", "");
        else markState(widget, "stale", "Not updated: Python is not running here (" + bridge.reason + "). The numbers below are for the inputs the page was built with.");
        return Promise.resolve();
      }
      // Waiting on a loading or busy Python: marked at once. A ready Python answers within a frame or two, so
      // the mark waits PENDING_AFTER_MS (no flicker, and no restyling of the widget for every keystroke).
      clearTimeout(me.pendingTimer);
      if (bridge.state === "ready" && !bridge.running) {
        me.pendingTimer = setTimeout(function () { if (seq === me.seq) markState(widget, "pending", pendingText()); }, PENDING_AFTER_MS);
      } else {
        markState(widget, "pending", pendingText());
        // A field with its own feedback output (a quiz question's q1 -> q1_feedback) says it there too: the
        // widget's state line may be far from the choice just made.
        var near = changed && widget.querySelector('[data-output="' + changed + '_feedback"]');
        if (near && near.closest("[data-widget]") === widget) near.textContent = pendingText();
      }
      return call(name, inputs).then(function (result) {
        clearTimeout(me.pendingTimer);
        if (seq !== me.seq) return;
        settled();
        if (result.ok) {
          var set = result.outputs._set;   // form values Python chose (e.g. d from a model preset)
          if (restore) writeInputs(widget, restore);
          if (set && typeof set === "object") {
            // never rewrite the field the reader is typing in (a preset switching to Custom still shows)
            var others = {};
            Object.keys(set).forEach(function (k) { if (k !== changed) others[k] = set[k]; });
            writeInputs(widget, others);
          }
          showError(widget, null, "");
          promptFor(widget, null);
          moveSliders(widget, Object.assign({}, inputs, set || {}));
          placeOutputs(widget, result.outputs);
          // Python may name inputs to clear (a quiz question reopened): radios unchecked, fields emptied.
          if (Array.isArray(result.outputs.reset_inputs)) {
            var cleared = {};
            result.outputs.reset_inputs.forEach(function (n) { cleared[n] = ""; });
            writeInputs(widget, cleared);
          }
          var shown = Object.assign({}, inputs, set || {});
          delete shown._changed;
          me.shownFor = JSON.stringify(shown);
          markState(widget, "current", "");
          widget.dataset.updated = String(Date.now());
          if (!restore) announce(widget, typeof result.outputs.announce === "string" ? result.outputs.announce : "Results updated.");
          if (widget.hasAttribute("data-url-state") && !restore) saveUrlState(widget, readInputs(widget), result.outputs._url);
          if (widget.dataset.persist) save(widget.dataset.persist, readInputs(widget));
        } else if (restore && widget.dataset.persist) {
          // A stale or broken saved state is dropped, and the form goes back to what the outputs show.
          forget(widget.dataset.persist);
          writeInputs(widget, defaults);
          markState(widget, "current", "");
        } else if (result.waiting) {
          // An input not given yet (an empty config.json box just chosen): a prompt beside it, not an error.
          showError(widget, result.field, result.message);
          promptFor(widget, result.field || "");
          markState(widget, "stale", "Waiting for your input. The numbers below are for the last complete inputs.", true);
          announce(widget, result.message);
        } else {
          showError(widget, result.field, result.message);
          promptFor(widget, null);
          markState(widget, "stale", "Not updated: " + result.message + ". The numbers below are for the last valid inputs.");
          announce(widget, result.message);
        }
      }).catch(function (error) {
        clearTimeout(me.pendingTimer);
        if (seq !== me.seq) return;
        settled();
        if (error.restarted) return update(extra, restore, changed); // the worker was restarted under us: once more
        if (error.message === "python-unavailable") return update(extra, restore, changed); // now marks it stale
        markState(widget, "stale", "Not updated: Python error: " + error.message);
        showError(widget, "", "Python error: " + error.message);
      });
    }
    me.update = update;

    // Keep the pending line true while Python loads, restarts or runs an example.
    bridge.listeners.push(function () {
      if (widget.dataset.state === "pending") {
        var note = stateNote(widget), text = pendingText();
        if (note.textContent !== text) note.textContent = text;
      }
    });

    // In a widget marked data-choose-with-space (the quiz, where choosing is final), arrow keys move
    // between a group's options without choosing one; Space or a click chooses the focused option.
    if (widget.hasAttribute("data-choose-with-space")) {
      widget.addEventListener("keydown", function (event) {
        var el = event.target;
        var step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
        if (!step || el.type !== "radio" || event.altKey || event.ctrlKey || event.metaKey) return;
        event.preventDefault();
        var group = fields(widget).filter(function (f) { return f.type === "radio" && f.name === el.name; });
        var next = group[(group.indexOf(el) + step + group.length) % group.length];
        if (next) next.focus();
      });
    }
    widget.addEventListener("input", function (event) { if (event.target.name) { copyToTypedTwin(widget, event.target); update(null, null, event.target.name); } });
    widget.addEventListener("change", function (event) { if (event.target.name) update(null, null, event.target.name); });
    widget.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button || button.closest("[data-widget]") !== widget) return;
      if (button.dataset.copy) {
        var out = widget.querySelector('[data-output="' + button.dataset.copy + '"]');
        copyText(out ? out.textContent : "").then(function (ok) {
          var said = ok ? "Copied." : "Copy failed: select the text and copy it.";
          announce(widget, said);
          confirmOn(button, ok ? "Copied \u2713" : "Copy failed");
        });
      }
      if (button.hasAttribute("data-copy-link")) {
        copyText(location.href).then(function (ok) {
          announce(widget, ok ? "Link copied." : "Copy failed: copy the address bar.");
          confirmOn(button, ok ? "Link copied \u2713" : "Copy failed: use the address bar");
        });
      }
      if (button.dataset.action) {
        var action = button.dataset.action;
        // Let a type="reset" button reset the form first, then send the action.
        setTimeout(function () { update({ action: action }); }, 0);
      }
    });

    // A file the reader chooses (input type=file with data-file-into=FIELD) or drops on the widget is read here,
    // in the browser, and its text put into FIELD, as if pasted; Python reads it from there. A picker inside a
    // [data-drop-zone] takes the files dropped on that zone; the widget's other picker takes those dropped anywhere
    // else. Nothing is uploaded. At most data-max-bytes (+1, so that Python can say the file is too large) are read.
    var pickers = Array.prototype.filter.call(widget.querySelectorAll("input[type=file][data-file-into]"), function (el) {
      return el.closest("[data-widget]") === widget;
    });
    if (pickers.length) {
      var readFile = function (picker, file) {
        var into = picker.dataset.fileInto;
        var box = fields(widget).filter(function (el) { return el.name === into && el.type !== "file"; })[0];
        if (!file || !box) return;
        var limit = Number(picker.dataset.maxBytes) || file.size;
        file.slice(0, limit + 1).text().then(function (text) {
          box.value = text;
          update(null, null, into);
        }, function (error) {
          showError(widget, into, "Could not read " + file.name + ": " + error.message);
        });
      };
      var pickerFor = function (target) {
        var zone = target && target.closest ? target.closest("[data-drop-zone]") : null;
        var inZone = zone && widget.contains(zone) ? zone.querySelector("input[type=file][data-file-into]") : null;
        return inZone || pickers.filter(function (el) { return !el.closest("[data-drop-zone]"); })[0] || null;
      };
      var hasFiles = function (event) {
        return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types || [], "Files") >= 0;
      };
      pickers.forEach(function (picker) {
        picker.addEventListener("change", function () { readFile(picker, picker.files && picker.files[0]); });
      });
      widget.addEventListener("dragover", function (event) {
        if (!hasFiles(event)) return;       // dragged text still goes into a text field the usual way
        event.preventDefault();             // without this the browser would open the file instead
        event.dataTransfer.dropEffect = "copy";
        widget.classList.add("lc-drop-target");
      });
      widget.addEventListener("dragleave", function (event) {
        if (!widget.contains(event.relatedTarget)) widget.classList.remove("lc-drop-target");
      });
      widget.addEventListener("drop", function (event) {
        widget.classList.remove("lc-drop-target");
        if (!hasFiles(event)) return;
        event.preventDefault();
        var picker = pickerFor(event.target);
        if (picker) readFile(picker, event.dataTransfer.files[0]);
      });
    }

    // "Load from the Hub" ([data-hub-into=FIELD]): the one request the site makes to another host, and only on the
    // reader's click. Python checks the id and builds the URL (loracalc.hub, via lora_course.widgets.hub_config);
    // this asks for it with no cookies and past every cache (the service worker handles only the site's own URLs),
    // hands whatever came back to Python, and puts the config text it returns into FIELD, as if pasted.
    var hubBox = widget.querySelector("[data-hub-into]");
    if (hubBox && hubBox.closest("[data-widget]") === widget) attachHub(widget, hubBox, update);

    // Saved state (URL first, then localStorage) goes into the form at once, so the reader sees their
    // inputs from the first paint; the outputs are marked pending until Python answers for them.
    var fromUrl = widget.hasAttribute("data-url-state") ? urlState(widget) : null;
    var fromStore = !fromUrl && widget.dataset.persist ? storedState(widget.dataset.persist) : null;
    if (widget.dataset.persist && !fromStore && !fromUrl) {
      try { if (localStorage.getItem(widget.dataset.persist) !== null) forget(widget.dataset.persist); } catch (e) { /* blocked */ }
    }
    if (fromUrl || fromStore) {
      writeInputs(widget, fromUrl || fromStore);
      openChangedDisclosures(widget);
      update(null, fromUrl || fromStore);
    } else if (!sameAsShown(readInputs(widget))) {
      update(); // the browser restored other values into the form (reload): bring the outputs up to date
    } else {
      markState(widget, "current", "");
    }
  }

  function attachHub(widget, hubBox, update) {
    var input = hubBox.querySelector("input");
    var button = hubBox.querySelector("[data-hub-load]");
    var note = hubBox.querySelector("[data-hub-note]");
    var into = hubBox.dataset.hubInto;
    function say(text, bad) {
      note.textContent = text;
      note.classList.toggle("lc-error", !!bad);
      hubBox.toggleAttribute("data-hub-failed", !!bad);
    }
    function answerOf(id, response) {
      return response.text().then(function (body) {
        return { repo_id: id, status: String(response.status), body: body, error_code: response.headers.get("X-Error-Code") || "" };
      });
    }
    function load() {
      var id = input.value;
      button.disabled = true;
      call("hub_config", { repo_id: id }).then(function (asked) {
        if (!asked.ok) throw asked;
        say(asked.outputs.note);
        return fetch(asked.outputs.url, { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" })
          .then(function (response) { return answerOf(id, response); },
                function (error) { return { repo_id: id, status: "0", reason: String(error && error.message || error) }; })
          .then(function (answer) { return call("hub_config", answer); });
      }).then(function (loaded) {
        if (!loaded.ok) throw loaded;
        var box = fields(widget).filter(function (el) { return el.name === into && el.type !== "file"; })[0];
        if (box) box.value = loaded.outputs.config;
        say(loaded.outputs.note);
        return update(null, null, into);
      }).catch(function (failed) {
        var message = failed && failed.message === "python-unavailable"
          ? "Python is not running here (" + bridge.reason + "), so the page cannot load a model from the Hub."
          : failed && failed.message ? failed.message : String(failed);
        say(message, true);
        announce(widget, message);
      }).then(function () { button.disabled = false; });
    }
    button.addEventListener("click", load);
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); load(); }
    });
  }

  // A copy button says for a moment, on itself, what happened (the live region alone was invisible).
  function confirmOn(button, text) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = text;
    clearTimeout(button.__lcTimer);
    button.__lcTimer = setTimeout(function () { button.textContent = button.dataset.label; }, 2000);
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(function () { return true; }, function () { return fallbackCopy(text); });
    }
    return Promise.resolve(fallbackCopy(text));
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }

  // ------------------------------------------------------------------ runnable code blocks
  function attachRunnable(box) {
    if (box.__lc) return;
    box.__lc = true;
    var code = box.querySelector("code");
    var original = code ? code.textContent.replace(/\n$/, "") : "";
    var output = box.querySelector(".lc-run-output");
    var note = box.querySelector(".lc-run-note");
    var editor = document.createElement("textarea");
    editor.className = "lc-editor";
    editor.value = original;
    editor.spellcheck = false;
    editor.setAttribute("wrap", "off"); // code keeps its lines; long ones scroll sideways
    editor.rows = Math.min(24, original.split("\n").length + 1);
    editor.setAttribute("aria-label", "Python code of this example (editable)");
    var bar = document.createElement("div");
    bar.className = "lc-run-bar";
    var runButton = document.createElement("button");
    runButton.type = "button";
    runButton.className = "md-button md-button--primary lc-run";
    // Stop: Pyodide cannot be interrupted without cross-origin isolation, so stopping restarts the worker
    // (a few seconds); widget calls in flight are retried on the fresh one.
    var stopButton = document.createElement("button");
    stopButton.type = "button";
    stopButton.className = "md-button lc-run-stop";
    stopButton.textContent = "Stop";
    stopButton.hidden = true;
    var resetButton = document.createElement("button");
    resetButton.type = "button";
    resetButton.className = "md-button lc-run-reset";
    resetButton.textContent = "Reset code";
    var status = document.createElement("span");
    status.className = "lc-run-status";
    status.setAttribute("role", "status");
    bar.append(runButton, stopButton, resetButton, status);
    var startedAt = 0, ticker = null;

    function sync() {
      var failed = bridge.state === "failed";
      var running = box.dataset.running === "1";
      box.classList.toggle("lc-runnable--live", !failed);
      var idle = bridge.state === "idle" && !bridge.restarting;
      runButton.disabled = !(bridge.state === "ready" || idle) || running;
      runButton.textContent = running ? "Running\u2026" : bridge.state === "ready" ? "Run" : idle ? "Run (starts Python)" : failed ? "Run (Python unavailable)"
        : bridge.restarting ? "Run (Python restarting\u2026)" : "Run (Python loading\u2026)";
      stopButton.hidden = !running;
      if (note) note.hidden = !failed;
      if (failed && note) note.textContent = "Runnable example: Python is not available here (" + bridge.reason + ").";
    }
    var highlight = box.querySelector(".highlight");
    highlight.after(editor, bar);
    bridge.listeners.push(sync);
    sync();

    function tick() {
      status.textContent = "Running for " + Math.floor((performance.now() - startedAt) / 1000) + " s (stopped at " + RUN_LIMIT_MS / 1000 + " s)";
    }

    resetButton.addEventListener("click", function () { editor.value = original; });
    editor.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); runButton.click(); }
    });
    stopButton.addEventListener("click", function () {
      if (box.dataset.running !== "1") return;
      box.dataset.stopped = "1";
      restartWorker();
    });
    runButton.addEventListener("click", function () {
      box.dataset.running = "1";
      delete box.dataset.stopped;
      sync();
      output.hidden = false;
      output.classList.remove("lc-run-output--error");
      output.textContent = "Running\u2026";
      startedAt = performance.now();
      ticker = setInterval(tick, 1000);
      run(editor.value).then(function (result) {
        output.textContent = "";
        if (result.stdout) output.append(result.stdout);
        if (result.hidden_lines) {
          var more = document.createElement("span");
          more.className = "lc-run-more";
          more.textContent = (result.stdout.endsWith("\n") ? "" : "\n") + "\u2026 " + result.hidden_lines.toLocaleString("en") +
            " more line" + (result.hidden_lines === 1 ? "" : "s") + " hidden\n";
          output.append(more);
        }
        if (result.value !== null && result.value !== undefined) output.append((result.stdout && !result.stdout.endsWith("\n") ? "\n" : "") + result.value + "\n");
        if (result.error) {
          var err = document.createElement("span");
          err.className = "lc-run-error";
          err.textContent = result.error;
          output.append(err);
        }
        if (!result.stdout && result.value == null && !result.error) output.textContent = "(no output)";
      }, function (error) {
        output.classList.add("lc-run-output--error");
        output.textContent = box.dataset.stopped === "1"
          ? "Stopped by you. Python is restarting (a few seconds); the calculators on this page keep working."
          : error.timeout
          ? "Stopped: this code ran for more than " + RUN_LIMIT_MS / 1000 + " s, so Python was restarted (a few seconds). The calculators on this page keep working."
          : error.message === "python-unavailable" ? "Python is not available here (" + bridge.reason + ")." : "Python error: " + error.message;
      }).then(function () {
        clearInterval(ticker);
        status.textContent = "";
        delete box.dataset.running;
        sync();
      });
    });
  }

  // ------------------------------------------------------------------ per page (Material's instant navigation)
  // Long tables in the text fold after a dozen rows, with a button to show them all (the rows stay in the
  // HTML, so search, print and screen readers' table navigation still have every row once unfolded).
  var FOLD_ROWS = 24;
  function foldLongTables() {
    document.querySelectorAll(".md-typeset table:not([class]):not([data-folded])").forEach(function (table) {
      var rows = table.tBodies.length ? table.tBodies[0].rows.length : 0;
      table.dataset.folded = "";
      if (rows <= FOLD_ROWS) return;
      table.classList.add("lc-folded");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "md-button lc-fold-button";
      button.textContent = "Show all " + rows + " rows";
      button.setAttribute("aria-expanded", "false");
      button.addEventListener("click", function () {
        var folded = table.classList.toggle("lc-folded");
        button.textContent = folded ? "Show all " + rows + " rows" : "Show the first 12 rows only";
        button.setAttribute("aria-expanded", folded ? "false" : "true");
      });
      var box = table.closest(".md-typeset__scrollwrap") || table;
      box.after(button);
    });
  }

  // Anything wider than the screen (a diagram kept at a readable size, a wide table, a drawn widget
  // output) scrolls sideways inside its own box; the box says so in words and with a shaded edge, so a
  // cut-off figure on a phone is never mistaken for the whole figure.
  var SIDEWAYS = ".md-typeset .lc-figure, .md-typeset .md-typeset__scrollwrap, .md-typeset .lc-table-box, .md-typeset .lc-svg-box";
  function markSideways() {
    document.querySelectorAll(SIDEWAYS).forEach(function (box) {
      var wide = box.scrollWidth > box.clientWidth + 2;
      box.classList.toggle("lc-sideways", wide);
      var cue = box.previousElementSibling && box.previousElementSibling.classList.contains("lc-sideways-cue")
        ? box.previousElementSibling : null;
      if (wide && !cue) {
        cue = document.createElement("p");
        cue.className = "lc-sideways-cue";
        cue.textContent = "Wider than the screen: scroll sideways in the box below \u2192";
        box.before(cue);
      } else if (!wide && cue) {
        cue.remove();
      }
      if (wide && !box.hasAttribute("tabindex")) box.setAttribute("tabindex", "0"); // keyboards scroll it too
    });
  }
  var sidewaysTimer = null;
  window.addEventListener("resize", function () { clearTimeout(sidewaysTimer); sidewaysTimer = setTimeout(markSideways, 200); });

  function attachPage() {
    foldLongTables();
    markSideways();
    var widgets = document.querySelectorAll("[data-widget]");
    var runnables = document.querySelectorAll("[data-runnable]");
    if (!widgets.length && !runnables.length) {
      var badge = document.querySelector(".lc-py-status");
      if (badge) badge.remove();
      clearTimeout(idleTimer);
      return; // a page without widgets downloads no Pyodide
    }
    if (bridge.state === "idle") {
      var why = whyUnavailable();
      if (why) setState("failed", why);
      else startAfterIdleDelay();
    }
    showStatus();
    widgets.forEach(attachWidget);
    runnables.forEach(attachRunnable);
  }

  // Python starts only when the reader needs it: the build prerendered every widget's numbers, so a reader
  // who only reads downloads no Pyodide. The first touch of a widget or a runnable example (focus, a click
  // or tap, a key, a mouse button) starts it, once for the whole visit (instant navigation keeps the worker).
  // Scrolling past a widget is not a touch: neither hovering nor a swipe that starts on one counts.
  function touched(event) {
    if (bridge.state !== "idle" || bridge.restarting) return;
    if (event.type === "pointerdown" && event.pointerType === "touch") return; // could be a swipe: wait for the tap
    var target = event.target;
    if (target && target.closest && target.closest("[data-widget], [data-runnable]") && !whyUnavailable()) startWorker();
  }
  ["focusin", "pointerdown", "click", "keydown"].forEach(function (type) {
    document.addEventListener(type, touched, true);
  });

  // Optionally Python also starts after the reader has spent a while on a widget page without touching it
  // (mkdocs.yml extra.python_idle_start_s, written into <meta name="lc-python-idle-start-s">; 0 or absent:
  // only a touch starts it). The delay restarts on each page, and only a page with widgets starts it.
  var idleTimer = null;
  function startAfterIdleDelay() {
    clearTimeout(idleTimer);
    var meta = document.querySelector('meta[name="lc-python-idle-start-s"]');
    var seconds = meta ? Number(meta.content) : 0;
    if (!(seconds > 0)) return;
    idleTimer = setTimeout(function () {
      if (bridge.state !== "idle" || !document.querySelector("[data-widget], [data-runnable]")) return;
      if (window.requestIdleCallback) requestIdleCallback(startWorker, { timeout: 2000 });
      else startWorker();
    }, seconds * 1000);
  }

  // document$ re-fires on every instant navigation. It is not relied on alone: from file:// Material's
  // instant loading cannot start, so the first page is also attached directly (attaching is idempotent).
  if (typeof document$ !== "undefined" && document$.subscribe) document$.subscribe(attachPage);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", attachPage);
  else attachPage();
})();
