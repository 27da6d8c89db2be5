/**
 * The Store over one better-sqlite3 connection: each table family is its own module (runs.ts, journal.ts,
 * audit.ts, backups.ts, lock.ts); this class only puts them behind the one Store interface.
 */
import type Database from 'better-sqlite3';
import { AuditTable } from './audit.js';
import { BackupTable } from './backups.js';
import { Binder, type Tables } from './bind.js';
import { JournalTable } from './journal.js';
import { LockTable } from './lock.js';
import { RunTables } from './runs.js';
import type { AuditRow, BackupRow, JournalRow, LockRow, NodeRow, ProbeResult, RunPatch, RunRow, StepOutcome, Store, TransitionRow } from './types.js';

type NewTransition = Omit<TransitionRow, 'seq' | 'at'> & { at?: number };

export class SqliteStore implements Store {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #binder = new Binder();
  readonly #runs: RunTables;
  readonly #journal: JournalTable;
  readonly #audit: AuditTable;
  readonly #backups: BackupTable;
  readonly #lock: LockTable;

  constructor(db: Database.Database, path: string, now: () => number) {
    this.#db = db;
    this.path = path;
    const t: Tables = { db, path, now, b: this.#binder };
    this.#runs = new RunTables(t);
    this.#journal = new JournalTable(t);
    this.#audit = new AuditTable(t);
    this.#backups = new BackupTable(t);
    this.#lock = new LockTable(t);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  setRedactor(redact: (text: string) => string): void {
    this.#binder.redact = redact;
  }

  createRun(run: { id: string; cluster: string; machineVersion: string; inventoryJson: string; optionsJson: string }): RunRow {
    return this.#runs.createRun(run);
  }
  getRun(id: string): RunRow | null {
    return this.#runs.getRun(id);
  }
  listRuns(): RunRow[] {
    return this.#runs.listRuns();
  }
  latestUnfinishedRun(cluster?: string): RunRow | null {
    return this.#runs.latestUnfinishedRun(cluster);
  }
  updateRun(id: string, patch: RunPatch): void {
    this.#runs.updateRun(id, patch);
  }
  incrementRecoveries(id: string): number {
    return this.#runs.incrementRecoveries(id);
  }
  upsertNode(node: NodeRow): void {
    this.#runs.upsertNode(node);
  }
  listNodes(runId: string): NodeRow[] {
    return this.#runs.listNodes(runId);
  }
  appendTransition(t: NewTransition): number {
    return this.#runs.appendTransition(t);
  }
  persistTransition(t: NewTransition, run: RunPatch, nodes: readonly NodeRow[]): number {
    return this.#runs.persistTransition(t, run, nodes);
  }
  lastTransition(runId: string): TransitionRow | null {
    return this.#runs.lastTransition(runId);
  }
  listTransitions(runId: string, opts: { withSnapshots?: boolean } = {}): TransitionRow[] {
    return this.#runs.listTransitions(runId, opts);
  }
  countTransitions(runId: string): number {
    return this.#runs.countTransitions(runId);
  }

  beginStep(s: { runId: string; step: string; node: string; attempt: number; at?: number }): number {
    return this.#journal.beginStep(s);
  }
  recordProbe(id: number, probe: ProbeResult): void {
    this.#journal.recordProbe(id, probe);
  }
  endStep(id: number, outcome: StepOutcome, detail?: unknown, at?: number): void {
    this.#journal.endStep(id, outcome, detail, at);
  }
  journal(runId: string, filter: { step?: string; node?: string } = {}): JournalRow[] {
    return this.#journal.journal(runId, filter);
  }
  openSteps(runId: string): JournalRow[] {
    return this.#journal.openSteps(runId);
  }

  audit(a: Omit<AuditRow, 'id' | 'at'> & { at?: number }): void {
    this.#audit.audit(a);
  }
  listAudit(runId: string, opts: { node?: string; limit?: number } = {}): AuditRow[] {
    return this.#audit.listAudit(runId, opts);
  }

  recordBackup(b: BackupRow): void {
    this.#backups.recordBackup(b);
  }
  listBackups(runId: string, node?: string): BackupRow[] {
    return this.#backups.listBackups(runId, node);
  }

  acquireLock(l: { cluster: string; runId: string; pid: number; host: string }): void {
    this.#lock.acquireLock(l);
  }
  heartbeat(cluster: string, runId: string): void {
    this.#lock.heartbeat(cluster, runId);
  }
  releaseLock(cluster: string, runId: string): void {
    this.#lock.releaseLock(cluster, runId);
  }
  getLock(cluster: string): LockRow | null {
    return this.#lock.getLock(cluster);
  }
  forceUnlock(cluster: string): LockRow | null {
    return this.#lock.forceUnlock(cluster);
  }
}
