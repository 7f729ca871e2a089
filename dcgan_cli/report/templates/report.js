// dcgan report: draws the training curves as SVG and runs the epoch player. No dependencies.
(function () {
  "use strict";
  var COLORS = ["#2f6fdf", "#e0562b", "#1f9e6e", "#9b4dca", "#c4951a", "#d03f8c"];
  var W = 640, H = 250, L = 54, R = 26, T = 10, B = 30, epochs = [];

  function json(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    var a = Math.abs(v);
    return a >= 1000 ? Math.round(v).toLocaleString() : String(+v.toPrecision(a >= 1 ? 4 : 3));
  }
  function ticks(lo, hi, n) {
    var span = hi - lo || Math.abs(hi) || 1, step = Math.pow(10, Math.floor(Math.log10(span / n))), r = span / n / step;
    step *= r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1;
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(12));
    return out;
  }
  // TensorBoard's smoothing: an exponential moving average, debiased at the start.
  function smooth(ys, w) {
    var out = [], last = 0, n = 0;
    for (var i = 0; i < ys.length; i++) {
      if (ys[i] === null) { out.push(null); continue; }
      last = last * w + (1 - w) * ys[i]; n++;
      out.push(w > 0 ? last / (1 - Math.pow(w, n)) : ys[i]);
    }
    return out;
  }
  function path(xs, ys, sx, sy) {
    var d = "", pen = "M";
    for (var i = 0; i < xs.length; i++) {
      if (ys[i] === null) { pen = "M"; continue; }
      d += pen + sx(xs[i]).toFixed(1) + " " + sy(ys[i]).toFixed(1);
      pen = "L";
    }
    return d;
  }

  function drawChart(fig, spec, data, weight) {
    var series = data.series.filter(function (s) { return s.chart === spec.id; });
    var xs = data.step, lo = Infinity, hi = -Infinity;
    series.forEach(function (s) { s.y.forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }); });
    if (spec.range) { lo = spec.range[0]; hi = spec.range[1]; }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi === lo) { hi += 0.5; lo -= 0.5; }
    var x0 = xs[0], x1 = xs[xs.length - 1] === x0 ? x0 + 1 : xs[xs.length - 1];
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return T + (hi - y) / (hi - lo) * (H - T - B); };
    var svg = '<svg viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="' + esc(spec.title) + '">';
    ticks(lo, hi, 5).forEach(function (v) {
      svg += '<line class="axis" x1="' + L + '" x2="' + (W - R) + '" y1="' + sy(v) + '" y2="' + sy(v) + '"/>' +
        '<text x="' + (L - 6) + '" y="' + (sy(v) + 4) + '" text-anchor="end">' + fmt(v) + "</text>";
    });
    ticks(x0, x1, 6).forEach(function (v) {
      svg += '<text x="' + sx(v) + '" y="' + (H - 10) + '" text-anchor="middle">' + fmt(v) + "</text>";
    });
    var legend = "";
    series.forEach(function (s, i) {
      var color = COLORS[data.series.indexOf(s) % COLORS.length];
      svg += '<path class="raw" data-series="' + esc(s.key) + '" d="' + path(xs, s.y, sx, sy) + '" fill="none" stroke="' + color + '" stroke-opacity="' + (weight > 0 ? 0.25 : 1) + '" stroke-width="1.2"/>';
      if (weight > 0) svg += '<path class="smoothed" data-series="' + esc(s.key) + '" d="' + path(xs, smooth(s.y, weight), sx, sy) + '" fill="none" stroke="' + color + '" stroke-width="2"/>';
      legend += '<span><i style="background:' + color + '"></i>' + esc(s.label) + "</span>";
    });
    svg += '<line class="cursor" y1="' + T + '" y2="' + (H - B) + '" x1="-9" x2="-9"/></svg>';
    fig.querySelector(".chart-plot").innerHTML = svg;
    fig.querySelector(".legend").innerHTML = legend;
    hover(fig, series, xs, sx);
  }

  function hover(fig, series, xs, sx) {
    var svg = fig.querySelector("svg"), cursor = svg.querySelector(".cursor"), tip = fig.querySelector(".tooltip");
    if (!tip) { tip = document.createElement("div"); tip.className = "tooltip"; tip.hidden = true; fig.appendChild(tip); }
    svg.onmousemove = function (e) {
      var box = svg.getBoundingClientRect(), x = (e.clientX - box.left) / box.width * W, i = 0;
      while (i < xs.length - 1 && sx(xs[i + 1]) <= x) i++;
      if (i < xs.length - 1 && x - sx(xs[i]) > sx(xs[i + 1]) - x) i++;
      cursor.setAttribute("x1", sx(xs[i])); cursor.setAttribute("x2", sx(xs[i]));
      tip.innerHTML = "step " + xs[i] + (epochs[i] ? ", epoch " + epochs[i] : "") +
        series.map(function (s) { return "<br>" + esc(s.label) + ": " + fmt(s.y[i]); }).join("");
      tip.hidden = false;
      tip.style.left = Math.min(e.clientX - box.left + 12, box.width - tip.offsetWidth) + "px";
      tip.style.top = "28px";
    };
    svg.onmouseleave = function () { tip.hidden = true; cursor.setAttribute("x1", -9); cursor.setAttribute("x2", -9); };
  }

  function curves() {
    var data = json("curve-data"), specs = json("chart-specs");
    if (!data || !specs) return;
    epochs = data.epoch;
    var slider = document.getElementById("smoothing"), out = document.getElementById("smoothing-value");
    function draw() {
      var w = +slider.value;
      out.textContent = w.toFixed(2);
      specs.forEach(function (spec) { drawChart(document.getElementById("chart-" + spec.id), spec, data, w); });
    }
    slider.addEventListener("input", draw);
    draw();
  }

  function player() {
    var frames = json("frames-data");
    if (!frames || !frames.length) return;
    var img = document.getElementById("epoch-frame"), slider = document.getElementById("epoch-slider");
    var label = document.getElementById("epoch-label"), button = document.getElementById("play");
    var fps = document.getElementById("fps"), timer = null;
    function show(i) {
      var f = frames[i];
      slider.value = i;
      slider.setAttribute("aria-valuetext", "epoch " + f.epoch);
      if (f.src) img.src = f.src;
      img.alt = "fixed-noise samples, epoch " + f.epoch;
      label.textContent = "epoch " + f.epoch + " (" + (i + 1) + " of " + frames.length + ")";
    }
    function stop() { clearInterval(timer); timer = null; button.textContent = "▶ play"; }
    function start() {
      if (+slider.value === frames.length - 1) show(0);
      timer = setInterval(function () {
        var next = +slider.value + 1;
        if (next >= frames.length) stop(); else show(next);
      }, 1000 / +fps.value);
      button.textContent = "❚❚ pause";
    }
    slider.addEventListener("input", function () { if (timer) stop(); show(+slider.value); });
    button.addEventListener("click", function () { if (timer) stop(); else start(); });
    fps.addEventListener("change", function () { if (timer) { stop(); start(); } });
    var m = /epoch=(\d+)/.exec(location.hash), i = frames.length - 1;
    if (m) frames.forEach(function (f, k) { if (f.epoch === +m[1]) i = k; });
    show(i);
  }

  curves();
  player();
})();
