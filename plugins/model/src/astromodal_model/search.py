"""Top-k cosine neighbours over a table of embeddings (faiss when installed, numpy otherwise)."""

from __future__ import annotations

import numpy as np

from astromodal_core.errors import DataError


def _normalise(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DataError(f"{what}: expected a 2-D (n, dim) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(1))[0])
        raise DataError(f"{what}: row {row} holds NaN or inf")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.clip(norm, 1e-12, None))


def cosine_topk(
    queries: np.ndarray, database: np.ndarray, k: int = 10, *, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, indices)`` of the k most cosine-similar database rows per query, best first.

    ``backend``: ``"auto"`` (faiss if importable), ``"faiss"`` or ``"numpy"``; both give the
    same neighbours (ties broken by the lower index).
    """
    q, db = _normalise(queries, "queries"), _normalise(database, "database")
    if q.shape[1] != db.shape[1]:
        raise DataError(f"queries have dim {q.shape[1]}, database has dim {db.shape[1]}")
    k = int(min(k, db.shape[0]))
    if k < 1:
        raise DataError("cosine_topk: the database is empty or k < 1")
    use_faiss = backend == "faiss"
    if backend == "auto":
        try:
            import faiss  # noqa: F401

            use_faiss = True
        except ImportError:
            use_faiss = False
    if use_faiss:
        import faiss

        index = faiss.IndexFlatIP(db.shape[1])
        index.add(db)
        scores, idx = index.search(q, k)
        return scores, idx.astype(np.int64)
    sims = q @ db.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, 1), idx.astype(np.int64)


class EmbeddingIndex:
    """A searchable table of embeddings with their row ids."""

    def __init__(self, ids: np.ndarray, embeddings: np.ndarray, *, backend: str = "auto"):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(self.ids) != len(self.embeddings):
            raise DataError(f"{len(self.ids)} ids for {len(self.embeddings)} embeddings")
        self.backend = backend

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, neighbour ids)`` for each query row."""
        scores, idx = cosine_topk(queries, self.embeddings, k, backend=self.backend)
        return scores, self.ids[idx]
