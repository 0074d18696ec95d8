#!/usr/bin/python3
"""End-to-end tests of what `hattn train` leaves in its output directory when it is killed.

    survive.py TEST --hattn PATH --corpus FILE --work DIR

Each TEST starts `hattn train` with HATTN_TEST_PAUSE_IN_SAVE=1, a test-only switch that makes every
checkpoint write stop the process (SIGSTOP) once part of its temporary file is written; the test
sees the stop (waitpid with WUNTRACED), looks at the directory, and lets the process go on
(SIGCONT) or kills it (SIGKILL) right there. Prints what it checked; exits 1 on the first failed
check. Python standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

# Small runs: the tiny preset on the test corpus, 2 sequences per step.
FAST = ["--batch", "2", "--sample-tokens", "0"]


def fail(message):
    print(f"survive.py: FAILED: {message}", flush=True)
    sys.exit(1)


def check(ok, message):
    if not ok:
        fail(message)


class Run:
    """One `hattn train` process, its standard output and error in `log`."""

    def __init__(self, hattn, args, log, pause=True):
        env = dict(os.environ)
        env.pop("HATTN_TEST_PAUSE_IN_SAVE", None)
        if pause:
            env["HATTN_TEST_PAUSE_IN_SAVE"] = "1"
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([hattn, "train", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        self.status = None  # exit status once it ended: negative for a signal
        self.stopped = False  # stopped in a save, as wait() last reported

    def wait(self, timeout=60.0):
        """Waits until the process stops in a save ("stopped") or ends ("ended", status set)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, st = os.waitpid(self.pid, os.WNOHANG | os.WUNTRACED)
            if pid:
                if os.WIFSTOPPED(st):
                    self.stopped = True
                    return "stopped"
                self.status = os.waitstatus_to_exitcode(st)
                self.proc.returncode = self.status
                return "ended"
            if time.monotonic() > deadline:
                self.kill()
                fail(f"hattn (pid {self.pid}) neither stopped nor ended within {timeout} s:\n{self.output()}")
            time.sleep(0.002)

    def resume(self):
        """Lets a process stopped in a save go on."""
        self.stopped = False
        os.kill(self.pid, signal.SIGCONT)

    def kill(self):
        """SIGKILL, then reap."""
        os.kill(self.pid, signal.SIGKILL)
        while self.wait() != "ended":
            pass

    def finish(self):
        """Lets every save go on until the process ends; returns its exit status."""
        if self.stopped:
            self.resume()
        while self.wait() == "stopped":
            self.resume()
        return self.status

    def output(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()


def metrics(path):
    """The records of a metrics.jsonl, failing unless every line is a whole JSON object with a step."""
    with open(path, "rb") as f:
        data = f.read()
    check(data == b"" or data.endswith(b"\n"), f"{path} ends in a torn line: {data[-80:]!r}")
    records = []
    for n, line in enumerate(data.splitlines(), 1):
        try:
            r = json.loads(line)
        except ValueError:
            fail(f"{path} line {n} is not JSON: {line[:80]!r}")
        check(isinstance(r, dict) and isinstance(r.get("step"), int), f"{path} line {n} has no step: {line[:80]!r}")
        records.append(r)
    return records


def training_steps(records):
    return [r["step"] for r in records if "loss" in r]


def train_args(corpus, out, steps, save_every, eval_every=0, resume=None):
    args = ["--data", corpus, "--out", out, "--steps", str(steps), "--save-every", str(save_every),
            "--eval-every", str(eval_every), *FAST]
    return args + (["--resume", os.path.join(out, "checkpoint.safetensors")] if resume else [])


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def test_metrics_flushed(a):
    """Every line of metrics.jsonl is in the file, whole, when the run is killed."""
    out = fresh_dir(os.path.join(a.work, "flushed"))
    run = Run(a.hattn, train_args(a.corpus, out, 6, 3), os.path.join(a.work, "flushed.log"))
    check(run.wait() == "stopped", f"the run did not stop in its first save:\n{run.output()}")
    log = os.path.join(out, "metrics.jsonl")
    steps = training_steps(metrics(log))
    check(steps == [1, 2, 3], f"in the save after step 3, metrics.jsonl holds steps {steps}, not [1, 2, 3]")
    run.kill()
    steps = training_steps(metrics(log))
    check(steps == [1, 2, 3], f"after the kill, metrics.jsonl holds steps {steps}, not [1, 2, 3]")
    print("metrics.jsonl held the whole lines of steps 1, 2, 3 when the run was killed in its save after step 3")


def test_metrics_trimmed(a):
    """--resume drops the lines a killed run wrote after its last checkpoint."""
    out = fresh_dir(os.path.join(a.work, "trimmed"))
    log = os.path.join(out, "metrics.jsonl")
    run = Run(a.hattn, train_args(a.corpus, out, 9, 3), os.path.join(a.work, "trimmed.log"))
    check(run.wait() == "stopped", "no first save")
    run.resume()  # the save after step 3 completes
    check(run.wait() == "stopped", "no second save")
    run.kill()  # in the save after step 6: the checkpoint stays at step 3
    with open(log, "rb") as f:
        before = f.read().splitlines(keepends=True)
    check(training_steps(metrics(log)) == [1, 2, 3, 4, 5, 6], "the killed run's log is not steps 1-6")

    run = Run(a.hattn, train_args(a.corpus, out, 9, 3, resume=True), os.path.join(a.work, "trimmed2.log"))
    check(run.wait() == "stopped", f"the resumed run did not reach its first save:\n{run.output()}")
    expected = (f"'{log}': kept 3 lines up to the checkpoint's step 3, dropped 3 lines "
                "(later or repeated steps, torn or invalid lines)")
    check(expected in run.output().splitlines(), f"no line {expected!r} in:\n{run.output()}")
    with open(log, "rb") as f:
        now = f.read().splitlines(keepends=True)
    check(now[:3] == before[:3], "the kept lines changed")
    check(training_steps(metrics(log)) == [1, 2, 3, 4, 5, 6], "in the resumed run's save after step 6, the log "
          f"holds steps {training_steps(metrics(log))}")
    check(run.finish() == 0, f"the resumed run failed:\n{run.output()}")
    check(training_steps(metrics(log)) == list(range(1, 10)), f"the final log holds steps {training_steps(metrics(log))}")
    print(expected)
    print("the killed run's lines of steps 4-6 were dropped on --resume; the final log holds steps 1-9 once each")


TESTS = {"metrics-flushed": test_metrics_flushed, "metrics-trimmed": test_metrics_trimmed}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("test", choices=sorted(TESTS))
    p.add_argument("--hattn", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    TESTS[a.test](a)
    print(f"survive.py: ok ({a.test})")


if __name__ == "__main__":
    main()
