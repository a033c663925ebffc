"""Shared test settings: small thread count so parallel test workers do not oversubscribe."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
