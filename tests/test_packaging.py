"""What an installed voxface holds: the bundled weights as package data, the console script; and
what it says of the repository's configs/ folder, which it does not install. And what the README and
docs/ promise of the repository: every test, file and command-line option they name exists."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
from pathlib import Path

import pytest

import voxface
from voxface.errors import ConfigError


def test_bundled_weights_are_package_data():
    from voxface.checkpoint import DEFAULT_WEIGHTS

    res = importlib.resources.files("voxface").joinpath("weights", "vox-cpk.pth.tar")
    assert res.is_file()
    with importlib.resources.as_file(res) as path:
        assert path.resolve() == DEFAULT_WEIGHTS.resolve()


def test_console_script_entry_point():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("voxface") == "voxface.cli:main"


def test_a_missing_repository_config_says_configs_is_not_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as after `pip install voxface`: no configs/ here
    with pytest.raises(ConfigError, match=r"config file not found \(configs/ is a folder of the voxface "
                                          r"repository, not installed"):
        voxface.load_yaml("configs/voxface-64.yaml")
    with pytest.raises(ConfigError, match=r"config file not found$"):  # other paths: no hint
        voxface.load_yaml("no-such.yaml")
    # a configs/ config whose inherit_from is missing: the file was found, so no hint either
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("inherit_from: b.yaml\n")
    with pytest.raises(ConfigError) as e:
        voxface.load_yaml("configs/a.yaml")
    assert "not installed" not in str(e.value)


def test_package_is_marked_typed():
    """PEP 561: without ``py.typed`` mypy refuses ``import voxface`` (missing library stubs) and
    ignores every annotation of the package. setuptools puts the marker in the wheel."""
    assert importlib.resources.files("voxface").joinpath("py.typed").is_file()


ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Paths the docs tell the reader to create (docs/real_data.md: "save it as configs/real-64.yaml").
USER_FILES = {"configs/real-64.yaml"}


def _code_spans(text: str) -> list[str]:
    """Inline code spans and the lines of fenced code blocks (their ``#`` comments cut off)."""
    spans = re.findall(r"`([^`\n]+)`", text)
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            spans.append(line.split(" #")[0])
    return spans


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_tests_that_exist(doc):
    """The failure tables cite ``test_x.py::test_y`` (or ``::test_y`` after a file named before)
    for each promise: a renamed or removed test left the row citing nothing."""
    defined = {f.name: set(re.findall(r"^def (test_\w+)", f.read_text(), re.M)) for f in (ROOT / "tests").glob("test_*.py")}
    everywhere = set().union(*defined.values())
    missing = []
    for m in re.finditer(r"(?:tests/)?(test_\w+\.py)?::(test_\w+)|(?:tests/)?(test_\w+\.py)", doc.read_text()):
        file, name = m.group(1) or m.group(3), m.group(2)
        if file and file not in defined:
            missing.append(file)
        elif name and name not in (defined[file] if file else everywhere):
            missing.append(f"{file or ''}::{name}")
    assert not missing, f"{doc.name} cites tests that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_repository_paths_that_exist(doc):
    text = doc.read_text()
    named = set(re.findall(r"\]\(((?:docs|configs|benchmarks|notebooks|voxface|tests)/[^)#\s]*)\)", text))
    for span in _code_spans(text):
        named.update(re.findall(r"(?<![\w./-])((?:docs|configs|benchmarks|notebooks|voxface|tests)/[\w./-]*\w/?)", span))
    missing = sorted(p for p in named - USER_FILES if not (ROOT / p).exists())
    assert not missing, f"{doc.name} names paths the repository does not have: {missing}"


def _cli_options() -> dict[str, set[str]]:
    """``{"reconstruct": {"--out", "-o", ...}, "data cache": {...}}`` from the typer app itself."""
    import typer

    from voxface.cli import app

    out: dict[str, set[str]] = {}

    def walk(cmd, name):
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub_name, sub in subs.items():
                walk(sub, f"{name} {sub_name}".strip())
        else:
            out[name] = {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", ()))} | {"--help", "-h"}

    walk(typer.main.get_command(app), "")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_give_commands_only_options_they_have(doc):
    """Every ``voxface CMD ... --option`` written in the docs (code spans, code blocks and the README's
    command table) is an option of that command, and every sub-command named exists."""
    options = _cli_options()
    groups = {name.split()[0] for name in options if " " in name}
    wrong = []
    spans = _code_spans(doc.read_text())
    for span in spans:
        for m in re.finditer(r"\bvoxface ([a-z][a-z-]*)((?: +[^ |;]+)*)", span):
            name, words = m.group(1), [w.strip("'\"") for w in m.group(2).split()]
            if name in groups:
                if not words or f"{name} {words[0]}" not in options:
                    wrong.append(span)
                    continue
                name, words = f"{name} {words[0]}", words[1:]
            if name not in options:
                continue  # prose such as `voxface inspect`'s "voxface's"
            for word in words:
                for opt in word.split("=")[0].strip("[](),`").split("/"):  # `--hidden/--layers N`
                    if re.match(r"^--?[a-z]", opt) and opt not in options[name]:
                        wrong.append(f"voxface {name} {opt}")
    # the command table writes its options in the description too: `--smooth N (0..1000 ...)`
    for row in re.findall(r"^\| `voxface ([a-z-]+(?: [a-z-]+)?)[^`]*` \|(.*)\|$", doc.read_text(), re.M):
        name = row[0] if row[0] in options else row[0].split()[0]
        for opt in re.findall(r"`(--?[a-z][a-z0-9-]*)", row[1]):
            if name in options and opt not in options[name]:
                wrong.append(f"voxface {name} {opt} (command table)")
    assert not wrong, f"{doc.name} gives commands options or sub-commands they do not have: {wrong}"
