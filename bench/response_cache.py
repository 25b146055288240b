"""Figure 4: a repeated LLM run (llama.cpp, 512 wide x 8 layers random model) against the first:
the response cache must answer every call, so the repeat makes no model call at all."""

import sys
import tempfile
import time
from pathlib import Path

from common import report
from tiny_gguf import write_tiny_llama

from iml_core.config import RunConfig
from iml_core.runner import create_run, execute_run
from iml_core.store import Store

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "bench-512x8.gguf", width=512, layers=8, heads=8, ff=1024)
        config = RunConfig(agent="llm", backend="llama-cpp", model=str(model), n_ctx=2048, n_gpu_layers=0,
                           steps=3, batch_size=8, eval_size=16, max_note_words=60, seed=1)
        with Store(Path(tmp) / "bench.duckdb") as store:
            execute_run(store, create_run(store, config.replace(seed=99, steps=1)))  # loads the model once
            timings, calls = [], []
            for _ in range(2):
                run_id = create_run(store, config)
                start = time.perf_counter()
                execute_run(store, run_id)
                timings.append(time.perf_counter() - start)
                calls.append(sum(not c["cached"] for c in store.model_calls(run_id)))
    first, repeat = timings
    ok = report("response_cache", repeat, "s", first, "first/repeat >= 20 and 0 model calls in the repeat",
                first / repeat >= 20 and calls[1] == 0, model_calls_first=calls[0], model_calls_repeat=calls[1])
    sys.exit(0 if ok else 1)
