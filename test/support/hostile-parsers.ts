/**
 * Feeds every parser of adapters/carbonio/parse.ts 1 MB of hostile output (one endless line, endless lines of
 * almost-matching text) and prints, as JSON, how long each took. Run in a child process so a parser that never
 * returns can be stopped from outside (a synchronous regex cannot be interrupted in-process).
 */
import * as p from '../../adapters/carbonio/parse.js';

const MB = 1024 * 1024;
const inputs: Record<string, string> = {
  'one long word': 'a'.repeat(MB),
  'ip line without inet': `1: ${'x'.repeat(MB)} `,
  'ip line of @ and spaces': `2: ${'a@'.repeat(MB / 2)}`,
  'spaces then text': `${' '.repeat(MB / 2)}${'b'.repeat(MB / 2)}`,
  'many short lines': 'key=value= =\n'.repeat(MB / 13),
  'nested quotes': `${'"'.repeat(MB / 2)}${'\\'.repeat(MB / 2)}`,
};

const parsers: Record<string, (text: string) => unknown> = {
  parseIpAddrLine: (t) => p.parseIpAddrLine(t),
  parseInspect: (t) => p.parseInspect(t, 'n'),
  parseServiceState: (t) => p.parseServiceState(t, 'n'),
  parseMeshServers: (t) => p.parseMeshServers(t, 'n'),
  parseLeader: (t) => p.parseLeader(t, 'n'),
  parseMembers: (t) => p.parseMembers(t, 'n'),
  tokenProblem: (t) => p.tokenProblem(t),
  parseResetIndex: (t) => p.parseResetIndex(t, 1, 'n'),
  parseResetFile: (t) => p.parseResetFile(t, 'n'),
  parseProbeWipe: (t) => p.parseProbeWipe(t, 'n'),
  parseSetupProbe: (t) => p.parseSetupProbe(t, 'n'),
  parseCredentialsSha256: (t) => p.parseCredentialsSha256(t, 'n'),
  parseReadCredentials: (t) => p.parseReadCredentials(t, 'n'),
  parseManifest: (t) => p.parseManifest(t, '/d', 'n'),
  parseBackup: (t) => p.parseBackup(t, '/d', 'n'),
  parseTokens: (t) => p.parseTokens(t, 'n'),
  parseRaftRecovery: (t) => p.parseRaftRecovery(t, 'n'),
  tail: (t) => p.tail(t),
};

const timings: Record<string, number> = {};
for (const [name, parse] of Object.entries(parsers)) {
  let worst = 0;
  for (const text of Object.values(inputs)) {
    const t0 = performance.now();
    try {
      parse(text);
    } catch {
      // Refusing hostile output is the expected answer; only the time matters here.
    }
    worst = Math.max(worst, performance.now() - t0);
  }
  timings[name] = Math.round(worst * 10) / 10;
}
process.stdout.write(`${JSON.stringify(timings)}\n`);
