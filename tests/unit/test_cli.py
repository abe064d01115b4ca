"""The command line's parser, in this process (its refusals of bad flags are in test_config.py)."""

import pytest

from mpcluster import cli


def test_help_lists_the_public_commands_only(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    out, _ = capsys.readouterr()
    assert e.value.code == 0 and "{master,worker,submit,results,cancel,status,doctor}" in out
    assert "SUPPRESS" not in out and "health" not in out
