"""Bad CLI input: every case is one line of output, exit code 2, no traceback, and changes nothing."""

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feedback_loop.cli import main
from feedback_loop.lib.models import registry
from feedback_loop.lib.store import db

TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()
RANGE = ["--start", "2024-01-02", "--end", "2024-02-01"]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "prices.csv").write_text("ticker,date,open,high,low,close,adj_close,volume\n")
    (tmp_path / "junk.json").write_text('[{"foo": 1}]')
    (tmp_path / "legislators.csv").write_text("bioguide_id\n")
    (tmp_path / "a_file").write_text("")
    return tmp_path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: (name, argv with {dir} for the files folder, what the one line says)
BAD_INPUTS = [
    ("promote bad month", ["models", "promote", "m", "--reason", "r", "--as-of", "2024-13-01"], "not a date"),
    ("promote sql in date", ["models", "promote", "m", "--reason", "r", "--as-of", "2030-01-01'; --"], "not a date"),
    ("promote future", ["models", "promote", "m", "--reason", "r", "--as-of", TOMORROW], "in the future"),
    ("promote unknown model", ["models", "promote", "nope", "--reason", "r", "--as-of", "2024-01-05"],
     "not registered"),
    ("promote without reason", ["models", "promote", "m"], "--reason"),
    ("rollback two-digit year", ["models", "rollback", "--reason", "r", "--as-of", "24-01-05"], "not a date"),
    ("rollback future", ["models", "rollback", "--reason", "r", "--as-of", TOMORROW], "in the future"),
    ("rollback without previous", ["models", "rollback", "--reason", "r", "--as-of", "2024-01-05"],
     "no previous champion"),
    ("show unknown model", ["models", "show", "nope"], "no model nope"),
    ("train bad date", ["train", "--as-of", "yesterday"], "not a date"),
    ("train empty date", ["train", "--as-of", ""], "not a date"),
    ("train future", ["train", "--as-of", TOMORROW], "in the future"),
    ("train num classes", ["train", "--num-classes", "4"], "--num-classes"),
    ("train without prices", ["train"], "no SPY prices"),
    ("replay bad start", ["replay", "--start", "2024-02-30", "--end", "2024-03-01"], "not a date"),
    ("replay bad end", ["replay", "--start", "2024-01-02", "--end", "soon"], "not a date"),
    ("replay start after end", ["replay", "--start", "2024-03-01", "--end", "2024-01-02"], "after it ends"),
    ("replay prices alone", [*RANGE, "--prices", "{dir}/prices.csv"], "--prices needs --disclosures"),
    ("replay disclosures alone", [*RANGE, "--disclosures", "{dir}/junk.json"], "--disclosures needs --prices"),
    ("replay legislators alone", [*RANGE, "--legislators", "{dir}/legislators.csv"], "--legislators needs"),
    ("replay missing file", [*RANGE, "--disclosures", "{dir}/absent.json", "--prices", "{dir}/prices.csv"],
     "does not exist"),
    ("replay unreadable disclosures", [*RANGE, "--disclosures", "{dir}/junk.json", "--prices", "{dir}/prices.csv"],
     "neither a House"),
    ("replay report is a file", [*RANGE, "--report", "{dir}/a_file"], "is a file"),
    ("run-days bad start", ["run-days", "--start", "2024-02-30", "--end", "2024-03-01"], "not a date"),
    ("run-days future end", ["run-days", "--start", "2024-03-01", "--end", TOMORROW], "in the future"),
    ("run-days start after end", ["run-days", "--start", "2024-03-01", "--end", "2024-01-02"], "is after --end"),
    ("run-days without end", ["run-days", "--start", "2024-03-01"], "--end"),
    ("bench negative disclosures", ["bench", "--disclosures", "-5"], "--disclosures"),
    ("bench zero disclosures", ["bench", "--disclosures", "0"], "--disclosures"),
    ("bench text disclosures", ["bench", "--disclosures", "many"], "--disclosures"),
    ("bench zero tickers", ["bench", "--tickers", "0"], "--tickers"),
    ("bench negative years", ["bench", "--years", "-1"], "--years"),
    ("bench thousand years", ["bench", "--years", "1000"], "--years"),
    ("bench zero repeats", ["bench", "--repeats", "0"], "--repeats"),
    ("retrain future", ["retrain", "--as-of", TOMORROW], "in the future"),
    ("retrain without prices", ["retrain", "--force"], "no SPY prices"),
    ("status future", ["status", "--as-of", TOMORROW], "in the future"),
    ("models list unknown status", ["models", "list", "--status", "gone"], "'gone' is not one of"),
    ("ml disable without reason", ["ml", "disable"], "--reason"),
    ("ml enable future", ["ml", "enable", "--reason", "r", "--as-of", TOMORROW], "in the future"),
    ("ml unknown action", ["ml", "pause"], "No such command"),
    ("trading mode unknown", ["trading-mode", "demo"], "'demo' is not one of"),
    ("trading mode live refused", ["trading-mode", "live"], "requires confirm=True"),
    ("unknown command", ["frobnicate"], "No such command"),
    ("unknown option", ["models", "list", "--all"], "No such option"),
]
BAD_INPUTS = [(name, ["replay", *argv] if argv[0].startswith("--") else argv, says)
              for name, argv, says in BAD_INPUTS]


@pytest.fixture
def cli_db(db_url, monkeypatch):
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    monkeypatch.delenv("FEEDBACK_LOOP_ALLOW_LIVE_TRADING", raising=False)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        registry.register_model(
            conn, model_id="m", version="m", trained_as_of="2024-01-05", trigger="manual", num_classes=5,
            config={}, feature_names=[], metrics={}, model_card={}, artifact_path=None, artifact_sha256=None,
            training_start=None, training_end=None)
    yield engine
    engine.dispose()


def _assert_one_line_user_error(exit_code: int, output: str, says: str) -> None:
    lines = output.strip().splitlines()
    assert exit_code == 2, output
    assert len(lines) == 1, output
    assert "Traceback" not in output and says in lines[0], output


def test_every_bad_input_is_one_line_and_exit_code_2(cli_db, files):
    assert len(BAD_INPUTS) >= 27
    runner = CliRunner()
    for name, argv, says in BAD_INPUTS:
        result = runner.invoke(main, [a.format(dir=files) for a in argv])
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), name
        _assert_one_line_user_error(result.exit_code, result.output, says)
    with cli_db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM model_deployments")).scalar() == 0, "nothing promoted"
        assert conn.execute(sa.text("SELECT status FROM ml_models WHERE model_id = 'm'")).scalar() == "candidate"
        assert conn.execute(sa.text("SELECT trading_mode FROM reference_portfolio_config")).scalar() == "paper"
        assert conn.execute(sa.text("SELECT count(*) FROM ml_switch_changes")).scalar() == 0, "ML never switched"


def test_an_unreachable_database_is_one_line(monkeypatch):
    monkeypatch.setenv(db.DATABASE_URL_ENV, f"postgresql://nobody@127.0.0.1:{_closed_port()}/feedback_loop")
    result = CliRunner().invoke(main, ["models", "list"])
    _assert_one_line_user_error(result.exit_code, result.output, "database unreachable")


@pytest.mark.parametrize("argv", [
    ["models", "promote", "m", "--reason", "r", "--as-of", "2030-01-01'; --"],
    ["models", "promote", "nope", "--reason", "r", "--as-of", "2024-01-05"],
    ["replay", "--start", "2024-03-01", "--end", "2024-01-02"],
    ["bench", "--disclosures", "-5"],
])
def test_no_traceback_reaches_stderr_of_a_real_process(cli_db, argv):
    env = dict(os.environ, PYTHONPATH=str(db.PROJECT_ROOT))
    done = subprocess.run([sys.executable, "-m", "feedback_loop.cli", *argv], env=env, capture_output=True, check=False,
                          text=True, timeout=120)
    assert done.stdout == ""
    _assert_one_line_user_error(done.returncode, done.stderr, "")


def test_a_failed_demo_job_is_one_line_naming_the_step_and_its_reason():
    """The demo runs its jobs in process: a step's refusal reaches the user as its reason, in one line."""
    import dagster as dg

    from feedback_loop.cli import _user_error
    from feedback_loop.demo import JobFailed, _run

    @dg.op
    def refuses():
        raise dg.Failure("the database already holds model m: run the history on a fresh database")

    @dg.op
    def crashes():
        raise KeyError("no such column")

    @dg.job
    def demo_like():
        refuses()
        crashes()

    with pytest.raises(JobFailed) as failed:
        _run(demo_like, dg.DagsterInstance.ephemeral())
    message = str(_user_error(failed.value).format_message())
    assert "\n" not in message
    assert "refuses: the database already holds model m: run the history on a fresh database" in message
    assert "crashes: KeyError: 'no such column'" in message
