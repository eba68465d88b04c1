"""Evaluation on synthetic ICT-FaceKit faces the training never saw, against a mean-head baseline.

Per sample and aggregated (mean, median):

* ``iou``: occupancy IoU (cell centres, probability 0.5) on the evaluation grid: the model's, or
  the finer ``resolution`` asked for (``R * 2^k``: 128 or 256 for the 64^3 model), where the
  logits come coarse-to-fine from the decoder's own continuous function or the refinement head
  (``upsample``, :func:`voxface.reconstruct.decode_at`) and the exact occupancy is computed at that
  resolution.
* ``chamfer_l1``, ``fscore@1.0``, ``fscore@2.5``, ``normal_consistency``: Occupancy Networks'
  definitions on ``points`` (100k) sampled on the predicted mesh and on the exact closed head,
  each matched to the nearest point of the other *surface* (:func:`voxface.metrics.mesh_metrics`:
  no floor from the sample's spacing), canonical millimetres (the mesh extracted on the
  evaluation grid);
  ``face_*``: the same restricted to the face region (the
  ICT "narrow face area", vertices 0-6705: forehead to chin, ear to ear, no scalp or neck).
* ``pose_deg``: geodesic angle between predicted and true head rotation, the true one in the camera
  frame the face was rendered in. A crop does not show where it lay in that frame: the head sits
  off the optical axis (about 3.4 degrees median on this data), and the rotation that offset adds
  to the camera-frame truth is out of any crop's sight, so it is part of every model's ``pose_deg``.
* ``swap_iou``: IoU of ``decode(z_id(A), z_exp(B))`` against the exact head with A's identity and
  B's expression (B = sample ``index ^ 2``, another person), always on the model's grid.
* ``grid_iou`` (only when the evaluation grid is finer than the model's): the direct ``iou`` on the
  model's grid, so that the summary's ``swap_minus_direct_iou`` compares like with like.

A prediction that gives no mesh (no cell above 0.5, or NaN logits) stays in every aggregate: IoU as
its grid says (0 when empty), the surface metrics of a miss (:func:`surface_scores`); its record's
``failure`` says why, and the summary's ``failed_meshes`` (and :meth:`EvalReport.table`) counts them.
A prediction with a mesh but no surface near the face scores its ``face_*`` metrics as a miss, counted
by the summary's ``face_misses`` (and the table).

``latents="true"`` (``voxface evaluate --latents true``) decodes each sample's *true* ICT
coefficients instead of the encoder's codes (models whose codes are ICT coordinates, as the
shipped one's): what the decoder and the refinement head reach with the encoder taken out, e.g.
to see what a finer ``resolution`` adds. Pose error still scores the encoder.

The **mean-head baseline** predicts the ICT mean head (all coefficients 0) in the canonical frame
for every sample, through the same representation as the model: its occupancy on the evaluation
grid (IoU) and the mesh marching cubes extracts from its signed distance sampled at the grid's
cell centres (surface metrics), scored with the same code on the same samples. (Scoring the
exact polygon mesh instead would hand the baseline a surface no grid prediction can have: about
0.01 of normal consistency on 64^3.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, VoxfaceError, check_integer

#: How many of the lowest-IoU faces worst_cases.png shows (:func:`save_plots`), so :func:`evaluate` keeps.
WORST_CASES = 6

#: Default seed of the evaluation set: no training or validation cache uses it.
EVAL_SEED = 2_000_003

#: Largest dataset seed: :class:`voxface.data.synthetic.FaceSampler` keeps a seed's low 32 bits.
MAX_SEED = 2**32 - 1

_SURFACE_KEYS = ("chamfer_l1", "fscore@1.0", "fscore@2.5", "normal_consistency")
#: How an empty prediction (no surface) scores: as a surface 10 m away (finite, so that means and
#: the JSON report stay numbers); so do the face metrics of one with no surface near the face
#: (:func:`surface_scores`).
_MISS = {"chamfer_l1": 1e4, "fscore@1.0": 0.0, "fscore@2.5": 0.0, "normal_consistency": 0.0}

#: The unit of each metric in a report (``EvalReport.to_dict()["units"]``); ``face_*`` as its whole-head
#: metric. Distances are canonical millimetres: every head scaled to one RMS radius (88 mm, the mean head's).
UNITS: dict[str, str] = {
    "iou": "unitless (0-1)", "swap_iou": "unitless (0-1)", "grid_iou": "unitless (0-1)", "pose_deg": "degrees",
    "chamfer_l1": "mm (canonical)", "fscore@1.0": "unitless (0-1), threshold 1.0 mm",
    "fscore@2.5": "unitless (0-1), threshold 2.5 mm", "normal_consistency": "unitless (0-1)",
}
UNITS.update({f"face_{k}": UNITS[k] for k in _SURFACE_KEYS})
#: What the ``face_*`` metrics are restricted to.
FACE_REGION = "ICT-FaceKit narrow face area: closed-head triangles with all vertices in 0-6705"


@dataclass
class EvalReport:
    """Result of :func:`evaluate`: per-sample records and aggregates for model and baseline."""

    num: int
    seed: int
    resolution: int
    points: int
    checkpoint: str | None
    latents: str = "encoder"
    #: how the scored grid was reached from the model's: "none" (it is the model's), "decoder" (the
    #: decoder's own continuous function, coarse-to-fine), "head" (its refinement head) or
    #: "trilinear" (a decoder without a continuous function: its logits upsampled);
    #: :func:`voxface.refine.upsample_method`
    upsample: str = "none"
    #: which weights were scored, as reconstruct's ``.npz`` records them
    #: (:func:`voxface.reconstruct.model_provenance`): ``voxface_version``, ``model_sha256`` and, for a
    #: model :func:`voxface.load_model` read from a file (weights unchanged since), that file's
    #: ``checkpoint`` (absolute path), ``checkpoint_sha256`` and ``checkpoint_epoch`` (-1: none recorded).
    #: ``checkpoint`` above is the name the caller gave, which a later file of that name also answers to.
    provenance: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    baseline: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def aggregate(self, records: list[dict[str, Any]] | None = None) -> dict[str, dict[str, float]]:
        recs = self.samples if records is None else records
        keys = [k for k in recs[0] if isinstance(recs[0][k], (int, float)) and k != "index"] if recs else []
        return {k: {"mean": float(np.mean([r[k] for r in recs])), "median": float(np.median([r[k] for r in recs]))}
                for k in keys}

    def summary(self) -> dict[str, Any]:
        m, b = self.aggregate(self.samples), self.aggregate(self.baseline)
        gap = (m["iou"]["mean"] - b["iou"]["mean"]) / max(1e-9, 1 - b["iou"]["mean"])
        return {
            "model": m,
            "baseline": b,
            "iou_gap_closed": float(gap),
            "face_chamfer_ratio": float(m["face_chamfer_l1"]["mean"] / max(1e-9, b["face_chamfer_l1"]["mean"])),
            # both on the model's grid (swap_iou always is)
            "swap_minus_direct_iou": float(m["swap_iou"]["mean"] - m.get("grid_iou", m["iou"])["mean"]),
            # predictions with no mesh (a record's "failure" says why), kept in every aggregate as misses
            "failed_meshes": sum("failure" in r for r in self.samples),
            # predictions with a mesh but no surface near the face: their face_* metrics are misses
            "face_misses": sum("failure" not in r and _is_miss(r, "face_chamfer_l1") for r in self.samples),
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        d["units"] = {k: v for k, v in UNITS.items() if any(k in r for r in self.samples[:1] + self.baseline[:1])}
        d["face_region"] = FACE_REGION
        return d

    def save(self, path: str | os.PathLike) -> Path:
        from .mesh import atomic_write_bytes

        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1).encode())

    def table(self) -> str:
        """A Markdown table of the aggregates (model vs mean-head baseline), and a line after it
        counting the predictions that gave no mesh, when any did, and one counting those with no
        surface near the face (their ``face_*`` metrics misses), when any had none."""
        s = self.summary()
        rows = ["| metric | model mean | model median | mean-head mean | mean-head median |", "|---|---|---|---|---|"]
        for k, v in s["model"].items():
            b = s["baseline"].get(k)
            bm = f"{b['mean']:.4f} | {b['median']:.4f}" if b else "- | -"
            rows.append(f"| {k} | {v['mean']:.4f} | {v['median']:.4f} | {bm} |")
        notes = []
        if s["failed_meshes"]:
            notes.append(f"{s['failed_meshes']} of {len(self.samples)} predictions gave no mesh (each record's "
                         "\"failure\" says why); their surface metrics count as misses: Chamfer-L1 10 m, F-score 0, "
                         "normal consistency 0")
        if s["face_misses"]:
            notes.append(f"{s['face_misses']} of {len(self.samples)} predictions have no surface near the face (no "
                         "predicted point's nearest ground truth lies in it); their face_* metrics count as misses: "
                         "Chamfer-L1 10 m, F-score 0, normal consistency 0")
        if notes:
            rows += [""] + notes
        return "\n".join(rows)


def surface_scores(pred: Any, gt_surface: Any, face_region: Any, points: int, seed: int) -> dict[str, float]:
    """The surface metrics of one prediction, whole head and face region (``face_*``): Chamfer-L1 (mm),
    F-score at 1 and 2.5 mm, normal consistency (:func:`voxface.metrics.matched_metrics`).

    ``pred``: the predicted mesh (or a :class:`voxface.metrics.SampledSurface`), ``None`` when the
    prediction is empty; ``gt_surface``: the ground truth's :class:`~voxface.metrics.SampledSurface`;
    ``face_region``: its per-triangle face flags. A metric with nothing to measure scores as a miss
    (:data:`_MISS`: a surface 10 m away, F-score 0, normal consistency 0), never NaN: an empty
    prediction everywhere, and a prediction with no surface near the face (no predicted point whose
    nearest ground truth lies in the region: accuracy over nothing) in the face metrics. Dropping
    such a sample, or a NaN that makes the mean NaN, would hide the failure. A ground-truth sample
    with no point in the face region (``points`` far too few) is an :class:`~voxface.errors.InputError`
    naming ``points``: the face metrics would measure nothing, and the prediction is not to blame.
    """
    from .metrics import match_surfaces, matched_metrics

    if pred is None:
        return {prefix + k: _MISS[k] for k in _SURFACE_KEYS for prefix in ("", "face_")}
    match = match_surfaces(pred, gt_surface, points, seed=seed)
    region = np.asarray(face_region, bool).reshape(-1)  # (a mask of another length: matched_metrics' error)
    if len(region) == match.gt_faces and not region[match.gt_face].any():  # a sample too small, not a miss
        raise InputError(f"points={points}: none of the {len(match.gt_face)} points sampled on the ground truth lies "
                         "in the face region (about a fifth of the head's area), so the face_* metrics have nothing "
                         "to measure; sample more points (voxface evaluate takes at least 1000)")
    full, face = matched_metrics(match), matched_metrics(match, gt_face_mask=face_region)
    out: dict[str, float] = {}
    for k in _SURFACE_KEYS:  # the report's order: chamfer_l1, face_chamfer_l1, fscore@1.0, ...
        for prefix, m in (("", full), ("face_", face)):
            v = float(m[k])
            out[prefix + k] = v if np.isfinite(v) else _MISS[k]
    return out


def grid_mesh(mesh: Any, occupancy: Any, grid: Any) -> Any:
    """What a perfect grid prediction of a closed ``mesh`` is: marching cubes (:func:`voxface.mesh.extract_mesh`)
    on its signed distance at ``grid``'s cell centres, in cells (positive inside, the sign taken
    from its exact ``occupancy (R, R, R)`` on ``grid``). Returns a ``trimesh.Trimesh`` (canonical mm).

    The distance is computed only in the band of cells with a cell of the other side among their 26
    neighbours (the grid's outside counting as outside): every corner of every cube that holds the
    surface lies in it, so marching cubes reads nothing else, and the rest of the grid holds
    ``+-resolution`` cells. The mesh is the one the whole field gives, for a few percent of the
    closest-point queries (the whole 256^3 field was 16.7 million of them: minutes, without a word).
    """
    from scipy.ndimage import binary_dilation

    from .mesh import extract_mesh
    from .metrics import closest_points

    r = grid.resolution
    occ = np.asarray(occupancy, bool).reshape(r, r, r)
    cube = np.ones((3, 3, 3), bool)
    # a cell whose 3^3 neighbourhood holds both sides; outside the grid counts as outside (the padding)
    band = binary_dilation(~occ, cube, border_value=1) & binary_dilation(occ, cube)
    field = np.where(occ, float(r), -float(r))
    if band.any():
        d, _ = closest_points(mesh, grid.index_to_mm(np.argwhere(band)))
        field[band] = np.where(occ[band], d, -d) / grid.voxel_size
    return extract_mesh(field.astype(np.float32), grid).mesh


def training_data(checkpoint: str | os.PathLike | Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """The ``data:`` sections the checkpoint's training stages recorded, as ``[(stage, section)]``:
    ``extra.run_config.data`` ("training") and ``extra.refine_train.data`` with its ``previous`` stages
    ("refinement training"), then those of the checkpoint its training started from
    (``extra.run_config.train.init_from``, a new run on its weights, which records only its own data),
    and so on down the chain, as far as those files are here (``"train.init_from <path>'s training"``,
    the path as recorded: relative to the folder the training ran in, as data paths are).
    ``checkpoint``: a path (``None``: the shipped weights) or the dict already read
    (:func:`voxface.checkpoint.load_model_and_checkpoint`'s, so that the stages are the weights' own
    file's, read once). Empty for a checkpoint that records none (``init-checkpoint``) or cannot be
    read (:func:`voxface.load_model` reports that)."""
    from .checkpoint import DEFAULT_WEIGHTS, load_checkpoint

    if isinstance(checkpoint, Mapping):
        ck: Any = checkpoint
    else:
        try:
            ck = load_checkpoint(DEFAULT_WEIGHTS if checkpoint is None else checkpoint)
        except Exception:  # noqa: BLE001 - load_model reports an unreadable file
            return []
    datas: list[tuple[str, Any]] = []
    seen: set[Path] = set()
    prefix = ""
    while isinstance(ck, Mapping):
        extra = ck.get("extra") if isinstance(ck.get("extra"), dict) else {}
        rc = extra.get("run_config")
        if isinstance(rc, dict):
            datas.append((f"{prefix}training", rc.get("data")))
        rt = extra.get("refine_train")
        while isinstance(rt, dict):
            datas.append((f"{prefix}refinement training", rt.get("data")))
            rt = rt.get("previous")
        # the weights this training started from were trained on their own data: a frozen decoder's faces too
        train = rc.get("train") if isinstance(rc, dict) else None
        init = train.get("init_from") if isinstance(train, dict) else None
        if not init or not isinstance(init, (str, os.PathLike)):
            break
        path = Path(init).expanduser()
        try:
            where = path.resolve()
            if where in seen or not path.is_file():
                break
            seen.add(where)
            ck = load_checkpoint(path, map_location="meta")  # its record only: no tensor's data is read
        except Exception:  # noqa: BLE001 - an earlier stage's file gone or unreadable: its seeds are not known
            break
        prefix = f"train.init_from {init}'s "
    return datas


def training_seeds(checkpoint: str | os.PathLike | Mapping[str, Any] | None, data: list[tuple[str, Any]] | None = None) -> dict[int, str]:
    """The ICT dataset seeds the checkpoint's training stages drew from, as far as it records them.

    Reads ``extra.run_config.data`` and ``extra.refine_train.data`` (and their ``previous`` stages, and
    the stages of the checkpoints ``train.init_from`` started them from: :func:`training_data`):
    ``kind: synthetic`` trains on ``seed`` and validates on ``seed + val_seed_offset``;
    ``kind: cache`` on the seeds in ``<path>/train|val/meta.json`` when those files are here;
    ``kind: folder`` on the seed in ``<root>/.export.json`` when it is a ``voxface data export`` of
    ICT samples, and in ``<root>/train|val/.export.json`` for split folders exported one by one
    (other folders and toy data are not). ``data``: :func:`training_data`'s answer when
    already read (the checkpoint is not read again). Returns ``{seed: "how it was used"}`` (maybe empty).
    """
    seeds: dict[int, str] = {}
    for stage, d in training_data(checkpoint) if data is None else data:
        if not isinstance(d, dict):
            continue
        kind = d.get("kind", "synthetic")
        try:
            if kind == "synthetic":
                s = int(d.get("seed", 0))
                seeds.setdefault(s & MAX_SEED, f"{stage} data (seed {s})")
                v = s + int(d.get("val_seed_offset", 1_000_003))
                seeds.setdefault(v & MAX_SEED, f"{stage} validation data (seed {v})")
            elif kind == "cache" and d.get("path"):
                for split in ("train", "val"):
                    meta = Path(str(d["path"])).expanduser() / split / "meta.json"
                    if meta.is_file():
                        s = int(json.loads(meta.read_text())["seed"])
                        seeds.setdefault(s & MAX_SEED, f"{stage} cache {meta.parent} (seed {s})")
            elif kind == "folder" and (d.get("root") or d.get("path")):  # a `voxface data export` folder
                root = Path(str(d.get("root") or d.get("path"))).expanduser()
                # flat, or train/ and val/ split folders (voxface.data.folder), each its own export
                for meta in (root / ".export.json", root / "train" / ".export.json", root / "val" / ".export.json"):
                    if meta.is_file():
                        s = int(json.loads(meta.read_text())["seed"])
                        seeds.setdefault(s & MAX_SEED, f"{stage} folder {meta.parent} (exported with seed {s})")
        except (TypeError, ValueError, KeyError, OSError):
            continue
    return seeds


def check_seed_offset(seed_offset: int, seed: int = EVAL_SEED, training: dict[int, str] | None = None) -> None:
    """Refuse an evaluation seed ``seed + seed_offset`` that is not a fresh set.

    Raises :class:`~voxface.errors.InputError` for a negative offset, a seed past :data:`MAX_SEED` (the sampler
    would wrap it to ``seed mod 2^32``, e.g. 0: the training set) or a seed in ``training``
    (:func:`training_seeds`): the model saw those faces.
    """
    off = int(seed_offset)
    if off < 0:
        raise InputError(f"the seed offset (seed_offset, --seed-offset) must be >= 0, not {off} (lower seeds are the training "
                           "data's)")
    s = int(seed) + off
    if s > MAX_SEED:
        raise VoxfaceError(f"seed offset {off} gives seed {s}, past 2^32 - 1 = {MAX_SEED}: the data sampler would "
                           f"wrap it to {s & MAX_SEED}; use at most {MAX_SEED - int(seed)}")
    if training and s in training:
        raise VoxfaceError(f"seed offset {off} gives seed {s}, the checkpoint's {training[s]}: the model saw "
                           "those faces, so the scores would not be for unseen faces; pick another offset")


def evaluated_count(num: int) -> int:
    """How many faces :func:`evaluate` scores for ``num``: rounded down to a multiple of 4, at least 4
    (the swap metric pairs face ``i`` with face ``i ^ 2`` inside blocks of four)."""
    return max(4, int(num) - int(num) % 4)


def evaluate(model: Any, *, num: int = 200, seed: int = EVAL_SEED, seed_offset: int = 0, points: int = 100_000,
             ict_root: str | None = None, batch_size: int = 16, checkpoint: str | None = None,
             progress: bool = True, keep_meshes: int = 0, resolution: int | None = None,
             latents: str = "encoder", upsample: str = "decoder") -> tuple[EvalReport, dict[str, Any]]:
    """Evaluate ``model`` on ``num`` unseen synthetic faces (seeds ``(seed + seed_offset, i)``).

    ``num`` is rounded down to a multiple of 4 (at least 4): the swap metric pairs each face with
    face ``i ^ 2``, another expression of another person, inside blocks of four.

    ``resolution``: the grid of ``iou`` and of the scored mesh (``None``: the model's ``R``; else
    ``R * 2^k``, see the module docstring); the report's ``resolution`` records it. ``latents``:
    ``"encoder"`` (the codes read from each crop) or ``"true"`` (the sample's ICT coefficients).
    ``upsample``: how a finer ``resolution`` is reached, as in :func:`voxface.reconstruct.decode_at`
    (``"decoder"`` or ``"head"``). ``keep_meshes``: how many of the lowest-IoU faces keep their
    meshes and crops for :func:`save_plots` (:data:`WORST_CASES` for its worst cases; 0: none).

    Faces are rendered, encoded, decoded and scored one block of ``batch_size`` (a multiple of 4) at a
    time: memory does not grow with ``num`` beyond the per-face records. On a grid finer than the
    model's, a block's logits are refined :func:`voxface.reconstruct.fine_group` faces at a time (4 at
    ``256^3``: 256 MiB of float32 logits, not a whole batch's 1 GiB).

    Raises:
        VoxfaceError: an unknown ``latents``, or ``"true"`` for a model whose codes are not ICT
            coordinates (``z_id``/``z_exp`` sizes differ from the coefficients'); ``seed + seed_offset``
            outside ``0..2^32 - 1`` (the sampler would wrap it); ``points``, ``batch_size`` or ``num``
            not an integer >= 1, or ``keep_meshes`` not one >= 0 (:class:`~voxface.errors.InputError` or
            :class:`~voxface.errors.InputTypeError`, before any work), or ``points`` so few that a face's
            ground-truth sample puts none on the face region (:func:`surface_scores`); an encoder that
            gives NaN or infinite codes or pose (broken weights; named after ``checkpoint``). The CLI also
            refuses the checkpoint's training seeds (:func:`check_seed_offset`, :func:`training_seeds`).

    The model is scored in eval mode (dropout off) whatever its mode; each module's mode is restored after.
    Ctrl-C stops between samples and raises ``KeyboardInterrupt`` (not inside C code); so does SIGTERM
    where a Python handler turns it into one, as ``voxface evaluate``'s does (:class:`_DeferSigint`).

    The report records which weights it scored (:attr:`EvalReport.provenance`: their digest and the
    file :func:`voxface.load_model` read them from, with its SHA-256), not only the ``checkpoint`` name.

    Returns the :class:`EvalReport` and a dict of extras for plots: ``meshes`` ``{index: (predicted
    mesh or None, ground truth)}`` and ``crops`` ``{index: (3, S, S) float32 image}`` of the kept
    faces, and the mean head's ``base_mesh``.
    """
    import trimesh
    from tqdm.auto import tqdm

    from .data.ict import load_ict
    from .data.synthetic import FaceSampler, SamplerConfig
    from .frame import Grid
    from .metrics import _count, surface_scene
    from .reconstruct import model_provenance, output_resolution
    from .refine import upsample_method

    if latents not in ("encoder", "true"):
        raise InputError(f"latents must be 'encoder' or 'true', not {latents!r}")
    if not 0 <= int(seed) + int(seed_offset) <= MAX_SEED:
        raise InputError(f"seed + seed_offset = {int(seed) + int(seed_offset)} is outside 0..2^32 - 1 (the data "
                           "sampler would wrap it onto another set, e.g. the training data's)")
    upsample_method(model, upsample)  # a bad value fails before any work
    points = _count(points, "points")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, not {batch_size!r}")
    whole = isinstance(num, (float, np.floating)) and np.isfinite(num) and float(num).is_integer()  # 1e3, as points
    if isinstance(num, bool) or not (isinstance(num, (int, np.integer)) or whole) or num < 1:  # 0 or -8 scored 4 faces
        raise InputError(f"num must be an integer >= 1 (faces), not {num!r}")
    keep_meshes = check_integer("keep_meshes", keep_meshes, 0)  # "3" failed in a comparison after the first block
    num = evaluated_count(num)
    t_start = time.perf_counter()
    cfg = model.config
    grid = model.grid
    res = output_resolution(model, resolution)
    fine = grid if res == grid.resolution else Grid(res, grid.side_mm, grid.center_mm)
    sampler = FaceSampler(load_ict(ict_root), SamplerConfig(image_size=cfg.encoder.image_size), int(seed) + int(seed_offset))
    head = sampler.head
    if latents == "true":  # before anything is rendered
        n_id, n_exp = sampler.ict.identity.shape[0], len(sampler.ict.expression_names)
        if (cfg.encoder.z_id, cfg.encoder.z_exp) != (n_id, n_exp):
            raise VoxfaceError(f"--latents true needs codes that are ICT coefficients: the model's z_id/z_exp have "
                               f"{cfg.encoder.z_id}/{cfg.encoder.z_exp} values, the coefficients {n_id}/{n_exp}",
                               checkpoint)
    # the mean-head baseline, through the evaluation grid as the model's prediction (module docstring)
    base_v = head.closed_head(None, None)
    base_occ = sampler.occupancy(base_v, grid)
    base_occ_fine = base_occ if fine is grid else sampler.occupancy(base_v, fine)
    base_mesh = grid_mesh(trimesh.Trimesh(base_v, head.faces, process=False), base_occ_fine, fine)
    base_scene = surface_scene(base_mesh)  # one mesh for every sample: its closest-point scene once

    method = "none" if res == grid.resolution else upsample_method(model, upsample)
    report = EvalReport(num=num, seed=int(seed) + int(seed_offset), resolution=res, points=points, upsample=method,
                        checkpoint=checkpoint, latents=latents,
                        provenance={k: v.item() for k, v in model_provenance(model).items()})
    meshes: dict[int, Any] = {}
    crops: dict[int, np.ndarray] = {}
    # one block of faces at a time (render, encode, decode, score), so that memory does not grow with `num`;
    # a multiple of 4 (the swap partner i ^ 2 is in the block), the network's batches as when all were held
    block = max(4, batch_size - batch_size % 4)
    with _DeferSigint() as stop, _eval_mode(model), tqdm(total=num, desc="score", disable=not progress,
                                                        unit="face") as bar:
        for start in range(0, num, block):
            samples = []
            for i in range(start, min(num, start + block)):
                stop.check()
                samples.append(sampler.sample(i, grid.resolution, cfg.frame, swap=True))
            codes = _block_codes(model, samples, start, batch_size, latents, fine is not grid, checkpoint)
            _score(report, meshes, crops, stop, bar, model=model, start=start, codes=codes, res=res, fine=fine,
                   grid=grid, batch_size=batch_size, samples=samples, sampler=sampler, head=head, points=points,
                   base_occ=base_occ, base_occ_fine=base_occ_fine, base_mesh=base_mesh, base_scene=base_scene,
                   keep_meshes=keep_meshes, upsample=upsample)
        stop.check()
    report.seconds = time.perf_counter() - t_start
    extras = {"meshes": meshes, "crops": crops, "base_mesh": base_mesh}
    return report, extras


def _block_codes(model: Any, samples: list, start: int, batch_size: int, latents: str, direct: bool,
                 checkpoint: str | None) -> dict[str, Any]:
    """What :func:`_score` needs of a block of faces ``start .. start + len(samples) - 1`` (a multiple of
    4 long): the codes scored (``z_id``, ``z_exp``: the encoder's, or the true coefficients with
    ``latents="true"``), the swap logits ``swap (n, R, R, R)`` and, when ``direct``, the direct logits
    on the model's grid, float32 numpy; ``pose_err (n,)`` degrees."""
    import torch

    from .models import Latents
    from .rotation import geodesic_degrees

    n, dev = len(samples), model.device
    images = torch.from_numpy(np.stack([s["image"] for s in samples]))
    with torch.inference_mode():
        lat = [model.encode(images[i : i + batch_size].to(dev)).to("cpu") for i in range(0, n, batch_size)]
    z_id = torch.cat([l.z_id for l in lat])
    z_exp = torch.cat([l.z_exp for l in lat])
    if latents == "true":
        a = torch.from_numpy(np.stack([s["id_coeffs"] for s in samples])).float()
        e = torch.from_numpy(np.stack([s["exp_coeffs"] for s in samples])).float()
        z_id, z_exp = a.to(z_id.dtype), e.to(z_exp.dtype)
    rot = torch.cat([l.pose.rotation for l in lat])
    # what is scored: the codes (the true ones with latents="true") and the rotation (scale and
    # translation are not: a scrambled encoder's overflowing scale still scores its shapes)
    bad_rot = (~torch.isfinite(rot).flatten(1).all(1)).nonzero()[:, 0].tolist()
    bad = sorted(set(Latents(z_id, z_exp).nonfinite()) | set(bad_rot))
    if bad:  # broken weights (a diverged run): say so, naming the checkpoint
        raise VoxfaceError(f"the encoder gives NaN or infinite codes or pose for {len(bad)} of the {start + n} faces "
                           f"read so far (first: sample {start + bad[0]}): its weights are broken (a diverged "
                           "training run?)", checkpoint)
    swap_exp = z_exp[torch.arange(n) ^ 2]
    logits_swap, logits_direct = [], []  # on the model's grid; direct ones only when scoring a finer grid
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            logits_swap.append(model.decode(z_id[sl].to(dev), swap_exp[sl].to(dev)).float().cpu()[:, 0])
            if direct:
                logits_direct.append(model.decode(z_id[sl].to(dev), z_exp[sl].to(dev)).float().cpu()[:, 0])
    pose_err = geodesic_degrees(rot, torch.from_numpy(np.stack([s["rotation"] for s in samples]))).numpy()
    return {"z_id": z_id, "z_exp": z_exp, "swap": torch.cat(logits_swap).numpy(), "pose_err": pose_err,
            "direct": torch.cat(logits_direct).numpy() if logits_direct else None}


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """``model.eval()`` for the block (dropout off: the scores of a model still in train mode, e.g.
    evaluated in the middle of a training run, would be noisy), each module's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "modules") else []
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


class _DeferSigint:
    """SIGINT while scoring: set a flag checked between samples instead of raising inside C code
    (scipy's cKDTree, trimesh), where an interrupt could crash the process; the loop then raises
    ``KeyboardInterrupt`` itself. A second Ctrl-C raises at once.

    SIGTERM (``timeout``, a job scheduler) is deferred the same way when a Python handler of the
    process's takes it (``voxface evaluate``'s :func:`voxface.cli.sigterm_as_interrupt`, which raises
    ``KeyboardInterrupt``): that handler runs at the next check (at once for a second SIGTERM). Its
    default action (the process ends, nothing having been written) and an ignored SIGTERM are left
    as they are. The previous handlers are restored on exit (nothing is installed off the main thread)."""

    def __init__(self) -> None:
        self.requested = False
        #: a SIGTERM waiting for the next check, its handler then run
        self.terminated = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM:
            if self.terminated:  # a second SIGTERM: its handler now
                self._old[signal.SIGTERM](signum, frame)
            self.terminated = True
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.terminated:
            self.terminated = False
            self._old[signal.SIGTERM](signal.SIGTERM, None)
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self) -> "_DeferSigint":
        try:
            self._old[signal.SIGINT] = signal.signal(signal.SIGINT, self._handler)
            if callable(signal.getsignal(signal.SIGTERM)):  # a Python handler's, not SIG_DFL or SIG_IGN
                self._old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old.clear()


def _score(report: EvalReport, meshes: dict[int, Any], crops: dict[int, np.ndarray], stop: _DeferSigint, bar: Any, *,
           model: Any, start: int, codes: dict[str, Any], res: int, fine: Any, grid: Any, batch_size: int,
           samples: list, sampler: Any, head: Any, points: int, base_occ: Any, base_occ_fine: Any, base_mesh: Any,
           base_scene: Any, keep_meshes: int, upsample: str) -> None:
    """The per-sample scoring loop of :func:`evaluate` over one block of faces, ``start + j`` for the
    ``j``-th of ``samples`` (``codes``: :func:`_block_codes`; ``stop`` is checked between samples).
    Keeps the meshes and crops of the ``keep_meshes`` lowest-IoU faces so far in ``meshes``/``crops``."""
    import trimesh

    from .mesh import extract_mesh
    from .metrics import iou, sampled_surface
    from .reconstruct import decode_at, fine_group

    z_id, z_exp, swap_np, direct_np, pose_err = (codes[k] for k in ("z_id", "z_exp", "swap", "direct", "pose_err"))
    # logits on the evaluation grid (refined when finer) a group of faces at a time: a whole batch on the
    # model's grid, on a finer one as many as reconstruct refines at once (4 at 256^3: a batch of 16 held
    # 1 GiB of float32 logits there, 8 GiB at 512^3)
    group = fine_group(model, res, batch_size)

    for j, s in enumerate(samples):
        stop.check()
        i = start + j
        if j % group == 0:
            logits_np = decode_at(model, z_id[j : j + group], z_exp[j : j + group], res, upsample=upsample)[0]
        logit = logits_np[j % group]  # (R_f, R_f, R_f) float32 on `fine`
        gt_v = sampler.head.person(s["id_coeffs"]).closed_head(s["exp_coeffs"])
        gt_mesh = trimesh.Trimesh(gt_v, head.faces, process=False)
        occ = s["occ"] if fine is grid else sampler.occupancy(gt_v, fine)  # exact, on the evaluation grid
        rec: dict[str, Any] = {"index": i, "iou": float(iou(logit > 0, occ)),
                               "swap_iou": float(iou(swap_np[j] > 0, s["occ_swap"])),
                               "pose_deg": float(pose_err[j])}
        base: dict[str, Any] = {"index": i, "iou": float(iou(base_occ_fine, occ)),
                                "swap_iou": float(iou(base_occ, s["occ_swap"]))}
        if direct_np is not None:  # the direct IoU on the model's grid too, beside swap_iou's
            rec["grid_iou"] = float(iou(direct_np[j] > 0, s["occ"]))
            base["grid_iou"] = float(iou(base_occ, s["occ"]))
        try:
            pm = extract_mesh(logit, fine).mesh
        except VoxfaceError as e:  # an empty (or NaN) prediction scores as a miss, not a crash; the record says why
            pm, rec["failure"] = None, str(e)
        # the same ground-truth points (seed 10000 + i), sampled once, for the model and the baseline
        gt_surface = sampled_surface(gt_mesh, points, seed=10_000 + i)
        base_surface = sampled_surface(base_mesh, points, seed=i, scene=base_scene)
        for dst, pred in ((rec, pm), (base, base_surface)):
            dst.update(surface_scores(pred, gt_surface, head.face_region, points, seed=i))
        report.samples.append(rec)
        report.baseline.append(base)
        if keep_meshes > 0:  # the lowest (iou, index) so far: the faces worst_case_rows picks
            meshes[i], crops[i] = (pm, gt_mesh), s["image"]
            if len(meshes) > keep_meshes:
                drop = max(meshes, key=lambda k: (report.samples[k]["iou"], k))
                del meshes[drop], crops[drop]
        bar.update(1)


def _is_miss(record: dict[str, Any], key: str) -> bool:
    """Whether ``record[key]`` is the score :func:`surface_scores` gives a miss (:data:`_MISS`) rather
    than a measurement: a surface metric of a prediction with no surface (a ``failure``) or, for a
    ``face_*`` metric, with no surface near the face. IoU, swap IoU and pose are always measurements."""
    face = key.startswith("face_")
    if (key[5:] if face else key) not in _SURFACE_KEYS:
        return False
    return record.get("face_chamfer_l1" if face else "chamfer_l1") == _MISS["chamfer_l1"]


def histogram_edges(values: list[float], bins: int = 30) -> np.ndarray:
    """``bins + 1`` bin edges over the finite ``values`` of all series of a metric (one set per metric)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


#: How histograms.png labels each metric: ``key -> (title, x-axis label)``; the title says which way is better.
HISTOGRAM_METRICS: dict[str, tuple[str, str]] = {
    "iou": ("occupancy IoU, higher is better", "IoU (unitless, 0-1)"),
    "swap_iou": ("identity/expression swap IoU, higher is better", "IoU (unitless, 0-1)"),
    "pose_deg": ("head pose error (degrees), lower is better", "rotation error (degrees)"),
    "chamfer_l1": ("whole-head Chamfer-L1 (mm), lower is better", "Chamfer-L1 distance (mm)"),
    "face_chamfer_l1": ("face Chamfer-L1 (mm), lower is better", "face-region Chamfer-L1 distance (mm)"),
    "fscore@1.0": ("F-score at 1 mm, higher is better", "F-score (unitless, 0-1)"),
    "face_fscore@1.0": ("face F-score at 1 mm, higher is better", "F-score (unitless, 0-1)"),
    "fscore@2.5": ("F-score at 2.5 mm, higher is better", "F-score (unitless, 0-1)"),
    "face_fscore@2.5": ("face F-score at 2.5 mm, higher is better", "F-score (unitless, 0-1)"),
    "normal_consistency": ("normal consistency, higher is better", "normal consistency (unitless, 0-1)"),
    "face_normal_consistency": ("face normal consistency, higher is better", "normal consistency (unitless, 0-1)"),
    # only when the evaluation grid is finer than the model's (the panel is blank otherwise)
    "grid_iou": ("occupancy IoU on the model's grid, higher is better", "IoU (unitless, 0-1)"),
}


def decoded_from(report: EvalReport) -> str:
    """What the report's meshes were decoded from and at what grid, for titles and captions:
    the codes read from the crops, or the true coefficients (``--latents true``: the decoder
    alone), at ``R^3`` (with the upsampling that reached it)."""
    what = ("the true coefficients (--latents true: the decoder alone, not read from the crops)"
            if report.latents == "true" else "codes read from the crops")
    grid = f"{report.resolution}^3 grid" + (f" (--upsample {report.upsample})"
                                           if report.upsample not in ("none", "", None) else "")
    return f"{what}, {grid}"


def histogram_figure(report: EvalReport, pyplot: bool = True) -> Any:
    """The matplotlib ``Figure`` of histograms.png: one histogram per metric of
    :data:`HISTOGRAM_METRICS`, the model's faces beside the mean-head baseline's on shared bin
    edges (:func:`histogram_edges`; ``pose_deg`` has no baseline). Titles name the metric, its
    unit and which way is better; x axes carry the unit, y axes count faces (integer ticks). The
    surface metrics of a miss (a prediction with no surface, or none near the face for ``face_*``:
    scored as a surface 10 m away, :func:`surface_scores`) are left out of their histograms, the
    legend counting them: one such 10 m drew every face's Chamfer into one bin.

    ``pyplot``: a figure of pyplot's (shown inline in a notebook; the caller closes it), else a
    bare ``Figure`` on an Agg canvas that pyplot never sees (for files: the process's backend,
    a notebook's inline one included, stays as it was)."""
    from matplotlib.ticker import MaxNLocator

    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(16, 11))
    else:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(16, 11))
        FigureCanvasAgg(fig)
    axes = fig.subplots(3, 4)
    for ax, (k, (title, xlabel)) in zip(axes.ravel(), HISTOGRAM_METRICS.items()):
        if not report.samples or k not in report.samples[0]:
            ax.axis("off")
            continue
        series = []
        for name, recs, alpha in (("voxface", report.samples, 0.7), ("mean head", report.baseline, 0.5)):
            if not recs or k not in recs[0]:  # pose_deg: no baseline
                continue
            vals = [r[k] for r in recs if not _is_miss(r, k)]  # a miss's 10 m squeezed every face into one bin
            misses = len(recs) - len(vals)
            series.append((name + (f" ({misses} miss{'es' * (misses > 1)} not shown)" if misses else ""), vals, alpha))
        edges = histogram_edges([v for _, vals, _ in series for v in vals])
        for label, vals, alpha in series:  # shared edges: the bars of both series are comparable
            ax.hist(vals, bins=edges, alpha=alpha, label=label)
        ax.set_title(title, fontsize="medium")  # "large" ran past the figure's right edge
        ax.set_xlabel(xlabel)
        ax.set_ylabel("faces")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", fontsize="small", framealpha=0.7)  # "best": where it hides the fewest bars
    for ax in axes.ravel()[len(HISTOGRAM_METRICS):]:
        ax.axis("off")
    # two lines: with --latents true and a finer grid one line ran past both edges of the figure
    fig.suptitle(f"voxface evaluate: {report.num} unseen faces (seed {report.seed}), vs the mean-head baseline\n"
                 f"voxface from {decoded_from(report)}")
    fig.tight_layout()
    return fig


#: Column captions of worst_cases.png after each row's first panel (the crop, captioned with the sample).
WORST_CASE_COLUMNS = ("truth, front", "voxface, front", "truth, side (yaw 60)", "voxface, side (yaw 60)")


def worst_case_rows(report: EvalReport, extras: dict[str, Any], worst: int = 6,
                    size: int = 192, bar: Any = None) -> tuple[list[np.ndarray], list[str]]:
    """The panels and captions of worst_cases.png: the ``worst`` samples of lowest IoU whose meshes
    ``extras["meshes"]`` kept, one row of five ``(size, size, 3)`` uint8 panels each: the crop, then
    :data:`WORST_CASE_COLUMNS` (ground truth and prediction seen from the front and from yaw 60).

    Truth and prediction of a row share one framing (:func:`voxface.viz.shared_framing` of both,
    :func:`voxface.viz.render_sequence`): the same scale and centre, so a prediction too big, too
    small or shifted looks it. The crop's caption names the sample index and its IoU. An empty
    prediction is a grey panel. Returns ``(panels, captions)``, ``5 * rows`` of each, row-major.
    ``bar``: a tqdm progress bar updated once a row (:func:`save_plots`'), or ``None``.
    """
    from PIL import Image

    from .viz import render_sequence, shared_framing

    meshes = extras.get("meshes") or {}
    views = ((0.0, 0.0), (60.0, 0.0))
    panels: list[np.ndarray] = []
    captions: list[str] = []
    for r in sorted(report.samples, key=lambda r: r["iou"])[:worst]:
        i = r["index"]
        if i not in meshes:
            continue
        pm, gm = meshes[i]
        crop = (np.clip(extras["crops"][i].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)  # (S, S, 3)
        crop = np.asarray(Image.fromarray(crop).resize((size, size)))
        both = [gm] if pm is None else [gm, pm]
        (g_front, g_side), *pred = render_sequence(both, views, size, framing=shared_framing(both))
        empty = np.full((size, size, 3), 200, np.uint8)
        p_front, p_side = pred[0] if pred else (empty, empty)
        panels += [crop, g_front, p_front, g_side, p_side]
        pred_caps = list(WORST_CASE_COLUMNS[1::2]) if pm is not None else ["voxface: empty mesh"] * 2
        captions += [f"sample {i}: IoU {r['iou']:.3f} (crop)", WORST_CASE_COLUMNS[0], pred_caps[0],
                     WORST_CASE_COLUMNS[2], pred_caps[1]]
        if bar is not None:
            bar.update(1)
    return panels, captions


def save_plots(report: EvalReport, extras: dict[str, Any], out_dir: str | os.PathLike, worst: int = WORST_CASES,
               size: int = 192, progress: bool = True) -> list[Path]:
    """Write histograms.png (:func:`histogram_figure`) and, when ``extras`` kept meshes,
    worst_cases.png (:func:`worst_case_rows`: the ``worst`` lowest-IoU faces beside their ground
    truth, each row's pair in one framing, panels ``size`` px square) into ``out_dir``, with a
    progress bar (``progress``: the histograms, then each rendered row). Returns the paths written."""
    from tqdm.auto import tqdm

    from .mesh import atomic_write_bytes
    from .viz import image_grid, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    meshes = extras.get("meshes") or {}
    rows = sum(r["index"] in meshes for r in sorted(report.samples, key=lambda r: r["iou"])[:worst])
    with tqdm(total=1 + rows, desc="plots", disable=not progress, unit="plot") as bar:
        buf = io.BytesIO()  # a bare Figure: matplotlib.use("Agg") here switched a notebook's inline backend off
        histogram_figure(report, pyplot=False).savefig(buf, format="png", dpi=80)
        written.append(atomic_write_bytes(out / "histograms.png", buf.getvalue()))  # errors name the file
        bar.update(1)
        panels, captions = worst_case_rows(report, extras, worst, size, bar=bar)
    if panels:
        grid = image_grid(panels, ncols=1 + len(WORST_CASE_COLUMNS), labels=captions,
                          title=f"the {len(panels) // (1 + len(WORST_CASE_COLUMNS))} faces of lowest IoU; "
                                f"voxface from {decoded_from(report)}")
        written.append(save_png(grid, out / "worst_cases.png"))
    return written
