/**
 * POSIX sh quoting, the one quoter of the code base. Everything regen puts on a command line goes through shq(),
 * so a path, an address or an id can never become shell syntax on the node.
 */

const SAFE = /^[A-Za-z0-9_/.:=@%+,-]+$/;

/** Quote one word for POSIX sh: as it is when every character is safe, else single quotes with embedded ones closed, escaped and reopened. */
export function shq(word: string): string {
  if (SAFE.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
