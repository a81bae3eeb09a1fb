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
