"""Prosody and ejabberd test servers on 127.0.0.1: own config, data dir,
certificate and free ports chosen at run time; start/stop/restart by PID
(process group), account creation, and a choice of offered SASL mechanisms."""
import hashlib
import hmac
import json
import os
import pwd
import re
import shutil
import string
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from . import procs
from .certs import DOMAIN

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'templates')
ALL_MECHS = ('SCRAM-SHA-1', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS',
             'SCRAM-SHA-512', 'SCRAM-SHA-512-PLUS', 'PLAIN', 'DIGEST-MD5', 'X-OAUTH2',
             'ANONYMOUS', 'EXTERNAL')
ITERATIONS = 4096  # RFC 7677 minimum; keeps 200 PBKDF2 logins cheap


def _fill(name, **kw):
    with open(os.path.join(TEMPLATES, name)) as f:
        return string.Template(f.read()).substitute(**kw)


def _hash_for(sasl):
    """The one SCRAM hash the server stores keys for (both servers: per host)."""
    if 'SCRAM-SHA-256' in sasl and 'SCRAM-SHA-1' not in sasl:
        return 'SHA-256'
    return 'SHA-1'


class Server:
    """Common part. Subclasses fill in _write_config, _argv, register.

    By default the servers offer SCRAM-SHA-1-PLUS too, as both ship: every
    test then meets the -PLUS offer real deployments make (ejabberd 23.01
    offers it even over TLS 1.3, where it refuses tls-exporter)."""
    kind = '?'

    def __init__(self, tmpdir, pki=None, domain=DOMAIN, cert='good',
                 sasl=('SCRAM-SHA-1', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'PLAIN'),
                 tls_required=True,
                 tls=True, smacks=True, websocket=True, debug=False, tls12_only=False,
                 mam=False, resume_timeout=120):
        self.dir = os.path.join(tmpdir, self.kind)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(tmpdir, 0o755)
        os.chmod(self.dir, 0o755)
        if pki is None:
            from . import env  # the per-process PKI
            pki = env.pki()
        self.pki, self.domain, self.cert = pki, domain, cert
        self.sasl, self.tls_required, self.tls = tuple(sasl), tls_required, tls
        self.smacks, self.websocket, self.debug = smacks, websocket, debug
        self.tls12_only = tls12_only  # TLS 1.2 only: tls-unique channel binding
        self.mam = mam  # XEP-0313 archives: the account's, and every room's
        # XEP-0198: how long a broken stream stays resumable, in seconds
        # (Prosody smacks_hibernation_time, ejabberd mod_stream_mgmt resume_timeout).
        self.resume_timeout = int(resume_timeout)
        c2s, dtls, http, https, dist = procs.free_ports(5)
        self.ports = {'c2s': c2s, 'directtls': dtls if tls else None, 'http': http,
                      'https': https if tls else None}
        self._dist_port = dist
        self.proc = None
        self.ws_url = f'ws://127.0.0.1:{http}/xmpp-websocket'
        self.wss_url = f'wss://127.0.0.1:{https}/xmpp-websocket' if tls else None
        self._write_config()

    @property
    def all_ports(self):
        return [p for p in (*self.ports.values(), self._dist_port) if p]

    @property
    def disabled_mechs(self):
        return [m for m in ALL_MECHS if m not in self.sasl]

    def start(self, timeout=30):
        with open(self._stdout_path, 'ab') as out:  # the child keeps its own copy
            self.proc = procs.spawn(self._argv(), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, **self._popen_kw())
        try:
            for port in self._ready_ports():
                procs.wait_port(port, timeout, self.proc)
            self._after_start()
        except Exception:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f'{self.kind} did not start; log tail:\n{tail}')
        return self

    def stop(self):
        procs.kill_group(self.proc)
        self.proc = None

    def restart(self):
        self.stop()
        self.wait_ports_closed()
        self.start()

    def wait_ports_closed(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not set(self.all_ports) & procs.listening_ports():
                return True
            time.sleep(0.1)
        return False

    def _after_start(self):
        pass

    def _ready_ports(self):
        return [p for p in self.ports.values() if p]

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors='replace') as f:
                return ''.join(f.readlines()[-n:])
        except OSError as e:
            return f'(no log: {e})'

    def auth_successes(self, user):
        """Log lines in which the server reports a successful login of user."""
        try:
            with open(self.log_path, errors='replace') as f:
                return [l for l in f if self._auth_re.search(l) and f'{user}@' in l]
        except OSError:
            return []

    def register_many(self, n, prefix='u', password='pw'):
        users = [(f'{prefix}{i}', password) for i in range(n)]
        for u, p in users:
            self.register(u, p)
        return users

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def scram_keys(hash_name, password, salt, iterations=ITERATIONS):
    """StoredKey and ServerKey per RFC 5802 §3 for the given hash."""
    h = {'SHA-1': 'sha1', 'SHA-256': 'sha256'}[hash_name]
    salted = hashlib.pbkdf2_hmac(h, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b'Client Key', h).digest()
    stored = hashlib.new(h, client_key).digest()
    server = hmac.new(salted, b'Server Key', h).digest()
    return stored, server


def _lua_str(s):
    return '"' + ''.join(c if c.isalnum() or c in '-_.' else f'\\{ord(c):03d}' for c in s) + '"'


class Prosody(Server):
    kind = 'prosody'
    _auth_re = re.compile(r'Authenticated as ')

    def _write_config(self):
        d = self.dir
        os.makedirs(os.path.join(d, 'data'), exist_ok=True)
        os.makedirs(os.path.join(d, 'nocerts'), exist_ok=True)
        crt, key, _ = self.pki.cert(self.cert)
        tls = self.tls
        mods = {
            'tls_module': '"tls";' if tls else '',
            'smacks_module': '"smacks";' if self.smacks else '',
            'websocket_module': '"websocket";' if self.websocket else '',
            'mam_module': '"mam";' if self.mam else '',
            'mam_config': ('default_archive_policy = true\narchive_expires_after = "never"'
                           if self.mam else ''),
            'muc_config': ('modules_enabled = { "muc_mam" }\nmuc_log_by_default = true\n'
                           'muc_log_all_rooms = true\nmuc_log_expires_after = "never"'
                           if self.mam else ''),
        }
        cfg = _fill('prosody.cfg.lua', dir=d, domain=self.domain,
                    resume_timeout=self.resume_timeout,
                    loglevel='debug' if self.debug else 'info',
                    c2s_port=self.ports['c2s'],
                    tls_ports=self.ports['directtls'] or '',
                    http_port=self.ports['http'],
                    https_ports=self.ports['https'] or '',
                    password_hash=_hash_for(self.sasl),
                    tls_required='true' if (tls and self.tls_required) else 'false',
                    allow_plain_plaintext='false' if tls else 'true',
                    disabled_mechs='; '.join(_lua_str(m) for m in self.disabled_mechs),
                    ssl_line=(f'ssl = {{ certificate = {_lua_str(crt)}; key = {_lua_str(key)}'
                              + ('; protocol = "tlsv1_2"' if self.tls12_only else '') + ' }'
                              if tls else ''), **mods)
        self.config_path = os.path.join(d, 'prosody.cfg.lua')
        with open(self.config_path, 'w') as f:
            f.write(cfg)
        self.log_path = os.path.join(d, 'prosody.log')
        self._stdout_path = os.path.join(d, 'prosody.stdout')

    def _argv(self):
        return ['prosody', '-F', '--config', self.config_path]

    def _popen_kw(self):
        return {}

    def register(self, user, password):
        """Write the internal_hashed account file directly (Prosody reads it
        on each login, so this works while the server runs)."""
        acc = os.path.join(self.dir, 'data', self.domain.replace('.', '%2e'), 'accounts')
        os.makedirs(acc, exist_ok=True)
        salt = uuid.uuid4().hex
        stored, server = scram_keys(_hash_for(self.sasl), password, salt.encode())
        body = ('return {\n'
                f'\t["iteration_count"] = {ITERATIONS};\n'
                f'\t["salt"] = {_lua_str(salt)};\n'
                f'\t["stored_key"] = "{stored.hex()}";\n'
                f'\t["server_key"] = "{server.hex()}";\n'
                '};\n')
        tmp = os.path.join(acc, f'.{user}.tmp')
        with open(tmp, 'w') as f:
            f.write(body)
        os.rename(tmp, os.path.join(acc, f'{user.lower()}.dat'))


class Ejabberd(Server):
    """ejabberd runs as user `ejabberd`; we start `ejabberdctl foreground`
    under that uid ourselves (so ejabberdctl does not `su`), in a new process
    group, and kill the group. Accounts are made over mod_http_api (one HTTP
    POST each) because every ejabberdctl call boots an Erlang VM (~1 s)."""
    kind = 'ejabberd'
    _auth_re = re.compile(r'Accepted c2s \S+ authentication for ')

    def _write_config(self):
        d = self.dir
        self.conf_dir = os.path.join(d, 'conf')
        self.spool = os.path.join(d, 'spool')
        self.logs = os.path.join(d, 'logs')
        for sub in (self.conf_dir, self.spool, self.logs):
            os.makedirs(sub, exist_ok=True)
        _, _, pem = self.pki.cert(self.cert)
        h = _hash_for(self.sasl)
        tls_listener = ''
        if self.tls:
            tls_listener = (f'  - port: {self.ports["directtls"]}\n'
                            '    ip: "127.0.0.1"\n'
                            '    module: ejabberd_c2s\n'
                            '    max_stanza_size: 262144\n'
                            '    backlog: 1024\n'
                            '    access: c2s\n'
                            '    tls: true\n')
        https_listener = ''
        if self.tls:
            https_listener = (f'  - port: {self.ports["https"]}\n'
                              '    ip: "127.0.0.1"\n'
                              '    module: ejabberd_http\n'
                              '    backlog: 1024\n'
                              '    tls: true\n'
                              '    request_handlers:\n'
                              '      /xmpp-websocket: ejabberd_http_ws\n')
        smacks = (f'  mod_stream_mgmt:\n    resume_timeout: {self.resume_timeout}\n'
                  '    max_ack_queue: 5000\n'
                  '    resend_on_timeout: if_offline\n') if self.smacks else ''
        # Storage: scram (one hash) unless PLAIN is the only mechanism.
        plain_only = set(self.sasl) <= {'PLAIN'}
        cfg = _fill('ejabberd.yml', domain=self.domain, pem=pem, ca=self.pki.ca,
                    loglevel='debug' if self.debug else 'info',
                    password_format='plain' if plain_only else 'scram',
                    scram_hash={'SHA-1': 'sha', 'SHA-256': 'sha256'}[h],
                    disabled_mechs=', '.join(f'"{m}"' for m in self.disabled_mechs),
                    c2s_port=self.ports['c2s'],
                    starttls='true' if self.tls else 'false',
                    starttls_required='true' if (self.tls and self.tls_required) else 'false',
                    c2s_tls_options=('    protocol_options:\n      - "no_tlsv1_3"\n'
                                     if self.tls12_only else ''),
                    tls_listener=tls_listener, https_listener=https_listener,
                    http_port=self.ports['http'],
                    smacks_module=smacks,
                    # XEP-0313 archives (catch-up tests): every message, rooms too.
                    mam_module=('  mod_mam:\n    assume_mam_usage: true\n    default: always\n'
                                if self.mam else ''),
                    muc_mam_options=('    default_room_options:\n      mam: true\n'
                                     '      persistent: true\n' if self.mam else ''))
        self.config_path = os.path.join(self.conf_dir, 'ejabberd.yml')
        with open(self.config_path, 'w') as f:
            f.write(cfg)
        with open(os.path.join(self.conf_dir, 'ejabberdctl.cfg'), 'w') as f:
            f.write(_fill('ejabberdctl.cfg', node=f'xpb{self._dist_port}@localhost',
                          dist_port=self._dist_port))
        shutil.copy('/etc/ejabberd/inetrc', os.path.join(self.conf_dir, 'inetrc'))
        self.log_path = os.path.join(self.logs, 'ejabberd.log')
        self._stdout_path = os.path.join(self.logs, 'stdout.log')
        pw = pwd.getpwnam('ejabberd')
        self._uid, self._gid = pw.pw_uid, pw.pw_gid
        for root, dirs, files in os.walk(d):
            os.chown(root, self._uid, self._gid)
            for f in files:
                os.chown(os.path.join(root, f), self._uid, self._gid)

    def _ctl(self, *args):
        return ['ejabberdctl', '--config-dir', self.conf_dir, '--spool', self.spool,
                '--logs', self.logs, *args]

    def _argv(self):
        return self._ctl('foreground')

    def _popen_kw(self):
        env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': self.spool,
               'LANG': 'C.UTF-8'}
        kw = {'env': env, 'cwd': self.spool}
        if os.getuid() == 0:
            kw.update(user=self._uid, group=self._gid, extra_groups=[])
        return kw

    def _after_start(self):
        # Listeners open before modules (mod_http_api) are ready: poll the API.
        deadline = time.monotonic() + 30
        while True:
            try:
                self._api('status', {})
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _api(self, cmd, args):
        req = urllib.request.Request(f'http://127.0.0.1:{self.ports["http"]}/api/{cmd}',
                                     data=json.dumps(args).encode(),
                                     headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b'null')

    def register(self, user, password):
        """Create the account (replacing it if it exists already)."""
        args = {'user': user, 'host': self.domain, 'password': password}
        try:
            self._api('register', args)
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise
            self._api('unregister', {'user': user, 'host': self.domain})
            self._api('register', args)

    def ctl(self, *args, timeout=60):
        """Run one ejabberdctl command against this node (slow: boots a VM)."""
        return subprocess.run(self._ctl(*args), timeout=timeout, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, **self._popen_kw())


SERVERS = {'prosody': Prosody, 'ejabberd': Ejabberd}
