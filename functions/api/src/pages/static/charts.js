// Sextant's interactive charts: the run page, the shared run page and the project
// workspace. Drawn with uPlot (vendored next to this file, MIT licence), fed by
// GET /points (or /r/{token}/points for a share), which answers each line downsampled
// to the chart's width with every bucket's extremes kept.
//
// The page gives a JSON spec in <script type="application/json" id="chart-spec">
// (data blocks are not run, so the strict CSP holds) and one figure.chart per spec
// chart. Everything a viewer changes (smoothing, log scale, x-axis, grouping, hidden
// lines) lives in the URL, so copying the URL shares the view.
//
// Smoothing is an exponential moving average whose weight decays with the step
// distance between points, so the overview (a few points a bucket) and a zoomed,
// full-detail range smooth alike: with weight w, a point d steps on keeps w^(d/u) of
// the average, u being a thousandth of the chart's whole step span (a 1,000-step
// series at full detail smooths exactly as TensorBoard's per-point EMA does). The
// start is debiased as TensorBoard and Adam do: the average is divided by the weight
// it has accumulated, so the first points are not pulled toward zero and the first
// value is its own.
(function () {
  "use strict";

  var specElement = document.getElementById("chart-spec");
  if (!specElement || typeof uPlot === "undefined") return;
  var spec = JSON.parse(specElement.textContent);

  var POLL_MS = 5000;
  var LIVE = { running: true, queued: true, lost: true };
  var TOOLTIP_ROWS = 12;
  var PLOT_HEIGHT = 260;
  var SERIES_COLOURS = ["#2456c7", "#d9480f", "#2b8a3e", "#9c36b5", "#c92a2a", "#1098ad",
    "#e67700", "#5c7cfa", "#a61e4d", "#5f3dc4"];

  // ---- The view's state, read from and written to the URL.

  var url = new URLSearchParams(location.search);
  var settings = {
    smooth: clamp(parseFloat(url.get("smooth")) || 0, 0, 0.99),
    logy: url.get("logy") === "true",
    x: ["step", "wall", "relative"].indexOf(url.get("x")) >= 0 ? url.get("x") : "step",
    group: spec.mode === "workspace" ? url.get("group") || "" : "",
    hide: new Set((url.get("hide") || "").split(",").filter(Boolean))
  };

  function clamp(value, lo, hi) { return Math.min(hi, Math.max(lo, value)); }

  // Writes the state into the URL (without a reload), the filter form's hidden fields
  // (so filtering keeps the view) and the saved-view form's query.
  function saveSettings() {
    var next = new URLSearchParams(location.search);
    var put = function (key, value, fallback) {
      if (value === fallback) next.delete(key); else next.set(key, value);
    };
    put("smooth", settings.smooth ? String(settings.smooth) : "", "");
    put("logy", settings.logy ? "true" : "", "");
    put("x", settings.x, "step");
    put("group", settings.group, "");
    put("hide", Array.from(settings.hide).sort().join(","), "");
    next.delete("view");
    var query = next.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    document.querySelectorAll("[data-view-setting]").forEach(function (input) {
      var key = input.getAttribute("data-view-setting");
      input.value = next.get(key) || "";
    });
    var saved = document.getElementById("save-view-query");
    if (saved) saved.value = query;
  }

  // ---- Colours: a run keeps its colour on every chart and every visit.

  function runColour(run) {
    var hue = Math.round((run.number * 137.508) % 360);
    return "hsl(" + hue + ", 68%, 42%)";
  }

  function fade(colour, alpha) {
    return colour.replace("hsl(", "hsla(").replace(")", ", " + alpha + ")")
      .replace(/^#(..)(..)(..)$/, function (_, r, g, b) {
        return "rgba(" + parseInt(r, 16) + ", " + parseInt(g, 16) + ", " + parseInt(b, 16) + ", " + alpha + ")";
      });
  }

  // ---- Numbers and axes.

  function formatValue(value) {
    if (value === null || value === undefined) return "–";
    if (!isFinite(value)) return String(value);
    if (value === Math.round(value) && Math.abs(value) < 1e15) return String(value);
    var magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(4);
    return String(parseFloat(value.toPrecision(6)));
  }

  function formatStep(step) {
    return step.toLocaleString("en-US", { maximumFractionDigits: 6 });
  }

  function formatDuration(seconds) {
    var sign = seconds < 0 ? "-" : "";
    seconds = Math.abs(seconds);
    if (seconds < 60) return sign + (Math.round(seconds * 10) / 10) + "s";
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.round(seconds % 60);
    return sign + (h ? h + "h " + m + "m" : m + "m " + s + "s");
  }

  function formatX(x) {
    if (settings.x === "wall") return new Date(x * 1000).toLocaleString();
    if (settings.x === "relative") return formatDuration(x);
    return "step " + formatStep(x);
  }

  // ---- Lines: what each chart draws.

  var runsById = {};
  spec.runs.forEach(function (run) { runsById[run.id] = run; });

  // The lines of a chart: on a run page, the chart's series of the one run; in the
  // workspace, the chart's metric of every run that logged it.
  function linesOf(chart) {
    var lines = [];
    if (spec.mode === "workspace") {
      spec.runs.forEach(function (run) {
        if (run.series.indexOf(chart.series[0]) < 0) return;
        lines.push({ key: run.id, run: run, series: chart.series[0], label: run.name, colour: runColour(run) });
      });
    } else {
      var run = spec.runs[0];
      chart.series.forEach(function (series, index) {
        lines.push({ key: series, run: run, series: series, label: series,
          colour: SERIES_COLOURS[index % SERIES_COLOURS.length] });
      });
    }
    return lines;
  }

  // The group a run falls in: a param's value, a `key=value` tag's value, or its tags.
  function groupOf(run) {
    var group = settings.group;
    if (group.indexOf("param:") === 0) {
      var name = group.slice(6);
      return name in run.params ? name + "=" + run.params[name] : name + " unset";
    }
    if (group.indexOf("tag:") === 0) {
      var key = group.slice(4) + "=";
      var tag = run.tags.filter(function (t) { return t.indexOf(key) === 0; })[0];
      return tag || key.slice(0, -1) + " unset";
    }
    return run.tags.length ? run.tags.join(", ") : "no tags";
  }

  // ---- Reading points.

  function parseValue(value) {
    return typeof value === "number" ? value : null;
  }

  // A line's answer, kept as the server sent it plus decoded values and wall times.
  // Steps are drawn as logged: a series counting millionths of a step (Neptune's
  // fractional steps) is divided; `lastStep` keeps the last one as stored, for `after`.
  function decode(line) {
    var times = null;
    if (line.times) {
      times = line.times.map(function (ms) { return line.t0 + ms / 1000; });
    }
    var perStep = line.step_unit === "micro" ? 1e6 : 1;
    return {
      status: line.status,
      started: line.started,
      steps: perStep === 1 ? line.steps : line.steps.map(function (step) { return step / perStep; }),
      lastStep: line.steps.length ? line.steps[line.steps.length - 1] : null,
      values: line.values.map(parseValue),
      times: times,
      downsampled: line.downsampled
    };
  }

  function pointsUrl(lines, options) {
    var query = new URLSearchParams();
    lines.forEach(function (line) {
      var after = options.after ? options.after(line) : "";
      query.append("line", line.run.id + ":" + (after === null ? "" : after) + ":" + line.series);
    });
    if (options.from !== undefined) query.set("from", String(options.from));
    if (options.to !== undefined) query.set("to", String(options.to));
    query.set("max_points", String(options.maxPoints));
    if (settings.x !== "step") query.set("time", "true");
    return spec.source + "?" + query.toString();
  }

  function fetchLines(lines, options) {
    if (!lines.length) return Promise.resolve({});
    return fetch(pointsUrl(lines, options), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("points: " + response.status);
        return response.json();
      })
      .then(function (answer) {
        var byKey = {};
        answer.lines.forEach(function (line, index) { byKey[lines[index].key] = decode(line); });
        return byKey;
      });
  }

  // ---- Shaping data for uPlot.

  function xsOf(data) {
    if (settings.x === "step") return data.steps;
    if (!data.times) return null;
    if (settings.x === "wall") return data.times;
    return data.times.map(function (t) { return t - data.started; });
  }

  function smooth(steps, values, weight, unit) {
    if (!(weight > 0)) return values;
    var out = new Array(values.length), sum = 0, norm = 0, previous = null;
    for (var i = 0; i < values.length; i++) {
      var value = values[i];
      if (value === null || !isFinite(value)) { out[i] = null; continue; }
      var keep = previous === null ? 0 : Math.pow(weight, Math.max(steps[i] - previous, 0) / unit);
      sum = keep * sum + (1 - keep) * value;
      norm = keep * norm + (1 - keep);
      out[i] = norm > 0 ? sum / norm : value;
      previous = steps[i];
    }
    return out;
  }

  function positive(values) {
    return values.map(function (value) { return value !== null && value > 0 ? value : null; });
  }

  // Sorts a line's points by x (wall-clock times may run backwards across steps).
  function sortedByX(xs, columns) {
    for (var i = 1; i < xs.length; i++) {
      if (xs[i] < xs[i - 1]) {
        var order = xs.map(function (_, index) { return index; })
          .sort(function (a, b) { return xs[a] - xs[b]; });
        return [order.map(function (i) { return xs[i]; })].concat(columns.map(function (column) {
          return order.map(function (i) { return column[i]; });
        }));
      }
    }
    return [xs].concat(columns);
  }

  // The mean, minimum and maximum of a group's lines at every x any of them has, each
  // line taken (linearly between its points) only within its own range.
  function aggregate(members) {
    var all = new Set();
    members.forEach(function (m) { m.xs.forEach(function (x) { all.add(x); }); });
    var xs = Array.from(all).sort(function (a, b) { return a - b; });
    var sum = new Float64Array(xs.length), count = new Uint16Array(xs.length);
    var lo = new Array(xs.length).fill(null), hi = new Array(xs.length).fill(null);
    members.forEach(function (m) {
      var j = 0;
      for (var i = 0; i < xs.length; i++) {
        var x = xs[i];
        if (x < m.xs[0] || x > m.xs[m.xs.length - 1]) continue;
        while (j + 1 < m.xs.length && m.xs[j + 1] <= x) j++;
        var value = m.ys[j];
        if (m.xs[j] !== x && j + 1 < m.xs.length) {
          var next = m.ys[j + 1];
          if (value === null || next === null) continue;
          value = value + (next - value) * (x - m.xs[j]) / (m.xs[j + 1] - m.xs[j]);
        }
        if (value === null || !isFinite(value)) continue;
        sum[i] += value; count[i]++;
        lo[i] = lo[i] === null ? value : Math.min(lo[i], value);
        hi[i] = hi[i] === null ? value : Math.max(hi[i], value);
      }
    });
    var mean = new Array(xs.length);
    for (var i = 0; i < xs.length; i++) mean[i] = count[i] ? sum[i] / count[i] : null;
    return { xs: xs, mean: mean, lo: lo, hi: hi };
  }

  // ---- One chart.

  function Chart(figure, index) {
    this.index = index;
    this.def = spec.charts[index];
    this.figure = figure;
    this.plotElement = figure.querySelector(".plot");
    this.legendElement = figure.querySelector(".legend");
    this.tipElement = figure.querySelector(".tip");
    this.lines = linesOf(this.def);
    this.overview = null;
    this.zoomed = null;
    this.plot = null;
    this.loading = null;
    this.drawn = [];
  }

  // Points a read answers at most over all its lines (the server's limit).
  var POINTS_IN_ALL = 200000;

  Chart.prototype.maxPoints = function () {
    // One bucket (its minimum and maximum) per two pixels.
    var wanted = clamp(Math.round(this.plotElement.clientWidth || 600), 100, 4000);
    return Math.max(2, Math.min(wanted, Math.floor(POINTS_IN_ALL / Math.max(1, this.lines.length))));
  };

  Chart.prototype.load = function () {
    var chart = this;
    this.loading = fetchLines(this.lines, { maxPoints: this.maxPoints() }).then(function (data) {
      chart.overview = data;
      chart.draw();
    });
    this.loading.then(function () { chart.loading = null; }, function () { chart.loading = null; });
    return this.loading;
  };

  // The step range the x range [x0, x1] covers, read off the points each line has.
  Chart.prototype.stepsBetween = function (x0, x1) {
    if (settings.x === "step") return { from: Math.floor(x0), to: Math.ceil(x1) };
    var from = Infinity, to = -Infinity, data = this.zoomed ? this.zoomed.data : this.overview;
    Object.keys(data).forEach(function (key) {
      var line = data[key], xs = xsOf(line) || [];
      for (var i = 0; i < xs.length; i++) {
        // The neighbours just outside are taken too: a step between two drawn points
        // may lie inside the range.
        if (xs[i] >= x0 && xs[i] <= x1 || (xs[i + 1] >= x0 && xs[i] < x0) || (xs[i - 1] <= x1 && xs[i] > x1)) {
          from = Math.min(from, line.steps[i]);
          to = Math.max(to, line.steps[i]);
        }
      }
    });
    // The server reads whole steps; a range of fractional ones widens to them.
    return from <= to ? { from: Math.floor(from), to: Math.ceil(to) } : null;
  };

  // Re-reads [x0, x1] at full detail (as many points as the chart has pixels for) and
  // redraws; resolves to how long the read and the redraw took.
  Chart.prototype.zoom = function (x0, x1) {
    var chart = this, steps = this.stepsBetween(x0, x1);
    if (!steps) return Promise.resolve(null);
    var started = performance.now();
    return fetchLines(this.visibleLines(), { from: steps.from, to: steps.to, maxPoints: this.maxPoints() })
      .then(function (data) {
        var fetched = performance.now();
        chart.zoomed = { x0: x0, x1: x1, data: data };
        chart.draw();
        chart.figure.setAttribute("data-zoomed", steps.from + "-" + steps.to);
        return { fetchMs: fetched - started, drawMs: performance.now() - fetched };
      });
  };

  Chart.prototype.resetZoom = function () {
    if (!this.zoomed) return;
    this.zoomed = null;
    this.figure.removeAttribute("data-zoomed");
    this.draw();
  };

  Chart.prototype.visibleLines = function () {
    return this.lines.filter(function (line) { return !settings.hide.has(line.key); });
  };

  // What to draw: one entry per drawn series, each with its x, raw and smoothed values.
  Chart.prototype.shapes = function () {
    var data = this.zoomed ? this.zoomed.data : this.overview;
    var shapes = [];
    var unit = this.smoothingUnit();
    var present = this.lines.filter(function (line) { return data[line.key]; });
    var prepare = function (xs, steps, values) {
      var smoothed = smooth(steps, values, settings.smooth, unit);
      if (settings.logy) { values = positive(values); smoothed = positive(smoothed); }
      return sortedByX(xs, [values, smoothed, steps]);
    };
    if (settings.group) {
      var groups = {};
      present.forEach(function (line) {
        var xs = xsOf(data[line.key]);
        if (!xs) return;
        var name = groupOf(line.run);
        (groups[name] = groups[name] || []).push({ line: line, xs: xs, ys: data[line.key].values });
      });
      Object.keys(groups).sort().forEach(function (name, index) {
        var members = groups[name].filter(function (m) { return !settings.hide.has(m.line.key); });
        var all = groups[name];
        var stats = aggregate(members.length ? members : all);
        // Grouped lines smooth over x: their points are on the union of the runs' x.
        var columns = [stats.mean, stats.lo, stats.hi].map(function (column) {
          var smoothed = smooth(stats.xs, column, settings.smooth, unit);
          return settings.logy ? positive(smoothed) : smoothed;
        });
        shapes.push({ key: "group:" + name, label: name + " (" + all.length + (all.length === 1 ? " run)" : " runs)"),
          colour: SERIES_COLOURS[index % SERIES_COLOURS.length], xs: stats.xs,
          raw: settings.logy ? positive(stats.mean) : stats.mean, smoothed: columns[0], lo: columns[1], hi: columns[2],
          steps: stats.xs, runs: all.length, hidden: !members.length,
          memberKeys: all.map(function (m) { return m.line.key; }) });
      });
      return shapes;
    }
    present.forEach(function (line) {
      var d = data[line.key], xs = xsOf(d);
      if (!xs) return;
      var columns = prepare(xs, d.steps, d.values);
      shapes.push({ key: line.key, label: line.label, colour: line.colour, xs: columns[0],
        raw: columns[1], smoothed: columns[2], steps: columns[3], hidden: settings.hide.has(line.key),
        memberKeys: [line.key] });
    });
    return shapes;
  };

  // A thousandth of the overview's step span: the smoothing's unit of distance.
  Chart.prototype.smoothingUnit = function () {
    var lo = Infinity, hi = -Infinity, data = this.overview || {};
    Object.keys(data).forEach(function (key) {
      var steps = data[key].steps;
      if (steps.length) { lo = Math.min(lo, steps[0]); hi = Math.max(hi, steps[steps.length - 1]); }
    });
    return hi > lo ? (hi - lo) / 1000 : 1;
  };

  Chart.prototype.draw = function () {
    var chart = this;
    var shapes = this.shapes();
    var smoothing = settings.smooth > 0;
    var tables = [], series = [{}], bands = [];
    this.drawn = [];
    shapes.forEach(function (shape) {
      if (shape.lo) {
        var base = series.length;
        tables.push([shape.xs, shape.hi, shape.lo, shape.smoothed]);
        series.push({ label: shape.label + " max", stroke: fade(shape.colour, 0.35), width: 0, show: !shape.hidden, spanGaps: true, points: { show: false } });
        series.push({ label: shape.label + " min", stroke: fade(shape.colour, 0.35), width: 0, show: !shape.hidden, spanGaps: true, points: { show: false } });
        series.push({ label: shape.label, stroke: shape.colour, width: 1.75, show: !shape.hidden, spanGaps: true, points: { show: false } });
        bands.push({ series: [base, base + 1], fill: fade(shape.colour, 0.15) });
        chart.drawn.push({ shape: shape, index: base + 2, extra: [base, base + 1] });
        return;
      }
      if (smoothing) {
        tables.push([shape.xs, shape.raw, shape.smoothed]);
        series.push({ label: shape.label + " (raw)", stroke: fade(shape.colour, 0.22), width: 1, show: !shape.hidden, spanGaps: true, points: { show: false } });
        series.push({ label: shape.label, stroke: shape.colour, width: 1.75, show: !shape.hidden, spanGaps: true, points: { show: false } });
        chart.drawn.push({ shape: shape, index: series.length - 1, extra: [series.length - 2] });
      } else {
        tables.push([shape.xs, shape.raw]);
        series.push({ label: shape.label, stroke: shape.colour, width: 1.5, show: !shape.hidden, spanGaps: true, points: { show: false } });
        chart.drawn.push({ shape: shape, index: series.length - 1, extra: [] });
      }
    });
    // NaN and ±Infinity stay gaps: nulls the join keeps, unlike the alignment's holes.
    var data = tables.length ? uPlot.join(tables) : [[]];
    var options = {
      width: Math.max(200, this.plotElement.clientWidth || 600),
      height: PLOT_HEIGHT,
      legend: { show: false },
      series: series,
      bands: bands,
      scales: {
        x: { time: settings.x === "wall" },
        y: settings.logy ? { distr: 3, log: 10 } : {}
      },
      axes: [
        { values: settings.x === "relative" ? function (u, ticks) { return ticks.map(formatDuration); }
            : settings.x === "step" ? function (u, ticks) { return ticks.map(formatStep); } : undefined },
        // A log axis passes null for the minor ticks it leaves unlabelled.
        { size: 60, values: function (u, ticks) {
          return ticks.map(function (tick) { return tick === null ? "" : formatValue(tick); });
        } }
      ],
      cursor: {
        drag: { x: true, y: false, setScale: false },
        focus: { prox: 24 },
        bind: {
          dblclick: function () { return function () { chart.resetZoom(); return null; }; }
        }
      },
      focus: { alpha: 0.35 },
      hooks: {
        setSelect: [function (u) {
          if (u.select.width < 4) return;
          var x0 = u.posToVal(u.select.left, "x"), x1 = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          chart.zoom(x0, x1);
        }],
        setCursor: [function (u) { chart.showTip(u); }],
        setSeries: [function (u, index) { chart.highlight(index); }]
      }
    };
    if (this.plot) this.plot.destroy();
    this.plotElement.textContent = "";
    this.plot = new uPlot(options, data, this.plotElement);
    if (this.zoomed) this.plot.setScale("x", { min: this.zoomed.x0, max: this.zoomed.x1 });
    this.renderLegend();
    this.figure.setAttribute("data-drawn", String(shapes.length));
    this.figure.setAttribute("data-x", settings.x);
    this.figure.setAttribute("data-points", String(shapes.reduce(function (n, s) { return n + s.xs.length; }, 0)));
  };

  Chart.prototype.renderLegend = function () {
    var chart = this;
    var list = document.createElement("ul");
    this.drawn.forEach(function (entry, position) {
      var item = document.createElement("li");
      item.setAttribute("data-key", entry.shape.key);
      item.className = entry.shape.hidden ? "hidden" : "";
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = entry.shape.colour;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(entry.shape.label));
      // What the line shows at its extremes: spikes survive downsampling, and a test
      // (or a reader, in the tooltip) can check them.
      var extremes = extremesOf(entry.shape.lo ? entry.shape.lo.concat(entry.shape.hi) : entry.shape.raw);
      if (extremes) {
        item.setAttribute("data-min", String(extremes[0]));
        item.setAttribute("data-max", String(extremes[1]));
        item.title = "min " + formatValue(extremes[0]) + ", max " + formatValue(extremes[1]);
      }
      item.addEventListener("click", function () { toggleLines(entry.shape.memberKeys); });
      item.addEventListener("mouseenter", function () {
        if (!entry.shape.hidden && chart.plot) chart.plot.setSeries(entry.index, { focus: true });
      });
      item.addEventListener("mouseleave", function () {
        if (chart.plot) chart.plot.setSeries(null, { focus: false });
      });
      item.setAttribute("data-position", String(position));
      list.appendChild(item);
    });
    this.legendElement.textContent = "";
    this.legendElement.appendChild(list);
  };

  function extremesOf(values) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (value) {
      if (value !== null && isFinite(value)) { lo = Math.min(lo, value); hi = Math.max(hi, value); }
    });
    return lo <= hi ? [lo, hi] : null;
  }

  Chart.prototype.highlight = function (seriesIndex) {
    var focused = null;
    this.drawn.forEach(function (entry) {
      if (entry.index === seriesIndex || entry.extra.indexOf(seriesIndex) >= 0) focused = entry.shape.key;
    });
    this.legendElement.querySelectorAll("li").forEach(function (item) {
      item.classList.toggle("focused", item.getAttribute("data-key") === focused);
    });
  };

  // The crosshair's reading: every visible line's nearest point to the cursor's x.
  Chart.prototype.showTip = function (u) {
    var tip = this.tipElement;
    if (u.cursor.left === undefined || u.cursor.left < 0) { tip.hidden = true; return; }
    var x = u.posToVal(u.cursor.left, "x");
    var rows = [];
    this.drawn.forEach(function (entry) {
      var shape = entry.shape;
      if (shape.hidden || !shape.xs.length) return;
      if (x < shape.xs[0] || x > shape.xs[shape.xs.length - 1]) return;
      var i = nearest(shape.xs, x);
      var value = shape.smoothed[i];
      rows.push({ shape: shape, i: i, value: value });
    });
    if (!rows.length) { tip.hidden = true; return; }
    rows.sort(function (a, b) { return (b.value === null ? -Infinity : b.value) - (a.value === null ? -Infinity : a.value); });
    var smoothing = settings.smooth > 0;
    var table = document.createElement("table");
    rows.slice(0, TOOLTIP_ROWS).forEach(function (row) {
      var shape = row.shape, tr = document.createElement("tr");
      tr.setAttribute("data-key", shape.key);
      var name = document.createElement("th");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = shape.colour;
      name.appendChild(swatch);
      name.appendChild(document.createTextNode(shape.label));
      var where = document.createElement("td");
      where.className = "tip-x";
      where.textContent = shape.lo ? formatX(shape.xs[row.i]) : settings.x === "step"
        ? "step " + formatStep(shape.steps[row.i]) : formatX(shape.xs[row.i]) + " · step " + formatStep(shape.steps[row.i]);
      var value = document.createElement("td");
      value.className = "tip-value";
      value.textContent = formatValue(row.value);
      if (shape.lo) {
        value.textContent += " (" + formatValue(shape.lo[row.i]) + " – " + formatValue(shape.hi[row.i]) + ")";
      } else if (smoothing) {
        value.textContent += " (raw " + formatValue(shape.raw[row.i]) + ")";
      }
      tr.appendChild(name); tr.appendChild(where); tr.appendChild(value);
      table.appendChild(tr);
    });
    if (rows.length > TOOLTIP_ROWS) {
      var more = document.createElement("tr");
      more.textContent = "and " + (rows.length - TOOLTIP_ROWS) + " more";
      table.appendChild(more);
    }
    tip.textContent = "";
    tip.appendChild(table);
    tip.hidden = false;
    var left = u.cursor.left + u.over.offsetLeft;
    tip.classList.toggle("flip", left > u.over.clientWidth / 2);
  };

  function nearest(xs, x) {
    var lo = 0, hi = xs.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] < x) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(xs[lo - 1] - x) <= Math.abs(xs[lo] - x)) lo--;
    return lo;
  }

  // ---- Live: points after the last step shown, appended.

  Chart.prototype.liveLines = function () {
    var overview = this.overview || {};
    return this.lines.filter(function (line) {
      var data = overview[line.key];
      return data && LIVE[data.status];
    });
  };

  Chart.prototype.poll = function () {
    var chart = this, live = this.liveLines();
    if (!live.length) return Promise.resolve(false);
    var overview = this.overview;
    return fetchLines(live, {
      maxPoints: this.maxPoints(),
      after: function (line) { return overview[line.key].lastStep; }
    }).then(function (fresh) {
      var grew = false;
      Object.keys(fresh).forEach(function (key) {
        var old = overview[key], add = fresh[key];
        old.status = add.status;
        if (!add.steps.length) return;
        grew = true;
        old.steps = old.steps.concat(add.steps);
        old.lastStep = add.lastStep;
        old.values = old.values.concat(add.values);
        if (old.times && add.times) old.times = old.times.concat(add.times);
      });
      if (grew && !chart.zoomed) chart.draw();
      return true;
    });
  };

  // ---- The page.

  var charts = [];
  document.querySelectorAll("figure.chart[data-chart]").forEach(function (figure) {
    charts.push(new Chart(figure, parseInt(figure.getAttribute("data-chart"), 10)));
  });

  function toggleLines(keys) {
    var hide = keys.some(function (key) { return !settings.hide.has(key); });
    keys.forEach(function (key) { if (hide) settings.hide.add(key); else settings.hide.delete(key); });
    saveSettings();
    redrawAll();
  }

  function redrawAll() {
    charts.forEach(function (chart) { if (chart.overview) chart.draw(); });
  }

  function reloadAll() {
    charts.forEach(function (chart) { chart.zoomed = null; chart.figure.removeAttribute("data-zoomed"); });
    return Promise.all(charts.filter(isOpen).map(function (chart) { return chart.load(); }));
  }

  function isOpen(chart) {
    var details = chart.figure.closest("details");
    return !details || details.open;
  }

  function bindControls() {
    // Not a form: nothing here is sent anywhere, the URL keeps it.
    var form = document.getElementById("chart-controls");
    if (!form) return;
    var smoothing = form.querySelector("[name=smooth]");
    var shown = form.querySelector("#smooth-value");
    if (smoothing) {
      smoothing.value = String(settings.smooth);
      if (shown) shown.textContent = settings.smooth.toFixed(2);
      smoothing.addEventListener("input", function () {
        settings.smooth = clamp(parseFloat(smoothing.value) || 0, 0, 0.99);
        if (shown) shown.textContent = settings.smooth.toFixed(2);
        saveSettings();
        redrawAll();
      });
    }
    var logy = form.querySelector("[name=logy]");
    if (logy) {
      logy.checked = settings.logy;
      logy.addEventListener("change", function () { settings.logy = logy.checked; saveSettings(); redrawAll(); });
    }
    var x = form.querySelector("[name=x]");
    if (x) {
      x.value = settings.x;
      x.addEventListener("change", function () {
        var hadTimes = settings.x !== "step";
        settings.x = x.value;
        saveSettings();
        // Wall-clock times are read only when an axis needs them.
        if (!hadTimes && settings.x !== "step") reloadAll(); else redrawAll();
      });
    }
    var group = form.querySelector("[name=group]");
    if (group) {
      group.value = settings.group;
      group.addEventListener("change", function () { settings.group = group.value; saveSettings(); redrawAll(); });
    }
  }

  function keepLive() {
    setTimeout(function tick() {
      if (document.hidden) { setTimeout(tick, POLL_MS); return; }
      var polls = charts.filter(function (chart) { return chart.overview; })
        .map(function (chart) { return chart.poll().catch(function () { return true; }); });
      Promise.all(polls).then(function (results) {
        var status = document.getElementById("run-status");
        if (status && spec.mode === "run" && charts.length && charts[0].overview) {
          var first = charts[0].overview[Object.keys(charts[0].overview)[0]];
          if (first) { status.textContent = first.status; status.setAttribute("data-status", first.status); }
        }
        if (results.some(Boolean)) setTimeout(tick, POLL_MS);
      });
    }, POLL_MS);
  }

  function start() {
    bindControls();
    saveSettings();
    var opened = charts.filter(isOpen);
    // A collapsed group (system metrics) reads its charts when opened.
    document.querySelectorAll("details.chart-group").forEach(function (details) {
      details.addEventListener("toggle", function () {
        // Browsers also fire it for a group parsed open, once the script may already
        // be reading that group's charts.
        if (!details.open) return;
        charts.filter(function (chart) {
          return !chart.overview && !chart.loading && details.contains(chart.figure);
        })
          .forEach(function (chart) { chart.load(); });
      });
    });
    Promise.all(opened.map(function (chart) {
      return chart.load().catch(function () { chart.figure.setAttribute("data-error", "true"); });
    })).then(function () {
      // Read by the Chromium bench and the browser test: every open chart has drawn.
      document.documentElement.dataset.chartsDrawn = String(performance.now());
      if (spec.live) keepLive();
    });
    // For the Chromium bench: zooms chart `index` into a step range, as a drag does.
    window.sextantCharts = {
      zoom: function (index, fromStep, toStep) {
        if (settings.x !== "step") return Promise.reject(new Error("zooming by step needs the step axis"));
        return charts[index].zoom(fromStep, toStep);
      }
    };
  }

  window.addEventListener("resize", function () {
    charts.forEach(function (chart) {
      if (chart.plot) chart.plot.setSize({ width: Math.max(200, chart.plotElement.clientWidth), height: PLOT_HEIGHT });
    });
  });

  start();
})();
