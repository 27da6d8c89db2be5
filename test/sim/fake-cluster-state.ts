/**
 * regen's own state on a fake node (the lock directory and the run mirrors), on the node's in-memory filesystem,
 * with the semantics of adapters/carbonio/cluster-state.ts: an atomic take, compare-the-token updates, and a
 * mirror written only while the writer's token holds the lock.
 */
import { BACKUP_ROOT, CONFIG_JSON, LOCK_DIR, MAIN_JSON, MIRROR_DIR, RESET_FILE, type NodePort } from '../../machines/port.js';
import type { MemFs } from './mem-fs.js';
import type { PortMethod } from './fake-cluster.js';

type Call = <T>(node: string, method: PortMethod, body: () => T) => Promise<T>;
type StateMethods = Pick<NodePort, 'lockTake' | 'lockUpdate' | 'lockRemove' | 'mirrorWrite' | 'regenTraces'>;

const ROOT = { owner: 'root', group: 'root', mode: 0o600 };

export function fakeStateMethods(call: Call, fsOf: (node: string) => MemFs, active: (node: string) => boolean): StateMethods {
  const token = (node: string): string | null => fsOf(node).read(`${LOCK_DIR}/token`)?.toString('utf8').trim() ?? null;
  const locked = (node: string): boolean => fsOf(node).exists(`${LOCK_DIR}/token`) || fsOf(node).exists(`${LOCK_DIR}/holder`);
  const write = (node: string, t: string, holder: string): void => {
    fsOf(node).write(`${LOCK_DIR}/holder`, `${holder}\n`, ROOT);
    fsOf(node).write(`${LOCK_DIR}/token`, `${t}\n`, ROOT);
  };
  return {
    lockTake: (node, t, holder) =>
      call(node, 'lockTake', () => {
        if (locked(node)) return { taken: false, current: fsOf(node).read(`${LOCK_DIR}/holder`)?.toString('utf8').trim() ?? '' };
        write(node, t, holder);
        return { taken: true, current: null };
      }),
    lockUpdate: (node, expect, t, holder) =>
      call(node, 'lockUpdate', () => {
        if (!locked(node) || token(node) !== expect) return false;
        write(node, t, holder);
        return true;
      }),
    lockRemove: (node, expect) =>
      call(node, 'lockRemove', () => {
        if (!locked(node) || (token(node) ?? '') !== expect) return false;
        fsOf(node).remove(`${LOCK_DIR}/holder`);
        fsOf(node).remove(`${LOCK_DIR}/token`);
        return true;
      }),
    mirrorWrite: (node, runId, text, t) =>
      call(node, 'mirrorWrite', () => {
        if (token(node) !== t) return 'lock-lost' as const;
        fsOf(node).write(`${MIRROR_DIR}/${runId}.json`, text, ROOT);
        return 'written' as const;
      }),
    regenTraces: (node) =>
      call(node, 'regenTraces', () => {
        const fs = fsOf(node);
        const backupRuns = [...new Set(fs.paths().filter((p) => p.startsWith(`${BACKUP_ROOT}/`)).map((p) => p.slice(BACKUP_ROOT.length + 1).split('/')[0] ?? ''))].filter((r) => r !== '');
        return {
          lock: locked(node) ? (fs.read(`${LOCK_DIR}/holder`)?.toString('utf8').trim() ?? '') : null,
          mirrors: fs.list(MIRROR_DIR).map((f) => ({ runId: f.replace(/^.*\//, '').replace(/\.json$/, ''), text: fs.read(f.startsWith('/') ? f : `${MIRROR_DIR}/${f}`)?.toString('utf8') ?? '' })),
          backupRuns,
          resetFile: fs.exists(RESET_FILE),
          hasMainJson: fs.exists(MAIN_JSON),
          hasConfigJson: fs.exists(CONFIG_JSON),
          serviceActive: active(node),
        };
      }),
  };
}
