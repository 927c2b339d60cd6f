/* plaid crystal viewer: a small ball-and-stick renderer on a 2D canvas (orthographic projection, painter's
 * algorithm). Renders every <div class="plaid-viewer" data-structure="{atoms, bonds, cell}"> on the page, and
 * re-renders when Gradio replaces one. Drag to rotate, wheel to zoom, double-click to reset.
 * Part of plaid (Apache-2.0); no external code or network access. */
(function () {
  "use strict";

  function matMul(a, b) {
    var r = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
    for (var i = 0; i < 3; i++) for (var j = 0; j < 3; j++)
      for (var k = 0; k < 3; k++) r[i][j] += a[i][k] * b[k][j];
    return r;
  }
  function rotX(t) { var c = Math.cos(t), s = Math.sin(t); return [[1, 0, 0], [0, c, -s], [0, s, c]]; }
  function rotY(t) { var c = Math.cos(t), s = Math.sin(t); return [[c, 0, s], [0, 1, 0], [-s, 0, c]]; }
  function apply(m, v) {
    return [m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
            m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
            m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2]];
  }
  function shade(hex, f) {
    var n = parseInt(hex.slice(1), 16), r = (n >> 16) & 255, g = (n >> 8) & 255, b = n & 255;
    function c(x) { return Math.max(0, Math.min(255, Math.round(f >= 1 ? x + (255 - x) * (f - 1) : x * f))); }
    return "rgb(" + c(r) + "," + c(g) + "," + c(b) + ")";
  }

  function Viewer(root, data) {
    this.root = root;
    this.canvas = root.querySelector("canvas") || root.appendChild(document.createElement("canvas"));
    this.data = data;
    this.reset();
    var cell = data.cell, o = [0, 0, 0];
    this.center = [0, 1, 2].map(function (k) { return 0.5 * (cell[0][k] + cell[1][k] + cell[2][k]); });
    var corners = [];
    for (var i = 0; i < 8; i++) {
      var p = o.slice();
      for (var a = 0; a < 3; a++) if (i & (1 << a)) for (var k = 0; k < 3; k++) p[k] += cell[a][k];
      corners.push(p);
    }
    this.corners = corners;
    this.edges = [];
    for (var x = 0; x < 8; x++) for (var a2 = 0; a2 < 3; a2++) if (!(x & (1 << a2))) this.edges.push([x, x | (1 << a2)]);
    var extent = 1;
    var self = this;
    corners.concat(data.atoms.map(function (at) { return at.xyz; })).forEach(function (p) {
      var d = Math.sqrt(Math.pow(p[0] - self.center[0], 2) + Math.pow(p[1] - self.center[1], 2) +
                        Math.pow(p[2] - self.center[2], 2));
      extent = Math.max(extent, d + 1);
    });
    this.extent = extent;
    this.bind();
    this.draw();
  }
  Viewer.prototype.reset = function () { this.rot = matMul(rotX(-0.35), rotY(0.6)); this.zoom = 1; };
  Viewer.prototype.bind = function () {
    var self = this, drag = null, c = this.canvas;
    c.style.cursor = "grab";
    c.addEventListener("pointerdown", function (e) { drag = [e.clientX, e.clientY]; c.setPointerCapture(e.pointerId); });
    c.addEventListener("pointerup", function () { drag = null; });
    c.addEventListener("pointermove", function (e) {
      if (!drag) return;
      var dx = e.clientX - drag[0], dy = e.clientY - drag[1];
      drag = [e.clientX, e.clientY];
      self.rot = matMul(matMul(rotX(dy * 0.01), rotY(dx * 0.01)), self.rot);
      self.draw();
    });
    c.addEventListener("wheel", function (e) {
      e.preventDefault();
      self.zoom = Math.max(0.2, Math.min(8, self.zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1)));
      self.draw();
    }, { passive: false });
    c.addEventListener("dblclick", function () { self.reset(); self.draw(); });
    if (window.ResizeObserver) new ResizeObserver(function () { self.draw(); }).observe(this.root);
  };
  Viewer.prototype.project = function (p, scale, w, h) {
    var q = apply(this.rot, [p[0] - this.center[0], p[1] - this.center[1], p[2] - this.center[2]]);
    return [w / 2 + q[0] * scale, h / 2 - q[1] * scale, q[2]];
  };
  Viewer.prototype.draw = function () {
    var c = this.canvas, dpr = window.devicePixelRatio || 1;
    var w = Math.max(50, this.root.clientWidth), h = Math.max(50, this.root.clientHeight);
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    var g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#ffffff"; g.fillRect(0, 0, w, h);
    var scale = this.zoom * Math.min(w, h) / (2.2 * this.extent), self = this;
    var pc = this.corners.map(function (p) { return self.project(p, scale, w, h); });
    g.strokeStyle = "#555"; g.lineWidth = 1;
    this.edges.forEach(function (e) {
      g.beginPath(); g.moveTo(pc[e[0]][0], pc[e[0]][1]); g.lineTo(pc[e[1]][0], pc[e[1]][1]); g.stroke();
    });
    var atoms = this.data.atoms, pa = atoms.map(function (a) { return self.project(a.xyz, scale, w, h); });
    var items = [];
    this.data.bonds.forEach(function (b) { items.push({ z: (pa[b[0]][2] + pa[b[1]][2]) / 2 - 0.01, bond: b }); });
    atoms.forEach(function (a, i) { items.push({ z: pa[i][2], atom: i }); });
    items.sort(function (x, y) { return x.z - y.z; });
    items.forEach(function (it) {
      if (it.bond) {
        var p = pa[it.bond[0]], q = pa[it.bond[1]], m = [(p[0] + q[0]) / 2, (p[1] + q[1]) / 2];
        g.lineWidth = Math.max(1.5, 0.18 * scale); g.lineCap = "round";
        g.strokeStyle = shade(atoms[it.bond[0]].color, 0.8);
        g.beginPath(); g.moveTo(p[0], p[1]); g.lineTo(m[0], m[1]); g.stroke();
        g.strokeStyle = shade(atoms[it.bond[1]].color, 0.8);
        g.beginPath(); g.moveTo(m[0], m[1]); g.lineTo(q[0], q[1]); g.stroke();
        return;
      }
      var a = atoms[it.atom], p2 = pa[it.atom], r = Math.max(2, 0.4 * a.r * scale);
      var grad = g.createRadialGradient(p2[0] - r / 3, p2[1] - r / 3, r / 8, p2[0], p2[1], r);
      grad.addColorStop(0, shade(a.color, 1.5)); grad.addColorStop(1, shade(a.color, 0.6));
      g.fillStyle = grad; g.strokeStyle = "rgba(0,0,0,0.35)"; g.lineWidth = 0.8;
      g.beginPath(); g.arc(p2[0], p2[1], r, 0, 2 * Math.PI); g.fill(); g.stroke();
    });
    g.fillStyle = "#222"; g.font = "13px sans-serif";
    g.fillText(this.data.formula + "  (" + atoms.length + " atoms shown; drag to rotate)", 8, 18);
    this.root.setAttribute("data-rendered-atoms", String(atoms.length));
  };

  function scan() {
    var nodes = document.querySelectorAll(".plaid-viewer");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i], raw = el.getAttribute("data-structure");
      if (!raw || el.__plaidRaw === raw) continue;
      el.__plaidRaw = raw;
      try { el.__plaidViewer = new Viewer(el, JSON.parse(raw)); }
      catch (err) { el.setAttribute("data-render-error", String(err)); }
    }
  }
  window.plaidViewerScan = scan;
  function start() {
    scan();
    new MutationObserver(scan).observe(document.body, { childList: true, subtree: true, attributes: true,
                                                         attributeFilter: ["data-structure"] });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
