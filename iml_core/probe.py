"""One real call to a model, made in a child process: the Models page's Test and `doctor --model`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from iml_core.backends.llama_server import signal_name
from iml_core.config import RunConfig
from iml_core.errors import IMLError, RunFailed, UserError
from iml_core.registry import BACKENDS


@dataclass(frozen=True)
class Probe:
    description: str
    seconds: float
    answer: str  # the model's raw answer
    tokens_in: int
    tokens_out: int


QUESTION = "Answer yes or no: is the sky blue?"


def probe_here(config: RunConfig) -> Probe:
    """One real call to the model a config names, in this process (loading the model first)."""
    backend = BACKENDS[config.backend].build(config, None)
    started = time.perf_counter()
    out = backend.label([{"role": "user", "content": QUESTION}], ["yes", "no"],
                        temperature=0.0, seed=0, max_tokens=8)
    return Probe(backend.description, time.perf_counter() - started, out.raw, out.tokens_in, out.tokens_out)


def probe(config: RunConfig, timeout: float = 900) -> Probe:
    """Whether the model answers, how fast, and what. A crash in llama.cpp (an illegal instruction,
    a segfault) is named, not shared: the call is made in a child process."""
    config.check()
    try:
        child = subprocess.run([sys.executable, "-c", "from iml_core.probe import probe_child; probe_child()",
                                json.dumps(config.to_dict())], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"the model gave no answer within {timeout:.0f} s") from None
    last = "\n".join((child.stdout + child.stderr).strip().splitlines()[-8:])
    if child.returncode != 0:
        raise RunFailed(f"loading or asking the model ended the test process with {signal_name(child.returncode)}; "
                        f"its last lines:\n{last}")
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    if "error" in answer:
        raise (UserError if answer["bad_input"] else RunFailed)(answer["error"])
    return Probe(**answer)


def probe_child() -> None:
    """The child's side of `probe`: the config as JSON in argv[1], one JSON line out."""
    try:
        answer = asdict(probe_here(RunConfig.from_dict(json.loads(sys.argv[1]))))
    except IMLError as e:
        answer = {"error": str(e), "bad_input": isinstance(e, UserError)}
    print(json.dumps(answer))
