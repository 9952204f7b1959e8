"""docs/cli.md is generated from the CLI's help texts and must not go stale."""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner
from conftest import PROJECT

from lineage.ui import docs
from lineage.ui.cli import cli

CLI_MD = PROJECT / "docs" / "cli.md"


def test_cli_md_is_up_to_date():
    current = CLI_MD.read_text() if CLI_MD.is_file() else ""
    assert current == docs.render(), "docs/cli.md is stale: run `make docs` and commit docs/cli.md"


def test_every_command_has_a_section_in_cli_md():
    text = CLI_MD.read_text() if CLI_MD.is_file() else ""
    missing = [path for path in docs.command_paths() if f"\n## {path}\n" not in text]
    assert not missing, f"docs/cli.md lacks {', '.join(missing)}: run `make docs`"


def test_rendering_ignores_the_terminal(monkeypatch):
    first = docs.render()
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("LINES", "5")
    assert docs.render() == first


@pytest.mark.parametrize("path", docs.command_paths())
def test_each_section_is_what_help_prints(path):
    # `lineage CMD --help` in a terminal of 80 columns or more prints exactly the section.
    args = shlex.split(path)[1:] + ["--help"]
    result = CliRunner().invoke(cli, args, prog_name="lineage", terminal_width=docs.help_width(cli))
    assert result.exit_code == 0, result.output
    section = docs.render().split(f"\n## {path}\n\n```text\n", 1)[1].split("\n```\n", 1)[0]
    assert result.output.rstrip("\n") == section


def test_check_exits_1_on_a_stale_file_and_names_the_fix(tmp_path, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text(docs.render().replace("Usage: lineage", "Usage: lineage-old", 1))
    assert docs.main(["--check", str(stale)]) == 1
    assert "make docs" in capsys.readouterr().err
    assert docs.main(["--check", str(tmp_path / "absent.md")]) == 1
    assert docs.main([str(stale)]) == 0
    assert docs.main(["--check", str(stale)]) == 0
