"""Test PKI made at run time with the openssl CLI: a private CA, a server
certificate for xpb.test signed by it, an unrelated second CA (wrong-CA test)
and a certificate for another name (wrong-hostname test)."""
import os
import subprocess

DOMAIN = 'xpb.test'
MUC = 'conference.xpb.test'


def _ossl(*args, cwd):
    subprocess.run(['openssl', *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_ca(d, name, cn):
    _ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
          '-keyout', f'{name}.key', '-out', f'{name}.crt', '-subj', f'/CN={cn}',
          '-addext', 'basicConstraints=critical,CA:TRUE',
          '-addext', 'keyUsage=critical,keyCertSign,cRLSign', cwd=d)


def _make_leaf(d, name, ca, names):
    san = ','.join(f'DNS:{n}' for n in names)
    ext = os.path.join(d, f'{name}.ext')
    with open(ext, 'w') as f:
        f.write(f'subjectAltName={san}\nbasicConstraints=CA:FALSE\n'
                'keyUsage=digitalSignature,keyEncipherment\n'
                'extendedKeyUsage=serverAuth,clientAuth\n')
    _ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f'{name}.key',
          '-out', f'{name}.csr', '-subj', f'/CN={names[0]}', cwd=d)
    _ossl('x509', '-req', '-in', f'{name}.csr', '-CA', f'{ca}.crt',
          '-CAkey', f'{ca}.key', '-CAcreateserial', '-days', '2',
          '-out', f'{name}.crt', '-extfile', ext, cwd=d)
    # ejabberd wants key and chain in one PEM file.
    with open(os.path.join(d, f'{name}.pem'), 'w') as out:
        for part in (f'{name}.key', f'{name}.crt', f'{ca}.crt'):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())


class Pki:
    """Files in `d`: ca.crt (trust this), otherca.crt (unrelated CA),
    good.{key,crt,pem} (xpb.test + conference.xpb.test, signed by ca),
    wrongname.{key,crt,pem} (other.test, signed by ca)."""

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        _make_ca(d, 'ca', 'xpb test CA')
        _make_ca(d, 'otherca', 'unrelated test CA')
        _make_leaf(d, 'good', 'ca', [DOMAIN, MUC])
        _make_leaf(d, 'wrongname', 'ca', ['other.test', 'conference.other.test'])
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)
        self.ca = os.path.join(d, 'ca.crt')
        self.other_ca = os.path.join(d, 'otherca.crt')

    def cert(self, which):
        return (os.path.join(self.dir, f'{which}.crt'),
                os.path.join(self.dir, f'{which}.key'),
                os.path.join(self.dir, f'{which}.pem'))
