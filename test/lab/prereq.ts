/**
 * What the lab needs from the host, checked (and installed where Debian can) before any lab comes up.
 * Shared by the vitest global setup and the per-file `withLab` helper.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './lab.js';

/** Debian package → a file it installs that the lab uses. */
const PACKAGES: Record<string, string> = {
  'openssh-server': '/usr/sbin/sshd',
  'openssh-client': '/usr/bin/ssh',
  sudo: '/usr/bin/sudo',
  // useradd / usermod / userdel: the lab's users and the sudo tests' temporary users.
  passwd: '/usr/sbin/useradd',
  iproute2: '/usr/sbin/ip',
  gnupg: '/usr/bin/gpg',
  openssl: '/usr/bin/openssl',
  jq: '/usr/bin/jq',
  wget: '/usr/bin/wget',
};

/** In a withLab directory: the pid of the test process that owns the lab. */
export const OWNER_FILE = 'owner.pid';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function inCI(): boolean {
  return process.env.CI === 'true' || process.env.CI === '1';
}

/**
 * Why lab tests cannot run here, or null when they can. Not being root is the one accepted reason, and only
 * outside CI: with CI=true a lab test that cannot run is a failure, never a skip.
 */
export function labSkipReason(): string | null {
  if (isRoot()) return null;
  const reason = 'lab tests need root (network/mount namespaces, sshd on port 22); run them as root';
  if (inCI()) throw new Error(`CI=true and ${reason}`);
  return reason;
}

export function missingPackages(): string[] {
  return Object.entries(PACKAGES)
    .filter(([, file]) => !fs.existsSync(file))
    .map(([pkg]) => pkg);
}

/**
 * Install the missing Debian packages. Serialised with flock so that parallel test files do not fight over the
 * dpkg lock; services are kept from starting (no host sshd on 0.0.0.0:22) through policy-rc.d.
 */
export function ensurePackages(log: (l: string) => void = () => undefined): void {
  const missing = missingPackages();
  if (missing.length === 0) return;
  if (!isRoot()) throw new Error(`missing packages ${missing.join(' ')} and not root to install them`);
  log(`installing ${missing.join(' ')}`);
  fs.mkdirSync('/run/regen-lab', { recursive: true });
  const script = `set -e
if [ -z "$(${missingCheck()})" ]; then exit 0; fi
made_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; fi
trap '[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${Object.keys(PACKAGES).join(' ')}
`;
  const r = spawnSync('flock', ['/run/regen-lab/apt.lock', 'sh', '-c', script], { encoding: 'utf8', timeout: 600_000 });
  const still = missingPackages();
  if (r.status !== 0 || still.length > 0) {
    throw new Error(`could not install ${still.join(' ') || missing.join(' ')} (apt-get exit ${r.status}):\n${(r.stderr ?? '').slice(-2000)}`);
  }
}

function missingCheck(): string {
  return Object.values(PACKAGES)
    .map((f) => `[ -e ${f} ] || echo ${f}`)
    .join('; ');
}

/** Kernel and tool capabilities no package gives: fail loudly rather than skip. */
export function missingCapabilities(): string[] {
  const missing: string[] = [];
  for (const tool of ['/usr/bin/nsenter', '/usr/bin/unshare', '/usr/bin/setsid', '/usr/bin/flock']) {
    if (!fs.existsSync(tool)) missing.push(`${tool} (util-linux)`);
  }
  if (!isRoot()) return missing;
  const probe = `lab-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.status !== 0) missing.push(`ip netns add: ${(add.stderr ?? '').trim()}`);
  else {
    const inside = spawnSync('ip', ['netns', 'exec', probe, 'unshare', '--mount', '--uts', 'true'], { encoding: 'utf8' });
    if (inside.status !== 0) missing.push(`unshare --mount --uts in a netns: ${(inside.stderr ?? '').trim()}`);
    spawnSync('ip', ['netns', 'del', probe]);
  }
  const veth = spawnSync('ip', ['link', 'add', `lp${process.pid % 100000}`, 'type', 'bridge'], { encoding: 'utf8' });
  if (veth.status !== 0) missing.push(`ip link add type bridge: ${(veth.stderr ?? '').trim()}`);
  else spawnSync('ip', ['link', 'del', `lp${process.pid % 100000}`]);
  return missing;
}

function walk(dir: string, out: string[]): void {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
}

/** Sources the nodes run compiled (the simulated commands and the model they share) that are newer than dist/. */
export function staleDist(): string[] {
  const root = repoRoot();
  const sources: string[] = [];
  // Everything the lab runs compiled: its node commands and the model, and regen itself (cli, machines, adapters,
  // store) that lab tests start from dist/.
  for (const dir of [['test', 'lab', 'bin'], ['test', 'sim'], ['machines'], ['cli'], ['adapters'], ['store']]) walk(path.join(root, ...dir), sources);
  return sources
    .filter((src) => {
      const out = path.join(root, 'dist', path.relative(root, src)).replace(/\.ts$/, '.js');
      try {
        return fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs;
      } catch {
        return true;
      }
    })
    .map((src) => path.relative(root, src));
}

export function build(): void {
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repoRoot(), encoding: 'utf8', timeout: 300_000 });
  // tsc emits despite type errors elsewhere in the tree; what matters here is that the lab's own code is fresh.
  const stale = staleDist();
  if (stale.length > 0) {
    throw new Error(`npm run build left ${stale.join(', ')} stale; the lab runs compiled code:\n${r.stdout}${r.stderr}`);
  }
}

/** The system users the lab's nodes run as (the lab makes them too; the simulated-command tests need them first). */
const LAB_USERS: [name: string, home: string, shell: string][] = [
  ['service-discover', '/var/lib/service-discover', '/usr/sbin/nologin'],
  ['zextras', '/opt/zextras', '/bin/bash'],
];

/** As root: create the lab's system users if missing, so no lab test depends on another having brought a lab up. */
export function ensureLabUsers(): void {
  for (const [name, home, shell] of LAB_USERS) {
    if (spawnSync('getent', ['passwd', name]).status === 0) continue;
    const add = spawnSync('useradd', ['--system', '--home-dir', home, '--no-create-home', '--shell', shell, name], { encoding: 'utf8' });
    // Another run may have raced to create it.
    if (add.status !== 0 && spawnSync('getent', ['passwd', name]).status !== 0) throw new Error(`useradd ${name} failed: ${add.stderr}`);
  }
}

/** A lab test's reason to skip; under CI as root there is none to accept: the setup must have provided it. */
export function skipOrFail(reason: string | null): string | null {
  if (reason !== null && isRoot() && inCI()) throw new Error(`CI=true as root, and a lab test would skip: ${reason}`);
  return reason;
}
