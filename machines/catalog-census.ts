/**
 * The mesh's registered services, before and after: Carbonio's services live in the Consul catalog. Before the
 * wipe (after the backups, while the old mesh runs) the leader's catalog is recorded; after the final check it
 * is read again with the new token and compared:
 * - a service registered before and missing afterwards is reported;
 * - a health check that passed before and does not pass afterwards is reported.
 * Both are reports for the operator (the journal and `regen status`), not failures: the credentials are new either
 * way. Service names and check ids are not secret.
 *
 * The old mesh secret is usually unknown, so the first reading is made without a token: the local agent then
 * answers with its default token, which service-discover sets to the node's own token (`consul acl set-agent-token
 * default`, pkg/command/common.go), whose policy reads every node and writes every service (ACLPolicyTemplateText).
 * When nothing can read the catalog, the snapshot says "not recorded" and why, and the run goes on.
 */
import { STEPS } from './catalogue.js';
import { durableStep } from './durable.js';
import { toErrorRecord } from './errors.js';
import type { CatalogView } from './port.js';
import type { PlannedNode } from './plan.js';
import type { StepDeps } from './steps.js';
import type { JournalRow } from '../store/types.js';

export type CatalogSnapshot =
  | { recorded: true; services: string[]; passing: string[] }
  /** Why the catalog could not be read (no secret in it: a command's redacted message). */
  | { recorded: false; reason: string };

export interface CatalogComparison {
  /** Both readings were made. */
  compared: boolean;
  /** What kept it from being compared, when not. */
  reason: string | null;
  /** Service names registered before and not after. */
  missingServices: string[];
  /** `node/check-id` of the checks that passed before and do not pass after, with their status after. */
  failingChecks: Array<{ check: string; status: string }>;
}

/** `node/check-id`: a check id is unique on its node only (agent/structs CheckID). */
export function checkKey(node: string, checkId: string): string {
  return `${node}/${checkId}`;
}

export function snapshotOf(view: CatalogView): CatalogSnapshot {
  // Every server registers the `consul` service (agent/consul/leader.go): an empty list is a token that reads
  // nothing (the catalog endpoints filter by ACL instead of refusing), not an empty mesh.
  if (view.services.length === 0) return { recorded: false, reason: 'the catalog showed no service: the token the agent answered with reads none' };
  const services = [...new Set(view.services)].sort();
  const passing = view.checks.filter((c) => c.status === 'passing').map((c) => checkKey(c.node, c.checkId));
  return { recorded: true, services, passing: [...new Set(passing)].sort() };
}

/** What went missing or stopped passing between two readings. */
export function compareCatalog(before: CatalogSnapshot, after: CatalogView): CatalogComparison {
  if (!before.recorded) return { compared: false, reason: `not recorded before the wipe: ${before.reason}`, missingServices: [], failingChecks: [] };
  const now = new Set(after.services);
  const status = new Map(after.checks.map((c) => [checkKey(c.node, c.checkId), c.status] as const));
  return {
    compared: true,
    reason: null,
    missingServices: before.services.filter((s) => !now.has(s)),
    failingChecks: before.passing.filter((k) => status.get(k) !== 'passing').map((k) => ({ check: k, status: status.get(k) ?? 'missing' })),
  };
}

/** Read-only, on the leader before the wipe: what the old mesh has registered. Never fails the run. */
export async function recordCatalogBefore(d: StepDeps, leader: PlannedNode): Promise<CatalogSnapshot> {
  return durableStep<CatalogSnapshot>(d.journal, {
    step: STEPS.catalogBefore.name,
    node: leader.name,
    probe: async () => ({ state: 'not-done' }),
    apply: async () => {
      try {
        return snapshotOf(await d.port.readCatalog(leader.name, null));
      } catch (err) {
        return { recorded: false, reason: toErrorRecord(err).message };
      }
    },
  });
}

/** The journaled result of a completed step of this run on `node`, or undefined. */
function journaledResult<T>(rows: readonly JournalRow[], step: string): T | undefined {
  const done = rows.filter((r) => r.step === step && r.outcome === 'done' && r.detail !== null);
  const last = done.reduce<JournalRow | undefined>((a, r) => (a === undefined || r.id > a.id ? r : a), undefined);
  if (last?.detail == null) return undefined;
  return (JSON.parse(last.detail) as { result?: T }).result;
}

/** Read-only, on the leader after the final check, with the new token: compared with the snapshot. */
export async function compareCatalogAfter(d: StepDeps, leader: PlannedNode): Promise<CatalogComparison> {
  return durableStep<CatalogComparison>(d.journal, {
    step: STEPS.catalogAfter.name,
    node: leader.name,
    probe: async () => ({ state: 'not-done' }),
    apply: async () => {
      const before = journaledResult<CatalogSnapshot>(d.store.journal(d.runId), STEPS.catalogBefore.name);
      if (before === undefined) return { compared: false, reason: 'no snapshot was taken before the wipe', missingServices: [], failingChecks: [] };
      if (!before.recorded) return compareCatalog(before, { services: [], checks: [] });
      try {
        return compareCatalog(before, await d.port.readCatalog(leader.name, await d.secret()));
      } catch (err) {
        return { compared: false, reason: `the catalog could not be read after the run: ${toErrorRecord(err).message}`, missingServices: [], failingChecks: [] };
      }
    },
  });
}

/** What `regen status` shows of the census: the snapshot's size and the comparison, from the journal. */
export interface CatalogStatus {
  before: { recorded: boolean; services: number; passing: number; reason: string | null } | null;
  after: CatalogComparison | null;
}

export function catalogStatus(rows: readonly JournalRow[]): CatalogStatus {
  const b = journaledResult<CatalogSnapshot>(rows, STEPS.catalogBefore.name);
  const after = journaledResult<CatalogComparison>(rows, STEPS.catalogAfter.name) ?? null;
  const before = b === undefined ? null : b.recorded ? { recorded: true, services: b.services.length, passing: b.passing.length, reason: null } : { recorded: false, services: 0, passing: 0, reason: b.reason };
  return { before, after };
}
