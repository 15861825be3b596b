"""Issue 5 end-to-end tests: the real xpbridge daemon (one account from flags,
bus on ipc:// in a scratch directory) and the real xpbctl, against Prosody and
ejabberd on 127.0.0.1, with slixmpp persons on the other side. Each server
class shares one server, bridge, `xpbctl tail --json` and person across its
tests (unique bodies keep them apart); the server-restart test has its own.
Every process is stopped by PID in cleanup, pass or fail."""
import json
import os
import re
import select
import socket
import subprocess
import time
import unittest

from xpbtest import env
from xpbtest.bridge import (ERR_API_VERSION, ERR_BAD_REQUEST, ERR_FORBIDDEN, ERR_INVALID_RECORD,
                            ERR_UNKNOWN_ACCOUNT, Bridge, RawReq, RichPerson,
                            body, is_message, is_presence, pb_bytes, pb_varint,
                            response_code, stanza, state, xpbctl_path, xpbridge_path)
from xpbtest.certs import DOMAIN, MUC
from xpbtest.servers import Ejabberd, Prosody

BOT = f'bot@{DOMAIN}'
ALICE = f'alice@{DOMAIN}'
CHATSTATES = 'http://jabber.org/protocol/chatstates'


def setUpModule():
    for name, path in (('XPBRIDGE', xpbridge_path()), ('XPBCTL', xpbctl_path())):
        if not path or not os.access(path, os.X_OK):
            if os.environ.get(name):
                raise FileNotFoundError(f'{name}={path} is not executable')
            raise unittest.SkipTest(f'{name.lower()} not built (set {name})')


def _problems(tc):
    """Failures and errors so far in this run (the counts grow by test)."""
    res = getattr(getattr(tc, '_outcome', None), 'result', None)
    return len(res.failures) + len(res.errors) if res else 0


class Fixture:
    """A server with accounts bot and alice, xpbridge for bot, a tail on all
    of the bridge's events and alice online. stop() undoes it all."""

    def __init__(self, server_cls, rooms=()):
        self.stack = []
        try:
            self.srv = server_cls(env.scratch(server_cls.kind), env.pki())
            self.srv.start()
            self.stack.append(self.srv.stop)
            self.srv.register('bot', 'bot-pw')
            self.srv.register('alice', 'alice-pw')
            work = env.scratch('bridge')
            conf = os.path.join(work, 'xpbridge.conf')
            with open(conf, 'w') as f:
                # A server restart ends with system-shutdown (RFC 6120 §4.9.3.20),
                # after which the bridge waits half of backoff_max_s (60 s by
                # default) before it reconnects: 2 s here.
                # loops = 0: the one-loop path (sessions on the daemon's own loop)
                # stays covered end to end; the other modules run the default.
                f.write('limits = { backoff_max_s = 4; loops = 0; };\n')
            self.bridge = Bridge(work, BOT, 'bot-pw', '127.0.0.1', self.srv.ports['c2s'],
                                 env.pki().ca, rooms=rooms, extra=('--config', conf))
            self.tail = self.bridge.tail()  # before the bridge: it sees the session start
            self.stack.append(self.tail.stop)
            self.bot_jid = self.bridge.start()
            self.stack.append(self.bridge.stop)
            self.alice = self.new_person()
            self.tail.sync(lambda i: self.alice.send(BOT, f'sync-{i}'),
                           lambda i: (lambda e: is_message(e, f'sync-{i}')))
        except BaseException:
            self.stop()
            raise

    def new_person(self, user='alice'):
        p = RichPerson(f'{user}@{DOMAIN}', f'{user}-pw', env.pki().ca, self.srv.ports['c2s'])
        self.stack.append(p.stop)
        return p.start()

    def ctl(self, *args, **kw):
        return self.bridge.ctl(*args, **kw)

    def stop(self):
        while self.stack:
            fn = self.stack.pop()
            try:
                fn()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {fn}: {e}')

    def diagnostics(self):
        return (f'--- xpbridge log tail ---\n{self.bridge.log_tail(40)}\n'
                f'--- tail stderr ---\n' + '\n'.join(self.tail.stderr[-10:]) +
                f'\n--- {self.srv.kind} log tail ---\n{self.srv.log_tail(20)}')


class E2EMixin:
    server_cls = None

    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture(cls.server_cls)
        cls.addClassCleanup(cls.fx.stop)

    def setUp(self):
        self.bridge, self.tail, self.alice = self.fx.bridge, self.fx.tail, self.fx.alice
        self.assertTrue(self.bridge.alive(), 'xpbridge died in an earlier test')
        self._problems_before = _problems(self)

    def tearDown(self):
        if _problems(self) > self._problems_before:
            print(f'\n{self.id()}\n{self.fx.diagnostics()}')

    def ctl(self, *args, **kw):
        return self.bridge.ctl(*args, **kw)

    # -- person -> subscriber ----------------------------------------------------------
    def test_message_reaches_subscriber_with_every_field(self):
        """`xpbctl tail --json --count 3` exits after 3 events; one of them is
        alice's message with id, from, to, type, lang, body, thread, chat
        state, receipt request and an unknown extension intact."""
        t = self.bridge.tail('--count', '3', '--kind', 'message', '--account', BOT)
        self.addCleanup(t.stop)
        t.sync(lambda i: self.alice.send(BOT, f'count-poke-{i}'),
               lambda i: (lambda e: is_message(e, f'count-poke-{i}')))
        mark = self.tail.mark()
        self.alice.send_raw(
            f"<message to='{BOT}' type='chat' id='e2e-rich-1' xml:lang='en'>"
            "<body>rich &amp; &lt;escaped&gt; \u00e9\u2713</body>"
            "<thread parent='parent-7'>thread-42</thread>"
            f"<active xmlns='{CHATSTATES}'/><request xmlns='urn:xmpp:receipts'/>"
            "<x xmlns='urn:example:e2e' a='1'>v</x></message>")
        for i in range(6):  # fill up to --count, whatever the pokes used
            if t.wait_exit(1.0) is not None:
                break
            self.alice.send(BOT, f'count-fill-{i}')
        self.assertEqual(t.wait_exit(5), 0, f'tail --count 3 did not exit 0: {t.stderr}')
        self.assertEqual(len(t.events), 3, t.events)
        rich = [e for e in t.events if stanza(e).get('id') == 'e2e-rich-1']
        self.assertEqual(len(rich), 1, t.events)
        ev, s = rich[0], stanza(rich[0])
        self.assertEqual(ev['account'], BOT)
        self.assertGreater(int(ev['seq']), 0)
        self.assertLess(abs(int(ev['timestamp_us']) / 1e6 - time.time()), 60)
        self.assertGreater(ev.get('xml_bytes', 0), 200)
        self.assertEqual(s['kind'], 'KIND_MESSAGE')
        self.assertEqual(s['type'], 'TYPE_CHAT')
        self.assertEqual(s['from'], self.alice.jid)
        self.assertEqual(s['to'], BOT)
        self.assertEqual(s.get('lang'), 'en')
        self.assertEqual(s['body'], [{'text': 'rich & <escaped> \u00e9\u2713'}])
        self.assertEqual(s['thread'], {'id': 'thread-42', 'parent': 'parent-7'})
        self.assertEqual(s['chat_state'], 'CHAT_STATE_ACTIVE')
        self.assertIs(s['receipt_request'], True)
        ext = [x for x in s.get('extension', []) if x.get('ns') == 'urn:example:e2e']
        self.assertEqual(ext, [{'ns': 'urn:example:e2e', 'name': 'x',
                                'attr': [{'name': 'a', 'value': '1'}],
                                'child': [{'text': 'v'}]}])
        # The unfiltered subscriber got the same event (same seq) too.
        same = self.tail.wait(lambda e: stanza(e).get('id') == 'e2e-rich-1', since=mark)
        self.assertEqual(same[0]['seq'], ev['seq'])
        self.assertEqual(same[0]['stanza'], s)

    # -- backend -> person -------------------------------------------------------------
    def test_send_reaches_person(self):
        mark = self.tail.mark()
        r = self.ctl('send', '--account', BOT, '--to', self.alice.jid, '--thread', 'th-9',
                     '--id', 'e2e-out-1', '--', 'hello', 'from', 'the', 'backend')
        self.assertEqual(r.stdout.split(), ['e2e-out-1'])
        self.ctl('send', '--account', BOT, '--to', ALICE, '--type', 'normal', 'plain normal')
        self.ctl('send', '--account', BOT, '--xml',
                 f"<message to='{self.alice.jid}' type='headline' id='e2e-out-3'>"
                 f"<body>as xml</body><composing xmlns='{CHATSTATES}'/></message>")
        got = {m['id']: m for m in self.alice.wait_stanza(
            lambda k, s: k == 'message' and s['body'] in
            ('hello from the backend', 'plain normal', 'as xml'), n=3)}
        self.assertEqual(len(got), 3, got)
        m = got['e2e-out-1']
        self.assertEqual((m['body'], m['type'], m['thread']),
                         ('hello from the backend', 'chat', 'th-9'))
        self.assertEqual(str(m['from']), self.fx.bot_jid)
        normal = [v for v in got.values() if v['body'] == 'plain normal'][0]
        self.assertEqual(normal['type'], 'normal')
        xml = got['e2e-out-3']
        self.assertEqual(xml['type'], 'headline')
        self.assertIsNotNone(xml.xml.find(f'{{{CHATSTATES}}}composing'), str(xml))
        # Delivery outcomes on the bus for the first one, in order, ending
        # with the XEP-0198 ack (docs/bus.md, "Delivery").
        dl = self.tail.wait(lambda e: (e.get('delivery') or {}).get('stanza_id') == 'e2e-out-1',
                            n=3, since=mark)
        self.assertEqual([e['delivery']['outcome'] for e in dl],
                         ['OUTCOME_QUEUED', 'OUTCOME_SENT', 'OUTCOME_ACKED'])

    def test_unknown_account_and_bad_jid_are_errors(self):
        r = self.ctl('send', '--account', f'nobody@{DOMAIN}', '--to', ALICE, 'x', check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_UNKNOWN_ACCOUNT', r.stderr)
        r = self.ctl('send', '--account', BOT, '--to', 'a@b@c', 'x', check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, 'ERR_INVALID_JID|ERR_INVALID_RECORD|refused|JID')

    # -- iq ------------------------------------------------------------------------------
    def test_iq_round_trips(self):
        ping = self.ctl('iq', '--account', BOT, '--to', self.alice.jid, '--ping', json_out=True)
        self.assertEqual((ping['kind'], ping['type'], ping['from']),
                         ('KIND_IQ', 'TYPE_RESULT', self.alice.jid))
        ping = self.ctl('iq', '--account', BOT, '--to', DOMAIN, '--ping', json_out=True)
        self.assertEqual((ping['type'], ping['from']), ('TYPE_RESULT', DOMAIN))
        info = self.ctl('iq', '--account', BOT, '--to', DOMAIN, '--disco-info').stdout
        self.assertIn("type='result'", info)
        self.assertIn("category='server'", info)
        self.assertIn("var='urn:xmpp:ping'", info)
        info = self.ctl('iq', '--account', BOT, '--to', self.alice.jid, '--disco-info',
                        json_out=True)
        self.assertEqual(info['type'], 'TYPE_RESULT')
        self.assertIn('urn:xmpp:ping', json.dumps(info))
        items = self.ctl('iq', '--account', BOT, '--to', DOMAIN, '--disco-items').stdout
        self.assertIn(MUC, items)
        # An error response is printed and gives exit status 1.
        r = self.ctl('iq', '--account', BOT, '--to', f'nobody@{DOMAIN}/gone', '--ping',
                     check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("type='error'", r.stdout)

    # -- presence and subscriptions -------------------------------------------------------
    def test_presence_and_subscription_both_ways(self):
        a, mark = self.alice, self.tail.mark()
        # alice asks for bot's presence; the backend sees the request and approves.
        a.presence(to=BOT, ptype='subscribe')
        self.tail.wait(lambda e: is_presence(e, 'TYPE_SUBSCRIBE', ALICE), since=mark)
        self.ctl('presence', '--account', BOT, '--to', ALICE, '--type', 'subscribed')
        self.assertTrue(a.wait_stanza(lambda k, s: k == 'presence' and s['type'] == 'subscribed'
                                      and str(s['from']).startswith(BOT)))
        # bot asks for alice's presence; alice approves; the backend sees it.
        mark = self.tail.mark()
        self.ctl('presence', '--account', BOT, '--to', ALICE, '--type', 'subscribe')
        self.assertTrue(a.wait_stanza(lambda k, s: k == 'presence' and s['type'] == 'subscribe'
                                      and str(s['from']).startswith(BOT)))
        a.presence(to=BOT, ptype='subscribed')
        self.tail.wait(lambda e: is_presence(e, 'TYPE_SUBSCRIBED', ALICE), since=mark)
        # Now both ways: the roster says so.
        deadline = time.monotonic() + 10
        while True:
            roster = self.ctl('roster', '--account', BOT, json_out=True) or {}
            item = [i for i in roster.get('item', []) if i.get('jid') == ALICE]
            if item and item[0].get('subscription') == 'SUBSCRIPTION_BOTH':
                break
            self.assertLess(time.monotonic(), deadline, f'roster: {roster}')
            time.sleep(0.3)
        plain = self.ctl('roster', '--account', BOT).stdout
        self.assertRegex(plain, rf'{ALICE}\s.*both')
        # bot's presence change reaches alice.
        self.ctl('presence', '--account', BOT, '--show', 'away', '--status', 'at lunch')
        got = a.wait_stanza(lambda k, s: k == 'presence' and str(s['from']) == self.fx.bot_jid
                            and s['show'] == 'away')
        self.assertTrue(got, 'alice never saw bot go away')
        self.assertEqual(got[-1]['status'], 'at lunch')
        # alice's presence change reaches the backend.
        mark = self.tail.mark()
        a.presence(xml="<presence><show>dnd</show><status>in a meeting</status></presence>")
        ev = self.tail.wait(lambda e: is_presence(e, None, ALICE)
                            and stanza(e).get('show') == 'SHOW_DND', since=mark)
        self.assertEqual(stanza(ev[0])['status'], [{'text': 'in a meeting'}])
        self.assertEqual(stanza(ev[0])['from'], a.jid)
        self.ctl('presence', '--account', BOT, '--show', 'chat', '--status', 'back')

    # -- MUC -------------------------------------------------------------------------------
    def test_muc_groupchat_both_ways(self):
        room = f'lobby@{MUC}'
        self.assertEqual(self.alice.join_room(room, 'alice'), {'alice'})
        mark = self.tail.mark()
        self.assertEqual(self.ctl('join', '--account', BOT, '--room', room, '--nick', 'botty',
                                  '--history', '0').stdout.strip(), 'ok')
        self.assertTrue(self.alice.wait_stanza(
            lambda k, s: k == 'presence' and str(s['from']) == f'{room}/botty'),
            'alice never saw bot enter the room')
        self.tail.wait(lambda e: is_presence(e, None, f'{room}/botty'), since=mark)
        sessions = self.ctl('sessions', json_out=True)
        self.assertIn(room, sessions['session'][0].get('room', []))
        # bot -> room
        self.ctl('send', '--account', BOT, '--type', 'groupchat', '--to', room, 'hello room')
        got = self.alice.wait_stanza(lambda k, s: k == 'message' and s['body'] == 'hello room')
        self.assertTrue(got)
        self.assertEqual((str(got[0]['from']), got[0]['type']), (f'{room}/botty', 'groupchat'))
        # person -> room -> backend
        self.alice.send(room, 'hello bot', mtype='groupchat')
        ev = self.tail.wait(lambda e: is_message(e, 'hello bot', 'TYPE_GROUPCHAT'), since=mark)
        self.assertEqual(stanza(ev[0])['from'], f'{room}/alice')

    def test_bot_creates_room_and_person_joins(self):
        # The bot is the first occupant: the server creates the room locked
        # (status 201) until its owner accepts a configuration (XEP-0045 §10.1.2).
        room = f'fresh{int(time.monotonic() * 1000)}@{MUC}'
        mark = self.tail.mark()
        self.assertEqual(self.ctl('join', '--account', BOT, '--room', room, '--nick', 'owner',
                                  '--history', '0').stdout.strip(), 'ok')
        self.tail.wait(lambda e: is_presence(e, None, f'{room}/owner'), since=mark)
        # Once the instant configuration is accepted the room is open to others.
        deadline = time.monotonic() + 10
        while True:
            try:
                occupants = self.alice.join_room(room, 'visitor')
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.assertIn('owner', occupants)
        self.ctl('send', '--account', BOT, '--type', 'groupchat', '--to', room, 'room is open')
        self.assertTrue(self.alice.wait_stanza(
            lambda k, s: k == 'message' and s['body'] == 'room is open'))

    def test_credentials_never_logged(self):
        # The bridge runs at --log-level debug here: even then no password, and
        # no SASL payload that carries one, may reach its log.
        self.ctl('send', '--account', BOT, '--to', self.alice.jid, 'log check')
        self.alice.wait_messages(1, body_prefix='log check')
        with open(self.fx.bridge.log_path, 'rb') as f:
            log = f.read()
        self.assertIn(b'online as', log)  # the log is the real one, and not empty
        import base64
        for secret in (b'bot-pw', base64.b64encode(b'\0bot\0bot-pw'),
                       base64.b64encode(b'bot\0bot-pw'), base64.b64encode(b'bot-pw')):
            self.assertNotIn(secret, log, f'{secret!r} appears in the bridge log')

    # -- idempotence -------------------------------------------------------------------------
    def test_resent_request_id_sends_once(self):
        args = ('send', '--account', BOT, '--to', self.alice.jid, '--request-id', 'e2e-dup-1')
        first = self.ctl(*args, 'only once').stdout.strip()
        second = self.ctl(*args, 'only once').stdout.strip()
        self.assertEqual(first, second, 'the resend was not answered from the cache')
        # Control: a new id does send (so the counting below can fail).
        self.ctl('send', '--account', BOT, '--to', self.alice.jid, '--request-id', 'e2e-dup-2',
                 'only once')
        self.alice.wait_messages(2, body_prefix='only once')
        self.alice.wait_quiet(1.5)
        self.assertEqual(len(self.alice.messages(body_prefix='only once')), 2)

    # -- volume --------------------------------------------------------------------------------
    def test_thousand_messages_each_way_in_order(self):
        n = 1000
        want = [f'vol-{i:04d}' for i in range(n)]
        mark = self.tail.mark()
        t0 = time.monotonic()
        for b in want:
            self.alice.send(BOT, b)
        evs = self.tail.wait(lambda e: is_message(e, 'vol-'), n=n, timeout=60, since=mark)
        self.assertEqual([body(e) for e in evs], want)
        seqs = [int(e['seq']) for e in evs]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual([e for e in self.tail.events[mark:] if 'gap' in e], [])
        t_in = time.monotonic() - t0
        # The other way: one xpbctl process per message, in a shell loop.
        t0 = time.monotonic()
        script = (f'for i in $(seq -w 0 {n - 1}); do "$XPBCTL" send --requests "$REQ" '
                  f'--account {BOT} --to {self.alice.jid} "out-$i" >/dev/null || exit 1; done')
        r = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=120,
                           env={**os.environ, 'XPBCTL': self.bridge.ctl_path,
                                'REQ': self.bridge.requests})
        self.assertEqual(r.returncode, 0, r.stderr)
        got = self.alice.wait_messages(n, timeout=60, body_prefix='out-')
        self.assertEqual([m['body'] for m in got], [f'out-{i:03d}' for i in range(n)])
        print(f'\n  {self.server_cls.kind}: {n} in via tail {t_in:.1f}s, '
              f'{n} out via xpbctl {time.monotonic() - t0:.1f}s', end=' ')

    # -- malformed requests ------------------------------------------------------------------
    def test_malformed_requests_get_errors_and_daemon_stays_up(self):
        raw = RawReq(self.bridge.requests)
        self.addCleanup(raw.close)
        cases = [
            ('garbage', b'\xff\xfe\x00 not protobuf', ERR_BAD_REQUEST),
            ('truncated', pb_varint(1, 1) + b'\x12\x40abc', ERR_BAD_REQUEST),
            ('empty', b'', (ERR_BAD_REQUEST, ERR_API_VERSION)),
            ('no request id', pb_varint(1, 1) + pb_bytes(18, b''), ERR_BAD_REQUEST),
            ('no op', pb_varint(1, 1) + pb_bytes(2, 'e2e-noop'), ERR_BAD_REQUEST),
            ('api version 99', pb_varint(1, 99) + pb_bytes(2, 'e2e-v99') + pb_bytes(18, b''),
             ERR_API_VERSION),
            ('deep nesting', pb_varint(1, 1) + pb_bytes(2, 'e2e-deep') + pb_bytes(3, BOT)
             + pb_bytes(12, _nested(200)), None),
        ]
        for name, payload, want in cases:
            with self.subTest(name):
                code, text, _ = response_code(raw.request(payload))
                if want is None:
                    self.assertNotEqual(code, 0, f'{name} accepted')
                else:
                    self.assertIn(code, want if isinstance(want, tuple) else (want,),
                                  f'{name}: {text}')
                self.assertTrue(text, f'{name}: no error text')
        # A well-formed status request on the same raw socket works.
        code, text, rid = response_code(raw.request(pb_varint(1, 1) + pb_bytes(2, 'e2e-ok')
                                                    + pb_bytes(18, b'')))
        self.assertEqual((code, rid), (0, 'e2e-ok'), text)
        # Over the size limit: NNG drops the connection; nothing else changes.
        big = RawReq(self.bridge.requests)
        self.addCleanup(big.close)
        try:
            big.sock.settimeout(3)
            big.request(b'\x00' * (2 * 1024 * 1024))
        except (OSError, ConnectionError):
            pass
        self.assertTrue(self.bridge.alive())
        self.assertIn('1 online', self.ctl('status').stdout)
        self.ctl('send', '--account', BOT, '--to', self.alice.jid, 'still here')
        self.assertTrue(self.alice.wait_messages(1, body_prefix='still here'))

    # -- the bus cannot escape the configuration (docs/security.md) ------------------------------
    def test_open_cannot_read_files_or_choose_hosts(self):
        """password_file=/etc/passwd + host=an attacker's listener: refused
        with ERR_FORBIDDEN naming bus.allow_open_overrides, and nothing ever
        connects to the listener. Inline passwords and unconfigured accounts
        are refused too (the bridge runs with neither switch)."""
        attacker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(attacker.close)
        attacker.bind(('127.0.0.1', 0))
        attacker.listen(4)
        port = attacker.getsockname()[1]
        raw = RawReq(self.bridge.requests)
        self.addCleanup(raw.close)
        mallory = f'mallory@{DOMAIN}'

        def open_req(rid, account, *fields):
            return response_code(raw.request(pb_varint(1, 1) + pb_bytes(2, rid)
                                             + pb_bytes(3, account)
                                             + pb_bytes(10, b''.join(fields))))
        cases = [
            ('file and host, unconfigured account', mallory,
             (pb_bytes(1, mallory), pb_bytes(3, '/etc/passwd'), pb_bytes(4, '127.0.0.1'),
              pb_varint(5, port)),
             'open: password_file is not allowed from the bus '
             '(set bus.allow_open_overrides in the config)'),
            ('host for the configured account', BOT,
             (pb_bytes(4, '127.0.0.1'), pb_varint(5, port)),
             'open: host is not allowed from the bus (set bus.allow_open_overrides in the config)'),
            ('inline password', mallory, (pb_bytes(2, 'mallory-pw'),),
             'open: password is not allowed from the bus '
             '(set bus.allow_inline_credentials in the config)'),
            ('unconfigured account', mallory, (),
             f'open: account {mallory} is not in the configuration'),
        ]
        log_mark = self.bridge.log_mark()
        for i, (name, account, fields, want) in enumerate(cases):
            with self.subTest(name):
                code, text, rid = open_req(f'e2e-open-{i}', account, *fields)
                self.assertEqual((code, rid), (ERR_FORBIDDEN, f'e2e-open-{i}'), text)
                self.assertIn(want, text)
        # Nothing connects to the attacker's port, nothing read /etc/passwd.
        ready, _, _ = select.select([attacker], [], [], 2.0)
        self.assertEqual(ready, [], 'the bridge connected to the host a request named')
        sessions = self.ctl('sessions', json_out=True)
        names = [s['account'] for s in sessions.get('session', [])]
        self.assertEqual(names, [BOT], sessions)
        log = '\n'.join(self.bridge.log_lines(log_mark))
        self.assertNotIn('/etc/passwd:', log)  # read_password never ran
        self.assertNotIn(mallory + ': started', log)
        self.assertEqual(log.count('refused: open:'), len(cases), log)

    def test_nul_in_request_strings_is_refused(self):
        """A NUL inside any string of a request is refused naming the field,
        instead of being cut at the NUL: PLACE\\0OLD never goes out as PLACE."""
        raw = RawReq(self.bridge.requests)
        self.addCleanup(raw.close)

        def send_req(rid, account, to, text):
            st = pb_varint(1, 1) + pb_bytes(6, to) + pb_bytes(10, pb_bytes(2, text))
            return response_code(raw.request(pb_varint(1, 1) + pb_bytes(2, rid)
                                             + pb_bytes(3, account)
                                             + pb_bytes(12, pb_bytes(1, st))))
        alice = self.alice.jid
        cases = [
            ('body', BOT, alice, b'PLACE\x00OLD', ERR_INVALID_RECORD,
             'send.stanza.body.text: U+0000 at byte 5 is not an XML 1.0 character'),
            ('to', BOT, f'{ALICE}\x00.evil.example'.encode(), b'nul-to', ERR_INVALID_RECORD,
             f'send.stanza.to: U+0000 at byte {len(ALICE)} is not an XML 1.0 character'),
            ('account', f'{BOT}\x00zzz'.encode(), alice, b'nul-account', ERR_BAD_REQUEST,
             f'account: U+0000 at byte {len(BOT)} is not an XML 1.0 character'),
            ('bad UTF-8', BOT, alice, b'caf\xc3', ERR_INVALID_RECORD,
             'send.stanza.body.text: invalid UTF-8 at byte 3'),
            ('control char', BOT, alice, b'bell\x07', ERR_INVALID_RECORD,
             'send.stanza.body.text: U+0007 at byte 4 is not an XML 1.0 character'),
        ]
        for i, (name, account, to, text, want_code, want) in enumerate(cases):
            with self.subTest(name):
                code, etext, _ = send_req(f'e2e-nul-{i}', account, to, text)
                self.assertEqual((code, etext), (want_code, want))
        self.ctl('send', '--account', BOT, '--to', alice, 'after-nul')
        self.assertTrue(self.alice.wait_messages(1, body_prefix='after-nul'))
        self.assertEqual(self.alice.wait_messages(1, timeout=0.5, body_prefix='PLACE'), [])
        self.assertEqual(self.alice.wait_messages(1, timeout=0.1, body_prefix='nul-'), [])

    def test_send_with_the_full_jid_of_our_session(self):
        """The full JID from the log names the account; another full JID is
        refused with a sentence saying to use the bare JID."""
        self.ctl('send', '--account', self.fx.bot_jid, '--to', self.alice.jid, 'via-full-jid')
        self.assertTrue(self.alice.wait_messages(1, body_prefix='via-full-jid'))
        r = self.ctl('send', '--account', f'{BOT}/not-ours', '--to', ALICE, 'x', check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_UNKNOWN_ACCOUNT', r.stderr)
        self.assertIn(f'name the account by its bare JID {BOT}', r.stderr)

    def test_echo_a_body_longer_than_64_kib(self):
        """A 70,000-character body arrives and is published; sending it back
        through the bus works (request strings follow max_stanza_bytes)."""
        long_body = 'echo-' + 'x' * 70000
        mark = self.tail.mark()
        self.alice.send(BOT, long_body)
        ev = self.tail.wait(lambda e: is_message(e, 'echo-'), since=mark)[0]
        self.assertEqual(body(ev), long_body)
        raw = RawReq(self.bridge.requests)
        self.addCleanup(raw.close)
        st = (pb_varint(1, 1) + pb_bytes(6, self.alice.jid)
              + pb_bytes(10, pb_bytes(2, long_body)))
        code, text, _ = response_code(raw.request(pb_varint(1, 1) + pb_bytes(2, 'e2e-echo')
                                                  + pb_bytes(3, BOT)
                                                  + pb_bytes(12, pb_bytes(1, st))))
        self.assertEqual(code, 0, text)
        got = self.alice.wait_messages(1, body_prefix='echo-', timeout=15)
        self.assertEqual([len(m['body']) for m in got], [len(long_body)])

    def test_close_then_open_a_configured_account(self):
        """open needs nothing but the account when the configuration has its
        credentials (here the --jid flags)."""
        fx = Fixture(self.server_cls)
        self.addCleanup(fx.stop)
        fx.ctl('close', '--account', BOT)
        self.assertEqual(fx.ctl('sessions', json_out=True).get('session', []), [])
        mark = fx.tail.mark()
        fx.ctl('open', '--account', BOT)
        fx.tail.wait(lambda e: state(e) == 'STATE_ONLINE', since=mark, timeout=20)
        fx.ctl('send', '--account', BOT, '--to', fx.alice.jid, 'reopened')
        self.assertTrue(fx.alice.wait_messages(1, body_prefix='reopened'))
        r = fx.ctl('open', '--account', BOT, '--password-file', '/etc/passwd', check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_FORBIDDEN', r.stderr)
        self.assertIn('bus.allow_open_overrides', r.stderr)

    # -- reconnect and rejoin ------------------------------------------------------------------
    def test_rooms_rejoined_after_server_restart(self):
        fx = Fixture(self.server_cls)
        self.addCleanup(fx.stop)
        room = f'persist@{MUC}'
        fx.alice.join_room(room, 'alice', persistent=True)
        fx.ctl('join', '--account', BOT, '--room', room, '--nick', 'botty', '--history', '0')
        self.assertTrue(fx.alice.wait_stanza(
            lambda k, s: k == 'presence' and str(s['from']) == f'{room}/botty'))
        fx.alice.stop()
        mark, log_mark = fx.tail.mark(), fx.bridge.log_mark()
        fx.srv.restart()
        fx.tail.wait(lambda e: state(e) == 'STATE_DISCONNECTED', since=mark, timeout=20)
        fx.tail.wait(lambda e: state(e) in ('STATE_ONLINE', 'STATE_RESUMED'), since=mark,
                     timeout=45)
        fx.bridge.wait_log(f'joining {room} as botty', 10, since=log_mark)  # the daemon's rejoin
        alice = fx.new_person()
        deadline = time.monotonic() + 30
        occupants = alice.join_room(room, 'alice')
        while 'botty' not in occupants and time.monotonic() < deadline:
            alice.wait_stanza(lambda k, s: k == 'presence' and str(s['from']) == f'{room}/botty',
                              timeout=1)
            occupants = alice.occupants(room)
        self.assertIn('botty', occupants, f'bot not back in {room}\n{fx.diagnostics()}')
        # And the room works both ways again.
        fx.ctl('send', '--account', BOT, '--type', 'groupchat', '--to', room, 'back again')
        self.assertTrue(alice.wait_stanza(lambda k, s: k == 'message'
                                          and s['body'] == 'back again'))
        self.assertEqual(fx.bridge.stop(), 0, 'xpbridge did not exit 0 on SIGTERM')


    def test_presence_kept_across_server_restart(self):
        # A presence set through the bus is announced again after a fresh
        # session (the server's restart ends stream management's state).
        fx = Fixture(self.server_cls)
        self.addCleanup(fx.stop)
        fx.alice.presence(to=BOT, ptype='subscribe')
        fx.tail.wait(lambda e: is_presence(e, 'TYPE_SUBSCRIBE', ALICE))
        fx.ctl('presence', '--account', BOT, '--to', ALICE, '--type', 'subscribed')
        self.assertTrue(fx.alice.wait_stanza(lambda k, s: k == 'presence'
                                             and s['type'] == 'subscribed'))
        fx.ctl('presence', '--account', BOT, '--show', 'xa', '--status', 'kept across restarts')
        self.assertTrue(fx.alice.wait_stanza(lambda k, s: k == 'presence' and s['show'] == 'xa'
                                             and str(s['from']).startswith(BOT)))
        fx.alice.stop()
        mark = fx.tail.mark()
        fx.srv.restart()
        fx.tail.wait(lambda e: state(e) == 'STATE_DISCONNECTED', since=mark, timeout=20)
        fx.tail.wait(lambda e: state(e) == 'STATE_ONLINE', since=mark, timeout=45)
        alice = fx.new_person()

        async def bot_presence(c):  # slixmpp's roster view: what the server told alice
            return {r: dict(p) for r, p in c.client_roster.presence(BOT).items()}
        deadline, seen = time.monotonic() + 15, {}
        while time.monotonic() < deadline:
            seen = alice.run(bot_presence)
            if any(p.get('show') == 'xa' for p in seen.values()):
                break
            time.sleep(0.3)
        self.assertTrue(any(p.get('show') == 'xa' and p.get('status') == 'kept across restarts'
                            for p in seen.values()),
                        f'bot came back without its presence: {seen}\n{fx.diagnostics()}')

def _nested(depth):
    """A SendStanza whose stanza holds `depth` nested extension elements
    (Stanza.extension 50 -> Element.child 5 -> Node.element ...)."""
    el = pb_bytes(3, 'x')
    for _ in range(depth):
        el = pb_bytes(3, 'x') + pb_bytes(5, pb_bytes(_node_element_field(), el))
    st = pb_varint(1, 1) + pb_bytes(6, ALICE) + pb_bytes(50, el)
    return pb_bytes(1, st)


def _node_element_field():
    """Field number of Node.element in stanza.proto (read, not guessed)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, '..', '..', 'proto', 'xpb', 'v1', 'stanza.proto')) as f:
        text = f.read()
    m = re.search(r'message Node \{(.*?)\n\}', text, re.S)
    return int(re.search(r'Element element = (\d+);', m.group(1)).group(1))


class TestProsodyE2E(E2EMixin, unittest.TestCase):
    server_cls = Prosody


class TestEjabberdE2E(E2EMixin, unittest.TestCase):
    server_cls = Ejabberd


if __name__ == '__main__':
    unittest.main()
