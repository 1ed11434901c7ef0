// Shared by the admin pages: JSON requests with the session's CSRF token,
// element helpers and time formatting. No framework, no build step.
"use strict";

const pbx = (() => {
  const csrf = () => {
    const m = document.querySelector('meta[name="csrf"]');
    return m ? m.content : "";
  };

  // fetch() a JSON endpoint of /admin/api; throws Error(message) on failure.
  async function api(method, path, body) {
    const init = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (resp.status === 401) { window.location.href = "/admin/login"; }
    if (!resp.ok) {
      throw new Error((data && data.error) || `${resp.status} ${resp.statusText}`);
    }
    return data;
  }

  // el("td", {class: "x"}, "text", child…): an element; text is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function duration(secs) {
    secs = Math.max(0, Math.floor(secs));
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    const two = (n) => String(n).padStart(2, "0");
    return (h ? `${h}:${two(m)}` : `${m}`) + `:${two(s)}`;
  }

  return { api, el, duration, csrf };
})();
