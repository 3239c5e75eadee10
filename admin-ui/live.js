// Live feed: subscribes to the WebSocket change feed and prepends each
// change to the list. Built with textContent only (never innerHTML), so
// record data cannot inject markup.
(function () {
  "use strict";
  const root = document.getElementById("live");
  if (!root) return;
  const feed = document.getElementById("feed");
  const status = document.getElementById("live-status");
  const topics = (root.dataset.topics || "").split(" ").filter(Boolean);
  let lastSeq = Number(root.dataset.seq) || 0;
  let retry = 0;
  const MAX_ITEMS = 200;

  function say(text) { status.textContent = text; }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function show(msg, collection) {
    const empty = document.getElementById("live-empty");
    if (empty) empty.remove();
    const rec = msg.record || {};
    const li = el("li", "fresh");
    li.dataset.seq = String(msg.seq);
    const kind = msg.action === "delete" ? "danger" : msg.action === "create" ? "ok" : "warn";
    li.append(el("span", "badge badge-" + kind, msg.action), " ", el("strong", "", collection), " ",
      el("code", "", String(rec.id || "")), " ",
      el("span", "muted small", "#" + msg.seq + " · " + new Date().toISOString().replace("T", " ")));
    const details = el("details");
    details.append(el("summary", "small", "Record"), el("pre", "", JSON.stringify(rec, null, 2)));
    li.append(details);
    feed.prepend(li);
    while (feed.children.length > MAX_ITEMS) feed.lastElementChild.remove();
  }

  async function connect() {
    let token;
    try {
      const res = await fetch("/_/live/token", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": window.Basalt.csrf() },
      });
      if (res.status === 303 || res.redirected || !res.ok) {
        say("Your session ended: reload the page to log in again.");
        return;
      }
      token = (await res.json()).token;
    } catch (_) {
      return reconnect();
    }
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(proto + location.host + "/api/realtime/ws");
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      if (msg.type === "authenticated") {
        for (const t of topics) {
          ws.send(JSON.stringify({ type: "subscribe", id: t, topic: t + "/*", since: lastSeq }));
        }
      } else if (msg.type === "subscribed") {
        retry = 0;
        say("Connected: waiting for changes…");
        root.dataset.connected = "true";
      } else if (msg.type === "event") {
        if (msg.seq > lastSeq) lastSeq = msg.seq;
        show(msg, msg.sub);
      } else if (msg.type === "resync") {
        say("Fell behind the change log: reload the page for the latest state.");
      } else if (msg.type === "error") {
        say("Feed error: " + msg.message);
      }
    };
    ws.onclose = () => { root.dataset.connected = "false"; reconnect(); };
  }

  function reconnect() {
    retry = Math.min(retry + 1, 6);
    const secs = Math.pow(2, retry - 1);
    say("Disconnected; reconnecting in " + secs + " s…");
    setTimeout(connect, secs * 1000);
  }

  say("Connecting…");
  connect();
})();
