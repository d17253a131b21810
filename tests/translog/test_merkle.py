"""RFC 9162 tree hashing and proofs, without a database."""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from translog import merkle

# The RFC 6962 / 9162 test leaves used by the certificate-transparency implementations,
# with the published roots of the trees of their first 1..8 leaves.
LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_known_roots_and_empty_tree():
    hashes = [merkle.leaf_hash(d) for d in LEAVES]
    assert merkle.root_of([]) == hashlib.sha256(b"").digest()
    for n, root in enumerate(ROOTS, 1):
        assert merkle.root_of(hashes[:n]).hex() == root
        frontier = merkle.Frontier()
        frontier.extend(hashes[:n])
        assert frontier.root().hex() == root


def _tree(n):
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    return leaves, (lambda a, b: merkle.root_of(leaves[a:b]))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 700), st.data())
def test_inclusion_proofs_verify_and_reject_wrong_input(n, data):
    leaves, subtree = _tree(n)
    root = merkle.root_of(leaves)
    i = data.draw(st.integers(0, n - 1))
    path = merkle.inclusion_path(i, n, subtree)
    assert merkle.verify_inclusion(i, n, leaves[i], path, root)
    assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"forged"), path, root)
    if n > 1:
        assert not merkle.verify_inclusion((i + 1) % n, n, leaves[i], path, root)
        assert not merkle.verify_inclusion(i, n, leaves[i], path[:-1], root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 700), st.data())
def test_consistency_proofs_verify_and_reject_a_rewritten_prefix(n, data):
    leaves, subtree = _tree(n)
    m = data.draw(st.integers(1, n))
    path = merkle.consistency_path(m, n, subtree)
    old_root = merkle.root_of(leaves[:m])
    assert merkle.verify_consistency(m, n, old_root, merkle.root_of(leaves), path)
    forged = list(leaves)
    forged[data.draw(st.integers(0, m - 1))] = merkle.leaf_hash(b"rewritten")
    forged_subtree = lambda a, b: merkle.root_of(forged[a:b])  # noqa: E731
    assert not merkle.verify_consistency(
        m, n, old_root, merkle.root_of(forged), merkle.consistency_path(m, n, forged_subtree)
    )


def test_frontier_emits_every_perfect_subtree_and_round_trips():
    leaves, subtree = _tree(1000)
    seen = {}
    frontier = merkle.Frontier(on_node=lambda level, idx, h: seen.__setitem__((level, idx), h))
    frontier.extend(leaves[:600])
    restored = merkle.Frontier.from_json(600, frontier.to_json())
    restored.extend(leaves[600:])
    assert restored.root() == merkle.root_of(leaves)
    assert seen[(8, 1)] == subtree(256, 512)
    assert seen[(9, 0)] == subtree(0, 512)
    assert [e - s for s, e in merkle.frontier_ranges(600)] == [512, 64, 16, 8]
