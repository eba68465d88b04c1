"""Property-based fuzzing (hypothesis) of voxface's output invariants and its bad-input contracts.

* **Latents -> mesh.** Any code inside the prior's 3-sigma box (``mean +- 3 std`` per dimension; the
  ``N(0, 1)`` box ``[-3, 3]`` when a model has no prior) decodes to a mesh that is watertight,
  consistently wound with positive volume, one connected component, inside the canonical cube and
  free of NaN/Inf. A grid with no cell above the threshold cannot be meshed: :func:`extract_mesh`
  then raises a plain :class:`~voxface.errors.VoxfaceError` whose message starts ``empty occupancy
  grid`` (the only other outcome allowed).
* **Image arrays -> reconstruction.** Any array (any shape including 0-size and 1x1, any dtype,
  huge but bounded) reconstructs or raises :class:`ImageError` / :class:`NoFaceError`; non-array
  inputs (``None``, lists, numbers) raise ``TypeError`` as :func:`voxface.load_image` documents.
* **Mutated checkpoints** (bit flips, truncations, spliced and duplicated byte ranges of a real
  checkpoint, zip and legacy formats) load or raise :class:`CheckpointError` (or a subclass), through
  ``load_checkpoint``, ``inspect_checkpoint`` and ``load_model``; nothing else escapes.
* **Mutated PNG/JPEG files** load (to ``uint8 (H, W, 3)``) or raise :class:`ImageError`.

Every test is derandomized (the same examples on every run) and runs ``VOXFACE_FUZZ_EXAMPLES``
examples (default 25); ``make fuzz-long`` runs 5000 each.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from voxface.checkpoint import inspect_checkpoint, load_checkpoint, load_model, save_checkpoint
from voxface.errors import CheckpointError, ImageError, NoFaceError, VoxfaceError
from voxface.image import DEFAULT_MAX_SIDE, load_image
from voxface.models import Latents
from voxface.reconstruct import Reconstruction, decode_latents, reconstruct_image

from .conftest import TINY_CONFIG

EXAMPLES = max(1, int(os.environ.get("VOXFACE_FUZZ_EXAMPLES", "25")))

#: One settings object for every fuzz test: fixed examples, no deadline (the cores are shared),
#: no example database written into the repository.
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.function_scoped_fixture],
)

EMPTY_GRID = "empty occupancy grid"


def _outcome(what: str) -> None:
    """Count an example's outcome (``--hypothesis-show-statistics`` shows the shares)."""
    if currently_in_test_context():
        event(f"outcome: {what}")


# ------------------------------------------------------------------------------ fixtures

#: configs/toy.yaml shrunk to a ~10 s run: its meshes are head-like blobs, and it has a prior.
def _toy_run_config() -> dict:
    from voxface.config import load_yaml

    cfg = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "toy.yaml")
    cfg["data"].update(num_train=96, num_val=16)
    cfg["train"].update(batch_size=16, total_steps=30, warmup_steps=5, val_every=0, ckpt_every=0,
                        log_every=10, num_val=16, prior_samples=48, threads=1)
    return cfg


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/toy.yaml trained for 30 steps (CPU): a model with a prior whose meshes are blobs."""
    from voxface.train import train

    out = tmp_path_factory.mktemp("toy")
    threads = torch.get_num_threads()
    try:
        res = train(_toy_run_config(), out, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return res.last_checkpoint


@pytest.fixture(scope="module")
def toy_model(toy_checkpoint: Path):
    model = load_model(toy_checkpoint, device="cpu")
    assert model.prior is not None and "z_id_std" in model.prior
    return model


@pytest.fixture(scope="module")
def toy_model_without_prior(toy_model):
    model = copy.deepcopy(toy_model)
    model.prior = None
    return model


# ------------------------------------------------------------------------------ latents -> mesh


def _box(model, name: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the prior's box for ``name`` (``z_id``/``z_exp``); N(0, 1) without a prior."""
    prior = model.prior
    if prior is None:
        return torch.zeros(dim), torch.ones(dim)
    return prior[f"{name}_mean"].float(), prior[f"{name}_std"].float()


def _unit_box(dim: int):
    """Points of ``[-3, 3]^dim`` in units of sigma, corners and faces included."""
    coord = st.one_of(st.floats(-3.0, 3.0, allow_nan=False, width=32), st.sampled_from([-3.0, 0.0, 3.0]))
    return hnp.arrays(np.float32, (dim,), elements=coord)


def assert_mesh_invariants(mesh, grid) -> None:
    import trimesh

    v = np.asarray(mesh.vertices)
    assert len(mesh.faces) > 0 and len(v) > 0
    assert np.isfinite(v).all(), "NaN/Inf vertex"
    assert mesh.is_watertight, "mesh is not watertight"
    assert mesh.is_winding_consistent, "inconsistent winding"
    assert mesh.volume > 0, "inward-facing mesh"
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    assert labels.max() == 0, f"{labels.max() + 1} components"
    lo = np.asarray(grid.origin)
    hi = lo + grid.side_mm
    assert (v >= lo - 1e-6).all() and (v <= hi + 1e-6).all(), (v.min(0), v.max(0), lo, hi)


def _decode_checked(model, u_id: np.ndarray, u_exp: np.ndarray) -> None:
    cfg = model.config.encoder
    m_id, s_id = _box(model, "z_id", cfg.z_id)
    m_exp, s_exp = _box(model, "z_exp", cfg.z_exp)
    lat = Latents((m_id + torch.from_numpy(u_id) * s_id)[None], (m_exp + torch.from_numpy(u_exp) * s_exp)[None])
    try:
        rec = decode_latents(model, lat)[0]
    except VoxfaceError as e:  # the one documented failure: nothing to mesh
        assert type(e) is VoxfaceError and str(e).startswith(EMPTY_GRID), e
        _outcome("empty grid")
        return
    _outcome("mesh")
    assert_mesh_invariants(rec.mesh, model.grid)


@FUZZ
@given(data=st.data())
def test_latents_in_the_prior_box_decode_to_clean_meshes(toy_model, data) -> None:
    cfg = toy_model.config.encoder
    _decode_checked(toy_model, data.draw(_unit_box(cfg.z_id), "u_id"), data.draw(_unit_box(cfg.z_exp), "u_exp"))


@FUZZ
@given(data=st.data())
def test_latents_in_the_unit_gaussian_box_without_a_prior(toy_model_without_prior, data) -> None:
    cfg = toy_model_without_prior.config.encoder
    _decode_checked(toy_model_without_prior, data.draw(_unit_box(cfg.z_id), "u_id"),
                    data.draw(_unit_box(cfg.z_exp), "u_exp"))


def test_the_prior_box_corners_and_centre(toy_model) -> None:
    """Not left to chance: the centre and the two extreme corners of the box."""
    cfg = toy_model.config.encoder
    for u in (0.0, 3.0, -3.0):
        _decode_checked(toy_model, np.full(cfg.z_id, u, np.float32), np.full(cfg.z_exp, u, np.float32))


def test_empty_grid_is_the_documented_error(toy_model) -> None:
    from voxface.mesh import extract_mesh

    with pytest.raises(VoxfaceError, match=f"^{EMPTY_GRID}"):
        extract_mesh(np.full((32,) * 3, -5.0, np.float32), toy_model.grid)


# ------------------------------------------------------------------------------ image arrays

_NUMERIC = ["uint8", "uint16", ">u2", "int8", "int16", "int32", "int64", "uint32", "uint64",
            "float16", "float32", "float64", ">f4", "bool"]
_OTHER = ["complex64", "object", "U2", "datetime64[s]", "V3"]


def _dim():
    return st.one_of(st.sampled_from([0, 1, 2, 3, 4]), st.integers(0, 96))


def _image_shape():
    """Picture layouts: ``(H, W)``, ``(H, W, C)`` and ``(C, H, W)`` with C in 1, 3, 4."""
    side = st.integers(1, 96)
    return st.one_of(
        st.tuples(side, side),
        st.tuples(side, side, st.sampled_from([1, 3, 4])),
        st.tuples(st.sampled_from([1, 3, 4]), side, side),
    )


@st.composite
def small_arrays(draw) -> np.ndarray:
    """Any ndim 0-4 of small dims (half the time a picture layout), numeric dtypes with arbitrary
    values (NaN, Inf, extremes) or in-range ones."""
    dtype = np.dtype(draw(st.sampled_from(_NUMERIC)))
    if draw(st.booleans()):
        shape = draw(_image_shape())
    else:
        shape = tuple(draw(st.lists(_dim(), min_size=0, max_size=4)))
    if int(np.prod(shape)) > 40_000:
        shape = shape[:2]
    kind = draw(st.sampled_from(["hypothesis", "in-range"]))
    if kind == "hypothesis" and int(np.prod(shape)) <= 4096:
        return draw(hnp.arrays(dtype, shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    return rng.integers(0, 256, shape).astype(dtype)


@st.composite
def big_arrays(draw) -> np.ndarray:
    """Long-sided arrays (beyond ``max_side``), at most ~12 M pixels: downscaled, never refused."""
    long = draw(st.integers(DEFAULT_MAX_SIDE + 1, 12_000))
    short = draw(st.integers(1, max(1, 12_000_000 // long // 3)))
    h, w = (long, short) if draw(st.booleans()) else (short, long)
    layout = draw(st.sampled_from(["hw", "hw3", "3hw", "hw4"]))
    shape = {"hw": (h, w), "hw3": (h, w, 3), "3hw": (3, h, w), "hw4": (h, w, 4)}[layout]
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32", "bool"]))
    if dtype == "bool":
        return np.zeros(shape, bool)
    return np.full(shape, 0.5 if dtype == "float32" else 7, dtype)


@st.composite
def other_inputs(draw):
    """Odd dtypes, torch tensors, and things that are not images at all."""
    kind = draw(st.sampled_from(["odd-dtype", "tensor", "not-an-image"]))
    if kind == "odd-dtype":
        return np.zeros((draw(st.integers(0, 40)), draw(st.integers(0, 40)), 3), draw(st.sampled_from(_OTHER)))
    if kind == "tensor":
        dt = draw(st.sampled_from([torch.uint8, torch.float32, torch.bfloat16, torch.float16, torch.int64,
                                   torch.bool, torch.complex64]))
        shape = tuple(draw(st.lists(_dim(), min_size=0, max_size=4)))
        if int(np.prod(shape)) > 40_000:
            shape = shape[:2]
        t = torch.zeros(shape, dtype=dt) if dt in (torch.bool, torch.complex64) else torch.rand(shape).to(dt)
        return t.requires_grad_() if t.is_floating_point() and draw(st.booleans()) else t
    return draw(st.sampled_from([None, 3, 2.5, [[1, 2], [3]], [[0, 0], [0, 0]], b"\x89PNG", object()]))


def _reconstruct_or_documented_error(model, src, detect: bool) -> None:
    is_array = isinstance(src, np.ndarray) or hasattr(src, "__array__")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = reconstruct_image(model, src, detect=detect)
    except (ImageError, NoFaceError) as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith("<array>: "), msg
        assert type(e) in (ImageError, NoFaceError)
        _outcome(type(e).__name__)
        return
    except TypeError as e:
        assert not is_array, f"TypeError for an array input: {e}"
        _outcome("TypeError")
        return
    _outcome("reconstructed")
    assert isinstance(out, Reconstruction)
    assert_mesh_invariants(out.mesh, model.grid)
    assert out.crop.shape == (model.image_size, model.image_size, 3) and np.isfinite(out.crop).all()


@FUZZ
@given(arr=small_arrays(), detect=st.booleans())
def test_any_small_array_reconstructs_or_raises_the_documented_error(toy_model, arr, detect) -> None:
    _reconstruct_or_documented_error(toy_model, arr, detect)


@FUZZ
@given(arr=big_arrays(), detect=st.booleans())
def test_huge_arrays_are_downscaled_or_refused_cleanly(toy_model, arr, detect) -> None:
    img = load_image(arr)
    assert img.dtype == np.uint8 and img.ndim == 3 and max(img.shape[:2]) == DEFAULT_MAX_SIDE
    _reconstruct_or_documented_error(toy_model, arr, detect)


@FUZZ
@given(src=other_inputs(), detect=st.booleans())
def test_odd_dtypes_tensors_and_non_images(toy_model, src, detect) -> None:
    _reconstruct_or_documented_error(toy_model, src, detect)


# ------------------------------------------------------------------------------ mutated files


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """A mutated copy of ``data``: bit flips, truncation, a spliced/duplicated/deleted range."""
    n = len(data)
    out = bytearray(data)
    ops = draw(st.lists(st.sampled_from(["flip", "truncate", "splice", "delete", "duplicate", "zero"]),
                        min_size=1, max_size=3))
    # positions: anywhere, or near the start (headers) or the end: a small checkpoint's zip central
    # directory (a record per tensor file) is about 3.7 kB, and a window of its last 400 bytes left
    # the compression-method and flag fields that f9bbd83's tracebacks came from all but untried
    for op in ops:
        n = len(out)
        if n < 2:
            break
        pos = st.one_of(st.integers(0, n - 1), st.integers(0, min(n - 1, 600)),
                        st.integers(max(0, n - 4096), n - 1))
        i = draw(pos) % n
        if op == "flip":
            for _ in range(draw(st.integers(1, 8))):
                j = (i + draw(st.integers(0, 64))) % n
                out[j] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del out[i:]
        elif op == "zero":
            k = draw(st.integers(1, 256))
            out[i:i + k] = bytes(len(out[i:i + k]))
        else:
            j = draw(pos) % n
            k = draw(st.integers(1, 512))
            chunk = bytes(data[j:j + k])  # spliced from the original file
            if op == "splice":
                out[i:i + len(chunk)] = chunk
            elif op == "delete":
                del out[i:i + k]
            else:
                out[i:i] = chunk
    return bytes(out)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A real tiny checkpoint (with optimizer state) in the zip and the legacy torch formats."""
    from voxface.models import create_model

    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = create_model(copy.deepcopy(TINY_CONFIG)).eval()
    model.prior = {"z_id_mean": torch.zeros(16), "z_id_std": torch.ones(16), "kind": "gaussian"}
    opt = torch.optim.AdamW(model.parameters())
    zip_path = save_checkpoint(d / "m.pth.tar", model, opt, step=3, loss_history=[{"step": 1, "total": 0.5}])
    legacy = d / "legacy.pth.tar"
    torch.save(load_checkpoint(zip_path), legacy, _use_new_zipfile_serialization=False)
    return {"zip": zip_path.read_bytes(), "legacy": legacy.read_bytes()}


_SCRATCH: list[Path] = []


def _scratch(factory: pytest.TempPathFactory) -> Path:
    """One folder reused by every example (examples run one after another)."""
    if not _SCRATCH:
        _SCRATCH.append(factory.mktemp("fuzz-files"))
    return _SCRATCH[0]


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["zip", "legacy"]))
def test_mutated_checkpoints_load_or_raise_checkpoint_errors(checkpoint_bytes, tmp_path_factory, data, fmt) -> None:
    blob = data.draw(mutations(checkpoint_bytes[fmt]), "mutated")
    path = _scratch(tmp_path_factory) / "m.pth.tar"
    path.write_bytes(blob)
    for read in (load_checkpoint, inspect_checkpoint, lambda p: load_model(p, device="cpu")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read(path)
        except CheckpointError as e:
            msg = str(e)
            assert "\n" not in msg and str(path) in msg, msg
    path.unlink()


def _base_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = (np.linspace(0, 255, 48)[None, :, None] + rng.normal(0, 30, (40, 48, 3))).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    out = {}
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(buf, "JPEG", quality=85, exif=exif.tobytes())
    out["jpeg"] = buf.getvalue()
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85, progressive=True)
    out["progressive-jpeg"] = buf.getvalue()
    buf = io.BytesIO()
    Image.new("CMYK", (24, 20), (0, 128, 255, 10)).save(buf, "JPEG")
    out["cmyk-jpeg"] = buf.getvalue()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "voxface fuzz", zip=True)
    buf = io.BytesIO()
    im.convert("RGBA").save(buf, "PNG", pnginfo=info)
    out["png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray((np.arange(24 * 20, dtype=np.uint16).reshape(20, 24) * 97)).save(buf, "PNG")
    out["png16"] = buf.getvalue()
    buf = io.BytesIO()
    im.convert("P").save(buf, "PNG", transparency=0)
    out["palette-png"] = buf.getvalue()
    return out


BASE_IMAGES = _base_images()


@FUZZ
@given(data=st.data(), base=st.sampled_from(sorted(BASE_IMAGES)))
def test_mutated_images_load_or_raise_image_error(tmp_path_factory, data, base) -> None:
    blob = data.draw(mutations(BASE_IMAGES[base]), "mutated")
    path = _scratch(tmp_path_factory) / f"x.{'png' if 'png' in base else 'jpg'}"
    path.write_bytes(blob)
    for src in (path, io.BytesIO(blob)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = load_image(src)
        except ImageError as e:
            assert "\n" not in str(e)
            continue
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.flags.c_contiguous
        assert 1 <= max(img.shape[:2]) <= DEFAULT_MAX_SIDE
    path.unlink()
