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


def test_second_writer(a):
    """A second hattn train into a directory in use fails at once, naming the first; the lock goes with
    the first process, however it ends."""
    out = fresh_dir(os.path.join(a.work, "shared"))
    first = Run(a.hattn, train_args(a.corpus, out, 6, 3), os.path.join(a.work, "shared1.log"))
    check(first.wait() == "stopped", f"the first run did not reach its first save:\n{first.output()}")
    log = os.path.join(out, "metrics.jsonl")
    with open(log, "rb") as f:
        before = f.read()
    second = subprocess.run([a.hattn, "train", *train_args(a.corpus, out, 6, 3)], capture_output=True, text=True,
                            timeout=60)
    expected = f"hattn: error: '{out}' is in use by another hattn train (pid {first.pid}): wait for it to end, or pass another --out"
    print(second.stdout + second.stderr, end="")
    check(second.returncode == 1, f"the second run exited with {second.returncode}, not 1")
    check(second.stderr.splitlines() == [expected], f"the second run's error is not {expected!r}")
    with open(log, "rb") as f:
        check(f.read() == before, "the second run changed the first run's metrics.jsonl")
    check(sorted(os.listdir(out)) == [".hattn.lock", f"checkpoint.safetensors.tmp-{first.pid}", "metrics.jsonl"],
          f"the second run changed the directory: {sorted(os.listdir(out))}")
    check(first.finish() == 0, f"the first run failed after the second was refused:\n{first.output()}")
    print(f"refused while pid {first.pid} held {out}")

    # Killed, the holder loses the lock: the next run starts.
    first = Run(a.hattn, train_args(a.corpus, out, 6, 3), os.path.join(a.work, "shared2.log"))
    check(first.wait() == "stopped", "no first save")
    first.kill()
    third = Run(a.hattn, train_args(a.corpus, out, 6, 3, resume=True), os.path.join(a.work, "shared3.log"))
    check(third.finish() == 0, f"the run after the kill did not get the directory:\n{third.output()}")
    print(f"after kill -9 of the holder, pid {first.pid}, the next run trained there")


def test_stale_temporary(a):
    """The next start in a directory removes a killed save's temporary file, and only that."""
    out = fresh_dir(os.path.join(a.work, "stale"))
    run = Run(a.hattn, train_args(a.corpus, out, 6, 3), os.path.join(a.work, "stale1.log"))
    check(run.wait() == "stopped", "no first save")
    run.kill()
    killed = run.pid
    tmp = os.path.join(out, f"checkpoint.safetensors.tmp-{killed}")
    check(os.path.isfile(tmp), f"the kill in a save left no {tmp}")
    size = os.path.getsize(tmp)
    # Files that look alike but are not a save's temporary of a process that is gone stay.
    live = f"model.safetensors.tmp-{os.getpid()}"  # this test's pid, a running process: kept, with a warning
    others = ["model.safetensors.tmp-", "model.safetensors.tmp-0123", "metrics.jsonl.tmp-12x", "notes.txt.tmp-1",
              "checkpoint.safetensors.tmp"]
    for name in [live] + others:
        open(os.path.join(out, name), "w").close()

    run = Run(a.hattn, train_args(a.corpus, out, 6, 3), os.path.join(a.work, "stale2.log"))
    check(run.finish() == 0, f"the next run failed:\n{run.output()}")
    removed = f"removed '{tmp}' ({size} bytes), left by a save of process {killed}, which has ended"
    kept = (f"hattn: warning: kept '{os.path.join(out, live)}' (0 bytes): process {os.getpid()} is running and may be writing it; "
            "remove the file if it is not")
    print(run.output(), end="")
    lines = run.output().splitlines()
    check(removed in lines, f"no line {removed!r}")
    check(kept in lines, f"no line {kept!r}")
    check(not os.path.exists(tmp), f"{tmp} survived the next start")
    left = sorted(n for n in os.listdir(out) if ".tmp" in n)
    check(left == sorted([live] + others), f"temporary-looking files left: {left}")
    print(f"the next start removed {os.path.basename(tmp)} and kept {left}")


TESTS = {"metrics-flushed": test_metrics_flushed, "metrics-trimmed": test_metrics_trimmed,
         "second-writer": test_second_writer, "stale-temporary": test_stale_temporary}


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
