"""Every command reports a user's mistake in one shape: ``PROG: error: MESSAGE``, one line."""

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main as edgewatch
from edge_runtime.clierror import error_line, fail
from trainer.cli import main as edgewatch_train


def test_error_line_is_one_line():
    assert error_line("bad\n  value\tthere", "edgewatch replay") == "edgewatch replay: error: bad value there"


def test_fail_exits_with_its_code(capsys):
    with pytest.raises(SystemExit) as exc:
        fail("model.path: no model given", 78)
    assert exc.value.code == 78
    assert capsys.readouterr().err == "edgewatch: error: model.path: no model given\n"


@pytest.mark.parametrize(
    ("cli", "args", "prog"),
    [
        (edgewatch, ["check-model", "/nonexistent/model.onnx"], "edgewatch"),
        (edgewatch, ["replay", "/nonexistent.csv", "--device", "d", "--broker", "mqtt://127.0.0.1:1"], "edgewatch replay"),
        (edgewatch_train, ["inspect", "README.md"], "edgewatch-train inspect"),
    ],
)
def test_commands_share_the_shape(cli, args, prog):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: "), res.output
