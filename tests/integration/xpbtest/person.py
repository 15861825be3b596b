"""slixmpp "persons": the people on the other end of the bridge. Each runs
its own asyncio loop in a background thread; the test thread calls blocking
helpers (start, send, wait_messages, stop) that hop onto that loop."""
import asyncio
import logging
import threading
import time

import slixmpp

log = logging.getLogger('xpbtest.person')


class _Client(slixmpp.ClientXMPP):
    def __init__(self, owner, jid, password):
        super().__init__(jid, password)
        self.owner = owner
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0199')  # answers server pings
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('message', self._on_message)
        self.add_event_handler('presence', self._on_presence)
        self.add_event_handler('failed_auth', lambda _e: owner._fail('auth failed'))
        self.add_event_handler('connection_failed', lambda e: owner._fail(f'connect: {e}'))
        self.add_event_handler('disconnected', lambda _e: owner._disconnected.set())

    async def _on_start(self, _event):
        self.send_presence()
        # A round trip after the presence: the server handles one stream's
        # stanzas in order, so we are available once the roster answer comes.
        await self.get_roster()
        self.owner.jid = str(self.boundjid)
        self.owner._online.set()

    def _on_message(self, msg):
        self.owner._record('message', {
            'from': str(msg['from']), 'to': str(msg['to']), 'id': msg['id'],
            'type': msg['type'], 'body': msg['body']})

    def _on_presence(self, pres):
        self.owner._record('presence', {
            'from': str(pres['from']), 'type': pres['type'], 'id': pres['id']})


class Person:
    """One XMPP account logged in with slixmpp over STARTTLS (or direct TLS).
    Received messages and presences are kept in arrival order."""

    def __init__(self, jid, password, ca_file, port, host='127.0.0.1', direct_tls=False):
        self.jid_bare = jid
        self.jid = None
        self._args = (jid, password, ca_file, host, port, direct_tls)
        self._loop = None
        self._thread = None
        self._client = None
        self._cond = threading.Condition()
        self._online = threading.Event()
        self._disconnected = threading.Event()
        self.error = None
        self.received = []  # (kind, dict) in arrival order

    # -- thread side -------------------------------------------------------
    def _run(self):
        jid, password, ca_file, host, port, direct = self._args
        asyncio.set_event_loop(self._loop)
        c = _Client(self, jid, password)
        c.loop = self._loop
        c.ca_certs = ca_file
        self._client = c
        c.connect(address=(host, port), use_ssl=direct, force_starttls=not direct,
                  disable_starttls=direct)
        try:
            self._loop.run_forever()
        finally:
            # Cancel slixmpp's background tasks so closing the loop is quiet.
            pending = asyncio.all_tasks(self._loop)
            for t in pending:
                t.cancel()
            if pending:
                self._loop.run_until_complete(
                    asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def _record(self, kind, d):
        with self._cond:
            self.received.append((kind, d))
            self._cond.notify_all()

    def _fail(self, why):
        self.error = why
        self._online.set()

    def _call(self, fn, *args):
        self._loop.call_soon_threadsafe(fn, *args)

    # -- test side ---------------------------------------------------------
    def start(self, timeout=15):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f'person-{self.jid_bare}')
        self._thread.start()
        if not self._online.wait(timeout) or self.error:
            err = self.error or f'no session within {timeout}s'
            self.stop()
            raise RuntimeError(f'{self.jid_bare}: {err}')
        return self

    def send(self, to, body, mtype='chat', mid=None):
        def go():
            m = self._client.make_message(mto=to, mbody=body, mtype=mtype)
            if mid:
                m['id'] = mid
            m.send()
        self._call(go)

    def send_raw(self, xml):
        self._call(self._client.send_raw, xml)

    def messages(self, body_prefix=None):
        with self._cond:
            return [d for k, d in self.received if k == 'message' and d['body']
                    and (body_prefix is None or d['body'].startswith(body_prefix))]

    def wait_messages(self, n, timeout=10, body_prefix=None):
        """Wait until at least n messages with a body (optionally starting
        with body_prefix) arrived; return them all (may be fewer on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [d for k, d in self.received if k == 'message' and d['body']
                       and (body_prefix is None or d['body'].startswith(body_prefix))]
                left = deadline - time.monotonic()
                if len(got) >= n or left <= 0:
                    return got
                self._cond.wait(left)

    def wait_quiet(self, quiet=1.0, timeout=10):
        """Wait until nothing new arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = len(self.received)
            while time.monotonic() < deadline:
                self._cond.wait(quiet)
                if len(self.received) == seen:
                    return
                seen = len(self.received)

    def stop(self, timeout=5):
        if self._thread is None:
            return
        if self._client is not None and self._loop.is_running():
            self._call(lambda: self._client.disconnect(wait=1.0))
            self._disconnected.wait(timeout)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
