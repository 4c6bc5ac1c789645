// Register the site's service worker (offline return visits) on http(s) only: file:// cannot have one,
// and browsers allow it only on https and on localhost.
// On a page whose Python is starting, registration waits until Python is ready (or has failed): the
// service worker's first install downloads the pages for offline use, and on a small machine that
// competes with Pyodide for the CPU (measured: Python ready about 10% later when both run at once).
(function () {
  if (!("serviceWorker" in navigator) || !window.isSecureContext || !/^https?:$/.test(location.protocol)) return;
  var script = document.currentScript;
  var url = new URL("../../sw.js", script ? script.src : location.href);
  function register() {
    navigator.serviceWorker.register(url.href, { scope: new URL("./", url).href }).catch(function () {
      /* no offline support in this browser session; the site works as before */
    });
  }
  window.addEventListener("load", function () {
    var python = window.loracalcPython;
    if (python && document.querySelector("[data-widget], [data-runnable]")) python.whenSettled().then(register);
    else register();
  });
})();
