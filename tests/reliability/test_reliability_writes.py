"""A write that fails half-way through a run leaves the results of an earlier run in the same folder intact.

The fault is injected into the writers themselves (pandas' ``to_csv``, ``Path.write_text`` /
``write_bytes``): they write half their content to the file they were given, then raise, as a full
disk or a Ctrl-C would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from reliability_cli import cli, write_folder

RESULTS = ("results.json", "scores.csv", "report.md", "report.html")


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> tuple[Path, Path]:
    """A cohort folder and a finished run (PCA baseline: nothing to train) in ``run``."""
    root = tmp_path_factory.mktemp("writes")
    folder = write_folder(root / "c")
    assert cli(root, folder, models=["pca"]) == 0
    return folder, root / "run"


def _results(run: Path) -> dict[str, bytes]:
    files = [run / name for name in RESULTS] + sorted((run / "figures").glob("*.png"))
    assert len(files) > len(RESULTS), "the earlier run has figures"
    return {str(p.relative_to(run)): p.read_bytes() for p in files}


def _fail_half_way(monkeypatch, hit, exc: BaseException) -> list[str]:
    """Writers of temporary files matching ``hit(name)`` write half their content, then raise ``exc``."""
    failed: list[str] = []
    write_text, write_bytes, to_csv = Path.write_text, Path.write_bytes, pd.DataFrame.to_csv

    def fail(path: Path, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        failed.append(path.name)
        raise exc

    def text(self, data, *args, **kwargs):
        return fail(self, data.encode()) if hit(self.name) else write_text(self, data, *args, **kwargs)

    def raw(self, data, *args, **kwargs):
        return fail(self, bytes(data)) if hit(self.name) else write_bytes(self, data, *args, **kwargs)

    def csv(self, path=None, *args, **kwargs):
        if isinstance(path, Path) and hit(path.name):
            return fail(path, to_csv(self, None, *args, **kwargs).encode())
        return to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", text)
    monkeypatch.setattr(Path, "write_bytes", raw)
    monkeypatch.setattr(pd.DataFrame, "to_csv", csv)
    return failed


@pytest.mark.parametrize(
    ("hit", "exc"),
    [
        (lambda name: name.startswith(".scores.csv."), OSError(28, "No space left on device")),
        (lambda name: name.startswith(".results.json."), OSError(28, "No space left on device")),
        (lambda name: name.startswith(".report.html."), OSError(5, "Input/output error")),
        (lambda name: name.endswith(".png") and name.startswith("."), OSError(28, "No space left on device")),
        (lambda name: name.startswith(".report.md."), KeyboardInterrupt()),
    ],
    ids=["scores.csv", "results.json", "report.html", "figure", "ctrl-c-in-report.md"],
)
def test_failed_write_keeps_the_earlier_results(tmp_path, capsys, monkeypatch, earlier_run, hit, exc):
    folder, earlier = earlier_run
    run = tmp_path / "run"
    shutil.copytree(earlier, run)
    before = _results(run)
    failed = _fail_half_way(monkeypatch, hit, exc)
    capsys.readouterr()
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            cli(tmp_path, folder, "--seed", "1", models=["pca"])
    else:
        assert cli(tmp_path, folder, "--seed", "1", models=["pca"]) == 1
        err = capsys.readouterr().err
        assert (
            f"error: the run stopped on OSError: [Errno {exc.errno}] {exc.strerror}; results.json, scores.csv"
            in err
        )
        assert f"of an earlier run in {run} are unchanged" in err
        print(f"\nUSER SEES: {err.strip()}")
    assert failed, "the fault was injected"
    assert _results(run) == before, "an earlier result file changed"
    assert not [p for p in run.rglob(".*")], "a temporary (half-written) file was left behind"

    monkeypatch.undo()
    if failed[0].startswith(".scores.csv."):  # once: the same command succeeds when the disk is fine again
        assert cli(tmp_path, folder, "--seed", "1", models=["pca"]) == 0
        assert _results(run).keys() == before.keys() and _results(run) != before
        assert not (run / "scores.partial.csv").exists()
