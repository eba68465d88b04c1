"""Checkpoint commands: inspect, init-checkpoint, release.

torch and the model code are imported inside the commands so ``voxface --help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import TORCH_SEEDS, app, check_not_special, check_seed, input_file, output_file


@app.command("inspect")
def inspect_cmd(
    ckpt: Path = typer.Argument(..., parser=input_file,
                                help="Checkpoint file (voxface's, or a foreign torch one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show what a checkpoint holds (networks, parameters, FLOPs, config, metadata).

    Reading never runs code from the file (torch.load with weights_only=True).
    """
    import json

    from ..checkpoint import inspect_checkpoint

    info = inspect_checkpoint(ckpt)
    typer.echo(json.dumps(info.to_dict(), indent=2) if as_json else info.format())


@app.command("init-checkpoint")
def init_checkpoint_cmd(
    config: Path = typer.Option(..., "--config", "-c", parser=input_file, metavar="<path>",
                                help="YAML file with a `model:` section."),
    output: Path = typer.Option(..., "--out", "-o", "--output", parser=output_file, metavar="<path>",
                                help="Checkpoint file to write."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation (any torch.manual_seed takes)."),
    half: bool = typer.Option(False, "--half", help="Store weights as float16."),
) -> None:
    """Write a randomly initialised model as a checkpoint (a starting point, or for tests).

    An existing -o that is a training checkpoint with resume state is refused, not replaced.
    """
    check_seed(seed, *TORCH_SEEDS)  # before the config: out of range, torch's error would be blamed on it
    import torch

    from ..checkpoint import check_output_checkpoint, save_checkpoint
    from ..config import error_in_file, load_yaml, model_config
    from ..errors import ConfigError
    from ..models import count_parameters, create_model

    check_not_special(output)  # a device or FIFO there: replaced by a file (a FIFO: read first, a hang)
    check_output_checkpoint(output, "initialised checkpoint")  # never a run's last.pth.tar, a folder, the config
    data = load_yaml(config)
    section = data.get("model")
    if not isinstance(section, dict):
        raise ConfigError("has no `model:` section (a mapping describing encoder and decoder)", config)
    try:  # the file, not its section: a model key beside model: (its indent lost) is refused, not dropped
        cfg = model_config(config)
        torch.manual_seed(seed)
        model = create_model(cfg)
    except ConfigError as e:  # named in the file of the config's inherit_from chain its key is in
        raise error_in_file(e, config) from None
    except ValueError as e:
        raise ConfigError(str(e), config) from None
    path = save_checkpoint(output, model, extra={"init_seed": seed}, half=half)
    size = path.stat().st_size / 1e6
    typer.echo(
        f"wrote {path} ({count_parameters(model):,} parameters, {size:.1f} MB, "
        f"{'float16' if half else 'float32'}, seed {seed})"
    )


@app.command("release")
def release_cmd(
    ckpt: Path = typer.Argument(..., parser=input_file,
                                help="Training checkpoint (e.g. runs/voxface-64/best.pth.tar)."),
    output: Path = typer.Option(..., "--out", "-o", "--output", parser=output_file, metavar="<path>",
                                help="Checkpoint file to write."),
    half: bool = typer.Option(True, "--half/--float32", help="Store weights as float16 (default)."),
    report: Path | None = typer.Option(None, "--report", parser=input_file, metavar="<path>",
                                       help="A `voxface evaluate` report.json to embed."),
    annotate: int = typer.Option(0, "--annotate", min=0, max=4096,
                                 help="Name the prior's principal directions after the coefficients they follow, "
                                      "from this many validation faces (the run's data, else synthetic ICT faces); "
                                      "0: keep the prior as it is."),
    ict_root: Optional[str] = typer.Option(None, "--ict-root", help="ICT-FaceKit clone or FaceXModel folder for "
                                           "--annotate's synthetic faces (default: the run's data.ict_root, "
                                           "else $VOXFACE_ICT_ROOT)."),
) -> None:
    """Strip resume state (optimizer, scheduler, RNG) and store weights as float16 for shipping.

    The output must be another file than CKPT (releasing in place would lose the resume state).
    --float32 on a checkpoint already stored in float16 warns: it cannot bring back the precision.
    --annotate N correlates the prior's principal directions with the ground-truth coefficients of
    N validation faces (`voxface.latent.annotate_directions`), so that `walk`, the explorer and
    `latent.principal_directions` name them (e.g. jawOpen).
    """
    import json

    from ..checkpoint import _same_file, check_output_checkpoint, load_model_and_checkpoint, release_checkpoint
    from ..errors import CheckpointError, VoxfaceError

    # the output is checked before the report and --annotate's rendering (minutes), not after them
    if _same_file(ckpt, output):
        release_checkpoint(ckpt, output)  # its in-place refusal, raised before any work
    check_not_special(output)  # a device or FIFO there: replaced by a file (a FIFO: read first, a hang)
    check_output_checkpoint(output, "release")
    extra = {}
    if report is not None:
        try:
            data = json.loads(report.read_text())
        except OSError as e:  # the reason alone: str(e) repeats the path ("[Errno 2] ...: 'r.json'")
            raise VoxfaceError(f"cannot read the evaluation report ({e.strerror or e})", report) from None
        except UnicodeDecodeError as e:  # a picture or a binary file given for the JSON
            raise VoxfaceError(f"is not UTF-8 text (byte {e.start}: 0x{e.object[e.start]:02x}), not a `voxface "
                               "evaluate --report` JSON file", report) from None
        except ValueError as e:
            raise VoxfaceError(f"cannot read the evaluation report ({e})", report) from None
        extra["evaluation"] = _evaluation(data, report, ckpt)
    provenance = extra.get("evaluation", {}).get("provenance")
    scored = provenance.get("checkpoint_sha256") if isinstance(provenance, dict) else None
    scored = scored if isinstance(scored, str) else None  # the bytes the report scored, when it says
    expect, prior = scored, None
    if annotate:  # the file read once, for its names and (before the rendering) against the report
        model, ck = load_model_and_checkpoint(ckpt, device="cpu")
        expect = model.source.sha256
        if scored is not None and scored != expect:
            raise _stale_report(report, scored, expect, ckpt, provenance)
        prior = _annotated_prior(model, ck, ckpt, annotate, ict_root)
        del model, ck
    try:  # --float32 of float16: a `warning:` line
        path = release_checkpoint(ckpt, output, half=half, extra=extra, prior=prior, expect_sha256=expect)
    except CheckpointError as e:
        if e.reason != "changed" or scored is None or expect != scored:
            raise
        import hashlib

        with open(ckpt, "rb") as f:  # the report's bytes are not the file's: say so of the report
            raise _stale_report(report, scored, hashlib.file_digest(f, "sha256").hexdigest(), ckpt,
                                provenance) from None
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {'float16' if half else 'float32'})")


def _stale_report(report: Path | None, scored: str, read: str, ckpt: Path, provenance: object = None) -> Exception:
    """The error of a report whose ``provenance`` scored other bytes (SHA-256 ``scored``) than ``ckpt``'s
    (``read``): the report of another file when the absolute path ``provenance`` records is another file
    here, else of this one written again since."""
    from ..errors import VoxfaceError, printable

    other = provenance.get("checkpoint") if isinstance(provenance, dict) else None
    if isinstance(other, str) and _another_file(Path(other), ckpt):
        return VoxfaceError(f"evaluates {other}, not {ckpt} (SHA-256 {printable(scored[:16])}..., not {read[:16]}...); "
                            "embed a report of this checkpoint", report)
    return VoxfaceError(f"scored a file of SHA-256 {printable(scored[:16])}..., but {ckpt} is {read[:16]}... (written "
                        "again since the report was made?); evaluate it again and embed that report", report)


def _annotated_prior(model, ck: dict, ckpt: Path, n: int, ict_root: Optional[str] = None) -> dict:
    """The prior of ``model`` (read from ``ckpt`` as the dict ``ck``) with its directions named from ``n``
    validation faces: of the data the run recorded when it is on this machine, else rendered afresh
    (synthetic ICT-FaceKit faces, from ``ict_root`` when given)."""
    from ..data import build_dataset
    from ..errors import VoxfaceError
    from ..latent import annotate_directions, trains_coefficient_coordinates

    if not model.prior:
        raise VoxfaceError("has no latent prior to annotate (--annotate)", ckpt)
    extra = ck.get("extra")
    run = extra.get("run_config") if isinstance(extra, dict) else None
    data_cfg = run.get("data") if isinstance(run, dict) else None
    dataset = None
    if isinstance(data_cfg, dict):
        if ict_root is not None and data_cfg.get("kind", "synthetic") == "synthetic":
            data_cfg = {**data_cfg, "ict_root": ict_root}
        try:
            dataset = build_dataset(data_cfg, "val", model.config)
        except (VoxfaceError, OSError) as e:
            typer.echo(f"note: --annotate: the run's data is not here ({e}); rendering {n} synthetic validation faces",
                       err=True)
    if dataset is None:
        dataset = build_dataset({"kind": "synthetic", "num_val": n, "ict_root": ict_root}, "val", model.config)
    if len(dataset) < n:  # the run's validation split is smaller than asked: say so, not a silent smaller n
        typer.echo(f"note: --annotate: the run's validation data holds {len(dataset)} faces, fewer than {n}; "
                   f"naming the directions from those {len(dataset)}", err=True)
    from tqdm.auto import tqdm

    count = min(n, len(dataset))
    try:
        # each face rendered: minutes for 256; shown when stderr is a terminal (as export-onnx's)
        with tqdm(total=count, desc="annotate", unit="face", disable=None) as bar:
            annotate_directions(model, _ticking(dataset, bar), range(count))
    except KeyError as e:  # items without ground-truth coefficients (a folder of real scans)
        raise VoxfaceError(f"--annotate needs data with ground-truth coefficients; its items have no {e}", ckpt) from None
    loss = (run.get("train") or {}).get("loss") if isinstance(run, dict) else None
    if isinstance(loss, dict) and "coefficient_coordinates" not in model.prior:
        # the run trained its codes to be the coefficients: z_exp[j] is blendshape j (latent.expression_names)
        model.prior["coefficient_coordinates"] = trains_coefficient_coordinates(loss)
    return model.prior


def _ticking(dataset, bar):
    """``dataset`` whose items advance ``bar`` (a tqdm) as they are built; its class name, length and
    attributes are the dataset's (``latent.annotate_directions`` reads the coefficient names there)."""
    def item(self, i):
        out = dataset[i]
        bar.update(1)
        return out

    cls = type(type(dataset).__name__, (), {"__getitem__": item, "__len__": lambda self: len(dataset),
                                            "__getattr__": lambda self, name: getattr(dataset, name)})
    return cls()


#: The keys of a `voxface evaluate` report (voxface.evaluate.EvalReport.to_dict) that a release embeds.
_REPORT_KEYS = ("num", "seed", "resolution", "summary")
#: What the report says about how it was measured, embedded too when present.
_REPORT_SETTINGS = ("latents", "upsample", "points", "checkpoint", "provenance")


def _evaluation(data: object, report: Path, ckpt: Path | None = None) -> dict:
    """The part of a `voxface evaluate --report` JSON a release embeds; anything else is refused:
    a report of the decoder on the true coefficients (``--latents true``: not what the model does
    from a photo) and a report of another checkpoint file. Which file a report scored is the SHA-256
    its ``provenance`` records of the bytes, checked by the release's own read
    (``release_checkpoint(expect_sha256=...)``): a copy of those bytes under another name, or a report
    made in another folder, is this file's. Only a report without it is judged by the file it names,
    when that file is here."""
    from ..checkpoint import DEFAULT_WEIGHTS
    from ..errors import VoxfaceError

    what = "a `voxface evaluate --report` file (a JSON object with num, seed, resolution and summary)"
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(data), "a number")
        raise VoxfaceError(f"holds {kind}, not {what}", report)
    missing = [k for k in _REPORT_KEYS if k not in data]
    if missing:
        raise VoxfaceError(f"lacks {', '.join(missing)}: not {what}", report)
    bad = [k for k in ("num", "seed", "resolution") if not isinstance(data[k], int) or isinstance(data[k], bool)]
    if bad or not isinstance(data["summary"], dict):
        wrong = ", ".join(f"{k} is not a whole number" for k in bad) or "summary is not an object"
        raise VoxfaceError(f"{wrong}: not {what}", report)
    # a hand-edited or damaged report: shipped in the release, `inspect` showed "-4 unseen faces (seed 1,
    # 0^3)" or "IoU nan" (evaluate writes counts of at least 1 and finite scores only)
    low = [f"{k} is {data[k]}" for k, least in (("num", 1), ("resolution", 1), ("seed", 0)) if data[k] < least]
    if low:
        raise VoxfaceError(f"{', '.join(low)}: not {what}", report)
    if not _all_finite(data["summary"]):
        raise VoxfaceError(f"its summary holds NaN or Infinity, which `voxface evaluate` never writes: not {what}",
                           report)
    if data.get("latents", "encoder") != "encoder":
        raise VoxfaceError(f"evaluates the decoder on {data['latents']} coefficients, not the model on photos; embed "
                           "a report made without --latents", report)
    named = data.get("checkpoint")  # as evaluate was given it: relative to the folder it ran in
    provenance = data.get("provenance")
    if isinstance(provenance, dict) and isinstance(provenance.get("checkpoint_sha256"), str):
        named = None  # the bytes it scored decide (release_cmd), not a name another folder reads otherwise
    if ckpt is not None and isinstance(named, str):
        evaluated = Path(DEFAULT_WEIGHTS) if named == "bundled" else Path(named)
        if _another_file(evaluated, ckpt):
            raise VoxfaceError(f"evaluates {evaluated}, not {ckpt}; embed a report of this checkpoint", report)
    return {k: data[k] for k in _REPORT_KEYS + _REPORT_SETTINGS if k in data}


def _another_file(named: Path, ckpt: Path) -> bool:
    """Whether ``named`` (a path a report records) is a file here other than ``ckpt``; a name no file can
    have (too long: the system's OSError) is none."""
    from ..checkpoint import _same_file

    try:
        return named.is_file() and not _same_file(named, ckpt)
    except OSError:
        return False


def _all_finite(value: object) -> bool:
    """Whether every number in ``value`` (a JSON value) is finite."""
    import math

    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True
