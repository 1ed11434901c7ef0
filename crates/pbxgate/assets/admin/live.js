// The Live calls page: follows /admin/api/live/events (Server-Sent Events, a
// full snapshot on every change), counts down held calls, and sends Accept /
// Refuse / Hang up. When the stream breaks it shows so, reads one snapshot
// (which also sends a logged-out admin to the login page) and reconnects.
"use strict";

(() => {
  const { el, api, duration } = pbx;
  const $ = (id) => document.getElementById(id);
  const STREAM = "/admin/api/live/events";

  let source = null;
  let backoff = 1000;
  // performance.now() when the snapshot arrived: countdowns use the server's
  // remaining time, not the two clocks.
  let received = 0;
  let last = null;
  // Channels with an action on its way: their buttons stay disabled.
  const pending = new Set();

  function state(text, kind) {
    const s = $("live-state");
    s.textContent = text;
    s.className = `pill ${kind}`;
  }

  function message(id, text) {
    const m = $(id);
    m.textContent = text || "";
    m.hidden = !text;
  }

  function button(label, cls, action, channel) {
    return el("button", {
      type: "button", class: `${cls} ${action}`, "data-action": action, "data-channel": channel,
      disabled: pending.has(channel), onclick: () => act(action, channel),
    }, label);
  }

  async function act(action, channel) {
    pending.add(channel);
    for (const b of document.querySelectorAll("button[data-channel]")) {
      if (b.dataset.channel === channel) b.disabled = true;
    }
    message("live-error", "");
    message("live-notice", "");
    const done = { accept: "Accepted", refuse: "Refused", hangup: "Hung up" }[action];
    try {
      await api("POST", `/admin/api/live/${action}`, { channel });
      message("live-notice", `${done}: ${channel}`);
    } catch (e) {
      const what = { accept: "Accept", refuse: "Refuse", hangup: "Hang up" }[action];
      message("live-error", `${what} ${channel} failed: ${e.message}`);
    } finally {
      pending.delete(channel);
      if (last) render(last);
    }
  }

  function party(num, name) {
    return name && name !== num ? `${num} (${name})` : num || "—";
  }

  function fill(id, rows) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren(...rows);
    $(id).hidden = rows.length === 0;
    $(`${id}-empty`).hidden = rows.length !== 0;
  }

  function countdown(cell) {
    const left = Number(cell.dataset.remaining) - (performance.now() - received);
    cell.textContent = left > 0 ? duration(Math.ceil(left / 1000)) : "accepting…";
  }

  function render(s) {
    last = s;
    message("live-asterisk", s.error || "");
    const cc = s.call_control;
    $("held-note").textContent = !cc.available
      ? "Call control needs pbxgate's connection to Asterisk's ARI."
      : cc.enabled
        ? "Inbound calls wait here until accepted, refused, or the timeout accepts them."
        : "Call control is off (no API user has it): inbound calls are not held.";

    fill("held", s.held.map((h) => {
      const left = el("td", { class: "num countdown", "data-remaining": h.remaining_ms });
      countdown(left);
      return el("tr", { "data-channel": h.channel },
        el("td", { class: "caller" }, party(h.caller, h.callername)),
        el("td", { class: "did" }, h.did || "—"),
        el("td", { class: "trunk" }, h.trunk || "—"),
        el("td", { class: "channel" }, h.channel),
        left,
        el("td", { class: "actions" }, ...(h.deciding
          ? [el("span", { class: "pill warn" }, "deciding…")]
          : [button("Accept", "ok", "accept", h.channel), " ", button("Refuse", "danger", "refuse", h.channel)])));
    }));

    const held = new Set(s.held.map((h) => h.channel));
    fill("bridged", s.bridged.map((b) => {
      const secs = b.bridged_secs;
      return el("tr", { "data-channel1": b.channel1, "data-channel2": b.channel2 },
        el("td", {}, party(b.callerid1, b.name1)),
        el("td", {}, b.channel1, " ", button("Hang up", "danger small", "hangup", b.channel1)),
        el("td", {}, party(b.callerid2, b.name2)),
        el("td", {}, b.channel2, " ", button("Hang up", "danger small", "hangup", b.channel2)),
        el("td", {}, b.bridge_time),
        el("td", { class: "num elapsed", "data-since": secs ?? "" }, secs === null || secs === undefined ? "" : duration(secs)));
    }));

    fill("unbridged", s.unbridged.map((u) => el("tr", { "data-channel": u.channel },
      el("td", {}, u.channel, held.has(u.channel) ? el("span", { class: "pill warn" }, "held") : null),
      el("td", {}, party(u.callernum, u.callername)),
      el("td", {}, party(u.connectednum, u.connectedname)),
      el("td", {}, u.state),
      el("td", {}, u.service),
      el("td", {}, u.alloc_time),
      el("td", {}, button("Hang up", "danger small", "hangup", u.channel)))));
  }

  function tick() {
    for (const c of document.querySelectorAll("#held td.countdown")) countdown(c);
    const gone = (performance.now() - received) / 1000;
    for (const c of document.querySelectorAll("#bridged td.elapsed")) {
      if (c.dataset.since !== "") c.textContent = duration(Number(c.dataset.since) + gone);
    }
  }

  function snapshot(s) {
    received = performance.now();
    render(s);
  }

  function connect() {
    source = new EventSource(STREAM);
    source.addEventListener("snapshot", (e) => {
      backoff = 1000;
      state("Live updates", "up");
      snapshot(JSON.parse(e.data));
    });
    source.addEventListener("expired", () => { window.location.href = "/admin/login"; });
    source.onerror = () => {
      source.close();
      source = null;
      state("Disconnected: reconnecting…", "down");
      setTimeout(resync, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  // After a break: one snapshot over fetch (a 401 leads to the login page),
  // then the stream again.
  async function resync() {
    try {
      snapshot(await api("GET", "/admin/api/live"));
    } catch (e) {
      state(`Disconnected (${e.message}): retrying…`, "down");
      setTimeout(resync, backoff);
      backoff = Math.min(backoff * 2, 10000);
      return;
    }
    connect();
  }

  window.addEventListener("pagehide", () => { if (source) source.close(); });
  setInterval(tick, 250);
  connect();
})();
