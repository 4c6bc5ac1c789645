// Names for landmarks Material creates without one (axe-core: aria-dialog-name, landmark-unique).
// Runs on every (instant) page load; it only adds labels.
(function () {
  function label() {
    var search = document.querySelector(".md-search[role=dialog]");
    if (search && !search.hasAttribute("aria-label")) search.setAttribute("aria-label", "Search");
    document.querySelectorAll(".md-code__nav").forEach(function (nav, i) {
      if (!nav.hasAttribute("aria-label")) nav.setAttribute("aria-label", "Code block " + (i + 1) + " tools");
    });
    // A table wider than the column scrolls sideways: make it reachable by keyboard (scrollable-region-focusable).
    var n = 0;
    document.querySelectorAll(".md-typeset__scrollwrap, .lc-table-box").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1 && !box.hasAttribute("tabindex")) {
        n += 1;
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", "Scrollable table " + n);
      }
    });
  }
  if (typeof document$ !== "undefined") document$.subscribe(function () { setTimeout(label, 0); });
  else document.addEventListener("DOMContentLoaded", label);
})();
