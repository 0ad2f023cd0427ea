// berth console: live pages by server-sent events. Every page works
// without this script; with it, the parts of a page marked data-live follow
// the server's events of the same name.
"use strict";
const root = document.querySelector("[data-events]");
if (root && window.EventSource) {
  const source = new EventSource(root.dataset.events);
  const status = document.getElementById("live-status");
  const say = (text) => {
    if (status) status.textContent = text;
  };
  for (const name of ["rows", "job", "output"]) {
    source.addEventListener(name, (e) => {
      for (const part of document.querySelectorAll(`[data-live="${name}"]`)) {
        part.innerHTML = e.data;
      }
    });
  }
  source.addEventListener("counts", (e) => {
    const counts = JSON.parse(e.data);
    for (const count of document.querySelectorAll("[data-count]")) {
      const n = counts[count.dataset.count];
      if (n !== undefined) count.textContent = n;
    }
  });
  source.addEventListener("problem", (e) => say(`Not live: ${e.data}`));
  source.addEventListener("end", () => source.close());
  source.onopen = () => say("Live: counts and the newest jobs follow the table.");
  source.onerror = () => say("Reconnecting…");
}
