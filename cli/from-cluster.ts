/**
 * `regen resume --from-cluster -i INVENTORY [RUN]`: read the run's mirror from every node of the inventory, take the
 * newest valid one (highest sequence; disagreeing or damaged copies are reported), and import it into the local
 * database when it is newer than what that database holds. The resume then goes on as any other, from the run's
 * recorded inventory and leader, and takes the cluster lock over.
 */
import { NeedsOperatorError, UsageError } from '../machines/errors.js';
import { decodeMirror, type ParsedMirror } from '../machines/mirror.js';
import type { Inventory } from '../machines/port.js';
import { importMirror } from '../store/import.js';
import type { Store } from '../store/types.js';
import type { Io } from './io.js';
import type { ConnectOptions } from './main.js';
import { makeNodePort, type PortFactory } from './wiring.js';

export interface FromClusterOptions extends ConnectOptions {
  inventory: string;
  inventoryFormat?: 'auto' | 'yaml' | 'json' | 'ansible';
  run: string | undefined;
  makePort?: PortFactory;
}

interface Copy {
  node: string;
  mirror: ParsedMirror;
}

async function readCopies(o: FromClusterOptions, inventory: Inventory, store: Store, io: Io): Promise<Copy[]> {
  const port = await (o.makePort ?? makeNodePort)(inventory, o, store, io);
  try {
    const copies: Copy[] = [];
    await Promise.all(
      inventory.nodes.map(async (n) => {
        const t = await port.regenTraces(n.name).catch((err: unknown) => {
          io.err(`regen: ${n.name}: cannot read its mirrors (${(err as Error).message})\n`);
          return null;
        });
        for (const m of t?.mirrors ?? []) {
          const d = decodeMirror(m.text);
          if ('invalid' in d) io.err(`regen: ${n.name}: the mirror of run ${m.runId} is not valid (${d.invalid}); ignored\n`);
          else copies.push({ node: n.name, mirror: d });
        }
      }),
    );
    return copies;
  } finally {
    await port.close();
  }
}

function chooseRun(copies: Copy[], run: string | undefined): string {
  if (run !== undefined) return run;
  const open = copies.filter((c) => c.mirror.body.run.status !== 'done' && c.mirror.body.run.status !== 'aborted');
  const pool = open.length > 0 ? open : copies;
  const best = pool.sort((a, b) => b.mirror.envelope.writtenAt - a.mirror.envelope.writtenAt)[0];
  if (best === undefined) throw new NeedsOperatorError('no valid run mirror was found on the nodes of the inventory', { hint: 'check -i INVENTORY; a run started by an older regen has no mirror: regen plan shows what the nodes say' });
  return best.mirror.envelope.runId;
}

/** Imports the chosen run and returns its id. */
export async function importFromCluster(o: FromClusterOptions, store: Store, io: Io): Promise<string> {
  const { loadInventory } = await import('../adapters/inventory/index.js');
  const inventory = loadInventory(o.inventory, { format: o.inventoryFormat ?? 'auto' });
  const copies = await readCopies(o, inventory, store, io);
  const runId = chooseRun(copies, o.run);
  const mine = copies.filter((c) => c.mirror.envelope.runId === runId).sort((a, b) => b.mirror.envelope.seq - a.mirror.envelope.seq);
  const best = mine[0];
  if (best === undefined) throw new UsageError(`no valid mirror of run ${runId} on the nodes of the inventory`, 'regen plan -i INVENTORY names the runs found on the nodes');
  const versions = new Set(mine.map((c) => `${c.mirror.envelope.seq}:${c.mirror.envelope.sha256}`));
  if (versions.size > 1) {
    io.err(`regen: the mirrors of run ${runId} disagree (${mine.map((c) => `${c.node} seq ${c.mirror.envelope.seq}`).join(', ')}); using seq ${best.mirror.envelope.seq} from ${best.node}\n`);
  }
  const res = importMirror(store, best.mirror.body, best.mirror.envelope.seq);
  if (res.imported) {
    io.err(`regen: run ${runId} imported from ${best.node} (mirror seq ${best.mirror.envelope.seq}${res.replaced ? `, newer than the local record at seq ${res.localSeq ?? 0}` : ''}) into ${store.path}\n`);
  } else {
    io.err(`regen: the local record of run ${runId} (seq ${res.localSeq}) is as new as the nodes' mirror (seq ${best.mirror.envelope.seq}); it is kept\n`);
  }
  return runId;
}
