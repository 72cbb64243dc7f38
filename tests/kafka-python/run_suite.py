"""Runs kafka-python's own integration suite, from its PyPI source package, against a running
Fjord broker in the suite's external-broker mode (KAFKA_URI), and compares the outcome with
expected-failures.txt: every test not listed there must pass (or be skipped by the suite itself),
and every listed test must still fail, so the list only shrinks.

    python3 run_suite.py SDIST BOOTSTRAP WORK_DIR

The broker must run with the settings the suite's fixture gives Kafka (node id 0, 4 partitions per
topic, group.min.session.timeout.ms 1000, group.initial.rebalance.delay.ms 0, 2 offsets topic
partitions). An unexpected failure runs once more on its own (clients have races of their own) and
counts as FLAKY if it then passes. Prints one line per unexpected outcome and a summary; exits
non-zero on any.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree

HERE = pathlib.Path(__file__).resolve().parent
KAFKA_VERSION = "4.1.0"
# A test that hangs (a transactional producer waiting for a coordinator) fails after this long.
TEST_TIMEOUT_SECONDS = "30"


def expected_failures():
    expected = {}
    for line in (HERE / "expected-failures.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            test, reason = (part.strip() for part in line.split(" | ", 1))
            expected[test] = reason
    return expected


def unpack(sdist, work):
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    root = next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("kafka_python-"))
    # The package's tests import `test.testutil` and `test.service`: make `test` a package (or
    # Python's own `test` package shadows it) and supply the external-broker service helpers the
    # source package leaves out.
    (root / "test" / "__init__.py").write_text("")
    shutil.copy(HERE / "service.py", root / "test" / "service.py")
    return root


def test_id(case):
    """pytest's node id from a JUnit test case: test/integration/x.py::[Class::]name."""
    parts = case.get("classname").split(".")
    if parts[-1][:1].isupper():
        path, klass = parts[:-1], [parts[-1]]
    else:
        path, klass = parts, []
    return "::".join(["/".join(path) + ".py", *klass, case.get("name")])


def outcomes(junit):
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            outcome = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        else:
            outcome = "passed"
        yield test_id(case), outcome


def main():
    sdist, bootstrap, work = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    root = unpack(sdist, work)
    kafka_root = work / "kafka-root"  # the fixture checks that a Kafka install dir exists
    kafka_root.mkdir()
    env = dict(
        os.environ,
        PYTHONPATH=str(root),
        KAFKA_URI=f"tcp://{bootstrap}",
        KAFKA_VERSION=KAFKA_VERSION,
        KAFKA_ROOT=str(kafka_root),
    )

    def pytest(tests, junit):
        subprocess.run(
            [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider",
             "--timeout", TEST_TIMEOUT_SECONDS, "--timeout-method", "signal", "-rfE", "--tb=short",
             f"--junitxml={junit}"],
            cwd=root, env=env, check=False,
        )

    pytest(["test/integration"], work / "junit.xml")
    expected = expected_failures()
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    seen = set()
    problems = []
    unexpected = []
    for test, outcome in outcomes(work / "junit.xml"):
        seen.add(test)
        counts[outcome] += 1
        if outcome == "failed" and test not in expected:
            unexpected.append(test)
        elif outcome == "passed" and test in expected:
            problems.append(f"NOW PASSES (remove it from expected-failures.txt) {test}")
    # An unexpected failure gets one more run on its own: the suite's clients have races of their
    # own (kafka-python's metadata refresh can drop a subscription made while its first metadata
    # request is in flight, and its consumer then waits out a 30 s timeout). A test that passes on
    # its second run is reported as FLAKY; one that fails again is a NEW FAILURE.
    if unexpected:
        print("running again: " + " ".join(unexpected))
        pytest(unexpected, work / "junit-again.xml")
        again = dict(outcomes(work / "junit-again.xml"))
        for test in unexpected:
            if again.get(test) == "passed":
                print(f"FLAKY (failed, then passed on its own) {test}")
            else:
                problems.append(f"NEW FAILURE {test}")
    for test in sorted(set(expected) - seen):
        problems.append(f"NOT RUN (listed in expected-failures.txt) {test}")
    for problem in problems:
        print(problem)
    print(f"kafka-python suite: {counts['passed']} passed, {counts['failed']} failed as expected"
          f" or not, {counts['skipped']} skipped; {len(problems)} unexpected")
    sys.exit(1 if problems or counts["passed"] == 0 else 0)


if __name__ == "__main__":
    main()
