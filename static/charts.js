// Draws every [data-chart] element with Apache ECharts (see medstudio/charts.py).
// ECharts is loaded on demand, only on pages that have a chart; charts are (re)drawn after HTMX
// swaps, resize with their container and are disposed of when swapped out.
(function () {
  "use strict";
  var script = document.currentScript;
  var libUrl = script && script.dataset.echarts;
  var loading = null;

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
        '<label>Smoothing <input type="range" min="0" max="0.99" step="0.01" value="0" ' +
        'data-role="smooth"> <output>0.00</output></label> ' +
        '<label><input type="checkbox" data-role="log"> Log scale</label>';
      el.parentNode.insertBefore(bar, el);
      var slider = bar.querySelector('[data-role="smooth"]');
      var out = bar.querySelector("output");
      var log = bar.querySelector('[data-role="log"]');
      function redraw() {
        var w = parseFloat(slider.value);
        out.textContent = w.toFixed(2);
        chart.setOption({
          series: raw.map(function (data) { return { data: smooth(data, w) }; }),
          yAxis: { type: log.checked ? "log" : "value" },
        });
      }
      slider.addEventListener("input", redraw);
      log.addEventListener("change", redraw);
      el._chartTools = bar;
    },
  };

  function defaults(option, kind) {
    if (kind === "curves") {
      option.tooltip = option.tooltip || { trigger: "axis" };
      option.dataZoom = option.dataZoom || [{ type: "inside" }, { type: "slider", height: 18, bottom: 4 }];
      option.grid = option.grid || { left: 48, right: 16, top: 32, bottom: 48, containLabel: true };
    }
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
      var kind = kinds[el.dataset.chartKind];
      if (kind) kind(chart, option, el);
      if (window.ResizeObserver) {
        el._resize = new ResizeObserver(function () { chart.resize(); });
        el._resize.observe(el);
      }
    }).catch(function (err) {
      el.textContent = "Charts are unavailable (" + err.message + "): run `make setup`.";
      el.classList.add("chart-missing");
    });
  }

  function scan(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(draw);
  }

  function dispose(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el._resize) el._resize.disconnect();
      if (el._chart) el._chart.dispose();
      if (el._chartTools) el._chartTools.remove();
    });
  }

  window.MedCharts = { kinds: kinds, scan: scan, smooth: smooth, load: loadLibrary };
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:beforeSwap", function (e) { if (e.detail.target) dispose(e.detail.target); });
  document.addEventListener("htmx:afterSettle", function (e) { scan(e.detail.elt || document); });
})();
