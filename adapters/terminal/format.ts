/** Shared presentation helpers: colours, durations, clock times, widths. */

export interface Palette {
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
  dim(s: string): string;
  bold(s: string): string;
}

const wrap = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`;
const plain = (s: string): string => s;

export function palette(color: boolean): Palette {
  if (!color) return { green: plain, red: plain, yellow: plain, cyan: plain, dim: plain, bold: plain };
  return { green: wrap(32, 39), red: wrap(31, 39), yellow: wrap(33, 39), cyan: wrap(36, 39), dim: wrap(2, 22), bold: wrap(1, 22) };
}

/** Colours only on a terminal, and never when NO_COLOR is set to something (https://no-color.org). */
export function useColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '');
}

/** 0.4s, 3.1s, 59.9s, 1m02s, 1h02m. */
export function formatDuration(ms: number): string {
  const v = Math.max(0, ms);
  if (v < 60_000) return `${(Math.floor(v / 100) / 10).toFixed(1)}s`;
  const s = Math.floor(v / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export type TimeZoneChoice = 'local' | 'utc';

function parts(at: number, tz: TimeZoneChoice): [number, number, number, number, number, number] {
  const d = new Date(at);
  return tz === 'utc'
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
}

const p2 = (n: number): string => String(n).padStart(2, '0');

/** 12:03:04 */
export function formatClock(at: number, tz: TimeZoneChoice = 'local'): string {
  const [, , , h, m, s] = parts(at, tz);
  return `${p2(h)}:${p2(m)}:${p2(s)}`;
}

/** 2026-11-24 12:03:04 (UTC suffix when asked for UTC, so a reader knows). */
export function formatDateTime(at: number, tz: TimeZoneChoice = 'local'): string {
  const [y, mo, d, h, m, s] = parts(at, tz);
  return `${y}-${p2(mo)}-${p2(d)} ${p2(h)}:${p2(m)}:${p2(s)}${tz === 'utc' ? ' UTC' : ''}`;
}

// eslint-disable-next-line no-control-regex
const ANSI_RE = /\u001b\[[0-9;?]*[A-Za-z]/g;

export function stripAnsi(s: string): string {
  return s.replace(ANSI_RE, '');
}

/** Visible width, counting code points (the symbols used here are all one column wide). */
export function visibleWidth(s: string): number {
  return [...stripAnsi(s)].length;
}

export function padEnd(s: string, width: number): string {
  const w = visibleWidth(s);
  return w >= width ? s : s + ' '.repeat(width - w);
}

/** Cut to `width` visible columns, keeping escape sequences intact (and resetting them when cut). */
export function truncate(s: string, width: number): string {
  if (visibleWidth(s) <= width) return s;
  let out = '';
  let seen = 0;
  for (let i = 0; i < s.length; ) {
    if (s[i] === '\u001b') {
      // eslint-disable-next-line no-control-regex
      const m = /^\u001b\[[0-9;?]*[A-Za-z]/.exec(s.slice(i));
      if (m !== null) {
        out += m[0];
        i += m[0].length;
        continue;
      }
    }
    const cp = s.codePointAt(i) ?? 0;
    const ch = String.fromCodePoint(cp);
    if (seen >= width - 1) break;
    out += ch;
    seen++;
    i += ch.length;
  }
  return `${out}…${s.includes('\u001b') ? '\u001b[0m' : ''}`;
}
