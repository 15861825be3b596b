"""xpbridge: a Python backend's client of the xpbridge bus (docs/bus.md,
clients/README.md). Pure Python on Debian's libnng1 (ctypes) and
python3-protobuf."""
from .client import (KINDS, Bridge, BusError, BusTimeout, bus_pb2, check_response,
                     default_url, message, split_event_message, stanza_pb2, subscriptions)
from .gaps import Gap, GapDetector

__all__ = ['Bridge', 'BusError', 'BusTimeout', 'Gap', 'GapDetector', 'KINDS', 'bus_pb2',
           'check_response', 'default_url', 'message', 'split_event_message', 'stanza_pb2',
           'subscriptions']
