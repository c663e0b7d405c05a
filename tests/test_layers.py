"""The package shows its layers: imports only go downhill between sub-packages, read from the source, and the
modules that moved keep their old names for a while through depthlib._moved."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import depthlib
from depthlib import _moved

PACKAGE = Path(depthlib.__file__).parent

# module name prefix -> layer ("root": depthlib/__init__.py, which holds __version__ and installs the old names)
LAYERS = {
    "depthlib": "root", "depthlib._moved": "root",
    "depthlib.core": "core", "depthlib.data": "data", "depthlib.models": "models", "depthlib.figures": "figures",
    "depthlib.evaluation": "evaluation", "depthlib.training": "training", "depthlib.inference": "inference",
    "depthlib.notebook": "notebook", "depthlib.cli": "cli", "depthlib.__main__": "cli",
}
# (importer's layer, imported layer): downhill core < data < models, figures < evaluation < training < inference
# < notebook < cli, or within one layer. models and figures are side by side: neither imports the other.
ALLOWED = {
    ("root", "root"),
    ("core", "root"), ("core", "core"),
    ("data", "root"), ("data", "core"), ("data", "data"),
    ("models", "root"), ("models", "core"), ("models", "data"), ("models", "models"),
    ("figures", "root"), ("figures", "core"), ("figures", "data"), ("figures", "figures"),
    ("evaluation", "root"), ("evaluation", "core"), ("evaluation", "data"), ("evaluation", "models"),
    ("evaluation", "figures"), ("evaluation", "evaluation"),
    ("training", "root"), ("training", "core"), ("training", "data"), ("training", "models"), ("training", "figures"),
    ("training", "evaluation"), ("training", "training"),
    ("inference", "root"), ("inference", "core"), ("inference", "data"), ("inference", "models"),
    ("inference", "figures"), ("inference", "evaluation"), ("inference", "training"), ("inference", "inference"),
    ("notebook", "root"), ("notebook", "core"), ("notebook", "data"), ("notebook", "models"), ("notebook", "figures"),
    ("notebook", "evaluation"), ("notebook", "training"), ("notebook", "inference"), ("notebook", "notebook"),
    ("cli", "root"), ("cli", "core"), ("cli", "data"), ("cli", "models"), ("cli", "figures"), ("cli", "evaluation"),
    ("cli", "training"), ("cli", "inference"), ("cli", "notebook"), ("cli", "cli"),
}


def module_name(path: Path) -> str:
    """depthlib/training/train.py -> depthlib.training.train; a package's __init__.py -> the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether `name` is a module or package of the source tree."""
    p = PACKAGE.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports_of(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """Every depthlib module `path` (or `source` as if it were there) imports, inside functions too, as
    (absolute name, line)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "depthlib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "depthlib":
                continue
            for a in node.names:  # `from . import viz` imports the module depthlib.<package>.viz
                sub = f"{target}.{a.name}"
                out.append((sub if is_module(sub) else target, node.lineno))
    return out


def layer_of(name: str) -> str:
    """The layer of a module: its longest prefix in LAYERS."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise AssertionError(f"{name} belongs to no layer: add its sub-package to LAYERS and ALLOWED in {__file__}")


def import_edges() -> dict[tuple[str, str], str]:
    """(importer, imported) -> where, for every depthlib import in the package's source."""
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for target, line in imports_of(path):
            edges.setdefault((module_name(path), target), f"{path.relative_to(PACKAGE.parent)}:{line}")
    return edges


def test_the_top_level_is_the_package_entry_only():
    """`ls depthlib/` shows the stages: sub-packages, and at the top only the entry points."""
    assert {p.stem for p in PACKAGE.glob("*.py")} == {"__init__", "__main__", "cli", "_moved"}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == {"core", "data", "models", "figures", "evaluation", "training", "inference", "notebook"}


def test_imports_only_go_downhill():
    edges = import_edges()
    assert len(edges) > 100  # the walk found the package's imports (those inside functions included)
    uphill = [f"{where}: {a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
              for (a, b), where in sorted(edges.items()) if (layer_of(a), layer_of(b)) not in ALLOWED]
    assert not uphill, "imports against the layers:\n" + "\n".join(uphill)


def test_no_two_modules_import_each_other():
    edges = import_edges()
    both = sorted(f"{a} <-> {b} ({edges[a, b]}, {edges[b, a]})" for a, b in edges if a < b and (b, a) in edges)
    assert not both, "modules that import each other:\n" + "\n".join(both)


def test_the_check_sees_an_uphill_import_inside_a_function():
    """A late import from a higher layer, as a function would write it, is found and placed in its layers."""
    source = "def f():\n    from ..training import train\n    return train.fit\n"
    [(target, line)] = imports_of(PACKAGE / "data" / "planted.py", source)
    assert (target, line) == ("depthlib.training.train", 2)
    assert (layer_of("depthlib.data.planted"), layer_of(target)) not in ALLOWED


def test_every_sub_package_says_what_it_holds():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 20, f"{init}: start with a docstring saying what the sub-package holds"


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_name_is_the_new_module_with_a_warning(old, monkeypatch):
    new = _moved.MOVED[old]
    monkeypatch.delitem(sys.modules, old, raising=False)  # as in a fresh process (monkeypatch puts it back)
    monkeypatch.delattr(depthlib, old.rpartition(".")[2], raising=False)
    with pytest.warns(DeprecationWarning, match=rf"^{re.escape(old)} moved to {re.escape(new)}; import it from there$"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new) and sys.modules[old] is module
    assert module.__spec__.name == new and module.__name__ == new  # the module keeps its own identity


def test_the_warning_points_at_the_importing_line(monkeypatch):
    monkeypatch.delitem(sys.modules, "depthlib.train", raising=False)
    monkeypatch.delattr(depthlib, "train", raising=False)
    with pytest.warns(DeprecationWarning) as caught:
        from depthlib.train import fit
    from depthlib.training import fit as new_fit
    from depthlib.training.train import fit as canonical

    assert fit is new_fit is canonical
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]


def test_the_old_inference_module_names_live_in_the_package():
    from depthlib.inference import REPLAYABLE_CROPS, load_for_inference
    from depthlib.inference.load import load_for_inference as canonical

    assert load_for_inference is canonical and REPLAYABLE_CROPS == ("nyu", "none")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=PACKAGE.parent)


def test_old_module_command_still_runs_and_says_the_new_one():
    old = _run("-m", "depthlib.pipeline", "--help")
    assert old.returncode == 0, old.stderr
    assert "usage: python -m depthlib pipeline" in old.stdout
    assert ("DeprecationWarning: depthlib.pipeline moved to depthlib.notebook.pipeline; "
            "run `python -m depthlib pipeline` instead") in old.stderr


def test_new_command_runs_without_a_warning():
    new = _run("-m", "depthlib", "pipeline", "--help")
    assert new.returncode == 0, new.stderr
    assert "usage: python -m depthlib pipeline" in new.stdout
    assert "moved to" not in new.stderr and "Warning" not in new.stderr, new.stderr


def test_the_command_lists_and_forwards_pipeline_and_train(capsys):
    from depthlib import cli

    listing = cli.build_parser().format_help()
    assert "pipeline" in listing and "train" in listing
    # options first are forwarded (argparse would read them as depthlib's own), and so are the exit statuses
    assert cli.main(["pipeline", "--only", "99"]) == 2
    assert "[pipeline] error: --only 99" in capsys.readouterr().err
    assert cli.main(["train", "--prepared", "no/such/file.h5"]) == 2
    assert "no/such/file.h5: file not found" in capsys.readouterr().err
