// Progress through the module's core path, kept in this browser (localStorage) and shown in the sidebar.
// The list of core pages comes from the page (<meta name="lc-core-path">, written by overrides/main.html from
// each page's front matter); this script remembers which of them the reader has read and marks them.
// A page counts as read once its end has been on screen (opening it is not reading it); a page with the
// knowledge check counts once every question of the set on screen has been answered.
// Runs on every (instant) page load: Material swaps the sidebar with the page, so it is re-attached each time.
(function () {
  var KEY = "loracalc-core-read-v1";

  function normal(url) {
    // "…/gpu-memory/", "…/gpu-memory/index.html" and "…/gpu-memory/#anchor" are one page.
    var u = new URL(url, location.href);
    return u.pathname.replace(/index\.html$/, "");
  }

  function corePages() {
    var meta = document.querySelector('meta[name="lc-core-path"]');
    if (!meta || !meta.content.trim()) return [];
    return meta.content.trim().split(/\s+/).map(normal);
  }

  function readSet() {
    try {
      var list = JSON.parse(localStorage.getItem(KEY) || "[]");
      return Array.isArray(list) ? list.filter(function (x) { return typeof x === "string"; }) : [];
    } catch (e) {
      return []; // unreadable or blocked storage: start from nothing
    }
  }

  function writeSet(list) {
    try { localStorage.setItem(KEY, JSON.stringify(list)); } catch (e) { /* storage full or blocked */ }
  }

  function markRead(page) {
    var read = readSet();
    if (read.indexOf(page) >= 0) return;
    read.push(page);
    writeSet(read);
    render();
  }

  // Watches the page now shown for the moment it has been read (see the top of this file).
  var watcher = null;
  function watchReading() {
    if (watcher) watcher.disconnect();
    watcher = null;
    var here = normal(location.href);
    var article = document.querySelector(".md-content__inner");
    if (!article || corePages().indexOf(here) < 0) return;
    var quiz = article.querySelector('[data-widget="quiz"]');
    if (quiz) {
      // The quiz's own progress line ("N of N answered"), written by Python, says when the set is done.
      var check = function () {
        var line = quiz.querySelector('[data-output="progress"]');
        var m = line && /^(\d+) of (\d+) answered/.exec(line.textContent.trim());
        if (m && Number(m[1]) > 0 && m[1] === m[2]) { if (watcher) watcher.disconnect(); markRead(here); }
      };
      watcher = new MutationObserver(check);
      watcher.observe(quiz, { attributes: true, attributeFilter: ["data-updated"] });
      check();
      return;
    }
    var end = article.querySelector(":scope > .lc-page-end");
    if (!end) {
      end = document.createElement("div");
      end.className = "lc-page-end";
      end.setAttribute("aria-hidden", "true");
      article.appendChild(end);
    }
    if (!("IntersectionObserver" in window)) return;
    watcher = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) { watcher.disconnect(); markRead(here); }
    });
    watcher.observe(end);
  }

  function render() {
    var core = corePages();
    if (!core.length) return;
    var read = readSet();
    var done = core.filter(function (p) { return read.indexOf(p) >= 0; }).length;

    // Marks on the sidebar's links to core pages: a check for pages read, with words for screen readers.
    document.querySelectorAll(".md-nav--primary a.md-nav__link[href]").forEach(function (link) {
      var page = normal(link.getAttribute("href"));
      var old = link.querySelector(".lc-read-mark");
      if (old) old.remove();
      if (core.indexOf(page) < 0) return;
      var mark = document.createElement("span");
      mark.className = "lc-read-mark";
      var isRead = read.indexOf(page) >= 0;
      mark.innerHTML = isRead ? '<span aria-hidden="true">✓</span><span class="lc-visually-hidden"> (read)</span>'
                              : '<span class="lc-visually-hidden"> (not read yet)</span>';
      if (isRead) mark.classList.add("lc-read");
      link.appendChild(mark);
    });

    // One summary at the top of the primary sidebar: a native <progress> with a visible label, and a reset.
    var nav = document.querySelector(".md-sidebar--primary .md-nav--primary");
    if (!nav) return;
    var box = nav.querySelector(".lc-progress");
    if (!box) {
      box = document.createElement("div");
      box.className = "lc-progress";
      box.innerHTML = '<label for="lc-progress-bar"></label><progress id="lc-progress-bar"></progress>' +
        '<button type="button" class="lc-progress-reset">Clear progress</button>';
      var title = nav.querySelector(":scope > .md-nav__title");
      nav.insertBefore(box, title ? title.nextSibling : nav.firstChild);
      box.querySelector("button").addEventListener("click", function () {
        writeSet([]);
        render();
      });
    }
    box.querySelector("label").textContent = "Core path: " + done + " of " + core.length + " pages read";
    var bar = box.querySelector("progress");
    bar.max = core.length;
    bar.value = done;
  }

  function attach() { render(); watchReading(); }
  if (typeof document$ !== "undefined") document$.subscribe(function () { setTimeout(attach, 0); });
  else document.addEventListener("DOMContentLoaded", attach);
})();
