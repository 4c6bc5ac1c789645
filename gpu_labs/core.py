"""The labs' leaf module: errors without tracebacks, where things live, and folders that appear whole.

Every other module of the package imports from here; this one imports only the standard library, so a
lab's `--help` stays instant and no import can go round in a circle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

LABS_DIR = Path(__file__).resolve().parent
DEFAULT_DATASET = LABS_DIR / "data" / "instructions.jsonl"
# Written as the last file of every complete save; a directory without it is half-written.
COMPLETE_MARKER = "SAVE_COMPLETE"


class LabError(Exception):
    """A problem the user can fix; the message says how. Printed without a traceback."""


def log_dir() -> Path:
    """Where full error logs go: $GPU_LABS_LOG_DIR, else a folder in the system's temp directory."""
    import tempfile

    return Path(os.environ.get("GPU_LABS_LOG_DIR") or Path(tempfile.gettempdir()) / "gpu_labs-logs")


def run_cli(main) -> None:
    """Run a lab's main() so that no traceback ever reaches the terminal.

    A LabError (a problem the user can fix) prints as one line. Any other exception, usually from
    torch, transformers, peft or bitsandbytes, prints as one line naming the error and the path of a
    log file that holds the full traceback and the library versions; both exit with status 2."""
    import traceback

    try:
        sys.exit(main())
    except LabError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - the whole point: a library error becomes one line and a log
        script = Path(sys.argv[0]).stem or "lab"
        path = log_dir() / f"{script}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"command: {' '.join(sys.argv)}\nversions: {library_versions()}\n\n"
                            + traceback.format_exc())
            where = f"full log: {path}"
        except OSError as log_err:
            where = f"(could not write a log to {path}: {log_err.strerror})"
        first_line = (str(err).strip().splitlines() or [""])[0][:300]
        print(f"\nerror: {type(err).__name__} from {_origin(err)}: {first_line}\n{where}", file=sys.stderr)
        sys.exit(2)


def _origin(err: BaseException) -> str:
    """The library the failing frame belongs to (the innermost frame outside this folder)."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    for frame in reversed(frames):
        for lib in ("bitsandbytes", "peft", "transformers", "accelerate", "trl", "torch", "tokenizers"):
            if f"/{lib}/" in frame.filename:
                return lib
    return Path(frames[-1].filename).name if frames else "the lab"


def library_versions() -> dict:
    import importlib.metadata as md
    import platform

    versions = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "accelerate"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    return versions


def quiet_libraries() -> None:
    """Silence notices that say nothing to a learner (bitsandbytes asks for an optional `kernels` package)."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*kernels.*")
    # peft fills rank_pattern and alpha_pattern for fused MoE weights itself, then warns when a pattern matches nothing.
    warnings.filterwarnings("ignore", message=".*_pattern keys did not match.*")
    # GPT-2's Conv1D stores weights transposed; peft notices and sets fan_in_fan_out itself.
    warnings.filterwarnings("ignore", message=".*fan_in_fan_out is set to False.*")
    # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*; peft still calls the old names.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated.*", category=FutureWarning)


# --- sizes and saving -------------------------------------------------------------------------------

def human_bytes(n: float) -> str:
    """Bytes in decimal units (kB, MB, GB), the one convention of the course and of the cards' labels."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def dir_size_bytes(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike):
    """Yield a staging directory next to `final`; on success write the completion marker and rename
    it into place (a rename is atomic on one file system), replacing an older `final`.
    A crash leaves only a `.tmp-*` directory, which readers ignore."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        (staging / COMPLETE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_complete(directory: str | os.PathLike) -> bool:
    return (Path(directory) / COMPLETE_MARKER).is_file()
