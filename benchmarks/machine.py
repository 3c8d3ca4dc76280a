"""What every benchmark records about the machine it ran on (so figures can be compared honestly)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def machine_info(**extra: Any) -> dict[str, Any]:
    """CPU count, processor, library versions, torch threads and the load average at the start."""
    import transformers

    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
        **extra,
    }
