// While a partition is running, the grid refreshes itself every few seconds: it fetches
// the same page and swaps in the new grid. Nothing else runs on the pages.
(function () {
  const grid = document.getElementById("grid");
  if (!grid) return;
  async function refresh() {
    if (grid.dataset.live !== "true") return;
    try {
      const r = await fetch(location.href, { credentials: "same-origin" });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const fresh = doc.getElementById("grid");
      if (fresh) {
        grid.replaceChildren(...fresh.childNodes);
        grid.dataset.live = fresh.dataset.live;
      }
    } finally {
      setTimeout(refresh, 3000);
    }
  }
  setTimeout(refresh, 3000);
})();
