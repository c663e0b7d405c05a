"""README.md and docs/*.md say only what the code does: every command line parses, every link and snippet resolves.

Commands are taken from fenced ```bash / ```sh / ```console / ```shell blocks and from unlabelled blocks whose
first line starts with a known command; each line (continuations joined, comments dropped) is checked by the
cheapest check that is still the command's own:

- `depthlib ...`, `python -m depthlib ...` (any python, e.g. `.venv/bin/python`), `torchrun ... -m depthlib ...`:
  `depthlib pipeline` runs with `--dry-run` (it resolves the profile, --only and every --set, and runs nothing);
  `depthlib train` goes through train_cli's parser and the settings check it runs before training; other
  subcommands (`predict`, `export-onnx`) through the argparse parser of depthlib.cli. The old module paths
  (`python -m depthlib.pipeline`, `-m depthlib.train_cli`) are refused: the docs show the current commands.
- `torchrun ...`: its arguments through torch's own torchrun parser, then the module part as above.
- `python -c "..."`: the code compiles and every module it imports exists (depthlib names are imported).
- `python benchmarks/x.py ...`: the script exists, `--help` works (a subprocess), and names every --option used.
- `make TARGET [VAR=value]`: `make -n TARGET` succeeds.
- `.venv/bin/jupyter ...`: the executable and every path argument exist.
- `pip install PKG==VER`: not run (it needs the network); the pinned requirement must be the one depthlib's own
  source names (the weights resolver's message), so the docs and the error a user meets agree.

Also: ```python blocks compile and each `from depthlib... import X` names something that exists; every relative
link (and its #anchor) points to a file (and a heading) that exists; README.md stays at most 210 lines.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 210

SHELL_LANGS = {"bash", "sh", "console", "shell", "shell-session"}
# An unlabelled block is a shell block when its first command starts with one of these (else it is text: a tree).
COMMANDS = ("make", "depthlib", "python", "python3", ".venv/bin/python", ".venv/bin/jupyter", "torchrun", "pip",
            "nice")
# Commands of before the sub-packages: they still run, with a DeprecationWarning; the docs show the new ones.
OLD_COMMAND_MODULES = {"depthlib.pipeline": "pipeline", "depthlib.train_cli": "train"}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int      # 1-based line of the opening fence
    lang: str
    body: str

    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Command:
    block: Block
    line: int      # 1-based line of the command in its file
    text: str      # the logical line, continuations joined, comment dropped
    argv: tuple[str, ...]

    def where(self) -> str:
        return f"{self.block.doc.relative_to(ROOT)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where()}: {self.text}"


def fenced_blocks(doc: Path) -> list[Block]:
    """Every fenced code block of a markdown file (fences may be indented, e.g. inside a list item)."""
    blocks, lines = [], doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^\s*{fence}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        assert j < len(lines), f"{doc.relative_to(ROOT)}:{i + 1}: code block never closed"
        blocks.append(Block(doc, i + 1, lang, "\n".join(body)))
        i = j + 1
    return blocks


def _first_word(line: str) -> str:
    words = line.strip().removeprefix("$ ").split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # FOO=bar before the command
        words.pop(0)
    return words[0] if words else ""


def is_shell(block: Block) -> bool:
    if block.lang in SHELL_LANGS:
        return True
    if block.lang:
        return False
    first = next((ln for ln in block.body.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    return _first_word(first) in COMMANDS


def commands_of(block: Block) -> list[Command]:
    """The block's command lines: `\\` continuations joined, `# comments` and `$ ` prompts dropped."""
    out, pending, start = [], "", 0
    for n, raw in enumerate(block.body.splitlines(), block.line + 1):
        line = raw.rstrip()
        start = start if pending else n
        if block.lang == "console":
            if not line.lstrip().startswith("$ ") and not pending:
                continue  # output shown under a prompt
            line = line.lstrip().removeprefix("$ ")
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if not text or text.startswith("#"):
            continue
        lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
        lexer.whitespace_split, lexer.commenters = True, "#"
        argv = tuple(lexer)
        if argv:
            out.append(Command(block, start, " ".join(text.split(" #")[0].split()), argv))
    assert not pending, f"{block.where()}: a line ends with a continuation backslash and nothing follows"
    return out


def all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in fenced_blocks(doc)]


def all_commands() -> list[Command]:
    return [c for b in all_blocks() if is_shell(b) for c in commands_of(b)]


def _id(c: Command) -> str:
    return f"{c.where()}:{' '.join(c.argv[:4])[:60]}"


COMMANDS_FOUND = all_commands()


# ---------------------------------------------------------------------------------------------------------------
# depthlib's own commands


def check_depthlib(argv: list[str], cmd: Command) -> None:
    """`depthlib <argv>`: parsed by the command's own parser (pipeline: resolved with --dry-run)."""
    from depthlib.cli import build_parser as cli_parser

    assert argv, f"{cmd}: `depthlib` without a subcommand"
    sub, rest = argv[0], argv[1:]
    if sub in ("pipeline", "train"):  # `depthlib` hands the rest to the subcommand's own parser, checked below
        _parsed(cli_parser(), [sub], cmd)
    if sub == "pipeline" and not _asks_help(rest):
        from depthlib.notebook.pipeline import main as pipeline_main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = pipeline_main(rest if "--dry-run" in rest else [*rest, "--dry-run"])
            except SystemExit as e:  # argparse refused an argument
                rc = e.code
        assert rc == 0, f"{cmd}: `depthlib pipeline ... --dry-run` exited {rc}: {err.getvalue().strip()}"
    elif sub == "train":
        from depthlib.training.train_cli import build_configs, build_parser

        args = _parsed(build_parser(), rest, cmd)
        if args is not None:
            from depthlib.core.errors import DepthlibError

            try:
                build_configs(args)  # unknown --data / --train names and values of the wrong type are refused here
            except DepthlibError as e:
                pytest.fail(f"{cmd}: depthlib train refuses its settings: {e}")
    else:
        _parsed(cli_parser(), argv, cmd)


def _asks_help(argv: list[str]) -> bool:
    return "--help" in argv or "-h" in argv


def _parsed(parser, argv: list[str], cmd: Command):
    """parser.parse_args(argv), or None after a --help that exited 0; a refusal fails with argparse's message."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit as e:
        if _asks_help(argv) and not e.code:
            return None
        pytest.fail(f"{cmd}: the argument parser refused it (exit {e.code}): {err.getvalue().strip()}")


def check_module_run(module: str, argv: list[str], cmd: Command) -> None:
    """`python -m <module> <argv>`."""
    assert module not in OLD_COMMAND_MODULES, (
        f"{cmd}: `-m {module}` is the old command; write `-m depthlib {OLD_COMMAND_MODULES[module]}`")
    assert module == "depthlib", f"{cmd}: no rule for `python -m {module}`; add one to tests/test_docs.py"
    check_depthlib(argv, cmd)


def check_python(argv: list[str], cmd: Command) -> None:
    """`python -m ...`, `python -c "..."` or `python script.py ...`."""
    if argv[:1] == ["-m"]:
        assert len(argv) >= 2, f"{cmd}: -m without a module"
        if argv[1] == "pip":
            check_pip(argv[2:], cmd)
        else:
            check_module_run(argv[1], argv[2:], cmd)
    elif argv[:1] == ["-c"]:
        check_python_code(argv[1], cmd.block, str(cmd))
    else:
        check_script(argv, cmd)


def check_script(argv: list[str], cmd: Command) -> None:
    """`python benchmarks/x.py ...`: the script exists, its --help works and names every option the line uses."""
    script = ROOT / argv[0]
    assert script.is_file(), f"{cmd}: {argv[0]} does not exist"
    r = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{cmd}: `{argv[0]} --help` exited {r.returncode}: {r.stderr[-500:]}"
    for opt in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", r.stdout), f"{cmd}: {argv[0]} has no option {opt}"


def check_pip(argv: list[str], cmd: Command) -> None:
    """`pip install PKG==VER`: not run (network); each pinned requirement is one depthlib's source names."""
    assert argv[:1] == ["install"], f"{cmd}: only `pip install` lines are expected in the docs"
    source = "\n".join(p.read_text() for p in (ROOT / "depthlib").rglob("*.py"))
    for req in (a for a in argv[1:] if not a.startswith("-")):
        assert "==" in req, f"{cmd}: pin {req} to the version depthlib names"
        assert req in source, f"{cmd}: depthlib's source never names {req}: the docs and its error messages disagree"


def check_torchrun(argv: list[str], cmd: Command) -> None:
    """torchrun's own parser for its arguments, then the module it launches as `python -m`."""
    from torch.distributed.run import get_args_parser

    args = _parsed(get_args_parser(), argv, cmd)
    assert args.module, f"{cmd}: launch depthlib as a module (-m depthlib train ...)"
    check_module_run(args.training_script, list(args.training_script_args), cmd)


def check_make(argv: list[str], cmd: Command) -> None:
    targets = [a for a in argv if "=" not in a and not a.startswith("-")]
    assert targets, f"{cmd}: `make` without a target (name one: the docs say what each does)"
    r = subprocess.run(["make", "-n", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{cmd}: `make -n {' '.join(argv)}` failed: {r.stderr.strip()[-300:]}"


def check_paths_exist(argv: list[str], cmd: Command) -> None:
    exe = ROOT / argv[0]
    assert exe.exists() or not argv[0].startswith(".venv/"), f"{cmd}: {argv[0]} does not exist (make venv creates it)"
    for a in argv[1:]:
        if not a.startswith("-") and "/" in a:
            assert (ROOT / a).exists(), f"{cmd}: {a} does not exist"


def check_command(cmd: Command) -> None:
    argv = list(cmd.argv)
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[0]):
        argv.pop(0)
    if argv[:1] == ["nice"]:
        argv = argv[3:] if argv[1:2] == ["-n"] else argv[1:]
    exe = argv[0]
    name = Path(exe).name
    if exe == "depthlib":
        check_depthlib(argv[1:], cmd)
    elif re.fullmatch(r"python(3(\.\d+)?)?", name):
        check_python(argv[1:], cmd)
    elif exe == "torchrun":
        check_torchrun(argv[1:], cmd)
    elif exe == "make":
        check_make(argv[1:], cmd)
    elif name == "jupyter":
        check_paths_exist(argv, cmd)
    elif exe == "pip":
        check_pip(argv[1:], cmd)
    else:
        pytest.fail(f"{cmd}: no rule for `{exe}` lines; add one to tests/test_docs.py (or a reason to skip it)")


@pytest.mark.parametrize("cmd", COMMANDS_FOUND, ids=_id)
def test_command_line_parses(cmd: Command) -> None:
    check_command(cmd)


def test_the_docs_show_the_commands_a_user_needs() -> None:
    """The extraction found the command blocks (a change of fence style would otherwise check nothing)."""
    lines = [" ".join(c.argv) for c in COMMANDS_FOUND]
    readme = [c for c in COMMANDS_FOUND if c.block.doc.name == "README.md"]
    assert len(lines) >= 20, lines
    for needed in ("make pipeline", "make test", "-m depthlib pipeline --profile sample", "-m depthlib train",
                   "-m depthlib predict", "-m depthlib export-onnx", "torchrun"):
        assert any(needed in ln for ln in lines), f"no command line shows `{needed}`"
    assert sum("-m depthlib pipeline" in " ".join(c.argv) for c in readme) >= 4, "the README lost its pipeline commands"
    assert {"make pipeline", "make test"} <= {" ".join(c.argv) for c in readme}


# ---------------------------------------------------------------------------------------------------------------
# Python snippets


def check_python_code(code: str, block: Block, what: str) -> None:
    """`code` compiles; each module it imports exists, and each name a depthlib import asks for is there."""
    try:
        tree = ast.parse(code, filename=what)
        compile(tree, what, "exec")
    except SyntaxError as e:
        pytest.fail(f"{what}: does not compile: {e}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _check_module(alias.name, what)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"{what}: relative import"
            if not node.module.startswith("depthlib"):
                _check_module(node.module, what)
                continue
            assert node.module not in OLD_IMPORT_PATHS, (
                f"{what}: `from {node.module} import ...` is an old module path; import from {OLD_IMPORT_PATHS[node.module]}")
            mod = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*":
                    continue
                sub_module = hasattr(mod, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}")
                assert hasattr(mod, alias.name) or sub_module, (
                    f"{what}: `from {node.module} import {alias.name}`: {node.module} has no {alias.name}")


def _check_module(name: str, what: str) -> None:
    assert name not in OLD_IMPORT_PATHS, f"{what}: `import {name}` is an old module path; use {OLD_IMPORT_PATHS[name]}"
    if name.startswith("depthlib"):
        importlib.import_module(name)
    else:
        assert importlib.util.find_spec(name.split(".")[0]), f"{what}: no module {name} is installed"


# Flat module paths of before the sub-packages (they import, with a DeprecationWarning): the docs show the new ones.
def _old_paths() -> dict[str, str]:
    from depthlib._moved import MOVED

    return MOVED


OLD_IMPORT_PATHS = _old_paths()

PYTHON_BLOCKS = [b for b in all_blocks() if b.lang in ("python", "py", "python3")]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where())
def test_python_snippet_compiles_and_its_imports_exist(block: Block) -> None:
    check_python_code(block.body, block, block.where())


# ---------------------------------------------------------------------------------------------------------------
# Links and length


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading.strip()).lower()  # code spans and emphasis render as their text
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    out, seen, in_code = set(), {}, False
    for line in doc.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            out.add(slug if n == 0 else f"{slug}-{n}")
            seen[slug] = n + 1
    return out


def links(doc: Path) -> list[tuple[int, str]]:
    """(line, target) of every inline markdown link and image outside code blocks and code spans."""
    out, in_code = [], False
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        text = re.sub(r"`[^`]*`", "code", line)  # a code span is text, also inside a link's text
        for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
            out.append((n, m.group(1)))
    return out


LINKS = [(doc, n, t) for doc in DOCS for n, t in links(doc) if not re.match(r"^[a-z]+:", t)]


@pytest.mark.parametrize("doc,line,target", LINKS, ids=[f"{d.relative_to(ROOT)}:{n}:{t}" for d, n, t in LINKS])
def test_relative_link_points_to_a_file(doc: Path, line: int, target: str) -> None:
    where = f"{doc.relative_to(ROOT)}:{line}"
    path, _, anchor = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    assert dest.exists(), f"{where}: link to {target}: {dest} does not exist"
    assert ROOT in dest.parents or dest == ROOT, f"{where}: link to {target} leaves the repository"
    if anchor and dest.suffix == ".md":
        assert anchor in anchors(dest), f"{where}: {dest.relative_to(ROOT)} has no heading #{anchor}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    """A newcomer reaches every task page from the front page in one link."""
    linked = {(ROOT / t.partition("#")[0]).resolve() for _, t in links(ROOT / "README.md") if t.startswith("docs/")}
    missing = [p.name for p in DOCS[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_readme_is_a_short_guide() -> None:
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail to docs/"


def _headings(doc: Path) -> set[str]:
    return {re.sub(r"[`*]", "", m.group(1)).strip() for m in re.finditer(r"(?m)^#{1,6}\s+(.*?)\s*#*\s*$", doc.read_text())}


def test_profile_comments_cite_pages_and_headings_that_exist() -> None:
    # own.toml sent readers to the README's "Fine-tune on your own data"; the README's heading is "Your own data".
    cited = []
    for profile in sorted((ROOT / "notebooks" / "profiles").glob("*.toml")):
        for n, line in enumerate(profile.read_text().splitlines(), 1):
            comment = line.partition("#")[2]
            for page, heading in re.findall(r"\b(README|[\w./-]+\.md), \"([^\"]+)\"", comment):
                doc = ROOT / ("README.md" if page == "README" else page)
                where = f"{profile.relative_to(ROOT)}:{n}"
                assert doc.is_file(), f"{where}: cites {page}, which does not exist"
                assert heading in _headings(doc), f"{where}: {page} has no heading {heading!r}"
                cited.append(where)
    assert cited  # the own profile points its reader somewhere
