"""Typed configuration: YAML files in ``configs/`` map onto these dataclasses.

A YAML file may name a parent with ``inherit_from: other.yaml`` (a path relative to the file, ``~`` expanded);
keys of the child override the parent's recursively: mappings merge key by key, any other value
(a list such as ``widths`` included) replaces the parent's whole. A config given as a dict may too, its path
relative to the current folder (a dict has no file of its own): see :func:`expand_inherit`. Files are read with ``yaml.safe_load``.
Unknown keys are an error, so a typo never silently falls back to a default; so is a key given
twice in one mapping (YAML would keep the last, dropping the first section's values).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, InputTypeError

T = TypeVar("T")


@dataclass
class FrameConfig:
    """The canonical volume: an axis-aligned cube in the canonical frame (millimetres).

    See :mod:`voxface.frame` for the frame itself and the voxel-to-millimetre mapping.
    """

    # Holds every sampled ICT head (measured over 300 random identities/expressions, jaw open
    # included: x -138..140, y -215..157 (neck cap), z -193..84 mm) with >= 13 mm margin.
    #: Edge of the cube in millimetres (a cell is ``side_mm / resolution`` mm).
    side_mm: float = 400.0
    #: Centre of the cube ``(x, y, z)`` in canonical millimetres.
    center_mm: tuple[float, float, float] = (0.0, -30.0, -55.0)


@dataclass
class EncoderConfig:
    """2D CNN from an RGB crop ``(B, 3, S, S)`` to ``z_id``, ``z_exp`` and a head pose."""

    #: Registry key of the architecture (:data:`voxface.models.ENCODERS`): ``"resnet"``.
    name: str = "resnet"
    #: Side ``S`` of the square crop in pixels (the detector crops to it); at least
    #: ``2 ** (1 + len(widths))``.
    image_size: int = 128
    #: Channels of each stage; the stem (a stride-2 5x5 convolution) and every stage halve the
    #: resolution. Each width must be split into ``min(8, c // 4)`` GroupNorm groups evenly.
    widths: tuple[int, ...] = (32, 64, 128, 256)
    #: Residual blocks (two 3x3 convolutions) per stage, one entry per ``widths`` entry.
    blocks: tuple[int, ...] = (1, 2, 2, 1)
    #: Length of the identity code ``z_id`` (the shipped model: 100, the ICT identity modes).
    z_id: int = 128
    #: Length of the expression code ``z_exp`` (the shipped model: 53, the ARKit blendshapes).
    z_exp: int = 64
    #: Dropout probability on the pooled features before the heads' shared layer, in ``[0, 1)``.
    dropout: float = 0.0
    #: How the last feature map ``(B, C, S / 2^(1 + len(widths)), ...)`` (``S/32`` for four
    #: stages) becomes one vector: ``"pool"`` averages it
    #: (translation-invariant, loses where things are), ``"flatten"`` keeps every cell (a 1x1
    #: convolution to ``readout_channels`` first, then the cells side by side), so the heads see where
    #: each feature lies: the geometry identity is read from.
    readout: str = "pool"
    readout_channels: int = 64


@dataclass
class DecoderConfig:
    """3D CNN from ``(z_id, z_exp)`` to occupancy logits ``(B, 1, R, R, R)``.

    The latent is projected to a ``base_resolution``^3 grid of ``widths[0]`` channels, upsampled by
    transposed convolutions (x2 per stage) to ``R / shuffle``. ``widths`` must have
    ``log2(R / shuffle / base_resolution) + 1`` entries. Two output layers (``name``):

    * ``conv3d``: a last layer predicts ``shuffle**3`` sub-voxels per cell (a 3D pixel shuffle),
      giving ``R``^3 logits.
    * ``deform``: a last layer predicts a displacement field and a logit residual at ``2 R / shuffle``;
      the ``R``^3 logits are a learned template volume (``template_resolution``^3, initialised from
      the training set's mean occupancy) sampled at the displaced cell centres, plus the residual
      (both fields trilinearly upsampled). Cheap, smooth, and exact about the mean head from step 0.
    """

    name: str = "conv3d"
    resolution: int = 64
    base_resolution: int = 4
    widths: tuple[int, ...] = (128, 64, 32, 16)
    shuffle: int = 2
    res_blocks: int = 1  # residual 3x3x3 blocks per stage, at stages of at most 16^3 cells
    #: ``deform`` decoder only: side of the learned template logit volume (0: ``resolution``).
    template_resolution: int = 0


@dataclass
class RefineConfig:
    """Optional refinement head (:mod:`voxface.refine`): occupancy logits at any canonical point.

    An MLP of ``layers`` hidden layers of ``hidden`` units reads the decoder's last feature volume
    (trilinearly sampled), a periodic encoding of the point inside its feature cell (``pe_freqs``
    frequencies per axis) and the coarse logit there; it predicts a correction to that logit.
    """

    hidden: int = 64
    layers: int = 2
    pe_freqs: int = 4


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`voxface.models.VoxFace`; stored in every checkpoint.

    ``refine`` is ``None`` (no refinement head) unless a head was trained (``voxface refine-train``).
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    frame: FrameConfig = field(default_factory=FrameConfig)
    refine: RefineConfig | None = None

    @property
    def resolution(self) -> int:
        """Cells per side of the decoder's logit grid (``decoder.resolution``)."""
        return self.decoder.resolution


def _resolve_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        # np.int64(8) from np.arange, an array as a centre: their Python values (a checkpoint's config
        # must stay plain data for weights_only loading)
        value = value.tolist()
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # a section built by hand ({'encoder': EncoderConfig(...)}): checked as a
            # file's values are, and copied (the caller's instance, changed later, was the model's config)
            value = to_dict(value)
        if value is None:  # `encoder:` with every key commented out: not the defaults, nor the parent's keys
            raise ConfigError(f"{where}: the section is empty (null): give it keys, or leave it out for the "
                              "defaults (or the inherited values)")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            one = f" (one value is a list too: [{value}])" if isinstance(value, (str, int, float)) and \
                not isinstance(value, bool) and str(value) and args[-1:] == (Ellipsis,) else ""
            of = f" of {len(args)} values" if args and args[-1] is not Ellipsis else ""
            raise ConfigError(f"{where}: expected a list{of}, got {value!r}{one}")
        if args and args[-1] is not Ellipsis and len(value) != len(args):  # tuple[float, float, float]
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {list(value)!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin in (list,):
        return list(value)
    if origin in (dict,):
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # a YAML integer of 309+ digits: float() raised, a traceback
            raise ConfigError(f"{where}: expected a number, got an integer of {len(str(abs(value)))} digits, "
                              "beyond a float's range (about 1.8e308)") from None
    if tp is float:  # a string, list or bool is no number (it went through, to fail later in a traceback)
        hint = ""
        text = value.strip() if isinstance(value, str) else ""
        number = re.fullmatch(r"([+-]?)(\d*)(\.?)(\d*)[eE]([+-]?)(\d+)", text)
        if number and (number[2] or number[4]):  # PyYAML's 1e-3, 1.5e3, .5e3
            # PyYAML's float needs a digit before the dot, the dot and a signed exponent: 1e3 is 1.0e+3
            sign, whole, _, frac, esign, exp = number.groups()
            fixed = f"{sign}{whole or '0'}.{frac or '0'}e{esign or '+'}{exp}"
            hint = f" (YAML reads {value} as text: write {fixed})"
        raise ConfigError(f"{where}: expected a number, got {value!r}{hint}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is int and not isinstance(value, int):
        hint = ""
        try:  # 1e5 (text to PyYAML) or 1.0e+5 (a float) for a count
            number = float(value) if isinstance(value, float) or (
                isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value.strip())) else None
        except ValueError:
            number = None
        if number is not None and math.isfinite(number) and number.is_integer() and abs(number) < 2**63:
            hint = f" (YAML reads {value} as text: write {int(number)})" if isinstance(value, str) else \
                f" (write {int(number)})"
        raise ConfigError(f"{where}: expected int, got {value!r}{hint}")
    if tp is str and isinstance(value, os.PathLike):  # a path from Python (init_from, data.root): its text
        return os.fsdecode(value)
    if tp is str and isinstance(value, bool):  # YAML 1.1: unquoted off/no/on/yes are booleans
        raise ConfigError(f"{where}: expected text, got {value!r} (YAML reads an unquoted off, no, on or yes as "
                          f"{str(value).lower()}: put the word in quotes, e.g. {'on' if value else 'off'!r})")
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def keyed_error(error: ConfigError, key: str) -> ConfigError:
    """``error`` with ``key`` (the dotted key it is about, ``model.encoder.z_id``) as its ``key``
    attribute, unless a deeper one set it: what :func:`error_in_file` looks up with
    :func:`key_source` to name the file of an ``inherit_from`` chain that sets the key. For code
    that validates a model config outside this module (:func:`voxface.models.create_model`)."""
    if getattr(error, "key", None) is None:
        error.key = key  # type: ignore[attr-defined]
    return error


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from a (nested) dict, refusing unknown keys."""
    data = dict(data or {})
    hints = _resolve_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # YAML keys may be numbers, booleans or null too
    if unknown:
        raise keyed_error(ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}"
                                      f"{_did_you_mean(unknown, names)}"), f"{where}.{unknown[0]}")
    kwargs = {}
    for k, v in data.items():
        try:
            kwargs[k] = _coerce(hints[k], v, f"{where}.{k}")
        except ConfigError as e:
            raise keyed_error(e, f"{where}.{k}")
    return cls(**kwargs)


def _did_you_mean(unknown: list[Any], names: set[str]) -> str:
    """``"; did you mean 'z_id' for 'z_idd'?"``: the known key closest to each unknown one that is
    a likely typo of it (:func:`difflib.get_close_matches`), or ``""`` when none is."""
    import difflib

    pairs = [(difflib.get_close_matches(k, sorted(names), n=1, cutoff=0.75), k) for k in unknown if isinstance(k, str)]
    guesses = [f"{match[0]!r} for {k!r}" for match, k in pairs if match]
    return f"; did you mean {', '.join(guesses)}?" if guesses else ""


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON/`weights_only`-safe) view of a config dataclass, or of a section kept as a
    dict (``data:``): NumPy scalars and arrays become their Python values and paths (``os.PathLike``)
    their text, as :func:`from_dict` reads them."""
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):  # np.int64(8) from a sweep's np.arange
        obj = obj.tolist()
    if isinstance(obj, os.PathLike):  # a data path given as a pathlib.Path (kind: cache's data.path)
        return os.fsdecode(obj)
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:  # the keys written here: those merged in (<<) may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (line {key_node.start_mark.line + 1}): YAML "
                        "would keep only the last", None)  # the message names the line
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader


def _yaml_problem(e: Any) -> str:
    """One line of a PyYAML error: what is wrong and where (its first line is often only the
    context, ``while scanning for the next token``, without the problem or the line)."""
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if not problem:
        return str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = f", {e.context}" if getattr(e, "context", None) else ""
    tab = "; indent with spaces, not tabs" if "'\\t'" in problem else ""
    return f"{where}{problem}{context}{tab}"


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config, following ``inherit_from`` chains; returns the merged dict.

    Raises :class:`ConfigError` naming the file (missing, empty, not YAML, a cycle, a ``model:``,
    ``data:`` or ``train:`` section left empty, which would drop the inherited one) and
    :class:`~voxface.errors.InputTypeError` for a ``path`` that is not a path (``None``)."""
    merged: dict = {}
    for _, layer in reversed(_load_layers(path)):
        merged = _merge(merged, layer)
    return merged


def key_source(path: str | os.PathLike[str], key: str) -> Path:
    """The file of ``path``'s ``inherit_from`` chain whose value of ``key`` (dotted, as a
    :class:`ConfigError` names it: ``model.encoder.widths[1]``) the merged config holds: the first
    file, from ``path`` up its parents, that sets it; ``path`` itself when none does (a default)."""
    layers = _load_layers(path)
    return next((file for file, layer in layers if _sets(layer, key)), layers[0][0])


def _sets(data: Any, key: str) -> bool:
    """Whether the (nested) dict ``data`` holds the dotted ``key`` (``model.encoder.widths[1]``: the list)."""
    node: Any = data
    for part in re.sub(r"\[\d+\]", "", key).split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def error_in_file(error: ConfigError, path: str | os.PathLike[str]) -> ConfigError:
    """``error``, about the config file ``path``, naming the file its key is in: ``path``, or the
    parent ``path`` inherits it from (then ``(inherited by <path>)`` is added). An error that
    names a file already, or whose key no file sets, names ``path``."""
    if error.path is not None:
        return error
    key = getattr(error, "key", None)
    source = key_source(path, key) if key else Path(path)
    inherited = f" (inherited by {path})" if source != Path(path) else ""
    return keyed_error(ConfigError(f"{error}{inherited}", source), key or "")


def error_in_dict(error: ConfigError, data: Any) -> ConfigError:
    """``error``, about the config dict ``data``, naming the file of its ``inherit_from`` chain that
    sets the error's key (then ``(inherited by the config dict)`` is added), as :func:`error_in_file`
    names a file's parent; ``error`` itself when the dict sets the key, no file does, or it names a
    file already."""
    key = getattr(error, "key", None)
    parent = data.get("inherit_from") if isinstance(data, dict) else None
    if error.path is not None or not key or not isinstance(parent, (str, os.PathLike)) or _sets(data, key):
        return error
    try:
        layers = _load_layers(Path(parent).expanduser())
    except ConfigError:  # expand_inherit reported it
        return error
    source = next((file for file, layer in layers if _sets(layer, key)), None)
    if source is None:  # a default's value
        return error
    return keyed_error(ConfigError(f"{error} (inherited by the config dict)", source), key)


def error_in_config(error: ConfigError, config: Any) -> ConfigError:
    """``error`` (keyed: :func:`keyed_error`) naming the file of ``config``'s ``inherit_from`` chain
    that sets its key: ``config`` a YAML path (:func:`error_in_file`) or a dict inheriting one
    (:func:`error_in_dict`); else (a ``ModelConfig``, ``None``) as it is."""
    if isinstance(config, (str, os.PathLike)):
        return error_in_file(error, config)
    if isinstance(config, dict):
        return error_in_dict(error, config)
    return error


def _load_layers(path: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    """The files of ``path``'s ``inherit_from`` chain with their keys (``inherit_from`` taken out),
    ``path`` first."""
    import yaml

    if not isinstance(path, (str, os.PathLike)):  # Path(None) was pathlib's bare TypeError
        raise InputTypeError(f"a config is the path of a YAML file, got {type(path).__name__} {path!r}")
    path = Path(path)
    seen: list[Path] = []
    layers: list[tuple[Path, dict[str, Any]]] = []
    child: Path | None = None  # the file whose inherit_from names path
    while True:
        if path.resolve() in seen:
            raise ConfigError("inherit_from forms a cycle", path)
        seen.append(path.resolve())
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            hint = ""
            if child is not None:
                hint = f" (the inherit_from of {child})"
            elif path.parent.is_dir():  # a typo in the name (in a clone: configs/voxface64.yaml)
                try:
                    names = sorted(p.name for p in path.parent.glob("*.y*ml"))
                except OSError:
                    names = []
                if names:
                    folder = "the current folder" if str(path.parent) == "." else path.parent
                    hint = f" ({folder} holds {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})"
            elif not path.is_absolute() and path.parts[:1] == ("configs",):
                # the README's configs/... paths: a pip-installed voxface has no configs/ folder
                hint = (" (configs/ is a folder of the voxface repository, not installed with the "
                        "package: run from a clone, or give the path of a YAML file)")
            raise ConfigError("config file not found" + hint, path) from None
        except UnicodeDecodeError as e:
            # torch.save's zip (a pickle before torch 1.6): a model where its config was asked for
            torch_file = bytes(e.object[:4]) == b"PK\x03\x04" or bytes(e.object[:2]) == b"\x80\x02"
            hint = " (this is a torch checkpoint, not a config: voxface.load_model reads those)" \
                if torch_file else ""
            raise ConfigError(f"is not UTF-8 text (byte {e.start}: 0x{e.object[e.start]:02x}); a config is a "
                              f"YAML file in UTF-8{hint}", path) from None
        except OSError as e:
            raise ConfigError(f"cannot read config ({e.strerror})", path) from None
        try:
            data = _safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML ({_yaml_problem(e)})", path) from None
        if data is None:  # an empty file (or comments only): train ran the defaults without a word
            raise ConfigError("is empty (no settings); a config has model:, data: and train: sections (e.g. "
                              "configs/voxface-64.yaml), or inherit_from: a file that has them", path)
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping at the top level (model:, data:, train:), not a "
                              f"{type(data).__name__}", path)
        empty = sorted(k for k in ("model", "data", "train") if k in data and data[k] is None)
        if empty:  # `train:` with every key commented out: was the defaults, the parent's section dropped
            raise keyed_error(ConfigError(f"{empty[0]}: the section is empty (null): give it keys, or leave it out "
                                          "for the defaults (or the inherited values)", path), empty[0])
        given = "inherit_from" in data  # `inherit_from:` with its path left out is null: not 'no parent'
        parent = data.pop("inherit_from", None)
        layers.append((path, data))
        if parent is None and not given:
            break
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError(f"inherit_from must name a YAML file (a path relative to this one), got {parent!r}",
                              path)
        child, path = path, (path.parent / Path(parent).expanduser())  # ~ as in a dict's inherit_from
    return layers


def expand_inherit(data: dict[str, Any]) -> dict[str, Any]:
    """A whole config dict with ``inherit_from: PATH`` merged over that YAML file (read with
    :func:`load_yaml`, so its own chain is followed); ``PATH`` is relative to the current folder,
    ``~`` expanded. A dict without ``inherit_from`` comes back as a shallow copy.

    >>> cfg = expand_inherit({"inherit_from": "configs/voxface-64.yaml", "train": {"total_steps": 100}})
    """
    data = dict(data)
    parent = data.pop("inherit_from", None)
    if parent is None:
        return data
    if not isinstance(parent, (str, os.PathLike)) or not str(parent).strip():
        raise ConfigError(f"inherit_from must name a YAML file (a path, relative to the current folder in a "
                          f"config dict), got {parent!r}")
    return _merge(load_yaml(Path(parent).expanduser()), data)


def model_config(data: "dict[str, Any] | ModelConfig | str | os.PathLike[str] | None" = None) -> ModelConfig:
    """A :class:`ModelConfig` from the path of a YAML config file (its ``model:`` section), a whole
    config dict (``load_yaml``'s: its ``model`` section), the ``model:`` section itself, or
    defaults (``None``). A :class:`ModelConfig` built by hand is checked as a file's values are and
    comes back as a new one (lists as tuples). Anything else is a :class:`ConfigError` naming what it
    takes."""
    if isinstance(data, (str, os.PathLike)):
        path, data = data, load_yaml(data)
        if not isinstance(data.get("model"), dict):
            raise ConfigError("has no model: section (a voxface config holds model:, train: and data:; "
                              "configs/voxface-64.yaml is one)", path)
        try:
            _check_sections(data)
            if "inherit_from" in data["model"]:  # read as a dict's, relative to the current folder
                raise _misplaced_inherit()
            return model_config(data["model"])
        except ConfigError as e:
            raise error_in_file(e, path) from None
    elif isinstance(data, dict) and ("model" in data or "inherit_from" in data):  # a whole config
        if "model" not in data and set(data) & {f.name for f in dataclasses.fields(ModelConfig)}:
            raise _misplaced_inherit()  # a model: section's keys beside it would be dropped
        whole = expand_inherit(data)  # ModelConfig has neither key
        if not isinstance(whole.get("model"), dict):  # was the defaults, silently (a file says this)
            parent = data.get("inherit_from")
            raise ConfigError("the config has no model: section" + (f" (nor has {parent}, its inherit_from)" if parent
                              else "") + ": a voxface config holds model:, train: and data: (configs/voxface-64.yaml "
                              "is one); a stage that takes its model from train.init_from builds from that checkpoint")
        try:
            _check_sections(whole)
        except ConfigError as e:
            raise error_in_dict(e, data) from None
        whole_dict, data = data, whole["model"]
    else:
        whole_dict = None
    if not (data is None or isinstance(data, (dict, ModelConfig))):
        raise ConfigError(f"a model config is a ModelConfig, a dict (a YAML file's model: section) or a YAML "
                          f"file's path, not {type(data).__name__}")
    if isinstance(data, ModelConfig):  # built by hand: its values get the checks a YAML file's get
        # (EncoderConfig(z_id=16.0) or a dict for a section ended in a TypeError/AttributeError traceback)
        data = to_dict(data)
    try:
        cfg = from_dict(ModelConfig, data or {}, "model")
        check_model_values(cfg)
    except ConfigError as e:  # a key of the file a config dict inherits names that file
        raise error_in_dict(e, whole_dict) from None
    return cfg


def _check_sections(whole: dict[Any, Any]) -> None:
    """Refuse a whole config whose top level holds keys of its ``model:`` section (``encoder:``,
    ``decoder:``, ``frame:``, ``refine:``), their indent lost: :func:`model_config` reads ``model:``
    alone, so they were dropped without a word and ``create_model`` built the defaults (``voxface train``
    refuses them as unknown sections)."""
    inside = sorted(set(whole) & {f.name for f in dataclasses.fields(ModelConfig)}, key=str)
    if inside:
        keys, many = ", ".join(f"{k}:" for k in inside), len(inside) > 1
        raise keyed_error(ConfigError(f"{keys} {'are keys' if many else 'is a key'} of the model: section, found at "
                                      f"the top level of the config: indent {'them' if many else 'it'} under model:"),
                          inside[0])


def _misplaced_inherit() -> ConfigError:
    """``inherit_from`` inside a ``model:`` section: it was followed relative to the current folder
    (not the file) and its whole config's ``model:`` taken, the section's own keys silently dropped."""
    return keyed_error(ConfigError("model.inherit_from: inherit_from goes at the top of a config, beside model: (it "
                                   "inherits a whole config file), not inside the model: section"),
                       "model.inherit_from")


def check_model_values(cfg: ModelConfig) -> None:
    """Refuse sizes and counts no model can have (zero or negative widths, a non-positive frame...)
    with a :class:`ConfigError` naming the key. How the values fit together (``decoder.widths``
    against the resolution, for instance) the model's parts check as they are built."""
    e, d, f = cfg.encoder, cfg.decoder, cfg.frame
    at_least = [("encoder.image_size", e.image_size, 2 ** (1 + len(e.widths))), ("encoder.z_id", e.z_id, 1),
                ("encoder.z_exp", e.z_exp, 1), ("encoder.readout_channels", e.readout_channels, 1),
                ("decoder.resolution", d.resolution, 1), ("decoder.base_resolution", d.base_resolution, 1),
                ("decoder.shuffle", d.shuffle, 1), ("decoder.res_blocks", d.res_blocks, 0),
                ("decoder.template_resolution", d.template_resolution, 0)]
    at_least += [(f"encoder.widths[{i}]", w, 1) for i, w in enumerate(e.widths)]
    at_least += [(f"encoder.blocks[{i}]", b, 1) for i, b in enumerate(e.blocks)]
    at_least += [(f"decoder.widths[{i}]", w, 1) for i, w in enumerate(d.widths)]
    if cfg.refine is not None:
        r = cfg.refine
        at_least += [("refine.hidden", r.hidden, 1), ("refine.layers", r.layers, 1), ("refine.pe_freqs", r.pe_freqs, 0)]
    for key, value, low in at_least:
        if value < low:
            raise keyed_error(ConfigError(f"model.{key} must be at least {low}, got {value}"), f"model.{key}")
    for key, seq in (("encoder.widths", e.widths), ("decoder.widths", d.widths)):
        if not seq:
            raise keyed_error(ConfigError(f"model.{key} must not be empty"), f"model.{key}")
    if not 0.0 <= e.dropout < 1.0:
        raise keyed_error(ConfigError(f"model.encoder.dropout must lie in [0, 1), got {e.dropout}"),
                          "model.encoder.dropout")
    if not (math.isfinite(f.side_mm) and f.side_mm > 0):
        raise keyed_error(ConfigError(f"model.frame: side_mm must be positive and finite (mm), got {f.side_mm}"),
                          "model.frame.side_mm")
    if not all(math.isfinite(c) for c in f.center_mm):
        raise keyed_error(ConfigError(f"model.frame: center_mm must be 3 finite numbers (x, y, z mm), got "
                                      f"{list(f.center_mm)}"), "model.frame.center_mm")
