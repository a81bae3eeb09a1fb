"""The ``lskd`` command: every subcommand is listed, has --help, and bad input exits 2 in one line."""

import subprocess

import pytest

from lskd_plugins.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"lskd {name}" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_reports_errors_without_traceback(tmp_path, cli_env):
    proc = subprocess.run(
        ["lskd", "synth-mt", "--output", str(tmp_path / "x"), "--src", "en", "--tgt", "en"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("lskd: error:") and "Traceback" not in proc.stderr


def test_run_script_exit_codes(capsys):
    from lskd_plugins.errors import LskdError, run_script

    def fails():
        raise LskdError("no such file: x.txt")

    with pytest.raises(SystemExit) as exit_info:
        run_script(fails)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "lskd: error: no such file: x.txt"
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: 0)
    assert exit_info.value.code == 0


# ----------------------------------------------------------------------------- one vocabulary, help
def _parsers(name):
    """(prog, parser) of subcommand ``name`` and of its own subcommands (e.g. diffusion image)."""
    import argparse

    from lskd_plugins.cli import build_parser

    top = build_parser(name)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    todo = [sub.choices[name]]
    while todo:
        parser = todo.pop()
        yield parser.prog, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())


def _options_without_help(name):
    import argparse

    missing = []
    for prog, parser in _parsers(name):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue  # a hidden alias of a renamed option
            if not (action.help or "").strip():
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_has_help(name):
    assert _options_without_help(name) == []


NMT_COMMANDS = ("bleu", "seqkd", "synth-mt", "prepare-mt")


@pytest.mark.parametrize("name", NMT_COMMANDS)
def test_translation_commands_state_their_defaults(name):
    """Every option with a default other than off/none says it in its help."""
    import argparse

    for _, parser in _parsers(name):
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS) or isinstance(action, argparse._HelpAction):
                continue
            if action.default not in (None, False, [], argparse.SUPPRESS) and not action.required:
                assert "default" in action.help, f"{name} {action.option_strings}: {action.help}"


@pytest.mark.parametrize("name", NMT_COMMANDS)
def test_translation_commands_speak_one_vocabulary(name):
    """--output (old --out hidden), --no-progress (old --quiet hidden) where they apply."""
    import argparse

    for _, parser in _parsers(name):
        by_flag = {flag: a for a in parser._actions for flag in a.option_strings}
        assert "--output" in by_flag and by_flag["--out"].dest == by_flag["--output"].dest == "output"
        assert by_flag["--out"].help == argparse.SUPPRESS
        if "--no-progress" in by_flag:
            assert by_flag["--quiet"].dest == "no_progress" and by_flag["--quiet"].help == argparse.SUPPRESS


def test_old_option_names_still_work(tmp_path):
    from lskd_plugins.cli import build_parser

    old = build_parser("seqkd").parse_args(["seqkd", "--data", "d", "--path", "p", "--out", "o", "--quiet"])
    new = build_parser("seqkd").parse_args(
        ["seqkd", "--data", "d", "--path", "p", "--output", "o", "--no-progress"]
    )
    assert vars(old) == vars(new) and old.output == "o" and old.no_progress
    prep = build_parser("prepare-mt").parse_args(["prepare-mt", "--raw-dir", "r", "--out", "o", "--force"])
    assert prep.output == "o" and prep.overwrite


def test_version_is_the_package_version(capsys):
    import lskd_plugins

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lskd {lskd_plugins.__version__}"


@pytest.mark.parametrize(
    "argv,option",
    [
        (["synth-mt", "--output", "{tmp}/c", "--valid", "99999999999"], "--valid"),
        (["digits", "--output", "{tmp}/d", "--scale", "100000"], "--scale"),
        (["image-train", "--data", "{tmp}", "--output", "{tmp}/r", "--img-size", "100000"], "--img-size"),
        (["bleu", "--data", "{tmp}", "--path", "{tmp}/x.pt", "--beam", "100000"], "--beam"),
    ],
)
def test_huge_values_are_refused_before_any_work(argv, option, tmp_path, capsys):
    """Numbers that would exhaust memory or never finish get an upper bound, not a hang."""
    from cli_helpers import assert_fails_one_line

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_fails_one_line(argv, capsys, must_contain=[option, "expected an integer from 1 to"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_user_error_is_the_only_line_on_stderr(tiny_mt_data, tmp_path, cli_env):
    """No import-time chatter of torch, fairseq or hydra around the one error line (subprocess, as a user)."""
    import torch

    junk = tmp_path / "junk.pt"
    torch.save({"a": 1}, junk)
    for cmd in (["bleu"], ["seqkd", "--output", str(tmp_path / "kd")]):
        proc = subprocess.run(
            ["lskd", *cmd, "--data", str(tiny_mt_data.data_bin), "--path", str(junk), "--no-progress"],
            capture_output=True,
            text=True,
            env={k: v for k, v in cli_env.items() if k != "PYTHONWARNINGS"},
            timeout=300,
        )
        assert proc.returncode == 2
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("lskd: error: --path"), proc.stderr
