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
import random
import shutil
import struct
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

    def wait(self, timeout=60.0, running_ok=False):
        """Waits until the process stops in a save ("stopped") or ends ("ended", status set); after
        `timeout` seconds returns "running" if `running_ok`, else kills it and fails."""
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
                if running_ok:
                    return "running"
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


def checkpoint_step(path):
    """The step of a training checkpoint, read from its safetensors header (checked to describe the
    whole file); None when there is no file."""
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    check(len(data) >= 8, f"{path}: {len(data)} bytes")
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    end = max(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")
    check(8 + n + end == len(data), f"{path}: tensors end at byte {8 + n + end} of {len(data)}")
    return json.loads(header["__metadata__"]["hattn.train_state"])["step"]


def check_log(path, last=None, final=None):
    """metrics.jsonl is whole JSON lines; training steps run 1, 2, ... without gaps or repeats (up to
    `last` when given); each validation line follows the training line of its step, once (the final
    step `final` may repeat it). Returns the records."""
    records = metrics(path) if os.path.exists(path) else []
    steps = training_steps(records)
    check(steps == list(range(1, len(steps) + 1)), f"training steps are not 1, 2, ...: {steps}")
    check(last is None or not steps or steps[-1] <= last, f"steps up to {steps[-1] if steps else 0} beyond {last}")
    seen, current = set(), 0
    for r in records:
        if "loss" in r:
            current = r["step"]
            continue
        check(r["step"] == current, f"validation line of step {r['step']} after training step {current}")
        check(r["step"] not in seen or r["step"] == final, f"validation of step {r['step']} repeated")
        seen.add(r["step"])
    return records


def temporaries(out):
    return sorted(n for n in os.listdir(out) if ".tmp-" in n)


def test_kill_resume(a):
    """Kills a training run with SIGKILL again and again, inside saves, just after them and at random
    moments, resuming each time; then lets it finish and compares it with an uninterrupted run."""
    steps, save_every, eval_every, trials = 60, 3, 7, 24
    seed = int(os.environ.get("HATTN_SURVIVE_SEED", "20240"))
    rng = random.Random(seed)
    t0 = time.monotonic()
    out = fresh_dir(os.path.join(a.work, "killed"))
    ckpt, log = os.path.join(out, "checkpoint.safetensors"), os.path.join(out, "metrics.jsonl")
    stale = []  # temporaries a kill left, which the next start must remove
    kinds = ["in-save", "after-save", "at-random", "in-save"]
    print(f"kill test: {steps} steps, a checkpoint every {save_every}, {trials} kills (seed {seed})")
    done = False
    for trial in range(trials):
        at = checkpoint_step(ckpt)
        kept = [r for r in (metrics(log) if at is not None and os.path.exists(log) else []) if r["step"] <= at]
        run = Run(a.hattn, train_args(a.corpus, out, steps, save_every, eval_every, resume=at is not None),
                  os.path.join(a.work, f"killed{trial}.log"))
        kind = kinds[trial % len(kinds)]
        stop_at = rng.randint(1, 3)
        deadline = time.monotonic() + rng.uniform(0.02, 0.8)
        stops, where, first = 0, "", True
        while True:
            ev = run.wait(deadline - time.monotonic(), running_ok=True) if kind == "at-random" else run.wait()
            if first and ev != "running" and not (ev == "ended" and run.status < 0):
                # The first stop (or a normal end): the start is over, so the checks hold.
                first = False
                left = [n for n in stale if os.path.exists(os.path.join(out, n))]
                check(not left, f"trial {trial}: {left} survived the start of pid {run.pid}")
                stale = []
                if at is not None:
                    check(f"resumed from {ckpt} at step {at}" in run.output(), f"trial {trial}: no resume at step {at}")
                    recs = check_log(log)
                    check(recs[:len(kept)] == kept, f"trial {trial}: the resumed log does not begin with the "
                          f"{len(kept)} lines up to step {at}")
                    check(all(r["step"] > at for r in recs[len(kept):]), f"trial {trial}: lines up to step {at} "
                          "after the kept ones")
            if ev == "ended":
                check(run.status == 0, f"trial {trial}: hattn exited with {run.status}:\n{run.output()}")
                where, done = "after the run had finished", True
                break
            if ev == "running":  # at-random: the moment came
                run.kill()
                where = "at a random moment"
                break
            stops += 1
            if kind == "in-save" and stops == stop_at:
                tmp = f"checkpoint.safetensors.tmp-{run.pid}"
                name = tmp if os.path.exists(os.path.join(out, tmp)) else f"model.safetensors.tmp-{run.pid}"
                check(os.path.exists(os.path.join(out, name)), f"trial {trial}: stopped in a save without a temporary file")
                run.kill()
                where = f"in a save ({name} half written)"
                break
            run.resume()
            if kind == "after-save" and stops == stop_at:
                time.sleep(rng.uniform(0, 0.02))
                run.kill()
                where = "just after a save went on"
                break
        if done:
            print(f"  kill {trial + 1}: none, the run finished")
            break
        after = checkpoint_step(ckpt)  # its header describes the whole file; the next run loads it
        records = check_log(log)
        stale = temporaries(out)
        print(f"  kill {trial + 1}: {where}, at training step {len(training_steps(records))}; checkpoint at step "
              f"{after}; {len(records)} log lines; left {stale or 'no temporary'}")

    if not done:
        run = Run(a.hattn, train_args(a.corpus, out, steps, save_every, eval_every, resume=os.path.exists(ckpt)),
                  os.path.join(a.work, "killed_last.log"))
        check(run.finish() == 0, f"the last run failed:\n{run.output()}")
    check(not [n for n in stale if os.path.exists(os.path.join(out, n))], f"{stale} survived")
    check(temporaries(out) == [], f"temporaries left at the end: {temporaries(out)}")
    check(checkpoint_step(ckpt) == steps, f"the final checkpoint is at step {checkpoint_step(ckpt)}")
    records = check_log(log, last=steps, final=steps)
    check(training_steps(records) == list(range(1, steps + 1)), "the final log lacks steps")

    # The same run without kills: bitwise the same weights.
    straight = fresh_dir(os.path.join(a.work, "straight"))
    run = Run(a.hattn, train_args(a.corpus, straight, steps, save_every, eval_every), os.path.join(a.work, "straight.log"),
              pause=False)
    check(run.finish() == 0, f"the uninterrupted run failed:\n{run.output()}")
    with open(os.path.join(out, "model.safetensors"), "rb") as x, open(os.path.join(straight, "model.safetensors"), "rb") as y:
        check(x.read() == y.read(), "the killed and resumed run's weights differ from the uninterrupted run's")
    print(f"every checkpoint loaded, no temporary file outlived the next start, the log stayed whole and in step; "
          f"the final weights equal an uninterrupted run's ({time.monotonic() - t0:.1f} s)")


TESTS = {"metrics-flushed": test_metrics_flushed, "metrics-trimmed": test_metrics_trimmed,
         "second-writer": test_second_writer, "stale-temporary": test_stale_temporary,
         "kill-resume": test_kill_resume}


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
