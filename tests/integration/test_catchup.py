"""Issue 11 item 4, catch-up from the server's archive: the real xpbridge with
--state-dir against Prosody (and ejabberd) with MAM for accounts and rooms.
While the bridge is down (kill -9) people write to it and to a room it is in.
Restarted while the server still holds the broken stream, the bridge resumes
it (XEP-0198) and the server sends what was never acknowledged; restarted
after the server gave the stream up (a short resumption timeout), it binds
afresh and asks both archives for what came after its markers (XEP-0313 +
RSM). Either way a subscriber with `xpbctl tail --resume-file` gets every
message exactly once (counted by stanza-id, XEP-0359). A slow subscriber misses
nothing of 10,000 events. A Prosody restart (no resumption possible) loses
nothing in either direction. Replay from before the oldest seq that
retention kept gives ERR_REPLAY_GONE naming it (test_store checks the store's
side; here the bridge's answer and xpbctl's message)."""
import json
import os
import signal
import sqlite3
import subprocess
import time
import unittest
import urllib.request

from xpbtest import env, procs
from xpbtest.bridge import Bridge, RichPerson, xpbctl_path, xpbridge_path
from xpbtest.certs import DOMAIN
from xpbtest.servers import Ejabberd, Prosody

BOT = f'bot@{DOMAIN}'
ALICE = f'alice@{DOMAIN}'
CAROL = f'carol@{DOMAIN}'
ROOM = f'lounge@conference.{DOMAIN}'
SID_NS = 'urn:xmpp:sid:0'


def setUpModule():
    for name, path in (('XPBRIDGE', xpbridge_path()), ('XPBCTL', xpbctl_path())):
        if not path or not os.access(path, os.X_OK):
            if os.environ.get(name):
                raise FileNotFoundError(f'{name}={path} is not executable')
            raise unittest.SkipTest(f'{name.lower()} not built (set {name})')


def body(ev):
    b = (ev.get('stanza') or {}).get('body') or []
    return b[0].get('text', '') if b else ''


def stanza_ids(ev):
    """(by, id) of every XEP-0359 stanza-id the event's stanza carries."""
    return {(s.get('by', ''), s.get('id', '')) for s in (ev.get('stanza') or {}).get('stanza_id', [])}


def markers(b):
    """{archive: [stanza-id]} of the markers in b's state directory (MARKER is "STAMP ID")."""
    db = sqlite3.connect(f'file:{os.path.join(b.dir, "state", "xpbridge.db")}?mode=ro', uri=True)
    try:
        rows = db.execute('SELECT archive, stanza_id FROM marker WHERE account = ?', (BOT,))
        return {a: [m.split(' ', 1)[1]] for a, m in rows}
    finally:
        db.close()


def metrics(port):
    text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=10).read().decode()
    return {k: int(v) for k, v in (l.split(' ', 1) for l in text.splitlines()
                                   if l.startswith('xpb_catchup_'))}


class Resumer:
    """`xpbctl tail --json --resume-file F --kind message`, streaming."""

    def __init__(self, bridge, resume, extra=()):
        self.tail = bridge.tail('--requests', bridge.requests, '--resume-file', resume,
                                '--kind', 'message', *extra)

    def wait_bodies(self, prefix, n, timeout):
        return self.tail.wait(lambda e: body(e).startswith(prefix), n=n, timeout=timeout)

    def stop(self):
        procs.kill_group(self.tail.proc)


class Catchup(unittest.TestCase):
    server = Prosody
    resume_timeout = 120  # seconds (XEP-0198): every restart here comes well within

    @classmethod
    def setUpClass(cls):
        cls.stack = []
        cls.addClassCleanup(cls._cleanup)
        cls.srv = cls.server(env.scratch(cls.server.kind), env.pki(), mam=True,
                             resume_timeout=cls.resume_timeout)
        cls.srv.start()
        cls.stack.append(lambda: cls.srv.stop())
        for user in ('bot', 'alice', 'carol', 'bot2', 'bot3', 'bot4'):
            cls.srv.register(user, f'{user}-pw')
        cls.alice = cls.person(ALICE, 'alice-pw')
        cls.carol = cls.person(CAROL, 'carol-pw')
        cls.carol.join_room(ROOM, 'carol', persistent=True)

    @classmethod
    def person(cls, jid, pw):
        p = RichPerson(jid, pw, env.pki().ca, cls.srv.ports['c2s'])
        cls.stack.append(p.stop)
        p.start()
        return p

    @classmethod
    def _cleanup(cls):
        while cls.stack:
            try:
                cls.stack.pop()()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {e}')

    def new_bridge(self, workdir, jid=BOT, pw='bot-pw', rooms=(), metrics_port=None, conf=None):
        extra = ('--state-dir', os.path.join(workdir, 'state'))
        if conf:
            path = os.path.join(workdir, 'xpbridge.conf')
            with open(path, 'w') as f:
                f.write(conf)
            extra += ('--config', path)
        if metrics_port:
            extra += ('--metrics', f'127.0.0.1:{metrics_port}')
        b = Bridge(workdir, jid, pw, '127.0.0.1', self.srv.ports['c2s'], env.pki().ca,
                   rooms=rooms, extra=extra)
        self.addCleanup(b.stop)
        return b

    def kill9(self, b):
        os.killpg(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
        b.proc = None

    def assert_once(self, events, prefix, n):
        """Exactly the n bodies prefix-0 .. prefix-(n-1), each once, each with one stanza-id."""
        mine = [e for e in events if body(e).startswith(prefix)]
        got = sorted(body(e) for e in mine)
        want = sorted(f'{prefix}{i}' for i in range(n))
        missing = sorted(set(want) - set(got))
        self.assertEqual(missing, [], f'{len(missing)} missing, e.g. {missing[:5]}')
        self.assertEqual(len(got), n, 'some message came twice')
        ids = [i for e in mine for i in stanza_ids(e)]
        self.assertEqual(len(ids), len(set(ids)), 'a stanza-id came twice')
        self.assertEqual(len({e['seq'] for e in mine}), n)
        return mine

    def down_and_back(self, expire):
        """The bridge (in ROOM, markers set) is killed with SIGKILL; 200 direct
        and 200 room messages come while it is down; it starts again on the
        same state directory, at once or (expire) only after the server gave
        up the hibernated stream. Returns (bridge, events, seconds, metrics port)."""
        work = env.scratch('bridge')
        port = procs.free_ports(1)[0]
        b = self.new_bridge(work, rooms=(f'{ROOM}/bot',), metrics_port=port)
        b.start()
        # First run: no history taken, the markers start at the newest ids.
        b.wait_log(f'catch-up {BOT} of {BOT}: first run', 20)
        b.wait_log(f'catch-up {ROOM} of {BOT}: first run', 20)
        resume = os.path.join(work, 'tail.seq')
        r = Resumer(b, resume)
        self.alice.send(BOT, 'warm-0')
        r.wait_bodies('warm-', 1, 20)
        time.sleep(1.0)  # the resume file holds warm-0's seq; h and stanza-ids are kept
        r.stop()

        self.kill9(b)
        killed = time.monotonic()
        # The server holds the broken stream for resumption (XEP-0198 §5):
        # these wait in its queue for the bridge.
        for i in range(200):
            self.alice.send(BOT, f'direct-{i}')
        for i in range(200):
            self.carol.send(ROOM, f'room-{i}', mtype='groupchat')
        self.carol.wait_stanza(lambda k, s: k == 'message' and s['body'] == 'room-199', 30)
        if expire:
            # All 400 were queued on the hibernated stream; now let it expire:
            # the server drops, stores or bounces what the stream never acked.
            left = self.srv.resume_timeout + 4 - (time.monotonic() - killed)
            self.assertGreater(left, 2, 'the messages took longer than the resumption timeout')
            time.sleep(left)

        b2 = self.new_bridge(work, rooms=(f'{ROOM}/bot',), metrics_port=port)
        t0 = time.monotonic()
        b2.start()
        r2 = Resumer(b2, resume)
        self.addCleanup(r2.stop)
        r2.wait_bodies('direct-', 200, 60)
        r2.wait_bodies('room-', 200, 60)
        took = time.monotonic() - t0
        time.sleep(1.5)  # anything coming twice would come now
        events = r2.tail.find(lambda e: True)
        self.assertEqual([e for e in events if body(e).startswith('warm-')], [],
                         'the resume file was not honoured')
        return b2, events, took, port

    def check_room_ids(self, room):
        for e in room:
            self.assertIn(ROOM, {b for b, _ in stanza_ids(e)}, e)

    def test_restart_within_resumption_resumes_and_loses_nothing(self):
        """Restarted while the server still holds the stream: the bridge
        resumes it (no bind, no rejoin, no catch-up) and the server sends
        what the old process never acknowledged, each message once."""
        b2, events, took, port = self.down_and_back(expire=False)
        log = '\n'.join(b2.log_lines(b2._log_mark))
        self.assertIn(f'session {BOT} resumed as', log)
        self.assertNotIn(f'session {BOT} online as', log)
        self.assertNotIn(f'joining {ROOM}', log)
        direct = self.assert_once(events, 'direct-', 200)
        room = self.assert_once(events, 'room-', 200)
        self.check_room_ids(room)
        self.assertEqual([e for e in direct + room if e.get('from_archive')], [],
                         'a resumed stream asks no archive')
        self.assertNotIn(f'catch-up {BOT} of {BOT}: asking', log)  # no run (metrics below too)
        self.assertNotIn(f'catch-up {ROOM} of {BOT}: asking', log)
        m = metrics(port)
        self.assertEqual(m['xpb_catchup_runs_total'], 0)
        self.assertEqual(m['xpb_catchup_messages_total'], 0)
        # Caught up before the kill, in the stream now resumed: live stanza-ids
        # move the markers again (they stayed at warm-0 until the next fresh bind).
        want = {BOT: [i for b, i in stanza_ids(direct[-1]) if b == BOT],
                ROOM: [i for b, i in stanza_ids(room[-1]) if b == ROOM]}
        b2.wait_log(f'catch-up {BOT} of {BOT}: caught up in the resumed stream', 10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and markers(b2) != want:
            time.sleep(0.2)
        self.assertEqual(markers(b2), want, 'the markers did not move after the resumption')
        print(f'\nresumed: 400 messages through the resumed stream within {took:.1f} s '
              'of the restart; markers at the last of each')

    # Run by CatchupExpired and CatchupExpiredEjabberd (a 10 s resumption
    # window), not here: with this class's 120 s it would wait two minutes.
    def restart_after_resumption_expired_catches_up_once(self):
        """Restarted after the server gave the stream up: a fresh bind, and
        what the old stream never acknowledged comes from the archives (or,
        ejabberd, partly from the offline store), each message once."""
        b2, events, took, port = self.down_and_back(expire=True)
        log = '\n'.join(b2.log_lines(b2._log_mark))
        self.assertIn(f'session {BOT} online as', log)
        self.assertNotIn(f'session {BOT} resumed as', log)
        direct = self.assert_once(events, 'direct-', 200)
        room = self.assert_once(events, 'room-', 200)
        self.check_room_ids(room)
        archived = [e for e in direct + room if e.get('from_archive')]
        self.assertTrue(archived, 'nothing came from the archives')
        for e in archived:
            self.assertIn(e['archive'], (BOT, ROOM))
            self.assertIn('delay', e['stanza'])
        self.assertIn(f'catch-up {BOT} of {BOT} done', log)
        self.assertIn(f'catch-up {ROOM} of {BOT} done', log)
        m = metrics(port)
        self.assertGreaterEqual(m['xpb_catchup_runs_total'], 2)
        self.assertEqual(m['xpb_catchup_messages_total'], len(archived))
        live = len(direct) + len(room) - len(archived)
        print(f'\ncatch-up: {len(archived)} archived and {live} live (offline store) of 400 '
              f'within {took:.1f} s of the restart; '
              f'{m.get("xpb_catchup_duplicates_total", 0)} duplicates dropped')

    def test_slow_subscriber_misses_nothing(self):
        """10,000 events while a subscriber reads far slower than they come:
        PUB drops what its queue cannot hold; --resume-file replays each gap."""
        work = env.scratch('bridge')
        b = self.new_bridge(work, jid=f'bot2@{DOMAIN}', pw='bot2-pw')
        b.start()
        resume = os.path.join(work, 'slow.seq')
        n = 10000
        # A reader that stops reading for a while (its pipe fills, so does the
        # socket, so does PUB's queue), then reads on.
        slow = subprocess.Popen(
            [xpbctl_path(), 'tail', '--json', '--events', b.events, '--requests', b.requests,
             '--resume-file', resume, '--kind', 'message', '--count', str(n)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.addCleanup(procs.kill_group, slow)
        time.sleep(1.0)
        os.kill(slow.pid, signal.SIGSTOP)
        try:
            self.fast_send(f'bot2@{DOMAIN}', n)
        finally:
            os.kill(slow.pid, signal.SIGCONT)
        try:
            out, err = slow.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            procs.kill_group(slow)
            out, err = slow.communicate()
        with open(os.path.join(work, 'slow.out'), 'wb') as f:
            f.write(out + b'\n--stderr--\n' + err)
        evs = [json.loads(l) for l in out.decode().splitlines() if l.startswith('{"seq"')]
        self.assertEqual(slow.returncode, 0, f'{len(evs)} events; stderr: {err.decode()[-2000:]}')
        seqs = [int(e['seq']) for e in evs]
        self.assertEqual(len(seqs), n)
        self.assertEqual(len(set(seqs)), n, 'a seq came twice')
        self.assertEqual(seqs, sorted(seqs))
        got = {body(e) for e in evs}
        self.assertEqual(len(got), n)
        self.assertEqual(got, {f'slow-{i}' for i in range(n)})
        gaps = [l for l in err.decode().splitlines() if 'gap' in l.lower()]
        print(f'\nslow subscriber: {n} events, {len(gaps)} gap notices, none missing')

    def fast_send(self, to, n):
        """n chat messages from alice to `to`, as fast as slixmpp sends them."""
        async def go(c):
            for i in range(n):
                c.send_message(mto=to, mbody=f'slow-{i}', mtype='chat')
                if i % 500 == 499:
                    await c.plugin['xep_0199'].ping(jid=DOMAIN, timeout=30) \
                        if 'xep_0199' in c.plugin else None
        self.alice.run(go, 120)

    def test_server_restart_loses_nothing_either_way(self):
        work = env.scratch('bridge')
        b = self.new_bridge(work, jid=f'bot3@{DOMAIN}', pw='bot3-pw')
        b.start()
        b.wait_log(f'catch-up bot3@{DOMAIN} of bot3@{DOMAIN}: first run', 20)
        resume = os.path.join(work, 'tail.seq')
        r = Resumer(b, resume)
        self.addCleanup(r.stop)
        self.alice.send(f'bot3@{DOMAIN}', 'before-0')
        r.wait_bodies('before-', 1, 20)
        mark = b.log_mark()
        # The server goes away: the stream breaks and cannot be resumed (the
        # server forgot it). The bridge's sends wait in its queue meanwhile.
        self.srv.stop()
        self.srv.wait_ports_closed()
        b.wait_log('session bot3@', 20, since=mark)
        for i in range(20):
            b.ctl('send', '--account', f'bot3@{DOMAIN}', '--to', ALICE, f'out-{i}')
        self.srv.start()
        # alice is back at once and writes while the bridge may still be
        # waiting to reconnect (offline store and archive), then again once
        # it is online.
        self.alice.stop()
        type(self).alice = self.person(ALICE, 'alice-pw')
        for i in range(25):
            self.alice.send(f'bot3@{DOMAIN}', f'gap-{i}')
        b.wait_log(f'session bot3@{DOMAIN} online as', 60, since=mark)
        for i in range(25):
            self.alice.send(f'bot3@{DOMAIN}', f'after-{i}')
        r.wait_bodies('gap-', 25, 60)
        r.wait_bodies('after-', 25, 60)
        time.sleep(1.5)
        events = r.tail.find(lambda e: True)
        self.assert_once(events, 'gap-', 25)
        self.assert_once(events, 'after-', 25)
        self.assert_once(events, 'before-', 1)
        got = self.alice.wait_messages(20, timeout=30, body_prefix='out-')
        self.assertEqual(sorted(m['body'] for m in got), sorted(f'out-{i}' for i in range(20)))
        time.sleep(1.0)
        self.assertEqual(len(self.alice.messages(body_prefix='out-')), 20, 'a send came twice')
        self.assertNotIn('session bot3@' + DOMAIN + ' resumed', '\n'.join(b.log_lines(mark)))

    def test_replay_before_retention_is_refused_by_name(self):
        work = env.scratch('bridge')
        jid = f'bot4@{DOMAIN}'
        conf = 'state = { journal_max_bytes = 65536; };\n'
        b = self.new_bridge(work, jid=jid, pw='bot4-pw', conf=conf)
        b.start()
        live = b.tail('--kind', 'message')
        self.addCleanup(procs.kill_group, live.proc)
        live.sync(lambda i: self.alice.send(jid, f'sync-{i}'),
                  lambda i: lambda e: body(e) == f'sync-{i}')
        pad = 'x' * 200
        for i in range(600):  # about 250 KiB of records: far over 64 KiB
            self.alice.send(jid, f'ret-{i} {pad}')
        live.wait(lambda e: body(e).startswith('ret-599 '), timeout=60)
        b.stop()
        b2 = self.new_bridge(work, jid=jid, pw='bot4-pw', conf=conf)
        b2.start()  # retention runs at start: the oldest events go
        r = subprocess.run([xpbctl_path(), 'tail', '--json', '--events', b2.events,
                            '--requests', b2.requests, '--from-seq', '1', '--count', '1'],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_REPLAY_GONE', r.stderr)
        self.assertRegex(r.stderr, r'the journal keeps seq [0-9]+ to [0-9]+')
        self.assertIn('journal_max_bytes', r.stderr)


class CatchupEjabberd(unittest.TestCase):
    """The kill -9 cases against ejabberd's mod_mam (numeric archive ids, its own
    offline and resumption behaviour)."""
    server = Ejabberd
    resume_timeout = 120
    setUpClass = Catchup.__dict__['setUpClass']
    person = Catchup.__dict__['person']
    _cleanup = Catchup.__dict__['_cleanup']
    new_bridge = Catchup.new_bridge
    kill9 = Catchup.kill9
    assert_once = Catchup.assert_once
    down_and_back = Catchup.down_and_back
    check_room_ids = Catchup.check_room_ids
    test_restart_within_resumption_resumes_and_loses_nothing = \
        Catchup.test_restart_within_resumption_resumes_and_loses_nothing


class CatchupExpired(unittest.TestCase):
    """A server that keeps a broken stream resumable for a few seconds only
    (Prosody smacks_hibernation_time): the restart comes after it expired."""
    server = Prosody
    resume_timeout = 10  # seconds: the 400 messages are sent well within it
    setUpClass = Catchup.__dict__['setUpClass']
    person = Catchup.__dict__['person']
    _cleanup = Catchup.__dict__['_cleanup']
    new_bridge = Catchup.new_bridge
    kill9 = Catchup.kill9
    assert_once = Catchup.assert_once
    down_and_back = Catchup.down_and_back
    check_room_ids = Catchup.check_room_ids
    test_restart_after_resumption_expired_catches_up_once = \
        Catchup.restart_after_resumption_expired_catches_up_once


class CatchupExpiredEjabberd(CatchupExpired):
    """The same against ejabberd (mod_stream_mgmt resume_timeout,
    resend_on_timeout: if_offline puts what was never acked in the offline store)."""
    server = Ejabberd


if __name__ == '__main__':
    unittest.main()
