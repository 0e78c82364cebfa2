"""The fakes of ``swapcore.testing`` import without hypothesis; its other parts say so."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys

    class NoHypothesis:
        def find_spec(self, name, path=None, target=None):
            if name == "hypothesis" or name.startswith("hypothesis."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoHypothesis())
    from swapcore.testing import FakeGPUProbe, FakeProcess, FaultyPlanner, RecordingEffects
    from swapcore.testing import check_process
    assert FakeProcess("a").name == "a"
    from swapcore import AffinityPolicy, ReplicaReport
    from swapcore.testing import check_cluster_policy, cluster_policy_violations
    report = ReplicaReport("r0", models=["a"], ready=["a"])
    assert cluster_policy_violations(AffinityPolicy(), "a", [report]) == []
    try:
        check_cluster_policy(AffinityPolicy())
    except ImportError as exc:
        print(exc)
    else:
        raise SystemExit("check_cluster_policy ran without hypothesis")
    for name in ("check_planner", "planner_violations", "RouterStateMachine"):
        try:
            getattr(__import__("swapcore.testing", fromlist=[name]), name)
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit(f"{name} imported without hypothesis")
    """
)


def test_the_fakes_need_no_hypothesis() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"swapcore.testing.{name} needs hypothesis: pip install 'swapcore[testing]'"
        for name in (
            "check_cluster_policy",
            "check_planner",
            "planner_violations",
            "RouterStateMachine",
        )
    ]


def test_the_hypothesis_parts_are_there_with_it() -> None:
    from swapcore import testing

    assert callable(testing.check_planner) and callable(testing.mutual_evictions)
    assert testing.RouterStateMachine.__name__ == "RouterStateMachine"
    assert "check_planner" in testing.__all__
    assert "check_cluster_policy" in testing.__all__
