/** The backups table: each file a node's backup holds, with its checksum, size, mode and owner. */
import { prepare, type Tables } from './bind.js';
import type { BackupRow } from './types.js';

interface BackupRecord {
  run_id: string;
  node: string;
  dir: string;
  path: string;
  sha256: string;
  size: number;
  mode: string;
  owner: string;
  group_name: string;
}

const toBackup = (r: BackupRecord): BackupRow => ({
  runId: r.run_id,
  node: r.node,
  dir: r.dir,
  path: r.path,
  sha256: r.sha256,
  size: r.size,
  mode: r.mode,
  owner: r.owner,
  group: r.group_name,
});

function statements(t: Tables) {
  const p = <R>(sql: string) => prepare<R>(t.db, sql);
  return {
    upsertBackup: p(
      `INSERT INTO backups (run_id, node, dir, path, sha256, size, mode, owner, group_name)
       VALUES (@runId, @node, @dir, @path, @sha256, @size, @mode, @owner, @group)
       ON CONFLICT (run_id, node, path) DO UPDATE SET dir = excluded.dir, sha256 = excluded.sha256,
         size = excluded.size, mode = excluded.mode, owner = excluded.owner, group_name = excluded.group_name`,
    ),
    listBackups: p<BackupRecord>('SELECT * FROM backups WHERE run_id = @runId AND (@node IS NULL OR node = @node) ORDER BY rowid'),
  };
}

export class BackupTable {
  readonly #t: Tables;
  readonly #q: ReturnType<typeof statements>;

  constructor(t: Tables) {
    this.#t = t;
    this.#q = statements(t);
  }

  recordBackup(b: BackupRow): void {
    this.#q.upsertBackup.run(this.#t.b.bind({ ...b }));
  }

  listBackups(runId: string, node?: string): BackupRow[] {
    return this.#q.listBackups.all(this.#t.b.bind({ runId, node: node ?? null })).map(toBackup);
  }
}
