"""Throughput of `hedgerow eval --backend openai` against a local endpoint with a fixed
latency.

The endpoint is tests/fakeserver.py (its own process, answering after `--delay`
seconds, as benchmarks/openai_concurrency.py runs it), its reply swapped for an eval
answer ("N\\nConfidence: 90%"). For each concurrency N, `--questions` knowledge questions
go through the whole eval (sets, asking, answers.jsonl, verdicts, figures, eval.html); the
asking phase is timed from the progress callbacks, and the ideal rate is N / delay, so the
figure is achieved / ideal, all measured side by side in one run.

    python benchmarks/eval.py [--questions 1000] [--delay 0.2] [--levels 8,32,64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.evaluate import EvalConfig, evaluate  # noqa: E402

# The fakeserver with an eval answer in place of a generator's JSON reply.
SERVER = """
import re, sys
import tests.fakeserver as fake
def answer(messages):
    numbers = re.findall(r"\\d+", messages[-1]["content"])
    return f"{int(numbers[0]) * int(numbers[1])}\\nConfidence: 90%"
fake.answer = answer
sys.argv = ["fakeserver", "--delay", sys.argv[1]]
fake.main()
"""


def server(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(delay)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def questions(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            a, b = i % 97 + 2, i // 97 + 3
            row = {"id": f"q{i}", "question": f"What is {a} times {b}?", "answer": f"#### {a * b}"}
            fh.write(json.dumps(row) + "\n")
    return path


class Clock:
    """Progress callbacks: when asking started and when the last answer came."""

    def start(self, total: int, done: int) -> None:
        self.first = self.last = time.perf_counter()
        self.asked = 0

    def advance(self, n: int = 1) -> None:
        self.asked += n
        self.last = time.perf_counter()

    def note(self, stats) -> None:
        self.stats = stats


def run(data: Path, url: str, concurrency: int, out: Path) -> tuple[float, int, float, dict]:
    config = EvalConfig(
        seeds=(str(data),),
        out=str(out),
        backend="openai",
        model="bench",
        base_urls=(url,),
        concurrency=concurrency,
    )
    clock = Clock()
    wall = time.perf_counter()
    result = evaluate(config, progress=clock)
    wall = time.perf_counter() - wall
    assert not result.failures and result.asked == clock.asked, result.failures
    return clock.last - clock.first, clock.asked, wall, result.figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--levels", default="8,32,64")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = questions(tmp / "questions.jsonl", args.questions)
        proc, url = server(args.delay)
        try:
            run(questions(tmp / "warm.jsonl", 20), url, 8, tmp / "warm")  # imports, first files
            print(f"{args.questions} questions, endpoint latency {args.delay * 1000:.0f} ms")
            print(
                f"{'concurrency':>11} {'asked/s':>8} {'ideal':>8} {'ratio':>6} "
                f"{'asking s':>9} {'whole eval s':>13}"
            )
            for n in levels:
                asking, asked, wall, figures = run(data, url, n, tmp / f"c{n}")
                ideal, rate = n / args.delay, asked / asking
                print(
                    f"{n:>11} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.2f} "
                    f"{asking:>9.2f} {wall:>13.2f}"
                )
            assert figures["accuracy"]["value"] == 1.0, figures["accuracy"]
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
