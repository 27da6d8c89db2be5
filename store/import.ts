/**
 * Importing a run mirrored on the nodes (machines/mirror.ts) into a local database: a new file, or the current one.
 * The records are written through the Store, so they pass the same redaction as every other write. A run already
 * in the database is replaced only when the mirror is newer (higher sequence) than what the database holds.
 */
import Database from 'better-sqlite3';
import { StoreError } from '../machines/errors.js';
import { mirrorBody, mirrorSeq, type MirrorBody } from '../machines/mirror.js';
import type { Store } from './types.js';

export type ImportOutcome = { imported: true; replaced: boolean; localSeq: number | null } | { imported: false; localSeq: number };

export function importMirror(store: Store, body: MirrorBody, seq: number): ImportOutcome {
  const local = mirrorBody(store, body.run.id);
  const localSeq = local === null ? null : mirrorSeq(local);
  if (localSeq !== null && localSeq >= seq) return { imported: false, localSeq };
  if (local !== null) deleteRun(store, body.run.id);
  writeRun(store, body);
  return { imported: true, replaced: local !== null, localSeq };
}

function deleteRun(store: Store, runId: string): void {
  if (store.path === ':memory:') throw new StoreError('cannot replace a run in an in-memory database');
  const db = new Database(store.path);
  try {
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    db.prepare('DELETE FROM runs WHERE id = ?').run(runId);
  } finally {
    db.close();
  }
}

function writeRun(store: Store, b: MirrorBody): void {
  const r = b.run;
  store.createRun({ id: r.id, cluster: r.cluster, machineVersion: r.machineVersion, inventoryJson: r.inventoryJson, optionsJson: r.optionsJson });
  for (const n of b.nodes) store.upsertNode({ ...n, runId: r.id });
  for (const t of b.transitions) {
    store.appendTransition({ runId: r.id, at: t.at, fromState: t.fromState, event: t.event, toState: t.toState, snapshot: t.snapshot, machineVersion: t.machineVersion });
  }
  for (const j of b.journal) {
    const id = store.beginStep({ runId: r.id, step: j.step, node: j.node, attempt: j.attempt, at: j.startedAt });
    if (j.probe !== null) store.recordProbe(id, j.probe);
    if (j.outcome !== null) store.endStep(id, j.outcome, j.detail === null ? undefined : (JSON.parse(j.detail) as unknown), j.endedAt ?? j.startedAt);
  }
  for (const k of b.backups) store.recordBackup({ ...k, runId: r.id });
  store.updateRun(r.id, {
    status: r.status,
    state: r.state,
    leader: r.leader,
    ...(r.finishedAt === null ? {} : { finishedAt: r.finishedAt }),
    ...(r.downtimeStartedAt === null ? {} : { downtimeStartedAt: r.downtimeStartedAt }),
    ...(r.downtimeEndedAt === null ? {} : { downtimeEndedAt: r.downtimeEndedAt }),
    ...(r.error === null ? {} : { error: r.error }),
  });
}
