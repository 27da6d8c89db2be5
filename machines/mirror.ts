/**
 * The run's journal mirrored to the nodes, so that a resume can go on from another machine when the local database
 * is lost (`regen resume --from-cluster`).
 *
 * What is mirrored: the run row (with the inventory as resolved and the leader), its nodes, its transitions (the
 * last one with its snapshot), the journal rows and the backups manifest, all as read back from the database, so
 * the mirror obeys the database's redaction; the shared redactor runs over the text once more. Never the audit.
 *
 * Where: the leader, another mesh server (else the first follower) and one node more (three copies; before the
 * leader is known: the first three inventory nodes). How: /var/lib/regen/runs/RUN.json, written to a temporary file and renamed, root only, and
 * only while the node's cluster lock carries this process's token.
 *
 * When: after every persisted transition (in the background), and before every remote effect (awaited). The
 * second is what bounds the lag: the step's intent row is in the database before the effect runs, and the effect
 * waits until a mirror holding that row is on the nodes, so the cluster is never an effect ahead of its mirror;
 * whatever happened after the mirror's last write is an open intent, settled by the step's probe on resume.
 * Writes are serialised and coalesced: followers set up in parallel share one write.
 *
 * Format: a JSON envelope {format, version, runId, cluster, seq, writtenAt, writer, sha256, body} where body is the
 * JSON text of the run's records and sha256 its checksum. seq grows with every record the database gains
 * (transitions, journal rows, their probes and outcomes, backups), so the newest mirror has the highest seq.
 * Version 2 leaves the backups manifest out of the body: it is the result of each node's backup step, already in
 * the journal rows, and is rebuilt from them when the mirror is read (version 1 carried it twice; it is still read).
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { CATALOGUE, STEPS } from './catalogue.js';
import { RegenError } from './errors.js';
import type { BackupManifest, NodePort } from './port.js';
import type { BackupRow, JournalRow, NodeRow, RunRow, Store, TransitionRow } from '../store/types.js';
import type { ClusterLock } from './cluster-lock.js';

export const MIRROR_FORMAT = 'regen-mirror';
export const MIRROR_VERSION = 2;
/** Versions this regen reads. */
export const MIRROR_READS: readonly number[] = [1, 2];

export interface MirrorBody {
  run: RunRow;
  nodes: NodeRow[];
  transitions: TransitionRow[];
  journal: JournalRow[];
  backups: BackupRow[];
}

export interface MirrorEnvelope {
  format: typeof MIRROR_FORMAT;
  version: number;
  runId: string;
  cluster: string;
  seq: number;
  writtenAt: number;
  writer: string;
  sha256: string;
  body: string;
}

export interface ParsedMirror {
  envelope: MirrorEnvelope;
  body: MirrorBody;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The mirror's sequence number: how many records the run has, counting every probe and outcome a row gained, and
 * one more once the run is aborted (`regen abort` adds no other record, and its mirror must win over the last).
 */
export function mirrorSeq(b: Pick<MirrorBody, 'run' | 'transitions' | 'journal' | 'backups'>): number {
  const journal = b.journal.reduce((n, r) => n + 1 + (r.outcome === null ? 0 : 1) + (r.probe === null ? 0 : 1), 0);
  return b.transitions.length + journal + b.backups.length + (b.run.status === 'aborted' ? 1 : 0);
}

/** The run's records as the database holds them; only the last transition keeps its snapshot. */
export function mirrorBody(store: Store, runId: string): MirrorBody | null {
  const run = store.getRun(runId);
  if (run === null) return null;
  const transitions = store.listTransitions(runId);
  const last = store.lastTransition(runId);
  if (last !== null && transitions.length > 0) transitions[transitions.length - 1] = last;
  return { run, nodes: store.listNodes(runId), transitions, journal: store.journal(runId), backups: store.listBackups(runId) };
}

/** What goes on the wire: the records without the backups, which the journal's backup rows already hold. */
type WireBody = Omit<MirrorBody, 'backups'>;

/**
 * The backups manifest as the journal holds it: the result of each node's last completed backup step (a per-file
 * row per node and path, as backupNode records them).
 */
export function backupsFromJournal(runId: string, journal: JournalRow[]): BackupRow[] {
  const rows = new Map<string, BackupRow>();
  for (const j of journal) {
    if (j.step !== STEPS.backup.name || (j.outcome !== 'done' && j.outcome !== 'skipped') || j.detail === null) continue;
    const m = (JSON.parse(j.detail) as { result?: BackupManifest }).result;
    if (m === undefined || !Array.isArray(m.files)) continue;
    for (const f of m.files) rows.set(`${j.node}\0${f.path}`, { runId, node: j.node, dir: m.dir, path: f.path, sha256: f.sha256, size: f.size, mode: f.mode, owner: f.owner, group: f.group });
  }
  return [...rows.values()];
}

/** The mirror file's text and the checksum of its body (equal checksums: the same records). */
export function encodeMirrorText(body: MirrorBody, opts: { now: number; redact?: (t: string) => string }): { text: string; sha256: string } {
  const wire: WireBody = { run: body.run, nodes: body.nodes, transitions: body.transitions, journal: body.journal };
  const text = (opts.redact ?? ((t: string) => t))(JSON.stringify(wire));
  const env: MirrorEnvelope = {
    format: MIRROR_FORMAT,
    version: MIRROR_VERSION,
    runId: body.run.id,
    cluster: body.run.cluster,
    seq: mirrorSeq(body),
    writtenAt: opts.now,
    writer: hostname(),
    sha256: sha256(text),
    body: text,
  };
  return { text: `${JSON.stringify(env)}\n`, sha256: env.sha256 };
}

export function encodeMirror(body: MirrorBody, opts: { now: number; redact?: (t: string) => string }): string {
  return encodeMirrorText(body, opts).text;
}

/** A mirror file's text → the mirror, or why it is not valid (unparseable, other format or version, bad checksum). */
export function decodeMirror(text: string): ParsedMirror | { invalid: string } {
  let env: Partial<MirrorEnvelope>;
  try {
    env = JSON.parse(text) as Partial<MirrorEnvelope>;
  } catch {
    return { invalid: 'not JSON (truncated or damaged)' };
  }
  if (env.format !== MIRROR_FORMAT) return { invalid: 'not a regen mirror' };
  if (typeof env.version !== 'number' || !MIRROR_READS.includes(env.version)) return { invalid: `mirror version ${String(env.version)}, this regen reads ${MIRROR_READS.join(' and ')}` };
  if (typeof env.body !== 'string' || env.sha256 !== sha256(env.body)) return { invalid: 'checksum mismatch' };
  const parsed = JSON.parse(env.body) as WireBody & { backups?: BackupRow[] };
  if (parsed.run?.id !== env.runId || typeof env.seq !== 'number' || !Array.isArray(parsed.journal)) return { invalid: 'envelope and body disagree' };
  const body: MirrorBody = { ...parsed, backups: env.version === 1 ? (parsed.backups ?? []) : backupsFromJournal(parsed.run.id, parsed.journal) };
  return { envelope: env as MirrorEnvelope, body };
}

/** Copies of the mirror: the leader and two more, so one lost node and one damaged file still leave a valid copy. */
export const MIRROR_COPIES = 3;

/**
 * Where the mirror goes: the leader, then the other mesh servers, then the followers in inventory order, up to
 * MIRROR_COPIES nodes; before the leader is known, the first nodes of the inventory.
 */
export function mirrorTargets(nodes: Array<{ name: string; kind: string | null }>, leader: string | null): string[] {
  if (leader === null || !nodes.some((n) => n.name === leader)) return nodes.slice(0, MIRROR_COPIES).map((n) => n.name);
  const others = nodes.filter((n) => n.name !== leader);
  const ordered = [...others.filter((n) => n.kind === 'server'), ...others.filter((n) => n.kind !== 'server')];
  return [leader, ...ordered.slice(0, MIRROR_COPIES - 1).map((n) => n.name)];
}

/** Copies an effect waits for before it runs (the others finish in the background, in order per node). */
export const MIRROR_QUORUM = 2;

type Settled<T> = PromiseSettledResult<T> | undefined;

/**
 * Resolves once `need` attempts answered 'written', or one answered 'lock-lost', or all have settled; with the
 * results known so far (undefined: still running).
 */
function quorum(attempts: Array<Promise<'written' | 'lock-lost'>>, need: number): Promise<Array<Settled<'written' | 'lock-lost'>>> {
  const results: Array<Settled<'written' | 'lock-lost'>> = attempts.map(() => undefined);
  return new Promise((resolve) => {
    let written = 0;
    let settled = 0;
    attempts.forEach((p, i) => {
      p.then(
        (value) => {
          results[i] = { status: 'fulfilled', value };
          if (value === 'written') written++;
          if (value === 'lock-lost' || written >= need) resolve(results);
        },
        (reason: unknown) => {
          results[i] = { status: 'rejected', reason };
        },
      ).finally(() => {
        if (++settled === attempts.length) resolve(results);
      });
    });
    if (attempts.length === 0) resolve(results);
  });
}

/**
 * How long a transition's background write waits for an effect to carry it: longer than the reads a step makes
 * before its effect (its probe, the leader's credentials), far shorter than the heartbeat.
 */
export const KICK_DELAY_MS = 250;

export interface MirrorStats {
  writes: number;
  writeMs: number;
  bytes: number;
  /** Time remote effects waited for a mirror write (summed over parallel effects). */
  gateWaitMs: number;
  /** Wall time during which at least one effect was waiting (the union of the waits). */
  gateWallMs: number;
  gates: number;
}

export class MirrorWriter {
  readonly stats: MirrorStats = { writes: 0, writeMs: 0, bytes: 0, gateWaitMs: 0, gateWallMs: 0, gates: 0 };
  readonly #chains = new Map<string, Promise<unknown>>();
  #waiting = 0;
  #waitingSince = 0;
  readonly #port: NodePort;
  readonly #store: Store;
  readonly #runId: string;
  readonly #lock: ClusterLock;
  readonly #redact: ((t: string) => string) | undefined;
  readonly #now: () => number;
  #lastSha = '';
  #inflight: Promise<void> = Promise.resolve();
  #queued: Promise<void> | null = null;
  #kickTimer: NodeJS.Timeout | null = null;

  /** Where every write goes; default: mirrorTargets of the run's nodes and leader. */
  readonly #targets: ((body: MirrorBody) => string[]) | undefined;

  constructor(a: { port: NodePort; store: Store; runId: string; lock: ClusterLock; redact?: (t: string) => string; now?: () => number; targets?: (body: MirrorBody) => string[] }) {
    this.#targets = a.targets;
    this.#port = a.port;
    this.#store = a.store;
    this.#runId = a.runId;
    this.#lock = a.lock;
    this.#redact = a.redact;
    this.#now = a.now ?? Date.now;
  }

  /**
   * After a transition: a write in the background, deferred by KICK_DELAY_MS so that the effect the transition
   * leads to (whose awaited write carries the same records, and its intent) shares it instead of queueing behind
   * it. A second transition while one is still deferred writes at once: the mirror lags one transition at most. A
   * failure here is not lost: the next flush (before the next effect, or at the run's end) writes the same records
   * again and reports its own failure.
   */
  kick(): void {
    if (this.#kickTimer !== null) {
      this.flush().catch(() => undefined);
      return;
    }
    this.#kickTimer = setTimeout(() => {
      this.#kickTimer = null;
      this.flush().catch(() => undefined);
    }, KICK_DELAY_MS);
    this.#kickTimer.unref();
  }

  /** Resolves once a mirror holding every record written before this call is on the nodes. */
  flush(): Promise<void> {
    if (this.#kickTimer !== null) clearTimeout(this.#kickTimer);
    this.#kickTimer = null;
    if (this.#queued) return this.#queued;
    const next = this.#inflight
      .catch(() => undefined)
      .then(() => {
        this.#queued = null;
        const p = this.#writeNow();
        this.#inflight = p;
        return p;
      });
    this.#queued = next;
    return next;
  }

  /** Before a remote effect: the lock must still be ours and the mirror must hold the effect's intent. */
  async beforeEffect(): Promise<void> {
    const lost = this.#lock.lost;
    if (lost) throw lost;
    const t0 = this.#now();
    if (this.#waiting++ === 0) this.#waitingSince = t0;
    try {
      await this.flush();
    } finally {
      const t1 = this.#now();
      if (--this.#waiting === 0) this.stats.gateWallMs += t1 - this.#waitingSince;
      this.stats.gates++;
      this.stats.gateWaitMs += t1 - t0;
    }
  }

  async #writeNow(): Promise<void> {
    const body = mirrorBody(this.#store, this.#runId);
    if (body === null) return;
    const { text, sha256: digest } = encodeMirrorText(body, { now: this.#now(), ...(this.#redact ? { redact: this.#redact } : {}) });
    if (digest === this.#lastSha) return;
    const targets = this.#targets?.(body) ?? mirrorTargets(body.nodes, body.run.leader);
    const t0 = this.#now();
    // One chain per node keeps its writes in order; the effect waits for two copies (or every answer), not three.
    const attempts = targets.map((n) => {
      const p = (this.#chains.get(n) ?? Promise.resolve<unknown>(null)).catch(() => undefined).then(() => this.#port.mirrorWrite(n, this.#runId, text, this.#lock.token));
      this.#chains.set(n, p);
      return p;
    });
    const results = await quorum(attempts, Math.min(MIRROR_QUORUM, targets.length));
    this.stats.writes++;
    this.stats.writeMs += this.#now() - t0;
    this.stats.bytes += text.length;
    if (results.some((r) => r?.status === 'fulfilled' && r.value === 'lock-lost')) {
      throw new RegenError('lock-held', `run ${this.#runId} no longer holds the cluster lock (another process took it over, or regen unlock removed it); nothing more is sent`, {
        hint: 'the run goes on from the process that holds the lock',
      });
    }
    const written = results.filter((r) => r?.status === 'fulfilled' && r.value === 'written').length;
    if (written === 0) {
      const why = results.map((r, i) => `${targets[i] ?? '?'}: ${r?.status === 'rejected' ? String((r.reason as Error).message) : 'not written'}`).join('; ');
      throw new RegenError('unreachable', `the run's mirror could not be written to any of ${targets.join(', ')} (${why}); no command was sent after it`, {
        hint: 'make the node reachable, then regen resume',
      });
    }
    this.#lastSha = digest;
  }

  /** Waits until every copy started so far is written (or failed): the end of a run. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#chains.values()]);
  }
}

/**
 * Port methods that change a node, each waiting for the mirror first: every catalogue step's effect that has a
 * probe (a step without one only reads), and the two the steps call besides: readResetIndex (its bootstrap may
 * succeed on a mesh never bootstrapped) and startService (a retry round restarts consul to read the index).
 */
export const EFFECTS: readonly (keyof NodePort)[] = [
  ...new Set<keyof NodePort>([...CATALOGUE.filter((e) => e.probe.length > 0).flatMap((e) => e.effect), 'readResetIndex', 'startService']),
];

/** The port a run uses: every effect first waits for `gate` (when there is one). */
export function gatedPort(port: NodePort, gate: () => MirrorWriter | null): NodePort {
  const out = { ...port } as Record<string, unknown>;
  for (const name of EFFECTS) {
    const fn = (port[name] as (...a: unknown[]) => Promise<unknown>).bind(port);
    out[name] = async (...args: unknown[]) => {
      await gate()?.beforeEffect();
      return fn(...args);
    };
  }
  // A port bound to an actor's abort signal must stay gated: its effects, too, wait for the mirror.
  const bind = port.withSignal?.bind(port);
  if (bind !== undefined) out['withSignal'] = (signal: AbortSignal) => gatedPort(bind(signal), gate);
  return out as unknown as NodePort;
}
