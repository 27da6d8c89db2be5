/**
 * What the commands read of regen's state on the nodes before they act: cluster locks, run mirrors, and a cluster
 * left mid-procedure (recognised from the nodes' own facts even without a mirror), so that `regen start` and
 * `regen plan` name the run found and propose `regen resume --from-cluster` instead of failing on "no leader".
 */
import { describeHolder, parseHolder, STALE_MS } from '../machines/cluster-lock.js';
import { clusterRun, type ClusterRun } from '../machines/cluster-run.js';
import { NeedsOperatorError } from '../machines/errors.js';
import { decodeMirror } from '../machines/mirror.js';
import type { Inventory, NodePort, RegenTraces } from '../machines/port.js';
import type { Store } from '../store/types.js';
import type { Io } from './io.js';
import type { PlanProblem } from './plan-view.js';
import { sharedRedactor } from './wiring.js';

export async function makeClusterRun(port: NodePort, store: Store, io: Io, heartbeatMs?: number, precheck?: () => Promise<void>): Promise<ClusterRun> {
  const redactor = await sharedRedactor();
  const statsFile = io.env['REGEN_MIRROR_STATS'];
  return clusterRun({
    port,
    store,
    redact: (t) => redactor.redact(t),
    ...(heartbeatMs === undefined ? {} : { heartbeatMs }),
    ...(statsFile ? { statsFile } : {}),
    ...(precheck ? { precheck } : {}),
  });
}

export interface ClusterFindings {
  locks: Array<{ node: string; holder: string; stale: boolean }>;
  /** Present when the nodes show a procedure left half-done. */
  halfDone: { runId: string | null; evidence: string[] } | null;
}

async function allTraces(port: NodePort, inventory: Inventory): Promise<Array<{ node: string; t: RegenTraces }>> {
  const got = await Promise.all(inventory.nodes.map(async (n) => ({ node: n.name, t: await port.regenTraces(n.name).catch(() => null) })));
  return got.flatMap((g) => (g.t === null ? [] : [{ node: g.node, t: g.t }]));
}

/** The unfinished run a mirror names (highest sequence), if any. */
function unfinishedMirrorRun(traces: Array<{ node: string; t: RegenTraces }>): string | null {
  let best: { runId: string; seq: number } | null = null;
  for (const { t } of traces) {
    for (const m of t.mirrors) {
      const d = decodeMirror(m.text);
      if ('invalid' in d || d.body.run.status === 'done' || d.body.run.status === 'aborted') continue;
      if (best === null || d.envelope.seq > best.seq) best = { runId: d.envelope.runId, seq: d.envelope.seq };
    }
  }
  return best?.runId ?? null;
}

export async function readClusterFindings(port: NodePort, inventory: Inventory, now = Date.now()): Promise<ClusterFindings> {
  const traces = await allTraces(port, inventory);
  const locks = traces.flatMap(({ node, t }) => (t.lock === null ? [] : [{ node, holder: t.lock, stale: now - (parseHolder(t.lock)?.heartbeatAt ?? 0) > STALE_MS }]));
  // A reset file or a wiped configuration is what only a procedure in progress leaves; a stopped unit alone may be
  // an ordinary outage, so it only adds to the picture.
  const strong: string[] = [];
  const weak: string[] = [];
  for (const { node, t } of traces) {
    if (t.resetFile) strong.push(`${node}: an ACL reset file is still in the data directory`);
    if (!t.hasMainJson && !t.hasConfigJson) strong.push(`${node}: the service-discover configuration is wiped`);
    if (!t.serviceActive) weak.push(`${node}: service-discover is stopped`);
  }
  if (strong.length === 0) return { locks, halfDone: null };
  const newestBackup = traces.flatMap(({ t }) => t.backupRuns).sort().pop() ?? null;
  return { locks, halfDone: { runId: unfinishedMirrorRun(traces) ?? newestBackup, evidence: [...strong, ...weak] } };
}

function resumeHint(runId: string | null, store: Store | null): string {
  if (runId !== null && store?.getRun(runId)) return `regen resume ${runId}`;
  return `regen resume --from-cluster -i INVENTORY${runId === null ? '' : ` ${runId}`} (it reads the run's mirror from the nodes); with no mirror, finish by hand from the backups in /var/backups/regen/${runId ?? '<run>'}`;
}

/** `regen start`: refuses a cluster left mid-procedure, unless a live lock is there (the lock's refusal says more). */
export function refuseHalfDone(f: ClusterFindings, store: Store | null): void {
  if (f.halfDone === null || f.locks.some((l) => !l.stale)) return;
  const h = f.halfDone;
  throw new NeedsOperatorError(
    `the cluster was left mid-procedure${h.runId === null ? '' : ` by run ${h.runId}`}; starting a new run over it would lose that run's state:\n  - ${h.evidence.slice(0, 8).join('\n  - ')}`,
    { hint: resumeHint(h.runId, store) },
  );
}

/** `regen plan`: the same findings as problems. */
export function findingsAsProblems(f: ClusterFindings, store: Store | null, now = Date.now()): PlanProblem[] {
  const out: PlanProblem[] = f.locks.map((l) => ({
    node: l.node,
    kind: 'lock-held',
    message: describeHolder(l.node, l.holder, now).replace(`${l.node}: `, ''),
    hint: l.stale ? 'if that run is no longer running: regen unlock --cluster CLUSTER -i INVENTORY' : 'wait for that run to finish',
  }));
  if (f.halfDone !== null) {
    const h = f.halfDone;
    out.push({ kind: 'needs-operator', message: `the cluster was left mid-procedure${h.runId === null ? '' : ` by run ${h.runId}`}: ${h.evidence.slice(0, 6).join('; ')}`, hint: resumeHint(h.runId, store) });
  }
  return out;
}
