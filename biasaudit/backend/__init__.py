"""Model backends behind one protocol (see ``protocol.py``)."""

from biasaudit.backend.protocol import Backend, LabelMode, LoglikelihoodResult, Pooling, TokenStates, VisionBackend

__all__ = [
    "Backend",
    "HFBackend",
    "LabelMode",
    "LoglikelihoodResult",
    "Pooling",
    "TokenStates",
    "VLMBackend",
    "VisionBackend",
]


def __getattr__(name: str):  # keep `import biasaudit.backend` light: transformers loads on first use
    if name == "HFBackend":
        from biasaudit.backend.hf import HFBackend

        return HFBackend
    if name == "VLMBackend":
        from biasaudit.backend.vlm import VLMBackend

        return VLMBackend
    raise AttributeError(name)
