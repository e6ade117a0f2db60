"""Property-based round trips of every on-disk format, and their refusal of damage."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.errors import IntegrityError
from cleancut.repository.chunker import chunk_bytes
from cleancut.repository.compress import compress, decompress
from cleancut.repository.config import ChunkerParams, RepoConfig
from cleancut.repository.crypto import MasterKeys
from cleancut.repository.index import IndexSegment, PackRecord
from cleancut.repository.objects import open_object, seal_object
from cleancut.repository.pack import BlobEntry, PackBuilder, blob_aad, pack_sealer, parse_header
from cleancut.repository.tree import DIR, FILE, SYMLINK, Node, decode_tree, encode_tree

KEYS = MasterKeys.generate()
SMALL = ChunkerParams(min_size=64, avg_size=256, max_size=1024)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

blob_ids = st.binary(min_size=32, max_size=32)


@FAST
@given(st.binary(max_size=20_000), st.integers(min_value=0, max_value=5))
def test_compress_round_trip(data: bytes, level: int):
    payload = compress(data, level)
    assert decompress(payload, len(data)) == data
    assert len(payload) <= len(data) + 1  # never grows by more than the flag byte


@FAST
@given(st.lists(st.tuples(st.sampled_from([0, 1]), st.binary(max_size=3000)), max_size=12))
def test_pack_round_trip(blobs: list[tuple[int, bytes]]):
    builder = PackBuilder(KEYS)
    for blob_type, data in blobs:
        bid = KEYS.blob_id(data)
        payload = compress(data)
        builder.add_sealed(blob_type, bid, builder.seal_blob(blob_type, bid, payload), len(data))
    raw = builder.finish()
    salt, entries = parse_header(KEYS, raw, "pack")
    assert salt == builder.salt
    assert len(entries) == len(blobs)
    sealer = pack_sealer(KEYS, salt)
    for entry, (blob_type, data) in zip(entries, blobs, strict=True):
        box = raw[entry.offset : entry.offset + entry.length]
        assert decompress(sealer.open(box, blob_aad(blob_type, entry.id), "blob")) == data


@FAST
@given(st.binary(min_size=1, max_size=2000), st.data())
def test_pack_refuses_any_flipped_bit(data: bytes, pick: st.DataObject):
    builder = PackBuilder(KEYS)
    bid = KEYS.blob_id(data)
    builder.add_sealed(0, bid, builder.seal_blob(0, bid, compress(data)), len(data))
    raw = bytearray(builder.finish())
    (entry,) = parse_header(KEYS, bytes(raw), "pack")[1]
    pos = pick.draw(st.integers(min_value=entry.offset, max_value=entry.offset + entry.length - 1))
    raw[pos] ^= 1 << pick.draw(st.integers(min_value=0, max_value=7))
    box = bytes(raw[entry.offset : entry.offset + entry.length])
    with pytest.raises(IntegrityError):
        pack_sealer(KEYS, builder.salt).open(box, blob_aad(0, bid), "blob")


def test_blob_cannot_be_moved_to_another_id():
    builder = PackBuilder(KEYS)
    a, b = KEYS.blob_id(b"a"), KEYS.blob_id(b"b")
    box = builder.seal_blob(0, a, compress(b"a"))
    with pytest.raises(IntegrityError):
        builder.sealer.open(box, blob_aad(0, b), "blob")
    with pytest.raises(IntegrityError):
        builder.sealer.open(box, blob_aad(1, a), "blob")  # nor to another type


entries = st.builds(
    BlobEntry,
    st.sampled_from([0, 1]),
    blob_ids,
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
)
pack_records = st.builds(
    PackRecord,
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    st.binary(min_size=16, max_size=16),
    st.integers(min_value=0, max_value=2**40),
    st.lists(entries, max_size=5),
)


@FAST
@given(st.lists(pack_records, max_size=5), st.lists(blob_ids.map(bytes.hex), max_size=3))
def test_index_segment_round_trip(packs: list[PackRecord], supersedes: list[str]):
    segment = IndexSegment(packs, supersedes)
    decoded = IndexSegment.decode(segment.encode(), "segment")
    assert decoded == segment


@FAST
@given(st.lists(pack_records, min_size=1, max_size=3), st.integers(min_value=1, max_value=40))
def test_index_segment_refuses_truncation(packs: list[PackRecord], cut: int):
    raw = IndexSegment(packs).encode()
    with pytest.raises(IntegrityError):
        IndexSegment.decode(raw[: max(0, len(raw) - cut)], "segment")


@FAST
@given(st.binary(max_size=5000), st.sampled_from(["index", "snapshot", "record"]))
def test_encrypted_object_round_trip_and_kind_binding(plain: bytes, kind: str):
    oid, stored = seal_object(KEYS, kind, plain)
    assert open_object(KEYS, kind, oid, stored) == plain
    other = "snapshot" if kind != "snapshot" else "index"
    with pytest.raises(IntegrityError):
        open_object(KEYS, other, oid, stored)  # an index segment is no snapshot
    with pytest.raises(IntegrityError):
        open_object(MasterKeys.generate(), kind, oid, stored)  # another repository's key


names = st.text(min_size=1, max_size=30).filter(lambda n: n not in (".", "..") and "/" not in n)
nodes = st.one_of(
    st.builds(
        Node,
        names,
        st.just(FILE),
        st.integers(0, 0o7777),
        st.integers(0, 2**63),
        size=st.integers(0, 2**40),
        content=st.lists(blob_ids.map(bytes.hex), max_size=4),
    ),
    st.builds(
        Node,
        names,
        st.just(DIR),
        st.integers(0, 0o7777),
        st.integers(0, 2**63),
        subtree=blob_ids.map(bytes.hex),
    ),
    st.builds(
        Node,
        names,
        st.just(SYMLINK),
        st.integers(0, 0o7777),
        st.integers(0, 2**63),
        target=st.text(max_size=50),
    ),
)


@FAST
@given(st.lists(nodes, max_size=10, unique_by=lambda n: n.name))
def test_tree_round_trip_is_canonical(items: list[Node]):
    raw = encode_tree(items)
    back = decode_tree(raw, "tree")
    assert sorted(items, key=lambda n: n.name) == back
    assert encode_tree(list(reversed(items))) == raw  # same directory, same blob id


def test_non_utf8_file_names_survive():
    name = os.fsdecode(b"caf\xe9-\xff.json")
    node = Node(name, FILE, 0o644, 1)
    (back,) = decode_tree(encode_tree([node]), "tree")
    assert os.fsencode(back.name) == b"caf\xe9-\xff.json"


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=12_000), st.binary(min_size=1, max_size=300))
def test_chunks_reassemble_and_resynchronise(data: bytes, prefix: bytes):
    chunks = chunk_bytes(data, SMALL)
    assert b"".join(chunks) == data
    assert all(len(c) <= SMALL.max_size for c in chunks)
    # Content-defined: after a prefix insert, the tail chunks are found again.
    shifted = chunk_bytes(prefix + data, SMALL)
    if len(chunks) > 4:
        assert set(chunks[-2:]) <= set(shifted)


def test_chunking_a_stream_matches_chunking_it_whole():
    # Windows carry their last chunk forward: boundaries never depend on the window size.
    import cleancut.repository.chunker as chunker

    data = os.urandom(3 << 20)
    params = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)
    whole = chunk_bytes(data, params)
    old = chunker.WINDOW
    try:
        chunker.WINDOW = 200_000  # many windows
        windowed = chunk_bytes(data, params)
    finally:
        chunker.WINDOW = old
    assert windowed == whole


def test_config_round_trip():
    config = RepoConfig.new(ChunkerParams())
    assert RepoConfig.from_bytes(config.to_bytes()) == config
