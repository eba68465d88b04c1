"""Review 38 of voxface.mesh: mesh extraction, export and its atomic writers."""

from __future__ import annotations

import os
import stat

import pytest
import trimesh

from voxface.errors import VoxfaceError
from voxface.mesh import atomic_open, atomic_write_files, export_mesh, output_problem


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_mesh_written_onto_a_fifo_or_device_is_refused_not_replaced_by_a_file(tmp_path):
    """Every write makes a new file and renames it over the name: export_mesh(m, "pipe.ply") replaced
    the named pipe a reader waited on with a regular file, and as root export_mesh(m, "/dev/null")
    replaced the null device (the CLI refused these since a087044, the library did not). Refused in
    one line naming the file, the node left as it was, nothing else written."""
    mesh = trimesh.creation.icosphere(subdivisions=1)
    fifo = tmp_path / "pipe.ply"
    os.mkfifo(fifo)
    link = tmp_path / "link.stl"
    link.symlink_to(fifo.name)
    nodes = [(fifo, "a FIFO (named pipe)"), (link, "a FIFO (named pipe)")]
    if os.geteuid() == 0:  # mknod of a character device needs root (CAP_MKNOD)
        dev = tmp_path / "null.obj"
        os.mknod(dev, stat.S_IFCHR | 0o644, os.makedev(1, 3))
        nodes.append((dev, "a device"))
    for path, kind in nodes:
        problem = f"is {kind}; voxface writes a new file and renames it over the name, which would replace it"
        with pytest.raises(VoxfaceError) as e:
            export_mesh(mesh, path)
        assert str(e.value).startswith(f"{path}: {problem}") and "\n" not in str(e.value)
        with pytest.raises(VoxfaceError, match="FIFO|device"):
            atomic_write_files([(tmp_path / "first.txt", b"x"), (path, b"y")])
        with pytest.raises(OSError, match="FIFO|device"), atomic_open(path) as f:
            f.write(b"z")  # pragma: no cover - never opened
        assert output_problem(path).startswith(problem)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.path.islink(link)
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.stat(tmp_path / "null.obj").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p, _ in nodes)  # no first.txt, no .tmp
    # regular files and new names are written as before
    assert output_problem(tmp_path / "new.ply") is None
    export_mesh(mesh, tmp_path / "new.ply")
    export_mesh(mesh, tmp_path / "new.ply")
    assert len(trimesh.load(tmp_path / "new.ply").faces) == len(mesh.faces)


def test_a_loaded_glb_written_again_as_glb_keeps_its_size(tmp_path):
    """trimesh.load of a .glb (voxface's own) gives metres and says so (units 'meters'); export_mesh
    divided it by 1000 again, taking it for millimetres, so a head re-exported from its .glb (a scene
    or force='mesh') came out 0.16 mm across. The GLB scale comes from the mesh's units where it gives
    them; meshes without units (voxface's) are millimetres as before; units trimesh does not know are
    one line naming the file."""
    from voxface.errors import InputError

    head = trimesh.creation.icosphere(subdivisions=2, radius=80.0)  # mm, no units: as voxface's meshes
    first = export_mesh(head, tmp_path / "head.glb")
    assert trimesh.load(first, force="mesh").extents == pytest.approx([0.16] * 3, rel=1e-6)
    for loaded in (trimesh.load(first), trimesh.load(first, force="mesh")):
        again = export_mesh(loaded, tmp_path / "again.glb")
        assert trimesh.load(again, force="mesh").extents == pytest.approx([0.16] * 3, rel=1e-6)
        assert export_mesh(loaded, tmp_path / "again.ply").read_bytes() == export_mesh(
            trimesh.load(first, force="mesh"), tmp_path / "ref.ply").read_bytes()  # other formats: as they are
    inches = head.copy()
    inches.units = "inches"
    assert trimesh.load(export_mesh(inches, tmp_path / "in.glb"), force="mesh").extents == pytest.approx(
        [160 * 0.0254] * 3, rel=1e-6)
    inches.units = "cubits of the king"
    with pytest.raises(InputError, match="units 'cubits of the king' are not a length") as e:
        export_mesh(inches, tmp_path / "bad.glb")
    assert str(e.value).startswith(f"{tmp_path / 'bad.glb'}: ") and not (tmp_path / "bad.glb").exists()
