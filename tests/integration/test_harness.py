"""Self-test of the integration harness (no xpbridge code involved): each
server starts, two slixmpp persons log in over STARTTLS with SCRAM and
exchange a message, the server restarts, and after stop no process or
listening port is left."""
import time
import unittest

from xpbtest import env, procs
from xpbtest.certs import DOMAIN
from xpbtest.person import Person
from xpbtest.servers import Ejabberd, Prosody


class HarnessMixin:
    server_cls = None

    def _persons(self, srv, direct_tls=False):
        srv.register('alice', 'alice-pw')
        srv.register('bob', 'bob-pw')
        port = srv.ports['directtls' if direct_tls else 'c2s']
        a = Person(f'alice@{DOMAIN}', 'alice-pw', env.pki().ca, port, direct_tls=direct_tls)
        b = Person(f'bob@{DOMAIN}', 'bob-pw', env.pki().ca, port, direct_tls=direct_tls)
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        return a.start(), b.start()

    def _exchange(self, a, b, text):
        a.send(f'bob@{DOMAIN}', text)
        got = b.wait_messages(1, timeout=10, body_prefix=text)
        self.assertEqual([m['body'] for m in got], [text])
        self.assertTrue(got[0]['from'].startswith(f'alice@{DOMAIN}/'))

    def test_starttls_scram_message_restart_stop(self):
        srv = env.start_server(self, self.server_cls)
        a, b = self._persons(srv)
        self._exchange(a, b, 'hello before restart')
        a.stop()
        b.stop()
        srv.restart()
        a, b = self._persons(srv)
        self._exchange(a, b, 'hello after restart')
        a.stop()
        b.stop()
        proc = srv.proc
        srv.stop()
        self.assertFalse(procs.group_alive(proc), 'server processes left after stop')
        self.assertTrue(srv.wait_ports_closed(), 'ports still listening after stop')

    def test_direct_tls_scram_sha256_only(self):
        srv = env.start_server(self, self.server_cls, sasl=('SCRAM-SHA-256',))
        a, b = self._persons(srv, direct_tls=True)
        self._exchange(a, b, 'direct tls sha256')
        deadline = time.monotonic() + 5  # ejabberd writes its log late
        while not srv.auth_successes('alice') and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = srv.auth_successes('alice')
        self.assertTrue(lines, 'no successful login in the server log')
        if isinstance(srv, Ejabberd):
            self.assertIn(' SCRAM-SHA-256 ', lines[0])

    def test_register_many(self):
        srv = env.start_server(self, self.server_cls)
        users = srv.register_many(50, prefix='bulk')
        p = Person(f'{users[49][0]}@{DOMAIN}', users[49][1], env.pki().ca, srv.ports['c2s'])
        self.addCleanup(p.stop)
        p.start()
        self.assertTrue(p.jid.startswith(f'bulk49@{DOMAIN}/'))


class TestProsodyHarness(HarnessMixin, unittest.TestCase):
    server_cls = Prosody


class TestEjabberdHarness(HarnessMixin, unittest.TestCase):
    server_cls = Ejabberd


if __name__ == '__main__':
    unittest.main()
