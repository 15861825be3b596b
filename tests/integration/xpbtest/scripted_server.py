"""A small scripted XMPP server for tests that need a server sending what
Prosody never would (forged carbons, spoofed roster pushes, foreign MAM
results, unsolicited MUC status codes). Python 3 stdlib only.

One listener on 127.0.0.1 and a free port; each client connection gets its
own thread: stream header, STARTTLS (required) with the harness's test
certificate, SASL PLAIN checked against `users`, resource bind. After bind
the test sends whatever stanzas it likes with send(); everything the client
sends after bind is recorded (received / wait_for). iq get/set from the
client that no hook claims are answered with an empty result, so the
client's own housekeeping (roster, pings) goes on."""
import base64
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET

NS_CLIENT = 'jabber:client'
NS_STREAMS = 'http://etherx.jabber.org/streams'
NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'


def q(ns, name):
    return f'{{{ns}}}{name}'


class _Stream:
    """Incremental parse of one XML stream (reset after STARTTLS and SASL):
    yields ('open', attrs), ('stanza', element), ('close', None)."""

    def __init__(self):
        self.parser = ET.XMLPullParser(events=('start', 'end'))
        self.depth = 0

    def feed(self, data):
        self.parser.feed(data)
        out = []
        for ev, el in self.parser.read_events():
            if ev == 'start':
                self.depth += 1
                if self.depth == 1:
                    out.append(('open', dict(el.attrib)))
            else:
                self.depth -= 1
                if self.depth == 1:
                    out.append(('stanza', el))
                elif self.depth == 0:
                    out.append(('close', None))
        return out


class Conn:
    def __init__(self, server, sock):
        self.server, self.sock = server, sock
        self.lock = threading.Lock()
        self.jid = None
        self.closed = False

    def write(self, text):
        with self.lock:
            if not self.closed:
                self.sock.sendall(text.encode('utf-8'))

    def read_events(self, stream):
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError('client closed')
            evs = stream.feed(data)
            if evs:
                return evs

    def next_event(self, stream, pending):
        while not pending:
            pending.extend(self.read_events(stream))
        return pending.pop(0)

    def header(self, stream, pending, features):
        ev, attrs = self.next_event(stream, pending)
        if ev != 'open':
            raise ConnectionError(f'expected a stream header, got {ev}')
        self.write("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                   f"xmlns:stream='{NS_STREAMS}' id='s{id(self)}' from='{self.server.domain}' "
                   f"version='1.0'><stream:features>{features}</stream:features>")

    def run(self):
        try:
            self._negotiate()
            self._serve()
        except (ConnectionError, OSError, ssl.SSLError, ET.ParseError) as e:
            self.server.errors.append(repr(e))
        finally:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def _negotiate(self):
        s, pending = _Stream(), []
        self.header(s, pending, f"<starttls xmlns='{NS_TLS}'><required/></starttls>")
        ev, el = self.next_event(s, pending)
        if ev != 'stanza' or el.tag != q(NS_TLS, 'starttls'):
            raise ConnectionError(f'expected <starttls/>, got {el.tag if el is not None else ev}')
        self.write(f"<proceed xmlns='{NS_TLS}'/>")
        self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        s, pending = _Stream(), []
        self.header(s, pending, f"<mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism>"
                                "</mechanisms>")
        ev, el = self.next_event(s, pending)
        if ev != 'stanza' or el.tag != q(NS_SASL, 'auth'):
            raise ConnectionError('expected <auth/>')
        parts = base64.b64decode(el.text or '').split(b'\0')
        user, pw = parts[1].decode(), parts[2].decode()
        if self.server.users.get(user) != pw:
            self.write(f"<failure xmlns='{NS_SASL}'><not-authorized/></failure>")
            raise ConnectionError(f'bad credentials for {user}')
        self.write(f"<success xmlns='{NS_SASL}'/>")
        s, pending = _Stream(), []
        self.header(s, pending, f"<bind xmlns='{NS_BIND}'/>")
        ev, el = self.next_event(s, pending)
        bind = el.find(q(NS_BIND, 'bind')) if ev == 'stanza' else None
        if bind is None:
            raise ConnectionError('expected a bind iq')
        res = bind.findtext(q(NS_BIND, 'resource')) or 'scripted'
        self.jid = f'{user}@{self.server.domain}/{res}'
        self.write(f"<iq type='result' id='{el.get('id')}'><bind xmlns='{NS_BIND}'>"
                   f"<jid>{self.jid}</jid></bind></iq>")
        self.stream, self.pending = s, pending
        self.server._bound(self)

    def _serve(self):
        while True:
            ev, el = self.next_event(self.stream, self.pending)
            if ev == 'close':
                self.write('</stream:stream>')
                return
            if ev == 'stanza':
                self.server._record(self, el)


class ScriptedServer:
    """start() / stop(); port; wait_bound(); send(xml); received; wait_for(pred)."""

    def __init__(self, pki, domain='xpb.test', users=None, cert='good'):
        crt, key, _pem = pki.cert(cert)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(crt, key)
        self.domain = domain
        self.users = users or {'bot': 'bot-pw'}
        self.received = []     # elements the client sent after bind, in order
        self.errors = []
        self.conns = []
        self.hooks = []        # fn(conn, el) -> True when it answered el itself
        self._cond = threading.Condition()
        self.sock = None

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            conn = Conn(self, c)
            with self._cond:
                self.conns.append(conn)
            threading.Thread(target=conn.run, daemon=True).start()

    def stop(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        with self._cond:
            conns = list(self.conns)
        for c in conns:
            c.closed = True
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _bound(self, conn):
        with self._cond:
            self.current = conn
            self._cond.notify_all()

    def _record(self, conn, el):
        with self._cond:
            self.received.append(el)
            self._cond.notify_all()
        for hook in list(self.hooks):
            if hook(conn, el):
                return
        if el.tag == q(NS_CLIENT, 'iq') and el.get('type') in ('get', 'set'):
            to = el.get('to')
            frm = f" from='{to}'" if to else ''
            conn.write(f"<iq type='result' id='{el.get('id')}'{frm} to='{conn.jid}'/>")

    def wait_bound(self, timeout=20):
        deadline = time.monotonic() + timeout
        with self._cond:
            while getattr(self, 'current', None) is None or self.current.jid is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f'no client bound within {timeout}s; errors {self.errors}')
                self._cond.wait(left)
            return self.current.jid

    def send(self, xml):
        self.current.write(xml)

    def mark(self):
        with self._cond:
            return len(self.received)

    def find(self, pred, since=0):
        with self._cond:
            return [e for e in self.received[since:] if pred(e)]

    def wait_for(self, pred, timeout=10, since=0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [e for e in self.received[since:] if pred(e)]
                left = deadline - time.monotonic()
                if got or left <= 0:
                    return got
                self._cond.wait(left)


def iq_with_id(id_):
    return lambda el: el.tag == q(NS_CLIENT, 'iq') and el.get('id') == id_


def xml_of(el):
    return ET.tostring(el, encoding='unicode')
