"""Unit tests of the xpbridge Python package without a bridge: gap
detection, event message framing as bridge/bus.c writes it, error mapping,
and retries with the same request id (a fake REQ socket)."""
import ctypes
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import xpbridge  # noqa: E402
from xpbridge import _nng, client  # noqa: E402
from xpbridge.gaps import GapDetector  # noqa: E402

pb = xpbridge.bus_pb2


def run(det, batches):
    """[(kind, last, first, prev)] of the gaps the batches show."""
    out = []
    for topic, prev, seqs in batches:
        out += [(g.kind, g.last_seq, g.first_seq, g.prev_seq) for g in det.batch(topic, prev, seqs)]
    return out


class Gaps(unittest.TestCase):
    def test_no_gap_when_prev_seq_matches_or_is_unknown(self):
        self.assertEqual(run(GapDetector(), [('message/a/', 0, [1, 2]), ('state/a/', 0, [3]),
                                             ('message/a/', 2, [4]), ('message/a/', 0, [6])]), [])

    def test_prev_seq_not_the_last_seen_is_a_loss(self):
        det = GapDetector()
        got = run(det, [('message/a/', 0, [1]), ('message/b/', 0, [2]), ('message/a/', 3, [5, 6])])
        self.assertEqual(got, [('lost', 1, 5, 3)])
        self.assertEqual(str(det.batch('message/a/', 9, [10])[0]),
                         'lost events on message/a/ between seq 6 and 10 (the last was 9)')

    def test_seq_going_back_is_a_restart_reported_once(self):
        det = GapDetector()
        got = run(det, [('message/a/', 0, [7]), ('message/b/', 0, [8]), ('message/a/', 0, [2]),
                        ('message/b/', 0, [3])])
        self.assertEqual(got, [('restart', 7, 2, 0)])

    def test_seq_one_after_anything_is_a_restart_even_on_a_new_topic(self):
        self.assertEqual(run(GapDetector(), [('message/a/', 0, [40]), ('iq/c/', 0, [1])]),
                         [('restart', 40, 1, 0)])

    def test_a_forgotten_topic_is_unknown_like_the_bridge(self):
        det = GapDetector(max_topics=2)
        got = run(det, [('m/a/', 0, [1]), ('m/b/', 0, [2]), ('m/c/', 0, [3]), ('m/a/', 99, [100])])
        self.assertEqual(got, [])  # a was forgotten: its prev_seq cannot be checked
        self.assertEqual(run(det, [('m/c/', 50, [101])]), [('lost', 3, 101, 50)])

    def test_resume_from_a_saved_seq(self):
        det = GapDetector()
        det.resume_from(10, everything=True)
        self.assertEqual(run(det, [('m/a/', 0, [14])]), [('lost', 10, 14, 13)])
        det = GapDetector()
        det.resume_from(10, everything=True)
        self.assertEqual(run(det, [('m/a/', 0, [11])]), [])
        det = GapDetector()
        det.resume_from(10, everything=False)  # a prefix cannot tell lost from not mine
        self.assertEqual(run(det, [('m/a/', 0, [14])]), [])
        det = GapDetector()
        det.resume_from(10, everything=False)
        self.assertEqual(run(det, [('m/a/', 0, [3])]), [('restart', 10, 3, 0)])


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7f, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Framing(unittest.TestCase):
    def test_topic_nul_then_prev_seq_then_appended_events(self):
        """The bytes bus.c's batch_get/batch_append write."""
        evs = [pb.Event(seq=s, account='a@x', timestamp_us=1) for s in (300, 301)]
        body = b''.join(b'\x0a' + varint(len(e.SerializeToString())) + e.SerializeToString()
                        for e in evs)
        msg = b'message/a@x/\x00' + b'\x10' + varint(299) + body
        topic, batch = xpbridge.split_event_message(msg)
        self.assertEqual(topic, 'message/a@x/')
        self.assertEqual(batch.prev_seq, 299)
        self.assertEqual([e.seq for e in batch.event], [300, 301])
        with self.assertRaises(ValueError):
            xpbridge.split_event_message(b'message/a@x/')

    def test_subscriptions(self):
        S = xpbridge.subscriptions
        self.assertEqual(S(), [''])
        self.assertEqual(S(['message'], 'a@x'), ['message/a@x/'])
        self.assertEqual(S('state'), ['state/'])
        self.assertEqual(len(S(account='a@x')), len(xpbridge.KINDS))
        with self.assertRaisesRegex(ValueError, 'unknown event kind'):
            S(['messages'])

    def test_default_url_like_the_bridge(self):
        old = os.environ.get('XDG_RUNTIME_DIR')
        try:
            os.environ['XDG_RUNTIME_DIR'] = '/run/user/7'
            self.assertEqual(xpbridge.default_url('events'), 'ipc:///run/user/7/xpbridge/events')
            os.environ['XDG_RUNTIME_DIR'] = 'relative'
            self.assertEqual(xpbridge.default_url('requests'),
                             f'ipc:///tmp/xpbridge-{os.geteuid()}/requests')
        finally:
            if old is None:
                os.environ.pop('XDG_RUNTIME_DIR', None)
            else:
                os.environ['XDG_RUNTIME_DIR'] = old


class FakeReq:
    """Answers from a script: None means "time out"."""

    def __init__(self, answers):
        self.answers, self.sent = list(answers), []

    def set_ms(self, opt, ms):
        pass

    def send(self, data):
        self.sent.append(pb.Request.FromString(data))

    def recv(self):
        a = self.answers.pop(0)
        if a is None:
            raise _nng.NngError(_nng.ETIMEDOUT, 'nng_recv: Timed out')
        return a.SerializeToString()

    def close(self):
        pass


class Requests(unittest.TestCase):
    def bridge(self, answers, retries=2):
        b = xpbridge.Bridge('ipc:///nonexistent/e', 'ipc:///nonexistent/r', timeout=0.01,
                            retries=retries)
        b._req = FakeReq(answers)
        old, client._sleep = client._sleep, lambda s: None
        self.addCleanup(setattr, client, '_sleep', old)
        return b

    def test_error_code_and_text_in_the_exception(self):
        b = self.bridge([pb.Response(code=pb.ERR_UNKNOWN_ACCOUNT, request_id='r1',
                                     error_text='no session for account z@x')])
        with self.assertRaises(xpbridge.BusError) as cm:
            b.send('z@x', to='a@x', body='hi', request_id='r1')
        e = cm.exception
        self.assertEqual((e.code, e.name, e.text, e.request_id, e.op),
                         (3, 'ERR_UNKNOWN_ACCOUNT', 'no session for account z@x', 'r1', 'send'))
        self.assertEqual(str(e), 'send: ERR_UNKNOWN_ACCOUNT (3): no session for account z@x '
                                 '[request r1]')

    def test_unknown_code_from_a_newer_bridge_is_an_error(self):
        """proto2 parses an enum value it does not know as absent (OK)."""
        raw = (pb.Response(api_version=1, request_id='r', error_text='new').SerializeToString()
               + b'\x18\x63')  # code = 99
        with self.assertRaises(xpbridge.BusError) as cm:
            xpbridge.check_response('x', pb.Response.FromString(raw), 'r', raw)
        self.assertEqual((cm.exception.code, cm.exception.name, cm.exception.text),
                         (99, 'error code 99', 'new'))

    def test_timeouts_and_busy_retry_with_the_same_id(self):
        ok = pb.Response(code=pb.OK, request_id='q', sent=pb.SendResult(stanza_id='s1'))
        b = self.bridge([None, pb.Response(code=pb.ERR_BUSY), ok])
        self.assertEqual(b.send('b@x', to='a@x', body='hi', request_id='q').stanza_id, 's1')
        self.assertEqual([r.request_id for r in b._req.sent], ['q', 'q', 'q'])
        self.assertEqual(len({r.SerializeToString() for r in b._req.sent}), 1)

    def test_no_answer_at_all_is_a_timeout_naming_the_id(self):
        b = self.bridge([None, None], retries=1)
        with self.assertRaises(xpbridge.BusTimeout) as cm:
            b.status()
        self.assertTrue(cm.exception.request_id)
        self.assertIsInstance(cm.exception, TimeoutError)

    def test_request_ids_are_unique(self):
        b = self.bridge([])
        self.assertEqual(len({b.new_request_id() for _ in range(100)}), 100)


class Close(unittest.TestCase):
    """Socket.close against NNG 1.5.2's close defect (docs/bus.md, "Closing
    a socket"): a subscriber closed while a PUB floods it. A plain nng_close
    hangs on most such closes; Socket.close returns by its bound."""

    def test_flooded_subscriber_close_returns_by_the_bound(self):
        lib = _nng.lib()
        lib.nng_pub0_open.argtypes = [ctypes.POINTER(_nng._Socket)]
        lib.nng_listen.argtypes = [_nng._Socket, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        d = tempfile.mkdtemp(prefix='xpb-pyclose-')
        self.addCleanup(shutil.rmtree, d, True)
        url = f'ipc://{d}/ev'
        pub = _nng.Socket.__new__(_nng.Socket)
        pub._s, pub.closed = _nng._Socket(), False
        self.assertEqual(lib.nng_pub0_open(ctypes.byref(pub._s)), 0)
        self.assertEqual(lib.nng_listen(pub._s, url.encode(), None, 0), 0)
        stop = threading.Event()
        buf = ctypes.create_string_buffer(200000)

        def flood():
            n = 0
            while not stop.is_set():
                lib.nng_send(pub._s, buf, 64 + (n * 7919) % 199000, 0)
                n += 1
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        self.addCleanup(lambda: (stop.set(), flooder.join(), pub.close(0.25)))
        bound, before, stuck = 0.25, _nng.stuck_closes, 0
        for _ in range(12):
            s = _nng.Socket('sub')
            s.set_size(_nng.OPT_RECVMAXSZ, 1 << 20)
            s.set_bytes(_nng.OPT_SUB_SUBSCRIBE, b'')
            s.set_ms(_nng.OPT_RECVTIMEO, 10000)
            s.dial(url)
            for _ in range(3):
                self.assertTrue(s.recv())  # the flood reaches it
            t0 = time.monotonic()
            with _quiet():
                closed = s.close(bound)
            waited = time.monotonic() - t0
            self.assertLess(waited, bound + 5)
            self.assertTrue(s.closed)
            if not closed:
                stuck += 1
                self.assertGreaterEqual(waited, bound - 0.01)
        self.assertEqual(_nng.stuck_closes - before, stuck)
        print(f'Socket.close: {stuck} of 12 flooded closes passed {bound} s')


class _quiet:
    """The stuck-close warning is expected here: keep it out of the output."""

    def __enter__(self):
        self.level = _nng.log.level
        _nng.log.setLevel('ERROR')

    def __exit__(self, *exc):
        _nng.log.setLevel(self.level)


class ResumeFile(unittest.TestCase):
    def test_written_atomically_and_read_back(self):
        d = tempfile.mkdtemp()
        p = os.path.join(d, 'seq')
        self.assertEqual(client._read_seq(p), 0)
        client._write_seq(p, 42)
        self.assertEqual(client._read_seq(p), 42)
        self.assertEqual(os.listdir(d), ['seq'])
        with open(p, 'w') as f:
            f.write('junk')
        with self.assertRaisesRegex(ValueError, 'does not hold a seq'):
            client._read_seq(p)


if __name__ == '__main__':
    unittest.main()
