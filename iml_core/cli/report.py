"""A study report as one HTML file: report."""

from __future__ import annotations

import os
from pathlib import Path

from iml_core.cli.common import command, open_store
from iml_core.errors import UserError


def add(commands) -> None:
    report = command(commands, "report", cmd_report,
                     "one self-contained HTML file of some runs or a study: differing settings, curves with "
                     "baselines, final accuracy over seeds, the paper's figures, heat maps, the ladder, alarms, "
                     "cost by phase and the best run's notes; it opens offline in any browser")
    report.add_argument("run_ids", type=int, nargs="*", metavar="RUN", help="the runs to report on")
    report.add_argument("--study", help="every run of this study (as `runs` and the dashboard name it)")
    report.add_argument("--out", required=True, type=Path, metavar="FILE.html", help="the file to write")
    report.add_argument("--title", help="the report's heading (default: the study's name when the runs are one "
                                        "study's, else their ids)")


def writable(out: Path) -> Path:
    """`out`, refused before any work when it cannot be written: its folder missing, or a folder itself."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'report.html'}")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(f"cannot write the report to {out}: the folder {folder} does not exist; create it or "
                        "choose another --out")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"cannot write the report to {out}: permission denied; choose an --out you may write to")
    return out


def cmd_report(args) -> int:
    if not args.run_ids and not args.study:
        raise UserError("name the runs to report on (`iml report 3 4 --out report.html`) or a study "
                        "(`--study NAME`); `python -m iml_core runs` lists both")
    out = writable(args.out)
    from iml_core.report import report_html, report_title, runs_of_study  # plotly and pandas: here only

    with open_store(args) as store:
        run_ids = list(args.run_ids) + (runs_of_study(store, args.study) if args.study else [])
        document = report_html(store, run_ids, args.title or report_title(store, run_ids))
    try:
        out.write_text(document, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write the report to {out}: {e.strerror or e}; choose another --out") from None
    print(f"{out}: {len(set(run_ids))} runs, {len(document.encode()) / 1e6:.1f} MB; open it in a browser (it needs "
          "no network)")
    return 0
