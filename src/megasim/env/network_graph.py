"""The social graph: who follows whom, as compressed sparse rows (CSR) of numpy arrays.

A million agents with tens of millions of follow edges cannot be Python objects (a
tuple per edge costs ~70 bytes and a second to build per million). ``SocialGraph``
holds ``indptr`` (int64, one entry per agent + 1) and ``indices`` (int32, the followed
agent of every edge, sorted within each row), about 4 bytes per edge; an agent's
followees are one slice. The graph is built once per process from the run's settings
(a generator with the run seed, or an edge-list file) and is read-only afterwards;
follows and unfollows made during the run are keyed state (env/network.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


@dataclass(frozen=True, slots=True, eq=False)
class SocialGraph:
    """Directed follow graph over agent positions 0..n-1 (row ``a``: whom ``a`` follows)."""

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int32]

    @property
    def agents(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def edges(self) -> int:
        return int(self.indices.size)

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.indices.nbytes)

    def followees(self, agent: int) -> npt.NDArray[np.int32]:
        """Whom ``agent`` follows in the base graph (a view, sorted)."""
        return self.indices[self.indptr[agent] : self.indptr[agent + 1]]

    def out_degree(self) -> npt.NDArray[np.int64]:
        return np.diff(self.indptr)

    def in_degree(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.indices, minlength=self.agents)

    def sources(self) -> npt.NDArray[np.int32]:
        """The follower of every edge, aligned with ``indices`` (built on demand)."""
        return np.repeat(np.arange(self.agents, dtype=np.int32), self.out_degree())

    @classmethod
    def from_edges(
        cls,
        agents: int,
        sources: npt.NDArray[np.integer],
        targets: npt.NDArray[np.integer],
        mutual: bool = False,
    ) -> SocialGraph:
        """CSR from an edge list; self-loops and duplicate edges are dropped. ``mutual``:
        every edge is a follow both ways (undirected generators, friendship graphs)."""
        src = np.asarray(sources, dtype=np.int64)
        dst = np.asarray(targets, dtype=np.int64)
        if src.shape != dst.shape:
            raise ValueError("sources and targets differ in length")
        if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= agents):
            raise ValueError(f"edge endpoints must be agent positions 0..{agents - 1}")
        if mutual:
            src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
        keep = src != dst
        key = np.sort(src[keep] * agents + dst[keep])  # by (source, target)
        if key.size:  # np.unique is ~80x slower at 10M edges (numpy 2.x), measured
            key = key[np.concatenate(([True], key[1:] != key[:-1]))]
        rows = key // agents
        indices = (key - rows * agents).astype(np.int32)
        indptr = np.zeros(agents + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=agents), out=indptr[1:])
        return cls(indptr, indices)


def read_edge_list(
    path: Path, ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(sources, targets) as agent positions from a CSV or Parquet edge list.

    Columns ``source`` and ``target`` (or the first two) hold agent ids of the
    population (``ids``, sorted); an edge naming an unknown agent is an error."""
    table: pa.Table
    if path.suffix.lower() in (".parquet", ".pq"):
        table = pq.read_table(path)
    else:
        table = pacsv.read_csv(path)
    names = table.column_names
    if "source" in names and "target" in names:
        src_col, dst_col = table.column("source"), table.column("target")
    elif len(names) >= 2:
        src_col, dst_col = table.column(0), table.column(1)
    else:
        raise ValueError(f"{path}: an edge list needs two columns (source, target)")
    out = []
    for column in (src_col, dst_col):
        values = column.to_numpy().astype(np.int64)
        positions = np.searchsorted(ids, values)
        positions = np.minimum(positions, ids.size - 1)
        unknown = ids[positions] != values
        if unknown.any():
            raise ValueError(
                f"{path}: {int(unknown.sum())} edges name agents not in the population "
                f"(first: {int(values[unknown][0])})"
            )
        out.append(positions)
    return out[0], out[1]
