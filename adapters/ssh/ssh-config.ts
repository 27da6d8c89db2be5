/**
 * OpenSSH client configuration (ssh_config(5)): enough of it that `ssh <alias>` and regen reach the same
 * machine the same way. Honoured: Host blocks (patterns with `*`, `?`, `!negation`, several per line),
 * `Match all` / `Match host|originalhost`, Include, HostName (%h), User, Port, IdentityFile (~ and %
 * tokens, several), IdentitiesOnly, IdentityAgent, ProxyJump (several hops), HostKeyAlias,
 * UserKnownHostsFile, ConnectTimeout, ServerAliveInterval/CountMax. As in OpenSSH the first value
 * obtained for a keyword wins, except IdentityFile, which accumulates.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { matchPatternList, wildcardMatch } from './known-hosts.js';

export interface SshConfigBlock {
  /** `host` blocks carry patterns; `match` blocks carry their criteria; `global` is before any block. */
  kind: 'global' | 'host' | 'match';
  criteria: string[];
  /** Keyword (lower case) → arguments, in file order. */
  options: Array<{ keyword: string; args: string[]; file: string; line: number }>;
}

export interface SshConfig {
  blocks: SshConfigBlock[];
  /** Things parsed but not honoured (an unsupported Match criterion…), for a verbose listing. */
  warnings: string[];
}

export interface JumpHost {
  host: string;
  user?: string;
  port?: number;
}

/** What regen needs to reach one host, after the config has had its say. */
export interface ResolvedHost {
  /** The name as given (the inventory's sshHost). */
  alias: string;
  hostName: string;
  port: number;
  user: string;
  /** Explicit IdentityFile values, expanded, in order; may name files that do not exist. */
  identityFiles: string[];
  identitiesOnly: boolean;
  /** Agent socket from IdentityAgent (`none` → null); undefined when the config does not say. */
  identityAgent: string | null | undefined;
  proxyJump: JumpHost[];
  /** ProxyCommand is not supported; surfaced so the transport can say so instead of connecting directly. */
  proxyCommand: string | undefined;
  hostKeyAlias: string | undefined;
  userKnownHostsFiles: string[];
  /** GlobalKnownHostsFile values (OpenSSH's default when absent: /etc/ssh/ssh_known_hosts and …2). */
  globalKnownHostsFiles: string[];
  /** HashKnownHosts yes: accepted keys are written hashed. */
  hashKnownHosts: boolean;
  connectTimeoutSec: number | undefined;
  serverAliveIntervalSec: number | undefined;
  serverAliveCountMax: number | undefined;
  /** Config parts that could not be honoured for this host. */
  warnings: string[];
}

export interface ParseOptions {
  /** Path of the file being parsed (messages, relative Include). */
  file?: string;
  home?: string;
  /** Reads an included file; defaults to the file system. Tests pass a map. */
  readInclude?: (path: string) => string | null;
  /** Lists the files an Include glob names; defaults to the file system. */
  listInclude?: (pattern: string) => string[];
}

const MAX_INCLUDE_DEPTH = 16;

/** Split one config line into words, honouring double quotes and `keyword=value`. */
export function splitConfigLine(line: string): string[] | null {
  const trimmed = line.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return null;
  const eq = /^([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)$/.exec(trimmed);
  const text = eq ? `${eq[1]} ${eq[2]}` : trimmed;
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (const ch of text) {
    if (quoted) {
      if (ch === '"') quoted = false;
      else cur += ch;
      continue;
    }
    if (ch === '"') {
      quoted = true;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else if (ch === '#' && !inWord) {
      break;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quoted) throw new Error(`unterminated quote in: ${trimmed}`);
  if (inWord) words.push(cur);
  return words.length === 0 ? null : words;
}

export function parseSshConfig(text: string, opts: ParseOptions = {}): SshConfig {
  const config: SshConfig = { blocks: [{ kind: 'global', criteria: [], options: [] }], warnings: [] };
  parseInto(config, text, opts.file ?? '<config>', opts, 0);
  return config;
}

function parseInto(config: SshConfig, text: string, file: string, opts: ParseOptions, depth: number): void {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const words = splitConfigLine(lines[i] ?? '');
    if (words === null) continue;
    const [kw, ...args] = words as [string, ...string[]];
    const keyword = kw.toLowerCase();
    if (keyword === 'host') {
      config.blocks.push({ kind: 'host', criteria: args, options: [] });
    } else if (keyword === 'match') {
      config.blocks.push({ kind: 'match', criteria: args, options: [] });
    } else if (keyword === 'include') {
      if (depth >= MAX_INCLUDE_DEPTH) throw new Error(`${file}:${i + 1}: Include nested too deeply`);
      for (const pattern of args) {
        for (const path of includePaths(pattern, opts)) {
          const read = opts.readInclude ?? readIfExists;
          const included = read(path);
          if (included !== null) parseInto(config, included, path, opts, depth + 1);
        }
      }
    } else {
      const block = config.blocks[config.blocks.length - 1];
      block?.options.push({ keyword, args, file, line: i + 1 });
    }
  }
}

function readIfExists(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Include paths: relative ones are under ~/.ssh; a wildcard in the last component is expanded, sorted. */
function includePaths(pattern: string, opts: ParseOptions): string[] {
  const home = opts.home ?? homedir();
  let path = expandTilde(pattern, home);
  if (!isAbsolute(path)) path = join(home, '.ssh', path);
  if (!/[*?]/.test(basename(path))) return [path];
  if (opts.listInclude) return opts.listInclude(path);
  const dir = dirname(path);
  const glob = basename(path);
  try {
    return readdirSync(dir)
      .filter((name) => wildcardMatch(glob, name, { caseSensitive: true }))
      .sort()
      .map((name) => join(dir, name));
  } catch {
    return [];
  }
}

export function expandTilde(path: string, home: string = homedir()): string {
  if (path === '~') return home;
  if (path.startsWith('~/')) return join(home, path.slice(2));
  return path;
}

/** Read and parse a config file; a missing file is an empty config. */
export function loadSshConfig(path: string, opts: Omit<ParseOptions, 'file'> = {}): SshConfig {
  if (!existsSync(path)) return parseSshConfig('', opts);
  return parseSshConfig(readFileSync(path, 'utf8'), { ...opts, file: path });
}

export function defaultSshConfigPath(home: string = homedir()): string {
  return join(home, '.ssh', 'config');
}

/** Identity files ssh tries when the config names none (only the existing ones are used). */
export function defaultIdentityFiles(home: string = homedir()): string[] {
  return ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk'].map((f) => join(home, '.ssh', f));
}

function blockApplies(block: SshConfigBlock, alias: string, hostName: string, warnings: string[]): boolean {
  if (block.kind === 'global') return true;
  if (block.kind === 'host') return matchPatternList(block.criteria, alias);
  // Match: every criterion must hold.
  const c = block.criteria;
  for (let i = 0; i < c.length; i++) {
    const crit = (c[i] ?? '').toLowerCase();
    if (crit === 'all') continue;
    const negate = crit.startsWith('!');
    const name = negate ? crit.slice(1) : crit;
    const arg = c[++i];
    let ok: boolean;
    if (arg === undefined) {
      warnings.push(`Match ${name} without an argument: block ignored`);
      return false;
    }
    if (name === 'host') ok = matchPatternList(arg.split(','), hostName);
    else if (name === 'originalhost') ok = matchPatternList(arg.split(','), alias);
    else {
      warnings.push(`Match ${name} is not supported: block ignored`);
      return false;
    }
    if (ok === negate) return false;
  }
  return true;
}

export interface ResolveOptions {
  /** Local user name (%u, default User). */
  localUser?: string;
  home?: string;
}

/** IdentityAgent: none, an environment variable (SSH_AUTH_SOCK or $NAME), or a path with %-tokens; undefined if unset. */
function identityAgentOf(agent: string | undefined, tokens: (s: string) => string): string | null | undefined {
  if (agent === undefined) return undefined;
  if (agent.toLowerCase() === 'none') return null;
  if (agent === 'SSH_AUTH_SOCK') return process.env['SSH_AUTH_SOCK'] ?? null;
  if (agent.startsWith('$')) return process.env[agent.slice(1)] ?? null;
  return tokens(agent);
}

/**
 * The effective options for `alias`, as `ssh -G alias` would compute them from this config (within the
 * keywords listed above). HostName's %h is the alias; `Match host` sees the HostName set so far.
 */
export function resolveHost(config: SshConfig, alias: string, opts: ResolveOptions = {}): ResolvedHost {
  const home = opts.home ?? homedir();
  const localUser = opts.localUser ?? safeLocalUser();
  const first = new Map<string, string[]>();
  const identityFiles: string[] = [];
  const knownHostsFiles: string[] = [];
  const warnings: string[] = [];
  const lowerAlias = alias.toLowerCase();
  for (const block of config.blocks) {
    const hostNameSoFar = first.get('hostname')?.[0]?.replace(/%h/g, alias) ?? alias;
    if (!blockApplies(block, lowerAlias, hostNameSoFar.toLowerCase(), warnings)) continue;
    for (const opt of block.options) {
      if (opt.keyword === 'identityfile') {
        if (opt.args[0] !== undefined) identityFiles.push(opt.args[0]);
        continue;
      }
      if (!first.has(opt.keyword)) first.set(opt.keyword, opt.args);
    }
  }
  const get = (k: string): string | undefined => first.get(k)?.[0];

  const hostName = (get('hostname') ?? '%h').replace(/%%|%h/g, (t) => (t === '%%' ? '%' : alias));
  const portText = get('port');
  const port = portText === undefined ? 22 : parsePort(portText, 'Port');
  const user = get('user') ?? localUser;

  const tokens = (s: string): string =>
    expandTilde(s, home).replace(/%[%dhpru]/g, (t) => {
      switch (t) {
        case '%%':
          return '%';
        case '%d':
          return home;
        case '%h':
          return hostName;
        case '%p':
          return String(port);
        case '%r':
          return user;
        case '%u':
          return localUser;
        default:
          return t;
      }
    });

  const identityAgent = identityAgentOf(get('identityagent'), tokens);

  for (const f of first.get('userknownhostsfile') ?? []) {
    if (f.toLowerCase() !== 'none') knownHostsFiles.push(tokens(f));
  }
  const globalKnownHostsFiles = (first.get('globalknownhostsfile') ?? []).filter((f) => f.toLowerCase() !== 'none').map(tokens);

  const proxyJumpText = get('proxyjump');
  const proxyJump = proxyJumpText === undefined || proxyJumpText.toLowerCase() === 'none' ? [] : parseProxyJump(proxyJumpText);
  const proxyCommandArgs = first.get('proxycommand');
  const proxyCommand =
    proxyCommandArgs === undefined || proxyCommandArgs.join(' ').toLowerCase() === 'none' ? undefined : proxyCommandArgs.join(' ');

  const num = (k: string): number | undefined => {
    const v = get(k);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`ssh config: ${k} ${v} is not a number`);
    return n;
  };

  return {
    alias,
    hostName,
    port,
    user,
    identityFiles: identityFiles.map(tokens),
    identitiesOnly: get('identitiesonly')?.toLowerCase() === 'yes',
    identityAgent,
    proxyJump,
    proxyCommand,
    hostKeyAlias: get('hostkeyalias'),
    userKnownHostsFiles: knownHostsFiles,
    globalKnownHostsFiles,
    hashKnownHosts: get('hashknownhosts')?.toLowerCase() === 'yes',
    connectTimeoutSec: num('connecttimeout'),
    serverAliveIntervalSec: num('serveraliveinterval'),
    serverAliveCountMax: num('serveralivecountmax'),
    warnings,
  };
}

function parsePort(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`ssh config: ${what} ${text} is not a port number`);
  return n;
}

function safeLocalUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env['USER'] ?? 'root';
  }
}

/** `[user@]host[:port]` or `ssh://[user@]host[:port]`, comma separated (first hop first). */
export function parseProxyJump(text: string): JumpHost[] {
  return text.split(',').map((hop) => {
    let rest = hop.trim();
    if (rest.startsWith('ssh://')) rest = rest.slice('ssh://'.length);
    const jump: JumpHost = { host: '' };
    const at = rest.lastIndexOf('@');
    if (at >= 0) {
      jump.user = rest.slice(0, at);
      rest = rest.slice(at + 1);
    }
    const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
    if (bracket) {
      jump.host = bracket[1] ?? '';
      if (bracket[2] !== undefined) jump.port = parsePort(bracket[2], 'ProxyJump port');
    } else {
      const colon = rest.lastIndexOf(':');
      if (colon >= 0 && rest.indexOf(':') === colon) {
        jump.port = parsePort(rest.slice(colon + 1), 'ProxyJump port');
        rest = rest.slice(0, colon);
      }
      jump.host = rest;
    }
    if (jump.host === '') throw new Error(`ssh config: bad ProxyJump hop "${hop}"`);
    return jump;
  });
}
