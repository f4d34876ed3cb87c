"""astromodal-model: a 4M-style multimodal transformer assembled from a fitted tokenizer set.

Importing the package does not import torch; the names below load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "AstroModel": "model",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "load_model_yaml": "config",
    "train_model": "train",
    "embed_store": "inference",
    "predict_store": "inference",
    "write_embeddings": "inference",
    "write_predictions": "inference",
    "cosine_topk": "search",
    "EmbeddingIndex": "search",
    "token_values": "values",
    "mask_batch": "masking",
    "MaskedTokenDataset": "data",
    "spawn_cpu_training": "distributed",
    "IncompatibleKeyError": "errors",
    "FingerprintMismatchWarning": "keys",
    "UnknownTokenKeyError": "errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'astromodal_model' has no attribute {name!r}")
