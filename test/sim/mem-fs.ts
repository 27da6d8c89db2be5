/**
 * An in-memory node filesystem for the fake cluster: enough of POSIX files (owner, group, mode) for the model.
 * Directories are implicit except where created explicitly, so `list` answers regular files only.
 */
import type { FileStat, NodeFs, WriteOptions } from './model.js';

interface Entry {
  data: Buffer;
  owner: string;
  group: string;
  mode: number;
}

function normalize(path: string): string {
  if (!path.startsWith('/')) throw new Error(`not an absolute path: ${path}`);
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export class MemFs implements NodeFs {
  readonly #files = new Map<string, Entry>();
  readonly #dirs = new Map<string, { owner: string; group: string; mode: number }>();

  read(path: string): Buffer | null {
    const e = this.#files.get(normalize(path));
    return e === undefined ? null : Buffer.from(e.data);
  }

  write(path: string, data: Buffer | string, opts: WriteOptions): void {
    const p = normalize(path);
    const existing = this.#files.get(p);
    // Like open(O_TRUNC): an existing file keeps its owner and mode unless the writer sets them.
    this.#files.set(p, {
      data: Buffer.from(data),
      owner: opts.owner ?? existing?.owner ?? 'root',
      group: opts.group ?? existing?.group ?? opts.owner ?? 'root',
      mode: opts.mode ?? existing?.mode ?? 0o644,
    });
  }

  exists(path: string): boolean {
    const p = normalize(path);
    return this.#files.has(p) || this.#dirs.has(p);
  }

  remove(path: string): boolean {
    return this.#files.delete(normalize(path));
  }

  list(dir: string): string[] {
    const d = normalize(dir);
    const prefix = d === '/' ? '/' : `${d}/`;
    const names: string[] = [];
    for (const p of this.#files.keys()) {
      if (p.startsWith(prefix) && !p.slice(prefix.length).includes('/')) names.push(p.slice(prefix.length));
    }
    return names.sort();
  }

  mkdir(path: string, opts: WriteOptions = {}): void {
    const p = normalize(path);
    if (this.#dirs.has(p)) return;
    if (p !== '/') this.mkdir(parentOf(p));
    this.#dirs.set(p, { owner: opts.owner ?? 'root', group: opts.group ?? opts.owner ?? 'root', mode: opts.mode ?? 0o755 });
  }

  chmod(path: string, mode: number): void {
    const e = this.#files.get(normalize(path));
    if (e === undefined) throw new Error(`chmod: cannot access '${path}': No such file or directory`);
    e.mode = mode;
  }

  chown(path: string, owner: string, group: string): void {
    const e = this.#files.get(normalize(path));
    if (e === undefined) throw new Error(`chown: cannot access '${path}': No such file or directory`);
    e.owner = owner;
    e.group = group;
  }

  stat(path: string): FileStat | null {
    const e = this.#files.get(normalize(path));
    if (e === undefined) return null;
    return { owner: e.owner, group: e.group, mode: e.mode, size: e.data.length };
  }

  /** Every regular file path, sorted (for tests and dumps). */
  paths(): string[] {
    return [...this.#files.keys()].sort();
  }
}
