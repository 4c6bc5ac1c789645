// Service worker: lets a reader come back offline. Registered by assets/js/sw-register.js on http(s) only.
// On install it stores the site's pages, styles and scripts under a cache named after the build
// (hooks/build_info.py writes the version and the list below); Pyodide and snippets.zip are stored the
// first time a widget page fetches them, so pages without widgets never download Pyodide.
// A new build has a new version: its install fills a new cache and activate deletes the old ones.
const VERSION = "__BUILD_VERSION__";
const CACHE = `lora-site-${VERSION}`;
const PRECACHE = "__PRECACHE__";
const SCOPE = new URL("./", self.location).href;

self.addEventListener("install", (event) => {
  const pages = Array.isArray(PRECACHE) ? PRECACHE.filter((p) => !p.startsWith("assets/pyodide/") && !p.endsWith(".zip")) : [];
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(pages.map((p) => new URL(p, SCOPE).href)))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("lora-site-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// A widget page asks for Python to be kept once it has loaded it (the worker may have fetched it before
// this service worker took control): store the Pyodide files and snippets.zip, mostly from the HTTP cache.
self.addEventListener("message", (event) => {
  if (!event.data || event.data.type !== "cache-python" || !Array.isArray(PRECACHE)) return;
  const python = PRECACHE.filter((p) => p.startsWith("assets/pyodide/") || p.endsWith("snippets.zip"));
  event.waitUntil(
    caches.open(CACHE).then((cache) => Promise.all(python.map(async (p) => {
      const url = new URL(p, SCOPE).href;
      if (!(await cache.match(url))) await cache.add(url);
    }))).then(() => event.source && event.source.postMessage({ type: "python-cached", version: VERSION })),
  );
});

// Only the site's own URLs: anything else (the one other host, huggingface.co, asked for a config.json when a
// reader presses "Load from the Hub") goes straight to the network and is never stored.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || !request.url.startsWith(SCOPE)) return;
  const isPage = request.mode === "navigate" || request.destination === "document";
  event.respondWith(isPage ? networkFirst(request) : cacheFirst(request));
});

// Pages: the network when it answers (a reader sees updates), else the stored copy (query ignored,
// so a calculator URL with its state in ?... still opens offline).
async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) cache.put(stripQuery(request.url), response.clone());
    return response;
  } catch (error) {
    const stored = await cache.match(request, { ignoreSearch: true })
      || await cache.match(new URL("index.html", new URL(stripQuery(request.url))).href);
    if (stored) return stored;
    throw error;
  }
}

// Assets (versioned by the cache name): stored copy first, else fetch and store.
async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const stored = await cache.match(request, { ignoreSearch: true });
  if (stored) return stored;
  const response = await fetch(request);
  if (response.ok && response.type === "basic") cache.put(request, response.clone());
  return response;
}

function stripQuery(url) {
  const u = new URL(url);
  u.search = "";
  u.hash = "";
  return u.href;
}
