/**
 * The model's node filesystem over real files: node paths (/etc/zextras/…) map to the node's directory on the
 * host (DIR/nodes/<short>/etc-zextras/…) by the lab's bind-mount table, so any node's files can be reached from
 * inside any other node (the lab directory itself is not shadowed). Owners and modes are real (chown/chmod).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FileStat, NodeFs, WriteOptions } from './model.js';

/** Node path → directory (or file) under the node's root on the host, as the lab bind-mounts them. */
export const NODE_MOUNTS: ReadonlyArray<readonly [string, string]> = [
  ['/etc/zextras', 'etc-zextras'],
  ['/var/lib/service-discover', 'var-lib-sd'],
  ['/opt/zextras', 'opt-zextras'],
  ['/root', 'root-home'],
  ['/var/backups', 'backups'],
  ['/etc/regen-lab', 'lab'],
  ['/usr/local/sbin', 'bin'],
  ['/etc/hosts', 'hosts'],
];

interface Ids {
  byName: Map<string, number>;
  byId: Map<number, string>;
}

function readIds(file: string): Ids {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    text = '';
  }
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name === undefined || id === undefined || name === '') continue;
    const n = Number(id);
    if (!Number.isInteger(n)) continue;
    byName.set(name, n);
    if (!byId.has(n)) byId.set(n, name);
  }
  return { byName, byId };
}

let users: Ids | null = null;
let groups: Ids | null = null;

function uidOf(name: string): number {
  users ??= readIds('/etc/passwd');
  const id = users.byName.get(name);
  if (id === undefined) throw new Error(`chown: invalid user: '${name}'`);
  return id;
}

function gidOf(name: string): number {
  groups ??= readIds('/etc/group');
  const id = groups.byName.get(name);
  if (id === undefined) throw new Error(`chown: invalid group: '${name}'`);
  return id;
}

function userName(uid: number): string {
  users ??= readIds('/etc/passwd');
  return users.byId.get(uid) ?? String(uid);
}

function groupName(gid: number): string {
  groups ??= readIds('/etc/group');
  return groups.byId.get(gid) ?? String(gid);
}

export class RealFs implements NodeFs {
  /** DIR/nodes/<short> on the host. */
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  /** Where a node path lives on the host. */
  hostPath(nodePath: string): string {
    const p = path.posix.normalize(nodePath);
    for (const [mount, sub] of NODE_MOUNTS) {
      if (p === mount) return path.join(this.root, sub);
      if (p.startsWith(`${mount}/`)) return path.join(this.root, sub, p.slice(mount.length + 1));
    }
    throw new Error(`${nodePath} is not one of a lab node's own paths`);
  }

  read(p: string): Buffer | null {
    try {
      return fs.readFileSync(this.hostPath(p));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'EISDIR') return null;
      throw e;
    }
  }

  write(p: string, data: Buffer | string, opts: WriteOptions): void {
    const host = this.hostPath(p);
    const before = this.stat(p);
    fs.mkdirSync(path.dirname(host), { recursive: true });
    fs.writeFileSync(host, data);
    // Explicit chmod: the process umask must not decide a credential file's mode.
    fs.chmodSync(host, opts.mode ?? before?.mode ?? 0o644);
    const owner = opts.owner ?? before?.owner;
    const group = opts.group ?? before?.group ?? owner;
    if (owner !== undefined && group !== undefined) fs.chownSync(host, uidOf(owner), gidOf(group));
  }

  exists(p: string): boolean {
    return fs.existsSync(this.hostPath(p));
  }

  remove(p: string): boolean {
    try {
      fs.unlinkSync(this.hostPath(p));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  list(dir: string): string[] {
    try {
      return fs
        .readdirSync(this.hostPath(dir), { withFileTypes: true })
        .filter((d) => d.isFile())
        .map((d) => d.name)
        .sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  mkdir(p: string, opts: WriteOptions = {}): void {
    const host = this.hostPath(p);
    if (fs.existsSync(host)) return;
    fs.mkdirSync(host, { recursive: true });
    fs.chmodSync(host, opts.mode ?? 0o755);
    if (opts.owner !== undefined) fs.chownSync(host, uidOf(opts.owner), gidOf(opts.group ?? opts.owner));
  }

  chmod(p: string, mode: number): void {
    fs.chmodSync(this.hostPath(p), mode);
  }

  chown(p: string, owner: string, group: string): void {
    fs.chownSync(this.hostPath(p), uidOf(owner), gidOf(group));
  }

  stat(p: string): FileStat | null {
    let st: fs.Stats;
    try {
      st = fs.statSync(this.hostPath(p));
    } catch {
      return null;
    }
    if (!st.isFile()) return null;
    return { owner: userName(st.uid), group: groupName(st.gid), mode: st.mode & 0o7777, size: st.size };
  }
}
