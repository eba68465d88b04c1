"""Export synthetic samples as plain files, for people who train elsewhere."""

from __future__ import annotations

import json
import os
import re
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
    was writing. An ``out_dir`` that cannot be a folder to write into (a file there or among its
    parents, a folder that refuses files) is a :class:`~voxface.errors.DataError` naming it, before
    the ICT model is read. Returns the number written.
    """
    from ..errors import DataError
    from ..mesh import output_problem
    from .cache import _writer_lock
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
    problem = output_problem(out, folder=True)  # a file there or among its parents: pathlib's bare
    if problem is not None:  # FileExistsError / NotADirectoryError, after the ICT model was read
        raise DataError(problem, out)
    sampler = FaceSampler(load_ict(ict_root), seed=seed)  # before the folder: a missing ICT leaves none
    out.mkdir(parents=True, exist_ok=True)
    # two exports into one folder rendered the same samples side by side, and the failure of one removed
    # the other's half-written sample (its PNG and PLY), which the other then completed with its JSON:
    # a sample without a crop or mesh that every resume skipped
    with _writer_lock(out, None, EXPORT_BUSY):
        return _export(out, sampler, num, seed, resolution, points, progress)


#: what a second export into a folder is told (an export locks the folder itself: no lock file in it, so it
#: stays a clean real-data folder)
EXPORT_BUSY = ("another export is writing into this folder now; wait for it to finish (then run the same command "
               "again to grow it), or export into another folder")


def _export(out: Path, sampler, num: int, seed: int, resolution: int, points: int, progress: bool) -> int:
    """:func:`export_samples`' loop, the folder's lock held."""
    import trimesh
    from PIL import Image
    from tqdm.auto import tqdm

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
