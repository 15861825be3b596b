"""Bridge: a backend's side of the xpbridge bus (docs/bus.md). Events come
from a SUB socket as an iterator with gap detection; requests go over a REQ
socket with request ids, retried with the same id (the bridge answers a
resend from its cache, so a retried send is not sent twice)."""
import logging
import os
import threading
import time
import uuid

from . import _nng
from ._proto import load
from .gaps import GapDetector

bus_pb2, stanza_pb2 = load()
log = logging.getLogger('xpbridge')

API_VERSION = 1
KINDS = ('message', 'presence', 'iq', 'other', 'state', 'delivery')
# NNG_OPT_RECVMAXSZ: an event message is at most batch_bytes (256 KiB) or one
# larger stanza; a response at most a roster. NNG drops anything bigger.
RECV_MAX = 4 << 20
POLL_MS = 500  # how often a waiting events() looks at its timeout
_sleep = time.sleep  # replaced by the unit tests


def default_url(name):
    """Where the bridge binds by default (xpb_bus_default_url in bridge/bus.c)."""
    xdg = os.environ.get('XDG_RUNTIME_DIR', '')
    if xdg.startswith('/'):
        return f'ipc://{xdg}/xpbridge/{name}'
    return f'ipc:///tmp/xpbridge-{os.geteuid()}/{name}'


class BusError(Exception):
    """The bridge answered with an error: code (ErrorCode number), name
    ('ERR_UNKNOWN_ACCOUNT'), text (the bridge's sentence), request_id."""

    def __init__(self, op, code, text, request_id):
        try:
            name = bus_pb2.ErrorCode.Name(code)
        except ValueError:
            name = f'error code {code}'
        super().__init__(f'{op}: {name} ({code}): {text} [request {request_id}]')
        self.op, self.code, self.name, self.text, self.request_id = op, code, name, text, request_id


class BusTimeout(BusError, TimeoutError):
    """No answer after every try: the request may or may not have run.
    Retrying with the same request_id is safe."""

    def __init__(self, op, request_id, tries, seconds):
        super().__init__(op, -1, f'no answer from the bridge after {tries} tries of {seconds:g} s '
                         f'each (is it running?)', request_id)
        self.name = 'TIMEOUT'


def check_response(op, resp, request_id, raw=b''):
    """resp when its code is OK, else the BusError it carries. The bridge
    always writes code; proto2 parses a code newer than this client's .proto
    as absent (its default, OK), so an absent code is an error, named by
    the number read from the raw bytes."""
    if not resp.HasField('code'):
        raise BusError(op, raw_code(raw), resp.error_text or 'response without a known code',
                       resp.request_id or request_id)
    if resp.code != bus_pb2.OK:
        raise BusError(op, resp.code, resp.error_text, resp.request_id or request_id)
    return resp


def raw_code(data):
    """Response.code (field 3, varint) read from the wire bytes; -1 if absent."""
    i, code = 0, -1
    try:
        while i < len(data):
            key, i = _varint(data, i)
            wt = key & 7
            if wt == 0:
                val, i = _varint(data, i)
                code = val if key >> 3 == 3 else code
            elif wt == 2:
                n, i = _varint(data, i)
                i += n
            else:
                i += 8 if wt == 1 else 4
    except IndexError:
        pass
    return code


def _varint(data, i):
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7f) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def split_event_message(data):
    """(topic, EventBatch) of one events message: topic bytes, NUL, batch."""
    nul = data.find(b'\0')
    if nul < 0:
        raise ValueError('events message without the NUL after its topic')
    return data[:nul].decode('utf-8'), bus_pb2.EventBatch.FromString(data[nul + 1:])


def subscriptions(kinds=None, account=None):
    """The SUB prefixes for kinds (None: all) of account (None: all)."""
    if kinds is None and account is None:
        return ['']
    if isinstance(kinds, str):
        kinds = [kinds]
    for k in kinds or ():
        if k not in KINDS:
            raise ValueError(f'unknown event kind {k!r}; kinds are {", ".join(KINDS)}')
    return [f'{k}/{account}/' if account else f'{k}/' for k in (kinds or KINDS)]


def stanza_type(t):
    """'chat' -> TYPE_CHAT; a number passes through."""
    return t if isinstance(t, int) else stanza_pb2.StanzaType.Value('TYPE_' + t.upper())


def message(to, body, type='chat', id=None):
    """A message Stanza (from is filled in by the bridge)."""
    st = stanza_pb2.Stanza(kind=stanza_pb2.KIND_MESSAGE, type=stanza_type(type), to=to)
    st.body.add(text=body)
    if id:
        st.id = id
    return st


class Bridge:
    """A client of one bridge. events_url/requests_url default to the
    bridge's defaults. timeout: seconds to wait for one answer; retries:
    further tries of an unanswered (or ERR_BUSY) request, with the same id."""

    def __init__(self, events_url=None, requests_url=None, timeout=10.0, retries=2,
                 recv_max=RECV_MAX):
        self.events_url = events_url or default_url('events')
        self.requests_url = requests_url or default_url('requests')
        self.timeout, self.retries, self.recv_max = timeout, retries, recv_max
        self.gaps = []  # every Gap reported by events(), in order
        self._req = None
        self._lock = threading.Lock()
        self._prefix = uuid.uuid4().hex[:12]
        self._n = 0

    # -- requests -------------------------------------------------------------
    def new_request_id(self):
        with self._lock:
            self._n += 1
            return f'{self._prefix}-{self._n}'

    def _req_socket(self):
        if self._req is None:
            s = _nng.Socket('req')
            s.set_size(_nng.OPT_RECVMAXSZ, self.recv_max)
            s.set_ms(_nng.OPT_REQ_RESENDTIME, -1)  # we resend ourselves, same id
            s.set_ms(_nng.OPT_SENDTIMEO, int(self.timeout * 1000))
            s.dial(self.requests_url)
            self._req = s
        return self._req

    def request(self, op, value, account=None, request_id=None, wait=None):
        """Sends Request{op: value} and returns the Response; BusError when
        the bridge refuses it, BusTimeout when it never answers."""
        rid = request_id or self.new_request_id()
        req = bus_pb2.Request(api_version=API_VERSION, request_id=rid)
        if account is not None:
            req.account = account
        getattr(req, op).CopyFrom(value)
        data, wait = req.SerializeToString(), max(wait or 0, self.timeout)
        with self._lock:
            sock = self._req_socket()
            sock.set_ms(_nng.OPT_RECVTIMEO, int(wait * 1000))
            for attempt in range(self.retries + 1):
                resp, raw = self._try(sock, data)
                if resp is None:
                    log.warning('%s %s: no answer within %g s (try %d)', op, rid, wait,
                                attempt + 1)
                    continue
                if resp.code != bus_pb2.ERR_BUSY or attempt == self.retries:
                    return check_response(op, resp, rid, raw)
                _sleep(0.05 * (2 ** attempt))  # ERR_BUSY is not cached: same id again
        raise BusTimeout(op, rid, self.retries + 1, wait)

    @staticmethod
    def _try(sock, data):
        """(Response, its bytes), or (None, None) when sending or the answer
        timed out."""
        try:
            sock.send(data)
            raw = sock.recv()
        except _nng.NngError as e:
            if e.errno == _nng.ETIMEDOUT:
                return None, None
            raise
        return bus_pb2.Response.FromString(raw), raw

    def send(self, account, stanza=None, *, to=None, body=None, type='chat', request_id=None):
        """Sends a stanza (or a message to/body) as account; the SendResult."""
        if stanza is None:
            stanza = message(to, body, type)
        r = self.request('send', bus_pb2.SendStanza(stanza=stanza), account, request_id)
        return r.sent

    def iq(self, account, stanza, timeout_ms=10000, request_id=None):
        """An iq get/set; its response stanza (type result or error)."""
        r = self.request('iq', bus_pb2.SendIq(stanza=stanza, timeout_ms=timeout_ms), account,
                         request_id, wait=timeout_ms / 1000 + 2)
        return r.iq_result

    def presence(self, account, show=None, status=None, priority=None, unavailable=False,
                 to=None, type=None, request_id=None):
        p = bus_pb2.SetPresence(unavailable=unavailable)
        if show is not None:
            p.show = show if isinstance(show, int) else stanza_pb2.Show.Value('SHOW_' + show.upper())
        if status is not None:
            p.status = status
        if priority is not None:
            p.priority = priority
        if to is not None:
            p.to = to
        if type is not None:
            p.type = stanza_type(type)
        return self.request('presence', p, account, request_id)

    def join(self, account, room, nick, password=None, history_maxstanzas=None, request_id=None):
        j = bus_pb2.JoinRoom(room=room, nick=nick)
        if password is not None:
            j.password = password
        if history_maxstanzas is not None:
            j.history_maxstanzas = history_maxstanzas
        return self.request('join', j, account, request_id)

    def roster(self, account, request_id=None):
        return self.request('roster', bus_pb2.GetRoster(), account, request_id).roster

    def status(self):
        return self.request('status', bus_pb2.GetStatus()).status

    def sessions(self):
        return list(self.request('list', bus_pb2.ListSessions()).sessions.session)

    def close(self):
        with self._lock:
            if self._req is not None:
                self._req.close()
                self._req = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- events ---------------------------------------------------------------
    def replay(self, from_seq, topic_prefix='', max_events=1000):
        """One page of the bridge's journal (docs/durability.md): a
        ReplayPage whose .batch is EventBatch bytes. BusError
        ERR_REPLAY_GONE / ERR_NO_JOURNAL as the bridge answers."""
        op = bus_pb2.Replay(from_seq=from_seq, topic_prefix=topic_prefix, max_events=max_events)
        return self.request('replay', op).replay

    def replay_events(self, from_seq, subs=('',), before=None):
        """Kept events from from_seq on (below before, when given) whose
        topic starts with one of subs, in order, page by page."""
        prefix = subs[0] if len(subs) == 1 else ''
        while True:
            page = self.replay(from_seq, prefix)
            batch = bus_pb2.EventBatch.FromString(page.batch)
            for ev in batch.event:
                if before is not None and ev.seq >= before:
                    return
                if any(event_topic(ev).startswith(p) for p in subs):
                    yield ev
            if page.count == 0 or page.next_seq > page.last_seq:
                return
            from_seq = page.next_seq

    def events(self, kinds=None, account=None, resume_file=None, on_gap=None, timeout=None,
               from_seq=None):
        """Events (xpb.v1.Event) of kinds (e.g. ['message']; None: all) for
        account (bare JID; None: all), in order. Gaps (docs/bus.md) go to
        on_gap(Gap) (default: a warning in the log) and to self.gaps.
        resume_file keeps the seq of the last event the caller finished
        with (written when it asks for the next one). With a seq in it (or
        from_seq), the events after it are first replayed from the bridge's
        journal, and a gap of the live stream is replayed before the event
        after it: every event once, in order (docs/durability.md). A bridge
        without a state directory answers ERR_NO_JOURNAL: then a restart or
        loss since that seq is reported as a gap, not recovered. A first run
        (no file) starts with live events. timeout: stop after that many
        seconds without an event."""
        subs = subscriptions(kinds, account)
        det = GapDetector()
        last = _read_seq(resume_file) if resume_file else 0
        if from_seq:
            last = from_seq - 1
        sock = self._sub_socket(subs)  # first: nothing published meanwhile is missed
        try:
            resume = _Resume(self, subs, last, resume_file) if (last or from_seq) else None
            if resume is not None:
                yield from resume.replay()
                if not resume.journal:
                    det.resume_from(resume.last, subs == [''])
            yield from self._follow(sock, det, resume_file, on_gap or _log_gap, timeout, resume)
        finally:
            sock.close()

    def _sub_socket(self, subs):
        s = _nng.Socket('sub')
        s.set_size(_nng.OPT_RECVMAXSZ, self.recv_max)
        s.set_ms(_nng.OPT_RECVTIMEO, POLL_MS)
        s.set_ms(_nng.OPT_RECONNMINT, 100)
        s.set_ms(_nng.OPT_RECONNMAXT, 2000)
        for prefix in subs:
            s.set_bytes(_nng.OPT_SUB_SUBSCRIBE, prefix.encode())
        s.dial(self.events_url)
        return s

    def _follow(self, sock, det, resume_file, on_gap, timeout, resume=None):
        idle_since = time.monotonic()
        journal = resume is not None and resume.journal
        # The bridge's PUB attaches a new subscriber a moment after it dials:
        # what it published meanwhile came neither live nor (if published
        # after the replay was read) from the replay, and a hole shows only
        # at the next event. So at the first quiet poll the journal is read
        # once more from the last event delivered (it is written before it is
        # published, so by then it holds everything not received live).
        settled = not journal
        while True:
            try:
                data = sock.recv()
            except _nng.NngError as e:
                if e.errno != _nng.ETIMEDOUT:
                    raise
                if not settled:
                    settled = True
                    yield from resume.replay()
                if timeout is not None and time.monotonic() - idle_since >= timeout:
                    return
                continue
            idle_since = time.monotonic()
            try:
                topic, batch = split_event_message(data)
            except (ValueError, UnicodeDecodeError) as e:  # DecodeError is a ValueError
                log.warning('events: skipped a message that does not decode: %s', e)
                continue
            if journal:
                yield from resume.live(batch)
                continue
            for gap in det.batch(topic, batch.prev_seq, [ev.seq for ev in batch.event]):
                self.gaps.append(gap)
                on_gap(gap)
            for ev in batch.event:
                yield ev
                if resume_file:
                    _write_seq(resume_file, ev.seq)


class _Resume:
    """The reader's side of the journal (docs/durability.md, "Replay and
    resume"): replay after the last seq, then follow live, skipping what was
    delivered and replaying any hole first."""

    def __init__(self, client, subs, last, resume_file):
        self.client, self.subs, self.last, self.file = client, subs, last, resume_file
        self.journal = True

    def _deliver(self, ev):
        yield ev
        self.last = ev.seq
        if self.file:
            _write_seq(self.file, ev.seq)

    def replay(self, before=None):
        try:
            for ev in self.client.replay_events(self.last + 1, self.subs, before):
                yield from self._deliver(ev)
        except BusError as e:
            if e.name != 'ERR_NO_JOURNAL':
                raise
            log.warning('events: the bridge keeps no journal; missed events cannot be replayed')
            self.journal = False

    def live(self, batch):
        for i, ev in enumerate(batch.event):
            if ev.seq <= self.last:
                continue
            hole = (ev.seq > self.last + 1 if self.subs == ['']
                    else i == 0 and batch.prev_seq > self.last)
            if hole:
                yield from self.replay(before=ev.seq)
            if ev.seq > self.last:
                yield from self._deliver(ev)


def event_topic(ev):
    """The topic an event is published on: "<kind>/<account>/"."""
    body = ev.WhichOneof('body')
    if body == 'stanza':
        kind = {stanza_pb2.KIND_MESSAGE: 'message', stanza_pb2.KIND_PRESENCE: 'presence',
                stanza_pb2.KIND_IQ: 'iq'}.get(ev.stanza.kind, 'other')
    else:
        kind = body if body in ('state', 'delivery') else 'other'
    return f'{kind}/{ev.account}/'


def _log_gap(gap):
    log.warning('events: %s', gap)


def _read_seq(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0
    except ValueError:
        raise ValueError(f'resume_file {path} does not hold a seq number') from None


def _write_seq(path, seq):
    """Atomically: a crash leaves the old number or the new one."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        f.write(f'{seq}\n')
    os.replace(tmp, path)
