"""DNS SRV discovery for real (RFC 6120 §3.2, XEP-0368): a dnsmasq on
127.0.0.1 holds each test's _xmpp-client / _xmpps-client records, the driver
resolves through it (--dns-server), Prosody listens behind the records.
No host= in `open`, so the session looks the JID's domain up itself."""
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import unittest

from xpbtest import certs, env, procs
from xpbtest.certs import DOMAIN
from xpbtest.driver import Driver, driver_path
from xpbtest.servers import Prosody

TARGET1 = 'xmpp1.other.test'  # SRV targets: names the certificate does not carry
TARGET2 = 'xmpp2.other.test'
DNSMASQ = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'


def setUpModule():
    path = driver_path()
    if not path or not os.access(path, os.X_OK):
        if os.environ.get('XPB_DRIVER'):
            raise FileNotFoundError(f'XPB_DRIVER={path} is not executable')
        raise unittest.SkipTest('xpb_session_driver not built (set XPB_DRIVER)')
    if not os.access(DNSMASQ, os.X_OK):
        raise unittest.SkipTest('dnsmasq not installed (tools/deps.sh installs dnsmasq-base)')


def free_port_tcp_udp():
    """A port free for both TCP and UDP on 127.0.0.1 (dnsmasq takes both)."""
    for _ in range(50):
        port = procs.free_ports(1)[0]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(('127.0.0.1', port))
            return port
        except OSError:
            continue
        finally:
            u.close()
    raise RuntimeError('no free port for dnsmasq')


def dns_query(port, name, qtype=1, timeout=0.5):
    """rcode of one query to 127.0.0.1:port (raises socket.timeout)."""
    qname = b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0'
    pkt = struct.pack('>HHHHHH', 0x5850, 0x0100, 1, 0, 0, 0) + qname + struct.pack('>HH', qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(pkt, ('127.0.0.1', port))
        return struct.unpack('>H', s.recv(4096)[2:4])[0] & 0xF


class Dnsmasq:
    """dnsmasq in the foreground with only the records given; everything under
    .test that is not listed is NXDOMAIN (--local), nothing goes upstream."""

    def __init__(self, testcase, records):
        self.port = free_port_tcp_udp()
        self.log_path = os.path.join(env.scratch('dnsmasq'), 'dnsmasq.log')
        argv = [DNSMASQ, '--keep-in-foreground', '--no-daemon', '--no-resolv', '--no-hosts',
                '--listen-address=127.0.0.1', '--bind-interfaces', f'--port={self.port}',
                '--conf-file=/dev/null', '--pid-file=', '--local=/test/', '--log-queries',
                *records]
        with open(self.log_path, 'wb') as log:
            self.proc = procs.spawn(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        testcase.addCleanup(self.stop)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f'dnsmasq exited ({self.proc.returncode}):\n{self.log()}')
            try:
                dns_query(self.port, DOMAIN)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f'dnsmasq does not answer:\n{self.log()}')

    def stop(self):
        procs.kill_group(self.proc, term_timeout=3.0)  # by PID (its process group)

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()[-3000:]
        except OSError:
            return ''


def srv(service, target, port, prio, weight=5, domain=DOMAIN):
    return f'--srv-host=_{service}._tcp.{domain},{target},{port},{prio},{weight}'


def a(name):
    return f'--host-record={name},127.0.0.1'


def cert_for_target_only(pki):
    """A certificate from the test CA naming only the SRV target (made once)."""
    if not os.path.exists(os.path.join(pki.dir, 'srvtarget.pem')):
        certs._make_leaf(pki.dir, 'srvtarget', 'ca', [TARGET1])
        for f in os.listdir(pki.dir):
            os.chmod(os.path.join(pki.dir, f), 0o644)
    return 'srvtarget'


class SrvTests(unittest.TestCase):
    # -- fixtures --------------------------------------------------------------
    def prosody(self, c2s_port=None, **kw):
        if c2s_port is None:
            srv = env.start_server(self, Prosody, **kw)
        else:  # a fixed c2s port (the 5222 fallback): configure by hand
            srv = Prosody(env.scratch('prosody'), env.pki(), **kw)
            srv.ports['c2s'] = c2s_port
            srv._write_config()

            def cleanup():
                srv.stop()
                self.assertTrue(srv.wait_ports_closed(), 'prosody ports still open')
            self.addCleanup(cleanup)
            srv.start()
        srv.register('alice', 'alice-pw')
        return srv

    def driver(self, dns):
        """The driver, resolving through dns (a wrapper script adds --dns-server,
        exec keeps the PID the harness stops)."""
        wd = env.scratch('driver')
        wrapper = os.path.join(wd, 'driver.sh')
        with open(wrapper, 'w') as f:
            f.write(f'#!/bin/sh\nexec "{driver_path()}" --dns-server 127.0.0.1:{dns.port} "$@"\n')
        os.chmod(wrapper, 0o755)
        d = Driver(wd, ca_file=env.pki().ca, path=wrapper)

        def teardown():
            d.kill()
            if self._failed():
                print(f'\n--- driver stderr ({self.id()}) ---\n{d.stderr_tail(60)}'
                      f'\n--- dnsmasq ---\n{dns.log()}')
        self.addCleanup(teardown)
        return d

    def setUp(self):
        self._problems = self._count_problems()

    def _count_problems(self):
        res = getattr(getattr(self, '_outcome', None), 'result', None)
        return len(res.failures) + len(res.errors) if res else 0

    def _failed(self):
        """This test failed (the result's lists also hold earlier tests)."""
        outcome = getattr(self, '_outcome', None)
        if outcome is not None and not getattr(outcome, 'success', True):
            return True
        return self._count_problems() > self._problems

    @staticmethod
    def open(d, name='alice', jid=f'alice@{DOMAIN}', **kw):
        # No host=: the session resolves the domain (SRV, then A on 5222).
        o = {'sm': 0, 'roster': 0, 'presence': 0, 'backoff_min_ms': 3000,
             'backoff_max_ms': 5000}
        o.update(kw)
        d.open(name, jid, 'alice-pw', **o)

    def online(self, d, name='alice', timeout=15):
        ev = d.wait_for('online', session=name, timeout=timeout)
        self.assertTrue(ev['jid'].startswith(f'alice@{DOMAIN}/'), ev)
        return ev

    @staticmethod
    def log(d):
        with open(d.stderr_path, errors='replace') as f:
            return f.read()

    def connects(self, d):
        """(host, port, kind) of every connection attempt, from the driver log."""
        return re.findall(r'connecting to (\S+):(\d+) \((plain TCP|direct TLS)\)', self.log(d))

    def assert_logged_in(self, srv):
        deadline = time.monotonic() + 5
        while not srv.auth_successes('alice') and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertTrue(srv.auth_successes('alice'), srv.log_tail())

    # -- one record of each kind -------------------------------------------------------
    def test_starttls_via_srv_target_with_other_name(self):
        """_xmpp-client -> xmpp1.other.test; the cert says xpb.test only: TLS
        verifies the JID's domain, not the SRV target (RFC 6120 §13.7.2.1)."""
        p = self.prosody()
        dns = Dnsmasq(self, [srv('xmpp-client', TARGET1, p.ports['c2s'], 0), a(TARGET1)])
        d = self.driver(dns)
        self.open(d)
        self.online(d)
        self.assertEqual(self.connects(d), [(TARGET1, str(p.ports['c2s']), 'plain TCP')])
        self.assertIn('STARTTLS', self.log(d))
        self.assert_logged_in(p)
        self.assertEqual(d.quit(), 0)

    def test_direct_tls_via_xmpps_srv(self):
        """_xmpps-client only (XEP-0368): TLS from the first byte, same name rule."""
        p = self.prosody()
        dns = Dnsmasq(self, [srv('xmpps-client', TARGET1, p.ports['directtls'], 0), a(TARGET1)])
        d = self.driver(dns)
        self.open(d)
        self.online(d)
        self.assertEqual(self.connects(d),
                         [(TARGET1, str(p.ports['directtls']), 'direct TLS')])
        self.assertNotIn('STARTTLS: handshake', self.log(d))
        self.assert_logged_in(p)
        self.assertEqual(d.quit(), 0)

    # -- both kinds: the lower priority number wins (XEP-0368 §3) -----------------------
    def _both(self, prio_starttls, prio_direct):
        p = self.prosody()
        dns = Dnsmasq(self, [srv('xmpp-client', TARGET1, p.ports['c2s'], prio_starttls),
                             srv('xmpps-client', TARGET2, p.ports['directtls'], prio_direct),
                             a(TARGET1), a(TARGET2)])
        d = self.driver(dns)
        self.open(d)
        self.online(d)
        self.assert_logged_in(p)
        tried = self.connects(d)
        self.assertEqual(d.quit(), 0)
        return p, tried

    def test_both_records_direct_tls_has_lower_priority(self):
        p, tried = self._both(prio_starttls=20, prio_direct=10)
        self.assertEqual(tried, [(TARGET2, str(p.ports['directtls']), 'direct TLS')])

    def test_both_records_starttls_has_lower_priority(self):
        p, tried = self._both(prio_starttls=10, prio_direct=20)
        self.assertEqual(tried, [(TARGET1, str(p.ports['c2s']), 'plain TCP')])

    # -- ordering and fail-over (RFC 2782) ------------------------------------------------
    def test_dead_first_target_falls_over_to_next(self):
        p = self.prosody()
        dead = procs.free_ports(1)[0]  # nothing listens there: connection refused
        dns = Dnsmasq(self, [srv('xmpp-client', TARGET2, p.ports['c2s'], 20, 100),
                             srv('xmpp-client', TARGET1, dead, 10, 1),
                             a(TARGET1), a(TARGET2)])
        d = self.driver(dns)
        self.open(d)
        self.online(d)
        self.assertEqual(self.connects(d), [(TARGET1, str(dead), 'plain TCP'),
                                            (TARGET2, str(p.ports['c2s']), 'plain TCP')])
        self.assert_logged_in(p)
        self.assertEqual(d.quit(), 0)

    def test_same_priority_dead_target_falls_over(self):
        """Equal priority: weight decides the order (randomly, RFC 2782); either
        way the live target is reached, and only after the dead one if at all."""
        p = self.prosody()
        dead = procs.free_ports(1)[0]
        dns = Dnsmasq(self, [srv('xmpp-client', TARGET1, dead, 10, 60),
                             srv('xmpp-client', TARGET2, p.ports['c2s'], 10, 40),
                             a(TARGET1), a(TARGET2)])
        d = self.driver(dns)
        self.open(d)
        self.online(d)
        tried = self.connects(d)
        self.assertEqual(tried[-1], (TARGET2, str(p.ports['c2s']), 'plain TCP'), tried)
        self.assertIn(tried[:-1], ([], [(TARGET1, str(dead), 'plain TCP')]))
        self.assertEqual(d.quit(), 0)

    # -- certificate naming only the SRV target: refused ----------------------------------
    def _refused_target_cert(self, record):
        p = self.prosody(cert=cert_for_target_only(env.pki()))
        dns = Dnsmasq(self, [record(p), a(TARGET1)])
        d = self.driver(dns)
        self.open(d)
        err = d.wait_for('error', session='alice', timeout=15)
        time.sleep(0.3)
        events = d.find(session='alice')
        self.assertFalse([e for e in events if e['event'] == 'online'], events)
        self.assertEqual(err['code'], 'XPB_ETLS', err)
        text = ' | '.join(str(e.get('message') or e.get('reason') or '') for e in events)
        self.assertRegex(text, re.compile(r'certificate|host ?name|xpb\.test', re.I))
        self.assertEqual(p.auth_successes('alice'), [])

    def test_cert_for_srv_target_only_refused_starttls(self):
        self._refused_target_cert(lambda p: srv('xmpp-client', TARGET1, p.ports['c2s'], 0))

    def test_cert_for_srv_target_only_refused_direct_tls(self):
        self._refused_target_cert(lambda p: srv('xmpps-client', TARGET1, p.ports['directtls'], 0))

    # -- no SRV record: the domain's address on 5222 (RFC 6120 §3.2.2) ----------------------
    def test_no_srv_falls_back_to_domain_5222(self):
        if 5222 in procs.listening_ports():
            self.skipTest('127.0.0.1:5222 is in use on this machine: fallback test skipped')
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', 5222))
            except OSError as e:
                self.skipTest(f'cannot bind 127.0.0.1:5222 ({e}): fallback test skipped')
        p = self.prosody(c2s_port=5222)
        dns = Dnsmasq(self, [a(DOMAIN)])  # A for xpb.test, no SRV at all
        d = self.driver(dns)
        self.open(d)
        self.online(d)
        self.assertEqual(self.connects(d), [(DOMAIN, '5222', 'plain TCP')])
        self.assert_logged_in(p)
        self.assertEqual(d.quit(), 0)

    # -- nothing at all: NXDOMAIN -----------------------------------------------------------
    def test_nxdomain_reports_the_domain(self):
        dns = Dnsmasq(self, [a(DOMAIN)])
        self.assertEqual(dns_query(dns.port, 'nx.test'), 3)  # the premise: NXDOMAIN
        d = self.driver(dns)
        self.open(d, jid='alice@nx.test')
        ev = d.wait_for('state', session='alice', timeout=15, state='backoff')
        self.assertRegex(ev['reason'], r'resolve\b.*\bnx\.test\b', ev)
        self.assertFalse(d.find('online', session='alice'))
        self.assertEqual(d.quit(), 0)


if __name__ == '__main__':
    unittest.main()
