// The Status page: reads /admin/api/status every few seconds (while the
// page is visible) and redraws it.
"use strict";

(() => {
  const { el, api, duration } = pbx;
  const $ = (id) => document.getElementById(id);
  const EVERY = 5000;
  let timer = null;

  const time = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
  const ago = (ms, now) => (ms ? `${duration((now - ms) / 1000)} ago` : "");

  function pill(text, kind) {
    return el("span", { class: `pill ${kind}` }, text);
  }

  function row(label, ...value) {
    return [el("dt", {}, label), el("dd", {}, ...value)];
  }

  function card(id, title, kind, rows) {
    const dl = el("dl");
    for (const r of rows) dl.append(...r);
    return el("section", { class: `card ${kind}`, id }, el("h3", {}, title), dl);
  }

  function connection(id, title, c, now) {
    if (!c.configured) {
      return card(id, title, "off", [row("State", pill("not configured", "down"))]);
    }
    const rows = [
      row("State", pill(c.state, c.up ? "up" : "down"), c.reason ? ` ${c.reason}` : ""),
      row("Address", c.target || "—"),
      row(c.up ? "Connected since" : "Not connected since", time(c.since_ms), " ", el("span", { class: "muted" }, ago(c.since_ms, now))),
    ];
    rows.push(row("Last error", c.last_error
      ? `${c.last_error.message} (${time(c.last_error.at_ms)})` : "none"));
    return card(id, title, c.up ? "ok" : "bad", rows);
  }

  function cards(s) {
    const now = s.now_ms;
    const db = s.database;
    const ing = s.ingest;
    const n = ing.newest_cdr;
    const cc = s.call_control;
    return [
      connection("card-ami", "Asterisk AMI", s.asterisk.ami, now),
      connection("card-ari", "Asterisk ARI", s.asterisk.ari, now),
      card("card-db", "Database", db.reachable ? "ok" : "bad", [
        row("Backend", db.backend),
        row("Reachable", pill(db.reachable ? "yes" : "no", db.reachable ? "up" : "down"), db.error ? ` ${db.error}` : ""),
        row("Query latency", `${db.latency_ms} ms`),
      ]),
      card("card-ingest", "CDR ingest", !ing.running ? "off" : (!s.asterisk.ami.up || (ing.last_error && ing.backlog)) ? "bad" : "ok", [
        row("Ingest", !ing.running ? "not running (no Asterisk connection configured)"
          : s.asterisk.ami.up ? "from AMI" : "waiting for AMI",
          ing.csv_recovery ? `, recovery from ${ing.csv_recovery}` : ""),
        row("Newest CDR", n ? `#${n.acctid} ${n.src} → ${n.dst}, ended ${n.end}` : "none stored",
          n && n.age_secs !== null ? el("span", { class: "muted" }, ` (${duration(n.age_secs)} ago)`) : ""),
        row("Backlog", ing.backlog === null ? "—" : `${ing.backlog} record(s) waiting`),
        row("Last batch stored", time(ing.last_stored_ms)),
        row("Last error", ing.last_error ? `${ing.last_error.message} (${time(ing.last_error.at_ms)})` : "none"),
      ]),
      card("card-cc", "Call control", cc.enabled ? "ok" : "off", [
        row("State", !cc.available ? "unavailable (needs ARI)" : cc.enabled ? "on" : "off (no API user has it)"),
        row("Held now", cc.held === null ? "—" : String(cc.held)),
      ]),
      ...s.cdr_output.receivers.map((r) => card(`card-out-${r.receiver}`, `CDR output: ${r.receiver}`,
        r.state === "failing" ? "bad" : "ok", [
          row("State", pill(r.state, r.state === "failing" ? "down" : "up"),
            r.state === "standby" ? " (another pbxgate node delivers)" : ""),
          row("Receiver", r.target),
          row("Backlog", `${r.backlog} record(s) waiting`,
            r.oldest_queued_ms ? el("span", { class: "muted" }, ` (oldest queued ${ago(r.oldest_queued_ms, now)})`) : ""),
          row("Delivered", `${r.delivered} since start`, r.dropped ? `, ${r.dropped} dropped by the quota` : ""),
          row("Last success", time(r.last_success_ms)),
          row("Last error", r.last_error ? `${r.last_error.message} (${time(r.last_error.at_ms)})` : "none"),
        ])),
      ...(s.cluster ? [clusterCard(s.cluster, now)] : []),
      card("card-pbxgate", "pbxgate", "ok", [
        row("Version", s.version),
        row("Up for", duration(s.uptime_secs)),
      ]),
    ];
  }

  // Which node owns the Asterisk (holds its ARI application), and the others.
  function clusterCard(c, now) {
    if (!c.shared_database) {
      return card("card-cluster", "Nodes", "ok", [
        row("This node", c.node, " (the only one: embedded database)"),
      ]);
    }
    const o = c.owner;
    const rows = [
      row("This node", c.node, " ", pill(c.role, c.role === "owner" ? "up" : "warn")),
      row("Asterisk", c.pbx),
      row("Owner", o ? o.node : "none", o ? el("span", { class: "muted" },
        ` since ${time(o.since_ms)} (${duration(o.owner_for_ms / 1000)}), lease renewed ${duration(o.lease_age_ms / 1000)} ago`) : ""),
      row("Standby nodes", (c.nodes || []).filter((n) => n.role !== "owner").map((n) => n.node).join(", ") || "none"),
    ];
    if (c.error) rows.push(row("Error", c.error));
    return card("card-cluster", "Nodes", c.error || !o ? "bad" : "ok", rows);
  }

  function certRow(c) {
    if (!c.enabled) {
      return el("tr", { "data-listener": c.listener }, el("td", {}, c.listener), el("td", { colspan: 4, class: "muted" }, "disabled"));
    }
    let days;
    if (c.error) days = pill(c.error, "down");
    else if (c.expired) days = pill("expired", "down");
    else days = pill(`${c.days_left}`, c.warning ? "warn" : "up");
    return el("tr", { "data-listener": c.listener, class: c.warning ? "warning" : "" },
      el("td", {}, c.listener, el("div", { class: "muted" }, c.address)),
      el("td", { class: "path" }, c.path),
      el("td", { class: "source" }, c.source),
      el("td", {}, c.not_after_ms ? time(c.not_after_ms) : "—"),
      el("td", { class: "num days" }, days,
        c.warning && !c.expired && !c.error ? el("div", { class: "warn-text" }, "renew soon: under 30 days left") : null));
  }

  function fill(id, rows) {
    $(id).querySelector("tbody").replaceChildren(...rows);
    const empty = $(`${id}-empty`);
    if (empty) empty.hidden = rows.length !== 0;
  }

  function render(s) {
    $("status-cards").replaceChildren(...cards(s));
    fill("certs", s.certificates.map(certRow));
    fill("requests", s.requests.map((r) => el("tr", {},
      el("td", {}, time(r.at_ms)),
      el("td", {}, r.api),
      el("td", {}, r.ip),
      el("td", {}, r.user || "—"),
      el("td", {}, r.action || "—"),
      el("td", { class: "num" }, String(r.status)),
      el("td", { class: "num" }, `${(r.us / 1000).toFixed(1)} ms`))));
    fill("audit", s.audit.map((a) => el("tr", {},
      el("td", {}, time(a.at_ms)),
      el("td", {}, a.event),
      el("td", {}, a.username),
      el("td", {}, a.ip),
      el("td", {}, a.result),
      el("td", {}, a.detail))));
  }

  async function refresh() {
    clearTimeout(timer);
    if (!document.hidden) {
      try {
        render(await api("GET", "/admin/api/status"));
        $("status-state").textContent = `Updated ${new Date().toLocaleTimeString()}; refreshed every ${EVERY / 1000} s.`;
        $("status-error").hidden = true;
      } catch (e) {
        $("status-error").textContent = `Cannot read the status: ${e.message}`;
        $("status-error").hidden = false;
      }
    }
    timer = setTimeout(refresh, EVERY);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
