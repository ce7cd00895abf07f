// Keyboard-only labelling. Digits pick a value in the highlighted row (then the next row is
// highlighted), A/B/T pick in preference rows, arrows move between rows, Enter submits, S skips,
// U undoes. Forms are plain POST forms with hx-post, so everything also works without this file.
(function () {
  "use strict";
  var shownAt = performance.now();

  // Rows live in the form, or (per-turn ratings) beside each turn with form="answer-form".
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#work fieldset.keyrow")); }
  function active() { return document.querySelector("#work fieldset.keyrow.active"); }
  function highlightTurn(row) {
    var turn = row && row.getAttribute("data-turn");
    document.querySelectorAll("#item .msg[data-turn]").forEach(function (m) {
      m.classList.toggle("turn-active", !!turn && m.getAttribute("data-turn") === turn);
    });
  }
  function setActive(row) {
    rows().forEach(function (r) { r.classList.toggle("active", r === row); });
    highlightTurn(row);
    if (row && row.scrollIntoView) row.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    var rs = rows();
    if (!rs.length) return;
    var i = rs.indexOf(active());
    setActive(rs[Math.max(0, Math.min(rs.length - 1, i + step))]);
  }
  function pick(key) {
    var row = active();
    if (!row) return false;
    var input = row.querySelector('input[data-key="' + key + '"]');
    if (!input) return false;
    input.checked = true;
    var rs = rows();
    var i = rs.indexOf(row);
    if (i < rs.length - 1) setActive(rs[i + 1]);
    return true;
  }
  function submit(id) {
    var form = document.getElementById(id);
    if (!form) return;
    // A key pressed right after a swap can reach a form htmx has not processed yet, which would
    // then post as a full page load; processing it first is idempotent and keeps it an HTMX swap.
    if (window.htmx && form.hasAttribute("hx-post")) window.htmx.process(form);
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }
  function stampDuration(form) {
    var d = form && form.querySelector('input[name="duration_ms"]');
    if (d) d.value = String(Math.round(performance.now() - shownAt));
  }

  document.addEventListener("keydown", function (e) {
    if (!document.getElementById("work") || e.altKey || e.metaKey || e.isComposing) return;
    var t = e.target;
    var typing = t && (t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
                       (t.tagName === "INPUT" && /^(text|search|number|email)$/.test(t.type)));
    if (typing) {
      if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); submit("answer-form"); }
      else if (e.key === "Escape") { t.blur(); }
      return;
    }
    if (e.ctrlKey) return;
    if (e.key === "Enter") {
      if (t && (t.tagName === "BUTTON" || t.tagName === "A")) return;  // let a focused button act
      e.preventDefault();
      submit("answer-form");
      return;
    }
    var k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (k === "s") { e.preventDefault(); submit("skip-form"); return; }
    if (k === "u") { e.preventDefault(); submit("undo-form"); return; }
    if (k === "ArrowDown" || k === "ArrowUp") { e.preventDefault(); move(k === "ArrowDown" ? 1 : -1); return; }
    if (/^[0-9abt]$/.test(k) && pick(k)) e.preventDefault();
  });

  document.addEventListener("click", function (e) {
    var row = e.target.closest && e.target.closest("fieldset.keyrow");
    if (row) setActive(row);
  });

  // Time on screen goes with the answer as the label's duration (server time is the fallback).
  document.addEventListener("submit", function (e) { if (e.target.id === "answer-form") stampDuration(e.target); }, true);
  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.elt && e.detail.elt.id === "answer-form") {
      e.detail.parameters["duration_ms"] = String(Math.round(performance.now() - shownAt));
    }
  });
  // Prefetch: the next item is fetched while this one is read, and shown the moment the answer is
  // submitted (read only, greyed, until the server's reply swaps in the item actually claimed).
  var nextItem = null;
  function prefetch() {
    nextItem = null;
    var work = document.getElementById("work");
    var url = work && work.getAttribute("data-peek");
    if (!url || !window.fetch) return;
    fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } }).then(function (r) {
      return r.status === 200 ? r.text() : null;
    }).then(function (html) {
      if (!html) return;
      var t = document.createElement("template");
      t.innerHTML = html;
      var item = t.content.querySelector("#item");
      if (!item) return;
      item.querySelectorAll(".turn-ratings").forEach(function (el) { el.remove(); });
      item.id = "item-next";
      nextItem = item;
    }).catch(function () { nextItem = null; });
  }
  window.medstudioPrefetched = function () { return nextItem; };
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (!nextItem || !e.detail.elt || e.detail.elt.id !== "answer-form") return;
    var cur = document.getElementById("item");
    if (!cur) return;
    nextItem.classList.add("prefetched");
    cur.replaceWith(nextItem);
    nextItem = null;
  });
  document.addEventListener("DOMContentLoaded", function () { highlightTurn(active()); prefetch(); });
  document.addEventListener("htmx:afterSwap", function () {
    shownAt = performance.now();
    highlightTurn(active());
    prefetch();
    var ta = document.querySelector('#answer-form textarea[name="text"]');
    if (ta) ta.focus();
  });
})();
