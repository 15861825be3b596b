"""Issue 4 integration tests: xpb_session_driver (the bridge's session engine)
against real Prosody and ejabberd on 127.0.0.1, with slixmpp persons on the
other end. Each test starts its own server and stops it, pass or fail."""
import collections
import os
import re
import time
import unittest

from xpbtest import env
from xpbtest.certs import DOMAIN
from xpbtest.driver import Driver, driver_path
from xpbtest.person import Person
from xpbtest.servers import Ejabberd, Prosody

BOB = f'bob@{DOMAIN}'


def setUpModule():
    path = driver_path()
    if not path or not os.access(path, os.X_OK):
        if os.environ.get('XPB_DRIVER'):
            raise FileNotFoundError(f'XPB_DRIVER={path} is not executable')
        raise unittest.SkipTest('xpb_session_driver not built (set XPB_DRIVER)')


def _text(events):
    """The human-readable parts of error/state/failed events, joined."""
    parts = []
    for e in events:
        for k in ('code', 'message', 'reason', 'state'):
            if e.get(k):
                parts.append(str(e[k]))
    return ' | '.join(parts)


class SessionsMixin:
    server_cls = None

    # -- fixtures --------------------------------------------------------------
    def server(self, **kw):
        srv = env.start_server(self, self.server_cls, **kw)
        srv.register('alice', 'alice-pw')
        srv.register('bob', 'bob-pw')
        return srv

    def person(self, srv, user='bob', password='bob-pw'):
        p = Person(f'{user}@{DOMAIN}', password, env.pki().ca, srv.ports['c2s'])
        self.addCleanup(p.stop)
        return p.start()

    def driver(self):
        d = Driver(env.scratch('driver'), ca_file=env.pki().ca)

        def teardown():
            d.kill()
            if self._outcome_failed():
                print(f'\n--- driver stderr tail ({self.id()}) ---\n{d.stderr_tail(60)}')
        self.addCleanup(teardown)
        return d

    def _outcome_failed(self):
        res = getattr(self, '_outcome', None)
        return bool(res and getattr(res, 'result', None) and
                    (res.result.failures or res.result.errors))

    @staticmethod
    def opts(srv, transport='starttls', **kw):
        o = {'host': '127.0.0.1', 'transport': transport, 'sm': 1, 'roster': 0,
             'presence': 1, 'backoff_min_ms': 200, 'backoff_max_ms': 2000}
        if transport == 'starttls':
            o['port'] = srv.ports['c2s']
        elif transport == 'directtls':
            o['port'] = srv.ports['directtls']
        else:
            del o['host']  # the URL names host and port
            o['ws_url'] = srv.wss_url if transport == 'wss' else srv.ws_url
            o['transport'] = 'websocket'
        o.update(kw)
        return o

    def online(self, d, name, timeout=15, since=None, **match):
        ev = d.wait_for('online', session=name, timeout=timeout, since=since, **match)
        self.assertTrue(ev['jid'].startswith(f'{name_user(name)}@{DOMAIN}/'), ev)
        return ev

    def assert_all_delivered(self, person, prefix, n, timeout=30, want=None):
        """All n bodies prefix-00..prefix-(n-1) (or exactly `want`) arrived; a
        body seen twice must carry an id each time and the same id (so the
        duplicate is detectable)."""
        if want is None:
            want = {f'{prefix}-{i:02d}' for i in range(n)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = person.messages(body_prefix=prefix + '-')
            if want <= {m['body'] for m in got}:
                break
            time.sleep(0.2)
        person.wait_quiet(1.0, timeout=5)  # let late duplicates show up too
        got = person.messages(body_prefix=prefix + '-')
        bodies = collections.Counter(m['body'] for m in got)
        self.assertEqual(set(bodies), want,
                         f'missing: {sorted(want - set(bodies))}, extra: {sorted(set(bodies) - want)}')
        for body, count in bodies.items():
            if count > 1:
                ids = {m['id'] for m in got if m['body'] == body}
                self.assertTrue(all(ids), f'{body} doubled without an id')
                self.assertEqual(len(ids), 1, f'{body} doubled with different ids {ids}')
        distinct_ids = {m['id'] for m in got}
        self.assertEqual(len(distinct_ids), n, 'each message should carry its own id')
        return got

    # -- login -----------------------------------------------------------------
    def _login_with(self, mech):
        srv = self.server(sasl=(mech,))
        bob = self.person(srv)
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv))
        self.online(d, 'alice')
        d.send('alice', BOB, f'hello over {mech}')
        got = bob.wait_messages(1, body_prefix=f'hello over {mech}')
        self.assertEqual(len(got), 1)
        if isinstance(srv, Ejabberd):
            lines = _poll(lambda: srv.auth_successes('alice'), 5)  # its log is written late
            self.assertTrue(lines and all(f' {mech} ' in l for l in lines), lines)
        # And the same account over direct TLS (XEP-0368).
        d.open('alice2', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv, 'directtls'))
        ev = d.wait_for('online', session='alice2', timeout=15)
        self.assertTrue(ev['jid'].startswith(f'alice@{DOMAIN}/'), ev)
        self.assertEqual(d.quit(), 0)

    def test_login_scram_sha1(self):
        self._login_with('SCRAM-SHA-1')

    def test_login_scram_sha256(self):
        self._login_with('SCRAM-SHA-256')

    # -- TLS and SASL refusals -------------------------------------------------------
    def _refused(self, d, name, timeout=15):
        """Collect the session's error events; assert it never came online
        and the server never authenticated it."""
        err = d.wait_for('error', session=name, timeout=timeout)
        time.sleep(0.5)
        events = d.find(session=name)
        self.assertFalse([e for e in events if e.get('event') == 'online'], events)
        return err, _text([e for e in events if e.get('event') in ('error', 'state', 'failed')])

    def test_starttls_wrong_ca_refused(self):
        srv = self.server()
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw',
               **self.opts(srv, ca_file=env.pki().other_ca, backoff_min_ms=2000))
        err, text = self._refused(d, 'alice')
        self.assertRegex(text, re.compile(r'certificate', re.I))
        self.assertRegex(text, re.compile(r'verif', re.I))
        self.assertEqual(srv.auth_successes('alice'), [])

    def test_starttls_wrong_hostname_refused(self):
        srv = self.server(cert='wrongname')
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv, backoff_min_ms=2000))
        err, text = self._refused(d, 'alice')
        self.assertRegex(text, re.compile(r'host ?name|xpb\.test|name mismatch', re.I))
        self.assertEqual(srv.auth_successes('alice'), [])

    def test_plain_refused_without_tls(self):
        srv = self.server(tls=False, sasl=('PLAIN',))
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw',
               **self.opts(srv, allow_plaintext=1, backoff_min_ms=2000))
        err, text = self._refused(d, 'alice')
        self.assertRegex(text, re.compile(r'PLAIN|TLS|mechanism', re.I))
        self.assertEqual(srv.auth_successes('alice'), [], 'server saw a successful login')

    def test_tls12_scram_plus_tls_unique(self):
        """Over TLS 1.2 both servers offer SCRAM-SHA-1-PLUS bound to tls-unique
        only (no XEP-0440 list). With the extended master secret (RFC 7627) we
        bind to it, and the server checks the binding: a wrong Finished message
        would fail the login. (Before, we offered tls-server-end-point there and
        every login failed.)"""
        srv = self.server(tls12_only=True, sasl=('SCRAM-SHA-1', 'SCRAM-SHA-1-PLUS', 'PLAIN'))
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv, backoff_min_ms=2000))
        self.online(d, 'alice')
        auth = [e for e in d.find('state', session='alice') if e.get('state') == 'auth']
        self.assertTrue(auth, d.find('state', session='alice'))
        self.assertTrue(auth[0]['reason'].startswith('authenticating with SCRAM-SHA-1-PLUS;'), auth)
        self.assertIn('channel binding tls-unique', d.stderr_tail(200))
        self.assertEqual(d.find('error', session='alice'), [])
        self.assertTrue(_poll(lambda: srv.auth_successes('alice'), 10), srv.log_tail())

    def test_tls13_no_plus_without_xep0440(self):
        """TLS 1.3 (tls-exporter data): Prosody 0.12 offers no -PLUS there (it
        knows only tls-unique), so we send 'y' (RFC 5802 §6); ejabberd 23.01
        offers SCRAM-SHA-1-PLUS but refuses tls-exporter and lists no types
        (XEP-0440), so we take SCRAM-SHA-1 with 'n'. Both logins must work (an
        earlier version bound to tls-exporter and ejabberd refused every one)."""
        srv = self.server(sasl=('SCRAM-SHA-1', 'SCRAM-SHA-1-PLUS', 'PLAIN'))
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv, backoff_min_ms=2000))
        self.online(d, 'alice')
        auth = [e for e in d.find('state', session='alice') if e.get('state') == 'auth']
        self.assertTrue(auth[0]['reason'].startswith('authenticating with SCRAM-SHA-1;'), auth)
        self.assertIn('channel binding tls-exporter', d.stderr_tail(200))
        self.assertEqual(d.find('error', session='alice'), [])

    # -- stay alive, lose nothing ------------------------------------------------------
    def test_tcp_cut_resumes_without_loss(self):
        srv = self.server()
        bob = self.person(srv)
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv))
        first = self.online(d, 'alice')
        mark = d.mark()
        for i in range(50):
            d.send('alice', BOB, f'cut-{i:02d}')
            if i == 24:
                d.cut('alice')
        queued = d.wait_count(50, 'queued', since=mark, session='alice', timeout=10)
        self.assertEqual(len(queued), 50, d.find(since=mark, session='alice')[-5:])
        resumed = d.wait_for('online', session='alice', timeout=30, since=mark)
        self.assertTrue(resumed.get('resumed'), f'expected a resumed session: {resumed}')
        self.assertEqual(resumed['jid'], first['jid'])
        self.assert_all_delivered(bob, 'cut', 50)
        handles = {e['handle'] for e in queued}
        acked = d.wait_count(50, 'acked', since=mark, session='alice', timeout=20)
        self.assertEqual({e['handle'] for e in acked}, handles)
        self.assertEqual(d.find('failed', since=mark, session='alice'), [])
        st = d.stats('alice')
        self.assertGreaterEqual(st['resumptions'], 1, st)
        self.assertEqual(st['unacked'], 0, st)

    def test_server_restart_resends_unacked(self):
        srv = self.server()
        bob = self.person(srv)
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv))
        self.online(d, 'alice')
        mark = d.mark()
        for i in range(5):
            d.send('alice', BOB, f'rs-{i:02d}')
        srv.stop()
        self.assertTrue(srv.wait_ports_closed())
        # XEP-0198 §4: what the server acknowledged before it went down is the
        # server's to deliver (a server may acknowledge, then stop before
        # storing it); everything it did not acknowledge is ours to resend.
        # The acknowledgements the session read before it saw the connection
        # go are those printed before its first state change after `mark`;
        # taking a mark here instead would race with the driver's output.
        went = lambda e: e.get('state') != 'online'
        d.wait_for('state', session='alice', since=mark, timeout=15, pred=went)
        stopped_at = d.index_of('state', since=mark, pred=went, session='alice')
        queued = d.find('queued', since=mark, session='alice')
        acked = {e['handle'] for e in d.events[mark:stopped_at]
                 if e.get('event') == 'acked' and e.get('session') == 'alice'}
        server_owned = {f'rs-{i:02d}' for i, e in enumerate(queued[:5]) if e['handle'] in acked}
        for i in range(5, 15):
            d.send('alice', BOB, f'rs-{i:02d}')
        d.wait_count(15, 'queued', since=mark, session='alice', timeout=10)
        st = d.stats('alice')
        self.assertGreaterEqual(st['queued'] + st['unacked'], 10, st)
        before_restart = d.mark()
        srv.start()
        self.online(d, 'alice', timeout=30, since=before_restart)
        bob.stop()
        bob2 = self.person(srv)  # offline storage hands over what bob missed
        seen = {m['body'] for m in bob.messages('rs-')}
        want = {f'rs-{i:02d}' for i in range(15)}
        must = want - server_owned
        _poll(lambda: must <= seen | {m['body'] for m in bob2.messages('rs-')}, 30)
        merged = _Merged(bob.messages('rs-') + bob2.messages('rs-'))
        got = {m['body'] for m in merged.messages(body_prefix='rs-')}
        self.assertTrue(must <= got, f'not resent: {sorted(must - got)}')
        self.assertGreaterEqual(len(must), 10)  # the 10 sent while the server was down
        if got != want:  # only acknowledged ones may be missing: say so
            print(f'\n  server acknowledged, then lost on shutdown: {sorted(want - got)}', end=' ')
        self.assert_all_delivered(merged, 'rs', 15, timeout=5, want=got)
        st = d.stats('alice')
        self.assertGreaterEqual(st['reconnects'], 1, st)
        d.wait_count(15, 'acked', since=mark, session='alice', timeout=20)
        self.assertEqual(d.find('failed', since=mark, session='alice'), [])

    def test_ping_timeout_reconnects(self):
        srv = self.server()
        bob = self.person(srv)
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw',
               **self.opts(srv, ping_interval_ms=1000, ping_timeout_ms=2000))
        self.online(d, 'alice')
        mark = d.mark()
        d.freeze('alice')
        t0 = time.monotonic()
        self.online(d, 'alice', timeout=30, since=mark)
        self.assertLess(time.monotonic() - t0, 25)
        why = _text(d.find('state', since=mark, session='alice'))
        self.assertRegex(why, re.compile(r'ping|timeout|timed out', re.I))
        st = d.stats('alice')
        self.assertGreaterEqual(st['reconnects'], 1, st)
        d.send('alice', BOB, 'after-ping-timeout')
        self.assertEqual(len(bob.wait_messages(1, body_prefix='after-ping-timeout')), 1)

    # -- scale -----------------------------------------------------------------
    def test_200_sessions_in_one_process(self):
        n = 200
        srv = self.server()
        srv.register_many(n, prefix='u', password='pw')
        bob = self.person(srv)
        d = self.driver()
        t0 = time.monotonic()
        for i in range(n):
            d.open(f'u{i}', f'u{i}@{DOMAIN}', 'pw', **self.opts(srv, presence=1))
        online = d.wait_count(n, 'online', timeout=120)
        names = {e['session'] for e in online}
        self.assertEqual(len(names), n, f'only {len(names)} online after {time.monotonic() - t0:.1f}s')
        jids = {e['session']: e['jid'] for e in online}
        for i in (0, 99, 199):
            d.send(f'u{i}', BOB, f'from-u{i}')
        got = bob.wait_messages(3, body_prefix='from-u', timeout=20)
        self.assertEqual(sorted(m['body'] for m in got), ['from-u0', 'from-u199', 'from-u99'])
        mark = d.mark()
        bob.send(jids['u42'], 'to-u42')
        ev = d.wait_for('stanza', session='u42', kind='message', since=mark, timeout=15,
                        pred=lambda e: e.get('body') == 'to-u42')
        self.assertTrue(ev['from'].startswith(f'{BOB}/'), ev)
        # No session may need a second attempt (an accept backlog too short
        # for 200 simultaneous connects once showed up here as login timeouts).
        errors = d.find('error', since=0)
        self.assertEqual(errors, [], f'{len(errors)} errors, first: {errors[:3]}')
        self.assertEqual(d.quit(timeout=60), 0)

    # -- WebSocket -----------------------------------------------------------------
    def test_websocket_tls_login_and_messages(self):
        """wss:// (RFC 7395 over TLS, certificate checked against xpb.test)."""
        self._websocket('wss')

    def test_websocket_plain_login_and_messages(self):
        """ws:// on loopback: only with allow_plaintext=1 (refused otherwise)."""
        srv = self._websocket('ws', allow_plaintext=1)
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv, 'ws'))
        err = d.wait_for('error', session='alice', timeout=10)
        self.assertEqual(err['code'], 'XPB_ENOTLS', err)

    def _websocket(self, transport, **kw):
        srv = self.server()
        bob = self.person(srv)
        d = self.driver()
        d.open('alice', f'alice@{DOMAIN}', 'alice-pw', **self.opts(srv, transport, **kw))
        ev = self.online(d, 'alice')
        d.send('alice', BOB, 'ws-out')
        got = bob.wait_messages(1, body_prefix='ws-out')
        self.assertEqual(len(got), 1)
        self.assertTrue(got[0]['from'].startswith(f'alice@{DOMAIN}/'))
        mark = d.mark()
        bob.send(ev['jid'], 'ws-in')
        st = d.wait_for('stanza', session='alice', kind='message', since=mark, timeout=10,
                        pred=lambda e: e.get('body') == 'ws-in')
        self.assertTrue(st['from'].startswith(f'{BOB}/'), st)
        self.assertEqual(d.quit(), 0)
        return srv


def _poll(fn, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


def name_user(name):
    """Session names are the account's localpart, optionally with a digit
    suffix for a second session of the same account (alice2 -> alice)."""
    return re.sub(r'(?<=[a-z])\d+$', '', name) if not re.fullmatch(r'u\d+', name) else name


class _Merged:
    """What two Person objects received, seen as one (for assert_all_delivered)."""

    def __init__(self, msgs):
        self._msgs = msgs

    def messages(self, body_prefix=None):
        return [m for m in self._msgs if body_prefix is None or m['body'].startswith(body_prefix)]

    def wait_quiet(self, *a, **k):
        pass


class TestProsodySessions(SessionsMixin, unittest.TestCase):
    server_cls = Prosody


class TestEjabberdSessions(SessionsMixin, unittest.TestCase):
    server_cls = Ejabberd


if __name__ == '__main__':
    unittest.main()
