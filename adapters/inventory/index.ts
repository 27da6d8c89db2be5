/**
 * Inventory files → machines/port.ts's Inventory: regen's own YAML/JSON format or Carbonio's Ansible INI.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import type { Inventory } from '../../machines/port.js';
import { UsageError } from '../../machines/errors.js';
import { parseAnsibleInventory } from './ansible.js';
import { parseRegenInventory } from './regen-format.js';

export { renderInventoryYaml, parseRegenInventory } from './regen-format.js';
export { parseAnsibleInventory, parseAnsibleIni, MESH_SERVERS_GROUP, DIRECTORY_GROUP } from './ansible.js';

export type InventoryFormat = 'auto' | 'yaml' | 'json' | 'ansible';

export interface LoadInventoryOptions {
  format?: InventoryFormat;
  /** Cluster name for an Ansible inventory (default: the file's base name). Must agree with a regen file's. */
  cluster?: string;
}

/** Decide the format from the extension, else from the first meaningful line. */
export function detectFormat(path: string, text: string): Exclude<InventoryFormat, 'auto'> {
  const ext = extname(path).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  if (ext === '.json') return 'json';
  if (ext === '.ini' || ext === '.cfg') return 'ansible';
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('{')) return 'json';
    if (/^\[[^\]]+\]\s*(?:[#;].*)?$/.test(line)) return 'ansible';
    if (line === '---' || /^[A-Za-z_][\w-]*\s*:(\s|$)/.test(line) || line.startsWith('- ')) return 'yaml';
    // A bare host name on the first line: Ansible puts ungrouped hosts there.
    return 'ansible';
  }
  return 'yaml';
}

export function loadInventory(path: string, opts: LoadInventoryOptions = {}): Inventory {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? String(err)})`;
    throw new UsageError(`inventory ${path} ${why}`, 'pass the inventory file with --inventory <path>');
  }
  const format = opts.format === undefined || opts.format === 'auto' ? detectFormat(path, text) : opts.format;
  if (format === 'ansible') return parseAnsibleInventory(text, path, opts.cluster);
  const inv = parseRegenInventory(text, path, format);
  if (opts.cluster !== undefined && opts.cluster !== inv.cluster) {
    throw new UsageError(
      `--cluster ${opts.cluster} does not match the inventory's cluster ${inv.cluster} (${path})`,
      `drop --cluster, or pass --cluster ${inv.cluster}`,
    );
  }
  return inv;
}
