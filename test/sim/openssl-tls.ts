/**
 * Real X.509 for the lab, through openssl: what `consul tls ca create` and `consul tls cert create` produce
 * (ECDSA P-256 keys, a self-signed CA "Consul Agent CA", leaf certificates signed by it; Consul
 * command/tls/ca/create and cert/create). The unit tests' fake keeps the cheap stand-in of model.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsFace } from './model.js';

function inTemp<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'regen-tls-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

export const opensslTls: TlsFace = {
  ca() {
    return inTemp((d) => {
      openssl(d, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca-key.pem']);
      openssl(d, ['req', '-x509', '-new', '-key', 'ca-key.pem', '-sha256', '-days', '1825', '-subj', '/CN=Consul Agent CA', '-out', 'ca.pem']);
      return { pem: readFileSync(join(d, 'ca.pem'), 'utf8'), key: readFileSync(join(d, 'ca-key.pem'), 'utf8') };
    });
  },
  cert(caPem, caKey, cn) {
    return inTemp((d) => {
      writeFileSync(join(d, 'ca.pem'), caPem);
      writeFileSync(join(d, 'ca-key.pem'), caKey, { mode: 0o600 });
      openssl(d, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'key.pem']);
      openssl(d, ['req', '-new', '-key', 'key.pem', '-subj', `/CN=${cn}`, '-out', 'req.csr']);
      openssl(d, ['x509', '-req', '-in', 'req.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-sha256', '-days', '365', '-out', 'cert.pem']);
      return { pem: readFileSync(join(d, 'cert.pem'), 'utf8'), key: readFileSync(join(d, 'key.pem'), 'utf8') };
    });
  },
  verifies(caPem, certPem) {
    return inTemp((d) => {
      writeFileSync(join(d, 'ca.pem'), caPem);
      writeFileSync(join(d, 'cert.pem'), certPem);
      try {
        openssl(d, ['verify', '-CAfile', 'ca.pem', 'cert.pem']);
        return true;
      } catch {
        return false;
      }
    });
  },
};
