"""RFC 6962 / 9162 Merkle proofs: every vector of tests/vectors/merkle, and properties over any tree.

The vectors are the Go module github.com/transparency-dev/merkle's testdata (copied from
../shared/vectors/merkle so that CI needs nothing outside the repository): in each directory
``happy-path.json`` must verify and every other file is a named mutation that must be refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from writ.attestations.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryTree,
    ProofError,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    needed_nodes,
    node_hash,
    perfect_cover,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"


def cases(kind: str) -> list[Any]:
    out = []
    for path in sorted((VECTORS / kind).rglob("*.json")):
        name = str(path.relative_to(VECTORS / kind).with_suffix(""))
        out.append(pytest.param(json.loads(path.read_text()), id=name))
    return out


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def test_the_vectors_are_all_there() -> None:
    """A lost directory would make the parametrized tests below pass vacuously."""
    assert (len(cases("inclusion")), len(cases("consistency"))) == (98, 98)
    happy = [p for p in (VECTORS).rglob("happy-path.json")]
    assert len(happy) == 10


@pytest.mark.parametrize("case", cases("inclusion"))
def test_inclusion_vector(case: dict[str, Any]) -> None:
    def check() -> None:
        verify_inclusion(case["leafIdx"], case["treeSize"], b64(case["leafHash"]),
                         [b64(p) for p in case["proof"] or []], b64(case["root"]))

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("case", cases("consistency"))
def test_consistency_vector(case: dict[str, Any]) -> None:
    def check() -> None:
        verify_consistency(case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]),
                           [b64(p) for p in case["proof"] or []])

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def test_happy_path_proofs_are_the_ones_we_generate() -> None:
    """The 8-leaf tree of the vectors (leaves are the RFC 6962 test inputs): our proofs equal theirs."""
    inputs = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
              b"\x50\x51\x52\x53\x54\x55\x56\x57", b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]
    tree = MemoryTree(leaf_hash(x) for x in inputs)
    for path in sorted((VECTORS / "inclusion").glob("[0-9]/happy-path.json")):
        case = json.loads(path.read_text())
        if case["treeSize"] <= 8 and b64(case["root"]) == tree.root(case["treeSize"]):
            assert tree.inclusion_proof(case["leafIdx"], case["treeSize"]) == [b64(p) for p in case["proof"] or []]
    case = json.loads((VECTORS / "consistency" / "1" / "happy-path.json").read_text())
    assert tree.root(8) == b64(case["root2"])
    assert tree.consistency_proof(case["size1"], 8) == [b64(p) for p in case["proof"]]


def test_known_roots() -> None:
    """RFC 6962's empty root and a two-leaf root, written out by hand."""
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == MemoryTree().root()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert a == hashlib.sha256(b"\x00a").digest()
    assert MemoryTree([a, b]).root() == hashlib.sha256(b"\x01" + a + b).digest() == node_hash(a, b)
    three = MemoryTree([a, b, leaf_hash(b"c")])
    assert three.root() == node_hash(node_hash(a, b), leaf_hash(b"c"))


def test_perfect_cover_refuses_a_range_that_is_no_subtree() -> None:
    assert perfect_cover(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert perfect_cover(8, 11) == [(1, 4), (0, 10)]
    with pytest.raises(ValueError, match="not a subtree"):
        perfect_cover(3, 7)


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0)])
def test_inclusion_of_a_leaf_outside_the_tree_is_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        inclusion_ranges(index, size)
    with pytest.raises(ProofError, match="outside a tree"):
        verify_inclusion(index, size, leaf_hash(b"x"), [], EMPTY_ROOT)


# -- properties over any tree -----------------------------------------------------------------------

LEAVES = st.lists(st.binary(max_size=8), min_size=1, max_size=70).map(lambda xs: [leaf_hash(x) for x in xs])


@hypothesis_settings(max_examples=300, deadline=None)
@given(leaves=LEAVES, data=st.data())
def test_any_tree_any_index_prove_then_verify(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MemoryTree(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index, size)
    verify_inclusion(index, size, leaves[index], proof, tree.root(size))
    assert len(proof) <= (size - 1).bit_length()
    # what a store fetches to answer it: a few perfect nodes per proof hash, never the whole tree
    assert len(needed_nodes(inclusion_ranges(index, size))) <= max(1, (size - 1).bit_length()) ** 2


@hypothesis_settings(max_examples=300, deadline=None)
@given(leaves=LEAVES, data=st.data())
def test_any_flipped_bit_of_an_inclusion_proof_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MemoryTree(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof, root, leaf = tree.inclusion_proof(index, size), tree.root(size), leaves[index]
    parts = [leaf, root, *proof]
    which = data.draw(st.integers(0, len(parts) - 1), label="part")
    bit = data.draw(st.integers(0, 255), label="bit")
    flipped = bytearray(parts[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    parts[which] = bytes(flipped)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, parts[0], parts[2:], parts[1])


@hypothesis_settings(max_examples=300, deadline=None)
@given(leaves=LEAVES, data=st.data())
def test_consistency_for_any_m_le_n(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MemoryTree(leaves)
    new = data.draw(st.integers(1, len(leaves)), label="new")
    old = data.draw(st.integers(1, new), label="old")
    proof = tree.consistency_proof(old, new)
    verify_consistency(old, new, tree.root(old), tree.root(new), proof)
    assert len(consistency_ranges(old, new)) == len(proof)
    if old == new:
        assert proof == []
    else:  # any flipped bit, in the proof or either root, fails
        parts = [tree.root(old), tree.root(new), *proof]
        which = data.draw(st.integers(0, len(parts) - 1), label="part")
        bit = data.draw(st.integers(0, 255), label="bit")
        flipped = bytearray(parts[which])
        flipped[bit // 8] ^= 1 << (bit % 8)
        parts[which] = bytes(flipped)
        with pytest.raises(ProofError):
            verify_consistency(old, new, parts[0], parts[1], parts[2:])


@hypothesis_settings(max_examples=200, deadline=None)
@given(leaves=LEAVES, data=st.data())
def test_a_different_prefix_is_not_consistent(leaves: list[bytes], data: st.DataObject) -> None:
    """A tree whose first ``old`` leaves were changed cannot prove consistency with the honest one."""
    new = data.draw(st.integers(2, max(2, len(leaves))), label="new")
    leaves = (leaves * 2)[:new]
    old = data.draw(st.integers(1, new - 1), label="old")
    changed = data.draw(st.integers(0, old - 1), label="changed")
    forged = MemoryTree([leaf_hash(b"forged") if i == changed else h for i, h in enumerate(leaves)])
    honest = MemoryTree(leaves)
    with pytest.raises(ProofError):
        verify_consistency(old, new, honest.root(old), forged.root(new), forged.consistency_proof(old, new))


@hypothesis_settings(max_examples=200, deadline=None)
@given(leaves=LEAVES)
def test_compact_range_root_and_completed_nodes_match_the_tree(leaves: list[bytes]) -> None:
    tree, compact = MemoryTree(), CompactRange()
    for leaf in leaves:
        tree.append(leaf)
        for level, index, h in compact.push(leaf):
            assert tree.node(level, index) == h
        assert compact.root() == tree.root()
    cover = perfect_cover(0, tree.size)
    resumed = CompactRange(tree.size, [tree.node(*n) for n in cover])
    assert resumed.root() == tree.root()
