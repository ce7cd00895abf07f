"""Peak-memory probe for the training processes bench_gpu.py starts (parts c and d).

bench_gpu.py puts this folder on PYTHONPATH and sets BENCH_PROBE_DIR for the training runs only;
Python imports `sitecustomize` at start-up, so every process of the run (launcher and rank) writes
<BENCH_PROBE_DIR>/<pid>.json at exit: torch.cuda.max_memory_allocated / max_memory_reserved when
that process used CUDA, and its peak RSS. No project file is touched. Without BENCH_PROBE_DIR this
module does nothing.
"""
import os

_DIR = os.environ.get("BENCH_PROBE_DIR")

if _DIR:
    import atexit
    import json
    import sys

    def _dump() -> None:
        try:
            rec = {"pid": os.getpid(), "argv": sys.argv[:4]}
            torch = sys.modules.get("torch")
            cuda = getattr(torch, "cuda", None) if torch is not None else None
            if cuda is not None and cuda.is_available() and cuda.is_initialized():
                rec["cuda_device"] = cuda.get_device_name()
                rec["cuda_max_memory_allocated"] = int(cuda.max_memory_allocated())
                rec["cuda_max_memory_reserved"] = int(cuda.max_memory_reserved())
            import resource

            rec["max_rss_kib"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            os.makedirs(_DIR, exist_ok=True)
            with open(os.path.join(_DIR, f"{os.getpid()}.json"), "w") as fh:
                json.dump(rec, fh)
        except Exception:  # a probe must never change how the run ends
            pass

    atexit.register(_dump)
