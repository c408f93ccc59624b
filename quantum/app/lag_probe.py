"""The supervisor's questions to the broker, asked from a process of its own.

librdkafka 2.16.0 has crashed (SIGSEGV in its `rdk:main` thread, in the kernel log) in an
admin client whose broker was killed and restarted: one made per check, and one kept for
the supervisor's life alike. In the supervisor that crash took the worker with it (the
worker dies with its supervisor). Here it costs one probe process: the supervisor sees
"lag unknown" and starts another at its next check.

Protocol: the supervisor writes a line, the probe answers one JSON line, either
`{"committed": [[group, topic, partition, offset], ...], "lag": {"group/topic": n}}` or
`{"error": "..."}`. The probe ends when its input closes or its parent dies.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from quantum.quiescence import Reader

ANSWER_TIMEOUT_S = 30.0  # the probe's own broker calls give up after 10 s

Committed = dict[tuple[str, str, int], int]


class ProbeFailed(RuntimeError):
    """No answer: the probe died, hung, or the broker did not answer it."""


class LagProbe:
    """The supervisor's end: starts the probe process when needed and asks it."""

    def __init__(
        self,
        bootstrap: str,
        readers: Sequence[Reader],
        transactional: set[str],
        *,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "quantum.app.lag_probe",
            "--bootstrap",
            bootstrap,
            "--readers",
            json.dumps([[r.group, list(r.topics)] for r in readers]),
            "--transactional",
            json.dumps(sorted(transactional)),
        ]
        self._preexec_fn = preexec_fn
        self._proc: subprocess.Popen[bytes] | None = None

    def ask(self) -> tuple[Committed, dict[str, int]]:
        """(committed offsets per group/topic/partition, lag per `group/topic`)."""
        proc = self._running()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"?\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], ANSWER_TIMEOUT_S)
            line = proc.stdout.readline() if ready else b""
        except OSError as exc:
            self.close()
            raise ProbeFailed(f"the lag probe is gone ({exc})") from exc
        if not line:
            code = proc.poll()
            self.close()
            why = "no answer in time" if code is None else f"the lag probe exited with {code}"
            raise ProbeFailed(why)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ProbeFailed(answer["error"])
        committed = {(g, t, int(p)): int(o) for g, t, p, o in answer["committed"]}
        return committed, {k: int(v) for k, v in answer["lag"].items()}

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                preexec_fn=self._preexec_fn,
            )
        return self._proc

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None


def main(argv: Sequence[str] | None = None) -> int:
    """The probe process: answer each input line with the readers' committed offsets and lag."""
    from quantum.quiescence import Quiescence

    parser = argparse.ArgumentParser(prog="python -m quantum.app.lag_probe")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--readers", required=True, help='[["group", ["topic", ...]], ...]')
    parser.add_argument("--transactional", default="[]", help='["topic", ...]')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the supervisor's to handle
    readers = [Reader(group, tuple(topics)) for group, topics in json.loads(args.readers)]
    transactional = set(json.loads(args.transactional))
    quiescence: Quiescence | None = None
    for _ in sys.stdin:
        try:
            if quiescence is None:
                quiescence = Quiescence(args.bootstrap, readers, transactional=transactional)
            committed = quiescence.committed()
            lag = quiescence.lag(committed, quiescence.ends())
            answer: dict[str, Any] = {
                "committed": [[g, t, p, o] for (g, t, p), o in sorted(committed.items())],
                "lag": lag,
            }
        except Exception as exc:  # the broker is away: say so, and be asked again
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
