"""The `latent-seg` entry point: every registered subcommand has help and a handler."""
import pytest

from latent_segmentation_ros import cli


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "latent-seg" in capsys.readouterr().out


def test_missing_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
