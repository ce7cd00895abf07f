// Draws every [data-chart] element with Apache ECharts (see medstudio/charts.py).
// ECharts is loaded on demand, only on pages that have a chart; charts are (re)drawn after HTMX
// swaps, resize with their container and are disposed of when swapped out.
(function () {
  "use strict";
  var script = document.currentScript;
  var libUrl = script && script.dataset.echarts;
  // UI words in the page's language, from the script tag (templates/base.html translates them).
  var words = {
    smoothing: (script && script.dataset.wordSmoothing) || "Smoothing",
    logScale: (script && script.dataset.wordLogScale) || "Log scale",
    unavailable: (script && script.dataset.wordUnavailable) || "Charts are unavailable"
  };
  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  var loading = null;
  // What a reader set on a chart (smoothing, log scale, zoom), kept by chart label so a polling
  // page that re-renders its charts every few seconds does not undo it.
  var kept = {};

  function loadLibrary() {
    if (window.echarts) return Promise.resolve(window.echarts);
    if (loading) return loading;
    loading = new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = libUrl;
      tag.onload = function () { resolve(window.echarts); };
      tag.onerror = function () { reject(new Error("ECharts not found at " + libUrl)); };
      document.head.appendChild(tag);
    });
    return loading;
  }

  // Exponential moving average, as TensorBoard's smoothing slider (weight 0 = raw values).
  function smooth(points, weight) {
    if (!weight) return points;
    var last = null;
    return points.map(function (p) {
      var y = Array.isArray(p) ? p[1] : p;
      if (y === null || y === undefined || isNaN(y)) return p;
      last = last === null ? y : last * weight + (1 - weight) * y;
      return Array.isArray(p) ? [p[0], last] : last;
    });
  }

  var kinds = {
    // Training curves: hover, zoom, EMA smoothing and a log-scale toggle; several runs overlay as
    // several series.
    curves: function (chart, option, el) {
      var raw = (option.series || []).map(function (s) { return (s.data || []).slice(); });
      var bar = document.createElement("div");
      bar.className = "chart-tools";
      bar.innerHTML =
        '<label>' + escapeHtml(words.smoothing) + ' <input type="range" min="0" max="0.99" step="0.01" value="0" ' +
        'data-role="smooth"> <output>0.00</output></label> ' +
        '<label><input type="checkbox" data-role="log"> ' + escapeHtml(words.logScale) + '</label>';
      el.parentNode.insertBefore(bar, el);
      var slider = bar.querySelector('[data-role="smooth"]');
      var out = bar.querySelector("output");
      var log = bar.querySelector('[data-role="log"]');
      var state = el._kept || {};
      if (state.smooth) slider.value = state.smooth;
      if (state.log) log.checked = true;
      function redraw() {
        var w = parseFloat(slider.value);
        out.textContent = w.toFixed(2);
        chart.setOption({
          // A log axis cannot show values <= 0: those points are left out while it is on.
          series: raw.map(function (data) {
            var shown = smooth(data, w);
            return { data: log.checked ? shown.filter(function (p) { return (Array.isArray(p) ? p[1] : p) > 0; }) : shown };
          }),
          yAxis: { type: log.checked ? "log" : "value" },
        });
      }
      slider.addEventListener("input", redraw);
      log.addEventListener("change", redraw);
      el._chartTools = bar;
      el._keep = function () { return { smooth: slider.value, log: log.checked }; };
      if (state.smooth || state.log) redraw();
    },

    // Histograms whose threshold moves with the page's inputs are simply re-rendered by the
    // server (the studio swaps the chart out of band); nothing to add here.
  };

  // Draw a horizontal or vertical threshold line on an existing chart (pages may call this from
  // their own scripts): MedCharts.threshold(el, {xAxis: 0.3, name: "min"}).
  function threshold(el, mark) {
    if (!el._chart) return;
    el._chart.setOption({ series: [{ markLine: { symbol: "none", data: [mark] } }] });
  }

  function defaults(option, kind) {
    if (kind === "curves") {
      option.tooltip = option.tooltip || { trigger: "axis" };
      option.dataZoom = option.dataZoom || [{ type: "inside" }, { type: "slider", height: 18, bottom: 4 }];
      option.grid = option.grid || { left: 48, right: 16, top: 32, bottom: 48, containLabel: true };
    }
    // Cards may scroll sideways (a wide table): keep tooltips inside the chart so none is clipped.
    if (option.tooltip) option.tooltip.confine = true;
    option.animation = option.animation === undefined ? false : option.animation;
    return option;
  }

  function draw(el) {
    if (el._chart) return;
    var optionTag = document.getElementById(el.dataset.chart + "-option");
    if (!optionTag) return;
    loadLibrary().then(function (echarts) {
      if (el._chart || !document.body.contains(el)) return;
      el.textContent = "";
      var option = defaults(JSON.parse(optionTag.textContent), el.dataset.chartKind);
      var chart = echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(option);
      el._chart = chart;
      el.dataset.chartReady = "1";
      var key = el.getAttribute("aria-label");
      el._kept = key ? kept[key] : null;
      if (el._kept && el._kept.zoom) chart.dispatchAction(Object.assign({ type: "dataZoom" }, el._kept.zoom));
      var kind = kinds[el.dataset.chartKind];
      if (kind) kind(chart, option, el);
      if (window.ResizeObserver) {
        el._resize = new ResizeObserver(function () { chart.resize(); });
        el._resize.observe(el);
      }
    }).catch(function (err) {
      el.textContent = words.unavailable + " (" + err.message + "): run `make setup`.";
      el.classList.add("chart-missing");
    });
  }

  function scan(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(draw);
  }

  function remember(el) {
    var key = el.getAttribute("aria-label");
    if (!key || !el._chart) return;
    var state = el._keep ? el._keep() : {};
    var zoom = (el._chart.getOption().dataZoom || [])[0];
    if (zoom && (zoom.start > 0 || zoom.end < 100)) state.zoom = { start: zoom.start, end: zoom.end };
    kept[key] = state;
  }

  function dispose(root) {
    var els = root.matches && root.matches("[data-chart]") ? [root] : [];
    els.concat(Array.prototype.slice.call(root.querySelectorAll("[data-chart]"))).forEach(function (el) {
      remember(el);
      if (el._resize) el._resize.disconnect();
      if (el._chart) el._chart.dispose();
      if (el._chartTools) el._chartTools.remove();
    });
  }

  window.MedCharts = { kinds: kinds, scan: scan, smooth: smooth, load: loadLibrary, threshold: threshold };
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:beforeSwap", function (e) { if (e.detail.target) dispose(e.detail.target); });
  // Out-of-band swaps (the studio's histograms) replace elements outside the target.
  document.addEventListener("htmx:oobBeforeSwap", function (e) { if (e.detail.target) dispose(e.detail.target); });
  // Scan the whole page: drawn charts are skipped, and out-of-band content is found too.
  document.addEventListener("htmx:afterSettle", function () { scan(document); });
})();
