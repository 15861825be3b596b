"""Issue 12, the inbound trust rules against a hostile server: the real
xpbridge logs in to xpbtest.scripted_server (STARTTLS with the test
certificate, SASL PLAIN, bind), which then sends what Prosody never would:
forged carbons, spoofed roster pushes, foreign MAM results, an unsolicited
MUC 201, stanzas to another JID, and iq requests the bridge must answer.
Each test checks what reached the bus (`xpbctl tail --json`), what the bridge
sent back to the server, the log line naming the rule and the /metrics
counter. The server runs in this process; xpbridge and xpbctl are stopped by
PID in cleanup, pass or fail."""
import os
import time
import unittest
import urllib.request

from xpbtest import env, procs
from xpbtest.bridge import Bridge, body, stanza, xpbctl_path, xpbridge_path
from xpbtest.certs import DOMAIN
from xpbtest.scripted_server import NS_CLIENT, ScriptedServer, iq_with_id, q, xml_of

BOT = f'bot@{DOMAIN}'
ROOM = f'room@conference.{DOMAIN}'
PASSTHROUGH = 'urn:xpb:test:backend'
T_TO, T_CARBON, T_ROSTER, T_MAM, T_IQ, T_ROOM = 1, 2, 4, 8, 16, 32
STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'


def setUpModule():
    for name, path in (('XPBRIDGE', xpbridge_path()), ('XPBCTL', xpbctl_path())):
        if not path or not os.access(path, os.X_OK):
            if os.environ.get(name):
                raise FileNotFoundError(f'{name}={path} is not executable')
            raise unittest.SkipTest(f'{name.lower()} not built (set {name})')


def is_body(text):
    return lambda e: body(e) == text


def carbon(outer_from, to, inner_body, direction='received'):
    return (f"<message from='{outer_from}' to='{to}' type='chat'>"
            f"<{direction} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='boss@{DOMAIN}/phone' to='{BOT}' type='chat'>"
            f"<body>{inner_body}</body></message></forwarded></{direction}></message>")


def carbon_body(ev):
    fw = ((stanza(ev).get('carbon') or {}).get('forwarded') or {}).get('stanza') or {}
    b = fw.get('body') or []
    return b[0].get('text') if b else None


def mam_body(ev):
    fw = ((stanza(ev).get('mam_result') or {}).get('forwarded') or {}).get('stanza') or {}
    b = fw.get('body') or []
    return b[0].get('text') if b else None


class Fixture:
    """A scripted server, xpbridge for bot (config file: iq settings, one
    room) with /metrics on a free port, a tail on every event."""

    def __init__(self, answer_version=False):
        self.stack = []
        try:
            self.srv = ScriptedServer(env.pki(), DOMAIN).start()
            self.stack.append(self.srv.stop)
            d = env.scratch('bridge')
            conf = os.path.join(d, 'iq.conf')
            with open(conf, 'w') as f:
                f.write('iq = { answer_version = %s; passthrough = [ "%s" ]; };\n'
                        % ('true' if answer_version else 'false', PASSTHROUGH))
            self.metrics_port = procs.free_ports(1)[0]
            self.bridge = Bridge(d, BOT, 'bot-pw', '127.0.0.1', self.srv.port, env.pki().ca,
                                 rooms=(f'{ROOM}/bot',), roster=False,
                                 extra=('--config', conf, '--metrics',
                                        f'127.0.0.1:{self.metrics_port}'))
            self.tail = self.bridge.tail()
            self.stack.append(self.tail.stop)
            self.full = self.bridge.start()
            self.stack.append(self.bridge.stop)
            self.srv.wait_bound()
            self.tail.sync(lambda i: self.srv.send(
                f"<message from='alice@{DOMAIN}/pc' to='{self.full}'><body>sync-{i}</body>"
                "</message>"), lambda i: is_body(f'sync-{i}'))
        except BaseException:
            self.stop()
            raise

    def barrier(self, tag):
        """A plain message after the stanzas under test: once it is on the
        bus, everything sent before it has been handled (one stream, in order)."""
        text = f'barrier-{tag}-{time.monotonic_ns()}'
        self.srv.send(f"<message from='alice@{DOMAIN}/pc' to='{BOT}'><body>{text}</body></message>")
        self.tail.wait(is_body(text), timeout=10)

    def metric(self, rule):
        with urllib.request.urlopen(f'http://127.0.0.1:{self.metrics_port}/metrics',
                                    timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith('xpb_inbound_trust_total{') and f'rule="{rule}"' in line:
                return int(line.rsplit(' ', 1)[1])
        raise AssertionError(f'no xpb_inbound_trust_total for {rule} in /metrics:\n{text}')

    def stop(self):
        while self.stack:
            fn = self.stack.pop()
            try:
                fn()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {fn}: {e}')


class TrustTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture()
        cls.srv, cls.bridge, cls.tail = cls.fx.srv, cls.fx.bridge, cls.fx.tail

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()

    def iq_answer(self, xml, id_, timeout=10):
        mark = self.srv.mark()
        self.srv.send(xml)
        got = self.srv.wait_for(iq_with_id(id_), timeout, since=mark)
        self.assertTrue(got, f'no answer to iq {id_}; log:\n{self.bridge.log_tail(15)}')
        return got[0]

    # -- carbons (XEP-0280 §11) ----------------------------------------------------------
    def test_forged_carbon_dropped_genuine_published_with_trust(self):
        before = self.fx.metric('carbon_not_own_account')
        mark, lmark = self.tail.mark(), self.bridge.log_mark()
        self.srv.send(carbon('eve@evil.example', self.fx.full, 'forged-wire-money'))
        self.srv.send(carbon(BOT, self.fx.full, 'genuine-carbon', 'sent'))
        self.fx.barrier('carbon')
        self.assertFalse(self.tail.find(lambda e: carbon_body(e) == 'forged-wire-money', mark),
                         'the forged carbon reached the bus')
        got = self.tail.find(lambda e: carbon_body(e) == 'genuine-carbon', mark)
        self.assertEqual(len(got), 1, self.tail.events[-5:])
        self.assertEqual(got[0].get('trust'), T_TO | T_CARBON)
        self.bridge.wait_log('dropped carbon: outer from eve@evil.example is not our bare JID', 5,
                             since=lmark)
        self.assertEqual(self.fx.metric('carbon_not_own_account'), before + 1)

    # -- roster pushes (RFC 6121 §2.1.6) ---------------------------------------------------
    def test_spoofed_roster_push_dropped_genuine_answered(self):
        mark, smark = self.tail.mark(), self.srv.mark()
        self.srv.send("<iq type='set' id='push-evil' from='eve@evil.example'>"
                      "<query xmlns='jabber:iq:roster'><item jid='eve@evil.example' "
                      "subscription='both'/></query></iq>")
        ok = self.iq_answer("<iq type='set' id='push-ok'><query xmlns='jabber:iq:roster'>"
                            f"<item jid='carol@{DOMAIN}' subscription='to'/></query></iq>",
                            'push-ok')
        self.assertEqual(ok.get('type'), 'result', xml_of(ok))
        self.fx.barrier('roster')
        self.assertFalse(self.srv.find(iq_with_id('push-evil'), smark),
                         'the bridge answered the spoofed push (RFC 6121 §2.1.6 says ignore it)')
        pushes = self.tail.find(lambda e: stanza(e).get('roster') is not None, mark)
        self.assertEqual([stanza(e)['id'] for e in pushes], ['push-ok'], pushes)
        self.assertEqual(pushes[0].get('trust'), T_TO | T_ROSTER)
        self.assertGreaterEqual(self.fx.metric('roster_push_not_own_account'), 1)

    # -- MAM (XEP-0313 §5) -----------------------------------------------------------------
    def test_foreign_mam_result_dropped_ours_published(self):
        mark = self.tail.mark()
        self.srv.send(f"<message from='{BOT}' to='{self.fx.full}'><result xmlns='urn:xmpp:mam:2' "
                      "queryid='never-asked' id='a1'><forwarded xmlns='urn:xmpp:forward:0'>"
                      f"<message xmlns='jabber:client' from='boss@{DOMAIN}' to='{BOT}'>"
                      "<body>mam-forged</body></message></forwarded></result></message>")
        self.fx.barrier('mam-forged')
        self.assertFalse(self.tail.find(lambda e: mam_body(e) == 'mam-forged', mark))

        def archive(conn, el):  # answer the bridge's MAM query: one result, then fin
            query = el.find('{urn:xmpp:mam:2}query')
            if el.tag != q(NS_CLIENT, 'iq') or query is None:
                return False
            qid = query.get('queryid')
            conn.write(f"<message from='{BOT}' to='{conn.jid}'><result xmlns='urn:xmpp:mam:2' "
                       f"queryid='{qid}' id='a2'><forwarded xmlns='urn:xmpp:forward:0'>"
                       f"<message xmlns='jabber:client' from='boss@{DOMAIN}' to='{BOT}'>"
                       "<body>mam-genuine</body></message></forwarded></result></message>")
            conn.write(f"<iq type='result' id='{el.get('id')}' to='{conn.jid}'>"
                       "<fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>")
            return True
        self.srv.hooks.append(archive)
        self.addCleanup(self.srv.hooks.remove, archive)
        r = self.bridge.ctl('iq', '--account', BOT, '--xml',
                            "<iq type='set'><query xmlns='urn:xmpp:mam:2' queryid='f27'/></iq>")
        self.assertIn('fin', r.stdout)
        got = self.tail.wait(lambda e: mam_body(e) == 'mam-genuine', since=mark)
        self.assertEqual(got[0].get('trust'), T_TO | T_MAM)
        # The query is over (fin came): the same queryid is no longer ours.
        self.srv.send(f"<message from='{BOT}'><result xmlns='urn:xmpp:mam:2' queryid='f27' "
                      "id='a3'><forwarded xmlns='urn:xmpp:forward:0'><message "
                      f"xmlns='jabber:client' from='boss@{DOMAIN}'><body>mam-late</body>"
                      "</message></forwarded></result></message>")
        self.fx.barrier('mam-late')
        self.assertFalse(self.tail.find(lambda e: mam_body(e) == 'mam-late', mark))
        self.assertGreaterEqual(self.fx.metric('mam_result_not_our_query'), 2)

    # -- MUC self-presence (XEP-0045 §10.1.2) -----------------------------------------------
    def test_unsolicited_muc_201_not_configured_joined_room_is(self):
        smark = self.srv.mark()
        owner = lambda el: (el.tag == q(NS_CLIENT, 'iq') and  # noqa: E731
                            el.find('{http://jabber.org/protocol/muc#owner}query') is not None)
        self.srv.send("<presence from='trap@conference.evil.example/bot' to='"
                      f"{self.fx.full}'><x xmlns='http://jabber.org/protocol/muc#user'>"
                      "<item affiliation='owner' role='moderator'/><status code='110'/>"
                      "<status code='201'/></x></presence>")
        self.fx.barrier('muc-trap')
        self.assertFalse(self.srv.find(owner, smark),
                         'the bridge configured a room it never asked to join')
        # The room the bridge joins (--room) gets the instant-room form.
        self.srv.send(f"<presence from='{ROOM}/bot' to='{self.fx.full}'>"
                      "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' "
                      "role='moderator'/><status code='110'/><status code='201'/></x></presence>")
        got = self.srv.wait_for(owner, 10, since=smark)
        self.assertEqual([el.get('to') for el in got], [ROOM])

    # -- to (RFC 6120 §8.1.1) ----------------------------------------------------------------
    def test_stanza_to_another_jid_dropped(self):
        mark, lmark = self.tail.mark(), self.bridge.log_mark()
        self.srv.send(f"<message from='alice@{DOMAIN}/pc' to='eve@{DOMAIN}'>"
                      "<body>not-for-us</body></message>")
        self.srv.send(f"<message from='alice@{DOMAIN}/pc' to='{BOT}/other-resource'>"
                      "<body>not-for-us-either</body></message>")
        self.fx.barrier('to')
        self.assertFalse(self.tail.find(lambda e: (body(e) or '').startswith('not-for-us'), mark))
        self.bridge.wait_log(f'to eve@{DOMAIN} is neither our bare nor our full JID', 5,
                             since=lmark)
        self.assertGreaterEqual(self.fx.metric('to_not_account'), 2)
        ok = self.tail.find(lambda e: (body(e) or '').startswith('barrier-to'), mark)
        self.assertEqual(ok[0].get('trust'), T_TO)

    # -- iq requests the bridge answers (RFC 6120 §8.2.3, §8.4) ---------------------------------
    def test_iq_ping_answered(self):
        a = self.iq_answer(f"<iq type='get' id='ping-1' from='{DOMAIN}'>"
                           "<ping xmlns='urn:xmpp:ping'/></iq>", 'ping-1')
        self.assertEqual(a.get('type'), 'result', xml_of(a))

    def test_iq_disco_info_answered(self):
        a = self.iq_answer(f"<iq type='get' id='disco-1' from='alice@{DOMAIN}/pc'>"
                           "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
                           'disco-1')
        self.assertEqual((a.get('type'), a.get('to')), ('result', f'alice@{DOMAIN}/pc'))
        qr = a.find('{http://jabber.org/protocol/disco#info}query')
        ident = qr.find('{http://jabber.org/protocol/disco#info}identity')
        self.assertEqual((ident.get('category'), ident.get('type')), ('client', 'bot'))
        feats = {f.get('var') for f in qr.findall('{http://jabber.org/protocol/disco#info}feature')}
        self.assertLessEqual({'http://jabber.org/protocol/disco#info', 'urn:xmpp:ping',
                              PASSTHROUGH}, feats)
        self.assertNotIn('jabber:iq:version', feats)  # off by default

    def test_iq_version_off_by_default_unknown_unavailable(self):
        mark = self.tail.mark()
        for id_, payload in (('ver-1', "<query xmlns='jabber:iq:version'/>"),
                             ('unk-1', "<query xmlns='urn:example:nobody'/>"),
                             ('unk-2', "<x xmlns='urn:example:nobody'/>")):
            kind = 'set' if id_ == 'unk-2' else 'get'
            a = self.iq_answer(f"<iq type='{kind}' id='{id_}' from='alice@{DOMAIN}/pc'>"
                               f"{payload}</iq>", id_)
            self.assertEqual(a.get('type'), 'error', xml_of(a))
            err = a.find(q(NS_CLIENT, 'error'))
            self.assertEqual(err.get('type'), 'cancel')
            self.assertIsNotNone(err.find(f'{{{STANZAS}}}service-unavailable'), xml_of(a))
        self.fx.barrier('iq-unknown')
        self.assertFalse(self.tail.find(lambda e: stanza(e).get('id') in ('ver-1', 'unk-1',
                                                                          'unk-2'), mark))

    def test_iq_passthrough_published_not_answered(self):
        mark, smark = self.tail.mark(), self.srv.mark()
        self.srv.send(f"<iq type='get' id='pass-1' from='alice@{DOMAIN}/pc'>"
                      f"<query xmlns='{PASSTHROUGH}'/></iq>")
        got = self.tail.wait(lambda e: stanza(e).get('id') == 'pass-1', since=mark)
        self.assertEqual(got[0].get('trust'), T_TO)
        self.fx.barrier('pass')
        self.assertFalse(self.srv.find(iq_with_id('pass-1'), smark),
                         'the bridge answered an iq that iq.passthrough gives to backends')

    def test_unmatched_and_wrong_peer_responses(self):
        mark = self.tail.mark()
        self.srv.send(f"<iq type='result' id='nobody-asked' from='alice@{DOMAIN}/pc'/>")
        got = self.tail.wait(lambda e: stanza(e).get('id') == 'nobody-asked', since=mark)
        self.assertEqual(got[0].get('trust'), T_TO)  # published, not marked as matched

        hold = []

        def swallow(conn, el):  # keep the bridge's iq to alice unanswered
            if el.tag == q(NS_CLIENT, 'iq') and el.get('to') == f'alice@{DOMAIN}/pc':
                hold.append(el)
                return True
            return False
        self.srv.hooks.append(swallow)
        self.addCleanup(self.srv.hooks.remove, swallow)
        ctl = procs.spawn([self.bridge.ctl_path, 'iq', '--requests', self.bridge.requests,
                           '--account', BOT, '--to', f'alice@{DOMAIN}/pc', '--json', '--ping'],
                          stdout=__import__('subprocess').PIPE, stderr=__import__('subprocess').PIPE)
        self.addCleanup(procs.kill_group, ctl, 1.0)
        deadline = time.monotonic() + 10
        while not hold and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(hold, 'the ping never reached the server')
        id_ = hold[0].get('id')
        self.srv.send(f"<iq type='result' id='{id_}' from='eve@evil.example'/>")  # spoofed
        self.fx.barrier('wrong-peer')
        self.assertIsNone(ctl.poll(), 'the spoofed response answered the request')
        self.srv.send(f"<iq type='result' id='{id_}' from='alice@{DOMAIN}/pc'/>")
        out, err = ctl.communicate(timeout=10)
        self.assertEqual(ctl.returncode, 0, err)
        self.assertIn(f'alice@{DOMAIN}/pc', out.decode())
        got = self.tail.wait(lambda e: stanza(e).get('id') == id_, since=mark)
        self.assertEqual([e.get('trust') for e in got], [T_TO | T_IQ])
        self.assertGreaterEqual(self.fx.metric('iq_response_wrong_peer'), 1)


class VersionTest(unittest.TestCase):
    """iq.answer_version = true: jabber:iq:version is answered (XEP-0092)."""

    def test_version_answered_when_configured(self):
        fx = Fixture(answer_version=True)
        self.addCleanup(fx.stop)
        mark = fx.srv.mark()
        fx.srv.send(f"<iq type='get' id='ver-2' from='alice@{DOMAIN}/pc'>"
                    "<query xmlns='jabber:iq:version'/></iq>")
        got = fx.srv.wait_for(iq_with_id('ver-2'), 10, since=mark)
        self.assertTrue(got)
        a = got[0]
        self.assertEqual(a.get('type'), 'result', xml_of(a))
        self.assertEqual(a.findtext('{jabber:iq:version}query/{jabber:iq:version}name'),
                         'xpbridge')
        self.assertTrue(a.findtext('{jabber:iq:version}query/{jabber:iq:version}version'))
        self.assertEqual(fx.metric('iq_version'), 1)


if __name__ == '__main__':
    unittest.main()
