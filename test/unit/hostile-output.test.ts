/**
 * A hostile or broken node cannot freeze regen with what it prints: every parser gets through 1 MB of hostile
 * output. The parsers run in a child process, which is stopped if it does not finish (a quadratic regex over 1 MB
 * runs for hours and cannot be interrupted in-process); the worst time per parser is reported, not asserted.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseIpAddrLine } from '../../adapters/carbonio/parse.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('parsers over 1 MB of hostile output', () => {
  it('every parser returns or refuses; none runs away', () => {
    const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'vite-node'), [join(ROOT, 'test', 'support', 'hostile-parsers.ts')], {
      cwd: ROOT,
      encoding: 'utf8',
      // A guard against a runaway parser, far above any linear time; not a performance threshold.
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    expect(r.signal, 'a parser did not finish: it was stopped').toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const timings = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, number>;
    expect(Object.keys(timings)).toHaveLength(18);
    console.log(`worst ms per parser over 1 MB: ${JSON.stringify(timings)}`);
  });

  it('the interface regex still reads real lines, with and without @peer', () => {
    expect(parseIpAddrLine('2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0')).toEqual({ iface: 'eth0', address: '10.0.0.5' });
    expect(parseIpAddrLine('3: veth1@if7    inet 192.168.1.2/24 scope global veth1')).toEqual({ iface: 'veth1', address: '192.168.1.2' });
    expect(parseIpAddrLine('4: lo    inet6 ::1/128 scope host')).toBeNull();
  });
});
