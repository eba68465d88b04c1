"""From a photo to a mesh: detect, crop, encode, decode, extract, and the result's files.

The mesh is in the canonical frame (:mod:`voxface.frame`, millimetres) unless asked otherwise;
``frame="camera"`` poses it with the predicted head pose in the *photo's pixel coordinates*
(x right, y down, z away from the camera, all in pixels; weak perspective), so it overlays the
photo directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence, overload

import numpy as np

from .errors import ImageError, InputError, VoxfaceError
from .frame import HEAD_RMS_RADIUS_MM, Grid

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import trimesh

    from .models import Latents, Pose, VoxFace

FRAMES = ("canonical", "camera")


@dataclass
class Reconstruction:
    """One reconstructed face.

    Attributes:
        mesh: closed triangle mesh, canonical frame (:mod:`voxface.frame`: x to the subject's left,
            y up, z out of the face), canonical millimetres; :meth:`mesh_in_camera` poses it over the photo.
        logits: ``(R, R, R)`` float32 occupancy logits, ``(D, H, W) = (z, y, x)`` on :attr:`grid`
            (the model's grid, or the finer one asked for with ``resolution=``).
        latents: :class:`voxface.Latents` of this face (batch of 1, on the CPU): ``z_id (1, D_id)``,
            ``z_exp (1, D_exp)`` (the shipped model: 100 ICT identity coefficients, 53 ARKit
            blendshape weights) and the same pose as :attr:`pose`.
        pose: :class:`voxface.Pose` (batch of 1), or ``None`` for codes that carry none (sampled, set by hand):
            ``rotation (1, 3, 3)`` canonical frame to OpenCV camera axes (x right, y down, z
            forward), ``scale (1,)`` the head's RMS radius in crop half-widths, ``translation (1, 2)``
            the canonical origin in ``[-1, 1]`` crop coordinates (weak perspective).
        grid: the voxel grid of :attr:`logits` (same canonical cube as the model's; ``R`` cells per side).
        source: where the face came from (a path, a PIL image's file name, ``"<array>"``, ``"<latent>"``).
        crop: ``(S, S, 3)`` float32 RGB crop in [0, 1] the encoder saw (``S = model.image_size``;
            ``None`` for raw codes).
        crop_box: ``(3,)`` float64 ``(x0, y0, side)`` of the square crop in the source photo's
            pixels (top-left corner and side; pixel-edge convention; a file's pixels as shown
            upright, its EXIF orientation applied, at its full size), ``None`` for raw codes.
        seconds: wall time per stage (``load_detect_crop``, ``encode``, ``decode``, the mesh
            extraction's stages, ``mesh`` their sum, and ``total``); the stages run once for
            several faces (a photo's ``all_faces=True``, a batch of codes) give each face its share,
            so the faces' totals add up to the call's time.
        provenance: which weights made the face, as :func:`model_provenance` gives it (``{}``:
            not recorded); :meth:`arrays` adds it to the ``.npz``. ``model.reconstruct``,
            :func:`decode_latents` and :func:`reconstruct_files` fill it in.
    """

    mesh: "trimesh.Trimesh"
    logits: np.ndarray
    latents: "Latents"
    pose: "Pose | None"
    grid: Grid
    source: str | None = None
    crop: np.ndarray | None = None
    crop_box: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: source, mesh size, grid, codes' sizes and pose (the dataclass repr printed the
        whole logits array and the codes: 8,000 characters in a notebook)."""
        pose = "none"
        if self.pose is not None:
            from .frame import euler_angles

            # an encoder pose is camera-frame: 'auto' read a head past 90 degrees of roll as facing away
            yaw, pitch, roll = euler_angles(self.pose.rotation[0], frame="camera")
            pose = f"yaw {yaw:+.0f}, pitch {pitch:+.0f}, roll {roll:+.0f} deg"
        m = self.mesh
        return (f"Reconstruction(source={self.source!r}, mesh={len(m.vertices)} vertices/{len(m.faces)} faces, "
                f"grid={self.grid.resolution}^3, z_id={tuple(self.latents.z_id.shape)}, "
                f"z_exp={tuple(self.latents.z_exp.shape)}, pose={pose})")

    @property
    def occupancy(self) -> np.ndarray:
        """``(R, R, R)`` bool occupancy at probability 0.5."""
        return self.logits > 0

    def mesh_in_camera(self) -> "trimesh.Trimesh":
        """The mesh posed by the predicted pose in the source photo's pixel frame.

        A canonical vertex ``X`` goes to ``c + h * s * (R @ X) / HEAD_RMS_RADIUS_MM`` where
        ``h`` is half the crop side (pixels), ``s`` the pose scale, and ``c`` the crop position of
        the pose translation; x right, y down, z away from the camera, in pixels. Pixel
        coordinates follow the pixel-edge convention of the crop box: the centre of pixel
        ``(i, j)`` is at ``(j + 0.5, i + 0.5)`` (subtract 0.5 for a centre-based convention).

        :class:`VoxfaceError` without a pose or a crop box. A face decoded from a ``reconstruct``
        ``.npz`` by :func:`voxface.latent.decode` has the file's pose and crop box (float32 there:
        within a thousandth of a pixel); codes with a pose given otherwise (a :class:`~voxface.Latents`,
        a dict) have no box until one is set as :attr:`crop_box`.
        """
        if self.pose is None:
            raise VoxfaceError("this reconstruction has no pose (decoded from a code that carries none: sampled or "
                               "set by hand), so it has no place in a photo")
        if self.crop_box is None:  # decoded from codes with a pose: a reconstruct .npz read back, say
            raise VoxfaceError("this reconstruction has a pose but no crop box (decoded from codes without one); to "
                               "pose it over the photo they were read from, set rec.crop_box = (x0, y0, side) of "
                               "that crop, as a reconstruct .npz's crop_box array holds it")
        R = self.pose.rotation[0].detach().cpu().numpy().astype(np.float64)
        s = float(self.pose.scale[0])
        t = self.pose.translation[0].detach().cpu().numpy().astype(np.float64)
        x0, y0, side = (float(v) for v in self.crop_box)
        h = side / 2
        v = (np.asarray(self.mesh.vertices) @ R.T) * (h * s / HEAD_RMS_RADIUS_MM)
        v[:, 0] += x0 + h + t[0] * h
        v[:, 1] += y0 + h + t[1] * h
        m = self.mesh.copy()
        m.vertices = v
        return m

    def arrays(self, volume: bool = True) -> dict[str, np.ndarray]:
        """What :meth:`save` writes to the ``.npz``: ``z_id (1, Z_id)``, ``z_exp (1, Z_exp)``, the
        pose (``pose_rotation (1, 3, 3)``, ``pose_scale (1,)``, ``pose_translation (1, 2)``) when there
        is one, the grid (``grid_side_mm``, ``grid_center_mm (3,)``: canonical mm), the crop box
        ``(3,)`` (x0, y0, side in the photo's pixels) when there is one, with ``volume`` the
        occupancy ``logits (R, R, R)`` float32 on that grid (``save_volume=True``), and the
        :attr:`provenance` arrays (which weights made it: :func:`model_provenance`) when recorded."""
        out = dict(self.latents.numpy())
        if volume:
            out["logits"] = np.asarray(self.logits, np.float32)  # not copied: 64 MiB a face at 256^3
        out["grid_side_mm"] = np.float32(self.grid.side_mm)
        out["grid_center_mm"] = np.asarray(self.grid.center_mm, np.float32)
        if self.crop_box is not None:
            out["crop_box"] = np.asarray(self.crop_box, np.float32)
        out.update(self.provenance)
        return out

    def preview(self, size: int = 256) -> np.ndarray:
        """One row of ``size`` x ``size`` panels, in :func:`~voxface.viz.image_grid`'s 4-px padding.

        With a crop and a pose (a reconstruction from a photo), four panels, uint8 ``(size + 8,
        4 * size + 20, 3)``, left to right:

        1. the crop the encoder saw;
        2. the overlay: the mesh posed by the predicted pose over the crop (60% opaque clay);
        3. the front view of the mesh (yaw 0: the camera in front of the face);
        4. the side view at yaw 60 (turned towards the subject's left, +x).

        The mesh views are clay renders of the canonical mesh (:func:`~voxface.viz.render_mesh`,
        orthographic, framing the mesh's bounding sphere). Without a pose (a crop but no
        overlay): the crop and three views, yaw 0, 60 and -60 (the subject's right), also four
        panels. Without a crop (decoded from a code): those three views only, ``(size + 8,
        3 * size + 16, 3)``. Only the panels shown are rendered. ``size``: an int >= 1
        (:class:`~voxface.errors.InputError` / :class:`~voxface.errors.InputTypeError` otherwise).
        """
        from .errors import check_integer as _integer
        from .viz import image_grid, render_mesh, render_overlay

        size = _integer("size", size, 1)  # 0 was PIL's 'height and width must be > 0'

        panels = []
        if self.crop is not None:
            from PIL import Image

            crop_u8 = (np.clip(self.crop, 0, 1) * 255 + 0.5).astype(np.uint8)
            crop_big = np.asarray(Image.fromarray(crop_u8).resize((size, size), Image.BICUBIC))
            panels.append(crop_big)
            if self.pose is not None:
                p = self.pose
                panels.append(render_overlay(
                    crop_big, self.mesh, rotation=p.rotation[0].detach().cpu().numpy(),
                    scale=float(p.scale[0]), translation=p.translation[0].detach().cpu().numpy()))
        # views fill the row up to four panels: yaw 0 and 60 after the crop and overlay
        panels += [render_mesh(self.mesh, yaw=y, size=size) for y in (0.0, 60.0, -60.0)[: 4 - len(panels)]]
        return image_grid(panels, ncols=len(panels))

    def save(self, path: str | os.PathLike, *, frame: str = "canonical", latents: bool = False,
             save_volume: bool = False, preview: bool = False) -> list[Path]:
        """Write the mesh to ``path`` (format from its extension: obj, ply, stl, glb), atomically.

        ``frame``: ``"canonical"`` (:attr:`mesh`, canonical mm) or ``"camera"`` (:meth:`mesh_in_camera`,
        the photo's pixels; :class:`VoxfaceError` for a face without a pose and crop box). GLB holds
        either divided by 1000 (glTF's unit is the metre). ``latents`` adds ``<stem>.npz`` with the codes, pose, grid and crop box (:meth:`arrays`, a
        few kB: what ``voxface interpolate`` / ``walk`` / ``transfer`` read); ``save_volume`` adds it
        with the occupancy logits too; ``preview`` adds ``<stem>_preview.png``
        (suffixed so that a preview never takes a photo's name: ``x.png`` reconstructed into its own
        folder keeps the photo).
        Returns the paths written (mesh, then npz, then png).

        All or nothing (:func:`voxface.mesh.atomic_write_files`): every file is encoded (a bad
        extension refused) before the first write, all are written as temporaries, and only then
        renamed into place, the mesh (the file ``--skip-existing`` looks for) last. A failed write
        leaves the folder as it was: no new file, and earlier outputs of the same name whole. A
        ``path`` ending in a slash (``d/x.ply/``: a folder) is an :class:`~voxface.errors.InputError`.
        """
        from .mesh import atomic_write_files, check_file_name, mesh_bytes

        check_file_name(path)  # Path() drops the slash: "d/x.ply/" wrote the file d/x.ply
        if frame not in FRAMES:
            raise InputError(f"frame must be one of {FRAMES}, not {frame!r}")
        path = Path(path)
        files = [(path, mesh_bytes(self.mesh_in_camera() if frame == "camera" else self.mesh, path))]
        if latents or save_volume:
            files.insert(0, (path.with_suffix(".npz"), _npz_bytes(self.arrays(volume=save_volume))))
        if preview:
            from .viz import png_bytes

            files.insert(-1, (preview_path(path), png_bytes(self.preview())))
        written = atomic_write_files(files)
        return written[-1:] + written[:-1]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``arrays`` as a compressed ``.npz`` at ``path``, atomically (errors name ``path``)."""
    from .mesh import atomic_write_bytes

    return atomic_write_bytes(path, _npz_bytes(arrays))


def output_resolution(model: "VoxFace", resolution: int | None) -> int:
    """The grid an output is extracted on: ``resolution`` checked against the model's ``R``.

    ``None`` is the model's own grid. Otherwise it must be an integer ``R * 2^k`` with ``k >= 0``
    (64, 128 or 256 for the 64^3 model). Raises :class:`~voxface.errors.InputError` for any other
    value (:class:`~voxface.errors.InputTypeError` for a float, even ``128.0``, or a bool: not truncated).
    """
    from .errors import check_integer as _integer

    R = int(model.config.decoder.resolution)
    if resolution is None:
        return R
    r = _integer("resolution", resolution, -(2**62))  # the range is checked below, with the grids it can be
    k = r // R
    if r < R or r % R or k & (k - 1):
        raise InputError(f"resolution {r} must be the model's grid {R} times 1, 2, 4, ... (e.g. {R}, {2 * R}, {4 * R})")
    return r


def decode_at(model: "VoxFace", z_id: Any, z_exp: Any, resolution: int | None = None, *,
              threshold: float = 0.5, upsample: str = "decoder") -> tuple[list[np.ndarray], Grid, dict[str, Any]]:
    """Occupancy logits of a batch of latents on the model's grid or a finer one.

    Args:
        model: a :class:`voxface.VoxFace`.
        z_id: ``(B, D_id)``; z_exp: ``(B, D_exp)`` (any device).
        resolution: cells per side of the output grid (:func:`output_resolution`; ``None``: the
            model's ``R``). Above ``R``: evaluated coarse-to-fine (MISE,
            :func:`voxface.refine.refine_logits`) with ``upsample``.
        threshold: occupancy probability of the surface (MISE refines around it).
        upsample: what is evaluated at the finer points (:func:`voxface.refine.upsample_method`):
            ``"decoder"`` (default), the decoder's own continuous function (the template-deformation
            decoder samples its template through the warp there: finer than its logits, and on
            codes read from photos closer to the exact surface than the 64^3 grid or the head, README
            model card; a decoder without one: its logits upsampled trilinearly, no detail beyond
            ``R^3``); ``"head"``, the checkpoint's refinement head (``voxface refine-train``) when it
            has one (better on exact codes, where it keeps thin interior structures such as the
            mouth cavity).

    Returns:
        ``(logits, grid, info)``: ``B`` float32 arrays ``(R_f, R_f, R_f)`` laid out ``(D, H, W) =
        (z, y, x)`` on ``grid`` (the model's canonical cube, ``R_f`` cells per side; its
        ``index_to_mm`` gives canonical mm), and ``info`` with ``refined`` (a finer grid than the
        model's), ``head`` (a refinement head was used) and ``points`` (fine evaluations, all faces).
    """
    import torch

    Rf = output_resolution(model, resolution)
    dev = model.device
    with torch.inference_mode():
        z_id, z_exp = z_id.to(dev), z_exp.to(dev)
        if Rf == model.config.decoder.resolution:
            logits = model.decode(z_id, z_exp).float().cpu().numpy()[:, 0]
            return list(logits), model.grid, {"refined": False, "head": False, "points": 0}
        if hasattr(model.decoder, "features"):
            from .refine import refine_logits, upsample_method

            res = refine_logits(model, z_id, z_exp, resolution=Rf, method="mise", threshold=threshold,
                                upsample=upsample)
            head = res[0].head if res else upsample_method(model, upsample) == "head"  # res: [] for no codes
            return ([r.logits for r in res], Grid(Rf, model.grid.side_mm, model.grid.center_mm),
                    {"refined": True, "head": head, "points": sum(r.stats["points"] for r in res)})
        import torch.nn.functional as F  # a decoder with no feature volume: dense trilinear upsampling

        coarse = model.decode(z_id, z_exp).float()
        fine = F.interpolate(coarse, size=(Rf,) * 3, mode="trilinear", align_corners=False).cpu().numpy()[:, 0]
        return list(fine), Grid(Rf, model.grid.side_mm, model.grid.center_mm), {"refined": True, "head": False, "points": 0}


#: Fine-grid cells a batch pipeline (:func:`reconstruct_files`) holds as logits at once, beside the
#: faces being written: the faces of a network batch are refined a group of this many cells at a
#: time (:func:`fine_group`), meshed and handed to the writers before the next group is refined.
#: Four faces at 256^3 (256 MiB of float32), a whole batch of 16 at 128^3, one face at 512^3.
FINE_GROUP_CELLS = 4 * 256**3


def fine_group(model: "VoxFace", resolution: int | None, n: int) -> int:
    """How many of ``n`` faces :func:`reconstruct_files` refines at once on the grid ``resolution``
    (:func:`output_resolution`): all ``n`` on the model's own grid, else as many as
    :data:`FINE_GROUP_CELLS` holds (at least 1). The network's encoder runs on all ``n``; the
    decoder on each group (its logits differ from a larger batch's by float rounding at most, as
    ``batch_size``'s do)."""
    Rf = output_resolution(model, resolution)
    if Rf == model.config.decoder.resolution:
        return max(1, n)
    return max(1, min(n, FINE_GROUP_CELLS // Rf**3))


#: The detector's default scan size (:func:`voxface.detect.detect_faces`' ``max_side``): photos are
#: searched for faces on a copy at most this long; faces smaller than ``24 / SCAN_SIZE`` of the
#: photo's longer side are then missed. The smallest scan size is the cascade's 24-px window.
SCAN_SIZE = 640


def check_scan_size(scan_size: Any) -> int:
    """``scan_size`` as an int of at least the cascade's window (24 px; a smaller copy holds no face
    it can see): :class:`~voxface.errors.InputTypeError` / :class:`~voxface.errors.InputError` otherwise."""
    from .detect import CASCADE_WINDOW
    from .errors import check_integer as _integer

    return _integer("scan_size", scan_size, CASCADE_WINDOW)


def crop_batch(crops: Sequence[np.ndarray], device: Any) -> "torch.Tensor":
    """The encoder's input for ``crops`` (each ``(S, S, 3)`` float32 RGB in ``[0, 1]``, as
    :func:`prepare_crops` gives them): ``(N, 3, S, S)`` float32 in ``[0, 1]`` on ``device``, the
    stacked ``(N, S, S, 3)`` array permuted (not copied into channels-first memory: its strides are
    the stacked array's, on another device too). Every path from photo to codes builds its batch
    here: the encoder's float kernels follow the strides, and a batch laid out otherwise (a
    ``(3, S, S)`` view with ``[None]``) gave codes ~5e-7 off."""
    import torch

    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(device)


def prepare_crops(image: Any, size: int, *, detect: bool = True, all_faces: bool = False,
                  source: str | None = None, skin_check: bool = True,
                  scan_size: int = SCAN_SIZE) -> list[tuple[np.ndarray, np.ndarray]]:
    """Load an image and return ``[(crop (S, S, 3) float32, crop_box (x0, y0, side))]``, the box in
    the source photo's pixels (also where loading downscaled a photo longer than
    :data:`voxface.image.DEFAULT_MAX_SIDE`).

    ``detect=False`` takes the whole image as an already framed crop (resized to ``S``): a
    non-square image is centred in the square of its longer side, the rest filled by repeating its
    edge pixels (:func:`voxface.detect.crop_image`), not stretched; that square is the crop box.
    ``skin_check``, ``scan_size``: the detector's skin-colour check and the longer side (pixels)
    of the copy it scans (:func:`voxface.detect.detect_faces`' ``skin_check`` and ``max_side``).
    """
    from .detect import crop_image, detect_and_crop
    from .image import load_image_scaled

    img, scale = load_image_scaled(image)
    if not detect:
        h, w = img.shape[:2]
        side = float(max(h, w))
        box = np.array([(w - side) / 2, (h - side) / 2, side])
        return [(crop_image(img, box, size), box * scale)]
    faces = detect_and_crop(img, size=size, all_faces=all_faces, path_for_errors=source, source_scale=scale,
                            skin_check=bool(skin_check), max_side=scan_size)
    return [(c, np.asarray(b, np.float64)) for c, b, _ in faces]


def decode_latents(model: "VoxFace", latents: "Latents", *, threshold: float = 0.5, smooth: int = 0,
                   decimate: int | None = None, batch_size: int = 8, source: str = "<latent>",
                   progress: bool = False, resolution: int | None = None,
                   upsample: str = "decoder") -> list[Reconstruction]:
    """Decode a batch of :class:`~voxface.Latents` to :class:`Reconstruction` s (no crops).

    ``resolution``, ``upsample``: output grid and how it is reached, as in :func:`decode_at`.
    ``batch_size``: codes decoded at once, an int >= 1 (TypeError / ValueError otherwise).
    ``progress``: a progress bar on stderr counting the faces decoded and meshed.
    """
    from tqdm.auto import tqdm

    from .errors import check_integer as _integer
    from .mesh import extract_mesh

    batch_size = _integer("batch_size", batch_size, 1)
    provenance = model_provenance(model)  # which weights decoded them: each .npz records it
    out: list[Reconstruction] = []
    n = len(latents)
    dev = model.device
    with tqdm(total=n, desc="decode", unit="face", disable=not progress) as bar:
        for i in range(0, n, batch_size):
            lat = latents[i : i + batch_size].to(dev)
            t0 = time.perf_counter()
            logits, grid, _ = decode_at(model, lat.z_id, lat.z_exp, resolution, threshold=threshold, upsample=upsample)
            dt = (time.perf_counter() - t0) / len(lat)
            for j in range(len(lat)):
                m = extract_mesh(logits[j], grid, threshold, smooth=smooth, decimate=decimate)
                one = lat[j].to("cpu")  # the pose too: it stayed on the model's GPU beside CPU codes
                out.append(Reconstruction(m.mesh, logits[j], one, one.pose, grid,
                                          source=f"{source}[{i + j}]" if n > 1 else source,
                                          seconds=_stage_seconds({"decode": dt}, m.seconds),
                                          provenance=dict(provenance)))
                bar.update(1)
    return out


def _stage_seconds(network: dict[str, float], mesh: dict[str, float]) -> dict[str, float]:
    """A face's wall time per stage: the network's (shared by a batch: its share), the mesh
    extraction's stages, ``mesh`` (their sum) and ``total`` (everything; ``extract_mesh``'s own
    ``total`` is ``mesh`` here)."""
    stages = {k: v for k, v in mesh.items() if k != "total"}
    out = {**network, **stages, "mesh": mesh.get("total", sum(stages.values()))}
    out["total"] = sum(network.values()) + out["mesh"]
    return out


@overload
def reconstruct_image(model: "VoxFace", image: Any, *, detect: bool = ..., all_faces: Literal[False] = ...,
                      threshold: float = ..., smooth: int = ..., decimate: int | None = ...,
                      resolution: int | None = ..., upsample: str = ..., skin_check: bool = ...,
                      scan_size: int = ...) -> "Reconstruction": ...
@overload
def reconstruct_image(model: "VoxFace", image: Any, *, detect: bool = ..., all_faces: Literal[True],
                      threshold: float = ..., smooth: int = ..., decimate: int | None = ...,
                      resolution: int | None = ..., upsample: str = ..., skin_check: bool = ...,
                      scan_size: int = ...) -> "list[Reconstruction]": ...
@overload
def reconstruct_image(model: "VoxFace", image: Any, *, detect: bool = ..., all_faces: bool,
                      threshold: float = ..., smooth: int = ..., decimate: int | None = ...,
                      resolution: int | None = ..., upsample: str = ..., skin_check: bool = ...,
                      scan_size: int = ...) -> "Reconstruction | list[Reconstruction]": ...
def reconstruct_image(model: "VoxFace", image: Any, *, detect: bool = True, all_faces: bool = False,
                      threshold: float = 0.5, smooth: int = 0, decimate: int | None = None,
                      resolution: int | None = None, upsample: str = "decoder", skin_check: bool = True,
                      scan_size: int = SCAN_SIZE) -> "Reconstruction | list[Reconstruction]":
    """Reconstruct the face in a photo (a path, PIL image or ``(H, W, 3)`` array).

    Args:
        model: a :class:`voxface.VoxFace` (see :func:`voxface.load_model`).
        image: the photo.
        detect: find the face with the bundled detector (False: the image is already a crop; a
            non-square one is centred in the square of its longer side, see :func:`prepare_crops`).
        all_faces: return a list with every detected face (largest first) instead of the largest.
        threshold: occupancy probability of the surface.
        smooth: Taubin smoothing iterations of the mesh.
        decimate: target face count of the mesh (None: keep all).
        resolution: cells per side of the grid the mesh is extracted on (``None``: the model's
            ``R``; else ``R * 2^k``, e.g. 128 or 256 for the 64^3 model), reached coarse-to-fine
            with ``upsample`` (``"decoder"``: the decoder's own function; ``"head"``: the
            checkpoint's refinement head; see :func:`decode_at`). The mesh stays in canonical mm
            and closed; :attr:`Reconstruction.logits` / :attr:`~Reconstruction.grid` are the fine ones.
        skin_check: the detector drops face-like regions without skin colour in their centre
            (colour photos only); False keeps them (faces under strongly tinted light).
        scan_size: the longer side (pixels) of the copy of the photo the detector scans
            (:data:`SCAN_SIZE`, at least 24): larger finds smaller faces in big photos, slower.

    Raises:
        voxface.ImageError: unreadable image. voxface.NoFaceError: no face found.
        voxface.VoxfaceError: a ``resolution`` that is not ``R * 2^k``, an unknown ``upsample``, a
        ``threshold`` outside (0, 1), ``smooth < 0``, ``decimate < 4`` or ``scan_size < 24``
        (before any work).
    """
    import torch

    from .image import source_name
    from .mesh import check_mesh_options, extract_mesh
    from .refine import upsample_method

    if isinstance(image, (list, tuple)):  # load_image's 'unsupported input type list' said nothing of how
        from .errors import InputTypeError

        raise InputTypeError(f"reconstruct takes one photo, got a {type(image).__name__} of {len(image)}: "
                             "[model.reconstruct(p) for p in photos], or voxface.reconstruct_files(model, "
                             "photos, out_dir) to write them")
    source = source_name(image)  # the name load errors give it: no face found in the same file
    output_resolution(model, resolution)  # fail before any work
    upsample_method(model, upsample)
    check_mesh_options(threshold, smooth, decimate)
    scan_size = check_scan_size(scan_size)
    t0 = time.perf_counter()
    crops = prepare_crops(image, model.image_size, detect=detect, all_faces=all_faces, source=source,
                          skin_check=skin_check, scan_size=scan_size)
    t1 = time.perf_counter()
    batch = crop_batch([c for c, _ in crops], model.device)
    with torch.no_grad():  # not inference_mode: the codes handed back stay ordinary, editable tensors
        lat = model.encode(batch)
    check_encoded(lat)
    t2 = time.perf_counter()
    logits, grid, _ = decode_at(model, lat.z_id, lat.z_exp, resolution, threshold=threshold, upsample=upsample)
    t3 = time.perf_counter()
    lat = lat.to("cpu")
    provenance = model_provenance(model)  # which weights made the face (cached digest: no per-photo hashing)
    recs = []
    share = 1.0 / len(crops)  # the photo was loaded, and its faces encoded and decoded, once for them all
    network = {"load_detect_crop": (t1 - t0) * share, "encode": (t2 - t1) * share, "decode": (t3 - t2) * share}
    for k, (crop, box) in enumerate(crops):
        try:
            m = extract_mesh(logits[k], grid, threshold, smooth=smooth, decimate=decimate)
        except VoxfaceError as e:  # 'empty occupancy grid' named no photo, where load and detect errors do
            if type(e) is not VoxfaceError or e.path is not None:
                raise
            raise VoxfaceError(str(e), source) from None
        one = lat[k]
        recs.append(Reconstruction(
            m.mesh, logits[k], one, one.pose, grid, source=source, crop=crop, crop_box=box,
            seconds=_stage_seconds(network, m.seconds),
            provenance=dict(provenance),
        ))
    return recs if all_faces else recs[0]


#: What the preview picture's file name adds to the mesh's stem (``x.ply`` -> ``x_preview.png``).
PREVIEW_SUFFIX = "_preview.png"


def preview_path(mesh_path: str | os.PathLike) -> Path:
    """The preview PNG written beside ``mesh_path``: ``out/x.ply`` -> ``out/x_preview.png``."""
    mesh_path = Path(mesh_path)
    return mesh_path.with_name(mesh_path.stem + PREVIEW_SUFFIX)


def check_encoded(lat: "Latents") -> None:
    """A :class:`VoxfaceError` when the encoder gave NaN or infinite codes or pose (broken weights: a
    diverged training run), rather than decode's ``z_id holds NaN or infinite values``, which blames
    the codes as if the caller had passed them."""
    bad = lat.nonfinite()
    if bad:
        raise VoxfaceError(f"the model's encoder gives NaN or infinite codes or pose for {len(bad)} of the "
                           f"{len(lat)} faces of this batch: its weights are broken (a diverged training run?); "
                           "nothing was decoded")


def expand_inputs(paths: "Sequence[str | os.PathLike] | str | os.PathLike", *, recursive: bool = False) -> list[Path]:
    """The photos of a batch, as :func:`reconstruct_files` takes them: one path or pattern (a photo,
    a folder, a glob) expanded as ``voxface reconstruct`` expands its arguments
    (:func:`voxface.image.list_images`, leaving out an earlier run's previews:
    :func:`is_preview_output`), or a sequence whose folders and patterns are expanded in place and
    whose other items are kept as they are (a missing file stays an input: a failure of the batch).
    Each file comes once (the first spelling of it is kept), as the command lists it.

    A folder or pattern without a photo beside inputs that have some is left out with a
    ``UserWarning`` naming it (and saying when its sub-folders would be searched with ``recursive``);
    a folder with photos whose sub-folders hold more, without ``recursive``, is a ``UserWarning``
    counting those left out (:func:`list_inputs`).

    Raises:
        ImageError: one path or pattern that matches nothing, or folders and patterns that hold no
            photo (and no other input was given), saying when a folder's sub-folders would be
            searched with ``recursive``.
    """
    from .image import list_images

    single = isinstance(paths, (str, os.PathLike))
    items = [paths] if single else list(paths)
    out: list[Path] = []
    searched: list[str | os.PathLike] = []
    empty: list[str | os.PathLike] = []
    for item in items:
        p = Path(item)
        if single or p.is_dir() or (not p.exists() and any(ch in str(item) for ch in "*?[")):
            found = list_images(item, recursive=recursive, exclude=is_preview_output)
            out += found
            searched.append(item)
            if not found:
                empty.append(item)
            elif not recursive:
                _warn_unsearched(item, len(found), "recursive=True")
        else:
            out.append(p)
    if not out and searched:
        raise no_images_error(searched, recursive, "recursive=True")
    _warn_without_images(empty, recursive, "recursive=True")
    # each file once, as the command's list_images keeps it (a folder and a photo in it, or two
    # patterns, reconstructed one photo twice: two meshes, a summary with one record for both)
    unique: dict[Path, Path] = {}
    for p in out:
        unique.setdefault(_resolved(p), p)  # a link loop: its spelling
    return list(unique.values())


def list_inputs(items: "Sequence[str | os.PathLike]", *, recursive: bool = False,
                option: str = "--recursive") -> list[Path]:
    """``voxface reconstruct``'s inputs: :func:`voxface.image.list_images` of ``items`` (sorted by
    path, each file once, an earlier run's previews left out of folders and patterns), with a
    ``UserWarning`` for each folder or pattern that gives no photo while other items give some (a
    folder of sub-folders, searched only with ``option``, was dropped without a word), and for each
    folder whose sub-folders hold photos that only ``option`` searches, with their number (a
    dataset of ``photos/*.jpg`` beside ``photos/<person>/*.jpg`` was reconstructed in part, and
    the summary's counts read as the whole).

    Raises:
        ImageError: an item that is no file, folder or matching pattern, or no photo at all
            (:func:`no_images_error`).
    """
    from .image import list_images

    found: dict[Path, Path] = {}
    empty: list[str | os.PathLike] = []
    for item in items:
        listed = list_images(item, recursive=recursive, exclude=is_preview_output)
        if not listed:
            empty.append(item)
        elif not recursive:
            _warn_unsearched(item, len(listed), option)
        for p in listed:
            found.setdefault(_resolved(p), p)
    if not found:
        raise no_images_error(list(items), recursive, option)
    _warn_without_images(empty, recursive, option)
    return sorted(found.values(), key=str)


def _warn_unsearched(item: str | os.PathLike, listed: int, option: str) -> None:
    """A ``UserWarning`` when the folder ``item``, of which ``listed`` photos are taken (its own,
    not recursively), has sub-folders holding more photos, which only ``option`` searches: how many
    are left out. A file, a pattern, or a folder without sub-folders costs one listing at most;
    hidden sub-folders and an earlier run's previews are not counted, as ``option`` would not
    take them."""
    from .image import list_images

    if not _has_subfolders(Path(item)):
        return
    below = len(list_images(item, recursive=True, exclude=is_preview_output)) - listed
    if below > 0:
        import warnings

        warnings.warn(f"{os.fsdecode(item)}: {below} photo(s) in its sub-folders are left out (they are searched "
                      f"with {option})", UserWarning, stacklevel=3)


def _warn_without_images(empty: "Sequence[str | os.PathLike]", recursive: bool, option: str) -> None:
    """One ``UserWarning`` per folder or pattern of a batch that holds no photo (the batch goes on
    with the other inputs), saying when its sub-folders would be searched with ``option``."""
    import warnings

    for item in empty:
        warnings.warn(f"{no_images_error([item], recursive, option)}; it is left out", UserWarning, stacklevel=3)


def no_images_error(searched: "Sequence[str | os.PathLike]", recursive: bool, option: str) -> ImageError:
    """``A: no images found``, as every error names its file first (``no images found in A B`` for
    several), with how to search sub-folders, ``option``, when a folder has some and ``recursive``
    is off."""
    nested = not recursive and any(_has_subfolders(Path(i)) for i in searched)
    hint = f" (its sub-folders are searched with {option})" if nested else ""
    if len(searched) == 1:
        return ImageError("no images found" + hint, path=searched[0])
    return ImageError("no images found in " + " ".join(map(os.fsdecode, searched)) + hint)


def _has_subfolders(path: Path) -> bool:
    """Whether ``path`` is a folder with a sub-folder (which a search without ``recursive`` skips)."""
    try:
        return path.is_dir() and any(c.is_dir() for c in path.iterdir())
    except OSError:
        return False


def is_preview_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a preview an earlier reconstruction wrote: ``<x>_preview.png`` beside a
    mesh ``<x>.<obj|ply|stl|glb>``. ``voxface reconstruct`` leaves such files out of the folders and
    patterns it expands (a folder reconstructed into itself, a ``**`` pattern reaching an output
    folder), so a rerun does not take its own previews for photos."""
    from .mesh import MESH_FORMATS

    p = Path(path)
    if not p.name.endswith(PREVIEW_SUFFIX):
        return False
    stem = p.name[: -len(PREVIEW_SUFFIX)]
    return any(p.with_name(f"{stem}.{fmt}").is_file() for fmt in MESH_FORMATS)


def output_paths(out_dir: Path, stem: str, fmt: str) -> dict[str, Path]:
    """Where ``reconstruct`` writes a face: mesh, ``.npz`` and preview ``.png`` of one stem."""
    mesh = out_dir / f"{stem}.{fmt}"
    return {"mesh": mesh, "npz": out_dir / f"{stem}.npz", "png": preview_path(mesh)}


def unique_stems(paths: Sequence[Path], earlier: dict[Path, str] | None = None, *,
                 ignore_case: bool = False) -> list[str]:
    """File stems, disambiguated when two inputs share one (``a/x.jpg``, ``b/x.png`` -> ``x``, ``x_1``).

    A suffixed stem never takes another input's own stem (``a/x.jpg``, ``b/x.jpg``, ``c/x_1.jpg``
    -> ``x``, ``x_2``, ``x_1``), so no two inputs write to the same files. ``earlier`` (``{path:
    stem}``) gives inputs the stems an earlier run gave them, first. ``ignore_case``: stems that
    differ only in case are the same (an output folder on a case-insensitive file system, macOS's
    and Windows' default: ``a/IMG_1.JPG`` and ``b/img_1.jpg`` would write one file).
    """
    earlier = earlier or {}
    key = str.casefold if ignore_case else str
    own = {key(Path(p).stem) for p in paths} | {key(s) for s in earlier.values()}
    used: set[str] = set()  # key() of the stems given
    stems: list[str | None] = [None] * len(paths)
    for i, p in enumerate(paths):
        s = earlier.get(p)
        if s is not None and key(s) not in used:
            stems[i] = s
            used.add(key(s))
    # the smallest free suffix of a base only grows (``used`` only grows): each search starts where
    # the last one for that base ended, so thousands of inputs of one name are not quadratic
    next_k: dict[str, int] = {}
    for i, p in enumerate(paths):
        if stems[i] is not None:
            continue
        base = Path(p).stem
        s = base
        if key(s) in used:
            k = next_k.get(key(base), 1)
            while key(f"{base}_{k}") in used or key(f"{base}_{k}") in own:
                k += 1
            next_k[key(base)] = k + 1
            s = f"{base}_{k}"
        used.add(key(s))
        stems[i] = s
    return [str(s) for s in stems]


@dataclass
class BatchSummary:
    """What a batch reconstruction did: per input file, the outputs or the one-line error."""

    ok: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    faces: int = 0
    #: ``{input: content digest}`` (BLAKE2b, 128 bits) of the inputs read, taken as they were read
    #: (``summary.json``'s ``digests``: a photo moved since is known by them); not in :meth:`to_dict`.
    digests: dict[str, str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "skipped": self.skipped, "seconds": self.seconds,
                "faces": self.faces, "faces_per_second": self.faces / self.seconds if self.seconds else 0.0}


@dataclass(frozen=True)
class _BatchJob:
    """What :func:`reconstruct_files` does to every input (picklable: pipeline processes get it)."""

    out: Path
    fmt: str
    detect: bool
    all_faces: bool
    threshold: float
    smooth: int
    decimate: int | None
    frame: str
    save_volume: bool
    preview: bool
    latents: bool
    batch_size: int
    resolution: int  # the output grid (checked)
    upsample: str = "decoder"
    skin_check: bool = True  # the detector's options (voxface.detect.detect_faces: skin_check, max_side)
    scan_size: int = SCAN_SIZE
    provenance: tuple[tuple[str, Any], ...] = ()  # model_provenance's items: every face's .npz records them


def default_workers(model: "VoxFace") -> int:
    """``reconstruct_files``' ``workers`` when none is given: 2 with the model on the CPU (two pipeline
    processes, the cores split between them: faster than one process on 2 cores, BENCHMARKS.md's
    pipeline table), and with it on an accelerator every usable core but two (one
    feeds the network, one reads crops) as mesh processes, at least 2."""
    if _network_on_cpu(model):
        return 2
    from .device import usable_cores

    return max(2, usable_cores() - 2)


def worker_kind(model: "VoxFace", workers: int, n: int, batch_size: int) -> str:
    """What :func:`reconstruct_files` runs ``workers`` as for ``n`` inputs in batches of ``batch_size``:
    ``"pipeline processes"`` (the network on the CPU, at least two batches), ``"mesh processes"``
    (the network on an accelerator, at least four batches, to repay their spawn) or ``"threads"``
    (of this process: one worker, or too few inputs)."""
    if workers <= 1:
        return "threads"
    if _network_on_cpu(model):
        return "pipeline processes" if n >= 2 * batch_size else "threads"
    return "mesh processes" if n >= 4 * batch_size else "threads"


def reconstruct_files(model: "VoxFace", paths: Sequence[str | os.PathLike] | str | os.PathLike,
                      out_dir: str | os.PathLike, *, fmt: str = "ply",
                      detect: bool = True, all_faces: bool = False, threshold: float = 0.5, smooth: int = 0,
                      decimate: int | None = None, frame: str = "canonical", latents: bool = False,
                      save_volume: bool = False, preview: bool = False, batch_size: int = 16, workers: int | None = None, skip_existing: bool = False,
                      progress: bool = True, resolution: int | None = None, upsample: str = "decoder",
                      recursive: bool = False, skin_check: bool = True, scan_size: int = SCAN_SIZE,
                      checkpoint: str | os.PathLike | None = None) -> BatchSummary:
    """Reconstruct many photos into ``out_dir`` as a streaming pipeline.

    ``paths`` is one path or pattern (a photo, a folder: its photos, not an earlier run's previews;
    a glob) or a sequence of them, expanded by :func:`expand_inputs` as ``voxface reconstruct``
    expands its arguments: each file of a sequence is an input (a missing or unreadable one a
    failure of the batch), its folders and patterns are searched (``recursive``: sub-folders too);
    :class:`voxface.ImageError` when folders and patterns hold no photo (a ``UserWarning`` naming
    each one without a photo when other inputs have some). Every file is written atomically; a failing input is recorded (one line) and the batch goes
    on. ``skip_existing`` skips inputs whose mesh is already there (resume), unless the input was
    replaced in place since (newer than its mesh, other bytes than ``summary.json`` records: made again,
    with a ``UserWarning``). With ``all_faces`` the
    faces of one photo are ``<stem>_0``, ``<stem>_1``..., written last to first: ``<stem>_0``, the
    mesh ``skip_existing`` looks for, is there only once the photo is done; a rerun that finds fewer faces
    in a photo removes the earlier run's extra ones. ``out_dir/summary.json``
    lists every input's outcome (a ``summary.json`` there that no batch wrote, or a folder of that
    name, is refused before any input is read: :func:`check_summary`). Each face's files are :meth:`Reconstruction.save`'s: the mesh, with ``latents``
    or ``save_volume`` its ``<stem>.npz``, with ``preview`` its ``<stem>_preview.png``.

    Scheduling (``workers=None``: :func:`default_workers`). With the model on the CPU, ``workers`` *pipeline processes* share the
    cores (``torch.get_num_threads() // workers`` intra-op threads each) and take the inputs a
    batch at a time; each one loads its batch, runs the network on it, extracts the meshes and
    writes them, so one process meshes and writes while the other runs the network. Two ways of
    sharing two cores were measured and rejected: one network on both cores with meshing beside it
    in a thread stalls the network (each operator waits for its slowest thread: a batch of 16 ran
    more than twice as slow) and meshing in threads does not spread (scikit-image's marching cubes
    holds the GIL); one network on both cores and meshing after each batch leaves a core idle
    while the meshes are made (the pipeline then ran at 60% of the network's throughput). The
    processes are forked where the platform allows it (Linux: they share the loaded model and
    start in milliseconds) and spawned elsewhere (the model is sent to them once). Fewer inputs
    than two batches, or ``workers=1``, run in this process: the network on all its threads, then
    the batch's meshes, with the next batch loading meanwhile. With the model on an accelerator
    the cores are free while it runs: reading overlaps it in ``workers`` threads of this process,
    and meshing and writing run in ``workers`` *mesh processes* (spawned: a process holding a CUDA
    context must not fork) once there are at least four batches to repay their start, else in
    ``workers`` threads. Threads were measured first: scikit-image's marching cubes holds the GIL,
    so they meshed on one core and an H100 batch ran at 7% of the network's throughput
    (BENCHMARKS.md).

    Memory stays bounded whatever the number of inputs: reading runs at most about two batches
    ahead of the network, and the network waits while more than two batches of meshes are still
    to be written (which also hands the cores to the writers when writing is the slower stage). On a
    grid finer than the model's a batch's faces are refined a few at a time (:func:`fine_group`:
    four at 256^3, whose logits are 64 MiB a face), each group meshed and handed to the writers
    before the next is refined.
    A pipeline or mesh process that dies (killed, out of memory) fails the files it held, and the
    ones not yet started, each with a one-line error; the pool stops its other processes, and what
    they were writing goes with their temporary files: nothing half-written is left.

    A face's codes, pose and mesh depend on the batch it ran in by float rounding only: the CPU's
    kernels block by batch size, so the photos that share a network batch (``batch_size``, the
    inputs before it that failed, ``workers``' chunks, a resume's shorter list) move the codes by
    ~2e-6 and the logits by ~3e-5, a vertex by ~1.5 micrometres (the bundled weights, 16 photos a
    batch). With ``batch_size=1`` and ``workers=1`` each face is :func:`reconstruct_image`'s of the
    same photo bit for bit.

    ``resolution`` is the grid the meshes are extracted on (``None``: the model's) and
    ``upsample`` how a finer one is reached (see :func:`decode_at`); ``skin_check`` and
    ``scan_size`` are the detector's (see :func:`reconstruct_image`).

    Every ``.npz`` records which weights made it (:func:`model_provenance`, computed once for the
    run): ``voxface_version``, ``model_sha256`` and the checkpoint's resolved path, SHA-256 and
    epoch: those :func:`voxface.load_model` recorded as it read the file (``model.source``), or
    those of ``checkpoint`` when given (read here); ``summary.json`` records the same under ``model``. Raises
    :class:`voxface.VoxfaceError` for a bad ``fmt``, ``frame``, ``resolution``, ``upsample``,
    ``threshold``, ``smooth``, ``decimate`` or ``scan_size``, and an InputError / InputTypeError for a
    ``batch_size`` or ``workers`` that is not an integer >= 1, before reading any input.
    """
    import json

    from tqdm.auto import tqdm

    from .errors import InputError
    from .errors import check_integer as _integer
    from .mesh import MESH_FORMATS, atomic_write_bytes, check_mesh_options, probe_write
    from .refine import upsample_method

    check_mesh_options(threshold, smooth, decimate)
    batch_size = _integer("batch_size", batch_size, 1)  # 0 or 2.7 ran as 1 or 2 without a word
    workers = None if workers is None else _integer("workers", workers, 1)
    if fmt not in MESH_FORMATS:  # the API's names (the CLI refuses its --format and --frame itself)
        raise InputError(f"fmt must be one of {', '.join(MESH_FORMATS)}, not {fmt!r}")
    if frame not in FRAMES:
        raise InputError(f"frame must be one of {', '.join(FRAMES)}, not {frame!r}")
    job = _BatchJob(Path(out_dir), fmt, bool(detect), bool(all_faces), float(threshold), int(smooth), decimate,
                    frame, bool(save_volume), bool(preview), bool(latents), batch_size,
                    output_resolution(model, resolution), upsample, bool(skin_check), check_scan_size(scan_size))
    upsample_method(model, upsample)  # a bad value fails before any input is read
    weights = model_digest(model)  # once for the run: summary.json's settings and every face's .npz
    provenance = model_provenance(model, checkpoint, digest=weights)  # an unreadable checkpoint: before any write
    job = dataclasses.replace(job, provenance=tuple(provenance.items()))
    # one folder, pattern or photo (never its characters, one by one), or a list with folders in it
    paths = expand_inputs(paths, recursive=recursive)
    try:
        job.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where the folder is, or one among its parents: one line naming it
        raise VoxfaceError("is a file, where a folder is needed" if isinstance(e, FileExistsError)
                           else e.strerror or str(e), job.out) from None
    try:
        probe_write(job.out)  # a read-only folder fails now, not at the first face or the summary
    except OSError as e:
        raise VoxfaceError(f"cannot write into this output folder ({e.strerror or e})", job.out) from None
    check_summary(job.out)
    paths = [Path(p) for p in paths]
    t_start = time.perf_counter()
    wall_start = time.time()
    summary = BatchSummary()
    todo = []
    unrecorded: list[tuple[Path, str]] = []  # inputs skipped on their mesh alone: recorded as its owners now
    inputs_here = _inputs_in(job.out, paths)
    earlier = _read_summary(job.out / SUMMARY_NAME)  # read once: this run replaces it at the end
    owners = _earlier_owners(earlier)  # {output file name: the input it was made from}
    digests = _earlier_digests(earlier)  # {input (resolved): its content digest}
    digest = functools.lru_cache(maxsize=None)(_digest)  # each input read at most once for it
    moved: list[tuple[Path, str]] = []  # inputs skipped as an earlier input's very bytes: they own its files now
    same_mode = bool(earlier.get("all_faces", False)) == job.all_faces
    clashes = _overwritten_inputs(job, inputs_here)
    made_with = _earlier_made_with(earlier)  # {output file name: the settings that made it}
    skipped_meshes: list[str] = []
    skipped_stems: dict[str, str] = {}  # {input skipped: its stem}
    replaced: list[Path] = []  # inputs --skip-existing makes again: other bytes than their outputs were made from
    stems = unique_stems(paths, _earlier_stems(paths, owners, job, digests, same_mode, digest),
                         ignore_case=_case_insensitive(job.out))
    for p, stem in zip(paths, stems):
        clash = clashes.get(stem)
        owner = _mesh_owner(stem, job, owners)
        changed = False  # an input of its own outputs replaced in place since: made again
        if skip_existing and owner is not None and owner not in (_NO_RECORD, _resolved(p)):
            if digests.get(str(owner)) is not None and digests[str(owner)] == digest(p):
                summary.skipped.append(str(p))  # the same photo, moved or renamed since: done
                skipped_meshes.append(_mesh_path(stem, job).name)
                skipped_stems[str(p)] = stem
                moved.append((p, stem))
            else:
                summary.failed[str(p)] = (f"{p}: its outputs would replace those an earlier run made from {owner}, "
                                          f"another photo ({_mesh_path(stem, job).name}: the same file name); "
                                          "rename it or write into another folder (-o)")
        elif skip_existing and owner is not None and not (changed := _replaced(p, stem, job, digests, digest)):
            # done: nothing to overwrite (a photo replaced in place since its mesh was made is made again)
            summary.skipped.append(str(p))
            skipped_meshes.append(_mesh_path(stem, job).name)
            skipped_stems[str(p)] = stem
            if owner is _NO_RECORD:
                unrecorded.append((Path(p), stem))
        elif clash is not None:
            summary.failed[str(p)] = (f"{p}: its outputs would overwrite the input {job.out / clash}; "
                                      "write into another folder (-o)")
        else:
            todo.append((Path(p), stem))
        if changed:
            replaced.append(p)
    if replaced:
        import warnings

        warnings.warn(f"{replaced[0]}: its bytes changed since an earlier run made its outputs; they are made again"
                      + (f" (and those of {len(replaced) - 1} other changed input(s))" if len(replaced) > 1 else ""),
                      UserWarning, stacklevel=2)
    settings = _output_settings(model, job, weights)
    _warn_other_settings(job.out / SUMMARY_NAME, [made_with.get(m) for m in skipped_meshes], settings)
    workers = default_workers(model) if workers is None else workers
    kind = worker_kind(model, workers, len(todo), job.batch_size)
    processes = workers if kind == "pipeline processes" else 1
    if processes > 1:
        pool = _start_pipelines(model, processes)  # before the progress bar's thread: forked processes copy threads' state
    # with all_faces a photo gives any number of faces: a count and a rate, no total to overshoot
    bar = tqdm(total=None if job.all_faces else len(todo), desc="reconstruct", unit="face", disable=not progress,
               smoothing=0.1)
    stopped: str | None = "interrupted"  # what ended the run, unless it ran to the end
    try:
        if processes > 1:
            _run_pipelines(pool, processes, todo, job, summary, bar)
        else:  # a network on an accelerator leaves the cores to meshing: mesh processes on long batches
            _stream(model, todo, job, workers, summary, bar,
                    mesh_processes=workers if kind == "mesh processes" else 0)
        stopped = None
    except Exception as e:
        stopped = f"{type(e).__name__}: {e}"
        raise
    finally:  # also after Ctrl-C or a crash: what was done is on record (and --skip-existing's proof)
        with _sigint_deferred():  # a second Ctrl-C would lose the record
            bar.close()
            unfinished: list[str] = []
            if stopped is not None or summary.failed:  # processes stopped mid-batch: their finished faces count,
                _written_since(job, todo, summary, wall_start)
            if stopped is not None:  # and what they were writing goes (all have stopped). A run that ended has
                # none (a writer removes its own; a broken pool's were removed): a failed input's stem would
                # take the fresh temporaries of another process writing into the folder (x_1 for x's failure)
                unfinished = [stem for p, stem in todo if str(p) not in summary.ok]
            # and what an earlier run killed mid-write (SIGKILL, out of memory) left for this run's inputs:
            # older than this run by a margin, never what a process started just before it is writing now
            _remove_partial_writes(job.out, unfinished, stale=stems, before=wall_start - 10.0)
            summary.seconds = time.perf_counter() - t_start
            record = summary.to_dict()
            if stopped is not None:
                record["stopped"] = stopped
            if summary.skipped:  # a resumed run: what the earlier runs wrote for the inputs skipped now
                record["ok_earlier"] = _earlier_outputs(earlier, summary.skipped)
            for files in summary.ok.values():  # a face's files are one set: none left from an earlier run
                for name in _remove_stale_siblings(job, files, owners):
                    owners.pop(name, None)
            if job.all_faces and summary.ok:  # and a photo's faces are this run's: none beyond them from an earlier one
                index, stem_of = _all_faces_index(job), {str(p): stem for p, stem in todo}
                for p, files in summary.ok.items():
                    for name in _remove_stale_faces(index.get(stem_of.get(p, ""), []), p, files, owners):
                        owners.pop(name, None)
            for p, files in summary.ok.items():  # the earlier runs' owners, updated with this run's outputs
                owners.update({Path(f).name: _resolved(p) for f in files})
            listing = _all_faces_index(job) if job.all_faces and summary.skipped else None  # one listing, not one an input
            for p, stem in [*unrecorded, *moved]:  # a run stopped before its summary, a photo moved: theirs now
                owners.update({f.name: _resolved(p) for f in _face_files(job, stem, listing) if f.is_file()})
            if summary.skipped:  # and a skipped input that no earlier summary lists (moved since, a run stopped
                for p in summary.skipped:  # before its summary, one not in the last run): its files on record here
                    if p not in record["ok_earlier"]:
                        files = _owned_files(job, skipped_stems[p], _resolved(p), owners, listing)
                        if files:
                            record["ok_earlier"][p] = files
            record["model"] = {k: v.item() for k, v in provenance.items()}  # which weights made this run's faces
            record["settings"] = settings  # this run's; made_with: each output file's (--skip-existing compares them)
            made_with.update({Path(f).name: settings for files in summary.ok.values() for f in files})
            table: dict[str, int] = {}
            index = {name: table.setdefault(json.dumps(made_with[name], sort_keys=True), len(table))
                     for name in sorted(owners) if name in made_with}
            record["settings_table"] = [json.loads(t) for t in table]
            record["made_with"] = index
            record["owners"] = {name: str(path) for name, path in sorted(owners.items())}
            record["all_faces"] = job.all_faces  # how the owners' file names were made (stems are read from them)
            # what each owner's bytes were: a photo moved or renamed is then known by them (--skip-existing)
            for p in [*map(Path, summary.ok), *(q for q, _ in [*unrecorded, *moved])]:
                d = summary.digests.get(str(p)) or digest(p)  # taken as the batch read it (_stream)
                if d is not None:
                    digests[str(_resolved(p))] = d
            owned = {str(v) for v in owners.values()}
            record["digests"] = {k: v for k, v in sorted(digests.items()) if k in owned}
            try:
                atomic_write_bytes(job.out / SUMMARY_NAME, json.dumps(record, indent=1).encode())
            except VoxfaceError as e:
                if stopped is None:  # a full disk: the command's own line (what was done, what failed) is lost with it
                    done = f"{summary.faces} face(s) from {len(summary.ok)} image(s) written whole" + "".join(
                        f", {n} {what}" for n, what in ((len(summary.skipped), "skipped"),
                                                        (len(summary.failed), "failed")) if n)
                    raise VoxfaceError(f"{e.problem}; this run is not on record: {done} (once there is room, "
                                       "resume with --skip-existing)", e.path) from None
                import warnings  # the error that stopped the run is the one to report

                warnings.warn(f"{job.out / SUMMARY_NAME}: could not be written after the run stopped", RuntimeWarning,
                              stacklevel=2)
    return summary


#: The file in the output folder where :func:`reconstruct_files` records every input's outcome.
SUMMARY_NAME = "summary.json"


def check_summary(out_dir: str | os.PathLike) -> None:
    """Refuse an output folder whose ``summary.json`` a batch would replace but did not write:
    :class:`~voxface.errors.VoxfaceError` naming it when it is a folder, or a file that is not a
    batch summary (a JSON object with ``ok`` and ``failed``: another tool's, kept). Nothing there,
    or an earlier run's summary: returns. Called before any input is read (the command: before the
    model is loaded)."""
    import json

    path = Path(out_dir) / SUMMARY_NAME
    if path.is_dir():
        raise VoxfaceError("is a folder, where the batch writes its summary file; write into another folder (-o)",
                           path)
    if not path.exists():
        return
    try:
        with open(path, "rb") as fh:
            start = fh.read(64).lstrip()
        data = json.loads(path.read_bytes()) if start.startswith(b"{") else None  # not a big binary's bytes
    except ValueError:
        data = None
    except OSError as e:
        raise VoxfaceError(f"cannot be read ({e.strerror or e}); the batch would replace it", path) from None
    if not (isinstance(data, dict) and {"ok", "failed"} <= data.keys()):
        raise VoxfaceError("exists and is not the summary of a voxface reconstruct run; it is kept: write into "
                           "another folder (-o)", path)


def model_digest(model: "VoxFace") -> str:
    """A digest of the model's weights as loaded: the first 16 hex digits of the SHA-256 of every
    ``state_dict`` entry's name and bytes (what ``summary.json``'s ``settings`` and each face's
    ``.npz`` record as ``model_sha256``). The same weights give the same digest whichever file or
    device they came from; a float16 release is digested as the float32 weights it loads as.

    Cached on the model until a weight changes (a tensor replaced, moved or written in place:
    its storage or version counter differs), so a call per photo costs microseconds."""
    import hashlib

    import torch

    state = model.state_dict()
    try:
        key = tuple((name, t.device, t.dtype, t.shape, t.data_ptr(), t._version) for name, t in state.items())
    except RuntimeError:  # inference-mode tensors keep no version counter: not cached
        key = None
    cached = model.__dict__.get("_voxface_digest")
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(name.encode())
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16 ('unsupported ScalarType'): its bytes, as int16
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    model.__dict__["_voxface_digest"] = (key, h.hexdigest()[:16])
    return h.hexdigest()[:16]


def model_provenance(model: "VoxFace", checkpoint: str | os.PathLike | None = None, *,
                     digest: str | None = None) -> dict[str, np.ndarray]:
    """Which weights make a face, as :func:`reconstruct_files` records it in every ``.npz``.

    Returns 0-d arrays (strings as numpy unicode: ``np.load`` reads them without pickles;
    ``str(z["checkpoint"])``): ``voxface_version``, ``model_sha256`` (:func:`model_digest`, or
    ``digest`` when already computed) and the file the weights came from: ``checkpoint`` (its
    path, absolute, links resolved), ``checkpoint_sha256`` (the SHA-256 of its bytes, 64 hex
    digits: ``sha256sum``'s) and ``checkpoint_epoch`` (int64, the training epoch it records; -1
    when none).

    Without ``checkpoint`` the file is ``model.source``, which :func:`voxface.load_model` recorded
    as it read the file (nothing is read here; a file replaced since is not mistaken for it); no
    file keys for a model made otherwise, or whose weights changed since it was loaded (trained
    further, ``load_state_dict``, cast with ``model.half()``: pass ``checkpoint`` to name a file). With
    ``checkpoint`` (which wins) that file is read here, once (opened once: hashed as its epoch is
    read, no tensor data loaded): compute this once per run, not per face. Raises
    :class:`~voxface.errors.CheckpointError` when ``checkpoint`` cannot be read.
    """
    from ._version import __version__
    from .checkpoint import CheckpointSource, _unwrap

    digest = digest if digest is not None else model_digest(model)
    out = {"voxface_version": np.str_(__version__), "model_sha256": np.str_(digest)}
    if checkpoint is not None:
        src = CheckpointSource.of_file(checkpoint, digest)
    else:
        net = _unwrap(model)  # a torch.compile / DataParallel wrapper: the model inside, its unprefixed weights
        src = getattr(net, "source", None)
        if getattr(src, "model_sha256", None) != (digest if net is model else model_digest(net)):
            src = None  # made otherwise, or its weights changed since it was loaded
    if src is not None:
        out.update(checkpoint=np.str_(os.fsdecode(src.path)), checkpoint_sha256=np.str_(src.sha256),
                   checkpoint_epoch=np.int64(-1 if src.epoch is None else src.epoch))
    return out


def _output_settings(model: "VoxFace", job: _BatchJob, digest: str | None = None) -> dict[str, Any]:
    """The settings a face's files depend on, as ``summary.json`` records them: the model (a digest
    of its weights as loaded, :func:`model_digest` or ``digest`` when already computed, and the
    voxface version) and every option that changes a mesh, its frame or which files a face has
    (``upsample``: what filled a finer grid, :func:`voxface.refine.upsample_method`, as
    ``voxface evaluate``'s report records it; ``None`` on the model's grid).
    Scheduling (``batch_size``, ``workers``) changes none beyond float rounding: the decoder's
    logits depend on the faces that share its batch by ~2e-5 (CPU kernels block by batch size),
    which moves a vertex by well under a micrometre."""
    from ._version import __version__
    from .refine import upsample_method

    return {"voxface": __version__, "model_sha256": digest if digest is not None else model_digest(model),
            "format": job.fmt, "detect": job.detect,
            "all_faces": job.all_faces, "threshold": job.threshold, "smooth": job.smooth, "decimate": job.decimate,
            "frame": job.frame, "resolution": job.resolution,
            # what filled the finer grid (upsample_method: 'head' asked of a model without one gives
            # what 'decoder' gives, the same meshes); unused at the model's grid
            "upsample": upsample_method(model, job.upsample) if job.resolution > model.grid.resolution else None,
            # the detector's options: unused with --no-detect
            "skin_check": job.skin_check if job.detect else None, "scan_size": job.scan_size if job.detect else None,
            "latents": job.latents,
            "save_volume": job.save_volume, "preview": job.preview}


def _earlier_made_with(earlier: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{output file name: the settings that made it}`` an earlier ``summary.json`` records
    (``made_with``: indices into ``settings_table``; a summary from before they were recorded: ``{}``)."""
    table, made = earlier.get("settings_table"), earlier.get("made_with")
    if not (isinstance(table, list) and isinstance(made, dict)):
        return {}
    return {str(k): table[i] for k, i in made.items()
            if isinstance(i, int) and 0 <= i < len(table) and isinstance(table[i], dict)}


def _settings_changed(earlier: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The keys of ``now`` whose value ``earlier`` records otherwise (``upsample`` only where both
    grids used one: it is ``None`` at the model's own grid; the detector's options only where both
    runs detected)."""
    return [k for k in now if k != "voxface" and k in earlier and earlier[k] != now[k]
            and not (k in ("upsample", "skin_check", "scan_size") and None in (earlier[k], now[k]))]


def _warn_other_settings(summary_path: Path, earlier: "Sequence[dict[str, Any] | None]", now: dict[str, Any]) -> None:
    """Warn when ``--skip-existing`` keeps faces earlier runs made with other settings (``earlier``:
    the settings of each face skipped, ``None`` where no summary recorded them): the folder then
    holds meshes of two models or thresholds, which nothing else would say."""
    other = [(e, c) for e in earlier if isinstance(e, dict) and (c := _settings_changed(e, now))]
    if not other:
        return
    e, changed = other[0]
    import warnings

    what = ", ".join("the model's weights" if k == "model_sha256" else f"{k} {e[k]!r} (now {now[k]!r})"
                     for k in changed)
    warnings.warn(f"{summary_path}: {len(other)} of the {len(earlier)} input(s) skipped as done were made with other "
                  f"settings: {what}; "
                  "rerun without --skip-existing to remake them", UserWarning, stacklevel=3)


def _case_insensitive(folder: Path) -> bool:
    """Whether ``folder``'s file system takes names that differ only in case for one file (macOS's
    and Windows' defaults; a case-folding ext4 folder): a temporary file is looked up in upper case."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".voxface-case-", suffix=".tmp") as f:
            name = Path(f.name).name
            return os.path.exists(folder / name.upper()) and name.upper() != name
    except OSError:
        return False


def _inputs_in(out_dir: Path, paths: Sequence[Path]) -> set[str]:
    """Names of the input files that lie in ``out_dir`` itself (the ones an output could overwrite)."""
    here = _resolved(out_dir)
    # where the file is and, for a link, where its target is: writing the output replaces either
    # (a link loop resolves as far as it leads: Path.resolve raised RuntimeError, a traceback)
    return {Path(p).name for p in paths if here in (_resolved(p).parent, _resolved(Path(p).absolute().parent))}


def _output_name(job: _BatchJob, faces: bool) -> "re.Pattern[str]":
    """The names of a stem's outputs (``<stem>.<fmt>``, ``.npz``, ``_preview.png``; with ``faces``
    each face's, ``<stem>_<k>...``): group 1 of a full match is the stem."""
    face = r"_\d+" if faces else ""
    return re.compile(rf"(.+){face}(\.{re.escape(job.fmt)}|\.npz|{re.escape(PREVIEW_SUFFIX)})", re.S)


def _overwritten_inputs(job: _BatchJob, inputs_here: set[str]) -> dict[str, str]:
    """``{stem: the name of an input in the output folder that the stem's outputs would overwrite}``
    (the first name in sorted order when several), for every stem that has one.

    Outputs are ``<stem>.<fmt>``, ``<stem>.npz`` and ``<stem>_preview.png`` (``<stem>_<k>...`` for
    every face with ``--all-faces``), so this happens only to a photo named like a preview. Each
    name is read once for the stem it would be the output of (a folder of thousands of photos
    reconstructed into itself was matched against every stem: minutes before the first face).
    """
    pattern = _output_name(job, job.all_faces)
    clashes: dict[str, str] = {}
    for n in sorted(inputs_here):
        m = pattern.fullmatch(n)
        if m is not None:
            clashes.setdefault(m.group(1), n)
    return clashes


#: :func:`_mesh_owner` of a mesh that is there but on no earlier summary's record
_NO_RECORD = Path("<no record>")


def _mesh_path(stem: str, job: _BatchJob) -> Path:
    """The mesh that proves ``stem`` done (``--skip-existing``): written last; with ``--all-faces``
    the first face's (``<stem>_0``, written after the photo's other faces), without it the stem's own,
    so another input's ``x_0.ply`` never counts for ``x``."""
    return output_paths(job.out, f"{stem}_0" if job.all_faces else stem, job.fmt)["mesh"]


def _replaced(p: Path, stem: str, job: _BatchJob, digests: dict[str, str], digest: "Callable[[Path], str | None]") -> bool:
    """Whether input ``p``, on record as the owner of ``stem``'s outputs, was replaced in place since:
    newer than its mesh, and other bytes than the digest the earlier run recorded. Only a file newer
    than its mesh is read: a resume of thousands of photos stats them, it does not hash them. No
    digest on record (a run killed before its summary): False."""
    recorded = digests.get(str(_resolved(p)))
    if recorded is None:
        return False
    try:
        if os.stat(p).st_mtime_ns <= os.stat(_mesh_path(stem, job)).st_mtime_ns:
            return False
    except OSError:
        return False
    now = digest(p)
    return now is not None and now != recorded


def _mesh_owner(stem: str, job: _BatchJob, owners: dict[str, Path]) -> Path | None:
    """The input an earlier run made ``stem``'s mesh from (resolved path), :data:`_NO_RECORD` when
    the mesh is there but no summary records it (a run killed before writing one: it counts for
    whichever input has the stem), or None when there is no mesh. Stems come from file names:
    ``a/x.jpg`` reconstructed earlier and ``b/x.jpg`` now share ``x``, and ``owners``
    (:func:`_earlier_owners`) tells them apart. Only a file is a mesh: a folder of its name
    (which the input then failed to write over) left the input skipped as done, on record as its owner."""
    mesh = _mesh_path(stem, job)
    if not mesh.is_file():  # a folder of the mesh's name is no mesh: the input failed to write there
        return None
    return owners.get(mesh.name, _NO_RECORD)


def _written_since(job: _BatchJob, todo: Sequence[tuple[Path, str]], summary: BatchSummary, since: float) -> None:
    """Put on record the faces of ``todo`` that are written whole but not reported: a pipeline or
    mesh process stopped (SIGTERM to the process group, out of memory) after writing them and
    before its batch's result came back. A face is whole when its mesh, written last and atomically,
    is there and was written by this run (modified at or after ``since``, a ``time.time()``). With
    ``all_faces`` a photo's faces count only when its face 0, written after the others
    (:func:`_mesh_and_write_faces`), is: a photo stopped part-way is not done."""
    index = _all_faces_index(job) if job.all_faces else None
    for p, stem in todo:
        if str(p) in summary.ok:
            continue
        if job.all_faces and not _written_after(_mesh_path(stem, job), since):
            continue
        stems = [stem] if not job.all_faces else sorted(
            {s for f in _face_files(job, stem, index) if (s := _mesh_stem(f.name, job.fmt)) is not None})
        files: list[str] = []
        for s in stems:
            if not _written_after(output_paths(job.out, s, job.fmt)["mesh"], since):
                continue
            files += [str(f) for f in output_paths(job.out, s, job.fmt).values() if _written_after(f, since)]
            summary.faces += 1
        if files:
            summary.ok[str(p)] = files
            summary.failed.pop(str(p), None)


def _written_after(path: Path, since: float) -> bool:
    """Whether ``path`` is there and was modified at or after ``since`` (a ``time.time()``)."""
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def _remove_stale_siblings(job: _BatchJob, files: Sequence[str], owners: dict[str, Path]) -> list[str]:
    """Remove the files an earlier run wrote for the faces just written (``files``) that this run
    did not write again: its ``.npz`` when this run writes none (``--no-latents`` without
    ``--save-volume``), its preview with ``--no-preview``. They belonged to the earlier reconstruction (another photo of the name, other
    settings) and beside this one would mix two faces' outputs. Only files on an earlier summary's
    record (``owners``) are removed. Returns their names."""
    written = {Path(f).name for f in files}
    removed = []
    for f in files:
        stem = _mesh_stem(Path(f).name, job.fmt)
        if stem is None:
            continue
        for sibling in output_paths(job.out, stem, job.fmt).values():
            if sibling.name not in written and sibling.name in owners and sibling.is_file():
                with contextlib.suppress(OSError):
                    sibling.unlink()
                    removed.append(sibling.name)
    return removed


def _remove_stale_faces(face_files: Sequence[Path], p: str | os.PathLike, files: Sequence[str],
                        owners: dict[str, Path]) -> list[str]:
    """With ``all_faces``: remove the faces an earlier run made from the photo ``p`` (its files on
    ``owners``' record) that this run did not make again (``files``: this run's), when the photo
    now gives fewer faces (other detector settings, an edited photo): ``x_1.ply`` of an earlier
    run was left beside this run's lone ``x_0.ply``, on record as the photo's, and the folder
    told of two faces. ``face_files``: every file of the photo's stem (:func:`_all_faces_index`).
    Files on record as another input's are kept. Returns the names removed."""
    written = {Path(f).name for f in files}
    me = _resolved(p)
    removed = []
    for f in face_files:
        if f.name not in written and owners.get(f.name) == me and f.is_file():
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f.name)
    return removed


def _owned_files(job: _BatchJob, stem: str, owner: Path, owners: dict[str, Path],
                 index: dict[str, list[Path]] | None = None) -> list[str]:
    """The files of ``stem`` in the output folder on record (``owners``) as the input ``owner``'s, as
    ``summary.json``'s ``ok`` lists a face's files: face by face, each face's mesh, ``.npz``, preview."""
    order = {job.fmt: 0, "npz": 1, "png": 2}
    face = _output_name(job, False)

    def key(f: Path) -> tuple[int, int]:
        m = face.fullmatch(f.name)
        k = int(m.group(1).rsplit("_", 1)[1]) if job.all_faces and m and m.group(1)[-1:].isdigit() else 0
        return k, order.get(f.suffix[1:], 3)

    files = [f for f in _face_files(job, stem, index) if owners.get(f.name) == owner and f.is_file()]
    return [str(f) for f in sorted(files, key=key)]


def _mesh_stem(name: str, fmt: str) -> str | None:
    """The face stem of an output file name when it is a mesh (``x_1.ply`` -> ``x_1``), else None."""
    return name[: -len(fmt) - 1] if name.endswith(f".{fmt}") else None


def _owned_stem(name: str, fmt: str) -> tuple[int, str] | None:
    """``(rank, face stem)`` of a file name an earlier run wrote (``summary.json``'s ``owners``):
    rank 0 for a mesh in the format ``fmt``, 1 for a mesh in another format, 2 for an ``.npz`` or a
    preview; None for any other name."""
    from .mesh import MESH_FORMATS

    if (stem := _mesh_stem(name, fmt)) is not None:
        return 0, stem
    for other in MESH_FORMATS:
        if (stem := _mesh_stem(name, other)) is not None:
            return 1, stem
    for end in (".npz", PREVIEW_SUFFIX):
        if name.endswith(end) and len(name) > len(end):
            return 2, name[: -len(end)]
    return None


def _face_files(job: _BatchJob, stem: str, index: dict[str, list[Path]] | None = None) -> list[Path]:
    """Every file ``stem`` may have in the output folder (each face's with ``--all-faces``: from
    ``index``, :func:`_all_faces_index`, when given; else the folder is listed)."""
    if not job.all_faces:
        return list(output_paths(job.out, stem, job.fmt).values())
    return (index if index is not None else _all_faces_index(job)).get(stem, [])


def _all_faces_index(job: _BatchJob) -> dict[str, list[Path]]:
    """``{stem: its faces' files}`` of the output folder with ``--all-faces`` (``<stem>_<k>.<fmt>``,
    ``.npz``, ``_preview.png``), from one listing: asking the folder once per input made an
    interrupted batch of thousands of inputs take minutes to stop. Each name has one stem (the
    face number is the last ``_<digits>`` before the suffix)."""
    pattern = _output_name(job, True)
    index: dict[str, list[Path]] = {}
    try:
        names = sorted(os.listdir(job.out))
    except OSError:
        return index
    for name in names:
        m = pattern.fullmatch(name)
        if m is not None:
            index.setdefault(m.group(1), []).append(job.out / name)
    return index


def _digest(p: str | os.PathLike) -> str | None:
    """A content digest of a file (BLAKE2b, 128 bits), or None when it cannot be read."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    try:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _earlier_digests(earlier: dict[str, Any]) -> dict[str, str]:
    """``{input (resolved path): content digest}`` an earlier summary records (``digests``)."""
    recorded = earlier.get("digests")
    if not isinstance(recorded, dict):
        return {}
    return {str(k): v for k, v in recorded.items() if isinstance(v, str)}


def _earlier_stems(paths: Sequence[Path], owners: dict[str, Path], job: _BatchJob, digests: dict[str, str],
                   same_mode: bool, digest: Any = None) -> dict[Path, str]:
    """The stems earlier runs gave to inputs of this run (``{path: stem}``, from the names of the
    files they own, or, for a photo moved since, from the owner whose recorded bytes it has): an
    input keeps its stem, whatever sorts before it now (``a/x.png`` added beside a finished
    ``b/x.png`` gets ``x_1``, instead of ``b`` being reconstructed again as ``x_1``), also when the
    earlier run wrote another ``--format``: its stem is read from its mesh in this run's format, else
    from its mesh in another format, its ``.npz`` or its preview (the stems were read from meshes of
    this run's format only, so a rerun with ``--format ply`` over ``b/x.obj`` gave ``x`` to ``a/x.jpg``,
    whose ``x.npz`` replaced ``b``'s beside ``b``'s ``x.obj``). Only when the earlier run wrote its
    faces the same way (``same_mode``: ``--all-faces`` or not), whose file names the stems are read
    from. ``digest``: :func:`_digest`, or a cache of it."""
    if not same_mode:
        return {}
    digest = digest or _digest
    named = ((_owned_stem(name, job.fmt), name, owner) for name, owner in owners.items())
    by_owner: dict[Path, str] = {}
    for (_, stem), _, owner in sorted(n for n in named if n[0] is not None):  # this format's meshes first
        if job.all_faces:
            if not stem.endswith("_0"):
                continue
            stem = stem[:-2]
        by_owner.setdefault(owner, stem)
    if not by_owner:
        return {}
    out: dict[Path, str] = {}
    here = {_resolved(p): p for p in paths}
    for r, p in here.items():
        if r in by_owner:
            out[p] = by_owner[r]
    gone: dict[str, dict[Path, str]] = {}  # {file name: {owner: stem}}: a moved photo is looked up by its name
    for owner, stem in by_owner.items():
        if owner not in here and str(owner) in digests:
            gone.setdefault(owner.name, {})[owner] = stem
    for r, p in here.items():  # a photo moved since: the same name, the recorded bytes (read only then)
        if p in out:
            continue
        same_name = gone.get(Path(p).name, {})
        for owner, stem in same_name.items():
            if digests[str(owner)] == digest(p):
                out[p] = stem
                del same_name[owner]
                break
    return out


def _resolved(p: str | os.PathLike) -> Path:
    """``p`` absolute, through every symbolic link (as far as they lead: a loop stops there)."""
    try:
        return Path(p).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return Path(os.path.abspath(p))


def _read_summary(summary_path: Path) -> dict[str, Any]:
    """An earlier run's ``summary.json``; unreadable, absent or not an object: ``{}``."""
    import json

    try:
        earlier = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return {}
    return earlier if isinstance(earlier, dict) else {}


def _summary_ok(earlier: dict[str, Any]) -> dict[str, list[str]]:
    """``{input: [files]}`` an earlier summary records as done (``ok`` and ``ok_earlier``)."""
    ok: dict[str, Any] = {}
    for key in ("ok_earlier", "ok"):
        if isinstance(earlier.get(key), dict):
            ok.update(earlier[key])
    return {p: f for p, f in ok.items() if isinstance(p, str) and isinstance(f, list)}


def _earlier_owners(earlier: dict[str, Any]) -> dict[str, Path]:
    """``{output file name: the input it was made from (absolute, resolved)}`` of the earlier runs,
    from the summary's ``owners`` (written since 2026-12-05, carried from run to run); from an older
    summary's ``ok`` lists, resolved against the current folder."""
    recorded = earlier.get("owners")
    if isinstance(recorded, dict):
        return {str(k): Path(v) for k, v in recorded.items() if isinstance(v, str)}
    return {Path(f).name: _resolved(p) for p, files in _summary_ok(earlier).items()
            for f in files if isinstance(f, str)}


def _earlier_outputs(earlier: dict[str, Any], skipped: Sequence[str]) -> dict[str, list[str]]:
    """The outputs an earlier summary lists for the inputs skipped now, under their spelling now
    (matched on resolved paths: ``b/../b/x.png`` is ``b/x.png``)."""
    ok = {_resolved(p): files for p, files in _summary_ok(earlier).items()}
    found = ((p, _resolved(p)) for p in skipped)
    return {p: ok[r] for p, r in found if r in ok}


def _failure(p: Path, e: VoxfaceError) -> str:
    """The batch's one line for input ``p`` failed with ``e``: ``e``'s message, which names a file
    when it has one (a photo, an output), else prefixed by ``p`` (extract_mesh's 'empty occupancy
    grid' named no file: in a batch of thousands, nothing said which photo gave it)."""
    return str(e) if getattr(e, "path", None) is not None else str(VoxfaceError(str(e), p))


def _mesh_one(p: Path, logit: np.ndarray, grid: Grid, job: _BatchJob):
    """``(MeshResult, None)``, or ``(None, the error line)``."""
    from .mesh import extract_mesh

    try:
        return extract_mesh(logit, grid, job.threshold, smooth=job.smooth, decimate=job.decimate), None
    except VoxfaceError as e:
        return None, _failure(p, e)
    except Exception as e:  # noqa: BLE001 - a batch reports every failure and goes on
        return None, f"{p}: {type(e).__name__}: {e}"


def _mesh_and_write(item: tuple, job: _BatchJob) -> tuple[Path, list[str] | None, str | None]:
    """Mesh one face (unless ``item`` holds its mesh already) and write its files atomically:
    ``(path, [files written], None)`` or ``(path, None, the error line)``. Module-level, so that
    mesh processes (:func:`_start_mesh_processes`) can run it."""
    p, stem, crop, box, lat, logit, grid, meshed = item
    m, err = meshed if meshed is not None else _mesh_one(p, logit, grid, job)
    if m is None:
        return p, None, err
    try:
        rec = Reconstruction(m.mesh, logit, lat, lat.pose, grid, source=str(p), crop=crop, crop_box=box,
                             provenance=dict(job.provenance))
        files = rec.save(output_paths(job.out, stem, job.fmt)["mesh"], frame=job.frame, latents=job.latents,
                         save_volume=job.save_volume, preview=job.preview)
        return p, [str(f) for f in files], None
    except VoxfaceError as e:
        return p, None, _failure(p, e)
    except Exception as e:  # noqa: BLE001
        return p, None, f"{p}: {type(e).__name__}: {e}"


def _mesh_and_write_faces(faces: tuple, job: _BatchJob) -> list[tuple[Path, list[str] | None, str | None]]:
    """:func:`_mesh_and_write` for each face of one photo (``all_faces``; ``faces`` in face order),
    last to first: face 0, whose mesh is what marks the photo done (:func:`_mesh_path`), is written
    after the others, so a process stopped between two faces leaves the photo to be redone. The
    results in face order."""
    return [_mesh_and_write(item, job) for item in faces[::-1]][::-1]


def _face_results(result: Any) -> list[tuple[Path, list[str] | None, str | None]]:
    """The per-face results of a write task: :func:`_mesh_and_write`'s one, or
    :func:`_mesh_and_write_faces`' list."""
    return result if isinstance(result, list) else [result]


def _init_mesh_process() -> None:
    import signal

    from .data.workers import die_with_parent, limit_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops feeding, these finish their faces
    # SIGTERM stops the process (a broken pool terminates its processes with it); never a handler a
    # parent had when it started this one
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    limit_threads(1)


def _start_mesh_processes(processes: int) -> Any:
    """``processes`` spawned processes that mesh and write faces (:func:`_mesh_and_write`) for a
    network on an accelerator. Spawned, not forked: a process that holds a CUDA context must not
    fork. Each one imports the meshing modules once (about a second), so they pay off on long
    batches only (see :func:`reconstruct_files`)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"), initializer=_init_mesh_process)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ctrl-C ignored while a batch's pipeline shuts down (in the main thread; elsewhere Python
    delivers no signal): the faces being written finish whole, partial writes are removed and what
    was written goes on record. A second Ctrl-C there skipped that, and a third, once the command
    had exited, printed a traceback from Python's wait for the pipeline's threads. A second SIGTERM
    (the command turns SIGTERM into an interrupt) is ignored there too: one cut the pool's shutdown
    short, summary.json was written while the pipeline processes went on writing faces, and the
    command never exited (it waited on them at exit)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous)


def _stream(model: "VoxFace", todo: Sequence[tuple[Path, str]], job: _BatchJob, workers: int,
            summary: BatchSummary, bar: Any = None, mesh_processes: int = 0) -> None:
    """The in-process pipeline of :func:`reconstruct_files` over ``todo`` ``[(path, stem)]``:
    ``workers`` reader threads ahead of the network, ``workers`` writer threads behind it, or with
    ``mesh_processes`` that many processes meshing and writing (an accelerator's pipeline: meshing
    holds the GIL, so threads of one process mesh on one core)."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import torch

    batch_size, threshold = job.batch_size, job.threshold
    size = model.image_size

    def load(item: tuple[Path, str]):
        p, stem = item
        try:
            crops = prepare_crops(p, size, detect=job.detect, all_faces=job.all_faces, source=str(p),
                                  skin_check=job.skin_check, scan_size=job.scan_size)
            # the bytes' digest summary.json records, while they are fresh in the page cache and beside
            # the network: at the end, thousands of photos were read again with Ctrl-C held off
            if (d := _digest(p)) is not None:
                summary.digests[str(p)] = d
            return p, stem, crops, None
        except VoxfaceError as e:
            return p, stem, None, str(e)
        except Exception as e:  # noqa: BLE001 - a batch reports every failure and goes on
            return p, stem, None, f"{p}: {type(e).__name__}: {e}"

    pending: list = []  # (path, stem, crop, box)
    writes: deque = deque()  # (path, stem, write future), oldest first
    collected: set[int] = set()  # id() of the write futures on record (an interrupt may leave one queued)
    broken: list[str] = []  # stems whose mesh process died: maybe mid-write
    # meshes waiting to be written: two batches at the model's grid; fewer at a finer one, whose
    # logits are (R_f / R)^3 times bigger (a 256^3 grid is 64 MiB)
    scale = job.resolution // model.config.decoder.resolution
    backlog = max(2 * batch_size, 2 * workers) if scale == 1 else max(workers, 2 * batch_size // scale ** 2)
    # CPU network: nothing else runs while it does (see reconstruct_files), so the photos of the
    # next batch are read after it, while this batch is meshed; otherwise reading runs on, two batches ahead
    alone = _network_on_cpu(model)
    ahead = batch_size + workers if alone else 2 * batch_size + workers
    items = iter(todo)
    window: deque = deque()  # load futures, in input order

    def read_ahead(reader: ThreadPoolExecutor) -> None:
        while len(window) < ahead:
            nxt = next(items, None)
            if nxt is None:
                return
            window.append(reader.submit(load, nxt))

    def drain(limit: int) -> None:
        """Collect finished writes; block on the oldest while more than ``limit`` are pending."""
        while writes and (writes[0][2].done() or len(writes) > limit):
            p, stems, fut = writes[0]  # taken off once on record: an interrupt meanwhile leaves it to the finally
            try:
                results = _face_results(fut.result())
            except BrokenProcessPool:
                results = [(p, None, f"{p}: not reconstructed: a mesh process stopped (killed, or out of memory?)")]
                broken.extend(stems)
            for result in results:
                _collect(result, summary, bar)
            collected.add(id(fut))
            writes.popleft()

    def flush(reader: ThreadPoolExecutor, writer: Any) -> None:
        if not pending:
            return
        drain(backlog)  # bounded backlog: wait for the writers rather than queue without end
        batch = crop_batch([c for _, _, c, _ in pending], model.device)
        with torch.inference_mode():
            lat = model.encode(batch)
        check_encoded(lat)
        cpu_lat = lat.to("cpu")
        last = {p: k for k, (p, _, _, _) in enumerate(pending)}  # a photo's last face (all_faces: several)
        faces: list[tuple] = []  # the faces of the photo being decoded, in face order
        # the network ran on the whole batch; its fine grids (a 256^3 one is 64 MiB) are made a group
        # at a time and meshed or handed to the writers before the next group's: a batch of 16 at
        # 256^3 held 16 of them at once (1 GiB, per pipeline process)
        step = fine_group(model, job.resolution, len(pending))
        for g in range(0, len(pending), step):
            if g:
                drain(backlog)  # the writers hold the earlier groups' grids: bounded as between batches
            logits, grid, _ = decode_at(model, lat.z_id[g : g + step], lat.z_exp[g : g + step], job.resolution,
                                        threshold=threshold, upsample=job.upsample)
            if alone and g + step >= len(pending):
                read_ahead(reader)  # the next batch loads while this one's last faces are meshed
            for k in range(g, g + len(logits)):
                p, stem, crop, box = pending[k]
                meshed = _mesh_one(p, logits[k - g], grid, job) if alone else None  # else in the writer
                faces.append((p, stem, crop, box, cpu_lat[k], logits[k - g], grid, meshed))
                if k < last[p]:
                    continue
                # one task a photo: its faces are written last to first, so that the face --skip-existing
                # looks for (<stem>_0) is there only once the others are (a run killed between two faces
                # of a group photo left <stem>_0 alone, and a resume skipped the photo as done)
                task = (_mesh_and_write, faces[0]) if len(faces) == 1 else (_mesh_and_write_faces, tuple(faces))
                try:
                    fut = writer.submit(*task, job)
                except BrokenProcessPool:  # a mesh process died earlier: the pool takes no more work
                    fut = Future()
                    fut.set_exception(BrokenProcessPool())
                writes.append((p, [f[1] for f in faces], fut))
                faces = []
            del logits  # not alive beside the next group's
        pending.clear()

    writer = _start_mesh_processes(mesh_processes) if mesh_processes > 1 else ThreadPoolExecutor(workers)
    reader = ThreadPoolExecutor(workers)
    try:
        read_ahead(reader)
        while window:
            p, stem, crops, err = window.popleft().result()
            if err is not None:
                summary.failed[str(p)] = err
                if bar is not None:
                    bar.update(1)
            else:
                for k, (crop, box) in enumerate(crops):
                    pending.append((p, f"{stem}_{k}" if job.all_faces else stem, crop, box))
                if len(pending) >= batch_size:
                    flush(reader, writer)
            if not alone or not window:  # alone: flush reads ahead, unless failures emptied the window first
                read_ahead(reader)
            drain(len(writes))  # collect what is done, without waiting
        flush(reader, writer)
        drain(0)
    finally:
        with _sigint_deferred():  # a second Ctrl-C here left temporary files and a traceback at exit
            # On an interrupt the faces not started are cancelled and the ones being written finish whole
            # (after drain(0) nothing is left to cancel). A broken pool fails its futures *before* it
            # terminates its processes: only once shut down has every process stopped, and what the
            # killed ones were writing can go.
            reader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
            for p, stems, fut in writes:  # left after an interrupt: the faces written meanwhile go on record too
                if id(fut) not in collected and fut.done() and not fut.cancelled() and fut.exception() is None:
                    for result in _face_results(fut.result()):
                        _collect(result, summary, bar)
            _remove_partial_writes(job.out, broken)


# ------------------------------------------------------------------ pipeline processes (CPU)

_pipeline: dict[str, Any] = {}  # a pipeline process's model


def _init_pipeline(model: "VoxFace", threads: int) -> None:
    import signal

    from .data.workers import die_with_parent, limit_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it cancels, these finish their batch
    # SIGTERM stops the process: a broken pool terminates its processes with it, and the handler the
    # command installed (inherited through the fork) would turn it into an interrupt of the batch. The
    # faces it had finished are on disk whole: reconstruct_files puts them on record (_written_since).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    limit_threads(threads)
    _pipeline["model"] = model


def _pipeline_task(todo: list[tuple[Path, str]], job: _BatchJob) -> BatchSummary:
    """One batch of inputs, start to finish, in a pipeline process."""
    summary = BatchSummary()
    _stream(_pipeline["model"], todo, job, 2, summary)
    return summary


def _start_pipelines(model: "VoxFace", processes: int) -> Any:
    """``processes`` pipeline processes, the cores split between them, each holding ``model``."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform.startswith("linux") else "spawn"
    if method == "fork":  # forked processes inherit the meshing modules instead of each importing them
        from .device import release_freed_memory
        from .mesh import import_backends

        import_backends()
        release_freed_memory()  # children then map fresh pages instead of copying the parent's free ones
    threads = max(1, torch.get_num_threads() // processes)
    pool = ProcessPoolExecutor(processes, mp_context=mp.get_context(method), initializer=_init_pipeline,
                               initargs=(model, threads))
    pool.submit(int).result()  # forks them all now, while this process has no other thread
    return pool


def _run_pipelines(pool: Any, processes: int, todo: Sequence[tuple[Path, str]], job: _BatchJob,
                   summary: BatchSummary, bar: Any) -> None:
    """Hand ``todo`` to the pipeline processes a batch at a time (at most two batches queued per
    process), merge their summaries in input order, and shut the pool down (on an interrupt: the
    batches not started are cancelled, the running ones finish, each file written whole)."""
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    chunks = [list(todo[i : i + job.batch_size]) for i in range(0, len(todo), job.batch_size)]
    parts: list[BatchSummary | None] = [None] * len(chunks)
    queued: deque = deque()
    nxt = 0
    broken: str | None = None
    try:
        while nxt < len(chunks) or queued:
            while broken is None and nxt < len(chunks) and len(queued) < 2 * processes:
                queued.append((nxt, pool.submit(_pipeline_task, chunks[nxt], job)))
                nxt += 1
            if not queued:
                break
            k, fut = queued[0]  # left queued while waited on: an interrupt's handler below collects it too
            try:
                parts[k] = fut.result()
            except BrokenProcessPool:
                broken = "a pipeline process stopped (killed, or out of memory?)"
            except Exception as e:  # noqa: BLE001 - an unexpected error fails its batch, the rest goes on
                parts[k] = BatchSummary(failed={str(p): f"{p}: {type(e).__name__}: {e}" for p, _ in chunks[k]})
            if parts[k] is None:
                parts[k] = BatchSummary(failed={str(p): f"{p}: not reconstructed: {broken}" for p, _ in chunks[k]})
            queued.popleft()
            if bar is not None:
                bar.update(parts[k].faces + len(parts[k].failed))
        for k in range(nxt, len(chunks)):  # never started: the pool broke first
            parts[k] = BatchSummary(failed={str(p): f"{p}: not reconstructed: {broken}" for p, _ in chunks[k]})
    except BaseException:  # an interrupt: what finished, also while the running batches end, is on record
        with _sigint_deferred():
            pool.shutdown(wait=True, cancel_futures=True)
            for k, fut in queued:
                if parts[k] is None and fut.done() and not fut.cancelled() and fut.exception() is None:
                    parts[k] = fut.result()
            _merge(summary, [part for part in parts if part is not None])
        raise
    pool.shutdown(wait=True)
    if broken is not None:  # the pool killed the other processes too, maybe mid-write: their temporary files go
        _remove_partial_writes(job.out, (stem for part, chunk in zip(parts, chunks) for p, stem in chunk
                                         if str(p) in part.failed))
    _merge(summary, parts)


def _merge(summary: BatchSummary, parts: Sequence[BatchSummary]) -> None:
    for part in parts:
        summary.ok.update(part.ok)
        summary.failed.update(part.failed)
        summary.faces += part.faces
        summary.digests.update(part.digests)


def _remove_partial_writes(out: Path, stems: str | Iterable[str], *, stale: Iterable[str] = (),
                           before: float | None = None) -> None:
    """Remove the hidden temporary files (:func:`voxface.mesh.atomic_open`) that a process killed
    mid-write left for the faces of ``stems`` (one stem or several; ``.<stem>.*.tmp`` and, with
    ``all_faces``, ``.<stem>_*.tmp``), and those of the faces of ``stale`` last modified before
    ``before`` (a ``time.time()``: an earlier run's, killed mid-write; a run writing now has newer
    ones). The folder is listed once, whatever the number of stems (an interrupted batch of
    thousands of inputs removes theirs in one pass, not one listing each). Call it only once no
    process of this run writes into ``out``: the finished outputs are never touched."""
    stems = {stems} if isinstance(stems, str) else set(stems)
    old = set(stale) if before is not None else set()
    if not (stems or old):
        return
    try:
        names = os.listdir(out)
    except OSError:
        return

    def of(body: str, which: set[str]) -> bool:
        return any(c in "._" and body[:i] in which for i, c in enumerate(body))

    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        body = name[1:-4]  # ".<stem>.<rest>.tmp" or ".<stem>_<rest>.tmp": <stem> then "." or "_"
        if of(body, stems) or (of(body, old) and _modified_before(out / name, before)):
            (out / name).unlink(missing_ok=True)


def _modified_before(path: Path, before: float | None) -> bool:
    """Whether ``path`` was last modified before ``before`` (a ``time.time()``); False if it is gone."""
    try:
        return before is not None and path.stat().st_mtime < before
    except OSError:
        return False


def _network_on_cpu(model: "VoxFace") -> bool:
    """Whether the network runs on the CPU cores, so that :func:`reconstruct_files` runs it alone."""
    return model.device.type == "cpu"


def _collect(result, summary: BatchSummary, bar) -> None:
    p, files, err = result
    if err is not None:
        summary.failed[str(p)] = err
    else:
        summary.ok.setdefault(str(p), []).extend(files)
        summary.faces += 1
    if bar is not None:
        bar.update(1)
