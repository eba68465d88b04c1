"""ICT-FaceKit morphable face model: read the public ``FaceXModel/`` folder, cache it compactly.

The folder is used exactly as the public repository (ICT-VGL/ICT-FaceKit) ships it; users clone it
themselves and point voxface at it with ``VOXFACE_ICT_ROOT`` or an explicit path. Nothing of it is
bundled with voxface.

Units of the files are centimetres; :class:`ICTModel` keeps them (the canonical frame in
:mod:`voxface.data.head` converts to millimetres). A face is
``neutral + sum_i a_i * identity_delta_i + sum_j e_j * expression_delta_j`` with ``a_i ~ N(0, 1)``
and ``e_j in [0, 1]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

ENV_VAR = "VOXFACE_ICT_ROOT"
N_IDENTITY = 100
#: Format of the parsed arrays cached beside the ICT files (named in their file, not in ICTModel.key).
CACHE_VERSION = 1

#: Sub-meshes by vertex range [start, stop) (ICT-FaceKit README).
SUBMESHES: dict[str, tuple[int, int]] = {
    "face": (0, 9409),
    "narrow_face": (0, 6706),
    "head_and_neck": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_socket_left": (13294, 13678),
    "eye_socket_right": (13678, 14062),
    "gums_and_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "eyeball_left": (21451, 23021),
    "eyeball_right": (23021, 24591),
    "sclera_left": (21451, 22221),
    "iris_left": (22221, 23021),
    "sclera_right": (23021, 23791),
    "iris_right": (23791, 24591),
    "lacrimal_fluid": (24591, 24999),
    "eye_blend": (24999, 25047),
    "eye_occlusion": (25047, 25351),
    "eyelashes": (25351, 26719),
}

#: Vertices of the closed head: face, head and neck, mouth socket, both eye sockets.
CLOSED_HEAD_VERTICES = 14062
#: Vertices of every ICT-FaceKit mesh (the sub-mesh ranges above end there).
N_VERTICES = SUBMESHES["eyelashes"][1]


@dataclass
class ICTModel:
    """The ICT-FaceKit light model (all arrays float32 centimetres unless said otherwise).

    Attributes:
        neutral: ``(V, 3)`` generic neutral mesh, V = 26719.
        identity: ``(100, V, 3)`` identity mode deltas (``identityNNN.obj - neutral``).
        expression: ``(53, V, 3)`` expression blendshape deltas, in ``expression_names`` order.
        faces: ``(F, 3)`` int32 triangles (the quads split along one diagonal).
        quad_faces: ``(F,)`` int32 index of the source polygon of each triangle.
        expression_names: the 53 blendshape names of ``vertex_indices.json["expressions"]``, after
            ARKit's but not its 52 shapes: ARKit's ``...Left``/``...Right`` are ``..._L``/``..._R``,
            ``browInnerUp`` and ``cheekPuff`` come as ``_L``/``_R`` pairs, and there is no ``tongueOut``.
        incompatible: pairs of expression indices that must not be combined.
        landmarks: ``(68,)`` int64 vertex indices of the Multi-PIE landmarks.
        root: the ``FaceXModel`` folder it was read from.
        key: a digest of the content of the source files (OBJs and ``vertex_indices.json``):
            equal keys, equal model. Caches of data rendered from it record it.
    """

    neutral: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    faces: np.ndarray
    quad_faces: np.ndarray
    expression_names: list[str]
    incompatible: list[tuple[int, int]]
    landmarks: np.ndarray
    root: Path
    key: str = ""

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    def vertices(self, id_coeffs: np.ndarray | None = None, exp_coeffs: np.ndarray | None = None,
                 stop: int | None = None) -> np.ndarray:
        """Vertices ``(V', 3)`` (cm) of a face; ``stop`` keeps only vertices ``[0, stop)``."""
        sl = slice(0, stop)
        v = self.neutral[sl].astype(np.float32, copy=True)
        if id_coeffs is not None:
            v += blend(check_coeffs(id_coeffs, self.identity, "id_coeffs"), self.identity, stop)
        if exp_coeffs is not None:
            v += blend(check_coeffs(exp_coeffs, self.expression, "exp_coeffs"), self.expression, stop)
        return v


def check_coeffs(coeffs: np.ndarray, basis: np.ndarray, name: str) -> np.ndarray:
    """``coeffs`` as a float32 vector ``(K,)`` of at most ``len(basis)`` values (the first modes;
    the others 0); else an :class:`~voxface.errors.InputError` naming ``name`` and the shape (a
    batch row ``(1, K)`` failed in numpy's broadcasting, too many values in an IndexError)."""
    from ..errors import InputError

    c = np.asarray(coeffs, np.float32)
    if c.ndim != 1 or c.shape[0] > basis.shape[0]:
        raise InputError(f"{name} must be a vector of at most {basis.shape[0]} coefficients, got shape "
                         f"{list(c.shape)}" + (" (one face of a batch: pass row [0])" if c.ndim == 2 else ""))
    return c


def expression_mirror(names: list[str]) -> np.ndarray:
    """``(N_exp,)`` int64: each expression's bilateral partner, ``..._L`` <-> ``..._R`` (others
    themselves), the shape a symmetric expression adds on the other side (the sampler's use).

    Not the whole mirror image: ``jawLeft``/``jawRight`` and ``mouthLeft``/``mouthRight`` (the jaw or
    mouth moved to one side; measured on ICT-FaceKit, their displacements are each other's mirror,
    x +/-4.6 mm and +/-5.8 mm) are their own partners here, since adding both cancels them;
    :func:`voxface.augment.expression_mirror_map` exchanges them too, for mirrored faces."""
    perm = np.arange(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        if n[-2:] in ("_L", "_R"):
            other = n[:-2] + ("_R" if n.endswith("_L") else "_L")
            if other in names:
                perm[i] = names.index(other)
    return perm


def blend(coeffs: np.ndarray, basis: np.ndarray, stop: int | None = None) -> np.ndarray:
    """``sum_k coeffs[k] * basis[k, :stop]`` (float32) over the non-zero coefficients, in index order.

    Elementwise products and sums in a fixed order, not a BLAS product: a multi-threaded BLAS
    splits the reduction differently for another thread count, so a worker process limited to one
    thread would get other bits than the parent (measured: it does). Elementwise float32 arithmetic
    is exact IEEE everywhere, so a face is the same on every process, thread count and machine;
    it costs about 1.5x a one-thread BLAS product (a few ms per person, once for its two samples).
    """
    c = np.asarray(coeffs, np.float32)
    out = np.zeros(basis[0, :stop].shape, np.float32)
    tmp = np.empty_like(out)
    for k in np.flatnonzero(c):
        np.multiply(basis[k, :stop], c[k], out=tmp)
        out += tmp
    return out


def find_root(path: str | os.PathLike | None = None) -> Path:
    """The ``FaceXModel`` folder from ``path`` or ``$VOXFACE_ICT_ROOT``.

    Either the folder itself or a folder containing it (a clone of the repository) is accepted. An
    empty ``path`` (``--ict-root "$ICT"`` of an unset variable) is none: ``$VOXFACE_ICT_ROOT`` is used
    (it was refused as 'not found: set VOXFACE_ICT_ROOT', though that was set).
    """
    if path is not None and not os.fspath(path):
        path = None
    src = path if path is not None else os.environ.get(ENV_VAR)
    if not src:
        raise DataError(
            f"ICT-FaceKit not found: set {ENV_VAR} to a clone of ICT-VGL/ICT-FaceKit "
            "(or its FaceXModel folder), or pass its path (--ict-root; a config's data.ict_root)"
        )
    p = Path(src).expanduser()
    needed = ("vertex_indices.json", "generic_neutral_mesh.obj")
    for cand in (p, p / "FaceXModel"):
        if all((cand / f).is_file() for f in needed):
            return cand
    where = f" (from ${ENV_VAR})" if path is None else ""
    if not p.exists():  # a typo: it was 'no FaceXModel/vertex_indices.json or ...' of a folder that is not there
        raise DataError(f"no such ICT-FaceKit folder{where}", p)
    if not p.is_dir():  # e.g. its vertex_indices.json: the folder that holds the files is meant
        if p.name.lower().endswith(_ARCHIVES):  # FaceXModel.tar.xz itself: it is read unpacked
            raise DataError(f"is an archive, not an ICT-FaceKit folder{where}: unpack it ({_unpack_hint(p)}) and "
                            "give the FaceXModel folder it holds (or the folder holding that)", p)
        raise DataError(f"is a file, not an ICT-FaceKit folder{where}: give the FaceXModel folder (or the clone "
                        "holding it)", p)
    # name what is missing where the folder is (a partial copy), not always vertex_indices.json
    cand = p if (p / needed[0]).is_file() or (p / needed[1]).is_file() else p / "FaceXModel"
    missing = " or ".join(f"{cand.relative_to(p) / f}" if cand != p else f for f in needed
                          if not (cand / f).is_file())
    # a copy whose FaceXModel folder is still packed (FaceXModel.tar.xz beside README.md, as some
    # copies ship it): say to unpack it, not only what is missing
    packed = sorted(f for f in p.glob("FaceXModel*") if f.is_file() and f.name.lower().endswith(_ARCHIVES))
    hint = f" (FaceXModel is packed in {packed[0].name} there: unpack it, {_unpack_hint(packed[0])})" if packed else ""
    nothing = not any((cand / f).is_file() for f in needed)
    inner = sorted(p.glob(f"*/FaceXModel/{needed[0]}")) if nothing and not hint else []
    if inner:  # nothing of ICT-FaceKit there, but a clone one level down (~/src holding ICT-FaceKit/)
        hint = f" (a clone is in {inner[0].parent.parent.name}/ there: give {inner[0].parent.parent})"
    raise DataError(f"not an ICT-FaceKit folder{where}: no {missing}{hint}", p)


#: File names of archives a FaceXModel folder may come packed in.
_ARCHIVES = (".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tar", ".zip")


def _unpack_hint(archive: Path) -> str:
    """A command that unpacks ``archive`` beside itself (``unzip`` for a zip file, else ``tar``)."""
    if archive.name.lower().endswith(".zip"):
        return f"unzip {archive.name} -d <folder>"
    return f"tar xf {archive.name} -C <folder>"


def _read_obj(path: Path, faces: bool = False) -> tuple[np.ndarray, list[list[int]] | None]:
    """Vertices ``(V, 3)`` (and polygons, 0-based) of an OBJ, keeping the file's vertex order.

    trimesh re-orders and splits vertices at UV seams, which would break the shared topology of
    the blendshapes, so the ``v`` and ``f`` records are read directly.
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", path) from None
    except UnicodeDecodeError:
        raise DataError("not a text OBJ file (undecodable bytes)", path) from None
    vs: list[str] = []
    polys: list[list[int]] | None = [] if faces else None
    try:
        for line in text.splitlines():
            if line.startswith("v "):
                vs.append(line[2:])
            elif faces and line.startswith("f "):
                polys.append([int(tok.split("/")[0]) - 1 for tok in line.split()[1:]])  # type: ignore[union-attr]
        if not vs:
            raise DataError("no vertices in OBJ file", path)
        # values per record: checked, not inferred from the total (x y z r g b records, vertex colours as
        # some exporters write them, became two vertices each, and a record one value short beside one a
        # value long shifted every vertex between them, both without a word)
        counts = set(map(len, map(str.split, vs)))
        if len(counts) != 1 or not counts <= {3, 6}:
            raise DataError(f"malformed OBJ record (vertex records of {sorted(counts)} values: each is x y z, or x y "
                            "z r g b); is the file truncated or edited?", path)
        v = np.array(" ".join(vs).split(), dtype=np.float64).reshape(len(vs), -1)[:, :3]
    except ValueError as e:  # a truncated or edited file: a record cut short or not numbers
        raise DataError(f"malformed OBJ record ({str(e).splitlines()[0]}); is the file truncated?", path) from None
    v = v.astype(np.float32)
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():  # 'v nan 0 0' (or a value past float32) parsed: a NaN face, found far away, if at all
        k = int(np.flatnonzero(~finite)[0])
        raise DataError(f"vertex {k + 1} is not finite in float32 ({' '.join(vs[k].split()[:3])}); is the file "
                        "edited?", path)
    return v, polys


def _check_neutral(neutral: np.ndarray, faces: np.ndarray, path: Path) -> None:
    """The neutral mesh has ICT-FaceKit's :data:`N_VERTICES` vertices and triangles ``faces (F, 3)``
    naming only those; else a :class:`DataError` naming ``path``. (A file cut short at the end of a
    line has no malformed record: cut among its vertices, the first identity OBJ was blamed for the
    neutral's count; cut before its faces, HeadModel failed in numpy's AxisError.)"""
    if len(neutral) != N_VERTICES:
        raise DataError(f"{len(neutral)} vertices, where ICT-FaceKit's meshes have {N_VERTICES}; is the file "
                        "truncated, or of another model?", path)
    if faces.size == 0:
        raise DataError("no faces (f records) in the neutral mesh; is the file truncated?", path)
    bad = (faces < 0) | (faces >= N_VERTICES)
    if bad.any():
        raise DataError(f"a face names vertex {int(faces[bad][0]) + 1}, outside the mesh's {N_VERTICES} vertices "
                        "(OBJ indices count from 1); is the file truncated or edited?", path)


def _triangulate(polys: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    tris, src = [], []
    for k, p in enumerate(polys):
        for j in range(1, len(p) - 1):  # fan: quads split along the (0, 2) diagonal
            tris.append((p[0], p[j], p[j + 1]))
            src.append(k)
    return np.asarray(tris, np.int32), np.asarray(src, np.int32)


def _files(root: Path, names: list[str]) -> list[Path]:
    files = [root / "generic_neutral_mesh.obj", root / "vertex_indices.json"]
    files += [root / f"identity{i:03d}.obj" for i in range(N_IDENTITY)]
    files += [root / f"{n}.obj" for n in names]
    return files


def _content_key(files: list[Path]) -> str:
    """A digest of the files' names and bytes only (:attr:`ICTModel.key`: data caches record it, so a
    new :data:`CACHE_VERSION` of the parsed arrays, which names their file, must not change it)."""
    h = hashlib.sha1(b"voxface-ict")
    for f in files:
        h.update(f.name.encode())
        try:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
        except OSError as e:  # a file this user may not read (EACCES), a disk error: as _read_obj says it
            raise DataError(f"cannot read ({e.strerror or e})", f) from None
    return h.hexdigest()[:20]


def _parsed_name(ckey: str) -> str:
    """The file of the parsed arrays of the ICT files with content key ``ckey``, in this format."""
    return f"ict-v{CACHE_VERSION}-{ckey}.npz"


def _stat_key(files: list[Path]) -> str:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cache_dir() -> Path:
    """Where voxface caches derived data: ``$VOXFACE_CACHE`` or ``$XDG_CACHE_HOME/voxface``, a leading
    ``~`` expanded as ``--ict-root``'s is (a quoted ``VOXFACE_CACHE='~/cache'``, or one from a .env or
    service file, no shell expanded, wrote 50 MB into a folder named ``~`` in the working directory)."""
    if os.environ.get("VOXFACE_CACHE"):
        return Path(os.environ["VOXFACE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base).expanduser() / "voxface"


def load_ict(path: str | os.PathLike | None = None, *, use_cache: bool = True) -> ICTModel:
    """Load ICT-FaceKit from ``path`` or ``$VOXFACE_ICT_ROOT``.

    The first load parses the 154 OBJ files it uses (a few seconds: the neutral mesh, 100 identities
    and 53 expressions; the folder's four others, ``PupilDilate_*`` and ``cheekRaiser_*``, are not
    read) and writes a compact ``.npz`` keyed by the content of the source files under
    :func:`cache_dir`; later loads read that file (well under a second). A stat-keyed index avoids
    re-hashing unchanged files.
    """
    root = find_root(path)
    try:
        meta = json.loads((root / "vertex_indices.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"malformed vertex_indices.json ({type(e).__name__}: {e})", root / "vertex_indices.json") from None
    _check_meta(meta, root / "vertex_indices.json")
    names = list(meta["expressions"])
    files = _files(root, names)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"missing {len(missing)} of the {len(files)} files voxface reads ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}): a partial copy? A clone of "
                        "github.com/ICT-VGL/ICT-FaceKit holds them all in its FaceXModel folder", root)

    cdir = cache_dir()
    index_path = cdir / "ict-index.json"
    skey = _stat_key(files)
    ckey = None
    if use_cache:
        try:
            ckey = json.loads(index_path.read_text()).get(skey)
        except (OSError, ValueError, AttributeError):  # no index yet, or not a JSON object
            ckey = None
    if ckey is None:  # also without the cache: the key names this model's content (data caches record it)
        ckey = _content_key(files)
    if use_cache:
        cfile = cdir / _parsed_name(ckey)
        if cfile.is_file():
            try:
                with np.load(cfile) as z:
                    model = _from_arrays(dict(z), names, meta, root, ckey)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # unreadable cache (truncated, damaged, empty): rebuild it
            else:
                _remove_stale(cdir, ckey, index_path)
                return model

    neutral, polys = _read_obj(files[0], faces=True)
    faces, quad = _triangulate(polys or [])
    _check_neutral(neutral, faces, files[0])

    def delta(f: Path) -> np.ndarray:  # checked before the subtraction (else numpy's broadcast error)
        v = _read_obj(f)[0]
        if v.shape != neutral.shape:
            raise DataError(f"vertex count {v.shape[0]} differs from the neutral mesh's ({neutral.shape[0]})", f)
        return v - neutral

    ident = np.stack([delta(f) for f in files[2 : 2 + N_IDENTITY]])
    expr = np.stack([delta(f) for f in files[2 + N_IDENTITY :]])
    arrays = {"neutral": neutral, "identity": ident, "expression": expr, "faces": faces, "quad_faces": quad}
    if use_cache:
        _write_cache(cdir, ckey, skey, index_path, arrays)
    return _from_arrays(arrays, names, meta, root, ckey)


#: Parsed-array files of this and earlier formats (``ict-<key>.npz`` before versions were named).
_PARSED_FILE = re.compile(r"ict-(?:v(\d+)-)?[0-9a-f]{20}\.npz")


def _remove_other_formats(cdir: Path) -> None:
    """Remove parsed-array files of earlier formats from ``cdir`` (50 MB each, never read again),
    once a file of this format is written there; a file that cannot be removed is left."""
    for f in cdir.iterdir():
        m = _PARSED_FILE.fullmatch(f.name)
        if m and m.group(1) != str(CACHE_VERSION):
            try:
                f.unlink()
            except OSError:
                pass


def _write_cache(cdir: Path, ckey: str, skey: str, index_path: Path, arrays: dict) -> None:
    """Write the parsed arrays (about 50 MB) and their index entry, each atomically
    (:func:`voxface.mesh.atomic_open`: a hidden temporary of a random name, fsynced, renamed, removed on
    an error); a read-only or full cache directory only costs speed. Temporaries a killed writer left
    (SIGKILL, the out-of-memory killer, a job's time limit: 50 MB each, never read) go once untouched
    for :data:`voxface.mesh.STALE_TEMPORARY_S` (:func:`_remove_stale`)."""
    from ..mesh import atomic_open

    try:
        cdir.mkdir(parents=True, exist_ok=True)  # kept when a write fails (atomic_open would remove it)
        with atomic_open(cdir / _parsed_name(ckey)) as fh:
            np.savez(fh, **arrays)
        _remove_other_formats(cdir)
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}
        if not isinstance(index, dict):  # JSON but not the index ('null', a list): rewritten
            index = {}
        index[skey] = ckey
        with atomic_open(index_path) as fh:
            fh.write(json.dumps(index).encode())
    except OSError:  # a read-only or full cache directory only costs speed
        pass
    _remove_stale(cdir, ckey, index_path)


#: The temporaries of writes before they went through atomic_open: ``.ict-v1-<key>.<pid>.tmp.npz``
#: and ``ict-index.<pid>.tmp``.
_OLD_TEMPORARY = re.compile(r"(\.ict-v\d+-[0-9a-f]{20}\.\d+\.tmp\.npz|ict-index\.\d+\.tmp)")


def _remove_stale(cdir: Path, ckey: str, index_path: Path) -> None:
    """Remove the temporaries of killed writes of the parsed arrays and the index from ``cdir``
    (those untouched for :data:`voxface.mesh.STALE_TEMPORARY_S`, as
    :func:`voxface.mesh.remove_stale_temporaries` does, also of the earlier pid-named kind); best
    effort. Run after a write and when a load finds the arrays there (a killed first writer's
    temporary stayed for good: the next process found the cache another one had finished)."""
    import time

    from ..mesh import STALE_TEMPORARY_S, remove_stale_temporaries

    remove_stale_temporaries(cdir / _parsed_name(ckey))
    remove_stale_temporaries(index_path)
    try:
        old = [e for e in os.scandir(cdir) if _OLD_TEMPORARY.fullmatch(e.name)]
    except OSError:
        return
    for e in old:
        try:
            if time.time() - e.stat(follow_symlinks=False).st_mtime > STALE_TEMPORARY_S:
                os.unlink(e.path)
        except OSError:
            continue


#: Landmarks of ``idx_to_landmark_verts``: Multi-PIE's 68, in their order (the crop, the albedo's
#: regions and the mirror's renumbering of :mod:`voxface.augment` read them by index).
N_LANDMARKS = 68


def _check_meta(meta: Any, path: Path) -> None:
    """The keys of ``vertex_indices.json`` that voxface reads hold what ICT-FaceKit's do: ``expressions``
    a list of names, ``idx_to_landmark_verts`` :data:`N_LANDMARKS` whole numbers, ``incompatibilities``
    (optional) a list of name pairs; else one :class:`DataError` naming ``path``. (60 landmarks were an
    IndexError in the albedo, 67 trained on one landmark short without a word, 1225.7 was read as 1225,
    a string of expressions was read letter by letter, and incompatibilities 5 was a TypeError.)"""
    def bad(key: str, want: str, got: Any, at: str = "") -> DataError:
        text = repr(got)
        if len(text) > 60:
            text = f"a {type(got).__name__}" + (f" of {len(got)}" if hasattr(got, "__len__") else "")
        return DataError(f"malformed vertex_indices.json ({key} must be {want}, got {text}{at})", path)

    if not isinstance(meta, dict):
        raise bad("the file", "a JSON object", meta)
    for key in ("expressions", "idx_to_landmark_verts"):
        if key not in meta:
            raise DataError(f"malformed vertex_indices.json (no {key!r} key)", path)
    names = meta["expressions"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise bad("expressions", "a list of blendshape names", names)
    lm, key = meta["idx_to_landmark_verts"], "idx_to_landmark_verts"
    if not isinstance(lm, list) or not lm:
        raise bad(key, f"a list of the vertex indices of the {N_LANDMARKS} Multi-PIE landmarks", lm)
    k = next((k for k, i in enumerate(lm) if not isinstance(i, int) or isinstance(i, bool)), None)
    if k is not None:
        raise bad(key, "vertex indices (whole numbers)", lm[k], f" at position {k}")
    k = next((k for k, i in enumerate(lm) if not 0 <= i < N_VERTICES), None)
    if k is not None:
        raise DataError(f"{key} must list vertex indices below {N_VERTICES} (the neutral mesh's vertex count), got "
                        f"{lm[k]} at position {k}", path)
    if len(lm) != N_LANDMARKS:
        raise DataError(f"{key} must list the vertices of the {N_LANDMARKS} Multi-PIE landmarks, got {len(lm)}", path)
    pairs = meta.get("incompatibilities") or []
    if not isinstance(pairs, list) or \
            not all(isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs):
        raise bad("incompatibilities", "a list of pairs of blendshape names", pairs)


def _from_arrays(a: dict, names: list[str], meta: dict, root: Path, key: str) -> ICTModel:
    _check_neutral(a["neutral"], a["faces"], root / "generic_neutral_mesh.obj")  # a parse cached before it was checked
    landmarks = np.asarray(meta["idx_to_landmark_verts"], np.int64)  # 68 indices below N_VERTICES (_check_meta)
    pos = {n: i for i, n in enumerate(names)}
    incompatible = []
    for pair in meta.get("incompatibilities") or []:  # pairs (_check_meta); of names it knows
        if pair[0] in pos and pair[1] in pos:
            incompatible.append((pos[pair[0]], pos[pair[1]]))
    return ICTModel(
        neutral=a["neutral"].astype(np.float32),
        identity=a["identity"].astype(np.float32),
        expression=a["expression"].astype(np.float32),
        faces=a["faces"].astype(np.int32),
        quad_faces=a["quad_faces"].astype(np.int32),
        expression_names=names,
        incompatible=incompatible,
        landmarks=landmarks,
        root=root,
        key=key,
    )
