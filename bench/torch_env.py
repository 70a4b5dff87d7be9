"""What a PyTorch peer ran with (bench/torch_peer.py, bench/torch_train_peer.py): torch's version, the BLAS as
torch reports it (BLAS_INFO in torch.__config__.show(): Debian's python3-torch says `generic` because it is built
against the libblas.so.3 interface, whichever library Debian's alternatives put behind it), the BLAS library
actually loaded (read from /proc/self/maps after a matmul: the reference BLAS, or OpenBLAS once
libopenblas0-pthread is installed) and torch's thread count."""
import os
import re

import torch


def set_threads(n=0):
    """All cores unless told otherwise (OpenBLAS sizes its own pool from the cores too)."""
    torch.set_num_threads(n or os.cpu_count() or 1)


def blas_info():
    m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def blas_lib():
    """The loaded BLAS shared object (resolved path), or "" when it cannot be read."""
    a = torch.ones(64, 64)
    a @ a  # make sure the BLAS is loaded
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return ""
    for p in sorted(paths):
        if "libblas" in os.path.basename(p) or "openblas" in p:
            return os.path.realpath(p)
    return sorted(paths)[0] if paths else ""


def ran_with():
    lib = blas_lib()
    vendor = "openblas" if "openblas" in lib else "mkl" if "mkl" in lib else "reference" if "blas" in lib else "unknown"
    return {"torch": torch.__version__, "blas": blas_info(), "blas_lib": vendor, "blas_path": lib, "threads": torch.get_num_threads()}
