"""Figures of issue 18 (the founding documents' generators, TensorBoard logs and alerts):

* prompted texts per second with the ``local`` backend (the project's GPT at the text-corpus pipeline's default
  size: 2 layers, 2 heads, width 64, context 64; 80 new tokens per text) on 2 cores;
* ``vertex``-backend requests per second against the Vertex stand-in (the real ``vertexai`` SDK over TLS);
* the size of a text-corpus run's TensorBoard logs: train-lm at the pipeline's defaults (200 steps, an eval
  every 50) writing through the same kept writer as the component.

Usage: ``python bench/bench_founding.py [--output bench/results/founding.json]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, write_report  # noqa: E402

from expforge.text.lm_trainer import train_lm
from expforge.text.prepare import prepare_corpus
from expforge.text.prompted import LocalLmBackend, PromptSet, generate_prompted_text
from expforge.train.tensorboard_log import ScalarLog

PIPELINE_MODEL = {"layers": 2, "heads": 2, "width": 64, "context": 64, "batch_size": 32}
PROMPTS = PromptSet(
    ["The {who} spoke of {what}", "O {who}, where is the {what}", "{who}: I will not {verb}"],
    {"who": ["king", "queen", "fool", "duke"], "what": ["crown", "sea", "night"], "verb": ["yield", "sleep"]},
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("bench/results/founding.json"))
    parser.add_argument("--texts", type=int, default=40, help="Texts for the local backend (40).")
    parser.add_argument("--requests", type=int, default=200, help="Requests to the stand-in (200).")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
    import torch

    torch.set_num_threads(2)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-founding-") as tmp:
        work = Path(tmp)
        prepare_corpus(["shakespeare"], work / "corpus", max_chars=300_000, val_fraction=0.1, seed=0)
        board = work / "train-lm" / "tensorboard"
        with ScalarLog(board) as log:
            train_lm(
                work / "corpus", work / "lm.pt", steps=200, eval_interval=50, device="cpu", on_eval=log.record,
                **PIPELINE_MODEL,
            )  # fmt: skip
        files = [p for p in board.rglob("*") if p.is_file()]
        report["tensorboard_logs"] = {
            "bytes": sum(p.stat().st_size for p in files),
            "files": len(files),
            "setting": "train-lm at the text-corpus defaults: 200 steps, an eval (one row of scalars) every 50",
        }

        local = LocalLmBackend(work / "lm.pt", work / "corpus", length=80, device="cpu")
        summary = generate_prompted_text(
            PROMPTS, local, work / "local.txt", work / "local.json", count=args.texts, temperature=0.8, seed=0
        )
        report["local_backend"] = {
            "texts": args.texts,
            "new_tokens_per_text": 80,
            "seconds": summary["seconds"],
            "texts_per_second": summary["texts_per_second"],
        }

        from expforge.standins.tls import process_cert
        from expforge.standins.vertex import start_vertex_standin, trust_certificate

        trust_certificate(process_cert().cert_path)
        with start_vertex_standin() as standin:
            os.environ["EXPFORGE_VERTEX_ENDPOINT"] = standin.endpoint
            from expforge.text.prompted_vertex import VertexGeminiBackend

            vertex = VertexGeminiBackend(project="bench")
            vertex.generate("warm up", temperature=0.5, seed=0)
            started = time.perf_counter()
            generate_prompted_text(
                PROMPTS, vertex, work / "v.txt", work / "v.json", count=args.requests, temperature=0.8, seed=0
            )
            seconds = time.perf_counter() - started
        report["vertex_backend_standin"] = {
            "requests": args.requests,
            "seconds": round(seconds, 3),
            "requests_per_second": round(args.requests / seconds, 1),
            "scope": "sequential generate_content calls of vertexai.generative_models over TLS to 127.0.0.1",
        }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report["machine"] = {
        "cpu": cpu_model(),
        "cores_used": 2,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["commit"] = commit
    report["command"] = "python bench/bench_founding.py"
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
