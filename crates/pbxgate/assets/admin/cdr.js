// The CDR page: shows and hides the legs of a call, plays one recording at
// a time, and leaves empty filters out of the address a search gives.
"use strict";

(() => {
  const table = document.getElementById("cdr-table");
  if (table) {
    table.addEventListener("click", (ev) => {
      const button = ev.target.closest("button.legs-toggle");
      if (!button) return;
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      for (const id of button.getAttribute("aria-controls").split(" ")) {
        const row = document.getElementById(id);
        if (row) row.hidden = !open;
      }
    });
    // Starting one recording pauses the others.
    table.addEventListener("play", (ev) => {
      for (const a of table.querySelectorAll("audio")) {
        if (a !== ev.target && !a.paused) a.pause();
      }
    }, true);
  }

  // Empty text fields are not sent: the address keeps only what filters.
  const form = document.getElementById("cdr-filters");
  if (form) {
    form.addEventListener("submit", () => {
      for (const input of form.querySelectorAll("input[type=text]")) {
        if (input.value.trim() === "") input.disabled = true;
      }
    });
    // Back to the page from the browser's history: the fields work again.
    window.addEventListener("pageshow", () => {
      for (const input of form.querySelectorAll("input[type=text]")) input.disabled = false;
    });
  }
})();
