"""The p2p channels: every frame kind a node sends travels on exactly one of them.

Per peer, each channel has its own bounded send queue (:mod:`mdtp.node.p2p.sendqueue`), so a
backlog of one kind -- a dataset download, a state transfer, a gossip burst -- fills only its
own queue, and the link's writer serves the channels by priority, so a vote is written ahead
of the bulk frames queued before it (CometBFT's ``GetChannels`` with ``Priority`` and
``SendQueueCapacity``).

``priority`` orders the channels inside a scheduling round and is their weight: under
contention a channel gets a share of the link's bytes proportional to it, so the lowest one
still moves. The queue bounds here are the defaults of the ``[p2p] <channel>_queue_max_*``
config keys.

Frames whose relative order matters share a channel: ``data.end`` and ``data.refuse`` follow
the chunks of their fetch, so they must not overtake them. The consumer's small requests and
acknowledgements have a channel of their own, so the window of a download it fetches does
not wait behind chunks it serves.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Channel:
    name: str
    kinds: frozenset[str]
    priority: int
    queue_max_frames: int
    queue_max_bytes: int

    def __post_init__(self) -> None:
        assert self.priority >= 1, f"channel {self.name}: priority is a weight, at least 1"
        assert self.queue_max_frames >= 1 and self.queue_max_bytes >= 1, self.name


CHANNELS: tuple[Channel, ...] = (
    Channel("consensus", frozenset({"consensus"}), 16, 8192, 64 * MiB),
    Channel("status", frozenset({"status", "ping"}), 8, 64, 1 * MiB),
    Channel(
        "data_requests",
        frozenset({"data.req", "data.ack", "data.cancel", "compute.req"}),
        8,
        1024,
        4 * MiB,
    ),
    Channel("txs", frozenset({"txs"}), 4, 1024, 32 * MiB),
    Channel("blocks", frozenset({"blocks"}), 2, 64, 64 * MiB),
    Channel(
        "data_chunks",
        frozenset({"data.chunk", "data.end", "data.refuse", "compute.result", "compute.refuse"}),
        1,
        1024,
        64 * MiB,
    ),
)
"""Every channel, highest priority first."""


def kinds_of(channels: tuple[Channel, ...]) -> dict[str, Channel]:
    """Frame kind to its channel; a kind declared on two channels is a programming error."""
    out: dict[str, Channel] = {}
    for channel in channels:
        for kind in channel.kinds:
            assert kind not in out, f"frame kind {kind!r} is on two channels"
            out[kind] = channel
    return out
