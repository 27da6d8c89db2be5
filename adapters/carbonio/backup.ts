/** The port's backup of a node's mesh files into the run's backup directory, and its probe (manifest verified). */
import { CommandFailedError, NeedsOperatorError } from '../../machines/errors.js';
import type { BackupManifest, NodePort } from '../../machines/port.js';
import * as cmd from './commands.js';
import { parseBackup } from './parse.js';
import { build, failed, type PortKit } from './port-kit.js';

// Checked with `satisfies`, not typed as Pick<NodePort, …>: a step name (backup) is a string literal in
// machines/catalogue.ts alone (test/unit/catalogue.test.ts).
export function backupMethods({ run, log }: PortKit) {
  return {
    async backup(node: string, runId: string): Promise<BackupManifest> {
      const command = build(() => cmd.backup(runId));
      const dir = cmd.backupDir(runId);
      const res = await run(node, 'back up files', command);
      if (res.code === 6) {
        const what = /regen:backup-failed (.*)/.exec(res.stderr)?.[1] ?? dir;
        throw new CommandFailedError(
          node,
          `backup on ${node} failed at ${what} (disk full?): nothing was removed from the node (only the partial copy in ${dir} was deleted again)`,
          res.code,
          `free space under /var/backups on ${node}, then resume the run`,
        );
      }
      if (res.code === 5) {
        throw new NeedsOperatorError(`the backup in ${dir} on ${node} does not match its manifest; nothing was changed`, {
          node,
          hint: `look at ${dir} on ${node}; move it away to let regen take a fresh backup`,
        });
      }
      if (res.code !== 0) throw failed(node, 'back up files', res, 'nothing was removed');
      const { state, manifest } = parseBackup(res.stdout, dir, node);
      if ((state !== 'created' && state !== 'existing') || manifest === null) throw new NeedsOperatorError(`backup on ${node}: unexpected state ${state}`, { node });
      return manifest;
    },

    async probeBackup(node: string, runId: string): Promise<BackupManifest | null> {
      const command = build(() => cmd.probeBackup(runId));
      const dir = cmd.backupDir(runId);
      const res = await run(node, 'probe backup', command);
      if (res.code !== 0) throw failed(node, 'probe backup', res);
      const { state, manifest } = parseBackup(res.stdout, dir, node);
      if (state === 'corrupt') log(`${node}: the backup in ${dir} does not match its manifest`);
      return state === 'verified' ? manifest : null;
    },
  } satisfies Partial<NodePort>;
}
