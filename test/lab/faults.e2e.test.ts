/**
 * Network and node faults during a real run on the lab: the SSH session dropped mid-command, a node crashed for
 * 30 s, a node whose sshd stays down. regen either rides it out (reconnect with bounded backoff, probe the
 * interrupted step) or stops resumable naming the node and what to do; `regen resume` then finishes once the node
 * is back. Every end state is checked from outside (bench/lib/health.ts).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { labFault, loadLab, processesInNetns, type Lab, type LabNode } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { checkHealth, snapshotFiles } from '../../bench/lib/health.js';
import { resumeArgs, runRegen, startArgs, writeSecretFile, type RegenOutcome } from '../../bench/lib/regen-process.js';

const skip = labSkip();
const UNREACHABLE = 10;

/** Kills the node's ssh sessions (the sshd children serving connections), not its listener: a dropped connection. */
function dropSessions(lab: Lab, node: LabNode): number {
  const listener = loadLab(lab.dir).nodes.find((n) => n.name === node.name)?.sshdPid ?? 0;
  let killed = 0;
  for (const pid of processesInNetns(node.netns)) {
    if (pid === listener) continue;
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmd.startsWith('sshd:')) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      // gone already
    }
  }
  return killed;
}

/** Resumes until the run is done (at most `max` times); returns every attempt. */
async function resumeUntilDone(lab: Lab, secretFile: string, db: string, max = 5): Promise<RegenOutcome[]> {
  const out: RegenOutcome[] = [];
  for (let i = 0; i < max; i++) {
    const r = await runRegen(resumeArgs(lab, secretFile, [], db));
    out.push(r);
    if (r.code === 0) break;
  }
  return out;
}

function journalOutcomes(db: string, step: string, node: string): string[] {
  const d = new Database(db, { readonly: true });
  try {
    return (d.prepare('SELECT outcome FROM journal WHERE step = ? AND node = ? ORDER BY id').all(step, node) as { outcome: string | null }[]).map((r) => r.outcome ?? 'open');
  } finally {
    d.close();
  }
}

describe.skipIf(skip !== null)('network and node faults during a run', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', losePassword: true });
  const follower = (): LabNode => {
    const n = h.lab.nodes.find((x) => x.name !== h.lab.leader);
    if (!n) throw new Error('no follower');
    return n;
  };

  it('the SSH session dropped while a follower sets up: an unknown outcome, probed, and the run finishes', async () => {
    const lab = h.lab;
    const f = follower();
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab, 'secret-drop');
    const db = join(lab.dir, 'drop.db');
    await labFault(lab.dir, { kind: 'latency', node: f.name, key: 'service-discover setup', ms: 2000 });
    let dropped = 0;
    const first = await runRegen(startArgs(lab, file, [], db).concat('--json'), {
      killAt: (e) => {
        if (e.type === 'step.started' && e.step === 'follower.setup' && e.node === f.name && dropped === 0) {
          setTimeout(() => (dropped = dropSessions(lab, f)), 500);
        }
        return false;
      },
    });
    await labFault(lab.dir, { kind: 'latency', node: f.name, key: 'service-discover setup', ms: 0 });
    expect(dropped).toBeGreaterThan(0);
    // The drop was seen as an unknown outcome, never as a failure of the setup.
    expect(journalOutcomes(db, 'follower.setup', f.name)).toContain('unknown');
    expect(journalOutcomes(db, 'follower.setup', f.name)).not.toContain('failed');
    if (first.code !== 0) {
      expect(first.stderr, first.stderr).toContain(f.name);
      expect(first.stderr).toMatch(/regen resume/);
      const resumes = await resumeUntilDone(lab, file, db);
      expect(resumes.at(-1)?.code, resumes.map((r) => r.stderr).join('\n')).toBe(0);
    }
    expect((await checkHealth(lab, db, secret, before)).problems).toEqual([]);
  });

  it('a follower crashed for 30 s mid-run: the run stops naming it, and resume finishes once it is back', async () => {
    const lab = h.lab;
    const f = follower();
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab, 'secret-crash');
    const db = join(lab.dir, 'crash.db');
    let crashedAt = 0;
    const first = await runRegen(startArgs(lab, file, ['--connect-timeout', '3'], db).concat('--json'), {
      killAt: (e) => {
        if (crashedAt === 0 && e.type === 'step.started' && e.step === 'follower.stop' && e.node === f.name) {
          crashedAt = Date.now();
          void labFault(lab.dir, { kind: 'crash', node: f.name });
        }
        return false;
      },
    });
    expect(crashedAt).toBeGreaterThan(0);
    expect(first.code, first.stderr).toBe(UNREACHABLE);
    expect(first.stderr).toContain(f.name);
    expect(first.stderr).toMatch(/regen resume/);
    // While it is still down, a resume stops the same way, without waiting forever.
    const early = await runRegen(resumeArgs(lab, file, ['--connect-timeout', '3'], db));
    expect(early.code, early.stderr).toBe(UNREACHABLE);
    expect(early.stderr).toContain(f.name);
    await new Promise((r) => setTimeout(r, Math.max(0, crashedAt + 30_000 - Date.now())));
    await labFault(lab.dir, { kind: 'restore', node: f.name });
    const resumes = await resumeUntilDone(lab, file, db);
    expect(resumes.at(-1)?.code, resumes.map((r) => r.stderr).join('\n')).toBe(0);
    expect((await checkHealth(lab, db, secret, before)).problems).toEqual([]);
  });

  it("a follower whose sshd stays down: stops resumable naming it; resume finishes after sshd is back", async () => {
    const lab = h.lab;
    const f = follower();
    const before = await snapshotFiles(lab);
    const { file, secret } = writeSecretFile(lab, 'secret-sshd');
    const db = join(lab.dir, 'sshd.db');
    let stopped = false;
    const first = await runRegen(startArgs(lab, file, ['--connect-timeout', '3'], db).concat('--json'), {
      killAt: (e) => {
        if (!stopped && e.type === 'step.started' && e.step === 'leader.setup') {
          stopped = true;
          // The listener goes and the open connection with it, as when a node's sshd dies.
          void labFault(lab.dir, { kind: 'sshd-stop', node: f.name }).then(() => dropSessions(lab, f));
        }
        return false;
      },
    });
    try {
      expect(stopped).toBe(true);
      expect(first.code, first.stderr).toBe(UNREACHABLE);
      expect(first.stderr).toContain(f.name);
      expect(first.stderr).toMatch(/regen resume/);
      const st = await runRegen(['status', '--json', '--db', db]);
      const view = JSON.parse(st.stdout) as { status: string; lastError: { node?: string } | null };
      expect(view.status).toBe('failed');
      expect(view.lastError?.node).toBe(f.name);
      const again = await runRegen(resumeArgs(lab, file, ['--connect-timeout', '3'], db));
      expect(again.code, again.stderr).toBe(UNREACHABLE);
    } finally {
      await labFault(lab.dir, { kind: 'sshd-start', node: f.name });
    }
    const resumes = await resumeUntilDone(lab, file, db);
    expect(resumes.at(-1)?.code, resumes.map((r) => r.stderr).join('\n')).toBe(0);
    expect((await checkHealth(lab, db, secret, before)).problems).toEqual([]);
  });
});
