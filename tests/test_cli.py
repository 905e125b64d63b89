"""The command line as a user meets it."""

import subprocess
import sys

from typer.testing import CliRunner

from vidgen import __version__
from vidgen.cli import app


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"vidgen {__version__}"


def test_help_lists_the_tool():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "CogVideoX" in result.output


def test_python_dash_m_runs_the_same_app():
    result = subprocess.run([sys.executable, "-m", "vidgen", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vidgen {__version__}"
