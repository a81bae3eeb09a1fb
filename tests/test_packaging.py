"""Packaging: setup.py lists every third-party module the package imports, and reads the version
from its one source (``lskd_plugins.__version__``)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_REQUIRED = {"fairseq", "fairseq_cli"}  # built by `make install`; `lskd` names it when missing


def _setup_module():
    spec = importlib.util.spec_from_file_location("lskd_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # guarded by __main__: setup() does not run
    return module


def _guarded(tree: ast.AST) -> set:
    """ids of import nodes inside ``try: ... except ImportError`` (optional extras, e.g. wandb)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            names = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if names & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
                guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return guarded


def imported_top_level_modules(package: Path) -> set:
    """Top-level names of every required ``import x`` / ``from x import`` in the package (absolute
    imports; those guarded by ``except ImportError`` are optional and left out)."""
    names = set()
    for file in package.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        optional = _guarded(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def third_party(names: set) -> set:
    return {
        n for n in names if n not in sys.stdlib_module_names and n != "lskd_plugins" and n != "__future__"
    }


def test_every_imported_third_party_module_is_in_install_requires():
    setup = _setup_module()
    imported = third_party(imported_top_level_modules(REPO / "lskd_plugins"))
    missing = sorted(imported - set(setup.REQUIREMENTS) - NOT_REQUIRED)
    assert not missing, f"imported by lskd_plugins but not in setup.py's REQUIREMENTS: {missing}"
    assert {"torch", "timm", "sacrebleu", "sklearn", "sentencepiece"} <= imported  # the parser sees them


def test_the_check_catches_a_missing_module(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import os\nfrom somewhere_else.sub import x\nfrom . import y\n"
        "try:\n    import optional_extra\nexcept ImportError:\n    pass\n"
    )
    assert third_party(imported_top_level_modules(tmp_path / "pkg")) == {"somewhere_else"}


def test_setup_reads_the_one_version():
    import lskd_plugins

    assert _setup_module().read_version() == lskd_plugins.__version__
    proc = subprocess.run(
        [sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == lskd_plugins.__version__


def test_missing_fairseq_is_one_line(monkeypatch, capsys):
    """`lskd` without fairseq installed: one line saying how to install it, exit 2."""
    from lskd_plugins import cli

    def no_fairseq(args):
        raise ModuleNotFoundError("No module named 'fairseq'", name="fairseq")

    module = type(sys)("fake_command")
    module.add_arguments = lambda parser: None
    module.main = no_fairseq
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("fake_command", "a command that needs fairseq"))
    monkeypatch.setitem(sys.modules, "fake_command", module)
    assert cli.main(["fake"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lskd: error: fairseq is not installed") and "make install" in err
    assert len(err.splitlines()) == 1
