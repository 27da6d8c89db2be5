/**
 * Is the lab's mesh healthy after a run, judged without regen's code: over real ssh (members with the token
 * decrypted on the leader, checksums), from the database file itself (journal, backups) and from the nodes'
 * backup directories. Every check returns the problems it found, in words; none means healthy.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { stepsForRole } from '../../machines/catalogue.js';
import { sshExec, type Lab } from '../../test/lab/lab.js';

/** The files the seeds' wipe can remove (and regen backs up), listed independently of regen's code. */
const WATCHED = [
  '/etc/zextras/service-discover/config.json',
  '/etc/zextras/service-discover/main.json',
  '/etc/zextras/service-discover/cluster-credentials.tar.gpg',
  '/var/lib/service-discover/password',
  // Serf's gossip keyrings: they outlive the seeds' wipe and would keep the old key, so regen's wipe takes them.
  '/var/lib/service-discover/data/serf/local.keyring',
  '/var/lib/service-discover/data/serf/remote.keyring',
];
const WATCHED_GLOB = '/var/lib/service-discover/*.pem';
/** The password file, whose backup is recorded by size only. */
const PASSWORD_PATH = '/var/lib/service-discover/password';

/** sha256 of each watched file on each node: node → path → sha256. */
export type FileSnapshot = Record<string, Record<string, string>>;

export async function snapshotFiles(lab: Lab): Promise<FileSnapshot> {
  const out: FileSnapshot = {};
  await Promise.all(
    lab.nodes.map(async (n) => {
      const r = await sshExec(lab, n.name, `for f in ${WATCHED.join(' ')} ${WATCHED_GLOB}; do [ -f "$f" ] && sha256sum "$f"; done; true`);
      if (r.code !== 0) throw new Error(`snapshot of ${n.name} failed: ${r.stderr.trim()}`);
      out[n.name] = parseSha256sum(r.stdout);
    }),
  );
  return out;
}

function parseSha256sum(text: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{64})\s+\*?(.+)$/.exec(line.trim());
    if (m?.[1] && m[2]) files[m[2]] = m[1];
  }
  return files;
}

export interface MemberLine {
  name: string;
  address: string;
  status: string;
  type: string;
}

/** `consul members` on `leader` with the bootstrap token decrypted there with `secret` (sent on stdin). */
export async function membersSeenBy(lab: Lab, leader: string, secret: string): Promise<{ code: number; members: MemberLine[]; stderr: string }> {
  const cmd = [
    'export CONSUL_HTTP_TOKEN="$(gpg --batch -q --pinentry-mode loopback --passphrase-fd 0 -d /etc/zextras/service-discover/cluster-credentials.tar.gpg | tar xOf - consul-acl-secret.json | jq -r .SecretID)"',
    'consul members',
  ].join('; ');
  const r = await sshExec(lab, leader, cmd, { stdin: secret, timeoutMs: 30_000 });
  const members = r.stdout
    .split('\n')
    .slice(1)
    .filter((l) => l.trim())
    .map((l) => {
      const [name = '', address = '', status = '', type = ''] = l.trim().split(/\s+/);
      return { name, address, status, type };
    });
  return { code: r.code, members, stderr: r.stderr };
}

/** sha256 of each node's credentials file (null: absent), computed here from the bytes. */
export async function credentialsShas(lab: Lab): Promise<Record<string, string | null>> {
  const shas: Record<string, string | null> = {};
  await Promise.all(
    lab.nodes.map(async (n) => {
      const r = await sshExec(lab, n.name, 'f=/etc/zextras/service-discover/cluster-credentials.tar.gpg; [ -f $f ] && base64 -w0 < $f; true');
      const b64 = r.stdout.trim();
      shas[n.name] = b64 ? createHash('sha256').update(Buffer.from(b64, 'base64')).digest('hex') : null;
    }),
  );
  return shas;
}

export interface HealthReport {
  healthy: boolean;
  problems: string[];
  runId: string | null;
  leader: string | null;
  /** Journal rows by outcome (null: intent without outcome). */
  journal: Record<string, number>;
  /** Journal rows settled by a probe (an interrupted step observed on its node). */
  probed: number;
}

interface RunRowLite {
  id: string;
  status: string;
  leader: string | null;
}
interface JournalLite {
  step: string;
  node: string;
  attempt: number;
  outcome: string | null;
  probe: string | null;
}
interface BackupLite {
  node: string;
  dir: string;
  path: string;
  sha256: string;
}

/** Per node, the steps a finished run must have journaled as done (or skipped: the probe found them done), from the catalogue. */
function requiredSteps(node: string, leader: string, lab: Lab): string[] {
  const shape = { meshServers: lab.nodes.filter((n) => n.kind === 'server').length, revoke: false };
  return stepsForRole(node === leader ? 'leader' : 'follower', shape, lab.nodes.find((n) => n.name === node)?.kind ?? null)
    .filter((e) => e.chain !== 'harden')
    .map((e) => e.name);
}

/** Backups: nothing that existed before the run is lost (database, manifest and copies agree with the originals). */
async function backupProblems(lab: Lab, runId: string, backups: BackupLite[], before: FileSnapshot): Promise<string[]> {
  const problems: string[] = [];
  await Promise.all(
    lab.nodes.map(async (n) => {
      const recorded = backups.filter((b) => b.node === n.name);
      const had = before[n.name] ?? {};
      const dir = `/var/backups/regen/${runId}`;
      const r = await sshExec(lab, n.name, `cat ${dir}/manifest 2>/dev/null; echo '--copies--'; cd ${dir} 2>/dev/null && find . -type f ! -name manifest -print0 | xargs -0 -r sha256sum`);
      const [manifestText = '', copiesText = ''] = r.stdout.split('--copies--\n');
      const manifest = manifestText.split('\n').slice(1).filter((l) => l.trim());
      const copies: Record<string, string> = {};
      for (const [p, s] of Object.entries(parseSha256sum(copiesText))) copies[p.replace(/^\.\//, '/')] = s;
      if (!manifestText.startsWith('regen-backup-manifest')) problems.push(`${n.name}: no backup manifest in ${dir}`);
      for (const [file, sha] of Object.entries(had)) {
        const rec = recorded.find((b) => b.path === file);
        if (!rec) problems.push(`${n.name}: ${file} existed before the run but the database records no backup of it`);
        // The password file is recorded without a hash ('-'): its copy is still compared with the original.
        const recordedSha = file === PASSWORD_PATH ? '-' : sha;
        if (rec && rec.sha256 !== recordedSha) problems.push(`${n.name}: backup of ${file} recorded with sha256 ${rec.sha256.slice(0, 12)}…, expected ${recordedSha.slice(0, 12)}…`);
        if (copies[file] !== sha) problems.push(`${n.name}: the backup copy of ${file} in ${dir} ${copies[file] === undefined ? 'is missing' : 'differs from the original'}`);
        if (!manifest.some((l) => l.startsWith(`${file} ${recordedSha} `))) problems.push(`${n.name}: ${file} missing from the backup manifest or with another checksum`);
      }
      for (const b of recorded) if (had[b.path] === undefined) problems.push(`${n.name}: the database records a backup of ${b.path}, which did not exist before the run`);
    }),
  );
  return problems;
}

/** Journal: every intent has its outcome; every step of every node ended done (or skipped after its probe), once. */
function journalProblems(lab: Lab, leader: string, journal: JournalLite[]): string[] {
  const problems: string[] = [];
  const open = journal.filter((r) => r.outcome === null);
  for (const r of open) problems.push(`journal: ${r.step} on ${r.node} (round ${r.attempt}) has an intent and no outcome`);
  for (const n of lab.nodes) {
    for (const step of requiredSteps(n.name, leader, lab)) {
      if (!journal.some((r) => r.step === step && r.node === n.name && (r.outcome === 'done' || r.outcome === 'skipped'))) {
        problems.push(`journal: ${step} on ${n.name} never ended done`);
      }
    }
  }
  const doneTwice = new Map<string, number>();
  for (const r of journal) {
    if (r.outcome !== 'done') continue;
    const key = `${r.step}|${r.node}|${r.attempt}`;
    doneTwice.set(key, (doneTwice.get(key) ?? 0) + 1);
  }
  for (const [key, count] of doneTwice) if (count > 1) problems.push(`journal: ${key.replace(/\|/g, ' ')} done ${count} times`);
  return problems;
}

/**
 * The full check after a run that should have finished: the run is done in the database; every node is an alive
 * member of the right type as the leader sees it with the new token; every node's credentials equal the leader's
 * (and are new); every file that existed before the run is in the run's backup on its node with the checksum the
 * database recorded; the journal has no intent without outcome and a done outcome for every step of every node.
 */
export async function checkHealth(lab: Lab, dbPath: string, newSecret: string, before: FileSnapshot): Promise<HealthReport> {
  const problems: string[] = [];
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  let run: RunRowLite | undefined;
  let journal: JournalLite[] = [];
  let backups: BackupLite[] = [];
  try {
    run = db.prepare('SELECT id, status, leader FROM runs ORDER BY created_at DESC LIMIT 1').get() as RunRowLite | undefined;
    if (run) {
      journal = db.prepare('SELECT step, node, attempt, outcome, probe FROM journal WHERE run_id = ? ORDER BY id').all(run.id) as JournalLite[];
      backups = db.prepare('SELECT node, dir, path, sha256 FROM backups WHERE run_id = ?').all(run.id) as BackupLite[];
    }
  } finally {
    db.close();
  }
  const counts: Record<string, number> = {};
  for (const r of journal) counts[r.outcome ?? 'open'] = (counts[r.outcome ?? 'open'] ?? 0) + 1;
  const report = (): HealthReport => ({
    healthy: problems.length === 0,
    problems,
    runId: run?.id ?? null,
    leader: run?.leader ?? null,
    journal: counts,
    probed: journal.filter((r) => r.probe !== null).length,
  });
  if (!run) {
    problems.push('no run in the database');
    return report();
  }
  if (run.status !== 'done') problems.push(`run ${run.id} is ${run.status}, not done`);
  const leader = run.leader;
  if (leader === null) {
    problems.push('the run recorded no leader');
    return report();
  }

  // Members, as the leader sees them with the token from its new credentials.
  const m = await membersSeenBy(lab, leader, newSecret);
  if (m.code !== 0) problems.push(`consul members on ${leader} with the new token exited ${m.code}: ${m.stderr.trim().slice(0, 200)}`);
  for (const n of lab.nodes) {
    const member = m.members.find((x) => x.address.split(':')[0] === n.ip);
    const want = n.kind === 'server' ? 'server' : 'client';
    if (!member) problems.push(`${n.name}: not a member`);
    else if (member.status !== 'alive' || member.type !== want) problems.push(`${n.name}: ${member.status} ${member.type} (want alive ${want})`);
  }

  // Credentials: one new file, everywhere.
  const shas = await credentialsShas(lab);
  const leaderSha = shas[leader] ?? null;
  if (leaderSha === null) problems.push(`${leader}: no credentials file`);
  if (leaderSha !== null && leaderSha === before[leader]?.['/etc/zextras/service-discover/cluster-credentials.tar.gpg']) {
    problems.push(`${leader}: credentials unchanged by the run`);
  }
  for (const n of lab.nodes) if (shas[n.name] !== leaderSha) problems.push(`${n.name}: credentials differ from the leader's`);

  problems.push(...(await backupProblems(lab, run.id, backups, before)));
  problems.push(...journalProblems(lab, leader, journal));
  return report();
}

/**
 * What regen may change on a node, as one string: checksums of every file under the service's config and home
 * (its raft data excepted) and whether the service runs. Equal before and after: the node was not changed.
 */
export async function nodeState(lab: Lab, node: string): Promise<string> {
  const r = await sshExec(
    lab,
    node,
    'find /etc/zextras /var/lib/service-discover -path /var/lib/service-discover/data -prune -o -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum; systemctl is-active service-discover; true',
  );
  if (r.code !== 0) throw new Error(`state of ${node}: ${r.stderr.trim()}`);
  return r.stdout;
}

export async function labState(lab: Lab): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of lab.nodes) out[n.name] = await nodeState(lab, n.name);
  return out;
}

/** Bootstrap token SecretID and gossip key of a node's credentials, decrypted on the node with `secret`. */
export async function credentialSecrets(lab: Lab, node: string, secret: string): Promise<{ token: string; gossipKey: string }> {
  const dec = 'gpg --batch -q --pinentry-mode loopback --passphrase-fd 0 -d /etc/zextras/service-discover/cluster-credentials.tar.gpg';
  const r = await sshExec(lab, node, `T=$(mktemp); trap 'rm -f "$T"' EXIT; ${dec} > "$T" || exit 3; tar xOf "$T" consul-acl-secret.json | jq -r .SecretID; tar xOf "$T" gossip-key; echo`, { stdin: secret });
  const [token = '', gossipKey = ''] = r.stdout.split('\n').map((l) => l.trim());
  if (r.code !== 0 || !token || !gossipKey) throw new Error(`could not read the credentials of ${node}: ${r.stderr.trim()}`);
  return { token, gossipKey };
}
