// Register the site's service worker (offline return visits) on http(s) only: file:// cannot have one,
// and browsers allow it only on https and on localhost.
(function () {
  if (!("serviceWorker" in navigator) || !window.isSecureContext || !/^https?:$/.test(location.protocol)) return;
  var script = document.currentScript;
  var url = new URL("../../sw.js", script ? script.src : location.href);
  window.addEventListener("load", function () {
    navigator.serviceWorker.register(url.href, { scope: new URL("./", url).href }).catch(function () {
      /* no offline support in this browser session; the site works as before */
    });
  });
})();
