"""Review 39, html/viz: the self-contained page's checker and the page's notes."""

from __future__ import annotations

import trimesh

from voxface.html import mesh_page, offline_problems


def test_offline_problems_reads_tags_and_code_not_the_text_the_page_shows():
    """A photo named ``<img src=x onerror=alert(1)>.jpg`` titles the page escaped (text, never
    fetched), yet offline_problems reported ``['src=x']``: the page of a self-contained run read as
    reaching the network. So did a description quoting an address. Tags and script/style bodies are
    still read, srcset and poster too, and a quoted ``>`` does not end a tag."""
    name = "<img src=x onerror=alert(1)>.jpg"
    html = mesh_page([trimesh.creation.icosphere(1, 50.0)], [name], title=f"voxface: {name}",
                     description='data: "https://ict.usc.edu" & href=a.png')
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html and "<img src" not in html
    assert offline_problems(html) == []
    assert offline_problems("<h1>&lt;img src=x&gt;</h1><p>see https://example.org</p>") == []
    # what a browser would fetch is still found
    assert offline_problems('<img alt="a>b" src="x.png">') == ['src="x.png']
    assert offline_problems('<img srcset="a.png 2x">') == ['srcset="a.png']
    assert offline_problems('<video poster="p.png"></video>') == ['poster="p.png']
    assert offline_problems('<script>img.src = "face.png"</script>') == ['src = "face.png']
    assert offline_problems('<p>x</p><script>fetch("https://cdn.example.org/a.js")') == ["https://cdn.example.org"]
    assert offline_problems("<style>body { background: url(a.png) }</style>") == ["url("]
    bad = html.replace("<style>", '<script src="https://cdn.example.org/x.js"></script><style>', 1)
    assert offline_problems(bad) == ['src="https://cdn.example.org/x.js']
