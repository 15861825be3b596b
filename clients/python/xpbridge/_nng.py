"""ctypes binding of the few NNG calls a bus client needs (Debian's
libnng.so.1, NNG 1.5): SUB and REQ sockets, options, send and receive.
Every ctypes call releases the GIL, so a blocking receive does not stall
other threads."""
import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger('xpbridge')
CLOSE_BOUND_S = 2.0  # Socket.close waits no longer (NNG 1.5.2 can hang in nng_close)
stuck_closes = 0  # closes that passed CLOSE_BOUND_S in this process

# nng.h
FLAG_ALLOC = 1
FLAG_NONBLOCK = 2
ETIMEDOUT = 5
ECLOSED = 7
OPT_RECVMAXSZ = b'recv-size-max'
OPT_RECVTIMEO = b'recv-timeout'
OPT_SENDTIMEO = b'send-timeout'
OPT_SUB_SUBSCRIBE = b'sub:subscribe'
OPT_REQ_RESENDTIME = b'req:resend-time'
OPT_RECONNMINT = b'reconnect-time-min'
OPT_RECONNMAXT = b'reconnect-time-max'


class _Socket(ctypes.Structure):
    _fields_ = [('id', ctypes.c_uint32)]  # nng_socket is a struct holding an id


class NngError(OSError):
    """An NNG call failed: errno is the NNG error number (nng.h)."""


_lib = None


def lib():
    """libnng, loaded once; OSError naming the package when it is missing."""
    global _lib
    if _lib is not None:
        return _lib
    name = 'libnng.so.1'
    try:
        l = ctypes.CDLL(name)
    except OSError:
        found = ctypes.util.find_library('nng')
        if not found:
            raise OSError(f'cannot load {name}: install Debian\'s libnng1') from None
        l = ctypes.CDLL(found)
    S, P, sz = _Socket, ctypes.c_void_p, ctypes.c_size_t
    for fn, args in (('nng_req0_open', [ctypes.POINTER(S)]),
                     ('nng_sub0_open', [ctypes.POINTER(S)]),
                     ('nng_dial', [S, ctypes.c_char_p, P, ctypes.c_int]),
                     ('nng_socket_set', [S, ctypes.c_char_p, P, sz]),
                     ('nng_socket_set_ms', [S, ctypes.c_char_p, ctypes.c_int32]),
                     ('nng_socket_set_size', [S, ctypes.c_char_p, sz]),
                     ('nng_send', [S, P, sz, ctypes.c_int]),
                     ('nng_recv', [S, P, ctypes.POINTER(sz), ctypes.c_int]),
                     ('nng_close', [S])):
        f = getattr(l, fn)
        f.argtypes, f.restype = args, ctypes.c_int
    l.nng_free.argtypes, l.nng_free.restype = [P, sz], None
    l.nng_strerror.argtypes, l.nng_strerror.restype = [ctypes.c_int], ctypes.c_char_p
    _lib = l
    return l


def _check(rv, what):
    if rv != 0:
        text = lib().nng_strerror(rv).decode('utf-8', 'replace')
        raise NngError(rv, f'{what}: {text}')


class Socket:
    """One NNG socket: kind is 'req' or 'sub'. dial() is non-blocking, so the
    socket connects (and reconnects) in the background whenever the bridge
    is there."""

    def __init__(self, kind):
        self._s = _Socket()
        _check(getattr(lib(), f'nng_{kind}0_open')(ctypes.byref(self._s)), f'nng_{kind}0_open')
        self.closed = False

    def set_bytes(self, opt, value):
        buf = ctypes.create_string_buffer(value, len(value))
        _check(lib().nng_socket_set(self._s, opt, buf, len(value)), opt.decode())

    def set_ms(self, opt, ms):
        _check(lib().nng_socket_set_ms(self._s, opt, int(ms)), opt.decode())

    def set_size(self, opt, n):
        _check(lib().nng_socket_set_size(self._s, opt, n), opt.decode())

    def dial(self, url):
        _check(lib().nng_dial(self._s, url.encode(), None, FLAG_NONBLOCK), f'nng_dial {url}')

    def send(self, data):
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        _check(lib().nng_send(self._s, buf, len(data), 0), 'nng_send')

    def recv(self):
        """One message as bytes; NngError(ETIMEDOUT) after the receive timeout."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        _check(lib().nng_recv(self._s, ctypes.byref(p), ctypes.byref(n), FLAG_ALLOC), 'nng_recv')
        try:
            return ctypes.string_at(p, n.value)
        finally:
            lib().nng_free(p, n)

    def close(self, bound_s=CLOSE_BOUND_S):
        """nng_close, waiting at most bound_s seconds. NNG 1.5.2 (Debian 12)
        can hang for good closing a socket while a message is being read
        (a SUB the bridge publishes to): the close then goes on in a daemon
        thread, counted in stuck_closes and logged, and the process carries
        on. Once it happened, NNG's reaper thread is stuck: later closes in
        the process wait the bound too (docs/bus.md, "Closing a socket")."""
        global stuck_closes
        if self.closed:
            return True
        self.closed = True
        t = threading.Thread(target=lib().nng_close, args=(self._s,), daemon=True,
                             name='xpbridge-nng-close')
        t.start()
        t.join(bound_s)
        if not t.is_alive():
            return True
        stuck_closes += 1
        log.warning('nng_close did not return within %.1f s (NNG 1.5.2 close defect, '
                    'docs/bus.md "Closing a socket"); left to the process exit', bound_s)
        return False
