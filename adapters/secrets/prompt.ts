/**
 * Read one line without echo: the mesh secret, an SSH key passphrase. On a TTY the input is put in raw mode so
 * nothing typed is shown; from a pipe the line is read as it comes (and what follows it is left in the stream).
 */
import { StringDecoder } from 'node:string_decoder';
import type { Readable, Writable } from 'node:stream';
import { RegenError } from '../../machines/errors.js';

export interface PromptStreams {
  input: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown; isRaw?: boolean };
  output: Writable;
}

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const CTRL_U = '\u0015';
const BACKSPACE = '\u007f';
const CTRL_H = '\b';
const ESC = '\u001b';

export function hiddenPrompt(question: string, { input, output }: PromptStreams): Promise<string> {
  const tty = input.isTTY === true && typeof input.setRawMode === 'function';
  return new Promise<string>((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let line = '';
    let skipEscape = false;
    const wasRaw = input.isRaw === true;

    const finish = (err: Error | null, rest?: string): void => {
      input.removeListener('data', onData);
      input.removeListener('end', onEnd);
      input.removeListener('error', onError);
      if (tty) input.setRawMode?.(wasRaw);
      // Paused before the unshift: a flowing stream would hand the rest straight to nobody.
      input.pause();
      if (rest !== undefined && rest.length > 0) input.unshift(Buffer.from(rest, 'utf8'));
      // The operator's Enter was not echoed; end the prompt's line ourselves.
      output.write('\n');
      if (err === null) resolve(line);
      else reject(err);
    };
    const aborted = (): RegenError => new RegenError('aborted', 'interrupted at the prompt', { hint: 'run the command again when ready' });

    const onData = (chunk: Buffer | string): void => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      const chars = [...text];
      for (let i = 0; i < chars.length; i++) {
        const c = chars[i] as string;
        if (skipEscape) {
          // An escape sequence (arrow keys, …) ends with a letter or ~; none of it belongs to the secret.
          if (/[A-Za-z~]/.test(c)) skipEscape = false;
          continue;
        }
        if (c === '\r' || c === '\n') {
          let restStart = i + 1;
          if (c === '\r' && chars[restStart] === '\n') restStart++;
          finish(null, tty ? undefined : chars.slice(restStart).join(''));
          return;
        }
        if (tty && c === CTRL_C) return finish(aborted());
        if (tty && c === CTRL_D) {
          if (line.length === 0) return finish(aborted());
          continue;
        }
        if (tty && (c === BACKSPACE || c === CTRL_H)) {
          line = [...line].slice(0, -1).join('');
          continue;
        }
        if (tty && c === CTRL_U) {
          line = '';
          continue;
        }
        if (tty && c === ESC) {
          skipEscape = true;
          continue;
        }
        if (tty && c < ' ') continue;
        line += c;
      }
    };
    const onEnd = (): void => {
      line += decoder.end();
      // A pipe that ends without a newline still gave its line; an empty one gave nothing.
      if (!tty && line.length > 0) finish(null);
      else finish(aborted());
    };
    const onError = (err: Error): void => finish(new RegenError('aborted', `cannot read the answer: ${err.message}`));

    output.write(question);
    if (input.readableEnded) {
      output.write('\n');
      reject(aborted());
      return;
    }
    if (tty) input.setRawMode?.(true);
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onError);
    input.resume();
  });
}
