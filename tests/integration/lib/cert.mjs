// cert.mjs — self-signed certificates for the TLS tests, made with the
// `openssl` command line into a fresh temporary directory.
//
//   const c = makeCert();            // EC P-256, CN=localhost, 2 days
//   // c.cert, c.key: file paths; c.certPem: the certificate text, to give a
//   // client as its only trusted CA (`ws`/https: { ca: c.certPem }, curl:
//   // --cacert c.cert); c.dir: the directory; c.cleanup(): removes it.
//
// Options: type 'ec' (default) or 'rsa' (bits, default 2048); cn
// ('localhost'); days (2; negative: a certificate that has already expired);
// passphrase (the key file is then encrypted: a key the server must refuse);
// name (the file names' stem, 'server': several pairs can share one dir).
// The certificate names localhost and 127.0.0.1 (subjectAltName), so clients
// that check names accept it for either.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function openssl(args, what) {
  try {
    return execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`openssl could not ${what}: ${e.stderr?.toString().trim() || e.message}`);
  }
}

export function makeCert({
  type = 'ec',
  bits = 2048,
  cn = 'localhost',
  days = 2,
  passphrase,
  name = 'server',
  dir,
} = {}) {
  const own = !dir;
  dir ??= mkdtempSync(join(tmpdir(), 'sb-cert-'));
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const keyAlg =
    type === 'rsa'
      ? ['-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${bits}`]
      : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  try {
    openssl(['genpkey', ...keyAlg, '-out', key], 'make a key');
    const subj = ['-subj', `/CN=${cn}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'];
    if (days > 0) {
      openssl(['req', '-x509', '-new', '-key', key, '-sha256', '-days', String(days), ...subj,
        '-out', cert], 'make a certificate');
    } else {
      const csr = join(dir, `${name}.csr`);
      openssl(['req', '-new', '-key', key, ...subj, '-out', csr], 'make a request');
      // `openssl req -x509` only takes -days > 0; `openssl ca` takes dates.
      expiredCert({ dir, name, key, csr, cert, cn, days });
    }
    if (passphrase !== undefined) {
      const plain = join(dir, `${name}.plain.key`);
      renameSync(key, plain);
      openssl(['pkey', '-in', plain, '-aes-128-cbc', '-passout', `pass:${passphrase}`,
        '-out', key], 'encrypt the key');
      rmSync(plain);
    }
  } catch (e) {
    if (own) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    dir,
    cert,
    key,
    certPem: readFileSync(cert, 'utf8'),
    keyPem: readFileSync(key, 'utf8'),
    cleanup() {
      if (own) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A self-signed certificate that ended |days| days ago (and began a day
// before that), by `openssl ca` with explicit dates and a throwaway config.
function expiredCert({ dir, name, key, csr, cert, days }) {
  const fmt = (d) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  const now = Date.now();
  const end = new Date(now + days * 86400e3 - 60e3);
  const start = new Date(end.getTime() - 86400e3);
  const db = join(dir, `${name}.index`);
  const conf = join(dir, `${name}.cnf`);
  writeFileSync(db, '');
  const text = [
    '[ca]', 'default_ca = local',
    '[local]', `database = ${db}`, `new_certs_dir = ${dir}`, 'default_md = sha256',
    'policy = any', 'rand_serial = yes', 'copy_extensions = copy', 'unique_subject = no',
    '[any]', 'commonName = supplied',
  ].join('\n');
  writeFileSync(conf, text + '\n');
  openssl(['ca', '-batch', '-config', conf, '-selfsign', '-keyfile', key, '-in', csr,
    '-startdate', fmt(start), '-enddate', fmt(end), '-notext', '-out', cert],
  'make an expired certificate');
}
