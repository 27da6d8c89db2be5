/**
 * A run exists to replace a secret that may have leaked: a "new" secret that still opens the leader's current
 * credentials is the old one, and regenerating with it would change nothing an attacker cares about.
 */
import { NeedsOperatorError, RegenError } from './errors.js';
import type { StepDeps } from './steps.js';

/**
 * Before anything changes: refuse (exit 2) when the operator's secret opens the leader's current
 * cluster-credentials.tar.gpg, unless --reuse-secret. Without a secret in hand (a resume before the confirmation
 * that was given none) there is nothing to compare yet; the secret is asked for later.
 */
export async function refuseReusedSecret(d: Pick<StepDeps, 'port' | 'secret'>, leader: string, allowed: boolean): Promise<void> {
  if (allowed) return;
  let secret;
  try {
    secret = await d.secret();
  } catch (err) {
    if (err instanceof NeedsOperatorError) return;
    throw err;
  }
  if (await d.port.secretOpensCredentials(leader, secret)) {
    throw new RegenError('usage', `the new mesh secret opens the current credentials on ${leader}: it is the secret in use now (nothing was changed)`, {
      node: leader,
      hint: 'give a new secret (--generate-password, or --password-file FILE); --reuse-secret keeps the current one on purpose',
    });
  }
}
