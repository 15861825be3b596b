"""Gap detection on the events stream (docs/bus.md, "Sequence numbers and
gaps"): per topic, a batch whose prev_seq is not 0 and differs from the last
seq seen on that topic means that topic lost events; a first seq at or below
the last seen means the bridge restarted. Pure logic, no sockets."""
from collections import OrderedDict

# As many topics as the bridge remembers for prev_seq (BUS_MAX_TOPICS).
MAX_TOPICS = 4096


class Gap:
    """Events that will not arrive. kind is 'lost' (a subscriber queue
    overflowed, or the bridge failed to publish) or 'restart' (seq started
    over: the bridge restarted, and what it published before this subscriber
    reconnected is gone). last_seq is the last seq seen on the topic,
    prev_seq what the bridge says came just before first_seq on it."""

    def __init__(self, kind, topic, last_seq, first_seq, prev_seq):
        self.kind, self.topic = kind, topic
        self.last_seq, self.first_seq, self.prev_seq = last_seq, first_seq, prev_seq

    def __repr__(self):
        return (f'Gap({self.kind!r}, {self.topic!r}, last_seq={self.last_seq}, '
                f'first_seq={self.first_seq}, prev_seq={self.prev_seq})')

    def __str__(self):
        if self.kind == 'restart':
            return (f'the bridge restarted: seq went from {self.last_seq} back to '
                    f'{self.first_seq} on {self.topic or "the stream"}')
        return (f'lost events on {self.topic or "the stream"} between seq {self.last_seq} and '
                f'{self.first_seq} (the last was {self.prev_seq})')


class GapDetector:
    """Feed it every batch in arrival order; it returns the gaps each shows."""

    def __init__(self, max_topics=MAX_TOPICS):
        self.max_topics = max_topics
        self.last = OrderedDict()  # topic -> last seq seen, least recently seen first
        self.max_seq = 0           # the highest seq seen since the last restart
        self.resume_seq = 0        # see resume_from()
        self.everything = False

    def resume_from(self, seq, everything):
        """seq: the last seq handled by an earlier run (a resume file). The
        first batch then shows a restart of the bridge since (first seq at or
        below it) or, for a subscriber to everything (""), the events missed
        in between. Used when the bridge keeps no journal (no state
        directory): then they are reported, not recovered; with a journal
        Bridge.events() replays them instead."""
        self.resume_seq, self.everything = seq, everything

    def batch(self, topic, prev_seq, seqs):
        if not seqs:
            return []
        first, gaps = seqs[0], []
        if self.resume_seq:
            gaps += self._resume_gap(first)
            self.resume_seq = 0
        seen = self.last.get(topic)
        # seq 1 is a process's very first event, and its batch leaves first.
        if (seen is not None and first <= seen) or (first == 1 and self.max_seq > 0):
            # Every topic's seqs started over: forget them all, so the other
            # topics' next batches are not reported again.
            gaps.append(Gap('restart', topic, seen or self.max_seq, first, prev_seq))
            self.last.clear()
            self.max_seq = 0
            seen = None
        if seen is not None and prev_seq and prev_seq != seen:
            gaps.append(Gap('lost', topic, seen, first, prev_seq))
        self._remember(topic, seqs[-1])
        return gaps

    def _resume_gap(self, first):
        if first <= self.resume_seq:
            return [Gap('restart', '', self.resume_seq, first, 0)]
        if self.everything and first > self.resume_seq + 1:
            return [Gap('lost', '', self.resume_seq, first, first - 1)]
        return []

    def _remember(self, topic, seq):
        self.last[topic] = seq
        self.last.move_to_end(topic)
        while len(self.last) > self.max_topics:
            self.last.popitem(last=False)
        self.max_seq = max(self.max_seq, seq)
