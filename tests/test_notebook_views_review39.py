"""Review 39 (plotly): the notebook's interactive views (voxface.viz's plotly figures)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from voxface.errors import InputError

pytest.importorskip("plotly")


def _sphere(subdivisions: int = 4) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions, radius=80.0)


def _faces(trace) -> int:
    return len(np.asarray(trace.i))


def test_a_plotly_figure_decimates_a_large_mesh_as_the_page_does_and_says_so():
    """A figure embedded every face: a 256^3 mesh (327,680 faces) was 11 MB of notebook output and
    a sequence of four 55 MB (the notebook froze). Meshes over max_faces (20,000 as mesh_page) are
    decimated for the figure only (html's decimation), the title saying so; the mesh is untouched."""
    from voxface.viz import plot_mesh_plotly, plot_meshes_plotly

    big, small = _sphere(4), _sphere(2)  # 5,120 and 320 faces
    before_v, before_f = big.vertices.copy(), big.faces.copy()
    fig = plot_mesh_plotly(big, title="face", max_faces=1000)
    shown = _faces(fig.data[0])
    assert 4 <= shown <= 1000
    assert fig.layout.title.text == f"face \u00b7 {shown:,} of 5,120 faces shown"
    assert np.array_equal(big.vertices, before_v) and np.array_equal(big.faces, before_f)
    assert len(fig.data[0].x) < len(big.vertices)
    # no title: the note is the title; never decimated (None) or under the budget: no note
    assert plot_mesh_plotly(big, max_faces=1000).layout.title.text == f"{shown:,} of 5,120 faces shown"
    whole = plot_mesh_plotly(big, max_faces=None)
    assert _faces(whole.data[0]) == 5120 and whole.layout.title.text is None
    assert plot_mesh_plotly(big, title="face").layout.title.text == "face"  # the default: 20,000

    seq = plot_meshes_plotly([big, small], ["a", "b"], title="A to B", max_faces=1000)
    assert [_faces(fr.data[0]) for fr in seq.frames] == [shown, 320]
    assert _faces(seq.data[0]) == shown
    # each step's title: the decimated step says so, the other takes the plain title back
    assert [fr.layout.title.text for fr in seq.frames] == [f"A to B \u00b7 {shown:,} of 5,120 faces shown", "A to B"]
    assert seq.layout.title.text == seq.frames[0].layout.title.text
    assert seq.layout.margin.t == 30
    # nothing decimated: frames carry no layout, the figure as before
    plain = plot_meshes_plotly([small, small])
    assert plain.layout.title.text is None and plain.layout.margin.t == 0
    assert all(fr.layout.title.text is None for fr in plain.frames)


@pytest.mark.parametrize("bad", [3, 0, float("nan"), float("inf"), "many"])
def test_a_plotly_figure_refuses_a_max_faces_the_page_refuses(bad):
    from voxface.viz import plot_mesh_plotly, plot_meshes_plotly

    for call in (plot_mesh_plotly, lambda m, **k: plot_meshes_plotly([m], **k)):
        with pytest.raises(InputError, match=r"^max_faces must be a number of faces, at least 4 \(or None: never "
                                             r"decimate\), got "):
            call(_sphere(1), max_faces=bad)


def test_a_sequence_names_its_mesh_with_nan_vertices_and_a_bad_height_is_one_line():
    """A NaN vertex in step 7 of a sequence was 'cannot render a mesh with non-finite vertices' (which
    one?), and height=0 (or 'big', NaN) plotly's dozen-line ValueError."""
    from voxface.errors import VoxfaceError
    from voxface.viz import plot_mesh_plotly, plot_meshes_plotly

    good, bad = _sphere(1), _sphere(1)
    bad.vertices[[0, 5]] = np.nan
    with pytest.raises(VoxfaceError, match=r"^cannot plot mesh 2: it has non-finite vertices: 2 of 42 have NaN or "
                                           r"infinite coordinates$"):
        plot_meshes_plotly([good, good, bad])
    with pytest.raises(VoxfaceError, match=r"^cannot plot mesh 0: it has non-finite vertices: 2 of 42"):
        plot_mesh_plotly(bad)
    for height in (0, 9, -560, float("nan"), "big", None):
        with pytest.raises(InputError) as e:
            plot_meshes_plotly([good], height=height)
        assert str(e.value) == f"height must be a number of pixels, at least 10, got {height!r}"
    assert plot_meshes_plotly([good], height=10.0).layout.height == 10


def test_the_hover_gives_the_vertex_in_mm_and_names_the_step():
    """The hover read the bare coordinates and, in a sequence, 'trace 0' at every step."""
    from voxface.viz import plot_mesh_plotly, plot_meshes_plotly

    hover = "x %{x:.1f} mm<br>y %{y:.1f} mm<br>z %{z:.1f} mm"
    assert plot_mesh_plotly(_sphere(1)).data[0].hovertemplate == hover + "<extra></extra>"
    labels = ["t = 0", "50%{x} done", "t = 0"]  # a label is a name, never read as a template
    fig = plot_meshes_plotly([_sphere(1)] * 3, labels)
    assert [fr.data[0].name for fr in fig.frames] == labels and fig.data[0].name == "t = 0"
    assert {fr.data[0].hovertemplate for fr in fig.frames} == {hover + "<extra>%{fullData.name}</extra>"}
