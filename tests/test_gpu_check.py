"""scripts/gpu-check runs on a GPU machine, which CI lacks; what it does with a failure is checked here."""

import subprocess
import sys
from pathlib import Path


def test_gpu_check_tells_why_a_child_failed(capsys):
    # scripts/gpu-check once printed "exit 1" for a child that died of a missing package.
    import importlib.machinery
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "gpu-check"
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("gpu_check", loader))
    loader.exec_module(module)
    child = subprocess.run([sys.executable, "-c", "import sys\nfor n in range(40): print(f'line {n}', "
                            "file=sys.stderr)\nimport diskcache_is_not_here"], capture_output=True, text=True)
    tail = module.said_why(child)
    err = capsys.readouterr().err
    assert "ModuleNotFoundError: No module named 'diskcache_is_not_here'" in tail and tail in err
    assert "line 39" in err and "line 5\n" not in err and f"exited {child.returncode}" in err
