"""The control plane's reading of the chain (``chalicelib.chain``) against what
``wakeful_replica`` writes: one format, two codebases (the Lambda carries no lz4 or crcmod).

The manifests, keys, metadata and LTX headers here are made by ``wakeful_replica`` itself;
the search for a holder's last segment runs against a chain laid out in a dict, counting the
HEADs it sends.
"""

from __future__ import annotations

import json

import pytest

from chalicelib import chain
from chalicelib.errors import MalformedManifest
from chalicelib.model import ChainSegment, ChainStop
from wakeful_replica import chain as replica_chain
from wakeful_replica import ltx
from wakeful_replica.manifest import Base, Generation, Manifest, Stop
from wakeful_replica.objects import Objects

KEY = "data/app.sqlite3"
GEN = replica_chain.generation_id(7, "0badc0de")
A = "arn:aws:ecs:us-east-1:123456789012:task/wakeful/a"
B = "arn:aws:ecs:us-east-1:123456789012:task/wakeful/b"


def replica_manifest(**changes: object) -> Manifest:
    fields: dict[str, object] = {
        "generation": GEN, "position": 41, "token": 7, "holder": A, "epoch": 2,
        "snapshot": Base(GEN, 30, 1_800_000_000_123, "ab" * 32, 8192, version_id="v3"),
        "lineage": (Generation(GEN, 2, 1_799_999_000_000),),
        "stopped": Stop(A, 7, 41, 1_800_000_100.25, "cd" * 32),
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


def test_the_manifest_wakeful_replica_writes_is_read_field_for_field() -> None:
    written = replica_manifest()
    body = written.body(now=1_800_000_101.5)
    read = chain.parse_manifest(body, "s3://b/" + chain.manifest_key(KEY))
    again = Manifest.parse(body)
    assert (read.generation, read.position, read.token, read.holder, read.epoch) == (
        again.generation, again.position, again.token, again.holder, again.epoch
    )
    assert read.updated_at == 1_800_000_101.5
    assert read.stopped == ChainStop(A, 7, 41, 1_800_000_100.25, GEN, "cd" * 32)
    assert again.stopped is not None and read.stopped is not None
    assert (read.stopped.holder, read.stopped.token, read.stopped.position, read.stopped.at,
            read.stopped.snapshot_sha256) == (
        again.stopped.holder, again.stopped.token, again.stopped.position, again.stopped.at,
        again.stopped.snapshot_sha256)
    assert read.snapshot is not None
    assert (read.snapshot.generation, read.snapshot.position, read.snapshot.sha256,
            read.snapshot.size) == (GEN, 30, "ab" * 32, 8192)
    assert read.snapshot.at == pytest.approx(1_800_000_000.123)
    # A running holder's manifest has no stop record.
    assert chain.parse_manifest(replica_manifest(stopped=None).body(), "m").stopped is None


def test_a_manifest_without_a_snapshot_or_lineage_is_read_too() -> None:
    bare = Manifest(generation=GEN, position=1, token=1, holder=A)
    read = chain.parse_manifest(bare.body(), "m")
    assert (read.position, read.snapshot, read.stopped, read.epoch) == (1, None, None, 1)


def test_keys_are_where_wakeful_replica_puts_them() -> None:
    segments = replica_chain.Segments(Objects("bucket", client=None), KEY + ".wakeful/")
    for position in (1, 2, 255, 2**40 + 3):
        assert chain.segment_key(KEY, GEN, position) == segments.key(GEN, position)
    from wakeful_replica.store import ChainStore

    store = ChainStore("bucket", KEY, client=object())
    assert chain.manifest_key(KEY) == store.manifests.key
    assert chain.prefix(KEY) == store.prefix


def test_segment_metadata_and_ltx_header_read_as_written() -> None:
    body = replica_chain.empty_segment(4096, 3, 12, 1_800_000_200_456)
    metadata = {
        replica_chain.META_TOKEN: "9", replica_chain.META_HOLDER: B,
        replica_chain.META_KIND: replica_chain.END, replica_chain.META_NEXT: "next-gen",
    }
    read = chain.segment_of(GEN, 12, metadata, landed_at=1_800_000_201.0)
    assert read == ChainSegment(GEN, 12, "end", B, 9, 1_800_000_201.0, "next-gen")
    assert chain.ltx_timestamp(body[: chain.LTX_HEADER_SIZE], 12) == pytest.approx(
        1_800_000_200.456)
    # A header of another position, or not LTX at all, says nothing.
    assert chain.ltx_timestamp(body[: chain.LTX_HEADER_SIZE], 13) is None
    assert chain.ltx_timestamp(b"SQLite format 3\x00" + bytes(84), 12) is None
    assert chain.ltx_timestamp(body[:40], 12) is None
    # A segment with pages: the header is the same 100 bytes.
    full = ltx.encode(ltx.Header(4096, 1, 1, 5, 1_800_000_300_000), [(1, bytes(4096))])
    assert chain.ltx_timestamp(full[:100], 5) == 1_800_000_300.0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "manifest is not a JSON object"),
        (json.dumps({"generation": GEN, "token": 1, "holder": A}).encode(),
         "manifest.position is missing"),
        (json.dumps({"generation": GEN, "position": "7", "token": 1, "holder": A}).encode(),
         "manifest.position is not an integer"),
        (json.dumps({"generation": GEN, "position": 7, "token": 1, "holder": A,
                     "stopped": {"holder": A, "token": 1, "at": 5}}).encode(),
         "stopped.position is missing"),
        (json.dumps({"generation": GEN, "position": 7, "token": 1, "holder": A,
                     "stopped": "yes"}).encode(), "manifest.stopped is not a JSON object"),
    ],
)
def test_a_malformed_manifest_is_a_typed_error_naming_the_object(body, problem) -> None:
    where = "s3://bucket/" + chain.manifest_key(KEY)
    with pytest.raises(MalformedManifest) as raised:
        chain.parse_manifest(body, where)
    assert raised.value.where == where
    assert problem in str(raised.value)


# -- the search for a holder's last segment ---------------------------------------------------


class Chain:
    """Positions laid out in memory; counts the HEADs the search sends."""

    def __init__(self) -> None:
        self.segments: dict[tuple[str, int], ChainSegment] = {}
        self.heads = 0

    def write(self, holder: str, token: int, first: int, last: int, generation: str = GEN,
              kind: str = "segment", next_generation: str | None = None) -> None:
        for position in range(first, last + 1):
            self.segments[(generation, position)] = ChainSegment(
                generation, position, kind, holder, token, float(position), next_generation
            )

    def head(self, generation: str, position: int) -> ChainSegment | None:
        self.heads += 1
        return self.segments.get((generation, position))


def test_the_last_segment_is_found_64_positions_past_the_manifest_in_few_heads() -> None:
    layout = Chain()
    layout.write(B, 3, 1, 10)
    layout.write(A, 4, 11, 75)  # A claimed 11, the manifest was moved at 11, 64 more
    found = chain.last_segment_of(layout.head, GEN, 11, A, 4)
    assert found is not None and found.position == 75
    assert layout.heads <= 16


@pytest.mark.parametrize("end", [11, 12, 13, 40, 1000])
def test_the_last_segment_is_exact_wherever_the_chain_ends(end) -> None:
    layout = Chain()
    layout.write(A, 4, 11, end)
    found = chain.last_segment_of(layout.head, GEN, 11, A, None)
    assert found is not None and found.position == end
    assert layout.heads <= chain.MAX_PROBES


def test_a_newer_holders_positions_are_stepped_back_over_by_token() -> None:
    layout = Chain()
    layout.write(A, 4, 11, 30)
    layout.write(B, 5, 31, 50)  # B took over after A died and the manifest stayed at 11
    found = chain.last_segment_of(layout.head, GEN, 11, A, 4)
    assert found is not None and found.position == 30 and found.holder == A
    # Without A's token the boundary cannot be told: nothing rather than B's segment.
    assert chain.last_segment_of(layout.head, GEN, 11, A, None) is None


def test_a_holder_with_no_segment_past_the_manifest_has_none() -> None:
    layout = Chain()
    layout.write(A, 4, 1, 20)
    # B held the lease but died before its claim: the chain ends in A's segments.
    assert chain.last_segment_of(layout.head, GEN, 20, B, 5) is None
    # The manifest moved past the holder (a newer token wrote it): not probed further.
    layout.write(B, 5, 21, 30)
    layout.heads = 0
    assert chain.last_segment_of(layout.head, GEN, 21, A, 4) is None
    assert layout.heads == 1
    # The manifest names a position that is gone.
    assert chain.last_segment_of(layout.head, GEN, 99, A, 4) is None


def test_end_records_are_followed_into_the_next_generation() -> None:
    layout = Chain()
    layout.write(B, 3, 1, 9)
    layout.write(A, 4, 10, 10, kind="end", next_generation="g2")
    layout.write(A, 4, 1, 6, generation="g2")
    found = chain.last_segment_of(layout.head, GEN, 5, A, 4)
    assert found is not None and (found.generation, found.position) == ("g2", 6)


def test_the_budget_bounds_the_heads_and_never_understates_the_window() -> None:
    layout = Chain()
    layout.write(A, 4, 1, 10**6)
    found = chain.last_segment_of(layout.head, GEN, 1, A, 4, budget=8)
    assert layout.heads == 8
    # The newest segment seen: the true last one is later, so the window is an upper bound.
    assert found is not None and found.holder == A and found.position < 10**6
