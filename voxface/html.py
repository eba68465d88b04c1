"""Self-contained interactive HTML pages: a slider over a sequence of meshes, each viewable in 3D.

:func:`mesh_page` writes one HTML document that works offline, opened straight from disk: the
meshes are embedded (base64 little-endian typed arrays), and a small inlined script draws them on
a 2D ``<canvas>`` (no WebGL, no library, nothing fetched: the page holds no ``http(s)://`` reference
at all; :func:`offline_problems` checks that). The viewer:

* a slider (and a play button, and the left/right arrow keys) picks the mesh ("step");
* dragging rotates the view, the mouse wheel (or +/-) zooms, a double click resets the view;
* every step shares one framing (the union of the meshes' bounding spheres), so shapes keep their
  relative size while the slider moves;
* the URL fragment sets the state, e.g. ``page.html#step=5&yaw=30&pitch=10&zoom=1.2``, and
  follows it (the page updates it as you move), so a view can be bookmarked or driven by a
  headless browser; ``window.voxface.setStep(i)`` does the same from script.

Rendering: orthographic, flat-shaded clay (the colours and lights of :mod:`voxface.viz`), painted
far to near. A closed mesh (watertight, consistently wound) is drawn with its back faces culled,
which hides nothing a closed surface shows (every back face lies behind a front face), and is
wound outward first, shell by shell (an inside-out mesh was lit from the wrong side); any other
mesh (an open face mask, a scan with holes, inconsistent winding) is drawn double-sided, each
triangle lit on the side facing the viewer, as :mod:`voxface.viz`'s ray caster does: culled, it
looked holed from behind. Views follow :mod:`voxface.viz`: ``yaw = pitch = 0``
looks at the face from the front (+z), canonical x to the right, y up; positive yaw shows the
subject's left (+x) side, positive pitch looks from above.

Meshes larger than ``max_faces`` triangles are decimated for the page only (quadric decimation,
a closed mesh kept closed, an open one decimated as it is), the step's caption saying so ("20,000
of 1,310,720 faces shown"); vertices are stored as int16 relative to the shared bounding sphere
(about ``radius / 32767``: 0.006 mm for a 200 mm sphere).
"""

from __future__ import annotations

import base64
import html as _html
import itertools
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, VoxfaceError
from .mesh import _checked_pair, atomic_open, check_file_name, mesh_list

__all__ = ["mesh_page", "save_mesh_page", "offline_problems", "page_data"]

#: Default clay colour, as :data:`voxface.viz.CLAY`.
_CLAY = (0.8, 0.75, 0.7)


def _mesh_arrays(mesh: Any, max_faces: int | None, i: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """``(vertices (V, 3) float64, faces (F, 3) int64, faces given)`` of mesh ``i``, checked, and
    decimated to about ``max_faces`` if it has more (the last item: its number of faces before)."""
    from .mesh import as_trimesh

    m = as_trimesh(mesh)
    # as voxface.viz refuses them: a page of an empty mesh failed in numpy, and a NaN vertex wrote
    # NaN into the page's JSON, which the browser cannot parse (a blank page)
    if len(m.faces) == 0:
        raise VoxfaceError(f"cannot show mesh {i}: it has no faces")
    try:  # trimesh keeps a loaded file's indices unchecked: past the last vertex (an IndexError) or -1
        _checked_pair(m.vertices, m.faces)
    except InputError as e:
        raise InputError(f"cannot show mesh {i}: {e}") from None
    bad = ~np.isfinite(np.asarray(m.vertices)).all(axis=1)
    if bad.any():
        raise VoxfaceError(f"cannot show mesh {i}: {int(bad.sum())} of its {len(m.vertices)} vertices have NaN "
                           "or infinite coordinates")
    from .viz import _check_area

    _check_area(np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64), f"cannot show mesh {i}")
    given = len(m.faces)
    if max_faces is not None and len(m.faces) > int(max_faces):
        import trimesh

        from .mesh import _decimate, _edge_topology, _o3d_decimate

        # faces naming a vertex twice (no area) or the three vertices of an earlier face (a duplicate,
        # or the reversed twin of a double-sided mesh) add nothing to the page (open meshes are drawn
        # double-sided), but open3d's decimation mangled such a mesh (a face mask with 3,000 of them:
        # a third of its area gone, half a cap moved 12 mm off) or, double-sided, kept every face
        f = np.asarray(m.faces)
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
        first = np.sort(np.unique(np.sort(f, axis=1), axis=0, return_index=True)[1])
        if len(first) < len(m.faces):  # a new mesh: nothing is changed, or cached, on the caller's
            m = trimesh.Trimesh(np.asarray(m.vertices), f[first], process=False)
    if max_faces is not None and len(m.faces) > int(max_faces):
        # _decimate keeps a closed mesh closed, and kept an open one (a face mask) whole, with a
        # warning that decimation "left the mesh open": an open mesh is decimated as it is. Found on
        # the arrays: m.is_watertight cached the edges on the caller's mesh (~120 bytes a face,
        # kept as long as the caller keeps the mesh: 30 MB a 256^3 face)
        topo = _edge_topology(np.asarray(m.faces), len(m.vertices))
        closed = topo.closed and topo.consistent
        m = _decimate(m, int(max_faces)) if closed else _o3d_decimate(m, int(max_faces))
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64), given


def _check_max_faces(max_faces: Any) -> None:
    """Refuse a ``max_faces`` (decimate meshes with more faces for the view; None: never) that is
    not a whole number of at least 4 faces: NaN, infinity (for "never") or a word were bare
    ``int()`` errors."""
    if max_faces is None:
        return
    try:
        ok = int(max_faces) >= 4
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"max_faces must be a number of faces, at least 4 (or None: never decimate), "
                         f"got {max_faces!r}")


def _closed_outward(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(faces, closed)``: whether the mesh ``v (V, 3), f (F, 3)`` is closed and consistently
    wound (then back faces can be culled), its faces wound outward (positive volume) if so, each
    connected component by its own volume: a closed mesh of two shells, one of them inside-out, has a
    positive volume in all, and that shell was culled as wound, showing its inside from the front.
    Computed on the arrays (:func:`voxface.mesh._edge_topology`: trimesh's ``is_watertight``,
    ``is_winding_consistent`` and components): a ``trimesh.Trimesh`` is a reference cycle, and its
    caches (over a MB a 20k-face mesh) waited for Python's cycle collector, mesh after mesh."""
    from .mesh import _edge_topology

    topo = _edge_topology(f, len(v))
    if not (topo.closed and topo.consistent):
        return f, False
    tri = v[f]
    volume6 = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))  # 6 x signed volume a face
    flip = (np.bincount(topo.labels, weights=volume6) < 0)[topo.labels]
    if not flip.any():
        return f, True
    f = f.copy()
    f[flip] = f[flip][:, ::-1]
    return f, True


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def page_data(
    meshes: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    max_faces: int | None = 20000,
    color: tuple[float, float, float] = _CLAY,
    initial: int = 0,
    yaw: float = 0.0,
    pitch: float = 0.0,
    progress: bool = False,
) -> dict[str, Any]:
    """The JSON payload :func:`mesh_page` embeds (exposed for tests and other front ends).

    Returns ``{"labels": [str], "center": [x, y, z], "radius": r, "frames": [{"v": base64 int16
    (V, 3), "f": base64 uint16/uint32 (F, 3), "fw": 2 or 4, "nv": V, "nf": F, "cull": bool[, "of": F0]}],
    "color", "initial", "yaw", "pitch"}``; a vertex is ``center + v * radius / 32767`` (mm), the
    sphere of centre and radius bounding every vertex a face names (one no face names is clipped).
    ``of``, only for a mesh over ``max_faces``, shown with fewer faces (decimated, after its faces
    that add nothing to the page are left out: those naming a vertex twice, duplicates and reversed
    twins): its number of faces given (the viewer's caption reads "20,000 of 1,310,720 faces
    shown" at that step).
    ``cull``: the mesh is closed and its faces wound outward (each inside-out shell of a closed
    mesh is turned outward here), so the viewer culls back faces; otherwise it draws both sides.
    Raises :class:`~voxface.errors.VoxfaceError` for a mesh without faces, with NaN or infinite
    vertices, with faces all of zero area (a blank view) or with a face naming a vertex it does not
    have, naming its index; ``ValueError`` for a
    ``yaw``, ``pitch`` or ``initial`` that is not a finite number, ``max_faces`` below 4 or a colour
    outside [0, 1]. ``pitch`` is kept in [-89, 89] degrees, as the viewer keeps it. ``progress``
    shows a bar over the meshes (decimating a 256^3 mesh to ``max_faces`` takes seconds).
    """
    head, frames = _page_parts(meshes, labels, max_faces=max_faces, color=color, initial=initial, yaw=yaw,
                               pitch=pitch, progress=progress)
    return {**{k: head[k] for k in _HEAD_KEYS}, "frames": list(frames), **{k: head[k] for k in _TAIL_KEYS}}


#: :func:`page_data`'s keys before ``frames``, and after it (the JSON's order)
_HEAD_KEYS, _TAIL_KEYS = ("labels", "center", "radius"), ("color", "initial", "yaw", "pitch")


def _page_parts(meshes: Any, labels: Any, *, max_faces: int | None, color: Any, initial: Any, yaw: Any, pitch: Any,
                progress: bool) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """:func:`page_data` as ``(everything but "frames", an iterator over the frames)``: every mesh
    is checked, decimated and wound here (its float vertices and final faces kept); each frame is
    quantised and base64-encoded as the iterator reaches it, its mesh let go (a page of many
    meshes never holds them all in every form at once)."""
    meshes = mesh_list(meshes)
    if len(meshes) == 0:
        raise InputError("mesh_page needs at least one mesh")
    if isinstance(labels, str):  # one caption, not one a character
        labels = [labels]
    if labels is None:
        labels = [f"step {i}" for i in range(len(meshes))]
    labels = list(labels)  # a generator was a bare "object of type 'generator' has no len()"
    if len(labels) != len(meshes):
        raise InputError(f"{len(labels)} labels for {len(meshes)} meshes")
    try:
        rgb = [float(c) for c in color]
    except (TypeError, ValueError):
        rgb = []
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):  # 0-255 drew white clay on white
        raise InputError(f"color must be three numbers in [0, 1] (RGB), got {color!r}")
    # a NaN or infinite view went into the JSON as NaN/Infinity, which JSON.parse refuses: a blank page
    for name, x in (("yaw", yaw), ("pitch", pitch), ("initial", initial)):
        try:
            ok = math.isfinite(float(x))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{name} must be a finite number, got {x!r}")
    _check_max_faces(max_faces)
    from tqdm.auto import tqdm

    from .viz import _drawn

    held: list[Any] = []
    for i, m in enumerate(tqdm(meshes, desc="page", unit="mesh", disable=not progress)):
        v, f, given = _mesh_arrays(m, max_faces, i)
        f, closed = _closed_outward(v, f)
        fw = 2 if len(v) <= 65535 else 4
        # the framing bounds the vertices faces name, as voxface.viz's does: a stray vertex (a scan's,
        # faces deleted in an editor) made the head a speck at the view's edge; such a vertex, never
        # drawn, is clipped to the int16 range below (the faces keep their vertex numbers)
        held.append((v, f.astype(np.uint16 if fw == 2 else np.uint32), fw, closed, _drawn(v, f), given))
    center = 0.5 * (np.min([h[4].min(0) for h in held], axis=0) + np.max([h[4].max(0) for h in held], axis=0))
    radius = max(float(np.linalg.norm(h[4] - center, axis=1).max()) for h in held) or 1.0
    head = {
        "labels": [str(s) for s in labels],
        "center": [float(c) for c in center],
        "radius": float(radius),
        "color": rgb,
        "initial": int(min(max(int(initial), 0), len(meshes) - 1)),
        "yaw": float(yaw),
        "pitch": min(89.0, max(-89.0, float(pitch))),
    }

    def frames() -> Iterator[dict[str, Any]]:
        for i in range(len(held)):
            (v, fa, fw, closed, _, given), held[i] = held[i], None
            q = np.clip(np.round((v - center) / radius * 32767), -32767, 32767).astype(np.int16)
            fr = {"v": _b64(q), "f": _b64(fa), "fw": fw, "nv": int(len(v)), "nf": int(len(fa)), "cull": closed}
            if given > len(fa):  # decimated for the page: its caption says so (the files keep every face)
                fr["of"] = int(given)
            yield fr

    return head, frames()


_CSS = """
:root { color-scheme: light; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background: #f4f4f2; color: #222; }
header { padding: 10px 16px 0 16px; }
h1 { font-size: 18px; margin: 0 0 2px 0; font-weight: 600; }
p.desc { margin: 0; color: #555; }
#wrap { display: flex; flex-direction: column; align-items: center; padding: 8px 16px 16px 16px; }
#view { background: #ffffff; border: 1px solid #ddd; border-radius: 6px; cursor: grab;
        touch-action: none; }
#view:active { cursor: grabbing; }
#controls { display: flex; gap: 10px; align-items: center; margin-top: 10px; width: 100%;
            max-width: 720px; }
#step { flex: 1; }
#label { min-width: 180px; font-variant-numeric: tabular-nums; }
button { font: inherit; padding: 3px 10px; }
.hint { color: #777; font-size: 12px; margin-top: 6px; }
"""

# The viewer. Plain ES2017, no dependencies; keep it free of any network address.
_JS = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("voxface-data").textContent);
  const canvas = document.getElementById("view");
  const ctx = canvas.getContext("2d");
  const slider = document.getElementById("step");
  const label = document.getElementById("label");
  const playBtn = document.getElementById("play");
  const n = DATA.frames.length;
  // decoded frames (typed arrays, about 0.5 MB a 20k-face mesh) kept for the last MAX_CACHED steps
  // shown: a page of 1,024 faces played through held every one of them decoded, beside the page
  const MAX_CACHED = 32, cache = new Array(n), cached = [];
  const state = { step: DATA.initial, yaw: DATA.yaw, pitch: DATA.pitch, zoom: 1.0 };
  let timer = null, dir = 1, drawn = 0;

  function decode(b64, Type) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  function frame(i) {  // vertices in mm relative to the shared centre, faces, unit face normals
    if (cache[i]) return cache[i];
    const fr = DATA.frames[i], s = DATA.radius / 32767;
    const q = decode(fr.v, Int16Array), f = decode(fr.f, fr.fw === 2 ? Uint16Array : Uint32Array);
    const v = new Float32Array(q.length);
    for (let k = 0; k < q.length; k++) v[k] = q[k] * s;
    const nf = fr.nf, nrm = new Float32Array(3 * nf);
    for (let t = 0; t < nf; t++) {
      const a = 3 * f[3 * t], b = 3 * f[3 * t + 1], c = 3 * f[3 * t + 2];
      const ux = v[b] - v[a], uy = v[b + 1] - v[a + 1], uz = v[b + 2] - v[a + 2];
      const wx = v[c] - v[a], wy = v[c + 1] - v[a + 1], wz = v[c + 2] - v[a + 2];
      let nx = uy * wz - uz * wy, ny = uz * wx - ux * wz, nz = ux * wy - uy * wx;
      const l = Math.hypot(nx, ny, nz) || 1;
      nrm[3 * t] = nx / l; nrm[3 * t + 1] = ny / l; nrm[3 * t + 2] = nz / l;
    }
    cached.push(i);
    if (cached.length > MAX_CACHED) cache[cached.shift()] = undefined;  // the step shown longest ago
    return (cache[i] = { v: v, f: f, n: nrm, nf: nf, cull: fr.cull !== false });
  }

  function axes(yawDeg, pitchDeg) {  // camera right, up, back in canonical coordinates (viz.py)
    const y = yawDeg * Math.PI / 180, p = pitchDeg * Math.PI / 180;
    const cy = Math.cos(y), sy = Math.sin(y), cp = Math.cos(p), sp = Math.sin(p);
    return { right: [cy, 0, -sy], up: [-sy * sp, cp, -cy * sp], back: [sy * cp, sp, cy * cp] };
  }

  function unit(v) { const l = Math.hypot(v[0], v[1], v[2]); return [v[0] / l, v[1] / l, v[2] / l]; }

  function resize() {
    const ctrl = 120;
    const side = Math.max(200, Math.floor(Math.min(window.innerWidth - 32, window.innerHeight - ctrl - 70, 900)));
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = side + "px"; canvas.style.height = side + "px";
    canvas.width = Math.round(side * dpr); canvas.height = Math.round(side * dpr);
  }

  function draw() {
    const fr = frame(state.step), v = fr.v, f = fr.f, nrm = fr.n;
    const W = canvas.width, H = canvas.height;
    const ax = axes(state.yaw, state.pitch), R = ax.right, U = ax.up, B = ax.back;
    const scale = state.zoom * Math.min(W, H) / 2 / (DATA.radius * 1.04);
    const nv = v.length / 3, sx = new Float32Array(nv), sy = new Float32Array(nv), sz = new Float32Array(nv);
    for (let k = 0; k < nv; k++) {
      const x = v[3 * k], y = v[3 * k + 1], z = v[3 * k + 2];
      sx[k] = W / 2 + scale * (x * R[0] + y * R[1] + z * R[2]);
      sy[k] = H / 2 - scale * (x * U[0] + y * U[1] + z * U[2]);
      sz[k] = x * B[0] + y * B[1] + z * B[2];
    }
    // clay lights fixed to the camera: key upper left, fill right (viz._shade)
    const key = unit([-0.55 * R[0] + 0.65 * U[0] + 0.75 * B[0], -0.55 * R[1] + 0.65 * U[1] + 0.75 * B[1],
                      -0.55 * R[2] + 0.65 * U[2] + 0.75 * B[2]]);
    const fill = unit([0.8 * R[0] - 0.15 * U[0] + 0.6 * B[0], 0.8 * R[1] - 0.15 * U[1] + 0.6 * B[1],
                       0.8 * R[2] - 0.15 * U[2] + 0.6 * B[2]]);
    const half = unit([key[0] + B[0], key[1] + B[1], key[2] + B[2]]);
    const vis = [], depth = new Float32Array(fr.nf), side = new Float32Array(fr.nf);
    for (let t = 0; t < fr.nf; t++) {
      const nb = nrm[3 * t] * B[0] + nrm[3 * t + 1] * B[1] + nrm[3 * t + 2] * B[2];
      if (nb <= 0 && fr.cull) continue;  // back face of a closed mesh: a front face hides it
      side[t] = nb < 0 ? -1 : 1;  // open mesh: light the side facing the viewer
      depth[t] = sz[f[3 * t]] + sz[f[3 * t + 1]] + sz[f[3 * t + 2]];
      vis.push(t);
    }
    vis.sort(function (a, b) { return depth[a] - depth[b]; });  // far to near
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, W, H);
    ctx.lineJoin = "round"; ctx.lineWidth = Math.max(0.6, 0.6 * (window.devicePixelRatio || 1));
    const C = DATA.color;
    for (let k = 0; k < vis.length; k++) {
      const t = vis[k], a = f[3 * t], b = f[3 * t + 1], c = f[3 * t + 2];
      const nx = side[t] * nrm[3 * t], ny = side[t] * nrm[3 * t + 1], nz = side[t] * nrm[3 * t + 2];
      const dk = Math.max(0, nx * key[0] + ny * key[1] + nz * key[2]);
      const df = Math.max(0, nx * fill[0] + ny * fill[1] + nz * fill[2]);
      const sp = 0.12 * Math.pow(Math.max(0, nx * half[0] + ny * half[1] + nz * half[2]), 24);
      const d = 0.3 + 0.68 * dk + 0.3 * df;
      const col = "rgb(" + Math.round(255 * Math.min(1, d * C[0] + sp)) + "," +
        Math.round(255 * Math.min(1, d * C[1] + sp)) + "," + Math.round(255 * Math.min(1, d * C[2] + sp)) + ")";
      ctx.fillStyle = col; ctx.strokeStyle = col;
      ctx.beginPath();
      ctx.moveTo(sx[a], sy[a]); ctx.lineTo(sx[b], sy[b]); ctx.lineTo(sx[c], sy[c]);
      ctx.closePath(); ctx.fill(); ctx.stroke();
    }
    slider.value = String(state.step);
    const of = DATA.frames[state.step].of;  // a mesh decimated for the page: say so
    label.textContent = DATA.labels[state.step] + "  (" + (state.step + 1) + " / " + n + ")" +
      (of ? "  \u00b7 " + fr.nf.toLocaleString("en") + " of " + of.toLocaleString("en") + " faces shown" : "");
    drawn += 1;
    document.body.setAttribute("data-step", String(state.step));
    document.body.setAttribute("data-drawn", String(drawn));
  }

  function writeHash() {
    const h = "#step=" + state.step + "&yaw=" + Math.round(state.yaw) + "&pitch=" + Math.round(state.pitch) +
      "&zoom=" + state.zoom.toFixed(2);
    if (window.location.hash !== h && window.history && window.history.replaceState) {
      try { window.history.replaceState(null, "", h); } catch (e) { /* file: pages may refuse */ }
    }
  }

  function readHash() {
    const h = window.location.hash.replace(/^#/, "");
    if (!h) return;
    h.split("&").forEach(function (kv) {
      const parts = kv.split("="), k = parts[0], x = parseFloat(parts[1]);
      if (!isFinite(x)) return;
      if (k === "step") state.step = Math.min(n - 1, Math.max(0, Math.round(x)));
      else if (k === "yaw") state.yaw = x;
      else if (k === "pitch") state.pitch = Math.max(-89, Math.min(89, x));
      else if (k === "zoom") state.zoom = Math.max(0.2, Math.min(8, x));
    });
  }

  function setStep(i) { state.step = Math.min(n - 1, Math.max(0, Math.round(i))); draw(); writeHash(); }
  function setView(yaw, pitch, zoom) {
    if (yaw !== undefined) state.yaw = yaw;
    if (pitch !== undefined) state.pitch = Math.max(-89, Math.min(89, pitch));
    if (zoom !== undefined) state.zoom = Math.max(0.2, Math.min(8, zoom));
    draw(); writeHash();
  }
  function play() {
    if (timer) { clearInterval(timer); timer = null; playBtn.textContent = "play"; return; }
    playBtn.textContent = "pause";
    timer = setInterval(function () {
      if (n < 2) return;
      if (state.step + dir < 0 || state.step + dir > n - 1) dir = -dir;
      setStep(state.step + dir);
    }, 160);
  }

  slider.min = "0"; slider.max = String(n - 1); slider.step = "1";
  slider.addEventListener("input", function () { setStep(parseInt(slider.value, 10)); });
  playBtn.addEventListener("click", play);
  document.getElementById("reset").addEventListener("click", function () { setView(DATA.yaw, DATA.pitch, 1.0); });
  let drag = null;
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY, yaw: state.yaw, pitch: state.pitch };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drag) return;
    state.yaw = drag.yaw - (e.clientX - drag.x) * 0.5;
    state.pitch = Math.max(-89, Math.min(89, drag.pitch + (e.clientY - drag.y) * 0.5));
    draw();
  });
  canvas.addEventListener("pointerup", function () { drag = null; writeHash(); });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    setView(undefined, undefined, state.zoom * Math.exp(-e.deltaY * 0.0015));
  }, { passive: false });
  canvas.addEventListener("dblclick", function () { setView(DATA.yaw, DATA.pitch, 1.0); });
  window.addEventListener("keydown", function (e) {
    if (e.target === slider && (e.key === "ArrowRight" || e.key === "ArrowLeft")) return;  // it steps itself
    if (e.key === "ArrowRight") setStep(state.step + 1);
    else if (e.key === "ArrowLeft") setStep(state.step - 1);
    else if (e.key === "+" || e.key === "=") setView(undefined, undefined, state.zoom * 1.15);
    else if (e.key === "-") setView(undefined, undefined, state.zoom / 1.15);
  });
  window.addEventListener("hashchange", function () { readHash(); draw(); });
  window.addEventListener("resize", function () { resize(); draw(); });
  window.voxface = { setStep: setStep, setView: setView, state: state, steps: n, draw: draw,
                     cached: function () { return cached.length; } };
  readHash();
  resize();
  draw();
  document.body.setAttribute("data-ready", "1");
})();
"""


def mesh_page(
    meshes: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = "voxface",
    description: str | None = "",
    max_faces: int | None = 20000,
    color: tuple[float, float, float] = _CLAY,
    initial: int = 0,
    yaw: float = 0.0,
    pitch: float = 0.0,
    progress: bool = False,
) -> str:
    """One self-contained HTML page: a slider over ``meshes``, each rotatable/zoomable in 3D.

    Args:
        meshes: ``trimesh.Trimesh`` / :class:`~voxface.mesh.MeshResult` / ``(vertices (V, 3),
            faces (F, 3))`` in canonical mm, or :class:`voxface.Reconstruction` s (their meshes); a
            sequence of them, or one (a page of one step).
        labels: a caption per mesh (default ``"step i"``); a string is the caption of one mesh.
        title, description: page heading and a line of text under it (plain text, escaped;
            ``None``: the default).
        max_faces: decimate larger meshes for the page (None: never); closed meshes stay
            closed, open ones (a face mask) are decimated too.
        color: clay RGB in [0, 1].
        initial: the step shown first (the URL fragment ``#step=`` overrides it).
        yaw, pitch: the initial view in degrees (module docstring).
        progress: a progress bar over the meshes as they are prepared (decimated, quantised).

    Returns:
        The HTML document (str, UTF-8 safe; a few hundred kB per 20k-face mesh). It loads nothing:
        no external scripts, styles, fonts or images.
    """
    return "".join(_page_chunks(meshes, labels, title=title, description=description, max_faces=max_faces,
                                color=color, initial=initial, yaw=yaw, pitch=pitch, progress=progress))


#: A lone UTF-16 surrogate: what ``os.fsdecode`` makes of a file name's bytes that are not UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _json(x: Any) -> str:
    """``x`` as compact JSON for a ``<script>`` element: no "<" at all ("\\u003c" in JSON strings),
    since "</script>" closed the element and a label holding "<!--<script>" kept the real
    "</script>" from closing it (the page never ran); "<" occurs in JSON only inside strings."""
    return json.dumps(x, separators=(",", ":")).replace("<", "\\u003c")


def _page_chunks(
    meshes: Any,
    labels: Sequence[str] | None = None,
    *,
    title: str | None = "voxface",
    description: str | None = "",
    max_faces: int | None = 20000,
    color: tuple[float, float, float] = _CLAY,
    initial: int = 0,
    yaw: float = 0.0,
    pitch: float = 0.0,
    progress: bool = False,
) -> Iterator[str]:
    """:func:`mesh_page`'s document in pieces: the text before the payload, the payload a frame at
    a time (each made as it is asked for: :func:`_page_parts`), the text after. Every mesh is
    checked before the first piece comes."""
    meshes = [getattr(m, "mesh", m) if type(m).__name__ == "Reconstruction" else m for m in mesh_list(meshes)]
    head, frames = _page_parts(meshes, labels, max_faces=max_faces, color=color, initial=initial, yaw=yaw,
                               pitch=pitch, progress=progress)
    # None (plotly's "no title", as viz.plot_mesh_plotly takes it) or a number was a bare
    # AttributeError from html.escape; None is the default heading / no description
    title = "voxface" if title is None else str(title)
    description = "" if description is None else str(description)

    def esc(text: str) -> str:
        # a file name that is not UTF-8 holds lone surrogates (os.fsdecode keeps its bytes so): shown
        # as U+FFFD, as the browser shows them in a label (JSON "\\udce9"), so the page stays UTF-8
        # text (mesh_page's str could not be encoded: write_text, a notebook's HTML display)
        return _SURROGATE.sub("\ufffd", _html.escape(text))
    yield f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="voxface">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><h1>{esc(title)}</h1><p class="desc">{esc(description)}</p></header>
<div id="wrap">
<canvas id="view" width="640" height="640" aria-label="3D view of the selected mesh"></canvas>
<div id="controls">
<button id="play" type="button">play</button>
<input id="step" type="range" min="0" max="{len(meshes) - 1}" step="1" value="{head['initial']}"
 aria-label="step">
<span id="label"></span>
<button id="reset" type="button">reset view</button>
</div>
<div class="hint">drag to rotate &middot; wheel to zoom &middot; double-click to reset &middot;
arrow keys change the step &middot; the address fragment (#step=&hellip;&amp;yaw=&hellip;) keeps the view</div>
</div>
<script type="application/json" id="voxface-data">"""
    # page_data's JSON, as json.dumps writes the whole dict: "{", "key":value pairs joined by ","
    yield _json({k: head[k] for k in _HEAD_KEYS})[:-1] + ',"frames":['
    for i, frame in enumerate(frames):
        yield ("," if i else "") + _json(frame)
    yield "]," + _json({k: head[k] for k in _TAIL_KEYS})[1:]
    yield f"""</script>
<script>{_JS}</script>
</body>
</html>
"""


def save_mesh_page(path: str | Path, meshes: Sequence[Any], labels: Sequence[str] | None = None, **kwargs: Any) -> Path:
    """Write :func:`mesh_page` to ``path`` atomically (UTF-8); keyword arguments as there. A ``path``
    ending in a slash (``out/``: a folder) or named as a picture (``view.png``: the page's HTML under
    it, as :func:`voxface.viz.save_png` refuses ``a.jpg``) is an :class:`InputError`."""
    from .viz import _check_suffix

    check_file_name(path)  # Path() drops the slash: "out/" wrote a file named out
    _check_suffix(path, ".html", "HTML")  # "page.png" was written, HTML that no image viewer opens
    chunks = _page_chunks(meshes, labels, **kwargs)
    first = next(chunks)  # every mesh checked (and the arguments) before the file is opened
    path = Path(path)
    try:
        with atomic_open(path) as f:  # the page a frame at a time: never all of it in memory
            for chunk in itertools.chain([first], chunks):
                f.write(chunk.encode("utf-8", "replace"))  # ("replace": none is left, see esc above)
    except OSError as e:  # as atomic_write_bytes words it
        raise VoxfaceError(f"cannot write file ({e.strerror or e})", path) from None
    return path


_REMOTE = re.compile(
    r"""(?ix)
    (?:https?:|ftp:|wss?:)?//[a-z0-9.-]+\.[a-z]{2,}   # an absolute or protocol-relative address
    | \b(?:src|href|srcset|poster)\s*=\s*["']?\s*(?!\#|data:|javascript:)[^\s"'>]+  # src/href... attributes
    | @import | url\(\s*["']?(?!data:)                # CSS imports and non-data urls
    """
)

#: What a browser may fetch from: a tag (its quoted attribute values whole: ``alt="a>b"``), and
#: the body of a ``<script>`` or ``<style>`` element (to the end if unclosed). The text between
#: tags is shown, never fetched.
_FETCHING = re.compile(r"""(?is)<(script|style)\b[^>]*>.*?(?:</\1\s*>|\Z)|<(?:[^>"']|"[^"]*"|'[^']*')*>""")


def offline_problems(html: str) -> list[str]:
    """Whatever in ``html`` could make a browser reach the network: absolute or protocol-relative
    addresses, ``src``/``href``/``srcset``/``poster`` attributes (other than ``#...`` and
    ``data:``), CSS ``@import`` and ``url(...)`` not holding ``data:``, in a tag or a script or
    style element; the text the page shows is not looked at (a title naming the photo
    ``<img src=x>.jpg``, escaped, or a description quoting an address is text, never fetched). An
    empty list means the page is self-contained."""
    # the embedded JSON payload is data the browser never fetches from; base64 could spell "src="
    text = re.sub(r'(?is)(<script[^>]*type="application/json"[^>]*>).*?(</script>)', r"\1\2", html)
    fetching = "\n".join(m.group(0) for m in _FETCHING.finditer(text))
    return sorted({m.group(0) for m in _REMOTE.finditer(fetching)})
