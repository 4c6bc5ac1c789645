"""Latency benchmark: an input change to the updated outputs on the page, after Pyodide is ready.

Not a timed test (timings depend on the machine); run it and read the figures:

    .venv/bin/python tests/widgets/bench_latency.py            # builds the site into a temp dir first
    LC_SITE_DIR=site .venv/bin/python tests/widgets/bench_latency.py --runs 60

For each widget it changes one input back and forth ``--runs`` times (dispatching the same ``input`` event
a reader's keystroke or selection fires) and records, in the page, the time from the event to the moment
the generic script has placed the new outputs (the widget's ``data-updated`` stamp changes), and to the next
animation frame after that. Budget: p95 under 16 ms (one frame at 60 Hz).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

# (page, widget, input name, values to alternate between)
CASES = [
    ("rank-trick/", "rank_trick", "r", ["8", "64"]),
    ("rank-trick/", "model_lora", "rank", ["16", "64"]),
    ("gpu-memory/", "memory_calculator", "batch_size", ["1", "4"]),
    ("gpu-memory/", "memory_calculator", "method", ["qlora", "lora"]),
    ("qlora/", "nf4_explorer", "action:reroll", []),
    ("qlora/", "nf4_bits", "block_size", ["64", "128"]),
    ("knowledge-check/", "quiz", "action:retry", []),
]

MEASURE_JS = """async ([name, field, values, runs]) => {
  const w = document.querySelector(`[data-widget="${name}"]`);
  const updated = () => new Promise(res => {
    const mo = new MutationObserver(() => { mo.disconnect(); res(performance.now()); });
    mo.observe(w, { attributes: true, attributeFilter: ['data-updated'] });
  });
  const dom = [], frame = [], missed = [];
  // the typed field (not its slider); start with the value it does not already hold, so every
  // change is a real change (an unchanged value is, rightly, not recomputed)
  const fieldEl = field.startsWith('action:') ? null : w.querySelector(`[name="${field}"]:not([type="range"])`);
  const shift = fieldEl && fieldEl.value === values[0] ? 1 : 0;
  for (let i = 0; i < runs; i++) {
    const done = updated();
    let t0;
    if (field.startsWith('action:')) {
      const button = w.querySelector(`button[data-action="${field.slice(7)}"]`);
      t0 = performance.now();
      button.click();
    } else {
      const el = fieldEl;
      el.value = values[(i + shift) % values.length];
      t0 = performance.now();
      el.dispatchEvent(new Event('input', { bubbles: true }));
    }
    const t1 = await Promise.race([done, new Promise(r => setTimeout(() => r(null), 5000))]);
    if (t1 === null) { missed.push(i); continue; }
    await new Promise(r => requestAnimationFrame(() => r()));
    const t2 = performance.now();
    dom.push(t1 - t0); frame.push(t2 - t0);
    await new Promise(r => setTimeout(r, 20));
  }
  return { dom, frame, missed };
}"""


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50, help="input changes per case (first 5 are warm-up, dropped)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()

    site = os.environ.get("LC_SITE_DIR")
    if not site:
        site = tempfile.mkdtemp(prefix="lc-bench-site-")
        subprocess.run([str(ROOT / ".venv/bin/mkdocs"), "build", "--quiet", "-d", site], cwd=ROOT, check=True)
    from serve_site import start
    from playwright.sync_api import sync_playwright

    server = start(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        current = None
        for path, name, field, values in CASES:
            if path != current:
                page.goto(base + path)
                page.wait_for_function("() => window.loracalcPython && (window.loracalcPython.start(), window.loracalcPython.state === 'ready')",
                                       timeout=120_000)
                current = path
            print(f"measuring {name} {field}", file=sys.stderr, flush=True)
            data = page.evaluate(MEASURE_JS, [name, field, values, args.runs + 5])
            dom, frame = data["dom"][5:], data["frame"][5:]
            results.append({"widget": name, "input": field, "runs": len(dom),
                            "p50_ms": round(statistics.median(dom), 2), "p95_ms": round(pct(dom, 95), 2),
                            "max_ms": round(max(dom), 2), "missed": len(data["missed"]), "p95_to_next_frame_ms": round(pct(frame, 95), 2)})
        browser.close()
    server.shutdown()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'widget':<18} {'input':<16} {'runs':>4} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'p95 +frame':>10}")
        for r in results:
            print(f"{r['widget']:<18} {r['input']:<16} {r['runs']:>4} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} "
                  f"{r['max_ms']:>7.2f} {r['p95_to_next_frame_ms']:>10.2f}")
        worst = max(r["p95_ms"] for r in results)
        print(f"worst p95: {worst:.2f} ms (budget 16 ms): {'within' if worst < 16 else 'OVER'} budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
