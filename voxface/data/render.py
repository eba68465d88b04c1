"""Ray-cast renders of posed faces (open3d, CPU), backgrounds and photometric corruption.

Camera: a pinhole in the OpenCV convention (:mod:`voxface.frame`), at the origin of the camera
frame. Only the rays of the crop are cast: the crop is a square window of the normalised image
plane (``x/z``, ``y/z``), so a render *is* a detector-style crop with no resampling.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: skimage images used as real-photo backgrounds (no faces in them).
BACKGROUND_IMAGES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "brick", "grass", "gravel", "coins", "moon", "page", "text", "camera")


@dataclass
class Lighting:
    """Ambient plus directional lights (directions point *towards* the light, camera frame)."""

    ambient: np.ndarray  # (3,) linear RGB
    directions: np.ndarray  # (L, 3)
    colours: np.ndarray  # (L, 3)
    specular: float
    shininess: float


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)``."""
    v = vertices.astype(np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        n += np.stack([np.bincount(faces[:, k], fn[:, c], minlength=len(v)) for c in range(3)], 1)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    return n.astype(np.float32)


def cast(vertices: np.ndarray, faces: np.ndarray, rays: np.ndarray) -> dict[str, np.ndarray]:
    """Cast ``rays (N, 6)`` (origin, direction) at a triangle mesh; numpy results of open3d."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)),
    )
    r = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, np.float32)))
    return {k: r[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs")}


def crop_rays(box: np.ndarray, size: int) -> np.ndarray:
    """Rays ``(size*size, 6)`` from the camera centre through the pixel centres of a crop.

    ``box = (x0, y0, side)`` in normalised image-plane units (``x/z``, ``y/z``; x right, y down).
    """
    x0, y0, side = box
    c = (np.arange(size) + 0.5) / size * side
    yy, xx = np.meshgrid(y0 + c, x0 + c, indexing="ij")
    d = np.stack([xx, yy, np.ones_like(xx)], -1).reshape(-1, 3)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.concatenate([np.zeros_like(d), d], 1).astype(np.float32)


def shade(hit: dict, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray,
          albedo: np.ndarray, rays: np.ndarray, light: Lighting) -> tuple[np.ndarray, np.ndarray]:
    """Blinn-Phong shading of ray hits. Returns linear RGB ``(N, 3)`` and a hit mask ``(N,)``."""
    t = hit["t_hit"]
    mask = np.isfinite(t)
    ids = hit["primitive_ids"][mask].astype(np.int64)
    uv = hit["primitive_uvs"][mask]
    f = faces[ids]
    w = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1)[..., None]
    n = (normals[f] * w).sum(1)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-9)
    view = -rays[mask, 3:]
    n = np.where((n * view).sum(1, keepdims=True) < 0, -n, n)  # back faces (inside of mouth)
    a = (albedo[f] * w).sum(1)
    col = a * light.ambient
    for d, c in zip(light.directions, light.colours):
        ndl = np.clip(n @ d, 0, None)[:, None]
        h = d + view
        h /= np.linalg.norm(h, axis=1, keepdims=True).clip(1e-9)
        spec = np.clip((n * h).sum(1), 0, None) ** light.shininess
        col = col + a * c * ndl + light.specular * c * (spec[:, None] * (ndl > 0))
    out = np.zeros((len(t), 3), np.float32)
    out[mask] = col
    return out, mask


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


@lru_cache(maxsize=None)
def _bg_image(name: str) -> np.ndarray:
    import skimage.data
    from skimage.color import gray2rgb

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = gray2rgb(img)
    img = img[..., :3]
    return (img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0))


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random sRGB background ``(size, size, 3)`` float32: flat, gradient, noise or photo crop."""
    kind = rng.choice(["flat", "gradient", "noise", "photo", "photo"])
    if kind == "flat":
        return np.broadcast_to(rng.uniform(0, 1, 3), (size, size, 3)).astype(np.float32).copy()
    if kind == "gradient":
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        t = (np.cos(ang) * xx + np.sin(ang) * yy)
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
        return (a + (b - a) * t[..., None]).astype(np.float32)
    if kind == "noise":
        from scipy.ndimage import gaussian_filter, zoom

        k = int(rng.integers(4, 16))
        base = rng.uniform(0, 1, (k, k, 3))
        img = zoom(base, (size / k, size / k, 1), order=1)[:size, :size]
        img = gaussian_filter(img, (size / k / 2, size / k / 2, 0))
        return np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1).astype(np.float32)
    from skimage.transform import resize

    img = _bg_image(str(rng.choice(BACKGROUND_IMAGES)))
    h, w = img.shape[:2]
    s = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    out = resize(img[y : y + s, x : x + s], (size, size), order=1, anti_aliasing=True)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out, dtype=np.float32)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, blur, sensor noise and JPEG compression of an sRGB ``(S, S, 3)`` image."""
    from PIL import Image, ImageFilter

    x = img.astype(np.float32)
    # colour: brightness, contrast, saturation, white balance
    x = x * rng.uniform(0.75, 1.25) + rng.uniform(-0.08, 0.08)
    m = x.mean()
    x = (x - m) * rng.uniform(0.75, 1.25) + m
    g = x.mean(axis=2, keepdims=True)
    x = g + (x - g) * rng.uniform(0.6, 1.3)
    x = x * rng.uniform(0.9, 1.1, 3)
    if rng.random() < 0.05:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)  # some photos are grey
    x = np.clip(x, 0, 1)
    pil = Image.fromarray((x * 255 + 0.5).astype(np.uint8))
    if rng.random() < 0.4:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
    x = np.asarray(pil, np.float32) / 255.0
    if rng.random() < 0.6:
        x = np.clip(x + rng.normal(0, rng.uniform(0.005, 0.04), x.shape), 0, 1)
    if rng.random() < 0.6:
        buf = io.BytesIO()
        Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(25, 95)))
        buf.seek(0)
        x = np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255.0
    return x.astype(np.float32)
