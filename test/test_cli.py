"""The `latent-seg` entry point: every registered subcommand is listed with its one-line help, has
a help page of its own with its options, and dispatches to its module's ``run``."""
import argparse
import importlib
import re

import pytest

from latent_segmentation_ros import cli
from latent_segmentation_ros.cli.commands import COMMAND_MODULES


def flat(text: str) -> str:
    """Help text with argparse's line wrapping (also after a hyphen) undone."""
    return re.sub(r"\s+", " ", re.sub(r"-\n\s+", "-", text))


def module_of(name: str):
    return importlib.import_module(f"latent_segmentation_ros.cli.commands.{COMMAND_MODULES[name]}")


def test_help_lists_every_subcommand_with_its_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    listing = flat(capsys.readouterr().out)
    assert listing.startswith("usage: latent-seg [-h] COMMAND ...")
    for name in COMMAND_MODULES:
        assert f"{name} {flat(module_of(name).HELP)}" in listing, name


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_every_subcommand_has_its_own_help_with_its_options(name, capsys):
    module = module_of(name)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    page = flat(capsys.readouterr().out)
    assert page.startswith(f"usage: latent-seg {name} ")
    assert flat(module.HELP) in page
    own = argparse.ArgumentParser(prog=f"latent-seg {name}")
    module.add_arguments(own)
    flags = [flag for action in own._actions for flag in action.option_strings if flag not in ("-h", "--help")]
    positionals = [action.dest for action in own._actions if not action.option_strings]
    for option in flags + positionals:
        assert option in page, f"{name} --help does not show {option}"


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_every_subcommand_dispatches_to_its_module(name, monkeypatch):
    module = module_of(name)
    seen = []
    monkeypatch.setattr(module, "run", lambda args: seen.append(args.command) or 7)
    # the subcommand's parser with its required options filled in, so that dispatch is reached
    parser = cli.build_parser(name)
    own = argparse.ArgumentParser()
    module.add_arguments(own)
    required = []
    for action in own._actions:
        if action.required and action.option_strings:
            required += [action.option_strings[0]] + ["1"] * (action.nargs if isinstance(action.nargs, int) else 1)
        elif not action.option_strings and action.nargs not in ("?", "*", argparse.SUPPRESS):
            required += ["1"] if not action.choices else [sorted(action.choices)[0]]
    assert parser.parse_args([name] + required).handler is module.run
    assert cli.main([name] + required) == 7 and seen == [name]


def test_missing_or_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
