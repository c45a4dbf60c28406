// The console's script: refresh the live sections that changed, tick times, send the
// buttons' POSTs. Ours, no library, nothing loaded from elsewhere.
"use strict";
(function () {
  const FRAGMENT = "X-Console-Fragment";
  const seen = new Map(); // section id -> the HTML the server last sent for it
  let busy = false;

  function liveSections(root) {
    return Array.from(root.querySelectorAll("[data-live][id]"));
  }

  function remember() {
    for (const section of liveSections(document)) seen.set(section.id, section.innerHTML);
  }

  function edited(section) {
    // An operator typing in a section (a trigger's inputs) keeps it until they are done.
    const focused = document.activeElement;
    if (focused && focused.matches("input, select, textarea") && section.contains(focused)) {
      return true;
    }
    return Array.from(section.querySelectorAll("input")).some((input) => input.value !== "");
  }

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    const stamp = document.getElementById("stamp");
    try {
      const response = await fetch(location.href, {
        headers: { [FRAGMENT]: "1" },
        cache: "no-store",
        credentials: "same-origin",
      });
      if (!response.ok && response.status !== 404) {
        throw new Error("HTTP " + response.status);
      }
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      let changed = 0;
      for (const fresh of liveSections(doc)) {
        const current = document.getElementById(fresh.id);
        if (!current || seen.get(fresh.id) === fresh.innerHTML || edited(current)) continue;
        current.innerHTML = fresh.innerHTML;
        seen.set(fresh.id, fresh.innerHTML);
        changed += 1;
      }
      tick();
      if (stamp) {
        stamp.classList.remove("stale");
        stamp.textContent = "live, checked " + new Date().toLocaleTimeString() +
          (changed ? ", " + changed + " part(s) updated" : "");
      }
    } catch (error) {
      if (stamp) {
        stamp.classList.add("stale");
        stamp.textContent = "could not refresh (" + error.message + "); retrying";
      }
    } finally {
      busy = false;
    }
  }

  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + "s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + "m " + String(seconds % 60).padStart(2, "0") + "s";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + "h " + String(minutes % 60).padStart(2, "0") + "m";
    return Math.floor(hours / 24) + "d";
  }

  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-since]")) {
      const start = Date.parse(el.dataset.since);
      if (isNaN(start)) continue;
      if (!el.dataset.word) el.dataset.word = el.textContent;
      el.textContent = el.dataset.word + " " + span((now - start) / 1000);
    }
    for (const el of document.querySelectorAll("time[data-ago]")) {
      const at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = span((now - at) / 1000) + " ago";
    }
    for (const el of document.querySelectorAll("time[data-until]")) {
      const at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = at > now ? "in " + span((at - now) / 1000) : "due now";
    }
  }

  function say(text, bad, link) {
    const notice = document.getElementById("notice");
    if (!notice) return;
    notice.textContent = text;
    if (link) {
      const a = document.createElement("a");
      a.href = "/runs/" + encodeURIComponent(link).replace(/%3A/g, ":");
      a.className = "mono new-run";
      a.textContent = link;
      notice.append(" ", a);
    }
    notice.classList.toggle("bad", !!bad);
    notice.hidden = false;
  }

  function sentence(body, status) {
    if (body && typeof body.error === "string") return body.error;
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail) && body.detail.length) {
      return body.detail.map((d) => d.msg).join("; ");
    }
    return "the service answered HTTP " + status;
  }

  async function post(path, action, payload, control) {
    if (control) control.disabled = true;
    try {
      const response = await fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Requested-By": "console" },
        body: JSON.stringify(payload),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        say(action + " refused: " + sentence(body, response.status), true);
      } else if (action === "retry") {
        say("retry enqueued as", false, body.new_run_id);
      } else if (action === "fire") {
        say(body.duplicate ? "already fired, as" : "fired: enqueued", false, body.id);
      } else {
        say(action + ": " + (body.detail || "done"), false);
      }
    } catch (error) {
      say(action + " failed: " + error.message, true);
    } finally {
      if (control) control.disabled = false;
    }
    await refresh();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-post]");
    if (!button) return;
    event.preventDefault();
    post(button.dataset.post, button.dataset.action, {}, button);
  });

  function filter(form) {
    // Only the filters in use go in the address: /?status=failed, not five empty ones.
    for (const field of form.elements) {
      if (field.name && field.value === "") field.disabled = true;
    }
    form.submit();
  }

  document.addEventListener("submit", (event) => {
    if (event.target.matches("form.filters")) {
      event.preventDefault();
      filter(event.target);
      return;
    }
    const form = event.target.closest("form[data-post]");
    if (!form) return;
    event.preventDefault();
    const params = {};
    for (const input of form.querySelectorAll("input[name]")) params[input.name] = input.value;
    post(form.dataset.post, form.dataset.action, Object.keys(params).length ? { params } : {},
      form.querySelector("button"));
    form.reset();
  });

  document.addEventListener("change", (event) => {
    const select = event.target.closest("form.filters select");
    if (select) filter(select.form);
  });

  window.addEventListener("pageshow", () => {
    for (const field of document.querySelectorAll("form.filters [disabled]")) field.disabled = false;
  });

  remember();
  tick();
  const every = Number(document.body.dataset.refreshMs) || 3000;
  setInterval(tick, 1000);
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
