"""Shared test fixtures: one scratch directory and one PKI per test process,
removed at exit; helpers to start a server for a test and always stop it."""
import atexit
import os
import shutil
import tempfile

from . import certs, procs

_state = {}


def workdir():
    if 'dir' not in _state:
        d = tempfile.mkdtemp(prefix='xpb-it-')
        os.chmod(d, 0o755)
        _state['dir'] = d
        if not os.environ.get('XPB_KEEP_TMP'):
            atexit.register(lambda: shutil.rmtree(d, ignore_errors=True))
    return _state['dir']


def pki():
    if 'pki' not in _state:
        _state['pki'] = certs.Pki(os.path.join(workdir(), 'pki'))
    return _state['pki']


def scratch(name):
    """A fresh subdirectory of the work dir for one server instance."""
    d = tempfile.mkdtemp(prefix=f'{name}-', dir=workdir())
    os.chmod(d, 0o755)
    return d


def start_server(testcase, cls, **kw):
    """Start a server for one test; it is stopped (and its ports checked
    free) in cleanup, pass or fail."""
    srv = cls(scratch(cls.kind), pki(), **kw)

    def cleanup():
        srv.stop()
        if not srv.wait_ports_closed():
            raise AssertionError(f'{srv.kind}: ports still listening after stop: '
                                 f'{set(srv.all_ports) & procs.listening_ports()}')
    testcase.addCleanup(cleanup)
    srv.start()
    return srv
