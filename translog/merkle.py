"""RFC 9162 Merkle tree hashing, compact ranges, and proofs (pure functions, no database).

The audit log is the list of leaves D[0:n]; leaf i is the event with sequence
number i + 1.  Hashes follow RFC 9162 section 2.1.1:

    MTH({})      = SHA-256()
    leaf hash    = SHA-256(0x00 || d(i))
    MTH(D[0:n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of two < n

A *frontier* (compact range of [0, n)) is the list of roots of the perfect
subtrees that the binary decomposition of n gives, largest first; appending a
leaf merges equal-sized subtrees, so a checkpoint only hashes the leaves added
since the previous one, and the root is the right-to-left fold of the frontier.

Proof generation takes a function `subtree(start, end) -> hash` so the caller
decides where subtree hashes come from (stored nodes, leaves, memory).  Proof
verification (`verify_inclusion`, `verify_consistency`) follows RFC 9162
sections 2.1.3.2 and 2.1.4.2 and needs nothing but hashes: this module is what
an outside verifier runs.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Sequence
from typing import Any

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256
_digest = operator.methodcaller("digest")
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: list[bytes]) -> bytes:
    """MTH of a list of leaf hashes held in memory (tests and small ranges)."""
    if not leaves:
        return EMPTY_ROOT
    return _mth(leaves, 0, len(leaves))


def _mth(leaves: list[bytes], start: int, end: int) -> bytes:
    n = end - start
    if n == 1:
        return leaves[start]
    k = split_point(n)
    return node_hash(_mth(leaves, start, start + k), _mth(leaves, start + k, end))


def parents(level: list[bytes]) -> list[bytes]:
    """The node hashes one level up from an even-length list of sibling pairs."""
    if len(level) % 2:
        raise ValueError("an odd number of nodes has no parent level")
    pairs = iter(level)
    # Concatenating, hashing and taking each digest are mapped (run from C), not called per pair in Python.
    return list(map(_digest, map(_sha256, map(_NODE_PREFIX.__add__, map(operator.add, pairs, pairs)))))


def levels_of(leaves: list[bytes]) -> list[list[bytes]]:
    """All levels of a perfect tree over `leaves` (len a power of two), leaves first."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        levels.append(parents(levels[-1]))
    return levels


# Frontier.extend hashes whole aligned blocks of 2**BLOCK_LEVEL leaves level by level.
BLOCK_LEVEL = 8


class Frontier:
    """Compact range [0, size): perfect subtree roots, largest first, as (level, hash)."""

    __slots__ = ("min_level", "nodes", "on_node", "size")

    def __init__(
        self,
        size: int = 0,
        nodes: list[tuple[int, bytes]] | None = None,
        on_node: Callable[[int, int, bytes], None] | None = None,
    ):
        self.size = size
        self.nodes = list(nodes or [])
        # Called with (level, index, hash) for every perfect subtree completed by an append.
        self.on_node = on_node
        # on_node is only called for subtrees of at least 2**min_level leaves.
        self.min_level = 1
        if sum(1 << level for level, _ in self.nodes) != size:
            raise ValueError("frontier does not cover its size")

    def append(self, leaf: bytes) -> None:
        self._push(0, leaf)

    def _push(self, level: int, h: bytes) -> None:
        """Append a perfect subtree of 2**level leaves; the size must be a multiple of 2**level."""
        nodes = self.nodes
        index = self.size >> level
        self.size += 1 << level
        while nodes and nodes[-1][0] == level:
            _, left = nodes.pop()
            h = node_hash(left, h)
            level += 1
            index >>= 1
            if self.on_node is not None and level >= self.min_level:
                self.on_node(level, index, h)
        nodes.append((level, h))

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append leaves in order; each whole aligned block of 2**BLOCK_LEVEL is hashed a level at a time."""
        block = 1 << BLOCK_LEVEL
        # on_node must see every completed subtree it asks for: below the block level, leaf by leaf.
        blocks = self.on_node is None or self.min_level >= BLOCK_LEVEL
        i, n = 0, len(leaves)
        while i < n:
            if blocks and self.size % block == 0 and n - i >= block:
                level = list(leaves[i : i + block])
                for _ in range(BLOCK_LEVEL):
                    level = parents(level)
                if self.on_node is not None and self.min_level <= BLOCK_LEVEL:
                    self.on_node(BLOCK_LEVEL, self.size >> BLOCK_LEVEL, level[0])
                self._push(BLOCK_LEVEL, level[0])
                i += block
            else:
                self._push(0, leaves[i])
                i += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1][1]
        for _, h in reversed(self.nodes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def to_json(self) -> list[list[int | str]]:
        return [[level, h.hex()] for level, h in self.nodes]

    @classmethod
    def from_json(cls, size: int, data: list[list[Any]]) -> Frontier:
        return cls(size, [(int(level), bytes.fromhex(h)) for level, h in data])

    def copy(self) -> Frontier:
        return Frontier(self.size, self.nodes)


def frontier_ranges(size: int) -> list[tuple[int, int]]:
    """The [start, end) ranges of the perfect subtrees making up the frontier of `size`."""
    out, start = [], 0
    for bit in reversed(range(size.bit_length())):
        if size & (1 << bit):
            out.append((start, start + (1 << bit)))
            start += 1 << bit
    return out


# -- proof generation ------------------------------------------------------------

Subtree = Callable[[int, int], bytes]


def inclusion_path(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[0:n]) for leaf `index` in a tree of `size` leaves."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    return path_to_range(index, index + 1, size, subtree)


def sibling_ranges(lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    """The [start, end) ranges whose hashes `path_to_range(lo, hi, size)` needs, top-down."""
    out = []
    start, end = 0, size
    while (start, end) != (lo, hi) and end - start > 1:
        k = split_point(end - start)
        if lo < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start = start + k
    return out


def path_to_range(lo: int, hi: int, size: int, subtree: Subtree) -> list[bytes]:
    """Siblings, bottom-up, from the subtree [lo, hi) (a node of the RFC 9162 recursion) to the root.

    For a leaf this is its inclusion path; for a complete aligned bucket it is the
    upper part shared by the inclusion paths of all its leaves.
    """
    path: list[bytes] = []
    start, end = 0, size
    # Walk down from the root, collecting the sibling at each split; reversed at the end.
    while (start, end) != (lo, hi):
        if end - start <= 1:
            raise ValueError("range is not a node of the tree")
        k = split_point(end - start)
        if lo < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start = start + k
    path.reverse()
    return path


def consistency_path(first: int, second: int, subtree: Subtree) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(m, D[0:n])."""
    if not 0 < first <= second:
        raise ValueError("need 0 < first <= second")
    if first == second:
        return []

    def subproof(m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [subtree(start, end)]
        k = split_point(n)
        if m <= k:
            return [*subproof(m, start, start + k, whole), subtree(start + k, end)]
        return [*subproof(m - k, start + k, end, False), subtree(start, start + k)]

    return subproof(first, 0, second, True)


# -- proof verification (RFC 9162 2.1.3.2 and 2.1.4.2) ---------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root implied by an inclusion proof, or None when the proof is malformed."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    return root_from_inclusion(index, size, leaf, path) == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, path: list[bytes]) -> bool:
    if first == second:
        return not path and first_root == second_root
    if not 0 < first < second:
        return False
    if not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
