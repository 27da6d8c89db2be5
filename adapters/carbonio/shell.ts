/**
 * POSIX sh quoting. Everything regen puts on a command line goes through shq(), so a path, an address or an id
 * can never become shell syntax on the node.
 */

const SAFE = /^[A-Za-z0-9_/.:=@%+,-]+$/;

/** Quote one word for POSIX sh. */
export function shq(word: string): string {
  if (SAFE.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * One command line that runs `script` with /bin/sh. The transport may prefix `sudo -n` and `timeout`, which take a
 * single command, not a multi-line script; wrapping keeps every builder's text valid under both.
 */
export function sh(script: string): string {
  return `sh -c ${shq(script)}`;
}
