/**
 * No secret leaks, proven on the lab after a full, a failed, a killed and a resumed run: the mesh secrets (old and
 * new), the bootstrap tokens and the gossip keys are searched in the database files (raw bytes, WAL included),
 * every stdout/stderr (plain and --json), `regen log` / `status` / `runs` output, and `ps -eo args` snapshots taken
 * on every node (the leader included) every 100 ms all along. No exception: every setup is `setup-wizard` on a
 * terminal, which reads the password from the terminal, so the secret is on no process's argv.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labFault, nodeExec, type Lab } from './lab.js';
import { labSkip, withLab } from './harness.js';
import { credentialSecrets } from '../../bench/lib/health.js';
import { resumeArgs, runRegen, startArgs, writeSecretFile, type RegenOutcome, type RunRegenOptions } from '../../bench/lib/regen-process.js';

const skip = labSkip();

/** `ps -eo args` on every node, every ~100 ms while `work` runs (bounded in count). */
async function withPsSnapshots<T>(lab: Lab, work: () => Promise<T>): Promise<{ result: T; lines: string[]; snapshots: number }> {
  const lines = new Set<string>();
  let done = false;
  let snapshots = 0;
  const sampler = (async () => {
    for (let i = 0; i < 4000 && !done; i++) {
      await Promise.all(
        lab.nodes.map(async (n) => {
          const r = await nodeExec(lab, n.name, ['ps', '-eo', 'args'], { timeoutMs: 10_000 }).catch(() => null);
          if (r) for (const l of r.stdout.split('\n')) lines.add(l);
        }),
      );
      snapshots++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    return { result: await work(), lines: [...lines], snapshots };
  } finally {
    done = true;
    await sampler;
  }
}

describe.skipIf(skip !== null)('secrets never leak', { timeout: 300_000 }, () => {
  const h = withLab({ nodes: 3, servers: 1, profile: 'current', losePassword: true });

  it('after full, failed, killed and resumed runs: zero hits, setup processes included', async () => {
    const lab = h.lab;
    const db = join(lab.dir, 'regen.db');
    const outputs: string[] = [];
    const psLines: string[] = [];
    const dbCopies: Buffer[] = [];
    const secrets = new Map<string, string>();
    const run = async (args: string[], opts: RunRegenOptions = {}): Promise<RegenOutcome> => {
      const { result, lines } = await withPsSnapshots(lab, () => runRegen(args, opts));
      psLines.push(...lines);
      outputs.push(result.stdout, result.stderr);
      return result;
    };
    const keepDbFiles = (): void => {
      for (const f of fs.readdirSync(lab.dir).filter((x) => x.startsWith('regen.db'))) dbCopies.push(fs.readFileSync(join(lab.dir, f)));
    };
    const learn = async (label: string, secret: string): Promise<void> => {
      const c = await credentialSecrets(lab, lab.leader, secret);
      secrets.set(`${label} bootstrap token`, c.token);
      secrets.set(`${label} gossip key`, c.gossipKey);
    };

    secrets.set('old mesh secret', h.secret);
    await learn('old', h.secret);
    // Setups are slowed so the snapshots see them running.
    for (const n of lab.nodes) await labFault(lab.dir, { kind: 'latency', node: n.name, key: 'service-discover setup', ms: 1200 });

    // 1. A full run, plain output.
    const s1 = writeSecretFile(lab, 'secret-1');
    secrets.set('run 1 mesh secret', s1.secret);
    expect((await run(startArgs(lab, s1.file, [], db))).code).toBe(0);
    await learn('run 1', s1.secret);

    // 2. A failed run (a follower's setup fails, one round only), --json, then resumed.
    const s2 = writeSecretFile(lab, 'secret-2');
    secrets.set('run 2 mesh secret', s2.secret);
    const follower = lab.nodes.find((n) => n.name !== lab.leader);
    if (!follower) throw new Error('no follower');
    await labFault(lab.dir, { kind: 'fail-next-setup', node: follower.name });
    const failed = await run([...startArgs(lab, s2.file, ['--max-unit-rounds', '1'], db), '--json']);
    expect(failed.code, failed.stderr).toBe(4);
    keepDbFiles();
    const resumedAfterFailure = await run([...resumeArgs(lab, null, [], db), '--json']);
    expect(resumedAfterFailure.code, resumedAfterFailure.stderr).toBe(0);
    await learn('run 2', s2.secret);

    // 3. A run killed while the leader's setup runs (the WAL is left as the kill found it), then resumed.
    const s3 = writeSecretFile(lab, 'secret-3');
    secrets.set('run 3 mesh secret', s3.secret);
    const killed = await run([...startArgs(lab, s3.file, [], db), '--json'], {
      killAt: (e) => (e.type === 'step.started' && e.step === 'leader.setup' ? 600 : false),
    });
    expect(killed.killed).toBe(true);
    keepDbFiles();
    const resumed = await run(resumeArgs(lab, s3.file, [], db));
    expect(resumed.code, resumed.stderr).toBe(0);
    await learn('run 3', s3.secret);
    for (const n of lab.nodes) await labFault(lab.dir, { kind: 'latency', node: n.name, key: 'service-discover setup', ms: 0 });

    // What an operator looks at afterwards.
    for (const args of [['log', '--limit', '1000'], ['log', '--json', '--limit', '1000'], ['status'], ['status', '--json'], ['runs', '--json']]) {
      const r = await runRegen([...args, '--db', db]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      outputs.push(r.stdout, r.stderr);
    }
    keepDbFiles();
    // The run mirrors and lock holders every node keeps under /var/lib/regen (read from the host side of the node).
    const mirrorFiles: Array<{ where: string; bytes: Buffer }> = [];
    for (const n of lab.nodes) {
      const dir = join(n.root, 'regen-state');
      const files = [join(dir, 'lock', 'holder'), ...(fs.existsSync(join(dir, 'runs')) ? fs.readdirSync(join(dir, 'runs')).map((f) => join(dir, 'runs', f)) : [])];
      for (const f of files.filter((x) => fs.existsSync(x))) mirrorFiles.push({ where: `${n.name}:${f.slice(dir.length)}`, bytes: fs.readFileSync(f) });
    }

    expect(secrets.size).toBe(12);
    const hits: string[] = [];
    for (const [what, value] of secrets) {
      outputs.forEach((o, i) => o.includes(value) && hits.push(`${what} in output ${i}`));
      dbCopies.forEach((b, i) => b.includes(value) && hits.push(`${what} in database file copy ${i}`));
      for (const m of mirrorFiles) if (m.bytes.includes(value)) hits.push(`${what} in the node file ${m.where}`);
      for (const l of psLines) if (l.includes(value)) hits.push(`${what} in a process line: ${l.replace(value, '<secret>').slice(0, 160)}`);
    }
    expect(hits).toEqual([]);
    // The snapshots did see the setups running, on the leader and on the others, so they would have seen a secret there.
    expect(psLines.some((l) => /service-discover(\.js)? setup-wizard --first-instance/.test(l))).toBe(true);
    expect(psLines.some((l) => /service-discover(\.js)? setup-wizard$/.test(l.trim()))).toBe(true);
    expect(dbCopies.length).toBeGreaterThan(2);
    // Every run left its mirror on the nodes, so the scan above read them.
    const runIds = new Set(mirrorFiles.filter((m) => m.where.includes('/runs/')).map((m) => m.where.replace(/^.*\/runs\/(.*)\.json$/, '$1')));
    expect(runIds.size).toBeGreaterThanOrEqual(3);
  });
});
