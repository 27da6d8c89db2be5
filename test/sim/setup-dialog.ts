/**
 * The terminal side of `service-discover setup` and `setup-wizard`, as the source writes it.
 *
 * - `term.New` (pkg/term/term_unix.go) refuses a stdin that is not a terminal, before anything else, with
 *   `the provided file descriptor (0) is not a terminal`; kong prints it as `service-discover: error: …`, exit 1.
 * - The dialog (cmd/server/command/setup/{wizard,common}.go, cmd/agent/command/setup/{wizard,setup}.go, every tag
 *   v0.1.6 … 0.7.2) goes through golang.org/x/term's `Terminal` on a raw terminal: its `Write` turns every `\n`
 *   into `\r\n` (so the server's own `"…instance\r\n"` reaches the screen as `\r\r\n`), `ReadLine` echoes what is
 *   typed, `ReadPassword` echoes nothing, and Enter (`\r`) is answered with `\r\n`.
 *
 * Pure: the bytes in and out go through `TermIo`, so the lab's command and the unit tests share it.
 */
import { SimError } from './model.js';

export const NOT_A_TERMINAL = 'the provided file descriptor (0) is not a terminal';
export const BIND_PROMPT = 'Specify the binding address for service discovery: ';
export const FIRST_PASSWORD_PROMPT = 'Create the cluster credentials password (will be used for setups): ';
export const SECOND_PASSWORD_PROMPT = 'Type the credential password again: ';
export const JOIN_PASSWORD_PROMPT = 'Insert the cluster credential password: ';
export const FIRST_SERVER_BANNER = 'Setup of first service-discover server instance\r\n';
export const SECONDARY_SERVER_BANNER = 'Setup of secondary service-discover server instance\r\n';

/** The raw terminal: bytes out, one byte in at a time (null: end of input). */
export interface TermIo {
  write(bytes: string): void;
  readByte(): Promise<number | null>;
}

/** x/term's readLine gave up: Ctrl-C, Ctrl-D on an empty line, or the input ended. `term.MustRead` panics on it. */
export class TermEof extends Error {
  constructor() {
    super('EOF');
    this.name = 'TermEof';
  }
}

const ENTER = 13;
const CTRL_C = 3;
const CTRL_D = 4;
const BACKSPACE = 127;

/** golang.org/x/term `Terminal`, the parts the dialog uses. */
export class XTerm {
  constructor(private readonly io: TermIo) {}

  /** `Terminal.Write`: every `\n` becomes `\r\n` (writeWithCRLF), an existing `\r` stays. */
  write(text: string): void {
    this.io.write(text.replace(/\n/g, '\r\n'));
  }

  /** `ReadLine` (echo) or `ReadPassword` (no echo): the prompt as is, the line up to Enter, then `\r\n`. */
  async readLine(prompt: string, echo: boolean): Promise<string> {
    if (prompt !== '') this.io.write(prompt);
    let line = '';
    for (;;) {
      const b = await this.io.readByte();
      if (b === null || b === CTRL_C || (b === CTRL_D && line === '')) throw new TermEof();
      if (b === ENTER) {
        this.io.write('\r\n');
        return line;
      }
      if (b === BACKSPACE || b === 8) {
        if (line.length > 0) {
          line = line.slice(0, -1);
          if (echo) this.io.write('\b \b');
        }
        continue;
      }
      // Other control bytes (a bare \n among them) are not printable: x/term drops them (inferred for \n).
      if (b < 32) continue;
      const ch = String.fromCharCode(b);
      line += ch;
      if (echo) this.io.write(ch);
    }
  }
}

export interface DialogInterface {
  name: string;
  /** Addresses with their prefix, as Go's net.Addr prints them (e.g. "10.77.0.2/24"). */
  addresses: string[];
}

/**
 * `command.NonLoopbackInterfaces`: `lo` is removed by moving the last interface into its place (so the order the
 * wizard lists changes when `lo` is not last).
 */
export function nonLoopback(interfaces: readonly DialogInterface[]): DialogInterface[] {
  const out = [...interfaces];
  for (let i = 0; i < out.length; i++) {
    if (out[i]?.name.toLowerCase() === 'lo') {
      const last = out[out.length - 1];
      if (last !== undefined) out[i] = last;
      out.pop();
    }
  }
  return out;
}

/** `CheckValidBindingAddress`: the answer must be one of the listed addresses, with or without its prefix. */
export function checkBindAddress(networks: readonly DialogInterface[], answer: string): void {
  const ok = networks.some((n) => n.addresses.some((a) => a === answer || a.split('/')[0] === answer));
  if (!ok) throw new SimError('invalid binding address selected');
}

/** `wizardBindAddressSelection` / the agent's `gatherInputs`: the card list, the prompt, the line typed. */
export async function selectBindAddress(t: XTerm, interfaces: readonly DialogInterface[]): Promise<string> {
  const networks = nonLoopback(interfaces);
  if (networks.length > 1) t.write('Multiple network cards detected:\n');
  for (const n of networks) t.write(`${n.name} ${n.addresses.join(', ')}\n`);
  t.write(BIND_PROMPT);
  const answer = await t.readLine('', true);
  checkBindAddress(networks, answer);
  return answer;
}

export interface WizardAnswers {
  bind: string;
  password: string;
}

/**
 * The server's `setup-wizard` after its pre-checks: the banner, the bind address, then the password (twice for a
 * first instance, which must match).
 */
export async function serverWizard(
  t: XTerm,
  interfaces: readonly DialogInterface[],
  firstInstance: boolean,
  beforePassword: () => Promise<void> = () => Promise.resolve(),
): Promise<WizardAnswers> {
  t.write(firstInstance ? FIRST_SERVER_BANNER : SECONDARY_SERVER_BANNER);
  const bind = await selectBindAddress(t, interfaces);
  await beforePassword();
  if (!firstInstance) return { bind, password: await t.readLine(JOIN_PASSWORD_PROMPT, false) };
  const first = await t.readLine(FIRST_PASSWORD_PROMPT, false);
  const again = await t.readLine(SECOND_PASSWORD_PROMPT, false);
  if (again !== first) throw new SimError('passwords do not match');
  return { bind, password: again };
}

/** The agent's `setup-wizard`: no banner, the bind address, the password once. `beforePassword`: the lab's latency knob. */
export async function agentWizard(
  t: XTerm,
  interfaces: readonly DialogInterface[],
  beforePassword: () => Promise<void> = () => Promise.resolve(),
): Promise<WizardAnswers> {
  const bind = await selectBindAddress(t, interfaces);
  await beforePassword();
  return { bind, password: await t.readLine(JOIN_PASSWORD_PROMPT, false) };
}
