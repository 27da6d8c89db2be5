/** The command-line helpers of the Carbonio commands; quoting is adapters/shell/quote.ts's. */
import { shq } from '../shell/quote.js';

export { shq };

/**
 * One command line that runs `script` with /bin/sh. The transport may prefix `sudo -n` and `timeout`, which take a
 * single command, not a multi-line script; wrapping keeps every builder's text valid under both.
 */
export function sh(script: string): string {
  return `sh -c ${shq(script)}`;
}
