"""Real training data: a folder of face crops with ground-truth meshes or occupancy grids.

Layout (one flat folder, or ``train/`` and ``val/`` sub-folders of that form; see
``docs/real_data.md``)::

    ROOT/
        anna_01.png          the crop (.png, .jpg or .jpeg), square, framed as voxface.crop says
        anna_01.ply          ground truth: a closed mesh (.ply or .obj) in canonical millimetres ...
        anna_01.json         ... optional: pose, person id, mesh_to_canonical, coefficients
        anna_01.mask.png     optional: head silhouette of the crop (non-zero = head)
        ben_07.jpg
        ben_07.npz           ... or an occupancy grid on the canonical grid (key ``occupancy``)

Files are matched by stem (exactly, in Unicode NFC: a name a Mac wrote decomposed matches) and
suffix (in any case: ``.PLY``, ``.Npz``, ``.JSON`` and ``.MASK.PNG`` count). A broken symbolic
link named like one of these files is a :class:`DataError`, as is a crop directly in ``ROOT``
beside ``train/`` (it would be in neither split), and a ``val/`` folder without ``train/``; other files beside the split folders are listed
as unused, and so are sub-folders (samples are looked for in none but ``train/`` and ``val/``). A sample
without a JSON ``person`` is its own person, its stem in NFC.

Ground truth of sample ``<stem>`` (the first that fits is used):

* ``<stem>.npz`` with ``occupancy``: ``(R, R, R)`` uint8/bool in the ``(D, H, W) = (z, y, x)``
  layout of :mod:`voxface.frame`, or bit-packed ``(ceil(R^3 / 8),)`` uint8 as
  :func:`voxface.occupancy.pack_occupancy` writes; an empty array, a grid with no occupied cell
  or one with occupied cells on the top of the cube or on a side above its lowest quarter (a head
  cut off; a neck and shoulders may leave through the bottom and the sides' lowest quarter) is a
  :class:`DataError`. Used when ``R`` and the grid's frame (``frame`` in the JSON or
  ``side_mm`` / ``center_mm`` in the npz, when given) equal the model's. Optional ``points`` /
  ``normals`` ``(N, 3)`` are surface samples (canonical mm).
* ``<stem>.ply`` or ``<stem>.obj``: a closed (watertight) surface in canonical millimetres, or in
  any units with ``mesh_to_canonical`` (a 4x4 or 3x4 matrix) in the JSON. It is voxelised with
  the exact scanline occupancy of the synthetic data (:func:`voxface.occupancy.occupancy_grid`),
  as the union of its closed parts (eyeballs or teeth inside the head, an ear overlapping it:
  :func:`union_occupancy`);
  holes of three or four edges are filled with trimesh, a mesh that stays open, or that the grid
  cuts off (it reaches the top of the cube, or a side above its lowest quarter: a neck and shoulders may leave), is a
  :class:`DataError`. Results are
  cached under ``$VOXFACE_CACHE/folder`` (``~/.cache/voxface/folder``) or ``cache_dir``, keyed by
  the file's content and the grid, never in the data folder; its surface points (``points > 0``)
  are drawn with a seed of that key, so they are the same whatever the sample's name.

``<stem>.json`` (all keys optional, a ``null`` value as the key absent; other keys are ignored,
so ``voxface data export`` output is a valid folder):

* ``rotation`` (3x3, canonical -> OpenCV camera, or its 6D form: the first two columns; one that
  turns the face away from the camera, ``rotation[2][2] > 0.2``, as OpenGL axes and a mirrored crop do, is refused),
  ``scale`` and ``translation`` (2,): the :class:`voxface.models.Pose` of the crop. Either every
  sample has a pose or none has (then the items have no pose fields and the pose loss is skipped).
* ``person``: an id string (compared in Unicode NFC, as stems); samples of one person form the
  identity pairs of the block layout. Without it every sample is its own person (:func:`pairing_problem` says when no person has two
  samples: then every identity pair is a crop with itself).
* ``id_coeffs`` / ``exp_coeffs``: passed through when every sample has both (else unused, and a
  ``UserWarning`` names a sample without them); samples that have them must agree on their
  lengths (else a :class:`DataError`).
* ``mesh_to_canonical``: see above.

Items follow :mod:`voxface.data`'s layout with these differences: there is **no** ``occ_swap``
(the shape of a person with another person's expression is unknown), so configs must set
``train.loss.swap: 0``; ``id_coeffs`` / ``exp_coeffs`` are absent unless every JSON has them (the
trainer then builds no coefficient heads, the ``coeff`` term is off); pose fields are absent when
no sample has a pose (the ``pose`` term is off). ``mask`` is ``<stem>.mask.png`` (square, as its
crop; non-zero = head, or its alpha when it has transparency; turned by its EXIF orientation and
resized to the crop size, as the crop), else the ground-truth occupancy projected with the pose, else 1
everywhere (unknown). With ``points > 0`` items also hold ``points`` / ``normals`` ``(points, 3)``
float32 sampled on the surface.

Blocks: the samples of each person are paired (``(a, b), (c, d), ...``; an odd one out is paired
with the person's first sample, a person with one sample with itself); two consecutive pairs make
a block of 4, a last odd pair is completed with the first pair. So ``index ^ 1`` is always the same
person, as :class:`voxface.data.BlockSampler` and the identity-consistency loss expect; some
samples appear twice per epoch.

Splits: with ``ROOT/train`` and ``ROOT/val`` folders those are the splits; otherwise persons are
assigned to ``val`` by a hash of ``(split_seed, person)`` with probability ``val_fraction`` (at
least one person when there are two or more), so a person is never in both splits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ImageError, VoxfaceError
from ..frame import HEAD_RMS_RADIUS_MM, Grid
from ..occupancy import occupancy_grid, pack_occupancy, unpack_occupancy
from . import BLOCK

__all__ = ["FolderDataConfig", "FolderDataset", "FolderSample", "scan_folder", "fit_pose",
           "canonical_similarity", "pairing_problem", "IMAGE_SUFFIXES", "MESH_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MESH_SUFFIXES = (".ply", ".obj")
MASK_SUFFIX = ".mask"  # <stem>.mask.png
#: suffixes of the files a sample is made of (a broken link to one of them is an error, not skipped)
_DATA_SUFFIXES = IMAGE_SUFFIXES + MESH_SUFFIXES + (".npz", ".json")
#: mesh formats scans come in that are not read (trimesh converts them): named when a crop has one
_OTHER_MESH_SUFFIXES = (".stl", ".off", ".glb", ".gltf", ".3mf", ".dae", ".wrl")
#: bump when the voxelisation or the cached content changes (2: the union of a mesh's closed parts;
#: 3: the nonzero rule for consistently wound meshes, so a surface that overlaps itself stays solid there)
CACHE_FORMAT = 3
#: a mesh whose RMS radius about its centroid is outside this range (mm) is not in canonical mm
_RMS_RANGE_MM = (20.0, 400.0)
#: units a scan comes in (millimetres per unit), named when a mesh's size matches a head in one of them
_UNITS_MM = (("metres", 1000.0), ("centimetres", 10.0), ("inches", 25.4))
#: a rotation whose [2][2] exceeds this turns the face more than about 100 degrees from the camera (a
#: profile is 0): no face crop shows that, but a rotation in OpenGL camera axes does (frontal: +1)
_MAX_AWAY = 0.2
#: a pose beyond these (crop half-widths) is in pixels: a framed head has scale ~0.8, |translation| < 0.5
_MAX_SCALE, _MAX_TRANSLATION = 8.0, 4.0


@dataclass
class FolderDataConfig:
    """The ``data:`` section for ``kind: folder`` (see the module docstring).

    ``num_train`` / ``num_val`` cap the split lengths (None: all); ``points`` surface samples per
    item (0: none); ``prepare`` voxelises every mesh the split's items draw (``num_train`` /
    ``num_val`` leave out the rest) and reads their crops and masks when the dataset is built (so a
    bad file fails at once, with a progress bar) instead of on first use.
    """

    kind: str = "folder"
    root: str = ""
    path: str = ""  # alias of root (root wins), so a config inheriting a cache config only sets root
    val_fraction: float = 0.1
    split_seed: int = 0
    num_train: int | None = None
    num_val: int | None = None
    points: int = 0
    cache_dir: str | None = None
    fill_holes: bool = True
    prepare: bool = True


@dataclass
class FolderSample:
    """One sample of a folder, as found by :func:`scan_folder` (paths only; nothing decoded)."""

    stem: str
    image: Path
    mesh: Path | None = None
    npz: Path | None = None
    json: Path | None = None
    mask: Path | None = None
    person: str = ""
    rotation: np.ndarray | None = None  # (3, 3) float64
    scale: float | None = None
    translation: np.ndarray | None = None  # (2,)
    mesh_to_canonical: np.ndarray | None = None  # (4, 4)
    id_coeffs: np.ndarray | None = None
    exp_coeffs: np.ndarray | None = None
    grid_frame: dict | None = None  # the npz grid's frame, from the JSON's "frame"
    person_given: bool = False  # whether the JSON names the person (else ``person`` is the stem)

    @property
    def has_pose(self) -> bool:
        return self.rotation is not None


# ------------------------------------------------------------------------------ scanning


def _floats(value: Any, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} is not a list of numbers", path) from None
    if a.shape != shape and not (len(shape) == 1 and a.size == shape[0]):
        raise DataError(f"{what} has shape {list(a.shape)}, expected {list(shape)}", path)
    if not np.all(np.isfinite(a)):
        raise DataError(f"{what} holds non-finite numbers", path)
    return a.reshape(shape)


def _rotation(value: Any, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("rotation is not a list of numbers", path) from None
    if arr.shape == (3, 2):  # the first two columns written as a 3x2 matrix: read column by column
        value = arr.T.reshape(-1).tolist()
    elif arr.shape == (2, 3):  # the first two rows (a weak-perspective projection) or two columns?
        raise DataError("rotation is a 2x3 matrix, which could be its first two rows or its first two columns; "
                        "give the 3x3, or the 6D form (the first two columns) as 6 numbers (column 0, then "
                        "column 1) or as a 3x2 matrix", path)
    if arr.size == 6:
        d6 = _floats(value, (6,), "rotation (6D)", path)
        a1, a2 = d6[:3], d6[3:]
        if np.linalg.norm(a1) < 1e-8 or np.linalg.norm(np.cross(a1, a2)) < 1e-8:
            raise DataError("rotation (6D) has degenerate columns", path)
        b1 = a1 / np.linalg.norm(a1)
        b2 = a2 - (b1 @ a2) * b1
        b2 /= np.linalg.norm(b2)
        return np.stack([b1, b2, np.cross(b1, b2)], axis=1)
    r = _floats(value, (3, 3), "rotation", path)
    if np.abs(r @ r.T - np.eye(3)).max() > 1e-3 or np.linalg.det(r) < 0:
        raise DataError("rotation is not a rotation matrix (orthonormal, det +1)", path)
    u, _, vt = np.linalg.svd(r)  # remove rounding noise
    return u @ vt


def _read_json(s: FolderSample) -> None:
    path = s.json
    assert path is not None
    try:  # bytes: JSON is UTF-8 (or -16/-32) whatever the locale, with or without a BOM (Windows tools)
        meta = json.loads(path.read_bytes())
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror or e.__class__.__name__})", path) from None
    except ValueError as e:
        raise DataError(f"not valid JSON ({str(e).splitlines()[0]})", path) from None
    if not isinstance(meta, dict):
        raise DataError("must hold a JSON object", path)
    # null is an absent key (every key is optional; exporters write null for what they do not know):
    # "rotation": null was "rotation has shape [], expected [3, 3]", "person": null a refused person
    meta = {k: v for k, v in meta.items() if v is not None}
    pose_keys = [k for k in ("rotation", "scale", "translation") if k in meta]
    if pose_keys and len(pose_keys) != 3:
        missing = sorted({"rotation", "scale", "translation"} - set(pose_keys))
        raise DataError(f"a pose needs rotation, scale and translation; {missing} missing", path)
    if pose_keys:
        s.rotation = _rotation(meta["rotation"], path)
        if s.rotation[2, 2] > _MAX_AWAY and s.rotation[1, 1] < 0:  # away, yet upright (canonical y up -> image
            # up): x and z flipped, not y and z as OpenGL axes flip them; diag(1, -1, -1) turned it upside down
            raise DataError(
                f"rotation turns the face away from the camera (rotation[2][2] = {s.rotation[2, 2]:.3g}) yet keeps it "
                "upright: the crop is mirrored against the mesh (a selfie camera's photo, a flipped crop or 2D "
                "landmarks, or a scan in left-handed axes not given to canonical_similarity with its reflection); "
                "mirror the crop and its 2D landmarks back (or the scan's axes), then fit the pose again", path)
        if s.rotation[2, 2] > _MAX_AWAY:  # canonical +z (out of the face) along the camera's view: turned away
            raise DataError(
                f"rotation turns the face away from the camera (rotation[2][2] = {s.rotation[2, 2]:.3g}: the "
                "canonical z axis, out of the face, points into the scene), which no face crop shows: is it in "
                "OpenGL camera axes (y up, z backwards), or fitted to crop coordinates with y up? The camera "
                "frame is OpenCV (x right, y down, z forward; a frontal face has rotation diag(1, -1, -1)): "
                "multiply it by diag(1, -1, -1) from the left", path)
        sc = meta["scale"]
        if isinstance(sc, list) and len(sc) == 1:
            sc = sc[0]
        if isinstance(sc, bool) or not isinstance(sc, (int, float)) or not math.isfinite(sc) or sc <= 0:
            raise DataError(f"scale must be a positive number, got {sc!r}", path)
        s.scale = float(sc)
        s.translation = _floats(meta["translation"], (2,), "translation", path)
        if s.scale > _MAX_SCALE or np.abs(s.translation).max() > _MAX_TRANSLATION:  # pixels, not crop units
            raise DataError(f"scale {s.scale:.4g} / translation {s.translation.round(4).tolist()} look like pixels: "
                            "translation is in crop coordinates ([-1, 1], 0 = centre) and scale in crop half-widths "
                            "(about 0.8 for a crop framed as voxface.crop)", path)
    if "person" in meta:
        p = meta["person"]
        if isinstance(p, bool) or not isinstance(p, (str, int)) or str(p) == "":
            raise DataError(f"person must be a non-empty string, got {p!r}", path)
        # in NFC, as stems are matched: 'José' written decomposed (an id made from a file name a Mac listed)
        # and composed were two persons, their crops paired with themselves and free to fall in both splits
        s.person = unicodedata.normalize("NFC", str(p))
        s.person_given = True
    if "mesh_to_canonical" in meta:
        raw = meta["mesh_to_canonical"]
        rows = 3 if isinstance(raw, list) and len(raw) == 3 else 4
        t = _floats(raw, (rows, 4), "mesh_to_canonical", path)
        if rows == 3:
            t = np.vstack([t, [0, 0, 0, 1]])
        if abs(np.linalg.det(t[:3, :3])) < 1e-12 or np.abs(t[3] - [0, 0, 0, 1]).max() > 1e-9:
            transposed = (np.abs(t[3] - [0, 0, 0, 1]).max() > 1e-9  # the translation in the last row
                          and np.abs(t[:, 3] - [0, 0, 0, 1]).max() <= 1e-9)
            raise DataError("mesh_to_canonical must be an invertible affine 4x4 (last row 0 0 0 1)"
                            + ("; this one has its translation in the last row: it is transposed (column-major, as "
                               "OpenGL, three.js and glTF store matrices): give its transpose" if transposed else ""),
                            path)
        s.mesh_to_canonical = t
    for k in ("id_coeffs", "exp_coeffs"):
        if k in meta:
            v = meta[k]
            if not isinstance(v, list) or not v:
                raise DataError(f"{k} must be a non-empty list of numbers", path)
            setattr(s, k, _floats(v, (len(v),), k, path).astype(np.float32))
    if isinstance(meta.get("frame"), dict):
        s.grid_frame = meta["frame"]


def _list_dir(root: Path) -> list[Path]:
    """The visible files of ``root``, sorted. A broken symbolic link named like data (a crop, mesh,
    grid or JSON) is a :class:`DataError` naming it: skipping it would drop a sample silently."""
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"cannot list the folder ({e.strerror})", root) from None
    for p in entries:
        if p.suffix.lower() in _DATA_SUFFIXES and p.is_symlink() and not p.exists():
            try:
                target = os.readlink(p)
            except OSError:
                target = "?"
            raise DataError(f"is a broken symbolic link (its target {target} does not exist)", p)
    return [p for p in entries if p.is_file()]


def _sub_folders(root: Path, used: tuple[str, ...] = ()) -> list[Path]:
    """The visible sub-folders of ``root`` but ``used``, sorted: unused (samples are not looked for in
    them), so listed as such. A folder of samples beside the flat folder's own (``my-faces/batch2/``)
    or beside ``train/`` and ``val/`` (``test/``) was left out of training without a word."""
    try:
        return sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.name not in used and p.is_dir())
    except OSError:  # listed a moment ago by _list_dir
        return []


def _is_mask(p: Path) -> bool:
    """``<stem>.mask.png`` (any case of ``.mask`` and of the image suffix)."""
    return p.suffix.lower() in IMAGE_SUFFIXES and p.stem.lower().endswith(MASK_SUFFIX)


def _stem_key(stem: str) -> str:
    """``stem`` as files are matched by it: in Unicode NFC. macOS writes names decomposed (NFD), so a
    mesh copied from a Mac beside a crop written elsewhere (``José.ply`` as ``Jose\u0301``) was "no
    ground truth ... expected José.ply" with José.ply beside it."""
    return unicodedata.normalize("NFC", stem)


def _by_stem(files: list[Path]) -> dict[tuple[str, str], list[Path]]:
    """``(stem, lower-case suffix) -> files``; masks under ``(crop stem, ".mask")``. Stems match
    exactly (as :func:`_stem_key` writes them), suffixes in any case (``x.PLY``, ``x.Npz`` and
    ``x.JSON`` belong to crop ``x``)."""
    index: dict[tuple[str, str], list[Path]] = {}
    for p in files:
        key = ((_stem_key(p.stem[: -len(MASK_SUFFIX)]), MASK_SUFFIX) if _is_mask(p)
               else (_stem_key(p.stem), p.suffix.lower()))
        index.setdefault(key, []).append(p)
    return index


def _one(index: dict[tuple[str, str], list[Path]], stem: str, suffixes: tuple[str, ...], what: str,
         crop: Path) -> Path | None:
    """The single file of ``stem`` with one of ``suffixes``; two or more is a :class:`DataError`."""
    found = [p for suf in suffixes for p in index.get((stem, suf), [])]
    if len(found) > 1:
        raise DataError(f"more than one {what} for this crop: {[p.name for p in found]}", crop)
    return found[0] if found else None


def scan_folder(root: str | os.PathLike,
                problems: list[VoxfaceError] | None = None) -> tuple[list[FolderSample], list[Path]]:
    """The samples of one flat folder (sorted by stem, in NFC) and the files no sample uses, then the
    sub-folders (samples are not looked for in them).

    Reads the JSON files (cheap); images, meshes and grids are only checked to exist. Stems match
    exactly, suffixes in any case. Raises :class:`DataError` naming the file for anything
    malformed (also a broken symbolic link to a data file); with a ``problems`` list, a sample's
    error (no ground truth, two meshes, a bad JSON) is appended to it instead, the sample left out
    (its files neither used nor listed as unused) and every other crop still scanned, as
    :meth:`FolderDataset.prepare` does (``voxface data check-folder`` lists every bad sample).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("the data folder does not exist or is not a folder", root)
    files = _list_dir(root)
    index = _by_stem(files)
    used: set[Path] = set()
    samples: list[FolderSample] = []
    stems: dict[str, Path] = {}
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES or _is_mask(p):
            continue
        key = _stem_key(p.stem)
        try:
            samples.append(_scan_sample(p, key, index, stems))
        except DataError as e:
            if problems is None:
                raise
            problems.append(e)
            used.update(q for suf in _DATA_SUFFIXES + (MASK_SUFFIX,) + _OTHER_MESH_SUFFIXES  # the bad sample's files
                        for q in index.get((key, suf), []))
            continue
        s = samples[-1]
        used.update(x for x in (s.image, s.mesh, s.npz, s.json, s.mask) if x is not None)
    samples.sort(key=lambda s: _stem_key(s.stem))
    return samples, [p for p in files if p not in used] + _sub_folders(root)


def _scan_sample(p: Path, key: str, index: dict[tuple[str, str], list[Path]], stems: dict[str, Path]) -> FolderSample:
    """The sample of crop ``p`` (stem ``key`` in NFC) from the folder's ``index`` (:func:`_by_stem`);
    ``stems`` (NFC stem -> crop) is updated. A :class:`DataError` naming the file when it has no
    ground truth, two files of one kind or a bad JSON."""
    if key in stems:
        raise DataError(f"two crops share the stem {p.stem!r} ({stems[key].name} and {p.name})", p)
    stems[key] = p
    # the person (no JSON's) and the order in NFC, as stems are matched: a copy of the folder from a Mac,
    # its names decomposed, split its persons (a hash of the id) and ordered its samples otherwise
    s = FolderSample(stem=p.stem, image=p, person=key)
    s.mesh = _one(index, key, MESH_SUFFIXES, "mesh", p)
    s.npz = _one(index, key, (".npz",), "occupancy grid (.npz)", p)
    s.json = _one(index, key, (".json",), "JSON", p)
    s.mask = _one(index, key, (MASK_SUFFIX,), "mask", p)
    if s.mesh is None and s.npz is None:
        other = [q.name for suf in _OTHER_MESH_SUFFIXES for q in index.get((key, suf), [])]
        hint = (f"; {', '.join(other)} is beside it: convert it to .ply (e.g. trimesh.load(path, "
                "force='mesh').export(...))") if other else ""
        raise DataError(f"no ground truth for this crop: expected {p.stem}.ply, {p.stem}.obj or "
                        f"{p.stem}.npz beside it (any case of the suffix){hint}", p)
    if s.json is not None:
        _read_json(s)
    return s


# ----------------------------------------------------------------------------- geometry io


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0]}" if text else e.__class__.__name__


def load_closed_mesh(path: Path, transform: np.ndarray | None = None, fill_holes: bool = True):
    """A watertight ``trimesh.Trimesh`` in canonical mm from a PLY/OBJ file (``transform``:
    ``mesh_to_canonical``); vertices are merged and small holes filled; :class:`DataError` if the
    surface stays open or looks like it is not in millimetres."""
    import trimesh

    try:  # opened here: trimesh encodes a path as UTF-8, and a name that is not (caf\xe9.ply) failed
        with open(path, "rb") as fh:
            loaded = trimesh.load(fh, file_type=Path(path).suffix.lower().lstrip("."), force="mesh", process=False)
    except OSError as e:
        raise DataError(f"cannot read the mesh ({e.strerror or _first_line(e)})", path) from None
    except Exception as e:  # trimesh raises many kinds on malformed files
        raise DataError(f"cannot read the mesh ({_first_line(e)})", path) from None
    v = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    f = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64)
    if len(v) == 0 or len(f) == 0:
        raise DataError("the mesh has no triangles", path)
    if f.ndim != 2 or f.min() < 0 or f.max() >= len(v):  # trimesh's PLY reader passes the file's indices on:
        # one past the vertices was an IndexError traceback, a negative one silently the vertex counted from the end
        bad = int(f.min()) if f.size and f.min() < 0 else int(f.max()) if f.size else None
        raise DataError(f"a triangle names vertex {bad}, but the mesh has {len(v)} vertices (0 to {len(v) - 1}); "
                        "is the file cut short or malformed?", path)
    if not np.all(np.isfinite(v)):
        raise DataError("the mesh has non-finite vertex coordinates", path)
    if transform is not None:
        v = v @ transform[:3, :3].T + transform[:3, 3]
    mesh = trimesh.Trimesh(v, f, process=True)  # merges duplicated vertices (UV / normal seams)
    # a triangle given twice (a double-sided export: every triangle again with the opposite winding)
    # made a closed head "not closed" (each edge in 4 triangles), and two copies cancel each other
    # in the occupancy (even-odd, or opposite windings): keep the first copy of each. A triangle
    # naming one vertex twice (a sliver collapsed by an export or the merge) has no area and no
    # inside, but its edges made a closed head "not closed (2 boundary edges, 1 non-manifold)"
    f = mesh.faces
    keep = mesh.unique_faces() & (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    if not keep.any():
        raise DataError("the mesh has no triangles (each names one vertex twice)", path)
    if not keep.all():
        mesh.update_faces(keep)
    if not mesh.is_watertight and fill_holes:
        trimesh.repair.fill_holes(mesh)
    if not mesh.is_watertight:
        edges = mesh.edges_sorted
        unique, counts = np.unique(edges, axis=0, return_counts=True)
        open_edges = int((counts == 1).sum())
        # the connected parts (by shared vertices) that hold a boundary or non-manifold edge: a closed
        # head with open extras (eyelashes, hair cards, a sheet for the mouth) is told which
        label = trimesh.graph.connected_component_labels(edges, node_count=len(mesh.vertices))
        faces_per_part = np.bincount(label[mesh.faces[:, 0]], minlength=int(label.max()) + 1)
        opened = np.unique(label[unique[counts != 2, 0]])
        parts = int((faces_per_part > 0).sum())
        which = ""
        if parts > 1:
            which = (f"; {len(opened)} of its {parts} connected parts {'is' if len(opened) == 1 else 'are'} open "
                     f"(the largest {int(faces_per_part[opened].max())} of the {len(mesh.faces)} triangles)"
                     + (", so remove what is open if the head is closed without it" if len(opened) < parts else ""))
        raise DataError(
            f"the mesh is not closed ({open_edges} boundary edges, {int((counts > 2).sum())} non-manifold){which}; "
            "occupancy needs a watertight surface: close it (e.g. Poisson reconstruction) or give an .npz "
            "occupancy", path)
    c = mesh.vertices.mean(0)
    rms = float(np.sqrt(((mesh.vertices - c) ** 2).sum(1).mean()))
    if not _RMS_RANGE_MM[0] <= rms <= _RMS_RANGE_MM[1]:
        unit = next((name for name, mm in _UNITS_MM if abs(math.log(rms * mm / HEAD_RMS_RADIUS_MM)) < math.log(1.4)),
                    None)
        what, looks = "the mesh's RMS radius", f": it looks like {unit}" if unit else ""
        fits = "(voxface.data.folder.canonical_similarity(vertices, faces) fits the scale and centre)"
        if transform is None:
            todo = f"give mesh_to_canonical in the JSON {fits} or scale the mesh"
        else:  # the JSON's transform made it so: that is what to fix
            what, todo = what + " after the JSON's mesh_to_canonical", f"fix mesh_to_canonical {fits}"
        raise DataError(f"{what} is {rms:.4g}, not a head in canonical millimetres (about {HEAD_RMS_RADIUS_MM:g})"
                        f"{looks}; {todo}", path)
    return mesh


def union_occupancy(mesh: Any, grid: Grid) -> np.ndarray:
    """Occupancy ``(R, R, R)`` uint8 (``(D, H, W) = (z, y, x)``) of the union of the closed parts
    (connected components) of ``mesh`` (a watertight ``trimesh.Trimesh``, canonical mm).

    :func:`voxface.occupancy.occupancy_grid` applied to the whole surface carves a part inside
    another (eyeballs or teeth modelled inside the head) or overlapping it (an ear, hair) out of
    it under the even-odd rule, and under the nonzero rule where the parts are wound against each
    other: a hole where the head is solid. Parts whose bounding boxes are disjoint cannot overlap,
    so they share one pass (their union); only overlapping or nested parts take further passes (a
    head with two eyes: two). One part: one pass, as before.
    """
    if mesh.body_count <= 1:
        return occupancy_grid(mesh.vertices, mesh.faces, grid)
    parts = sorted(mesh.split(only_watertight=False), key=lambda p: -float(np.prod(p.extents)))
    groups: list[tuple[list[Any], list[np.ndarray]]] = []  # parts with pairwise disjoint boxes, their boxes
    for part in parts:
        lo, hi = part.bounds
        for members, boxes in groups:
            b = np.asarray(boxes)  # (n, 2, 3)
            if np.any((hi < b[:, 0]) | (lo > b[:, 1]), axis=1).all():
                members.append(part)
                boxes.append(part.bounds)
                break
        else:
            groups.append(([part], [part.bounds]))
    occ = np.zeros((grid.resolution,) * 3, np.uint8)
    for members, _ in groups:
        offsets = np.cumsum([0] + [len(m.vertices) for m in members[:-1]])
        v = np.concatenate([m.vertices for m in members])
        f = np.concatenate([m.faces + o for m, o in zip(members, offsets)])
        occ |= occupancy_grid(v, f, grid)
    return occ


#: the faces of the grid (``(D, H, W) = (z, y, x)`` index of their cells) a head must not reach:
#: occupied cells there mean the grid cut it off. The bottom (-y) face is not one: a neck may go on.
def _grid_faces(R: int) -> dict[str, tuple]:
    """The faces of an ``(R, R, R)`` grid (``(D, H, W) = (z, y, x)``) a head must not reach: the top,
    and the four sides above the grid's lowest quarter (where a neck and shoulders may leave)."""
    up = slice(R // 4, None)
    return {"top (+y)": (slice(None), -1), "front (+z)": (-1, up), "back (-z)": (0, up),
            "subject's left (+x)": (slice(None), up, -1), "subject's right (-x)": (slice(None), up, 0)}


def check_inside_grid(occ: np.ndarray, grid: Grid, path: Path) -> None:
    """A :class:`DataError` naming ``path`` when the occupancy ``(R, R, R)`` reaches the top of the
    grid, or a side above its lowest quarter: the head is not in canonical millimetres around the
    canonical origin (a scan in its scanner's coordinates, a wrong ``mesh_to_canonical``) and the
    grid cut it off. A neck may leave through the bottom, shoulders through the sides' lowest quarter
    (below the chin)."""
    cut = [name for name, index in _grid_faces(occ.shape[0]).items() if occ[index].any()]
    if cut:
        raise DataError(
            f"the head reaches the grid's {', '.join(cut)} face{'s' if len(cut) > 1 else ''}, so the grid cuts "
            f"it off ({grid.side_mm:g} mm cube centred at {[round(c, 3) for c in grid.center_mm]} mm): is it in "
            "canonical millimetres and axes (y up, z out of the face) and centred (mesh_to_canonical, e.g. "
            "canonical_similarity with the rotation to those axes)? Only a neck and "
            "shoulders may leave the grid, through its bottom and the lowest quarter of its sides", path)


def _frame_matches(grid: Grid, side: Any, center: Any) -> bool:
    """Whether the ``side`` and ``center`` given (either may be None: not stated) are ``grid``'s."""
    try:
        return ((side is None or abs(float(side) - grid.side_mm) < 1e-6)
                and (center is None or np.allclose(np.asarray(center, np.float64).reshape(3), grid.center_mm,
                                                   atol=1e-6)))
    except (TypeError, ValueError):
        return False


def read_npz(path: Path, grid: Grid, frame: dict | None = None) -> dict[str, np.ndarray] | None:
    """Occupancy (and optional points/normals) of ``path`` on ``grid``; ``None`` when the file is
    well-formed but was made for another grid (resolution or frame). An empty array or a grid with
    no occupied cell is a :class:`DataError` (it cannot be a head, and has no surface to sample)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/pickle/format errors
        raise DataError(f"cannot read the occupancy file ({_first_line(e)})", path) from None
    if "occupancy" not in arrays:
        raise DataError(f"no 'occupancy' array (found {sorted(arrays)})", path)
    occ = arrays["occupancy"]
    R = grid.resolution
    if occ.size == 0:
        raise DataError(f"occupancy is empty (shape {list(occ.shape)}); expected ({R}, {R}, {R}) or "
                        f"bit-packed ({(R ** 3 + 7) // 8},) uint8", path)
    if occ.ndim == 3:
        if occ.shape[0] != occ.shape[1] or occ.shape[1] != occ.shape[2]:
            raise DataError(f"occupancy has shape {list(occ.shape)}, expected a cube (R, R, R)", path)
        if occ.dtype != bool and not (np.issubdtype(occ.dtype, np.integer) and occ.min() >= 0 and occ.max() <= 1):
            got = (f"{occ.dtype} from {occ.min()} to {occ.max()}" if np.issubdtype(occ.dtype, np.integer)  # 0/255:
                   else str(occ.dtype))  # 'got uint8' named the type that was fine, not the values that were not
            raise DataError(f"occupancy must be bool or 0/1 integers (got {got}"
                            + ("; divide by 255" if got.endswith("to 255") and occ.min() == 0 else "") + ")", path)
        r_file = occ.shape[0]
    elif occ.ndim == 1 and occ.dtype == np.uint8:
        flat = round(occ.size ** (1 / 3))
        if flat ** 3 == occ.size and occ.max() == 1:  # a head's packed bytes hold 255s (8 cells in a row): this is
            # the grid flattened, not packed; read as packed it was a grid of twice the side whose every eighth
            # cell is set ('for another grid than the model's (32^3 ...)' of a 32^3 grid, or 'the head reaches
            # the grid's left face' of a model at twice the resolution)
            raise DataError(f"occupancy is a flat array of {occ.size} 0/1 values, a {flat}^3 grid flattened rather "
                            f"than bit-packed: save it as ({flat}, {flat}, {flat}) uint8 or bool, or pack it with "
                            "voxface.occupancy.pack_occupancy", path)
        r_file = round((occ.size * 8) ** (1 / 3))  # an odd R's R^3 bits end in a padded byte (pack_occupancy)
        if (r_file ** 3 + 7) // 8 != occ.size:
            raise DataError(f"packed occupancy of {occ.size} bytes is not a cube of bits", path)
    else:
        raise DataError(f"occupancy must be (R, R, R) or bit-packed uint8, got shape {list(occ.shape)} "
                        f"{occ.dtype}", path)
    if not occ.any():  # packed or not: no set bit
        raise DataError("occupancy has no occupied cell (all zeros): an empty grid is no head; "
                        "check how it was voxelised", path)
    side = arrays.get("side_mm", (frame or {}).get("side_mm"))
    center = arrays.get("center_mm", (frame or {}).get("center_mm"))
    if r_file != R or not _frame_matches(grid, side, center):  # one stated alone is checked too (it was not)
        return None
    out = {"occ": (occ.astype(np.uint8) if occ.ndim == 3 else unpack_occupancy(occ, R))}
    if "points" in arrays and "normals" in arrays:
        p, n = np.asarray(arrays["points"], np.float32), np.asarray(arrays["normals"], np.float32)
        if p.ndim == 2 and p.shape[1] == 3 and n.shape == p.shape and len(p):
            out["points"], out["normals"] = p, n
    return out


def _sample_surface(mesh: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    pts, fid = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return pts.astype(np.float32), mesh.face_normals[fid].astype(np.float32)


def _stable_seed(text: str) -> int:
    """A seed from ``text`` that is the same in every process and run (``hash`` is salted). File
    names that are not UTF-8 reach Python as lone surrogates (``caf\\udce9``): encoded as they
    are, not a ``UnicodeEncodeError``; a valid name's seed is unchanged."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()[:4], "little")


# ----------------------------------------------------------------------------- pose helpers


def fit_pose(canonical_xyz: np.ndarray, crop_xy: np.ndarray) -> dict[str, Any]:
    """The :class:`voxface.models.Pose` (weak perspective) that best maps canonical points to crop
    coordinates, by least squares: for converting fits or landmark annotations.

    Args:
        canonical_xyz: ``(N, 3)`` points in canonical mm (e.g. mesh vertices or 3D landmarks),
            ``N >= 4``, not coplanar.
        crop_xy: ``(N, 2)`` where they appear in the crop, in ``[-1, 1]`` crop coordinates (x
            right, y down; pixel ``p`` of an ``S`` px crop is ``(p + 0.5) / S * 2 - 1``).

    Returns:
        ``{"rotation": (3, 3) list, "scale": float, "translation": (2,) list}``, ready for the JSON.

    Raises:
        voxface.InputError: shapes that are not ``(N, 3)`` and ``(N, 2)``, fewer than 4 points,
            non-finite values, or coplanar canonical points.
    """
    from ..errors import InputError

    try:
        X = np.asarray(canonical_xyz, np.float64)
        u = np.asarray(crop_xy, np.float64)
    except (TypeError, ValueError):
        raise InputError("fit_pose: canonical_xyz and crop_xy must be arrays of numbers") from None
    if X.ndim != 2 or X.shape[1] != 3 or u.shape != (len(X), 2):  # was numpy's 'Incompatible dimensions'
        raise InputError(f"fit_pose: canonical_xyz must be (N, 3) and crop_xy (N, 2) for the same N points, got "
                         f"{list(X.shape)} and {list(u.shape)}")
    if len(X) < 4 or not (np.isfinite(X).all() and np.isfinite(u).all()):
        raise InputError(f"fit_pose: needs at least 4 points with finite coordinates (got {len(X)})")
    if np.linalg.matrix_rank(X - X.mean(0), tol=1e-6 * max(float(np.abs(X - X.mean(0)).max()), 1e-12)) < 3:
        raise InputError("fit_pose: the canonical points are coplanar (or collinear): the pose out of their plane "
                         "is unknown; use points off one plane (e.g. 3D landmarks of a face)")
    A = np.hstack([X, np.ones((len(X), 1))])
    sol, *_ = np.linalg.lstsq(A, u, rcond=None)  # (4, 2)
    M, t = sol[:3].T, sol[3]  # u = M X + t
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    r12 = U @ Vt  # closest pair of orthonormal rows
    r = np.vstack([r12, np.cross(r12[0], r12[1])])
    scale = float(S.mean() * HEAD_RMS_RADIUS_MM)
    return {"rotation": r.tolist(), "scale": scale, "translation": t.tolist()}


#: Area-weighted centroid (mm) and RMS radius (mm) of the ICT-FaceKit mean closed head in the
#: canonical frame (whose own normalisation is by *vertices*: the face's dense tessellation pulls
#: the vertex centroid 58 mm forwards and up of the area centroid). Measured with the ICT data
#: (tests/test_folder.py::test_area_statistics_of_ict_heads_match_the_constants); across 60 ICT
#: persons the centroid varies by sd 1.1 / 3.8 / 2.8 mm (x / y / z) and the radius by 1.3%.
ICT_AREA_CENTROID_MM = (0.0, -31.8, -49.3)
ICT_AREA_RMS_MM = 124.1


def _area_statistics(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """Area-weighted centroid and RMS radius about it of a triangle surface (its units)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]
    w = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    c = (tri.mean(1) * w[:, None]).sum(0) / w.sum()
    rms = float(np.sqrt(((((tri - c) ** 2).sum(2).mean(1)) * w).sum() / w.sum()))
    return c, rms


def canonical_similarity(vertices: np.ndarray, faces: np.ndarray | None = None,
                         rotation: np.ndarray | None = None, *, calibrated: bool = True) -> np.ndarray:
    """A 4x4 ``mesh_to_canonical`` (similarity) for a closed head scan.

    ``rotation`` takes the scan's axes to the canonical ones (x to the subject's left, y up, z out
    of the face; identity when already so). The canonical frame is defined on ICT-FaceKit heads by
    their *vertices* (centroid at the origin, RMS radius :data:`voxface.frame.HEAD_RMS_RADIUS_MM`),
    which a scan of another tessellation cannot reproduce. So:

    * with ``faces`` and ``calibrated`` (the default): the scan's *area-weighted* centroid and RMS
      radius (independent of its tessellation) are mapped to those of the ICT mean head in the
      canonical frame (:data:`ICT_AREA_CENTROID_MM`, :data:`ICT_AREA_RMS_MM`). For a closed head of
      the ICT heads' extent (face, skull, neck cut as ICT's) this lands within about 1-2% of scale
      and a few millimetres of the canonical frame (the spread of ICT persons themselves); a scan
      that stops elsewhere (no neck, hair) shifts it, the same way for every scan of that kind;
    * with ``faces`` and ``calibrated=False``: the area-weighted centroid goes to the origin and
      the area-weighted RMS radius to 88 mm (for shapes that are not heads: a head lands about 29%
      too small and 58 mm off);
    * without ``faces``: vertex-based, exactly as for ICT heads (right only for ICT's tessellation).

    Raises :class:`voxface.InputError` for vertices that are not ``(N, 3)``, faces that are not
    ``(F, 3)`` indices of them, and a ``rotation`` that is not orthonormal (a scale: the scale is
    fitted; a reflection, for a scan in left-handed axes, is accepted).
    """
    from ..errors import InputError

    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4 or not np.isfinite(v).all():
        raise InputError(f"canonical_similarity: vertices must be (N, 3) finite numbers, N >= 4, got shape "
                         f"{list(v.shape)}")
    if faces is not None:
        f = np.asarray(faces)
        if f.ndim != 2 or f.shape[1] != 3 or not len(f) or not np.issubdtype(f.dtype, np.integer) \
                or f.min() < 0 or f.max() >= len(v):
            raise InputError(f"canonical_similarity: faces must be (F, 3) vertex indices below {len(v)}, got shape "
                             f"{list(f.shape)} {f.dtype}")
    R = np.eye(3) if rotation is None else np.asarray(rotation, np.float64)
    if R.shape != (3, 3) or not np.isfinite(R).all() or np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
        # a scale (mm per unit given here) multiplied the one fitted to the head's size without a word
        raise InputError(f"canonical_similarity: rotation must be an orthonormal 3x3 matrix (the scan's axes to the "
                         f"canonical ones; the scale is fitted), got {np.round(R, 4).tolist()}")
    target = np.zeros(3)
    if faces is not None:
        c, rms = _area_statistics(v, faces)
        radius = HEAD_RMS_RADIUS_MM
        if calibrated:
            target, radius = np.asarray(ICT_AREA_CENTROID_MM, np.float64), ICT_AREA_RMS_MM
    else:
        c = v.mean(0)
        rms = float(np.sqrt(((v - c) ** 2).sum(1).mean()))
        radius = HEAD_RMS_RADIUS_MM
    k = radius / rms
    T = np.eye(4)
    T[:3, :3] = k * R
    T[:3, 3] = target - k * R @ c
    return T


def _read_mask(path: Path) -> np.ndarray:
    """``(H, W)`` bool: where the mask file ``path`` is non-zero, in any mode and bit depth (0/1 and
    0/255 masks alike). In a file with transparency that is used, the alpha channel is the mask (a
    cut-out); a lossy JPEG mask is read as at least half white (its compression noise makes black
    pixels near an outline non-zero). An EXIF orientation is applied, as to the crops
    (:func:`voxface.image.load_image`). Unreadable files are a :class:`DataError` naming ``path``."""
    from PIL import Image

    from ..image import _ORIENTATION, _orientation

    try:
        with Image.open(path) as im:
            method = _ORIENTATION.get(_orientation(im))  # a mask made from a phone's JPEG may keep its tag
            if im.mode == "P" or (im.mode in ("L", "RGB") and "transparency" in im.info):
                im = im.convert("RGBA")
            elif im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I", "F"):
                im = im.convert("RGB")
            a = np.asarray(im if method is None else im.transpose(method))
    except Exception as e:  # PIL raises many kinds on truncated or foreign files
        raise DataError(f"cannot read the mask ({_first_line(e)})", path) from None
    if a.ndim == 3:
        if a.shape[2] in (2, 4) and a[..., -1].min() < 255:  # transparency: a cut-out, alpha is the mask
            a = a[..., -1]
        else:
            a = a[..., :3 if a.shape[2] >= 3 else 1].max(axis=2)
    lossy = path.suffix.lower() in (".jpg", ".jpeg")
    return a >= 128 if lossy else a > 0


def _silhouette(occ: np.ndarray, grid: Grid, rotation: np.ndarray, scale: float, translation: np.ndarray,
                size: int) -> np.ndarray:
    """The occupancy projected into the crop with a weak-perspective pose, ``(S, S)`` uint8."""
    from scipy import ndimage

    idx = np.argwhere(occ)
    m = np.zeros((size, size), bool)
    if len(idx) == 0:
        return m.astype(np.uint8)
    xyz = grid.index_to_mm(idx)
    uv = scale * (xyz @ np.asarray(rotation).T)[:, :2] / HEAD_RMS_RADIUS_MM + translation
    px = np.floor((uv + 1) / 2 * size).astype(np.int64)
    ok = np.all((px >= 0) & (px < size), axis=1)
    m[px[ok, 1], px[ok, 0]] = True
    cell_px = scale * grid.voxel_size / HEAD_RMS_RADIUS_MM * size / 2
    r = int(math.ceil(0.5 * cell_px))
    if r > 0:  # grow cell centres by half a cell (a disc): about the true outline
        a = np.arange(-r, r + 1)
        m = ndimage.binary_dilation(m, np.hypot(*np.meshgrid(a, a)) <= 0.5 * cell_px + 0.5)
    return ndimage.binary_fill_holes(m).astype(np.uint8)


# ------------------------------------------------------------------------------- dataset


def _beside_split_folders(root: Path) -> list[Path]:
    """The files of a folder with ``train/`` beside its split folders, then its other sub-folders
    (returned: they are unused).
    A crop there is a :class:`DataError`: it would be left out of both splits without a word."""
    files = _list_dir(root)
    crops = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and not _is_mask(p)]
    if crops:
        more = f" (and {len(crops) - 1} more)" if len(crops) > 1 else ""
        raise DataError(f"a crop beside the train/ folder{more}: with train/ and val/ sub-folders only their "
                        "samples are used; move it (with its ground truth) into train/ or val/", crops[0])
    return files + _sub_folders(root, ("train", "val"))


def _contents(folders: list[Path]) -> str:
    """What ``folders`` hold, for an error that found no samples there (``"... holds ..."``)."""
    parts = []
    for d in folders:
        try:
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in d.iterdir() if not p.name.startswith("."))
        except OSError:
            entries = []
        shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} in all)" if len(entries) > 5 else "")
        parts.append(f"{d} holds {shown}" if entries else f"{d} is empty")
    return "; ".join(parts)


def _default_cache_dir() -> Path:
    from .ict import cache_dir

    return cache_dir() / "folder"


def _assign_val(persons: list[str], fraction: float, seed: int) -> set[str]:
    if fraction <= 0 or len(persons) < 2:
        return set()
    u = {p: _stable_seed(f"{seed}:{p}") / 2**32 for p in persons}
    val = {p for p in persons if u[p] < fraction}
    if not val:
        val = {min(persons, key=lambda p: u[p])}
    if len(val) == len(persons):
        val.discard(max(persons, key=lambda p: u[p]))
    return val


def pairing_problem(samples: list[FolderSample]) -> str | None:
    """Why the identity pairs of these samples (``index ^ 1``: the same person, see Blocks in the
    module docstring) hold no two crops of one person, or ``None`` when some person has two or more
    samples (or there are fewer than two samples).

    A sample whose JSON names no ``person`` is its own person (its stem). So in a folder where no
    sample names one, or where every person has a single sample, every crop is paired with itself:
    the identity-consistency term compares a crop's identity code with its own and learns nothing
    of identity, and an epoch draws each crop twice. The text says which case it is and what to do.
    """
    if len(samples) < 2:
        return None
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.person] = counts.get(s.person, 0) + 1
    if max(counts.values()) > 1:
        return None
    named = sum(s.person_given for s in samples)
    why = ("no sample names its person (\"person\" in its JSON)" if named == 0 else
           f"every person has a single sample ({named} of the {len(samples)} samples name their person)")
    return (f"{why}, so each crop is its own person and is paired with itself: the identity-consistency "
            "term gets no pair of two crops of one person, and an epoch draws each crop twice; give the crops "
            "of one person the same \"person\" id in their JSON")


def block_order(samples: list[FolderSample], persons: list[str]) -> list[int]:
    """Sample indices in the block layout of :mod:`voxface.data` (see the module docstring)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.person, []).append(i)
    pairs: list[tuple[int, int]] = []
    for p in persons:
        g = groups.get(p, [])
        for k in range(0, len(g), 2):
            pairs.append((g[k], g[k + 1] if k + 1 < len(g) else g[0]))
    if len(pairs) % 2:
        pairs.append(pairs[0])
    return [i for pr in pairs for i in pr]


class FolderDataset:
    """A folder of real crops with ground truth; items follow :mod:`voxface.data`'s layout
    (minus ``occ_swap``, see the module docstring).

    Args:
        root: the folder (flat, or with ``train/`` and ``val/`` sub-folders).
        resolution: occupancy grid resolution ``R`` (the model's decoder resolution).
        image_size: crop size ``S``; crops of another size are resized (Lanczos).
        frame: :class:`voxface.config.FrameConfig` of the grid (default: the canonical cube).
        split: ``"train"``, ``"val"`` or ``"all"``.
        val_fraction / split_seed: the person-level split of a flat folder.
        limit: cap on the length (rounded down to a multiple of 4).
        points: surface points/normals per item (0: none).
        cache_dir: where voxelised meshes are cached (default ``$VOXFACE_CACHE/folder``).
        fill_holes: let trimesh fill small holes of open meshes before giving up.
        prepare: voxelise every mesh the items draw now (errors surface at once; :meth:`prepare`).
        progress: a progress bar while preparing.
        problems: a list to append each bad sample's scanning error to (no ground truth, a bad JSON:
            :func:`scan_folder`), the sample left out, instead of raising the first.
    """

    def __init__(self, root: str | os.PathLike, resolution: int = 64, image_size: int = 128, frame: Any = None,
                 split: str = "train", *, val_fraction: float = 0.1, split_seed: int = 0,
                 limit: int | None = None, points: int = 0, cache_dir: str | os.PathLike | None = None,
                 fill_holes: bool = True, prepare: bool = False, progress: bool = False,
                 problems: list[VoxfaceError] | None = None):
        from ..config import FrameConfig
        from ..errors import InputError, check_integer

        if split not in ("train", "val", "all"):
            raise InputError(f"split {split!r}: use 'train', 'val' or 'all'")
        if not 0 <= float(val_fraction) < 1:  # 10 meant as percent held out every person but one
            raise InputError(f"val_fraction {val_fraction!r}: the share of persons held out for validation is "
                             "from 0 (none) to below 1 (e.g. 0.1 for 10%)")
        self.root = Path(root).expanduser()
        # (image_size 0 was a ZeroDivisionError at the first item, points -3 numpy's 'negative
        # dimensions' when sampling, resolution 2.5 truncated to 2 without a word)
        self.resolution = check_integer("resolution", resolution, 1)
        self.image_size = check_integer("image_size", image_size, 1)
        self.frame = frame or FrameConfig()
        self.grid = Grid.from_config(self.frame, self.resolution)
        self.split, self.points, self.fill_holes = split, check_integer("points", points, 0), bool(fill_holes)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else _default_cache_dir()
        if not self.root.is_dir():
            raise DataError("the data folder does not exist or is not a folder", self.root)
        samples, persons = self._scan(split, float(val_fraction), int(split_seed), problems)
        self._check_consistent(self._every)
        self.samples = samples
        self.persons = persons
        self._person_id = {p: i for i, p in enumerate(sorted({s.person for s in samples}))}
        order = block_order(samples, persons) if samples else []
        if limit is not None:
            what = "num_train" if split == "train" else "num_val" if split == "val" else "limit"
            if int(limit) < 0:  # order[:-4]: all but the last block, silently
                raise InputError(f"{what} {limit} must be >= 0 (null for all)")
            if int(limit) < BLOCK and (split != "val" or int(limit) > 0):  # no item: an IndexError later
                raise InputError(f"{what} {limit}: items come in blocks of {BLOCK}, so it keeps none of the "
                                 f"{split} split; give at least {BLOCK}, or null for all")
            order = order[: int(limit) - int(limit) % BLOCK]
        self.order = order
        self._keys: dict[str, str] = {}  # image path -> content key
        if prepare:
            self.prepare(progress)

    def _scan(self, split: str, val_fraction: float, split_seed: int,
              problems: list[VoxfaceError] | None = None) -> tuple[list[FolderSample], list[str]]:
        """The samples and persons of ``split`` (see Splits in the module docstring); sets
        :attr:`unused`. No sample for ``train`` or ``all`` is a :class:`DataError` saying what the
        folder holds (unless bad samples went to ``problems``: those say it)."""
        root = self.root
        known = len(problems) if problems is not None else 0
        if (root / "train").is_dir():
            names = {"train": ["train"], "val": ["val"], "all": ["train", "val"]}[split]
            dirs = [root / d for d in names if (root / d).is_dir()]
            self.unused: list[Path] = _beside_split_folders(root)
            samples: list[FolderSample] = []
            for d in dirs:
                s, u = scan_folder(d, problems)
                samples += s
                self.unused += u
            every = list(samples)  # the other split's samples too: pose and coefficients are per folder
            for d in (root / "train", root / "val"):
                if d not in dirs and d.is_dir():
                    every += scan_folder(d, problems)[0]
            persons = sorted({s.person for s in samples})
            hint = " in " + " and ".join(f"{d}/" for d in names)
        else:
            if (root / "val").is_dir():
                raise DataError("has a val/ folder but no train/ folder: split folders come as a pair (put the "
                                "training samples in train/), or put every sample directly in the folder and "
                                "voxface splits by person", root)
            samples, self.unused = scan_folder(root, problems)
            every = samples
            all_persons = sorted({s.person for s in samples})
            val = _assign_val(all_persons, val_fraction, split_seed)
            keep = {"train": set(all_persons) - val, "val": val, "all": set(all_persons)}[split]
            samples = [s for s in samples if s.person in keep]
            persons = sorted(keep)
            dirs, hint = [root], " directly in the folder, or in train/ and val/ sub-folders"
        # every sample of the folder, both splits: a pose or coefficients given to the samples of one
        # split only passed (the rule is per folder; `data check-folder` refused it), so the splits
        # disagreed on pose fields and coefficient heads
        self._every = every
        if not samples and split != "val" and (problems is None or len(problems) == known):
            raise DataError(f"no samples for the {split} split: expected crops ({'/'.join(IMAGE_SUFFIXES)}) each "
                            f"with a .ply/.obj/.npz of the same stem beside them{hint}; {_contents(dirs)}",
                            dirs[0] if len(dirs) == 1 else root)
        return samples, persons

    # ---- config
    @classmethod
    def from_config(cls, data_cfg: dict[str, Any], split: str, model_cfg: Any, *,
                    progress: bool = True) -> "FolderDataset":
        """The ``train`` or ``val`` split from a ``data:`` section (:class:`FolderDataConfig`);
        ``progress``: a bar while its meshes are voxelised (``prepare``)."""
        from ..config import from_dict, model_config

        cfg = from_dict(FolderDataConfig, data_cfg, "data")
        root = cfg.root or cfg.path
        if not root:
            from ..errors import ConfigError

            raise ConfigError("data.root: the folder of crops and ground truth is required for kind: folder")
        mcfg = model_config(model_cfg)
        from ..errors import ConfigError, InputError

        try:
            check = cls(root, mcfg.decoder.resolution, mcfg.encoder.image_size, mcfg.frame, split,
                        val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                        limit=cfg.num_train if split == "train" else cfg.num_val, points=cfg.points,
                        cache_dir=cfg.cache_dir, fill_holes=cfg.fill_holes, prepare=False)
        except InputError as e:  # the section's values (num_train, num_val, val_fraction): data.<key>, as a
            raise ConfigError(f"data.{e}") from None  # ConfigError (the trainer names the config file)
        if cfg.prepare:
            check.prepare(progress=progress)
        return check

    @staticmethod
    def _check_consistent(samples: list[FolderSample]) -> None:
        posed = [s for s in samples if s.has_pose]
        if posed and len(posed) != len(samples):
            bad = next(s for s in samples if not s.has_pose)
            raise DataError(f"no pose (rotation, scale, translation) for this crop, but {len(posed)} other "
                            "samples have one; give every sample a pose or none", bad.json or bad.image)
        for k in ("id_coeffs", "exp_coeffs"):  # one length per folder (else they were dropped without a word)
            have = [s for s in samples if getattr(s, k) is not None]
            odd = next((s for s in have if len(getattr(s, k)) != len(getattr(have[0], k))), None)
            if odd is not None:
                raise DataError(f"{k} has {len(getattr(odd, k))} numbers where {have[0].json.name} has "
                                f"{len(getattr(have[0], k))}; every sample's {k} must have one length", odd.json)
        # coefficients are used only when every sample has both: say so when some are given but not used
        # (they were dropped without a word: one JSON short of them turned the coeff loss off)
        given = [k for k in ("id_coeffs", "exp_coeffs") if any(getattr(s, k) is not None for s in samples)]
        bad = next((s for s in samples if s.id_coeffs is None or s.exp_coeffs is None), None) if given else None
        if bad is not None:
            import warnings

            absent = " or ".join(k for k in ("id_coeffs", "exp_coeffs") if getattr(bad, k) is None)
            warnings.warn(str(DataError(
                f"no {absent} (samples here have {' and '.join(given)}): coefficients are used only when every "
                "sample has both id_coeffs and exp_coeffs, so none are (no coefficient heads are built, the coeff "
                "loss is off)", bad.json or bad.image)), UserWarning, stacklevel=2)  # one place: once a file

    # cached: __getitem__ reads both for every item, and a pass over every sample made an epoch
    # quadratic in the folder's size (22 ms an item at 20,000 samples)
    @functools.cached_property
    def has_pose(self) -> bool:
        """Whether every sample has a pose (then items hold ``rotation``, ``scale``, ``translation``)."""
        return bool(self.samples) and all(s.has_pose for s in self.samples)

    @functools.cached_property
    def coeff_dims(self) -> tuple[int, int] | None:
        """``(N_id, N_exp)`` when every sample of the folder (both splits) has coefficients of the same
        lengths, else None."""
        if not self.samples:
            return None
        dims = {(None if s.id_coeffs is None else len(s.id_coeffs),  # over both splits, as the warning says
                 None if s.exp_coeffs is None else len(s.exp_coeffs)) for s in self._every}
        if len(dims) == 1:
            d = dims.pop()
            if d[0] and d[1]:
                return d  # type: ignore[return-value]
        return None

    @functools.cached_property
    def pairing_warning(self) -> str | None:
        """:func:`pairing_problem` of this split's samples: a warning when no person has two samples
        (no identity pair of two different crops), else ``None``."""
        return pairing_problem(self.samples)

    # ---- ground truth
    def _content_key(self, s: FolderSample) -> str:
        assert s.mesh is not None
        h = hashlib.sha256(f"voxface-folder-v{CACHE_FORMAT}".encode())
        with open(s.mesh, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        h.update(s.mesh.suffix.lower().encode())
        if s.mesh_to_canonical is not None:
            h.update(np.ascontiguousarray(s.mesh_to_canonical, np.float64).tobytes())
        g = self.grid
        h.update(f"|{g.resolution}|{g.side_mm!r}|{g.center_mm!r}|{self.fill_holes}|{self.points}".encode())
        if self.points:  # the entry's points are drawn with a seed of this key (_voxelise); entries of
            h.update(b"|points seeded by the key")  # before drew them by the stem, which the key leaves out
        return h.hexdigest()[:32]

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npz"

    def _voxelise(self, s: FolderSample) -> dict[str, np.ndarray]:
        """Occupancy (and points) of a mesh sample, through the content-keyed cache."""
        assert s.mesh is not None
        i = str(s.image)
        key = self._keys.get(i)
        if key is None:
            try:
                key = self._keys[i] = self._content_key(s)
            except OSError as e:
                raise DataError(f"cannot read the mesh ({e.strerror})", s.mesh) from None
        path = self._cache_path(key)
        if path.is_file():
            try:
                with np.load(path) as z:
                    out = {"occ": unpack_occupancy(z["occ"], self.resolution)}
                    if self.points:
                        out["points"], out["normals"] = z["points"], z["normals"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # cut short (a copy stopped
                pass  # half way), emptied (a crash on a file system that lost it): a broken entry is rebuilt
            else:
                check_inside_grid(out["occ"], self.grid, s.mesh)
                return out
        mesh = load_closed_mesh(s.mesh, s.mesh_to_canonical, self.fill_holes)
        occ = union_occupancy(mesh, self.grid)
        if not occ.any():
            c = [round(float(x), 1) for x in mesh.bounds.mean(0)]
            raise DataError(f"the mesh covers no cell of the canonical grid (its box is centred at {c}, the grid is "
                            f"a {self.grid.side_mm:g} mm cube centred at {list(self.grid.center_mm)}): is it in "
                            "canonical millimetres and centred on the head (mesh_to_canonical, e.g. "
                            "canonical_similarity)?", s.mesh)
        check_inside_grid(occ, self.grid, s.mesh)
        out = {"occ": occ}
        arrays = {"occ": pack_occupancy(occ)}
        if self.points:
            import trimesh

            trimesh.repair.fix_normals(mesh)  # outward normals for the samples
            # seeded by the key, as the entry is found by it: seeded by the stem, a mesh another sample had
            # cached (one scan beside two crops, a renamed file) gave that sample's points, so an item's
            # points depended on what the cache held and which item a worker voxelised first
            out["points"], out["normals"] = _sample_surface(mesh, self.points, int(key[:8], 16))
            arrays.update(points=out["points"], normals=out["normals"])
        try:
            from ..mesh import atomic_open

            with atomic_open(path) as fh:
                np.savez(fh, **arrays)
        except OSError:
            pass  # a read-only cache only costs speed
        return out

    def ground_truth(self, s: FolderSample) -> dict[str, np.ndarray]:
        """``{"occ": (R, R, R) uint8}`` (plus ``points`` / ``normals`` when ``points > 0``)."""
        if s.npz is not None:
            got = read_npz(s.npz, self.grid, s.grid_frame)
            if got is not None:
                check_inside_grid(got["occ"], self.grid, s.npz)
                if self.points and "points" not in got:
                    if s.mesh is not None:
                        return self._voxelise(s) | {"occ": got["occ"]}
                    got["points"], got["normals"] = self._grid_surface(got["occ"], _stem_key(s.stem), s.npz)
                elif self.points:
                    rng = np.random.default_rng(_stable_seed(_stem_key(s.stem)))
                    k = rng.choice(len(got["points"]), self.points, replace=len(got["points"]) < self.points)
                    got["points"], got["normals"] = got["points"][k], got["normals"][k]
                else:
                    got.pop("points", None)
                    got.pop("normals", None)
                return got
            if s.mesh is None:
                raise DataError(f"the occupancy is for another grid than the model's ({self.resolution}^3, "
                                f"{self.grid.side_mm:g} mm cube centred at {list(self.grid.center_mm)}) and "
                                "there is no mesh to voxelise", s.npz)
        return self._voxelise(s)

    def _grid_surface(self, occ: np.ndarray, stem: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Surface samples of an occupancy grid (marching cubes), for npz-only samples; a grid
        without a surface is a :class:`DataError` naming ``path``."""
        import trimesh
        from skimage.measure import marching_cubes

        g = self.grid
        vol = np.pad(occ.astype(np.float32), 1)
        try:
            v, f, _, _ = marching_cubes(vol, 0.5)
        except (ValueError, RuntimeError) as e:  # no cell occupied (read_npz refuses those first)
            raise DataError(f"no surface to sample points on ({_first_line(e)})", path) from None
        v = g.index_to_mm(v - 1)  # (d, h, w) index -> (x, y, z) mm
        mesh = trimesh.Trimesh(v, f[:, ::-1], process=True)
        trimesh.repair.fix_normals(mesh)
        return _sample_surface(mesh, self.points, _stable_seed(stem))

    def prepare(self, progress: bool = False, problems: list[VoxfaceError] | None = None) -> int:
        """Voxelise (into the cache) every mesh of the samples the items draw, read their grid, crop
        and mask files: every sample of the split, or those ``limit`` keeps (a cap of 64 items on a
        folder of thousands voxelised them all); returns the number of samples checked. Raises the
        first :class:`DataError` (or :class:`voxface.errors.ImageError` for an unreadable crop), so a
        bad file fails before training rather than when its item is first drawn; with a
        ``problems`` list, each sample's first such error is appended to it instead and every
        other sample is still checked (``voxface data check-folder`` lists them all: one run, not
        one run per bad file, on a folder of thousands)."""
        from tqdm.auto import tqdm

        drawn = [self.samples[i] for i in sorted(set(self.order))]
        for s in tqdm(drawn, desc=f"voxelise {self.root.name}/{self.split}", unit="mesh",
                      disable=not progress or len(drawn) < 8):
            try:
                self.ground_truth(s)
                self._image(s)
                if s.mask is not None:
                    self._mask_file(s)
            except (DataError, ImageError) as e:
                if problems is None:
                    raise
                problems.append(e)
        return len(drawn)

    # ---- items
    def _image(self, s: FolderSample) -> np.ndarray:
        from PIL import Image

        from ..image import load_image

        img = load_image(s.image)  # an ImageError naming the file when unreadable
        h, w = img.shape[:2]
        if h != w:
            raise DataError(f"the crop is {w}x{h} pixels, not square (frame crops as voxface.crop does)", s.image)
        S = self.image_size
        if h != S:
            img = np.asarray(Image.fromarray(img).resize((S, S), Image.Resampling.LANCZOS, reducing_gap=2.0))
        return img

    def _mask(self, s: FolderSample, occ: np.ndarray) -> np.ndarray:
        """``(S, S)`` uint8: the sample's mask file, else the occupancy seen through the pose, else ones.

        A mask file is treated as its crop is: a non-square one is a :class:`DataError`, a square
        one of another size is resized to ``S``. The mask is pixel-aligned with the crop, and a
        non-square crop is refused (:meth:`_image`), so a non-square mask cannot belong to a crop
        that is used; stretching it would shift the silhouette against the face, and cropping it
        would guess at an alignment the file does not state.
        """
        S = self.image_size
        if s.mask is not None:
            return self._mask_file(s)
        if s.has_pose:
            return _silhouette(occ, self.grid, s.rotation, s.scale, s.translation, S)
        return np.ones((S, S), np.uint8)

    def _mask_file(self, s: FolderSample) -> np.ndarray:
        """``(S, S)`` uint8 of the sample's mask file (see :meth:`_mask`)."""
        from PIL import Image

        assert s.mask is not None
        S = self.image_size
        m = _read_mask(s.mask)
        if m.shape[0] != m.shape[1]:
            raise DataError(f"the mask is {m.shape[1]}x{m.shape[0]} pixels, not square: it must be "
                            "pixel-aligned with its square crop", s.mask)
        if m.shape != (S, S):
            m = np.asarray(Image.fromarray(m * np.uint8(255)).resize((S, S), Image.Resampling.BOX)) >= 128
        return m.astype(np.uint8)

    def sample_of(self, index: int) -> FolderSample:
        """The :class:`FolderSample` behind item ``index`` (its stem and files)."""
        return self.samples[self.order[index]]

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self.order):
            raise IndexError(index)
        s = self.samples[self.order[index]]
        gt = self.ground_truth(s)
        img = self._image(s)
        item: dict[str, Any] = {
            "image": np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255),
            "mask": self._mask(s, gt["occ"]),
            "occ": np.ascontiguousarray(gt["occ"], dtype=np.uint8),
        }
        if self.coeff_dims is not None:
            item["id_coeffs"] = s.id_coeffs.astype(np.float32)
            item["exp_coeffs"] = s.exp_coeffs.astype(np.float32)
        if self.has_pose:
            item["rotation"] = np.asarray(s.rotation, np.float32)
            item["scale"] = np.float32(s.scale)
            item["translation"] = np.asarray(s.translation, np.float32)
        item["identity"] = np.int64(self._person_id[s.person])
        item["index"] = np.int64(index)
        if self.points:
            item["points"] = np.asarray(gt["points"], np.float32)
            item["normals"] = np.asarray(gt["normals"], np.float32)
        return item
