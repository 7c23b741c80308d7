"""``python -m gptviz train`` runs the stages of :mod:`gptviz.train.stages` it is asked for."""

from __future__ import annotations

import pytest

from gptviz.cli import main
from gptviz.train import stages

STAGES = ("pretrain", "induct", "anneal", "finetune", "report")


@pytest.fixture
def calls(monkeypatch):
    """Replace every stage by a recorder: the names of the stages run, in order."""
    ran: list[str] = []
    for name in STAGES:
        monkeypatch.setattr(stages, name, lambda args, name=name: ran.append(name))
    return ran


@pytest.mark.parametrize("argv, expect", [
    (["--stage", "pretrain"], ["pretrain"]),
    (["--stage", "induct"], ["induct"]),
    (["--stage", "anneal"], ["anneal"]),
    (["--stage", "finetune"], ["finetune"]),
    (["--stage", "report"], ["report"]),
    # all: induct runs by default (600 iterations), anneal only when given iterations
    ([], ["pretrain", "induct", "finetune", "report"]),
    (["--anneal-iters", "5"], ["pretrain", "induct", "anneal", "finetune", "report"]),
    (["--induct-iters", "0"], ["pretrain", "finetune", "report"]),
])
def test_train_runs_the_chosen_stages(calls, argv, expect):
    assert main(["train", "--threads", "1", *argv]) == 0
    assert calls == expect
