/**
 * The code of each remote step: its effect and its read-only probe, each through durableStep. Which steps exist,
 * in which order, and what they touch is declared in machines/catalogue.ts; the commands behind each NodePort
 * method are in adapters/carbonio/commands.ts, the fake in test/sim/.
 */
import type { Secret } from './secret.js';
import type { Store } from '../store/types.js';
import { STEPS } from './catalogue.js';
import { durableStep, type Journal, type Probe } from './durable.js';
import { CommandFailedError, NeedsOperatorError, RegenError, StaleResetIndexError, type ErrorRecord } from './errors.js';
import type { BackupManifest, MeshKind, NodePort, Member } from './port.js';
import { leaderCaSha256, whyNotBack } from './mesh-steps.js';
import type { PlannedNode } from './plan.js';
import { requirePeersInfo } from './raft-sentinel.js';

export { STEP_NAMES, type StepName } from './catalogue.js';

export interface StepDeps {
  port: NodePort;
  journal: Journal;
  store: Store;
  runId: string;
  /** The mesh secret, held in memory only (never in context or the store). */
  secret: () => Promise<Secret>;
  /** Injectable time for polling (tests do not sleep). */
  sleep: (ms: number) => Promise<void>;
  now: () => number;
  /** How long verification waits for members to converge. */
  convergeTimeoutMs: number;
  onDowntimeStart?: (at: number) => void;
}

const notDone = async <T>(): Promise<Probe<T>> => ({ state: 'not-done' });

export async function backupNode(d: StepDeps, node: PlannedNode): Promise<BackupManifest> {
  const manifest = await durableStep<BackupManifest>(d.journal, {
    step: STEPS.backup.name,
    node: node.name,
    probe: async () => {
      const m = await d.port.probeBackup(node.name, d.runId);
      return m ? { state: 'done', result: m } : { state: 'not-done' };
    },
    apply: () => d.port.backup(node.name, d.runId),
  });
  // Per file: a process killed while recording them left some rows, and a resume must add the rest.
  const recorded = new Set(d.store.listBackups(d.runId, node.name).map((b) => b.path));
  for (const f of manifest.files) if (!recorded.has(f.path)) d.store.recordBackup({ runId: d.runId, node: node.name, dir: manifest.dir, ...f });
  return manifest;
}

/**
 * Read the ACL reset index on the leader. In a retry round the reset file may still be there (a setup that failed
 * before its bootstrap did not consume it): that index is still the valid one. If the file was consumed, the
 * service must run to answer, so it is started again when its configuration exists.
 */
export async function readResetIndex(d: StepDeps, leader: PlannedNode, round: number): Promise<number> {
  return durableStep<number>(d.journal, {
    step: STEPS.resetIndex.name,
    node: leader.name,
    round,
    probe: notDone,
    apply: async () => {
      if (round > 1) {
        const named = indexNamedBySetupFailure(d, leader.name, round - 1);
        if (named !== null) return named;
        const pending = await d.port.probeResetFile(leader.name);
        if (pending !== null) return pending;
        if (!(await d.port.serviceActive(leader.name))) {
          const s = await d.port.probeSetup(leader.name);
          if (!s.hasConfigJson && !s.hasMainJson) {
            throw new NeedsOperatorError(
              `the leader ${leader.name} has neither a reset file nor a configuration to start consul with, so the reset index cannot be read`,
              { node: leader.name, hint: 'read it by hand (consul acl bootstrap on a running server), write it to /var/lib/service-discover/data/acl-bootstrap-reset as service-discover, then regen resume' },
            );
          }
          await d.port.startService(leader.name);
          await waitFor(d, () => d.port.leaderAddress(leader.name).then((a) => a !== null), () => 'the leader to be elected again');
        }
      }
      const reading = await d.port.readResetIndex(leader.name);
      if (reading.kind === 'bootstrapped') {
        throw new NeedsOperatorError(
          `consul acl bootstrap succeeded on ${leader.name}: this mesh had never been bootstrapped, so there is nothing to reset. The new management token was saved on the node only, in ${reading.savedTo}`,
          { node: leader.name, hint: `keep that file safe (root only); regen stopped before changing anything. Abort this run with regen abort` },
        );
      }
      return reading.index;
    },
  });
}

/**
 * The valid index as named by the previous round's failed setup, when its bootstrap was refused for a stale one
 * (the ACLs were reset by someone else after regen read the index): the pending reset file then holds the stale
 * index, and trusting it would fail every later round the same way. Read from the journal's typed error record.
 */
function indexNamedBySetupFailure(d: StepDeps, leader: string, round: number): number | null {
  const failed = d.store.journal(d.runId, { step: STEPS.leaderSetup.name, node: leader }).filter((r) => r.attempt === round && r.outcome === 'failed');
  const last = failed.reduce<(typeof failed)[number] | undefined>((a, r) => (a === undefined || r.id > a.id ? r : a), undefined);
  if (last?.detail == null) return null;
  const detail = JSON.parse(last.detail) as { error?: ErrorRecord };
  return detail.error?.validResetIndex ?? null;
}

/** Consul's refusal of a bootstrap with a stale reset index names the valid one (agent/consul/acl_endpoint.go). */
const STALE_INDEX = /Invalid bootstrap reset index \(specified \d+, reset index: (\d+)\)/;

/** A setup failure that is consul refusing a stale reset index, as a typed error; any other error as it is. */
function typedSetupFailure(err: unknown): unknown {
  if (!(err instanceof CommandFailedError) || err instanceof StaleResetIndexError) return err;
  const m = STALE_INDEX.exec(err.message);
  return m?.[1] === undefined ? err : new StaleResetIndexError(err.node ?? '?', err.message, err.exitCode, Number(m[1]));
}

export async function writeResetFile(d: StepDeps, leader: PlannedNode, index: number, round: number): Promise<void> {
  await durableStep<null>(d.journal, {
    step: STEPS.resetFile.name,
    node: leader.name,
    round,
    probe: async () => ((await d.port.probeResetFile(leader.name)) === index ? { state: 'done', result: null } : { state: 'not-done' }),
    apply: async () => {
      await d.port.writeResetFile(leader.name, index);
      return null;
    },
  });
}

export async function stopService(d: StepDeps, node: PlannedNode, step: typeof STEPS.leaderStop.name | typeof STEPS.followerStop.name, round: number): Promise<void> {
  await durableStep<null>(d.journal, {
    step,
    node: node.name,
    round,
    // A mesh server was already stopped before the leader's restart (STEPS.stopServer): look before stopping.
    probeFirst: step === STEPS.followerStop.name && node.kind === 'server',
    probe: async () => ((await d.port.serviceActive(node.name)) ? { state: 'not-done' } : { state: 'done', result: null }),
    apply: async () => {
      await d.port.stopService(node.name);
      return null;
    },
  });
  if (step === STEPS.leaderStop.name) d.onDowntimeStart?.(d.now());
}

export async function wipeNode(d: StepDeps, node: PlannedNode, step: typeof STEPS.leaderWipe.name | typeof STEPS.followerWipe.name, round: number): Promise<void> {
  // The backup is what makes the wipe safe: refuse to wipe a node whose backup is not verified.
  if (d.store.listBackups(d.runId, node.name).length === 0 && !(await d.port.probeBackup(node.name, d.runId))) {
    throw new NeedsOperatorError(`refusing to wipe ${node.name}: its backup for this run is missing or does not verify`, {
      node: node.name,
      hint: 'regen resume (the backup step runs again)',
    });
  }
  await durableStep<null>(d.journal, {
    step,
    node: node.name,
    round,
    probe: async () => ((await d.port.probeWipe(node.name, node.wipeSet ?? node.profile)) ? { state: 'done', result: null } : { state: 'not-done' }),
    apply: async () => {
      await d.port.wipe(node.name, node.wipeSet ?? node.profile);
      return null;
    },
  });
}

/**
 * With several mesh servers, the leader restarted with a new CA cannot reach the others (they verify TLS) and has no
 * quorum, so its first-instance setup could never bootstrap. Consul's outage recovery makes it start as a
 * one-server raft; the other servers join it again when they are set up.
 */
export async function writeRaftRecovery(d: StepDeps, leader: PlannedNode, round: number): Promise<void> {
  const want = `${leader.bindAddress}:8300`;
  await durableStep<null>(d.journal, {
    step: STEPS.raftRecovery.name,
    node: leader.name,
    round,
    probe: async () => {
      const peers = await d.port.probeRaftRecovery(leader.name);
      return peers !== null && peers.length === 1 && peers[0] === want ? { state: 'done', result: null } : { state: 'not-done' };
    },
    apply: async () => {
      await requirePeersInfo(d.port, leader);
      await d.port.writeRaftRecovery(leader.name, leader.bindAddress);
      return null;
    },
  });
}

export interface LeaderSetupResult {
  credentialsSha256: string;
}

/** The leader's setup is done when the service runs with a credentials file this run made (checksum changed) and the password file is back. */
export async function setupLeader(d: StepDeps, leader: PlannedNode, round: number): Promise<LeaderSetupResult> {
  const probe = async (): Promise<Probe<LeaderSetupResult>> => {
    const s = await d.port.probeSetup(leader.name);
    const fresh = s.credentialsSha256 !== null && s.credentialsSha256 !== leader.credentialsSha256Before;
    if (fresh && s.serviceActive && s.hasPasswordFile && s.credentialsSha256 !== null) return { state: 'done', result: { credentialsSha256: s.credentialsSha256 } };
    return { state: 'not-done' };
  };
  return durableStep<LeaderSetupResult>(d.journal, {
    step: STEPS.leaderSetup.name,
    node: leader.name,
    round,
    probeFirst: true,
    probe,
    apply: async () => {
      await d.port.setupLeader(leader.name, leader.bindAddress, await d.secret()).catch((err: unknown) => {
        throw typedSetupFailure(err);
      });
      const p = await probe();
      if (p.state !== 'done') {
        throw new CommandFailedError(leader.name, `service-discover setup --first-instance on ${leader.name} reported success but left no new credentials or no running service`, 0);
      }
      return p.result;
    },
  });
}

/**
 * Poll until `check` holds. A check that throws counts as "not yet" (members converge, a node restarts its agent)
 * until the deadline; then the last reason is reported. Unknown outcomes and unreachable nodes are not retried here.
 */
async function waitFor(d: StepDeps, check: () => Promise<boolean>, what: () => string): Promise<void> {
  const deadline = d.now() + d.convergeTimeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      if (await check()) return;
      lastError = null;
    } catch (err) {
      if (err instanceof RegenError && (err.kind === 'unreachable' || err.kind === 'needs-operator')) throw err;
      lastError = err;
    }
    if (d.now() >= deadline) {
      const why = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new RegenError('step-failed', `timed out after ${Math.round(d.convergeTimeoutMs / 1000)} s waiting for ${what()}${why}`, { hint: 'regen resume' });
    }
    await d.sleep(500);
  }
}

function memberOf(members: Member[], node: PlannedNode): Member | undefined {
  const dashed = node.fqdn.replace(/\./g, '-');
  return members.find((m) => m.address.split(':')[0] === node.bindAddress || m.name.endsWith(dashed));
}

function expectedType(kind: MeshKind): Member['type'] {
  return kind === 'server' ? 'server' : 'client';
}

/** Read-only check that `node` is an alive member of the right type, as the leader sees it with the new token. */
export async function verifyMember(d: StepDeps, leader: PlannedNode, node: PlannedNode, step: typeof STEPS.leaderVerify.name | typeof STEPS.followerVerify.name, round: number): Promise<void> {
  await durableStep<null>(d.journal, {
    step,
    node: node.name,
    round,
    probe: notDone,
    apply: async () => {
      const secret = await d.secret();
      let last = 'not listed';
      const ca = await leaderCaSha256(d, leader, secret);
      await waitFor(
        d,
        async () => {
          const m = memberOf(await d.port.members(leader.name, secret), node);
          last = m ? `${m.status} ${m.type}` : 'not listed';
          if (m === undefined || m.status !== 'alive' || m.type !== expectedType(node.kind ?? 'agent')) return false;
          // Alive is gossip only: the node is back when it proves it (RPC, CA, certificate, keyring).
          const why = await whyNotBack(d, node, secret, ca);
          if (why !== null) last = `alive, but ${why}`;
          return why === null;
        },
        () => `${node.name} to be an alive ${node.kind} (last seen: ${last})`,
      );
      return null;
    },
  });
}

export async function copyCredentials(d: StepDeps, leader: PlannedNode, node: PlannedNode, sha256: string, round: number): Promise<void> {
  await durableStep<null>(d.journal, {
    step: STEPS.copyCredentials.name,
    node: node.name,
    round,
    probe: async () => ((await d.port.credentialsSha256(node.name)) === sha256 ? { state: 'done', result: null } : { state: 'not-done' }),
    apply: async () => {
      const file = await d.port.readCredentials(leader.name);
      if (!file) throw new CommandFailedError(leader.name, `the leader ${leader.name} has no cluster-credentials.tar.gpg`, null);
      if (file.sha256 !== sha256) {
        throw new NeedsOperatorError(`the leader's credentials changed since its setup (sha256 ${file.sha256.slice(0, 12)}…, expected ${sha256.slice(0, 12)}…)`, {
          node: leader.name,
          hint: 'someone else may be working on the mesh; check, then regen resume',
        });
      }
      await d.port.writeCredentials(node.name, file.bytes, sha256);
      return null;
    },
  });
}

export async function setupFollower(d: StepDeps, leader: PlannedNode, node: PlannedNode, round: number): Promise<void> {
  const kind = node.kind ?? 'agent';
  const probe = async (): Promise<Probe<null>> => {
    if (!(await d.port.serviceActive(node.name))) return { state: 'not-done' };
    const secret = await d.secret();
    const m = memberOf(await d.port.members(leader.name, secret), node);
    if (!m || m.status !== 'alive' || m.type !== expectedType(kind)) return { state: 'not-done' };
    // A node left alive with its old setup (never set up again) is not done: it must prove it is back.
    try {
      return (await whyNotBack(d, node, secret, await leaderCaSha256(d, leader, secret))) === null ? { state: 'done', result: null } : { state: 'not-done' };
    } catch {
      return { state: 'not-done' };
    }
  };
  await durableStep<null>(d.journal, {
    step: STEPS.followerSetup.name,
    node: node.name,
    round,
    probeFirst: round > 1,
    probe,
    apply: async () => {
      await d.port.setupFollower(node.name, node.bindAddress, await d.secret(), kind);
      return null;
    },
  });
}

export interface FinalReport {
  leaderSha256: string;
  members: number;
}

export async function finalVerify(d: StepDeps, leader: PlannedNode, nodes: PlannedNode[], sha256: string): Promise<FinalReport> {
  return durableStep<FinalReport>(d.journal, {
    step: STEPS.finalVerify.name,
    node: leader.name,
    probe: notDone,
    apply: async () => {
      const secret = await d.secret();
      let problems: string[] = [];
      await waitFor(
        d,
        async () => {
          problems = [];
          const members = await d.port.members(leader.name, secret);
          const ca = await leaderCaSha256(d, leader, secret);
          for (const n of nodes) {
            const m = memberOf(members, n);
            const want = expectedType(n.kind ?? 'agent');
            if (!m) problems.push(`${n.name}: not a member`);
            else if (m.status !== 'alive' || m.type !== want) problems.push(`${n.name}: ${m.status} ${m.type} (want alive ${want})`);
            else {
              const why = await whyNotBack(d, n, secret, ca);
              if (why !== null) problems.push(`${n.name}: alive, but ${why}`);
            }
          }
          return problems.length === 0;
        },
        () => `every node to be an alive member (${problems.length ? problems.join('; ') : 'members could not be listed'})`,
      );
      const mismatched: string[] = [];
      for (const n of nodes) {
        const s = await d.port.credentialsSha256(n.name);
        if (s !== sha256) mismatched.push(`${n.name}: ${s === null ? 'no credentials file' : `sha256 ${s.slice(0, 12)}…`}`);
      }
      if (mismatched.length) {
        throw new RegenError('step-failed', `credentials differ from the leader's:\n  - ${mismatched.join('\n  - ')}`, { hint: 'regen resume' });
      }
      return { leaderSha256: sha256, members: nodes.length };
    },
  });
}

export interface RevokeReport {
  revoked: string[];
}
