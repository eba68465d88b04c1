"""The exported HTML page in a real browser: headless Chromium draws the mesh, the slider changes it.

Needs Chromium (Debian package ``chromium``). When ``chromium`` is missing and the tests run as
root, the set-up installs it with ``apt-get install -y chromium``; otherwise the tests are skipped
with the reason. By hand: ``sudo apt-get install -y chromium`` (the Makefile does not need it).

The browser runs with networking disabled for the page (every host name resolves to nothing), so
a drawn mesh also proves the page loads nothing from the network. The steps are chosen through
the page's URL fragment (``index.html#step=4&yaw=30``), which sets the slider.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .test_latent import trained_toy_checkpoint

WINDOW = (800, 900)
WHITE = np.array([255, 255, 255])


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _find_chromium()
    if path is None:
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("needs Chromium (Debian: sudo apt-get install -y chromium); not root, so not installing it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        r = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True, env=env,
                           timeout=900)
        if r.returncode != 0:  # stale package lists: update once and retry
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
            r = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True,
                               env=env, timeout=900)
        path = _find_chromium()
        if path is None:
            pytest.skip(f"apt-get install chromium failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return path


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-sync", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no host resolves: the page must be self-contained
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=5000", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def screenshot(chromium: str, url: str, out: Path) -> np.ndarray:
    from PIL import Image

    profile = out.with_suffix(".profile")  # a fresh profile per run
    r = _browser(chromium, profile, f"--screenshot={out}", url)
    assert out.is_file(), f"no screenshot (exit {r.returncode}): {r.stderr[-1500:]}"
    with Image.open(out) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def canvas_box(img: np.ndarray) -> tuple[slice, slice]:
    """The drawing area: the page background is #f4f4f2, the canvas white with the mesh on it."""
    page = np.array([0xF4, 0xF4, 0xF2])
    not_page = np.abs(img - page).sum(-1) > 6
    rows = np.flatnonzero(not_page[:, WINDOW[0] // 2 - 50 : WINDOW[0] // 2 + 50].mean(1) > 0.9)
    cols = np.flatnonzero(not_page[rows[len(rows) // 2]] if len(rows) else [])
    assert len(rows) > 200 and len(cols) > 200, "no canvas found in the screenshot"
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def mesh_mask(img: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    region = img[box]
    return np.abs(region - WHITE).sum(-1) > 30  # clay, not the white canvas


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """index.html of ``voxface interpolate`` between two toy faces of different people."""
    import torch

    from voxface import load_model
    from voxface.data import build_dataset
    from voxface.latent import save_latents

    from .test_latent import toy_config, two_people

    ckpt = trained_toy_checkpoint(tmp_path_factory)
    model = load_model(ckpt, device="cpu")
    ds = build_dataset(toy_config()["data"], "val", model.config)
    tmp = tmp_path_factory.mktemp("browser")
    items = [ds[i] for i in range(16)]
    with torch.inference_mode():
        lat = model.encode(torch.from_numpy(np.stack([items[i]["image"] for i in two_people(model, items)])))
    a, b = save_latents(lat[0], tmp / "a.npz"), save_latents(lat[1], tmp / "b.npz")
    from typer.testing import CliRunner

    from voxface.cli import app

    args = ["interpolate", str(a), str(b), "-o", str(tmp / "morph"), "--steps", "8", "--checkpoint", str(ckpt),
            "--size", "64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return tmp / "morph" / "index.html"


def test_page_draws_the_mesh_and_the_slider_changes_it(chromium, page, tmp_path):
    url = page.resolve().as_uri()
    first = screenshot(chromium, url + "#step=0", tmp_path / "step0.png")
    last = screenshot(chromium, url + "#step=7", tmp_path / "step7.png")
    turned = screenshot(chromium, url + "#step=0&yaw=90&pitch=0", tmp_path / "step0_yaw90.png")
    box = canvas_box(first)
    h, w = first[box].shape[:2]
    assert h > 300 and w > 300
    m0, m7, m90 = mesh_mask(first, box), mesh_mask(last, box), mesh_mask(turned, box)
    # the mesh is drawn: the middle of the canvas is clay, not background, and it is shaded
    centre = (slice(h // 2 - h // 8, h // 2 + h // 8), slice(w // 2 - w // 8, w // 2 + w // 8))
    assert m0[centre].mean() > 0.9, f"the face region is background: {m0[centre].mean():.2f} drawn"
    assert 0.1 < m0.mean() < 0.9
    clay = first[box][m0]
    assert clay.std(0).mean() > 8, "flat colour: no shading"
    # another slider position draws another shape; turning the view changes the picture too
    diff = np.abs(first[box] - last[box]).sum(-1) > 40
    assert diff.mean() > 0.005, f"step 0 and step 7 look the same ({diff.mean():.4f} of the pixels differ)"
    assert (m0 != m7).mean() > 0.002
    assert (m0 != m90).mean() > 0.01


def test_page_reads_the_fragment_and_runs_without_errors(chromium, page, tmp_path):
    r = _browser(chromium, tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom",
                 page.resolve().as_uri() + "#step=5&yaw=30")
    assert r.returncode == 0, r.stderr[-1500:]
    dom = r.stdout
    assert 'data-ready="1"' in dom, "the script did not finish"
    assert 'data-step="5"' in dom, "the page did not take the step from the URL fragment"
    assert "Uncaught" not in r.stderr, r.stderr[-1500:]


class _DevTools:
    """Chromium driven over ``--remote-debugging-pipe`` (fds 3 and 4, NUL-separated JSON): input
    events sent this way are trusted, so the browser's own default actions (a focused slider
    stepping on an arrow key) run as they do for a person."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        cmd = (f"exec '{chromium}' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
               f"'--host-resolver-rules=MAP * ~NOTFOUND' --remote-debugging-pipe '--user-data-dir={profile}' "
               f"--window-size={WINDOW[0]},{WINDOW[1]} about:blank 3<&{to_chrome_r} 4>&{from_chrome_w}")
        self.proc = subprocess.Popen(["bash", "-c", cmd], pass_fds=(to_chrome_r, from_chrome_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id, self._buf, self.session = 0, b"", None

    def send(self, method: str, **params) -> dict:
        import json
        import select

        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                ready, _, _ = select.select([self._r], [], [], 60)
                chunk = os.read(self._r, 1 << 16) if ready else b""
                assert chunk, f"no answer from Chromium to {method}"
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._id:
                assert "error" not in answer, answer
                return answer["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def js(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def key(self, key: str, code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def test_an_arrow_key_on_the_focused_slider_moves_one_step(chromium, tmp_path):
    """The page's arrow keys stepped, and so did the focused slider itself (a click on it focuses
    it): one key press moved two steps. The slider now steps alone; elsewhere the keys still step."""
    import time

    import trimesh

    from voxface.html import save_mesh_page

    page = save_mesh_page(tmp_path / "index.html", [trimesh.creation.icosphere(2, 40.0 + 5 * i) for i in range(8)])
    browser = _DevTools(chromium, tmp_path / "profile")
    try:
        browser.open(page.resolve().as_uri() + "#step=3")

        def wait_for(expression: str) -> None:
            for _ in range(100):
                if browser.js(expression):
                    return
                time.sleep(0.1)
            raise AssertionError(f"never true: {expression}")

        wait_for("document.body.getAttribute('data-ready') === '1'")
        assert browser.js("window.voxface.state.step") == 3
        browser.js("document.getElementById('step').focus()")
        browser.key("ArrowRight", 39)
        wait_for("document.getElementById('step').value === '4'")
        time.sleep(0.3)  # a second step would have come with the same key press
        assert browser.js("[window.voxface.state.step, document.getElementById('step').value]") == [4, "4"]
        browser.key("ArrowLeft", 37)
        wait_for("window.voxface.state.step === 3")
        browser.js("document.activeElement.blur()")  # not on the slider: the page's own keys
        browser.key("ArrowRight", 39)
        wait_for("window.voxface.state.step === 4")
        time.sleep(0.3)
        assert browser.js("[window.voxface.state.step, document.getElementById('step').value]") == [4, "4"]
    finally:
        browser.close()


def test_an_open_mesh_is_drawn_from_behind_and_an_inside_out_one_as_the_outward_one(chromium, tmp_path):
    """Back faces were culled for every mesh: a cap (an open face mask) seen from behind showed only
    its rim, and an inside-out sphere was lit from the lower right (its inner side). Now the cap's
    inner side is drawn, lit on the side facing the viewer, and the inside-out sphere looks like the
    sphere."""
    import trimesh

    from voxface.html import save_mesh_page

    sphere = trimesh.creation.icosphere(3, 50.0)
    cap = trimesh.Trimesh(sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] > 0], process=False)
    inside_out = sphere.copy()
    inside_out.invert()
    url = save_mesh_page(tmp_path / "index.html", [cap, sphere, inside_out]).resolve().as_uri()
    front = screenshot(chromium, url + "#step=0", tmp_path / "front.png")
    behind = screenshot(chromium, url + "#step=0&yaw=180", tmp_path / "behind.png")
    box = canvas_box(front)
    m_front, m_behind = mesh_mask(front, box), mesh_mask(behind, box)
    assert m_front.mean() > 0.5 and m_behind.mean() > 0.9 * m_front.mean(), (m_front.mean(), m_behind.mean())
    outward = screenshot(chromium, url + "#step=1", tmp_path / "sphere.png")
    flipped = screenshot(chromium, url + "#step=2", tmp_path / "inside_out.png")
    side = min(outward[box].shape[:2])  # the square canvas, not the step's label under it
    assert np.abs(outward[box][:side, :side] - flipped[box][:side, :side]).max() <= 2


def test_a_label_holding_markup_does_not_stop_the_viewer(chromium, tmp_path):
    """A label "<!--<script>" kept the page's own "</script>" from closing the data block: the
    viewer never ran. It runs, and shows the label as text."""
    import trimesh

    from voxface.html import save_mesh_page

    page = save_mesh_page(tmp_path / "index.html", [trimesh.creation.icosphere(2, 40.0)], ["<!--<script>"])
    r = _browser(chromium, tmp_path / "profile", "--dump-dom", page.resolve().as_uri())
    assert 'data-ready="1"' in r.stdout, r.stderr[-1500:]
    assert "&lt;!--&lt;script&gt;" in r.stdout  # the label, as text
