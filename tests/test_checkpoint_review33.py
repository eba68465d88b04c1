"""Checkpoints from other sources and other ways of saving: what reading them says, and what writing
over them keeps."""

from __future__ import annotations

import warnings

import pytest
import torch

from voxface.checkpoint import check_output_checkpoint, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint
from voxface.errors import CheckpointError, UnsafeCheckpointError
from voxface.models import create_model

from .conftest import SMALL_CONFIG


def _small():
    torch.manual_seed(0)
    return create_model(SMALL_CONFIG).eval()


class _Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("make", [lambda: torch.jit.script(torch.nn.Linear(2, 3)),
                                  lambda: torch.jit.trace(_Doubler(), torch.zeros(2))],
                         ids=["scripted", "traced"])
def test_a_torchscript_archive_is_named_as_one_not_called_corrupt(tmp_path, make):
    """A TorchScript archive (torch.jit.save: the usual way to ship a model as ``model.pt``) holds a
    ``data.pkl`` as torch.save's archives do, so the TorchScript check after it never ran: torch.load
    handed the file to torch.jit.load (a ``warning:`` line), which weights_only refuses, and the file was
    "corrupt: torch could not read it (Cannot use weights_only=True ...)". As a "corrupt" file, what a
    failed write leaves, an output path holding it was overwritten without a word."""
    path = tmp_path / "model.pt"
    torch.jit.save(make(), str(path))
    for read in (load_checkpoint, load_model, inspect_checkpoint):
        with pytest.raises(CheckpointError) as e, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read(path)
        assert not [w for w in caught if "TorchScript" in str(w.message)]  # torch.load never reached it
        assert e.value.reason == "torchscript" and "TorchScript archive (torch.jit.save)" in str(e.value)
        assert "corrupt" not in str(e.value)
    with pytest.raises(CheckpointError, match="TorchScript archive.*would replace it") as e:
        check_output_checkpoint(path, "release")
    assert e.value.reason == "output"


@pytest.mark.parametrize("protocol", [0, 4, 5])
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_checkpoint_saved_with_another_pickle_protocol_says_so_not_corrupt(tmp_path, protocol, zipped):
    """``torch.save(ckpt, f, pickle_protocol=4)`` (what large objects were once saved with) writes a whole,
    valid file that torch's weights_only unpickler cannot read (it stops at the FRAME opcode). It was "is
    corrupt: its pickle could not be read safely (Unsupported operand 149)", in the legacy format "a
    Python pickle but not a torch checkpoint", and protocol 0 "a text file": advice to save it again or
    to look for another file, when saving it with the default protocol is the way."""
    good = save_checkpoint(tmp_path / "good.pth.tar", _small())
    path = tmp_path / "p.pth.tar"
    torch.save(load_checkpoint(good), path, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)
    for read in (load_checkpoint, load_model, inspect_checkpoint):
        with pytest.raises(CheckpointError) as e:
            read(path)
        message = str(e.value)
        assert e.value.reason == "protocol" and not isinstance(e.value, UnsafeCheckpointError)
        shown = "0 or 1" if protocol == 0 else str(protocol)
        assert f"written with pickle protocol {shown}" in message and "weights_only=False" in message
        assert "corrupt" not in message and "not a torch checkpoint" not in message and "\n" not in message
    with pytest.raises(CheckpointError, match="would replace it"):  # a whole file, not a failed write's leftover
        check_output_checkpoint(path, "release")
    for ok in (2, 3):  # the protocols the safe loader reads
        torch.save(load_checkpoint(good), path, pickle_protocol=ok, _use_new_zipfile_serialization=zipped)
        assert load_model(path, device="cpu").config == _small().config


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_plain_pickle_or_code_of_another_protocol_is_not_taken_for_a_torch_file(tmp_path, protocol):
    """The protocol message is for files torch.save wrote: a plain pickle (pickle.dump's protocol 4 or 5)
    stays "a Python pickle but not a torch checkpoint", and code in a protocol-4 checkpoint stays unsafe."""
    import os
    import pickle

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}, protocol=protocol))
    with pytest.raises(CheckpointError, match="is a Python pickle but not a torch checkpoint") as e:
        load_checkpoint(raw)
    assert e.value.reason == "pickle"

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    bad = tmp_path / "bad.pth.tar"
    torch.save({"x": Evil()}, bad, pickle_protocol=protocol)
    with pytest.raises(UnsafeCheckpointError, match="would import posix.system|would import nt.system"):
        load_checkpoint(bad)


@pytest.mark.parametrize("value", [lambda np: np.float64(0.25), lambda np: np.array([0.25])], ids=["scalar", "array"])
def test_numpy_values_in_a_foreign_checkpoint_are_named_as_numpy_data(tmp_path, value):
    """Occupancy Networks' model_best.pt stores ``loss_val_best`` as a numpy float64 (``np.mean`` of the
    validation metric), which torch's weights_only loader refuses: ``inspect`` said only that unpickling
    would import numpy._core.multiarray.scalar and "a checkpoint must be data, never code", with no word
    that this is numpy data nor how to convert a trusted file. It is still refused (voxface never widens
    torch's allowlist), and now says what it is and how to convert it."""
    np = pytest.importorskip("numpy")
    path = tmp_path / "model_best.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch_it": 3, "it": 100, "loss_val_best": value(np)}, path)
    for read in (load_checkpoint, inspect_checkpoint):
        with pytest.raises(UnsafeCheckpointError) as e:
            read(path)
        assert e.value.reason == "unsafe" and "would import numpy." in str(e.value)
        assert "it holds numpy values" in str(e.value) and "weights_only=False" in str(e.value)
    torch.save({"model": {"w": torch.zeros(2)}, "epoch_it": 3, "it": 100, "loss_val_best": 0.25}, path)
    assert "Occupancy Networks checkpoint" in inspect_checkpoint(path).note  # once converted


@pytest.mark.skipif(not hasattr(__import__("os"), "fchmod"), reason="POSIX permission bits")
def test_saving_over_a_checkpoint_keeps_its_permission_bits(tmp_path):
    """The atomic write renames a new file over the checkpoint, and that file had the default mode: a
    checkpoint made private (chmod 600: weights of a model trained on private scans) was 644, readable by
    every user, after its next save (the trainer rewrites last.pth.tar every ckpt_every steps), and a
    group-writable one lost its group's write. torch.save, writing into the file, kept them; so does
    save_checkpoint now. A new file still gets 0o666 less the umask."""
    import os
    import stat

    model = _small()
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "last.pth.tar", model)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        for mode in (0o600, 0o664, 0o640):
            os.chmod(path, mode)
            save_checkpoint(path, model, step=mode)
            assert stat.S_IMODE(path.stat().st_mode) == mode
            assert load_checkpoint(path)["step"] == mode
        other = save_checkpoint(tmp_path / "new" / "x.pth.tar", model)
        assert stat.S_IMODE(other.stat().st_mode) == 0o644
    finally:
        os.umask(old)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_sparse_tensor_is_stored_as_any_tensor(tmp_path, layout):
    """A sparse tensor in ``extra`` (a mesh Laplacian or CoMA-style down-sampling matrix beside an
    auxiliary head) is a tensor, which the docstring says a checkpoint holds, and torch's safe loader
    reads; save_checkpoint asked it for its storage and failed with a bare NotImplementedError (Cannot
    access storage of SparseTensorImpl) traceback. It is stored and read back as it was."""
    dense = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])
    sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    path = save_checkpoint(tmp_path / "m.pth.tar", _small(), extra={"laplacian": sparse})
    back = load_checkpoint(path)["extra"]["laplacian"]
    assert back.layout == sparse.layout and torch.equal(back.to_dense(), dense)
    assert inspect_checkpoint(path).kind == "voxface"


def test_another_models_state_dict_and_config_is_foreign_and_never_overwritten(tmp_path):
    """``{"state_dict": ..., "config": ...}`` is a common layout of other projects' checkpoints, and any
    such file was taken for voxface's: ``inspect`` called it "kind voxface" with a model line of ``?``,
    ``load_model`` said its stored config "cannot build a model (unknown key(s) ...)", and, worst,
    ``release``/``init-checkpoint -o`` replaced it without a word (check_output_checkpoint refuses
    another project's checkpoint). A voxface file is one whose ``meta`` names voxface, or, without it
    (made by hand, or older), whose weights or config are a voxface model's."""
    from voxface.checkpoint import release_checkpoint

    other = tmp_path / "model.pth"
    torch.save({"state_dict": {"unet.conv.weight": torch.zeros(4, 3, 3, 3), "unet.conv.bias": torch.zeros(4)},
                "config": {"lr": 1e-3, "model": {"name": "unet", "depth": 4}}, "epoch": 12}, other)
    before = other.read_bytes()
    info = inspect_checkpoint(other)
    assert info.kind == "foreign" and "checkpoint of another model" in info.note
    assert not [line for line in info.format().splitlines() if line.startswith("model ")]  # no "? encoder" line
    with pytest.raises(CheckpointError, match="not a voxface checkpoint .its 'config' and 'state_dict' are another "
                       "model's.: it looks like a checkpoint of another model") as e:
        load_model(other)
    assert e.value.reason == "foreign"
    good = save_checkpoint(tmp_path / "good.pth.tar", _small())
    with pytest.raises(CheckpointError, match="exists and is not a voxface checkpoint.*would replace it"):
        release_checkpoint(good, other)
    assert other.read_bytes() == before

    # voxface's own files without meta (made by hand, or older) are still voxface's, by weights or by config
    ck = load_checkpoint(good)
    by_hand = tmp_path / "by-hand.pth.tar"
    torch.save({"state_dict": ck["state_dict"], "config": ck["config"]}, by_hand)
    assert inspect_checkpoint(by_hand).kind == "voxface" and load_model(by_hand).config == _small().config
    torch.save({"state_dict": {"w": torch.zeros(2)}, "config": ck["config"]}, by_hand)
    with pytest.raises(CheckpointError, match="weights do not fit the architecture"):
        load_model(by_hand)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ck["state_dict"].items()}, "config": {"x": 1}}, by_hand)
    with pytest.raises(CheckpointError, match="its stored config cannot build a model"):
        load_model(by_hand)


def test_numpy_arrays_of_text_or_another_byte_order_are_stored_as_data(tmp_path):
    """save_checkpoint says numpy arrays become tensors and what cannot be stored is a TypeError naming
    where it is; but an array of names (``np.array(["jawOpen", ...])``, as np.loadtxt(dtype=str) reads
    them) was torch.from_numpy's bare "can't convert np.ndarray of type numpy.str_" naming neither, and a
    big-endian array (read from a '>f4' file) its ValueError about byte orders. Text and record arrays
    are stored as lists, big-endian ones as tensors of their values; a datetime64 array is refused naming
    where it is."""
    np = pytest.importorskip("numpy")
    from voxface.errors import InputTypeError

    extra = {"names": np.array(["jawOpen", "mouthLeft"]), "grid": np.array([["a", "b"], ["c", "d"]]),
             "big": np.array([1.5, -2.0], dtype=">f4"), "strided": np.arange(16.0).reshape(4, 4)[:, ::2]}
    path = save_checkpoint(tmp_path / "m.pth.tar", _small(), extra=extra)
    back = load_checkpoint(path)["extra"]
    assert back["names"] == ["jawOpen", "mouthLeft"] and all(type(n) is str for n in back["names"])
    assert back["grid"] == [["a", "b"], ["c", "d"]]
    assert back["big"].dtype == torch.float32 and back["big"].tolist() == [1.5, -2.0]
    assert torch.equal(back["strided"], torch.from_numpy(np.arange(16.0).reshape(4, 4)[:, ::2].copy()))
    with pytest.raises(InputTypeError, match=r"^extra\['when'\]: cannot store a numpy datetime64\[D\] array"):
        save_checkpoint(tmp_path / "d.pth.tar", _small(), extra={"when": np.array(["2024-01-01"], "datetime64[D]")})
    assert not (tmp_path / "d.pth.tar").exists()
