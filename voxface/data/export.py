"""Export synthetic samples as plain files, for people who train elsewhere."""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

#: The hidden temporaries (:func:`voxface.mesh.atomic_open`'s ``.<name>.<8 hex>.tmp``) of an export's
#: files: a sample's ``NNNNNN.png|ply|npz|json`` and the folder's ``.export.json``.
_TEMPORARY = re.compile(r"\.(\d{6,}\.(?:png|ply|npz|json)|\.export\.json)\.[0-9a-f]{8}\.tmp")


def remove_killed_temporaries(out: str | os.PathLike) -> None:
    """Remove from the export folder ``out`` the hidden temporaries of its files that an export killed
    mid-write (SIGKILL, a pre-empted job, the OOM killer) left: those untouched for
    :data:`voxface.mesh.STALE_TEMPORARY_S` seconds (:func:`voxface.mesh.remove_stale_temporaries`),
    so that one another export is still filling stays. Other files are never touched; best effort."""
    from ..mesh import remove_stale_temporaries

    try:
        targets = {m.group(1) for e in os.scandir(out) if (m := _TEMPORARY.fullmatch(e.name))}
    except OSError:
        return
    for name in sorted(targets):
        remove_stale_temporaries(Path(out) / name)


def export_samples(out_dir: str | os.PathLike, num: int, *, seed: int = 0, resolution: int = 64,
                   points: int = 2048, ict_root: str | None = None, progress: bool = True) -> int:
    """Write ``num`` samples to ``out_dir`` as ``NNNNNN.png`` (crop), ``.ply`` (closed head, canonical
    mm), ``.npz`` (occupancy ``(R, R, R)`` uint8 ``(D, H, W)``; with ``points > 0`` that many surface
    points, their normals and ``points_face``, 1 on the ICT narrow face, each ``(points, ...)``) and
    ``.json`` (coefficients, pose, landmarks, grid, ``ict``: the digest of the ICT-FaceKit files
    rendered from, and ``person``: the sampler draws its persons
    in pairs, samples ``2k`` and ``2k + 1`` of one identity, so a folder dataset keeps both in one
    split and pairs them for the identity-consistency loss). Every file is written atomically;
    existing complete samples are skipped, so an interrupted export resumes. The temporaries of a
    killed export (:func:`remove_killed_temporaries`) are removed before and after. One export
    writes into a folder at a time (it holds a lock on ``out_dir``: another is a one-line
    :class:`~voxface.errors.DataError`); a failure or interrupt removes the files of the sample it
    was writing, and the folders it made (``out_dir``, missing parents) while they hold no sample.
    An ``out_dir`` that cannot be a folder to write into (a file there or among its parents, a
    folder that refuses files) is a :class:`~voxface.errors.DataError` naming it, before
    the ICT model is read; so is a folder whose earlier export had other settings (``seed``,
    ``resolution``, ``points``, the frame, the ICT-FaceKit files or the occupancy rule: recorded in
    its ``.export.json``, else read from its first sample), whose samples would mix with these, or
    that holds files named as samples which no export wrote. Returns the number written.
    """
    from ..errors import DataError
    from ..mesh import _make_parent, _remove_folders
    from .cache import _check_output_folder, _writer_lock
    from .ict import load_ict
    from .synthetic import FaceSampler

    out = Path(out_dir)
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:  # -3 made an empty folder and
        # returned 0 without a word, 2.5 was range()'s TypeError after the ICT model was read
        raise DataError(f"num must be a whole number of samples, 0 or more, not {num!r}", out)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise DataError(f"resolution must be a whole number of cells per side, at least 1, not {resolution!r}",
                        out)  # 0 gave no grid: a KeyError ('occ') after the first PNG and PLY
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 0:
        raise DataError(f"points must be 0 (none) or a number of surface points, not {points!r}", out)
    _check_output_folder(out)
    settings = _export_settings(seed, resolution, points)
    _check_export_folder(out, settings)  # the options alone: before the ICT model is read
    sampler = FaceSampler(load_ict(ict_root), seed=seed)  # before the folder: a missing ICT leaves none
    # samples of other ICT-FaceKit files (another ict_root) are other faces for the same seed and index
    settings.update(ict=sampler.ict.key, occupancy=sampler.head.occupancy_rule)
    # the folders made here (out and missing parents) are removed again, where still empty, when the export
    # fails before its first whole sample (a full disk, Ctrl-C): they were left behind, empty
    made = _make_parent(out / EXPORT_SETTINGS)
    # two exports into one folder rendered the same samples side by side, and the failure of one removed
    # the other's half-written sample (its PNG and PLY), which the other then completed with its JSON:
    # a sample without a crop or mesh that every resume skipped
    with _writer_lock(out, None, EXPORT_BUSY):
        try:
            _check_export_folder(out, settings)  # again, with the ICT digest and the lock held
            try:
                return _export(out, sampler, num, seed, resolution, points, progress)
            finally:  # once the folder holds a complete sample (an interrupted export's too: a resume checks them)
                with contextlib.suppress(OSError):  # the export's own error is the one to report
                    _record_export_settings(out, settings)
        except BaseException:  # with the lock held: never a folder another export (started with this one) holds
            _remove_folders(made)
            raise


#: what a second export into a folder is told (an export locks the folder itself: no lock file in it, so it
#: stays a clean real-data folder)
EXPORT_BUSY = ("another export is writing into this folder now; wait for it to finish (then run the same command "
               "again to grow it), or export into another folder")


#: where ``data export`` records its settings in the output folder (hidden: the folder stays a
#: clean real-data folder for ``check-folder``)
EXPORT_SETTINGS = ".export.json"
_SAMPLE = re.compile(r"^(\d{6})\.(png|ply|npz|json)$")


def _export_settings(seed: int, resolution: int, points: int) -> dict:
    """What makes an exported sample what it is, besides its index and the ICT-FaceKit files
    (``ict``: their digest, added once they are read), as JSON round-trips it."""
    from ..config import FrameConfig, to_dict
    from .synthetic import ANTIALIAS

    return json.loads(json.dumps({"seed": seed, "resolution": resolution, "points": points,
                                  "frame": to_dict(FrameConfig()), "antialias": ANTIALIAS},
                                 default=lambda x: x.item() if isinstance(x, np.generic) else str(x)))  # np.int64


def _complete_samples(out: Path) -> list[Path]:
    """The JSON files of ``out``'s complete samples, sorted (an export writes a sample's JSON last)."""
    try:
        return sorted(p for p in out.iterdir() if _SAMPLE.match(p.name) and p.suffix == ".json")
    except OSError:  # no folder yet
        return []


def _earlier_settings(out: Path) -> tuple[dict, str] | None:
    """The settings of an earlier export into ``out`` and where they were read: ``.export.json``,
    else (an export by an older voxface) its first sample's JSON and NPZ; None for a new folder.
    Values that cannot be read are left out (not compared)."""
    path = out / EXPORT_SETTINGS
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = None
        if not isinstance(recorded, dict):
            from ..errors import DataError

            raise DataError("cannot read the settings of the earlier export into this folder; export into "
                            "another folder (-o)", path)
        return recorded, EXPORT_SETTINGS
    first = next(iter(_complete_samples(out)), None)
    if first is None:
        return None
    found: dict = {}
    try:
        meta = json.loads(first.read_text())
        found = {k: meta[k] for k in ("seed", "resolution", "frame", "ict", "occupancy", "antialias") if k in meta}
        with np.load(first.with_suffix(".npz"), allow_pickle=False) as z:
            found["points"] = int(z["points"].shape[0])
    except (OSError, ValueError, KeyError, AttributeError, TypeError, EOFError, zipfile.BadZipFile):
        pass  # what was read is compared (an empty or damaged first .npz: EOFError, BadZipFile)
    return found, f"{first.name} and {first.stem}.npz"


#: ``(setting, its value now, the fix that introduced it)``: an export recorded without the setting was
#: written before that fix, and growing it would mix samples of two renderers or occupancy rules
_RENDERER_FIXES = (
    ("occupancy", "nonzero", "the closed-lips occupancy fix (their grids by the even-odd rule"),
    ("antialias", "linear", "the linear-light anti-aliasing fix (their edge pixels averaged in sRGB"),
)


def _check_export_folder(out: Path, settings: dict) -> None:
    """Refuse an export into a folder whose earlier export had other settings (one line, naming them)."""
    from ..errors import DataError

    earlier = _earlier_settings(out)
    if earlier is None:
        # no export was here; files named as samples are someone else's (a video's frames, 000001.png ...),
        # which the export would overwrite: a killed export leaves at most part of its first sample, 000000
        try:
            foreign = sorted(p.name for p in out.iterdir() if _SAMPLE.match(p.name) and p.stem != "000000")
        except OSError:  # no folder yet
            foreign = []
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise DataError(f"holds {', '.join(foreign[:3])}{more}, named as exported samples but not written by "
                            f"`voxface data export` (no {EXPORT_SETTINGS}, no sample's .json): the export would "
                            "overwrite them; export into another folder (-o)", out)
        return
    old, source = earlier
    for key, now, fix in _RENDERER_FIXES:  # an export before the fix recorded no such key
        if key not in old and settings.get(key) == now:
            raise DataError(f"holds samples exported before {fix}; read from {source}); samples of both would mix: "
                            "export into another folder (-o), or empty this one first", out)
    names = {"seed": "--seed", "resolution": "--resolution", "points": "--points", "frame": "frame",
             "ict": "ICT-FaceKit files of digest", "occupancy": "the occupancy rule", "antialias": "anti-aliasing"}  # absent (an export by an older voxface): not compared
    differ = [k for k in names if k in old and k in settings and old[k] != settings[k]]
    if differ:
        was = ", ".join(f"{names[k]} {old[k]}" for k in differ)
        now = ", ".join(f"{names[k]} {settings[k]}" for k in differ)
        raise DataError(f"holds samples exported with {was} (read from {source}) but this export asks for "
                        f"{now}; samples of both would mix: export into another folder (-o), or empty this "
                        "one first", out)


def _record_export_settings(out: Path, settings: dict) -> None:
    """Write ``out/.export.json`` (atomically) once the folder holds a complete sample."""
    from ..mesh import atomic_open

    if (out / EXPORT_SETTINGS).exists() or not _complete_samples(out):
        return
    with atomic_open(out / EXPORT_SETTINGS) as fh:
        fh.write(json.dumps(settings, indent=1).encode())


def _export(out: Path, sampler, num: int, seed: int, resolution: int, points: int, progress: bool) -> int:
    """:func:`export_samples`' loop, the folder's lock held."""
    import trimesh
    from PIL import Image
    from tqdm.auto import tqdm

    from .synthetic import ANTIALIAS

    from ..config import FrameConfig, to_dict
    from ..errors import DataError
    from ..mesh import atomic_open, export_mesh

    remove_killed_temporaries(out)  # before: a resume of a killed export; after: one that stayed fresh till then
    frame = FrameConfig()
    written = 0
    for i in tqdm(range(num), desc="export", unit="sample", disable=not progress):
        stem = out / f"{i:06d}"
        if stem.with_suffix(".json").exists():  # the json is written last
            continue
        s = sampler.sample(i, resolution, frame, swap=False, n_points=points)
        img = (s["image"].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        meta = {k: np.asarray(s[k]).tolist() for k in ("id_coeffs", "exp_coeffs", "rotation", "scale",
                                                         "translation", "euler", "landmarks_2d", "landmarks_3d")}
        meta.update(index=i, seed=seed, person=f"seed{seed}-person{int(s['identity'])}", resolution=resolution,
                    frame=to_dict(frame), ict=sampler.ict.key,  # the digest of the ICT-FaceKit files rendered
                    occupancy=sampler.head.occupancy_rule,  # the grid's rule (voxface.occupancy)
                    antialias=ANTIALIAS,  # how edge pixels were averaged
                    expression_names=sampler.ict.expression_names)
        path = stem.with_suffix(".png")
        try:
            with atomic_open(path) as fh:
                Image.fromarray(img).save(fh, format="PNG")
            path = stem.with_suffix(".ply")
            export_mesh(trimesh.Trimesh(sampler.head.person(s["id_coeffs"]).closed_head(s["exp_coeffs"]),
                                        sampler.head.faces, process=False), path)
            # points=0: the grid alone (s has no points then: it was a KeyError after the PNG and PLY)
            surface = {k: s[k] for k in ("points", "normals", "points_face") if k in s}
            path = stem.with_suffix(".npz")
            with atomic_open(path) as fh:
                np.savez_compressed(fh, occupancy=s["occ"], **surface)
            path = stem.with_suffix(".json")
            with atomic_open(path) as fh:
                fh.write(json.dumps(meta).encode())
        except OSError as e:
            if e.filename is not None:  # the file system named it (a folder that cannot be written)
                raise
            # a full disk mid-file: 'No space left on device' (numpy: '131072 requested and 94080 written'),
            # naming no file, nor that the samples before it are whole
            reason = " ".join((e.strerror or str(e)).split()) + ("" if e.errno else "; is the disk full?")
            raise DataError(f"cannot write this file ({reason}); the samples before it are kept: run the same "
                            "command again to go on once there is room", path) from None
        finally:
            if not stem.with_suffix(".json").exists():  # failed or stopped: no half-written sample is left
                for suffix in (".png", ".ply", ".npz"):
                    stem.with_suffix(suffix).unlink(missing_ok=True)
        written += 1
    remove_killed_temporaries(out)
    return written
